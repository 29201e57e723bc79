package credentials

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const canaryValue = "ya29.CANARY-secret-value-7f3a9c"

type holder struct {
	Token   Secret
	Ptr     *Secret
	private Secret
}

type secretError struct{ tok Secret }

func (e secretError) Error() string { return fmt.Sprintf("request failed with token %v", e.tok) }

func assertNoCanary(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, canaryValue) || strings.Contains(out, "CANARY") {
		t.Errorf("%s leaks the secret: %s", what, out)
	}
}

func TestSecretRevealIsTheOnlyWayOut(t *testing.T) {
	s := NewSecret(canaryValue)
	if s.Reveal() != canaryValue {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	if s.IsZero() || !(Secret{}).IsZero() || !NewSecret("").IsZero() {
		t.Error("IsZero wrong")
	}
	if (Secret{}).Reveal() != "" {
		t.Error("zero Secret reveals non-empty")
	}
	if !s.Equal(NewSecret(canaryValue)) || s.Equal(NewSecret("other")) {
		t.Error("Equal wrong")
	}
}

func TestSecretRedactsInFmt(t *testing.T) {
	s := NewSecret(canaryValue)
	h := holder{Token: s, Ptr: &s, private: s}
	cases := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%-20v", "%d", "%T %v"} {
		cases["secret "+verb] = fmt.Sprintf(verb, s)
		cases["pointer "+verb] = fmt.Sprintf(verb, &s)
		cases["struct "+verb] = fmt.Sprintf(verb, h)
		cases["slice "+verb] = fmt.Sprintf(verb, []Secret{s})
		cases["map "+verb] = fmt.Sprintf(verb, map[string]Secret{"k": s})
		cases["any "+verb] = fmt.Sprintf(verb, []any{s})
	}
	cases["Sprint"] = fmt.Sprint(s, h)
	cases["Sprintln"] = fmt.Sprintln(s, &h)
	cases["String"] = s.String()
	cases["GoString"] = s.GoString()
	for name, out := range cases {
		assertNoCanary(t, name, out)
	}
	if got := fmt.Sprintf("%v|%s|%q|%#v", s, s, s, s); got != `[REDACTED]|[REDACTED]|"[REDACTED]"|credentials.Secret("[REDACTED]")` {
		t.Errorf("formats = %s", got)
	}
}

func TestSecretRedactsInJSON(t *testing.T) {
	s := NewSecret(canaryValue)
	for name, v := range map[string]any{
		"value":   s,
		"pointer": &s,
		"struct":  holder{Token: s, Ptr: &s, private: s},
		"map key": map[Secret]int{s: 1},
		"map val": map[string]Secret{"k": s},
	} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		assertNoCanary(t, "json "+name, string(out))
		if !strings.Contains(string(out), Redacted) {
			t.Errorf("json %s = %s, want the redaction marker", name, out)
		}
	}
	text, _ := s.MarshalText()
	if string(text) != Redacted {
		t.Errorf("MarshalText = %q", text)
	}
}

func TestSecretRedactsInSlog(t *testing.T) {
	s := NewSecret(canaryValue)
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		var buf bytes.Buffer
		log := slog.New(h.new(&buf))
		log.Info("minted", "token", s, "ptr", &s)
		log.Info("minted", slog.Any("holder", holder{Token: s, Ptr: &s, private: s}))
		log.Info("minted", slog.Group("g", slog.Any("token", s)), "list", []Secret{s})
		log.With("token", s).Info("with")
		log.Error("failed", "err", fmt.Errorf("mint: %w", secretError{tok: s}))
		assertNoCanary(t, "slog "+h.name, buf.String())
		if !strings.Contains(buf.String(), Redacted) {
			t.Errorf("slog %s output lacks the redaction marker: %s", h.name, buf.String())
		}
	}
}

func TestSecretRedactsInErrors(t *testing.T) {
	s := NewSecret(canaryValue)
	base := secretError{tok: s}
	errs := []error{
		fmt.Errorf("mint failed for %v", s),
		fmt.Errorf("mint failed for %s (%q)", s, s),
		fmt.Errorf("wrapped: %w", base),
		errors.Join(errors.New("a"), base),
		fmt.Errorf("outer: %w", fmt.Errorf("inner %+v: %w", holder{Token: s}, base)),
	}
	for i, err := range errs {
		assertNoCanary(t, fmt.Sprintf("error %d", i), err.Error())
		assertNoCanary(t, fmt.Sprintf("error %d %%+v", i), fmt.Sprintf("%+v", err))
		var se secretError
		if i >= 2 && !errors.As(err, &se) {
			t.Errorf("error %d does not unwrap to secretError", i)
		}
	}
}

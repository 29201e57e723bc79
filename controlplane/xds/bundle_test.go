package xds

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"

	filterconfig "github.com/jitgate/jitgate/filter/config"
	"github.com/jitgate/jitgate/policies"
	"github.com/jitgate/jitgate/policies/source"
)

// servedFilterConfig returns the filter configuration in the fleet's current snapshot,
// parsed as the filter parses it.
func servedFilterConfig(t *testing.T, pub *Publisher) filterconfig.Config {
	t.Helper()
	snap, err := pub.cache.GetSnapshot(pub.key)
	if err != nil {
		t.Fatal(err)
	}
	res := snap.GetResources(resourcev3.ExtensionConfigType)[FilterName]
	wasm := &wasmfilterv3.Wasm{}
	if err := res.(*corev3.TypedExtensionConfig).GetTypedConfig().UnmarshalTo(wasm); err != nil {
		t.Fatal(err)
	}
	doc := &wrapperspb.StringValue{}
	if err := wasm.GetConfig().GetConfiguration().UnmarshalTo(doc); err != nil {
		t.Fatal(err)
	}
	fc, err := filterconfig.Parse([]byte(doc.GetValue()))
	if err != nil {
		t.Fatalf("the filter cannot parse its configuration: %v", err)
	}
	return fc
}

func examplesBundle(t *testing.T) *policies.Bundle {
	t.Helper()
	r, err := source.Load("../../policies/examples")
	if err != nil {
		t.Fatal(err)
	}
	return r.Bundle
}

// TestPublishPolicyPushesTheBundle: every new bundle is republished with its version and
// compiled JSON, which the filter's ParseBundle accepts as the same bundle.
func TestPublishPolicyPushesTheBundle(t *testing.T) {
	pub := NewPublisher(NewCache("fleet", quietLogger()), "fleet", quietLogger(), NewMetrics(prometheus.NewRegistry()))
	b := examplesBundle(t)
	if err := pub.PublishPolicy(t.Context(), b); err != nil { // before the first config: recorded only
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), loadGoldenInput(t, "emulator")); err != nil {
		t.Fatal(err)
	}
	fc := servedFilterConfig(t, pub)
	if fc.PolicyVersion != b.Version || fc.SelfTest {
		t.Fatalf("served policyVersion %q selfTest %v, want %q and no self test", fc.PolicyVersion, fc.SelfTest, b.Version)
	}
	got, err := policies.ParseBundle(fc.PolicyBundle)
	if err != nil {
		t.Fatalf("the filter would refuse the pushed bundle: %v", err)
	}
	want, _ := b.Encode()
	if gotRaw, _ := got.Encode(); got.Version != b.Version || string(gotRaw) != string(want) {
		t.Errorf("pushed bundle differs from the live one")
	}

	// A new bundle: a new snapshot carrying it.
	smaller := &policies.Set{}
	for _, p := range b.Policies[1:] {
		smaller.Policies = append(smaller.Policies, policies.AgentPolicy{APIVersion: policies.APIVersion, Kind: policies.KindAgentPolicy,
			Metadata: policies.Metadata{Name: p.Name, Description: p.Description}, Spec: p.Spec})
	}
	for _, g := range b.ApproverGroups {
		smaller.ApproverGroups = append(smaller.ApproverGroups, policies.ApproverGroup{APIVersion: policies.APIVersion, Kind: policies.KindApproverGroup,
			Metadata: policies.Metadata{Name: g.Name}, Spec: g.Spec})
	}
	b2, errs := policies.Compile(*smaller)
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if err := pub.PublishPolicy(t.Context(), b2); err != nil {
		t.Fatal(err)
	}
	if fc := servedFilterConfig(t, pub); fc.PolicyVersion != b2.Version || pub.Status().SnapshotVersion != "2" || pub.Status().PolicyVersion != b2.Version {
		t.Errorf("after the new bundle: served %q, status %+v", fc.PolicyVersion, pub.Status())
	}
	if got, err := policies.ParseBundle(servedFilterConfig(t, pub).PolicyBundle); err != nil || len(got.Policies) != len(b2.Policies) {
		t.Errorf("second bundle: %v", err)
	}
}

// TestOversizedBundleKeepsLastGood: a bundle above the filter's limit is not published;
// the last good snapshot (with the last good bundle) stays live and the error is reported.
func TestOversizedBundleKeepsLastGood(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a large bundle")
	}
	pub := NewPublisher(NewCache("fleet", quietLogger()), "fleet", quietLogger(), NewMetrics(prometheus.NewRegistry()))
	b := examplesBundle(t)
	if err := pub.PublishPolicy(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), loadGoldenInput(t, "emulator")); err != nil {
		t.Fatal(err)
	}
	var s policies.Set
	desc := strings.Repeat("a long description to make the bundle big. ", 40)
	for i := range 5000 {
		s.Policies = append(s.Policies, policies.AgentPolicy{APIVersion: policies.APIVersion, Kind: policies.KindAgentPolicy,
			Metadata: policies.Metadata{Name: fmt.Sprintf("p-%05d", i), Description: desc},
			Spec: policies.PolicySpec{Who: policies.Who{Agents: []string{fmt.Sprintf("agent-%d", i)}},
				Where: policies.Where{Projects: []string{"acme"}, APIs: []string{"jobs.query"}}}})
	}
	huge, errs := policies.Compile(s)
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if raw, _ := huge.Encode(); len(raw) <= filterconfig.MaxPolicyBundleBytes {
		t.Fatalf("test bundle of %d bytes is not above the limit", len(raw))
	}
	err := pub.PublishPolicy(t.Context(), huge)
	if !errors.Is(err, ErrTranslate) || !strings.Contains(err.Error(), "policyBundle") {
		t.Fatalf("PublishPolicy(huge) = %v", err)
	}
	st := pub.Status()
	if st.SnapshotVersion != "1" || st.PolicyVersion != b.Version || st.LastError == "" {
		t.Errorf("status %+v, want snapshot 1 with the last good bundle and the error", st)
	}
	if fc := servedFilterConfig(t, pub); fc.PolicyVersion != b.Version {
		t.Errorf("served %q, want the last good %q", fc.PolicyVersion, b.Version)
	}
}

// TestAuthorizeTimeoutFollowsLongestHold: the filter's authorize callout outlasts the
// longest hold-mode approval of the bundle (plus HoldMargin); other callouts keep theirs.
// TestIdentityOnlyReachesTheFilter: the filter denies every call without a bundle unless
// the control plane says it runs in the explicit identity-only mode.
func TestIdentityOnlyReachesTheFilter(t *testing.T) {
	cfg := loadGoldenInput(t, "emulator")
	for _, identityOnly := range []bool{false, true} {
		cfg.Policies.IdentityOnly = identityOnly
		fc, err := FilterConfig(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fc.Marshal(); err != nil || fc.IdentityOnly != identityOnly {
			t.Fatalf("identityOnly %v: filter config %+v (%v)", identityOnly, fc, err)
		}
	}
	if fc, err := FilterConfig(cfg, examplesBundle(t)); err != nil || fc.IdentityOnly {
		t.Fatalf("with a bundle: identityOnly %v (%v)", fc.IdentityOnly, err)
	}
}

func TestAuthorizeTimeoutFollowsLongestHold(t *testing.T) {
	cfg := loadGoldenInput(t, "emulator")
	b := examplesBundle(t) // break-glass holds without holdTimeout: the 2m default
	fc, err := FilterConfig(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if b.LongestHoldTimeout() != 2*time.Minute || fc.ControlPlane.AuthorizeTimeoutMillis != 130000 || fc.ControlPlane.TimeoutMillis != cfg.Filter.CalloutTimeoutMillis {
		t.Fatalf("longest hold %s: authorize timeout %d ms, callout %d ms", b.LongestHoldTimeout(), fc.ControlPlane.AuthorizeTimeoutMillis, fc.ControlPlane.TimeoutMillis)
	}
	if fc, _ := FilterConfig(cfg, nil); fc.ControlPlane.AuthorizeTimeoutMillis != 0 {
		t.Fatalf("without policies the authorize callout keeps the callout timeout, got %d", fc.ControlPlane.AuthorizeTimeoutMillis)
	}
	if got := AuthorizeTimeoutMillis(2000, 4*time.Minute); got != 250000 {
		t.Fatalf("4m hold: %d", got)
	}
	if got := AuthorizeTimeoutMillis(60000, time.Second); got != 0 {
		t.Fatalf("a callout timeout longer than the hold stays: %d", got)
	}
}

// TestFilterConfigCarriesExcerptSize: audit.maxExcerptBytes reaches the filter, which
// sends no more of a response body with its report.
func TestFilterConfigCarriesExcerptSize(t *testing.T) {
	cfg := loadGoldenInput(t, "emulator")
	for _, n := range []int{0, -1, 4096} {
		cfg.Audit.MaxExcerptBytes = n
		fc, err := FilterConfig(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fc.ResponseExcerptBytes != n {
			t.Errorf("audit.maxExcerptBytes %d: filter responseExcerptBytes %d", n, fc.ResponseExcerptBytes)
		}
	}
}

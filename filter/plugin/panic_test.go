package plugin

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

// These tests inject panics through options.faultAt, which only a native test can set:
// the compiled module always runs with zero options and a test cannot reach into it
// (and an unrecovered panic inside the module would abort the shared wasm VM). So the
// wasm run of TestPanicFailsClosed is skipped and the other panic tests are native only.

func faultyVM(at string) types.VMContext {
	return newVMContext(options{faultAt: func(cb string) {
		if cb == at {
			panic("injected fault in " + cb)
		}
	}})
}

func TestPanicFailsClosed(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		if _, native := vm.(*vmContext); !native {
			t.Skip("fault injection needs options.faultAt, which cannot be set inside the compiled module")
		}
		for _, at := range []string{"request-headers", "request-body", "request-trailers"} {
			t.Run(at, func(t *testing.T) {
				host := configuredHost(t, faultyVM(at))
				req := request{method: "POST", path: "/bigquery/v2/projects/p/queries", chunks: withBody(queryBody)}
				if at == "request-trailers" {
					req.trailers = [][2]string{{"x", "y"}}
				}
				o := send(t, host, req)
				wantRefused(t, o, bqapi.ReasonInternal)
				if !strings.Contains(strings.Join(host.GetCriticalLogs(), "\n"), "recovered panic in "+at) {
					t.Errorf("panic not logged: %q", host.GetCriticalLogs())
				}
			})
		}
	})
}

func TestPanicInResponseHeadersFailsClosed(t *testing.T) {
	host := configuredHost(t, faultyVM("response-headers"))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", "/bigquery/v2/projects"}}, true)
	answerCallout(t, host, id, nil)
	if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false); a != types.ActionPause {
		t.Errorf("action = %v, want pause after the local reply", a)
	}
	if r := host.GetSentLocalResponse(id); r == nil || r.StatusCode != 500 {
		t.Fatalf("reply = %+v, want 500", r)
	}
}

func TestPanicAtPluginStartFailsStart(t *testing.T) {
	host, status := startHost(t, faultyVM("plugin-start"), testConfig)
	if status != types.OnPluginStartStatusFailed {
		t.Fatal("plugin started despite a panic")
	}
	wantRefused(t, send(t, host, request{method: "GET", path: "/bigquery/v2/projects"}), bqapi.ReasonNotConfigured)
}

// TestNoSecondLocalReply: after a denial, a panic in a later callback must not send a
// second reply (Envoy would treat that as a bug), and the denial stands.
func TestNoSecondLocalReply(t *testing.T) {
	host := configuredHost(t, faultyVM("request-body"))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":method", "POST"}, {":path", "/upload/bigquery/v2/projects/p/jobs"}}, false)
	first := host.GetSentLocalResponse(id)
	if first == nil || first.StatusCode != 403 {
		t.Fatalf("first reply = %+v", first)
	}
	if a := host.CallOnRequestBody(id, []byte("x"), true); a != types.ActionPause {
		t.Errorf("action = %v, want pause", a)
	}
	if r := host.GetSentLocalResponse(id); r != first {
		t.Errorf("a second local reply was sent: %d %s", r.StatusCode, r.Data)
	}
	// The local reply itself passes the response path untouched.
	if a := host.CallOnResponseHeaders(id, [][2]string{{":status", "403"}}, false); a != types.ActionContinue {
		t.Errorf("local reply's response headers action = %v, want continue", a)
	}
}

func TestPanicInStreamDoneIsContained(t *testing.T) {
	host := configuredHost(t, faultyVM("stream-done"))
	o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects"})
	if o.reply != nil {
		t.Fatalf("unexpected reply %+v", o.reply)
	}
	if !strings.Contains(strings.Join(host.GetCriticalLogs(), "\n"), "panic while logging") {
		t.Errorf("panic not logged: %q", host.GetCriticalLogs())
	}
}

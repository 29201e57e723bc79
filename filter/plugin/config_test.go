package plugin

import (
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/bqapi"
)

func TestBadConfigurationFailsPluginStart(t *testing.T) {
	bad := map[string]string{
		"empty":         ``,
		"not JSON":      `{`,
		"wrong version": `{"version":"jitgate.dev/filter/v0"}`,
		"unknown field": `{"version":"jitgate.dev/filter/v1","surprise":true}`,
		"limit too big": `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":1000000000}`,
	}
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		for name, cfg := range bad {
			t.Run(name, func(t *testing.T) {
				host, status := startHost(t, vm, cfg)
				if status != types.OnPluginStartStatusFailed {
					t.Fatal("OnPluginStart accepted a bad configuration")
				}
				// Requests reaching a plugin without a valid configuration fail closed.
				o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects"})
				wantRefused(t, o, bqapi.ReasonNotConfigured)
				if o.reply.StatusCode != 503 {
					t.Errorf("status %d, want 503", o.reply.StatusCode)
				}
			})
		}
	})
}

// TestNotStarted: a stream created before OnPluginStart ever ran fails closed too.
func TestNotStarted(t *testing.T) {
	vmTest(t, func(t *testing.T, vm types.VMContext) {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(testConfig)))
		defer reset()
		o := send(t, host, request{method: "GET", path: "/bigquery/v2/projects"})
		wantRefused(t, o, bqapi.ReasonNotConfigured)
	})
}

package plugin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jitgate/jitgate/filter/authorize"
)

// wasmVM is the compiled build/jitgate.wasm under wazero, shared by every test in this
// binary: compiling the 5+ MB module takes seconds, and proxytest is global state anyway
// (tests never run in parallel). The plugin context is recreated for each host emulator,
// so no configuration leaks between tests. Keep the number of requests sent through it
// modest: under wazero's fake clock the Go runtime inside stops collecting garbage after
// about 100 cycles.
var wasmVM proxytest.WasmVMContext

func TestMain(m *testing.M) {
	code := m.Run()
	if wasmVM != nil {
		wasmVM.Close()
	}
	os.Exit(code)
}

// vmTest runs f twice: natively against the plugin's VMContext, and against the compiled
// module. The wasm run fails when build/jitgate.wasm is missing.
func vmTest(t *testing.T, f func(t *testing.T, vm types.VMContext)) {
	t.Helper()
	t.Run("go", func(t *testing.T) { f(t, NewVMContext()) })
	t.Run("wasm", func(t *testing.T) {
		if wasmVM == nil {
			path := filepath.Join(moduleRoot(t), "build", "jitgate.wasm")
			wasm, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s is missing (%v): run `make build` (or GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o build/jitgate.wasm ./filter) first", path, err)
			}
			if newer := newerSource(t, path); newer != "" {
				t.Fatalf("%s is older than %s: run `make build` again", path, newer)
			}
			vm, err := proxytest.NewWasmVMContext(wasm)
			if err != nil {
				t.Fatalf("load %s: %v", path, err)
			}
			wasmVM = vm
		}
		f(t, wasmVM)
	})
}

// newerSource returns a source file compiled into the module (Go files and embedded
// files of every non-standard package ./filter depends on, for wasip1: the filter's own
// packages, the SDK, policies and its conformance vectors) modified after the wasm
// artifact, so a stale build fails loudly instead of testing old code. Packages under
// filter/ that the module does not import (work in progress) do not count.
func newerSource(t *testing.T, wasmPath string) string {
	t.Helper()
	built, err := os.Stat(wasmPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`, "./filter")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 10 {
		t.Fatalf("go list returned suspiciously few files: %q", files)
	}
	for _, f := range files {
		if info, err := os.Stat(f); err == nil && info.ModTime().After(built.ModTime()) {
			return f
		}
	}
	return ""
}

// moduleRoot finds the directory holding go.mod above the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// testConfig carries no policy bundle, so it sets the control plane's explicit
// identity-only mode: the tests built on it exercise classification, bodies, callouts and
// responses of calls the control plane allows (TestNoBundleDeniesByDefault covers the
// default without it).
const testConfig = `{"version":"jitgate.dev/filter/v1","maxRequestBodyBytes":65536,"identityOnly":true}`

// testClientAddress is Envoy's source.address property in every test host.
const testClientAddress = "192.0.2.7:40000"

// agentToken is the bearer token send puts on every request (unless noAuth is set).
const agentToken = "agent-secret-token"

// testLimit matches maxRequestBodyBytes in testConfig.
const testLimit = 65536

// startHost starts a host emulator for vm with the given plugin configuration and
// reports whether OnPluginStart succeeded.
func startHost(t *testing.T, vm types.VMContext, cfg string) (proxytest.HostEmulator, types.OnPluginStartStatus) {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithVMContext(vm).WithPluginConfiguration([]byte(cfg)).
		WithProperty([]string{"source", "address"}, []byte(testClientAddress))
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	if host.StartVM() != types.OnVMStartStatusOK {
		t.Fatal("OnVMStart failed")
	}
	return host, host.StartPlugin()
}

// configuredHost is startHost with testConfig, failing the test if the plugin does not start.
func configuredHost(t *testing.T, vm types.VMContext) proxytest.HostEmulator {
	t.Helper()
	host, status := startHost(t, vm, testConfig)
	if status != types.OnPluginStartStatusOK {
		t.Fatal("OnPluginStart rejected the test configuration")
	}
	return host
}

// request is one HTTP request as the host delivers it.
type request struct {
	method  string
	path    string
	headers [][2]string
	// chunks are body frames; nil means a request without a body.
	chunks [][]byte
	// trailers, when set, arrive after the chunks (the last chunk then has end_of_stream=false).
	trailers [][2]string
	// noAuth leaves out the Authorization header send adds by default.
	noAuth bool
	// answer is the control plane's answer to the authorize callout; nil answers with
	// allowAnswer().
	answer *answer
}

// outcome is what the host saw.
type outcome struct {
	headersAction types.Action
	lastAction    types.Action // the action of the last request callback, before the callout's answer
	// callout is the authorize callout the filter dispatched (nil when none); authz is
	// its body, decoded with the contract's strict parser.
	callout *proxytest.HttpCalloutAttribute
	authz   authorize.Request
	// streamAction is the request's state after the callout's answer: Continue only
	// once the filter resumed it towards upstream.
	streamAction types.Action
	// upstreamHeaders are the request headers as they stand after the answer: what goes
	// upstream when the request is forwarded.
	upstreamHeaders [][2]string
	// responseHeaders are the headers of a simulated upstream 200 as the agent gets them
	// (forwarded requests only).
	responseHeaders [][2]string
	reply           *proxytest.LocalHttpResponse
	logs            []string // info logs written while this request ran, including the log line
	allLogs         []string // logs of every level written while this request ran
}

// forwarded reports whether the request went upstream.
func (o outcome) forwarded() bool { return o.reply == nil && o.streamAction == types.ActionContinue }

// logLevels reads every log level the host keeps.
func logLevels(host proxytest.HostEmulator) [][]string {
	return [][]string{host.GetTraceLogs(), host.GetDebugLogs(), host.GetInfoLogs(), host.GetWarnLogs(), host.GetErrorLogs(), host.GetCriticalLogs()}
}

// logsSince returns the log lines of every level added after before (from logLevels).
func logsSince(host proxytest.HostEmulator, before [][]string) []string {
	var out []string
	for i, l := range logLevels(host) {
		out = append(out, l[len(before[i]):]...)
	}
	return out
}

// send drives one request through the plugin, answers its authorize callout (allow
// unless req.answer says otherwise), simulates an upstream 200 when the request was
// forwarded, and completes the stream.
func send(t *testing.T, host proxytest.HostEmulator, req request) outcome {
	t.Helper()
	before := len(host.GetInfoLogs())
	beforeAll := logLevels(host)
	id := host.InitializeHttpContext()
	headers := [][2]string{{":method", req.method}, {":path", req.path}, {":authority", "gateway"}}
	if !req.noAuth {
		headers = append(headers, [2]string{"authorization", "Bearer " + agentToken})
	}
	headers = append(headers, req.headers...)
	var out outcome
	out.headersAction = host.CallOnRequestHeaders(id, headers, req.chunks == nil && req.trailers == nil)
	out.lastAction = out.headersAction
	for i, c := range req.chunks {
		if host.GetSentLocalResponse(id) != nil {
			break // Envoy stops delivering the request after a local reply
		}
		eos := i == len(req.chunks)-1 && req.trailers == nil
		out.lastAction = host.CallOnRequestBody(id, c, eos)
	}
	if req.trailers != nil && host.GetSentLocalResponse(id) == nil {
		out.lastAction = host.CallOnRequestTrailers(id, req.trailers)
	}
	if host.GetSentLocalResponse(id) == nil {
		out.callout, out.authz = answerCallout(t, host, id, req.answer)
	}
	out.reply = host.GetSentLocalResponse(id)
	out.streamAction = host.GetCurrentHttpStreamAction(id)
	out.upstreamHeaders = host.GetCurrentRequestHeaders(id)
	if out.forwarded() {
		host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, false)
		out.responseHeaders = host.GetCurrentResponseHeaders(id)
	}
	host.CompleteHttpContext(id)
	out.logs = host.GetInfoLogs()[before:]
	out.allLogs = logsSince(host, beforeAll)
	return out
}

// answerCallout answers the stream's authorize callout, if it has one, with a (nil
// means allowAnswer()) and returns it with its decoded body. A stream never has more
// than one.
func answerCallout(t *testing.T, host proxytest.HostEmulator, id uint32, a *answer) (*proxytest.HttpCalloutAttribute, authorize.Request) {
	t.Helper()
	callouts := host.GetCalloutAttributesFromContext(id)
	if len(callouts) == 0 {
		return nil, authorize.Request{}
	}
	if len(callouts) > 1 {
		t.Errorf("%d authorize callouts for one request, want 1", len(callouts))
	}
	co := callouts[len(callouts)-1]
	if host.GetCurrentHttpStreamAction(id) != types.ActionPause {
		t.Errorf("request not paused while the callout is in flight")
	}
	authz, err := authorize.ParseRequest(co.Body)
	if err != nil {
		t.Errorf("callout body is not a contract request: %v", err)
	}
	if a == nil {
		a = allowAnswer(t)
	}
	host.CallOnHttpCallResponse(co.CalloutID, a.headers, nil, a.body)
	return &co, authz
}

// logLineOf returns the request's log line.
func (o outcome) logLine(t *testing.T) string {
	t.Helper()
	for _, l := range o.logs {
		if strings.HasPrefix(l, "jitgate: request ") {
			return l
		}
	}
	t.Fatalf("no request log line in %q", o.logs)
	return ""
}

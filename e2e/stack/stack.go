// Package stack starts a whole jitgate gateway on this machine from real parts: the
// BigQuery emulator as the upstream, the jitgated control plane (embedded NATS, or an
// external NATS the caller runs: Options.NATSURL) and a real Envoy running the compiled
// jitgate filter, configured over ADS. The e2e tests and
// `make run` (tools/devstack) both use it, so the demo runs exactly what is tested.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jitgate/jitgate/controlplane/mtls"
	"github.com/jitgate/jitgate/envoy"
	"github.com/jitgate/jitgate/tools/freeport"
)

// Options say where the parts are and which addresses to use. Empty addresses get free
// loopback ports.
type Options struct {
	// Root is the repository root (for .tools/).
	Root string
	// Jitgated, CLI and Wasm are the built control plane, operator CLI and filter module.
	Jitgated, CLI, Wasm string
	// Data is the emulator's seed YAML; Project is the project it creates.
	Data, Project string
	// WorkDir holds logs, the bootstrap and NATS' store.
	WorkDir string
	// Addresses (host:port). Empty: a free loopback port.
	AgentAddr, XDSAddr, APIAddr, FilterAddr, AdminAddr, EmulatorAddr, DevIssuerAddr string
	// Issuers are trusted by jitgated besides its development issuer.
	Issuers []Issuer
	// PoliciesDir, when set, is the policy directory jitgated loads, watches and enforces.
	PoliciesDir string
	// KeyMaxAge, when set, bounds how long a key removed from an issuer's JWKS still
	// verifies (identity.keyMaxAge); tests shorten it from the 5 minute default.
	KeyMaxAge time.Duration
	// Tap puts a recording proxy between Envoy and the emulator (see Tap).
	Tap bool
	// ExtraConfig is appended to jitgated's config file (top-level YAML sections).
	ExtraConfig string
	// NATSURL, when set, runs jitgated against this external NATS (with JetStream)
	// instead of its embedded one (--nats-url; no --nats-store-dir or --nats-listen), as
	// production does; the caller runs that NATS and may stop and restart it, for example
	// to test an outage. Stack.NATS is then this URL.
	NATSURL string
	// ExtraJitgatedArgs are appended to jitgated's command line.
	ExtraJitgatedArgs []string
	// Progress, if set, receives one line per step.
	Progress io.Writer
}

// Issuer is an OIDC issuer jitgated trusts.
type Issuer struct {
	URL       string
	Audiences []string
}

// Stack is a running gateway.
type Stack struct {
	opts  Options
	mu    sync.Mutex
	procs map[string]*proc
	// Gateway is the agents' endpoint, e.g. http://127.0.0.1:10000.
	Gateway string
	// Emulator is the upstream's base URL (tests use it to check what reached upstream).
	Emulator string
	// NATS is the client URL of jitgated's embedded NATS (--nats-listen), or
	// Options.NATSURL, for the CLI's audit and approvals commands.
	NATS string
	// Admin is Envoy's admin base URL; API is jitgated's plain HTTP API base URL; DevIssuer
	// is the development OIDC issuer jitgated runs for local agents.
	Admin, API, DevIssuer string
	// FilterAPI is jitgated's filter listener (https://, mutual TLS: EnvoyClient), XDS its
	// ADS address (mutual TLS too).
	FilterAPI, XDS string
	// TLSDir holds the private CA and certificates jitgated generated (mtls.Paths).
	TLSDir string
	// ServiceAccountKey is the throwaway upstream key jitgated mints credentials with.
	ServiceAccountKey string
	// Tap records what reached the upstream (nil unless Options.Tap).
	Tap          *Tap
	bootstrap    string
	jitgatedArgs []string
	extra        []string // extra Envoys' names
}

// Start brings the whole gateway up and returns once Envoy serves the agent listener with
// the jitgate filter configured. On error everything started is stopped again.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Project == "" {
		return nil, errors.New("stack: project is empty")
	}
	for _, p := range []string{o.Jitgated, o.CLI, o.Wasm, o.Data, EmulatorBinary(o.Root), EnvoyBinary(o.Root)} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("stack: %s is missing (run `make build` and tools/setup.sh): %w", p, err)
		}
	}
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, err
	}
	for _, a := range []*string{&o.AgentAddr, &o.XDSAddr, &o.APIAddr, &o.FilterAddr, &o.AdminAddr, &o.EmulatorAddr, &o.DevIssuerAddr} {
		if *a == "" {
			p, err := freeport.Get()
			if err != nil {
				return nil, err
			}
			*a = "127.0.0.1:" + strconv.Itoa(p)
		}
	}
	s := &Stack{
		opts:      o,
		procs:     map[string]*proc{},
		Gateway:   "http://" + o.AgentAddr,
		Emulator:  "http://" + o.EmulatorAddr,
		Admin:     "http://" + o.AdminAddr,
		API:       "http://" + o.APIAddr,
		FilterAPI: "https://" + o.FilterAddr,
		XDS:       o.XDSAddr,
		TLSDir:    filepath.Join(o.WorkDir, "tls"),
		// The issuer URL is what tokens carry as iss; jitgated serves it on loopback.
		DevIssuer:         "http://" + o.DevIssuerAddr,
		ServiceAccountKey: filepath.Join(o.WorkDir, "dev-service-account-key.json"),
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	_, emuPort, _ := net.SplitHostPort(o.EmulatorAddr)
	grpcPort, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	s.progress("starting BigQuery emulator on %s (project %s)", o.EmulatorAddr, o.Project)
	if err := s.start("emulator", EmulatorBinary(o.Root), "--project="+o.Project, "--host=127.0.0.1",
		"--port="+emuPort, "--grpc-port="+strconv.Itoa(grpcPort), "--data-from-yaml="+o.Data, "--log-level=warn"); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "emulator", 60*time.Second, s.Emulator+"/bigquery/v2/projects/"+o.Project+"/datasets", s.alive("emulator")); err != nil {
		return nil, s.withLogs(err, "emulator")
	}

	upstream := s.Emulator
	if o.Tap {
		if s.Tap, err = StartTap(s.Emulator); err != nil {
			return nil, err
		}
		upstream = s.Tap.URL
	}

	// A throwaway service-account key: the emulator checks no credentials, but jitgated
	// mints every upstream credential from it exactly as it would from a real key.
	if _, err := os.Stat(s.ServiceAccountKey); err != nil {
		if out, err := exec.CommandContext(ctx, o.CLI, "dev", "service-account-key", "--out", s.ServiceAccountKey).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("generate the dev service-account key: %v: %s", err, out)
		}
	}

	cfgFile, err := s.writeConfig()
	if err != nil {
		return nil, err
	}
	s.progress("starting jitgated (ADS %s, API %s, development OIDC issuer %s)", o.XDSAddr, o.APIAddr, s.DevIssuer)
	args := []string{"--config=" + cfgFile,
		"--dev-issuer", "--dev-issuer-listen=" + o.DevIssuerAddr, "--credentials-key-file=" + s.ServiceAccountKey,
		"--xds-listen=" + o.XDSAddr, "--api-listen=" + o.APIAddr, "--filter-listen=" + o.FilterAddr, "--tls-dir=" + s.TLSDir,
		"--agent-listen=" + o.AgentAddr,
		"--upstream=" + upstream, "--wasm=" + o.Wasm, "--log-format=json",
	}
	if o.NATSURL != "" {
		s.NATS = o.NATSURL
		args = append(args, "--nats-url="+o.NATSURL)
	} else {
		natsPort, err := freeport.Get()
		if err != nil {
			return nil, err
		}
		natsAddr := "127.0.0.1:" + strconv.Itoa(natsPort)
		s.NATS = "nats://" + natsAddr
		args = append(args, "--nats-store-dir="+filepath.Join(o.WorkDir, "nats"), "--nats-listen="+natsAddr)
	}
	s.jitgatedArgs = append(args, o.ExtraJitgatedArgs...)
	if err := s.StartJitgated(ctx); err != nil {
		return nil, err
	}

	boot, err := s.renderBootstrap("jitgate-e2e", o.AdminAddr)
	if err != nil {
		return nil, err
	}
	s.bootstrap = filepath.Join(o.WorkDir, "envoy-bootstrap.yaml")
	if err := os.WriteFile(s.bootstrap, boot, 0o644); err != nil {
		return nil, err
	}
	if err := s.StartEnvoy(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// renderBootstrap is an Envoy bootstrap with ADS over mutual TLS, using the client
// certificate jitgated generated in TLSDir (as `jitgate envoy bootstrap --tls-dir`).
func (s *Stack) renderBootstrap(node, admin string) ([]byte, error) {
	f := mtls.Paths(s.TLSDir).Envoy
	return envoy.Render(envoy.Params{NodeID: node, XDS: s.opts.XDSAddr, Admin: admin, CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key})
}

// EnvoyClient is an HTTP client holding Envoy's client certificate: what Envoy presents
// to FilterAPI (benchmarks of the callouts use it; an agent has no such certificate).
func (s *Stack) EnvoyClient() (*http.Client, error) {
	f := mtls.Paths(s.TLSDir).Envoy
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	pool, err := mtls.LoadCAPool(f.CA)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// writeConfig writes jitgated's config file: the development issuer keeps its signing key
// in the work dir (so tokens survive a jitgated restart), plus any extra issuers.
func (s *Stack) writeConfig() (string, error) {
	var b strings.Builder
	b.WriteString("apiVersion: jitgate.dev/v1\nkind: ControlPlaneConfig\n")
	fmt.Fprintf(&b, "devIssuer:\n  keyFile: %s\n", strconv.Quote(filepath.Join(s.opts.WorkDir, "dev-issuer-key.pem")))
	if len(s.opts.Issuers) > 0 || s.opts.KeyMaxAge > 0 {
		b.WriteString("identity:\n")
	}
	if s.opts.KeyMaxAge > 0 {
		fmt.Fprintf(&b, "  keyMaxAge: %s\n", s.opts.KeyMaxAge)
	}
	if len(s.opts.Issuers) > 0 {
		b.WriteString("  issuers:\n")
		for _, is := range s.opts.Issuers {
			fmt.Fprintf(&b, "  - issuer: %s\n    audiences: [", strconv.Quote(is.URL))
			for i, a := range is.Audiences {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(strconv.Quote(a))
			}
			b.WriteString("]\n")
		}
	}
	if s.opts.PoliciesDir != "" {
		fmt.Fprintf(&b, "policies:\n  dir: %s\n", strconv.Quote(s.opts.PoliciesDir))
	}
	// A development masking hash key per stack (kept across jitgated restarts, like the
	// issuer key): random, in the work dir, never printed.
	hashKey := filepath.Join(s.opts.WorkDir, "masking-hash.key")
	if _, err := os.Stat(hashKey); errors.Is(err, os.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return "", err
		}
		if err := os.WriteFile(hashKey, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(&b, "masking:\n  hashKeyFile: %s\n", strconv.Quote(hashKey))
	b.WriteString(s.opts.ExtraConfig)
	path := filepath.Join(s.opts.WorkDir, "jitgated.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// Token mints an agent token at the development issuer with the operator CLI, exactly
// as an agent author would (`jitgate dev token`).
func (s *Stack) Token(ctx context.Context, agent string, groups ...string) (string, error) {
	args := []string{"dev", "token", "--issuer", s.DevIssuer, "--agent", agent}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	out, err := exec.CommandContext(ctx, s.opts.CLI, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("jitgate dev token: %v: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("jitgate dev token: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// StartJitgated starts the control plane again after StopJitgated, with the same flags.
func (s *Stack) StartJitgated(ctx context.Context) error {
	if err := s.start("jitgated", s.opts.Jitgated, s.jitgatedArgs...); err != nil {
		return err
	}
	if err := waitFor(ctx, "jitgated", 60*time.Second, s.API+"/readyz", s.alive("jitgated")); err != nil {
		return s.withLogs(err, "jitgated")
	}
	return nil
}

// StopJitgated stops the control plane (Envoy keeps running on its last config).
func (s *Stack) StopJitgated() { s.stop("jitgated") }

// StartEnvoy starts Envoy (again) and waits until the agent listener is live with the
// jitgate filter's ECDS configuration applied.
func (s *Stack) StartEnvoy(ctx context.Context) error {
	s.progress("starting Envoy (admin %s, agents %s)", s.opts.AdminAddr, s.opts.AgentAddr)
	if err := s.start("envoy", EnvoyBinary(s.opts.Root), "-c", s.bootstrap, "--disable-hot-restart",
		"--log-level", "warn", "--component-log-level", "wasm:info", "--concurrency", "2",
		"--drain-time-s", "1"); err != nil {
		return err
	}
	if err := s.WaitEnvoyReady(ctx, 60*time.Second); err != nil {
		return s.withLogs(err, "envoy", "jitgated")
	}
	s.progress("gateway ready at %s", s.Gateway)
	return nil
}

// StartExtraEnvoy starts another Envoy (node id name) on the same control plane, as a
// second gateway replica would be; it shares the agent listener's port (SO_REUSEPORT) and
// has its own admin port. It returns the admin base URL once it serves with the jitgate
// filter configured; Close stops it.
func (s *Stack) StartExtraEnvoy(ctx context.Context, name string) (string, error) {
	port, err := freeport.Get()
	if err != nil {
		return "", err
	}
	admin := "127.0.0.1:" + strconv.Itoa(port)
	boot, err := s.renderBootstrap(name, admin)
	if err != nil {
		return "", err
	}
	path := filepath.Join(s.opts.WorkDir, name+"-bootstrap.yaml")
	if err := os.WriteFile(path, boot, 0o644); err != nil {
		return "", err
	}
	if err := s.start(name, EnvoyBinary(s.opts.Root), "-c", path, "--disable-hot-restart", "--log-level", "warn",
		"--concurrency", "1", "--drain-time-s", "1"); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.extra = append(s.extra, name)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if err := s.alive(name)(); err != nil {
			return "", s.withLogs(err, name)
		}
		if ok, _ := envoyReady(ctx, "http://"+admin); ok {
			return "http://" + admin, nil
		}
		select {
		case <-ctx.Done():
			return "", s.withLogs(fmt.Errorf("envoy %s not ready", name), name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopExtraEnvoy stops an Envoy started by StartExtraEnvoy.
func (s *Stack) StopExtraEnvoy(name string) { s.stop(name) }

// ConfigDump returns an Envoy admin's /config_dump.
func ConfigDump(ctx context.Context, admin string) (string, error) {
	_, dump, err := get(ctx, admin+"/config_dump")
	return dump, err
}

// StopEnvoy stops Envoy and waits for it to exit.
func (s *Stack) StopEnvoy() { s.stop("envoy") }

// WaitEnvoyReady polls Envoy's admin API (no fixed sleeps) until the server is LIVE, the
// agent listener is active and the jitgate filter's ECDS config has been applied.
func (s *Stack) WaitEnvoyReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if err := s.alive("envoy")(); err != nil {
			return err
		}
		ready, why := s.envoyReady(ctx)
		if ready {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy not ready after %s: %s", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Stack) envoyReady(ctx context.Context) (bool, string) { return envoyReady(ctx, s.Admin) }

func envoyReady(ctx context.Context, admin string) (bool, string) {
	code, body, err := get(ctx, admin+"/ready")
	if err != nil || code != 200 {
		return false, fmt.Sprintf("/ready: %d %v %s", code, err, strings.TrimSpace(body))
	}
	_, dump, err := get(ctx, admin+"/config_dump")
	if err != nil {
		return false, err.Error()
	}
	if !strings.Contains(dump, `"name": "jitgate_agents"`) || !strings.Contains(dump, `"active_state"`) {
		return false, "listener jitgate_agents not active yet"
	}
	if !strings.Contains(dump, "EcdsConfigDump") || !strings.Contains(dump, `"name": "jitgate"`) {
		return false, "ECDS config for the jitgate filter not applied yet"
	}
	return true, ""
}

// EnvoyStats returns the value of one Envoy counter or gauge (0 if absent).
func (s *Stack) EnvoyStats(ctx context.Context, name string) (int64, error) {
	_, body, err := get(ctx, s.Admin+"/stats?filter=^"+name+"$")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

// Log returns what a part has written so far (stdout and stderr).
func (s *Stack) Log(name string) string {
	b, _ := os.ReadFile(s.logPath(name))
	return string(b)
}

// Close stops every part, Envoy first.
func (s *Stack) Close() {
	s.mu.Lock()
	extra := s.extra
	s.mu.Unlock()
	for _, n := range append(extra, "envoy", "jitgated", "emulator") {
		s.stop(n)
	}
	if s.Tap != nil {
		s.Tap.Close()
	}
}

func (s *Stack) logPath(name string) string { return filepath.Join(s.opts.WorkDir, name+".log") }

func (s *Stack) start(name, bin string, args ...string) error {
	f, err := os.OpenFile(s.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "--- %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, and killed if we die: no child outlives a test or `make run`.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return nil
}

// proc is one child process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *Stack) alive(name string) func() error {
	return func() error {
		s.mu.Lock()
		p := s.procs[name]
		s.mu.Unlock()
		if p == nil {
			return fmt.Errorf("%s is not running", name)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", name, p.cmd.ProcessState)
		default:
			return nil
		}
	}
}

func (s *Stack) stop(name string) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (s *Stack) withLogs(err error, names ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%v", err)
	for _, n := range names {
		log := s.Log(n)
		if len(log) > 4000 {
			log = "..." + log[len(log)-4000:]
		}
		fmt.Fprintf(&b, "\n--- %s log (%s):\n%s", n, s.logPath(n), log)
	}
	return errors.New(b.String())
}

func (s *Stack) progress(format string, a ...any) {
	if s.opts.Progress != nil {
		fmt.Fprintf(s.opts.Progress, "[jitgate] "+format+"\n", a...)
	}
}

// WorkDir is the directory of the stack's logs, bootstrap, TLS files and NATS store.
func (s *Stack) WorkDir() string { return s.opts.WorkDir }

// EnvoyBinary and EmulatorBinary are where tools/setup.sh installs them.
func EnvoyBinary(root string) string { return filepath.Join(root, ".tools", "venv", "bin", "envoy") }
func EmulatorBinary(root string) string {
	return filepath.Join(root, ".tools", "bin", "bigquery-emulator")
}

// Python is the project venv's interpreter, which has google-cloud-bigquery.
func Python(root string) string { return filepath.Join(root, ".tools", "venv", "bin", "python") }

func waitFor(ctx context.Context, what string, timeout time.Duration, url string, alive func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if err := alive(); err != nil {
			return err
		}
		code, body, err := get(ctx, url)
		if err == nil && code == 200 {
			return nil
		}
		last = fmt.Sprintf("%d %v %s", code, err, strings.TrimSpace(body))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (%s): %s", what, timeout, url, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = io.Copy(&b, io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b.String(), err
}

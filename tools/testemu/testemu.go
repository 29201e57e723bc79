// Package testemu starts the real BigQuery emulator (installed by tools/setup.sh into
// .tools/bin) for tests that need an upstream without a whole gateway: one helper instead
// of a copy in every package that does.
package testemu

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jitgate/jitgate/tools/freeport"
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start runs the emulator for project, seeded with tools/demo/bigquery-data.yaml, with the
// extra flags given (e.g. "--dataset=crm"), and returns its base URL once it answers
// datasets.list; it is stopped when the test ends. The test is skipped only when the
// binary is not installed.
func Start(t testing.TB, project string, flags ...string) string {
	t.Helper()
	root := Root()
	bin := filepath.Join(root, ".tools", "bin", "bigquery-emulator")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("BigQuery emulator not installed at " + bin + " (run `make setup`)")
	}
	port, grpcPort := freeport.For(t), freeport.For(t)
	args := append([]string{"--project=" + project, "--host=127.0.0.1",
		"--port=" + strconv.Itoa(port), "--grpc-port=" + strconv.Itoa(grpcPort),
		"--data-from-yaml=" + filepath.Join(root, "tools", "demo", "bigquery-data.yaml"), "--log-level=warn"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url + "/bigquery/v2/projects/" + project + "/datasets")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator not ready after 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

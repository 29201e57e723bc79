//go:build !wasip1

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/filter/masking/internal/testpage"
)

var (
	buildOnce sync.Once
	wasmBin   []byte
	buildErr  error
)

// module builds this package for wasip1 once per test binary.
func module(tb testing.TB) []byte {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wasmbench")
		if err != nil {
			buildErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "wasmbench.wasm")
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, msg)
			return
		}
		wasmBin, buildErr = os.ReadFile(out)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return wasmBin
}

type result struct {
	rows, bytes int
	ns          int64
	sum         string
}

// runWasm runs the module once under wazero (compiler engine) with real clocks: with
// wazero's fake clock the Go runtime inside never collects garbage and memory grows.
func runWasm(tb testing.TB, size, iters int) result {
	tb.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.CompileModule(ctx, module(tb))
	if err != nil {
		tb.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().WithSysNanotime().WithSysWalltime().WithSysNanosleep().
		WithArgs("wasmbench", fmt.Sprint(size), fmt.Sprint(iters)).WithStdout(&stdout).WithStderr(&stderr)
	if _, err := r.InstantiateModule(ctx, mod, cfg); err != nil {
		var exit *sys.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 0 {
			tb.Fatalf("wasm run: %v\n%s", err, stderr.Bytes())
		}
	}
	var res result
	if _, err := fmt.Sscanf(stdout.String(), "rows=%d bytes=%d ns=%d sha256=%s", &res.rows, &res.bytes, &res.ns, &res.sum); err != nil {
		tb.Fatalf("unexpected output %q (%v)\n%s", stdout.String(), err, stderr.Bytes())
	}
	return res
}

// native masks the same page natively: checksum of one run, ns of iters runs.
func native(tb testing.TB, size, iters int) result {
	page, rows := testpage.Page(size)
	out, _, _, err := masking.MaskResponse(page, nil, Plan())
	if err != nil {
		tb.Fatal(err)
	}
	res := result{rows: rows, bytes: len(page), sum: fmt.Sprintf("%x", sha256.Sum256(out))}
	start := time.Now()
	for range iters {
		if _, _, _, err := masking.MaskResponse(page, nil, Plan()); err != nil {
			tb.Fatal(err)
		}
	}
	res.ns = time.Since(start).Nanoseconds()
	return res
}

// TestWasmMatchesNative: the engine compiled to wasm masks exactly like the native one.
func TestWasmMatchesNative(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasm module")
	}
	w, n := runWasm(t, 256<<10, 1), native(t, 256<<10, 1)
	if w.sum != n.sum || w.rows != n.rows {
		t.Fatalf("wasm %+v, native %+v", w, n)
	}
}

// BenchmarkMaskWasm masks 1 MB and 10 MB pages inside the wasm module and natively,
// reporting MB/s for each and the wasm/native throughput ratio. The ns/op and MB/s of
// the benchmark itself include instantiating the module and generating the page; the
// wasm-MB/s and native-MB/s metrics time the masking loops alone.
func BenchmarkMaskWasm(b *testing.B) {
	module(b)
	for _, size := range []int{1 << 20, 10 << 20} {
		b.Run(fmt.Sprintf("%dMB", size>>20), func(b *testing.B) {
			iters := b.N
			b.SetBytes(int64(size))
			w := runWasm(b, size, iters)
			b.StopTimer()
			n := native(b, size, iters)
			wasmMBs := float64(w.bytes) * float64(iters) / (float64(w.ns) / 1e9) / 1e6
			nativeMBs := float64(n.bytes) * float64(iters) / (float64(n.ns) / 1e9) / 1e6
			b.ReportMetric(wasmMBs, "wasm-MB/s")
			b.ReportMetric(nativeMBs, "native-MB/s")
			b.ReportMetric(wasmMBs/nativeMBs, "wasm/native")
			if w.sum != n.sum {
				b.Fatalf("wasm and native outputs differ")
			}
		})
	}
}

// Command wasmbench runs the masking engine inside a wasm module (GOOS=wasip1
// GOARCH=wasm) for the benchmark in bench_test.go, which runs it under wazero.
//
// Usage: wasmbench <page bytes> <iterations> [full|rules|detectors|scan]. It masks a generated page (testpage) with
// the benchmark plan and prints "rows=R bytes=B ns=T sha256=H": T covers the iterations
// only (after one warm-up), H is the SHA-256 of the masked output (to compare with a
// native run).
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jitgate/jitgate/filter/masking"
	"github.com/jitgate/jitgate/filter/masking/internal/testpage"
)

// Key is the benchmark's HMAC key (also used by the native side of the comparison).
const Key = "wasmbench-hmac-key-0123456789abcdef"

// Plan is the benchmark plan.
func Plan() masking.Plan {
	p := masking.Plan{Key: masking.NewKey([]byte(Key)), Detectors: testpage.Detectors}
	for _, r := range testpage.Rules {
		p.Rules = append(p.Rules, masking.Rule{Path: r.Path, Action: masking.Action(r.Action)})
	}
	return p
}

// PlanVariant is the benchmark plan with only its rules, only its detectors, or
// neither (scan: validate and count rows only).
func PlanVariant(v string) masking.Plan {
	p := Plan()
	switch v {
	case "rules":
		p.Detectors = nil
	case "detectors":
		p.Rules = nil
	case "scan":
		p.Rules, p.Detectors = nil, nil
	}
	return p
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: wasmbench <page bytes> <iterations> [full|rules|detectors|scan]")
		os.Exit(2)
	}
	size, err1 := strconv.Atoi(os.Args[1])
	iters, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil || size <= 0 || iters <= 0 {
		fmt.Fprintln(os.Stderr, "bad arguments")
		os.Exit(2)
	}
	page, rows := testpage.Page(size)
	plan := Plan()
	if len(os.Args) == 4 {
		plan = PlanVariant(os.Args[3])
	}
	out, _, _, err := masking.MaskResponse(page, nil, plan) // warm-up, and the checksum
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sum := sha256.Sum256(out)
	start := time.Now()
	for range iters {
		if _, _, _, err := masking.MaskResponse(page, nil, plan); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	fmt.Printf("rows=%d bytes=%d ns=%d sha256=%x\n", rows, len(page), time.Since(start).Nanoseconds(), sum)
}

// Package freeport hands out loopback TCP ports for servers that a test or the demo starts in
// a child process (the emulator, jitgated, Envoy), where a listener cannot be passed in.
//
// Asking the kernel for port 0 and closing the listener again is racy: the port comes from
// the ephemeral range, and any outgoing connection on the machine (Envoy to its upstream, a
// client to the gateway) may take it as its local port before the child binds it, which then
// fails with "address already in use". Ports handed out here come from below the ephemeral
// range (net.ipv4.ip_local_port_range), which the kernel never picks for a connection, are
// checked free, and are never handed out twice by one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is where the search starts: well clear of the well-known and common service ports.
const lowest = 20000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Get returns a loopback TCP port that is free now, lies outside the kernel's ephemeral
// range and has not been returned before by this process.
func Get() (int, error) {
	lo, hi := lowest, ephemeralStart()-1
	if hi-lo < 1000 {
		// The ephemeral range starts unusually low: fall back to the kernel's choice.
		return kernelPort()
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		p := lo + rand.IntN(hi-lo+1)
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port found in %d-%d", lo, hi)
}

// Addr is Get as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Get()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// ephemeralStart reads the first port of the kernel's ephemeral range (Linux); the usual
// default when it cannot be read.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// For is Get for tests: it fails t when no port can be found.
func For(t testing.TB) int {
	t.Helper()
	p, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Command filter is the jitgate Envoy filter, built as a proxy-wasm module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o build/jitgate.wasm ./filter
//
// main stays empty (a c-shared wasip1 module never runs it); init registers the plugin.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"

	"github.com/jitgate/jitgate/filter/plugin"
)

func main() {}

func init() {
	proxywasm.SetVMContext(plugin.NewVMContext())
}

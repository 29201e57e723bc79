package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/tetratelabs/wazero"
)

// envoyHostFunctions is every function Envoy 1.40's Wasm runtime registers for a module
// built against proxy-wasm ABI 0.2.x, taken from proxy-wasm/proxy-wasm-cpp-host
// (commit 52a02917b301c679ff43565064cffd2c3c750f6d, 2026-07-01):
//   - include/proxy-wasm/exports.h FOR_ALL_HOST_FUNCTIONS, registered as "env" "proxy_"+name
//     by WasmBase::registerCallbacks in src/wasm.cc;
//   - the ABI-specific ones src/wasm.cc registers for ProxyWasm_0_2_0/0_2_1
//     (continue_stream, close_stream, and get_log_level for 0.2.1 only);
//   - FOR_ALL_WASI_FUNCTIONS in exports.h, registered under "wasi_snapshot_preview1"
//     (some are stubs returning ENOSYS, but they link).
//
// A module importing anything else fails to load in Envoy, which is only discovered at
// ECDS time in production; this test discovers it at build time.
var envoyHostFunctions = map[string][]string{
	"env": {
		"proxy_log", "proxy_get_status", "proxy_set_property", "proxy_get_property",
		"proxy_send_local_response", "proxy_get_shared_data", "proxy_set_shared_data",
		"proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_dequeue_shared_queue",
		"proxy_enqueue_shared_queue", "proxy_get_header_map_value", "proxy_add_header_map_value",
		"proxy_replace_header_map_value", "proxy_remove_header_map_value",
		"proxy_get_header_map_pairs", "proxy_set_header_map_pairs", "proxy_get_header_map_size",
		"proxy_get_buffer_status", "proxy_get_buffer_bytes", "proxy_set_buffer_bytes",
		"proxy_http_call", "proxy_grpc_call", "proxy_grpc_stream", "proxy_grpc_close",
		"proxy_grpc_cancel", "proxy_grpc_send", "proxy_set_tick_period_milliseconds",
		"proxy_get_current_time_nanoseconds", "proxy_define_metric", "proxy_increment_metric",
		"proxy_record_metric", "proxy_get_metric", "proxy_set_effective_context", "proxy_done",
		"proxy_call_foreign_function",
		// ABI 0.2.x specific.
		"proxy_continue_stream", "proxy_close_stream",
		// Registered unconditionally for Emscripten modules.
		"pthread_equal", "emscripten_notify_memory_growth",
	},
	"wasi_snapshot_preview1": {
		"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_fdstat_set_rights", "environ_get", "environ_sizes_get", "args_get", "args_sizes_get",
		"clock_time_get", "clock_res_get", "fd_advise", "fd_allocate", "fd_datasync",
		"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_pwrite", "fd_readdir",
		"fd_renumber", "fd_sync", "fd_tell", "path_create_directory", "path_filestat_set_times",
		"path_link", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
		"path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
		"random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open", "fd_prestat_get",
		"fd_prestat_dir_name", "path_filestat_get", "fd_filestat_get",
	},
}

func TestWasmImportsProvidedByEnvoy(t *testing.T) {
	path := filepath.Join("..", "build", "jitgate.wasm")
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s is missing (%v): run `make build` first", path, err)
	}
	ctx := context.Background()
	// The interpreter only validates and decodes, which is all this test needs.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	mod, err := r.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("compile %s: %v", path, err)
	}
	allowed := map[[2]string]bool{}
	for module, names := range envoyHostFunctions {
		for _, n := range names {
			allowed[[2]string{module, n}] = true
		}
	}
	var imports []string
	for _, f := range mod.ImportedFunctions() {
		module, name, _ := f.Import()
		imports = append(imports, module+"."+name)
		if !allowed[[2]string{module, name}] {
			t.Errorf("the module imports %s.%s, which Envoy does not provide", module, name)
		}
	}
	if len(mod.ImportedMemories()) != 0 {
		t.Errorf("the module imports memory; Envoy expects it to export its own")
	}
	if len(imports) == 0 {
		t.Fatal("no imports found: not a proxy-wasm module?")
	}
	sort.Strings(imports)
	t.Logf("%d imports: %v", len(imports), imports)

	// Envoy also needs the module to declare its ABI version and lifecycle entry points.
	exports := mod.ExportedFunctions()
	for _, want := range []string{"proxy_abi_version_0_2_0", "proxy_on_context_create", "proxy_on_request_headers", "proxy_on_memory_allocate", "_initialize"} {
		if _, ok := exports[want]; !ok {
			t.Errorf("the module does not export %s", want)
		}
	}
}

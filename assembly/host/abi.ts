// SPDX-License-Identifier: Apache-2.0
// The proxy-wasm ABI 0.2.1 as this plugin uses it: the host functions (declared by
// @solo-io/proxy-runtime's imports.ts, which compiles unchanged on this AssemblyScript) and the
// numeric constants of the spec. Only the host layer (assembly/host/) imports this file.

export {
  proxy_log,
  proxy_get_property,
  proxy_set_property,
  proxy_get_header_map_value,
  proxy_get_header_map_pairs,
  proxy_remove_header_map_value,
  proxy_replace_header_map_value,
  proxy_get_buffer_bytes,
  proxy_define_metric,
  proxy_increment_metric,
  proxy_record_metric,
  proxy_get_current_time_nanoseconds,
  proxy_http_call,
  proxy_continue_stream,
  proxy_send_local_response,
  proxy_set_effective_context,
} from "@solo-io/proxy-runtime/assembly/imports";

// proxy-runtime 0.1.8 predates ABI 0.2.1 and does not declare this one. Envoy registers it only
// for modules that export proxy_abi_version_0_2_1, which ours does (see exports.ts).
// @ts-ignore: decorator
@external("env", "proxy_get_log_level")
export declare function proxy_get_log_level(level_ptr: usize): u32;

// proxy-runtime 0.1.8 has no proxy_set_buffer_bytes (its `proxy_set_buffer_status` is bound to
// the import proxy_get_buffer_status by mistake), so it is declared here.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
export declare function proxy_set_buffer_bytes(
  type: i32,
  start: u32,
  length: u32,
  data_ptr: usize,
  data_size: usize,
): u32;

// WASI, which Envoy registers for every module (proxy-wasm-cpp-host include/proxy-wasm/exports.h,
// FOR_ALL_WASI_FUNCTIONS): the VM's environment variables (vm_config.environment_variables,
// Istio's WasmPlugin vmConfig.env) as NAME=value strings. Read once per configuration.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_sizes_get")
export declare function environ_sizes_get(count_ptr: usize, size_ptr: usize): u16;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_get")
export declare function environ_get(environ_ptr: usize, buf_ptr: usize): u16;

export namespace WasmResult {
  export const Ok: u32 = 0;
  export const NotFound: u32 = 1;
}

export namespace LogLevel {
  export const Trace: u32 = 0;
  export const Debug: u32 = 1;
  export const Info: u32 = 2;
  export const Warn: u32 = 3;
  export const Error: u32 = 4;
  export const Critical: u32 = 5;
}

export namespace BufferType {
  export const HttpRequestBody: i32 = 0;
  export const HttpResponseBody: i32 = 1;
  export const HttpCallResponseBody: i32 = 4;
  export const PluginConfiguration: i32 = 7;
}

export namespace HeaderMapType {
  export const RequestHeaders: i32 = 0;
  export const ResponseHeaders: i32 = 2;
  export const HttpCallResponseHeaders: i32 = 6;
}

/** WasmStreamType of proxy_continue_stream (ABI 0.2.1). */
export const STREAM_REQUEST: u32 = 0;

/** FilterHeadersStatus StopIteration: the request waits (Envoy turns it into StopAllIterationAndWatermark). */
export const STOP_ITERATION: u32 = 1;

export namespace MetricType {
  export const Counter: i32 = 0;
  export const Gauge: i32 = 1;
  export const Histogram: i32 = 2;
}

/** FilterHeadersStatus and FilterDataStatus share the value 0 for Continue. */
export const CONTINUE: u32 = 0;

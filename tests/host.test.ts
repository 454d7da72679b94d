// SPDX-License-Identifier: Apache-2.0
// The test host's own checks can fail: modules that misbehave on purpose (built here from a few
// lines of AssemblyScript) are caught holding a chunk or trapping; its http calls, pauses and
// local replies behave as Envoy's (tests/host/http-call-checks.ts).

import { test } from "node:test";
import assert from "node:assert/strict";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "./host/host.ts";
import { extractTags } from "./host/telemetry.ts";
import { httpCallChecks } from "./host/http-call-checks.ts";

async function build(source: string): Promise<WebAssembly.Module> {
  const result = await asc.compileString(source, { optimizeLevel: 1, runtime: "stub", use: ["abort="] });
  if (result.error) throw new Error(result.stderr.toString());
  return WebAssembly.compile(new Uint8Array(result.binary!));
}

const HEADER = `
export function proxy_abi_version_0_2_1(): void {}
export function malloc(n: usize): usize { return heap.alloc(n); }
export function proxy_on_context_create(id: u32, root: u32): void {}
export function proxy_on_configure(id: u32, size: u32): u32 { return 1; }
`;

test("a module that buffers the response body is reported as holding chunks", async () => {
  const module = await build(
    HEADER +
      `export function proxy_on_response_body(id: u32, size: u32, eos: u32): u32 { return eos ? 0 : 1; }`,
  );
  const host = new ProxyWasmHost(module);
  await host.start();
  const s = host.stream();
  s.sendResponseChunks("abcdef", [2, 4]);
  assert.equal(s.held, 2);
  assert.equal(s.forwardedResponse.length, 1, "everything left in one piece at the end");
  assert.equal(new TextDecoder().decode(s.forwarded("response")), "abcdef");
});

test("a module that traps fails the VM and the trap is kept", async () => {
  const module = await build(
    HEADER +
      `export function proxy_on_request_headers(id: u32, n: u32, eos: u32): u32 { unreachable(); return 0; }`,
  );
  const host = new ProxyWasmHost(module);
  await host.start();
  const s = host.stream();
  s.sendRequestHeaders({ ":method": "GET" }, true);
  assert.equal(host.traps.length, 1);
  assert.equal(host.failed, true);
});

test("a configure that returns false is a load failure, as in Envoy", async () => {
  const module = await build(HEADER.replace("return 1; }", "return 0; }"));
  await assert.rejects(new ProxyWasmHost(module).start(), /proxy_on_configure returned false/);
});

test("tag extraction removes the first group and keeps the second as the value", () => {
  const specs = [
    { tag_name: "a", regex: "(\\|a=([^|]*))" },
    { tag_name: "ab", regex: "(\\|ab=([^|]*))" },
  ];
  assert.deepEqual(extractTags("wasmcustom.m|ab=2|a=1", specs), {
    name: "wasmcustom.m",
    tags: [
      ["a", "1"],
      ["ab", "2"],
    ],
  });
  assert.deepEqual(extractTags("wasmcustom.m", specs), { name: "wasmcustom.m", tags: [] });
});

test("the built plugin imports only host functions Envoy registers for ABI 0.2.1, and exports what it calls", async () => {
  const { readFileSync } = await import("node:fs");
  const { WASM } = await import("./seed.ts");
  const module = new WebAssembly.Module(readFileSync(WASM));
  // Envoy's proxy-wasm host functions; a module that imports anything else (env.abort, a WASI call
  // it does not provide) fails to load: "Failed to load Wasm module due to a missing import".
  const known = new Set(
    "proxy_log proxy_get_log_level proxy_get_status proxy_set_tick_period_milliseconds proxy_get_current_time_nanoseconds proxy_get_property proxy_set_property proxy_continue_stream proxy_close_stream proxy_send_local_response proxy_get_shared_data proxy_set_shared_data proxy_register_shared_queue proxy_resolve_shared_queue proxy_dequeue_shared_queue proxy_enqueue_shared_queue proxy_add_header_map_value proxy_get_header_map_value proxy_get_header_map_pairs proxy_set_header_map_pairs proxy_replace_header_map_value proxy_remove_header_map_value proxy_get_header_map_size proxy_get_buffer_bytes proxy_get_buffer_status proxy_set_buffer_bytes proxy_http_call proxy_define_metric proxy_increment_metric proxy_record_metric proxy_get_metric proxy_set_effective_context proxy_done".split(
      " ",
    ),
  );
  // Of WASI (registered by Envoy for every module, proxy-wasm-cpp-host exports.h), only the VM
  // environment, read once per configuration for providers' api_key_env.
  const wasi = new Set(["environ_sizes_get", "environ_get"]);
  const imports = WebAssembly.Module.imports(module);
  assert.deepEqual(
    imports
      .filter((i) => !(i.module === "env" && known.has(i.name)))
      .filter((i) => !(i.module === "wasi_snapshot_preview1" && wasi.has(i.name)))
      .map((i) => `${i.module}.${i.name}`),
    [],
  );
  const exports = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  for (const name of [
    "memory",
    "malloc",
    "proxy_abi_version_0_2_1",
    "proxy_on_context_create",
    "proxy_on_configure",
    "proxy_on_request_headers",
    "proxy_on_response_body",
    "proxy_on_log",
    "proxy_on_delete",
    "proxy_on_http_call_response",
  ]) {
    assert.ok(exports.has(name), `exports ${name}`);
  }
});

httpCallChecks();

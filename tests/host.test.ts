// SPDX-License-Identifier: Apache-2.0
// The test host's own checks can fail: modules that misbehave on purpose (built here from a few
// lines of AssemblyScript) are caught holding a chunk or trapping.

import { test } from "node:test";
import assert from "node:assert/strict";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "./host/host.ts";
import { extractTags } from "./host/telemetry.ts";

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

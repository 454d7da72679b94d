// SPDX-License-Identifier: Apache-2.0
// Checks of the test host's proxy_http_call, pause, continue and local reply (registered by
// tests/host.test.ts, the host's own checks), driven by a small module
// built here: it calls the cluster the request's x-cluster header names and stops the request;
// on the answer it continues the stream, or sends a local reply when the body says "deny". The
// host must hold the request (and its body) from the upstream until it is continued, serve the
// answer's headers and body during on_http_call_response alone, and answer as Envoy's async
// client does on a timeout (504), an unreachable cluster (503) and a reset (0 headers).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import asc from "assemblyscript/asc";
import { ProxyWasmHost, parsePairs, WasmResult } from "./host.ts";
import { exchange } from "./exchange.ts";
import { freePort } from "../../ratelimit/tests/redis.ts";

const MODULE = `
@external("env", "proxy_http_call")
declare function http_call(up: usize, upl: usize, hp: usize, hl: usize, bp: usize, bl: usize, tp: usize, tl: usize, timeout: u32, token: usize): u32;
@external("env", "proxy_get_header_map_value")
declare function get_header(t: u32, kp: usize, kl: usize, vp: usize, vl: usize): u32;
@external("env", "proxy_get_header_map_pairs")
declare function get_pairs(t: u32, p: usize, s: usize): u32;
@external("env", "proxy_get_buffer_bytes")
declare function get_buffer(t: u32, start: u32, len: u32, p: usize, s: usize): u32;
@external("env", "proxy_set_effective_context")
declare function set_effective_context(id: u32): u32;
@external("env", "proxy_continue_stream")
declare function continue_stream(t: u32): u32;
@external("env", "proxy_send_local_response")
declare function send_local_response(status: u32, dp: usize, dl: usize, bp: usize, bl: usize, hp: usize, hl: usize, grpc: i32): u32;
@external("env", "proxy_set_property")
declare function set_property(pp: usize, pl: usize, vp: usize, vl: usize): u32;

export function proxy_abi_version_0_2_1(): void {}
export function malloc(n: usize): usize { return heap.alloc(n); }
export function proxy_on_context_create(id: u32, root: u32): void {}
export function proxy_on_configure(id: u32, size: u32): u32 { return 1; }

let waiting: u32 = 0;

function utf8(s: string): ArrayBuffer { return String.UTF8.encode(s); }
function prop(name: string, value: ArrayBuffer): void {
  const k = utf8(name);
  set_property(changetype<usize>(k), k.byteLength, changetype<usize>(value), value.byteLength);
}
/** proxy-wasm pairs: count, then (key length, value length) each, then NUL-ended strings. */
function pairs(list: string[]): ArrayBuffer {
  const n = list.length / 2;
  let size = 4 + n * 8;
  const parts: ArrayBuffer[] = [];
  for (let i = 0; i < list.length; i++) { const b = utf8(list[i]); parts.push(b); size += b.byteLength + 1; }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, n);
  let p = base + 4 + n * 8;
  for (let i = 0; i < parts.length; i++) {
    const b = parts[i];
    store<u32>(base + 4 + (i >> 1) * 8 + (i & 1) * 4, b.byteLength);
    memory.copy(p, changetype<usize>(b), b.byteLength);
    p += b.byteLength + 1;
  }
  return out;
}
const ptr = memory.data(8);

export function proxy_on_request_headers(id: u32, n: u32, eos: u32): u32 {
  const key = utf8("x-cluster");
  if (get_header(0, changetype<usize>(key), key.byteLength, ptr, ptr + 4) != 0) return 0;
  const cluster = load<usize>(ptr);
  const clusterLen = load<u32>(ptr + 4);
  const headers = pairs([":method", "GET", ":path", "/check", ":authority", "svc"]);
  const result = http_call(cluster, clusterLen, changetype<usize>(headers), headers.byteLength, 0, 0, 0, 0, 200, ptr);
  prop("call_result", utf8(result.toString()));
  if (result != 0) return 0;
  waiting = id;
  return 1;
}

export function proxy_on_http_call_response(root: u32, token: u32, headers: u32, size: u32, trailers: u32): void {
  const stream = waiting;
  if (set_effective_context(stream) != 0) return;
  prop("root", utf8(root.toString()));
  if (headers == 0) { prop("outcome", utf8("reset")); continue_stream(0); return; }
  get_pairs(6, ptr, ptr + 4);
  prop("pairs", changetype<ArrayBuffer>(load<usize>(ptr)).slice(0, load<u32>(ptr + 4)));
  get_buffer(4, 0, size, ptr, ptr + 4);
  const body = String.UTF8.decodeUnsafe(load<usize>(ptr), load<u32>(ptr + 4));
  prop("body", utf8(body));
  if (body == "deny") {
    const details = utf8("denied_by_test");
    const text = utf8("denied");
    const extra = pairs(["x-reason", "budget"]);
    send_local_response(429, changetype<usize>(details), details.byteLength, changetype<usize>(text), text.byteLength, changetype<usize>(extra), extra.byteLength, -1);
  } else continue_stream(0);
}
`;

/** Registers the checks (before/after hooks start and stop their loopback servers). */
export function httpCallChecks(): void {
  let module: WebAssembly.Module;
  let service: Server;
  let servicePort = 0;
  let upstream: Server;
  let upstreamPort = 0;
  let upstreamRequests = 0;
  let mode: "allow" | "deny" | "slow" | "reset" = "allow";
  let closedPort = 0;

  before(async () => {
    const result = await asc.compileString(MODULE, { optimizeLevel: 1, runtime: "stub", use: ["abort="] });
    if (result.error) throw new Error(result.stderr.toString());
    module = await WebAssembly.compile(new Uint8Array(result.binary!));
    service = createServer((req, res) => {
      if (mode === "slow") setTimeout(() => res.end("allow"), 600);
      else if (mode === "reset") {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial");
        setTimeout(() => res.destroy(), 20);
      } else res.end(mode);
    });
    upstream = createServer((req, res) => {
      upstreamRequests++;
      req.resume();
      req.on("end", () => res.end("from upstream"));
    });
    await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    servicePort = (service.address() as { port: number }).port;
    upstreamPort = (upstream.address() as { port: number }).port;
    closedPort = await freePort();
  });

  after(() => {
    service.closeAllConnections();
    service.close();
    upstream.close();
  });

  async function host(): Promise<ProxyWasmHost> {
    const h = new ProxyWasmHost(module, {
      clusters: { svc: servicePort, down: closedPort },
    });
    await h.start();
    return h;
  }

  const answer = (s: { state(k: string): string | undefined; filterState: Map<string, Uint8Array> }) => {
    const raw = s.filterState.get("wasm.pairs");
    return raw ? Object.fromEntries(parsePairs(raw)) : undefined;
  };

  test("a paused request and its body wait for the call's answer; continue sends them on", async () => {
    mode = "allow";
    const h = await host();
    const s = h.stream();
    s.sendRequestHeaders({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      ":authority": "llm",
      "x-cluster": "svc",
    });
    s.sendRequestBody("abc", true);
    assert.equal(s.requestPaused, true);
    assert.equal(s.forwarded("request").length, 0, "nothing reached the filter's next stage yet");
    let released: string | undefined;
    s.released.then((how) => (released = how));
    await new Promise((r) => setImmediate(r));
    assert.equal(released, undefined, "held until the answer");
    await h.idle();
    assert.equal(released, "continue");
    assert.equal(new TextDecoder().decode(s.forwarded("request")), "abc", "the waiting body, after continue");
    assert.equal(s.state("wasm.root"), "1", "the answer goes to the root context");
    assert.equal(answer(s)?.[":status"], "200");
    assert.equal(s.state("wasm.body"), "allow");
    const [call] = h.httpCalls;
    assert.equal(call.cluster, "svc");
    assert.equal(call.stream, s.id);
    assert.deepEqual(call.headers.slice(0, 3), [
      [":method", "GET"],
      [":path", "/check"],
      [":authority", "svc"],
    ]);
    assert.equal(call.status, 200);
    h.close();
  });

  test("a local reply goes through the response callbacks, ends the stream, and the upstream is never called", async () => {
    mode = "deny";
    const h = await host();
    const before = upstreamRequests;
    const call = () =>
      exchange(
        h,
        {
          method: "POST",
          path: "/v1/chat/completions",
          authority: "llm",
          headers: { "x-cluster": "svc" },
          body: "{}",
        },
        upstreamPort,
      );
    const r = await call();
    assert.equal(r.local, true);
    assert.equal(r.status, 429);
    assert.equal(r.body, "denied");
    assert.equal(upstreamRequests, before, "upstream untouched");
    assert.deepEqual(r.stream.responseHeaders, [
      [":status", "429"],
      ["content-length", "6"],
      ["content-type", "text/plain"],
      ["x-reason", "budget"],
    ]);
    assert.equal(r.stream.localReply?.details, "denied_by_test");
    assert.equal(r.stream.ended, true);
    // Allowed, the same exchange reaches the upstream once.
    mode = "allow";
    const ok = await call();
    assert.equal(ok.local, false);
    assert.equal(ok.body, "from upstream");
    assert.equal(upstreamRequests, before + 1);
    h.close();
  });

  test("the call's timeout answers 504, an unreachable cluster 503, a reset 0 headers", async () => {
    const h = await host();
    mode = "slow";
    const slow = h.stream();
    slow.sendRequestHeaders(
      { ":method": "GET", ":path": "/", ":authority": "llm", "x-cluster": "svc" },
      true,
    );
    await h.idle();
    assert.equal(answer(slow)?.[":status"], "504");
    assert.equal(slow.state("wasm.body"), "upstream request timeout");
    const ms = h.httpCalls[0].ms!;
    assert.ok(ms >= 195 && ms < 550, `${ms} ms: the 200 ms timeout decides, not the 600 ms answer`);
    assert.equal(slow.requestPaused, false);

    const down = h.stream();
    down.sendRequestHeaders(
      { ":method": "GET", ":path": "/", ":authority": "llm", "x-cluster": "down" },
      true,
    );
    await h.idle();
    assert.equal(answer(down)?.[":status"], "503");

    mode = "reset";
    const reset = h.stream();
    reset.sendRequestHeaders(
      { ":method": "GET", ":path": "/", ":authority": "llm", "x-cluster": "svc" },
      true,
    );
    await h.idle();
    assert.equal(reset.state("wasm.outcome"), "reset");
    assert.equal(h.httpCalls[2].status, 0);
    h.close();
  });

  test("an unknown cluster is BadArgument and nothing is sent", async () => {
    const h = await host();
    const s = h.stream();
    s.sendRequestHeaders(
      { ":method": "GET", ":path": "/", ":authority": "llm", "x-cluster": "nowhere" },
      true,
    );
    assert.equal(s.state("wasm.call_result"), String(WasmResult.BadArgument));
    assert.equal(h.httpCalls.length, 0);
    assert.equal(s.requestPaused, false);
    let released: string | undefined;
    s.released.then((how) => (released = how));
    await new Promise((r) => setImmediate(r));
    assert.equal(released, "continue");
    h.close();
  });
}

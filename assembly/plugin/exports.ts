// SPDX-License-Identifier: Apache-2.0
// The proxy-wasm ABI 0.2.1 callbacks. They route each call to its Root or Stream and always let
// the stream continue. Unlike the SDK's dispatcher, nothing here traps on an unknown context id,
// a root id without a factory (Istio's root id is WasmPlugin.pluginName, often empty) or an empty
// configuration.

import { Root, definedSinceCollect, collected } from "./root";
import { Stream } from "./stream";
import { readBuffer, bufferLength, release, BufferType, CONTINUE } from "../host/host";

const roots = new Map<u32, Root>();
const streams = new Map<u32, Stream>();
/** The stream of the last lookup: the callbacks of one stream come one after the other. */
let lastId: u32 = 0;
let lastStream: Stream | null = null;

/** The stream of a context id, or null: one map lookup per stream rather than two per callback. */
function streamOf(id: u32): Stream | null {
  if (id == lastId && lastStream !== null) return lastStream;
  if (!streams.has(id)) return null;
  const s = streams.get(id);
  lastId = id;
  lastStream = s;
  return s;
}
/** Used if a stream names a root context the VM never saw (not expected from Envoy). */
let fallbackRoot: Root | null = null;

function rootFor(id: u32): Root {
  if (roots.has(id)) return roots.get(id);
  let root = fallbackRoot;
  if (root === null) {
    root = new Root();
    fallbackRoot = root;
  }
  return root;
}

export function proxy_abi_version_0_2_1(): void {}

export function proxy_on_context_create(contextId: u32, rootContextId: u32): void {
  if (rootContextId == 0) roots.set(contextId, new Root());
  else {
    streams.set(contextId, new Stream(rootFor(rootContextId)));
    if (contextId == lastId) lastStream = null;
  }
}

export function proxy_on_vm_start(rootContextId: u32, configurationSize: u32): u32 {
  return 1;
}

export function proxy_on_configure(rootContextId: u32, configurationSize: u32): u32 {
  const root = rootFor(rootContextId);
  const ptr = readBuffer(BufferType.PluginConfiguration, 0, configurationSize);
  const bytes = new Uint8Array(<i32>bufferLength);
  if (ptr != 0) {
    memory.copy(bytes.dataStart, ptr, bufferLength);
    release(ptr);
  }
  root.configure(bytes);
  __collect(); // what parsing the configuration left behind
  return 1;
}

export function proxy_on_request_headers(contextId: u32, headers: u32, endOfStream: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.onRequestHeaders(endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_request_body(contextId: u32, size: u32, endOfStream: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.onRequestBody(size, endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_request_trailers(contextId: u32, trailers: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.finishRequest();
  return CONTINUE;
}

export function proxy_on_response_headers(contextId: u32, headers: u32, endOfStream: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.onResponseHeaders(endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_response_body(contextId: u32, size: u32, endOfStream: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.onResponseBody(size, endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_response_trailers(contextId: u32, trailers: u32): u32 {
  const s = streamOf(contextId);
  if (s !== null) s.endResponse();
  return CONTINUE;
}

export function proxy_on_log(contextId: u32): void {
  const s = streamOf(contextId);
  if (s !== null) s.onLog();
}

export function proxy_on_done(contextId: u32): u32 {
  return 1;
}

/**
 * The module uses AssemblyScript's minimal runtime: garbage is collected only when asked, which
 * is safe only where no managed object is held on the wasm stack. The end of proxy_on_delete is
 * such a point; collecting every COLLECT_EVERY deleted LLM streams (or four times as many others,
 * which leave far less behind; docs/benchmarks.md has the counts) bounds the garbage to what that
 * many streams left, at a fraction of the cost of collecting after each.
 */
const COLLECT_EVERY: i32 = 32;
/** Also collect once this many metrics were defined (new series leave their names behind). */
const COLLECT_AFTER_DEFINED: i32 = 8;
let deletedSinceCollect: i32 = 0;

export function proxy_on_delete(contextId: u32): void {
  const s = streamOf(contextId);
  // A stream that was not an LLM call leaves little behind (its Stream object, a :path): a quarter.
  let weight = 1;
  if (s !== null) {
    if (s.llm) weight = 4;
    s.dispose();
    streams.delete(contextId);
    lastStream = null;
  } else if (roots.has(contextId)) {
    roots.delete(contextId);
  }
  deletedSinceCollect += weight;
  if (deletedSinceCollect >= COLLECT_EVERY * 4 || definedSinceCollect >= COLLECT_AFTER_DEFINED) {
    deletedSinceCollect = 0;
    collected();
    __collect();
  }
}

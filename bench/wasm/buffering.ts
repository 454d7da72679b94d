// SPDX-License-Identifier: Apache-2.0
// The obvious alternative, for comparison only: buffer each body whole (StopIterationAndBuffer
// until end_of_stream), then parse it with a JSON library (assemblyscript-json), event by event
// for a stream, and publish the same filter state and counters as the plugin.

import { JSON } from "assemblyscript-json/assembly";
import {
  proxy_get_buffer_bytes,
  proxy_get_header_map_value,
  proxy_set_property,
  proxy_define_metric,
  proxy_increment_metric,
} from "@solo-io/proxy-runtime/assembly/imports";

const OUT: usize = memory.data(16, 8);

export function malloc(size: usize): usize {
  return heap.alloc(size);
}

function header(type: i32, name: string): string {
  const key = String.UTF8.encode(name);
  if (proxy_get_header_map_value(type, changetype<usize>(key), key.byteLength, OUT, OUT + 8) != 0) return "";
  const ptr = load<usize>(OUT);
  const value = String.UTF8.decodeUnsafe(ptr, load<usize>(OUT + 8));
  heap.free(ptr);
  return value;
}

function body(type: i32, size: u32): Uint8Array {
  const out = new Uint8Array(size);
  if (size > 0 && proxy_get_buffer_bytes(type, 0, size, OUT, OUT + 8) == 0) {
    const ptr = load<usize>(OUT);
    memory.copy(out.dataStart, ptr, load<usize>(OUT + 8));
    heap.free(ptr);
  }
  return out;
}

function setProperty(path: string, value: string): void {
  const p = String.UTF8.encode(path);
  const v = String.UTF8.encode(value);
  proxy_set_property(changetype<usize>(p), p.byteLength, changetype<usize>(v), v.byteLength);
}

const counters = new Map<string, u32>();
function count(name: string, delta: i64): void {
  if (delta <= 0) return;
  if (!counters.has(name)) {
    const n = String.UTF8.encode(name);
    proxy_define_metric(0, changetype<usize>(n), n.byteLength, OUT);
    counters.set(name, load<u32>(OUT));
  }
  proxy_increment_metric(counters.get(name), delta);
}

class Stream {
  llm: bool = false;
  sse: bool = false;
  model: string = "";
  prompt: i64 = -1;
  completion: i64 = -1;
}
const streams = new Map<u32, Stream>();

function read(doc: JSON.Value, s: Stream): void {
  if (!doc.isObj) return;
  const obj = doc as JSON.Obj;
  const model = obj.getString("model");
  if (model !== null && s.model.length == 0) s.model = model.valueOf();
  const usage = obj.getObj("usage");
  if (usage === null) return;
  const p = usage.getInteger("prompt_tokens");
  if (p !== null) s.prompt = p.valueOf();
  const c = usage.getInteger("completion_tokens");
  if (c !== null) s.completion = c.valueOf();
}

export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_context_create(id: u32, root: u32): void {
  if (root != 0) streams.set(id, new Stream());
}
export function proxy_on_vm_start(id: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_configure(id: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_request_headers(id: u32, n: u32, eos: u32): u32 {
  const s = streams.get(id);
  s.llm = header(0, ":method") == "POST" && header(0, ":path").endsWith("/chat/completions");
  return 0;
}
export function proxy_on_request_body(id: u32, size: u32, eos: u32): u32 {
  const s = streams.get(id);
  if (!s.llm) return 0;
  if (eos == 0) return 1;
  read(JSON.parse<Uint8Array>(body(0, size)), s);
  return 0;
}
export function proxy_on_response_headers(id: u32, n: u32, eos: u32): u32 {
  const s = streams.get(id);
  if (!s.llm) return 0;
  s.sse = header(2, "content-type").startsWith("text/event-stream");
  return 0;
}
export function proxy_on_response_body(id: u32, size: u32, eos: u32): u32 {
  const s = streams.get(id);
  if (!s.llm) return 0;
  if (eos == 0) return 1;
  const bytes = body(1, size);
  if (!s.sse) {
    read(JSON.parse<Uint8Array>(bytes), s);
  } else {
    const lines = String.UTF8.decode(bytes.buffer).split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (line.startsWith("data: ") && line != "data: [DONE]") read(JSON.parse<string>(line.substring(6)), s);
    }
  }
  setProperty("asm.llmproxy.request_model", s.model);
  setProperty("asm.llmproxy.request_prompt_tokens", s.prompt.toString());
  setProperty("asm.llmproxy.request_completion_tokens", s.completion.toString());
  const suffix = "|llmproxy_model=" + s.model;
  count("asm_llm_proxy_prompt_tokens" + suffix, s.prompt);
  count("asm_llm_proxy_completion_tokens" + suffix, s.completion);
  return 0;
}
export function proxy_on_log(id: u32): void {}
export function proxy_on_done(id: u32): u32 {
  return 1;
}
let deleted = 0;
export function proxy_on_delete(id: u32): void {
  streams.delete(id);
  if (++deleted % 32 == 0) __collect();
}

// SPDX-License-Identifier: Apache-2.0
// A lean proxy-wasm host for `npm run bench`: each import does the minimum Envoy's must (a map
// lookup, one copy of a buffer into guest memory), so that time spent in a run is the guest's
// and not the host's. Names the guest passes (header names, property paths) are looked up by
// their bytes, without decoding them. It counts every host call by name. It is not a test host:
// it checks nothing, and serves one stream at a time, driven by a Call (the bytes of one HTTP
// exchange, prepared once).

import { serializePairs } from "../tests/host/host.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface Exchange {
  requestHeaders: Record<string, string>;
  requestBody: Uint8Array[];
  responseHeaders: Record<string, string>;
  responseBody: Uint8Array[];
  /** Properties the stream can read (path segments joined by NUL), e.g. the upstream cluster. */
  properties: Record<string, string>;
}

interface HeaderMap {
  /** Lower-case name bytes as a latin1 string (a cheap exact key) -> value bytes. */
  values: Map<string, Uint8Array>;
  pairs: Uint8Array;
}

/** A prepared exchange: every byte the host will hand out, encoded once. */
export class Call {
  readonly requestHeaders: HeaderMap;
  readonly responseHeaders: HeaderMap;
  readonly properties: Map<string, Uint8Array>;
  readonly requestBody: Uint8Array[];
  readonly responseBody: Uint8Array[];

  constructor(x: Exchange) {
    this.requestHeaders = headerMap(x.requestHeaders);
    this.responseHeaders = headerMap(x.responseHeaders);
    this.properties = new Map(
      Object.entries(x.properties).map(([k, v]) => [latin1(enc.encode(k)), enc.encode(v)]),
    );
    this.requestBody = x.requestBody;
    this.responseBody = x.responseBody;
  }
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function headerMap(h: Record<string, string>): HeaderMap {
  const entries = Object.entries(h).map(([k, v]) => [enc.encode(k.toLowerCase()), enc.encode(v)] as const);
  const pairs = serializePairs(entries);
  return { values: new Map(entries.map(([k, v]) => [latin1(k), v])), pairs };
}

const OK = 0;
const NOT_FOUND = 1;

export class LeanHost {
  instance!: WebAssembly.Instance;
  private ex!: Record<string, any>;
  private mem!: WebAssembly.Memory;
  private u8 = new Uint8Array(0);
  private dv = new DataView(new ArrayBuffer(0));
  /** Host calls by import name since the last reset. */
  readonly calls = new Map<string, number>();
  /** Counted only when true (the warm-up and timed loops run without counting). */
  counting = false;
  /** When set, the time of each proxy_on_delete, in µs (where the plugin collects garbage). */
  deleteTimes: number[] | null = null;
  private call: Call | null = null;
  private phase = 0; // 0 none, 1 request headers, 2 request body, 3 response headers, 4 response body
  private chunk: Uint8Array | null = null;
  private clock = 1_700_000_000_000_000_000n;
  private nextId = 2;
  private metricIds = 0;
  readonly metrics: number[] = [];
  readonly nodeMetadata: Map<string, Uint8Array>;
  private pluginConfig: Uint8Array;

  /** The VM's environment variables, as `NAME=value` entries (WASI environ_get). */
  private environ: Uint8Array[];

  constructor(
    readonly module: WebAssembly.Module,
    nodeMetadata: Record<string, string>,
    pluginConfig = "",
    env: Record<string, string> = {},
  ) {
    this.environ = Object.entries(env).map(([k, v]) => enc.encode(`${k}=${v}\0`));
    this.nodeMetadata = new Map(
      Object.entries(nodeMetadata).flatMap(([k, v]) => [
        [latin1(enc.encode(`xds\0node\0metadata\0${k}`)), enc.encode(v)],
        [latin1(enc.encode(`node\0metadata\0${k}`)), enc.encode(v)],
      ]),
    );
    this.pluginConfig = enc.encode(pluginConfig);
  }

  async start(): Promise<void> {
    this.instance = await WebAssembly.instantiate(this.module, {
      env: this.imports(),
      wasi_snapshot_preview1: this.wasi(),
    });
    this.ex = this.instance.exports as Record<string, any>;
    this.mem = this.ex.memory;
    this.ex.proxy_on_context_create(1, 0);
    this.ex.proxy_on_vm_start(1, 0);
    this.ex.proxy_on_configure(1, this.pluginConfig.length);
  }

  get exports(): Record<string, any> {
    return this.ex;
  }

  get memoryBytes(): number {
    return this.mem.buffer.byteLength;
  }

  resetCounts(): void {
    this.calls.clear();
  }

  /** One HTTP stream through the module, in Envoy's order of callbacks. */
  run(c: Call): void {
    const ex = this.ex;
    const id = this.nextId++;
    this.call = c;
    ex.proxy_on_context_create(id, 1);
    this.phase = 1;
    const reqEnd = c.requestBody.length === 0;
    ex.proxy_on_request_headers(id, c.requestHeaders.values.size, reqEnd ? 1 : 0);
    this.phase = 2;
    for (let i = 0; i < c.requestBody.length; i++) {
      this.chunk = c.requestBody[i];
      ex.proxy_on_request_body(id, this.chunk.length, i === c.requestBody.length - 1 ? 1 : 0);
    }
    this.phase = 3;
    const resEnd = c.responseBody.length === 0;
    ex.proxy_on_response_headers(id, c.responseHeaders.values.size, resEnd ? 1 : 0);
    this.phase = 4;
    for (let i = 0; i < c.responseBody.length; i++) {
      this.chunk = c.responseBody[i];
      ex.proxy_on_response_body(id, this.chunk.length, i === c.responseBody.length - 1 ? 1 : 0);
    }
    this.phase = 0;
    this.chunk = null;
    ex.proxy_on_log(id);
    ex.proxy_on_done(id);
    if (this.deleteTimes !== null) {
      const t0 = process.hrtime.bigint();
      ex.proxy_on_delete(id);
      this.deleteTimes.push(Number(process.hrtime.bigint() - t0) / 1000);
    } else {
      ex.proxy_on_delete(id);
    }
    this.call = null;
  }

  // ---- memory ---------------------------------------------------------------------------------

  private bytes(): Uint8Array {
    if (this.u8.buffer !== this.mem.buffer) {
      this.u8 = new Uint8Array(this.mem.buffer);
      this.dv = new DataView(this.mem.buffer);
    }
    return this.u8;
  }

  private view(): DataView {
    this.bytes();
    return this.dv;
  }

  /** The bytes at ptr as a latin1 key (names are short; no TextDecoder). */
  private key(ptr: number, len: number): string {
    const b = this.bytes();
    let s = "";
    for (let i = 0; i < len; i++) s += String.fromCharCode(b[ptr + i]);
    return s;
  }

  /** malloc in the guest, one copy, the out-parameters written. */
  private give(data: Uint8Array, ptrOut: number, sizeOut: number): number {
    if (data.length === 0) {
      const v = this.view();
      v.setUint32(ptrOut, 0, true);
      v.setUint32(sizeOut, 0, true);
      return OK;
    }
    const ptr = this.ex.malloc(data.length) as number;
    this.bytes().set(data, ptr);
    const v = this.dv;
    v.setUint32(ptrOut, ptr, true);
    v.setUint32(sizeOut, data.length, true);
    return OK;
  }

  private count(name: string): void {
    if (this.counting) this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
  }

  private headers(type: number): HeaderMap | undefined {
    const c = this.call;
    if (c === null) return undefined;
    if (type === 0 && this.phase === 1) return c.requestHeaders;
    if (type === 2 && this.phase === 3) return c.responseHeaders;
    return undefined;
  }

  /** The two WASI calls the plugin makes at configure time to read its API keys. */
  private wasi(): Record<string, (...a: any[]) => any> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const h = this;
    return {
      environ_sizes_get(count: number, size: number) {
        h.count("environ_sizes_get");
        const v = h.view();
        v.setUint32(count, h.environ.length, true);
        v.setUint32(
          size,
          h.environ.reduce((n, e) => n + e.length, 0),
          true,
        );
        return OK;
      },
      environ_get(array: number, buf: number) {
        h.count("environ_get");
        let p = buf;
        h.environ.forEach((e, i) => {
          h.view().setUint32(array + i * 4, p, true);
          h.bytes().set(e, p);
          p += e.length;
        });
        return OK;
      },
    };
  }

  private imports(): Record<string, (...a: any[]) => any> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const h = this;
    return {
      proxy_log() {
        h.count("proxy_log");
        return OK;
      },
      proxy_get_log_level(out: number) {
        h.count("proxy_get_log_level");
        h.view().setUint32(out, 2, true);
        return OK;
      },
      proxy_get_current_time_nanoseconds(out: number) {
        h.count("proxy_get_current_time_nanoseconds");
        h.clock += 1_000_000n;
        h.view().setBigUint64(out, h.clock, true);
        return OK;
      },
      proxy_get_property(pathPtr: number, pathLen: number, outPtr: number, outSize: number) {
        h.count("proxy_get_property");
        const k = h.key(pathPtr, pathLen);
        const v = h.call?.properties.get(k) ?? h.nodeMetadata.get(k);
        return v === undefined ? NOT_FOUND : h.give(v, outPtr, outSize);
      },
      proxy_set_property() {
        // Envoy copies the value into a filter-state object; the copy is the guest's buffer here.
        h.count("proxy_set_property");
        return OK;
      },
      proxy_get_header_map_value(
        type: number,
        keyPtr: number,
        keyLen: number,
        outPtr: number,
        outSize: number,
      ) {
        h.count("proxy_get_header_map_value");
        const v = h.headers(type)?.values.get(h.key(keyPtr, keyLen));
        return v === undefined ? NOT_FOUND : h.give(v, outPtr, outSize);
      },
      proxy_get_header_map_pairs(type: number, outPtr: number, outSize: number) {
        h.count("proxy_get_header_map_pairs");
        const m = h.headers(type);
        return m === undefined ? NOT_FOUND : h.give(m.pairs, outPtr, outSize);
      },
      proxy_remove_header_map_value() {
        h.count("proxy_remove_header_map_value");
        return OK;
      },
      proxy_replace_header_map_value() {
        h.count("proxy_replace_header_map_value");
        return OK;
      },
      proxy_add_header_map_value() {
        h.count("proxy_add_header_map_value");
        return OK;
      },
      proxy_get_buffer_bytes(type: number, start: number, length: number, outPtr: number, outSize: number) {
        h.count("proxy_get_buffer_bytes");
        if (type === 7) return h.give(h.pluginConfig.subarray(start, start + length), outPtr, outSize);
        const chunk = h.chunk;
        if (chunk === null) return NOT_FOUND;
        return h.give(chunk.subarray(start, Math.min(chunk.length, start + length)), outPtr, outSize);
      },
      proxy_set_buffer_bytes() {
        h.count("proxy_set_buffer_bytes");
        return OK;
      },
      proxy_define_metric(type: number, namePtr: number, nameLen: number, out: number) {
        h.count("proxy_define_metric");
        dec.decode(h.bytes().subarray(namePtr, namePtr + nameLen));
        const id = h.metricIds++;
        h.metrics[id] = 0;
        h.view().setUint32(out, id, true);
        return OK;
      },
      proxy_increment_metric(id: number, delta: bigint) {
        h.count("proxy_increment_metric");
        h.metrics[id] += Number(delta);
        return OK;
      },
      proxy_record_metric(id: number, value: bigint) {
        h.count("proxy_record_metric");
        h.metrics[id] = Number(value);
        return OK;
      },
      proxy_get_metric() {
        return OK;
      },
      proxy_get_buffer_status() {
        return OK;
      },
      proxy_get_header_map_size() {
        return OK;
      },
      proxy_set_header_map_pairs() {
        return OK;
      },
      proxy_continue_stream() {
        return OK;
      },
      proxy_close_stream() {
        return OK;
      },
      proxy_send_local_response() {
        return OK;
      },
      proxy_set_tick_period_milliseconds() {
        return OK;
      },
      proxy_set_effective_context() {
        return OK;
      },
      proxy_done() {
        return OK;
      },
      proxy_get_status() {
        return OK;
      },
      proxy_http_call() {
        return OK;
      },
      proxy_dispatch_http_call() {
        return OK;
      },
      proxy_call_foreign_function() {
        return OK;
      },
      proxy_register_shared_queue() {
        return OK;
      },
      proxy_resolve_shared_queue() {
        return OK;
      },
      proxy_dequeue_shared_queue() {
        return OK;
      },
      proxy_enqueue_shared_queue() {
        return OK;
      },
      proxy_get_shared_data() {
        return OK;
      },
      proxy_set_shared_data() {
        return OK;
      },
      abort_proc_exit() {},
      abort() {
        throw new Error("abort");
      },
    };
  }
}

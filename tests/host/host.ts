// SPDX-License-Identifier: Apache-2.0
// A proxy-wasm ABI 0.2.x host in TypeScript that loads the compiled plugin into Node's V8 (the
// engine Envoy uses by default) and drives it the way Envoy's Wasm HTTP filter does. It follows
// Envoy's rules where they matter to a filter (../../../shared/envoy-contract.md):
// - set_property stores filter state under "wasm." + path, byte for byte (§1);
// - get_property splits the path on NUL; the node is under `xds` (or top-level `node` when
//   emulating Envoy before 1.33); an unknown top-level name falls back to filter state (§1, §3);
// - define_metric prefixes "wasmcustom." and hands out a new id on every call (§2);
// - increment_metric refuses a delta <= 0 on counters (§2);
// - header maps are readable only during their own headers callback (§9); get_header_map_value
//   answers the first value of a repeated header, replace_header_map_value leaves one value;
// - a body callback that returns Continue sees only its chunk; StopIterationAndBuffer keeps the
//   chunk and hands the whole buffered body to the next call, which the host records as "held";
// - a trap marks the VM failed; later calls are skipped as under FAIL_OPEN, and the trap is kept
//   for the test to assert on (§7);
// - with `routes`, the route is chosen from the request headers as the HTTP connection manager
//   does before the filters run; every request-header change clears the route cache and the
//   router chooses the route again with the new headers once the filters are done (Envoy
//   context.cc: add/replace/remove header call clearRouteCache), a weighted split picking by the
//   stream id as Envoy does. Until then the route and cluster a filter reads are the stale ones
//   (conn_manager_impl.cc clearRouteCache resets only the cache, not StreamInfo's route); from the
//   response on they are the router's final choice. A destination's `authority` is applied after
//   that choice, as Envoy's host_rewrite_literal is (upstreamRequestHeaders);
// - VM environment variables (vm_config.environment_variables) through WASI environ_get;
// - proxy_http_call sends real HTTP to the loopback port `clusters` maps the cluster name to, as
//   the root context (proxy-wasm-cpp-host exports.cc http_call: contextOrEffectiveContext()->
//   root_context()); an unknown cluster or a request without :method, :path or :authority is
//   BadArgument (Envoy context.cc Context::httpCall). The answer comes to
//   proxy_on_http_call_response(root id, token, headers, body size, trailers), its headers and
//   body readable during that callback alone (map 6, buffer 4). A stream reset gives 0 headers
//   (Context::onHttpCallFailure); the router's own answers come as responses: 504 "upstream
//   request timeout" when the call's timeout passes, 503 when the cluster cannot be reached
//   (inference from Envoy's async client, which runs the router);
// - a request-headers callback that does not return Continue pauses the request: nothing goes
//   upstream, body chunks wait (StopAllIterationAndWatermark), the request headers stay readable,
//   until proxy_continue_stream(Request) from the stream or its effective context; continue and
//   proxy_send_local_response act after the VM call returns (Envoy defers both); a local reply
//   goes through the filter's response callbacks, then the stream ends, and the request never
//   reaches the upstream.

import { readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";

export const WasmResult = {
  Ok: 0,
  NotFound: 1,
  BadArgument: 2,
  InvalidMemoryAccess: 6,
  Unimplemented: 12,
} as const;

export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;
const LEVEL_NAMES = ["trace", "debug", "info", "warn", "error", "critical"];

const BufferType = {
  HttpRequestBody: 0,
  HttpResponseBody: 1,
  HttpCallResponseBody: 4,
  PluginConfiguration: 7,
  VmConfiguration: 6,
};
const HeaderMapType = {
  RequestHeaders: 0,
  RequestTrailers: 1,
  ResponseHeaders: 2,
  ResponseTrailers: 3,
  HttpCallResponseHeaders: 6,
  HttpCallResponseTrailers: 7,
};
const MetricType = { Counter: 0, Gauge: 1, Histogram: 2 };

/** FilterDataStatus values. */
export const DataStatus = {
  Continue: 0,
  StopIterationAndBuffer: 1,
  StopIterationAndWatermark: 2,
  StopIterationNoBuffer: 3,
};

export interface HostOptions {
  /** Plugin configuration as Istio sends it: a JSON string (an object is stringified). */
  pluginConfig?: string | object;
  /** Istio node metadata (WORKLOAD_NAME, NAMESPACE, ...). */
  nodeMetadata?: Record<string, string>;
  /** "xds" (Envoy >= 1.33) or "legacy" (top-level `node`, `cluster_name`). */
  attributes?: "xds" | "legacy";
  /** WasmPlugin.pluginName, which Istio passes as root_id. Empty by default, as in Istio. */
  rootId?: string;
  /** The proxy's log level for the wasm component. */
  logLevel?: number;
  /** Echo plugin log lines to stderr. */
  printLogs?: boolean;
  /** Run Envoy's configuration canary VM before the worker VM (default true). */
  canary?: boolean;
  /** The VM's environment variables (Istio WasmPlugin vmConfig.env). */
  env?: Record<string, string>;
  /** A VirtualService's http routes, in order; the first whose headers all match is chosen. */
  routes?: RouteRule[];
  /** Envoy clusters proxy_http_call may name, each served on a 127.0.0.1 port. */
  clusters?: Record<string, number>;
}

/** One proxy_http_call as the host made it, and how it ended. */
export interface HttpCallRecord {
  token: number;
  cluster: string;
  headers: Headers;
  body: string;
  timeoutMs: number;
  /** The stream whose callback made the call (it is made as the root context), if any. */
  stream?: number;
  /** The answer's status; 0 for a reset (0 headers). */
  status?: number;
  /** Milliseconds from the call to the plugin's on_http_call_response. */
  ms?: number;
}

export interface LocalReply {
  status: number;
  details: string;
  body: Uint8Array;
  headers: Headers;
}

export interface RouteRule {
  /** The route's name (Envoy route_name, Istio http route `name`); none when absent. */
  name?: string;
  /** Exact header matches. */
  headers?: Record<string, string>;
  /** Any further match (a request header's value, every value joined with commas, or undefined). */
  matches?: (header: (name: string) => string | undefined) => boolean;
  /**
   * Weighted destinations (one with any weight for a plain route); `authority` is the host the
   * router writes into :authority after choosing it (Istio headers.request.set.host on a
   * destination: Envoy's host_rewrite_literal).
   */
  clusters: Array<{ cluster: string; weight: number; authority?: string }>;
}

export interface StreamOptions {
  /** The upstream cluster name (xds.cluster_name), e.g. "outbound|80||dashscope.aliyuncs.com". */
  cluster?: string;
  /**
   * The cluster the router finally chooses, when it is not the one the filter read in the
   * request headers (`cluster`, or the route's); read from the response on.
   */
  finalCluster?: string;
  /** Envoy's stream id, which a weighted split picks by; derived from the context id if unset. */
  streamId?: number;
}

export interface LogLine {
  level: string;
  message: string;
}

export interface Metric {
  /** The name as Envoy stores it, "wasmcustom." + the plugin's name. */
  name: string;
  type: number;
  value: number;
  /** Order of first definition, which the Prometheus renderer keeps within a family. */
  order: number;
  /** Every sample recorded in a histogram. */
  samples: number[];
}

type Headers = Array<[string, string]>;

const enc = new TextEncoder();
const dec = new TextDecoder();

export class Trap extends Error {}

export class ProxyWasmHost {
  readonly logs: LogLine[] = [];
  /** Log lines of the configuration canary VM. */
  readonly canaryLogs: LogLine[] = [];
  readonly traps: Error[] = [];
  /** Stats by Envoy name. */
  readonly metrics = new Map<string, Metric>();
  /** Number of proxy_define_metric calls (Envoy allocates on each). */
  defineCalls = 0;
  failed = false;

  private instance!: WebAssembly.Instance;
  private exports!: Record<string, any>;
  private readonly metricIds = new Map<number, Metric>();
  private nextMetricId = 1;
  private nextContextId = 2;
  private readonly rootContextId = 1;
  private current: HttpStream | null = null;
  private rootConfig: Uint8Array = new Uint8Array(0);
  private inRoot = false;
  private inCanary = false;
  private clockNs = 1_700_000_000_000_000_000n;
  /** Every proxy_http_call, in order. */
  readonly httpCalls: HttpCallRecord[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private callResponse: { headers: Headers; body: Uint8Array } | null = null;
  private readonly streams = new Map<number, HttpStream>();
  private nextToken = 1;
  /** What Envoy defers until the VM call returns: continue_stream and send_local_response. */
  private afterCall: Array<() => void> = [];
  private depth = 0;
  /** send_local_response makes the running callback's result a stop (stopNextIteration). */
  stopNext = false;
  /** Envoy pools connections to a cluster; so does the host. */
  private readonly agent = new Agent({ keepAlive: true });

  constructor(
    readonly module: WebAssembly.Module,
    readonly options: HostOptions = {},
  ) {}

  static async load(wasmPath: string, options: HostOptions = {}): Promise<ProxyWasmHost> {
    const module = await WebAssembly.compile(readFileSync(wasmPath));
    const host = new ProxyWasmHost(module, options);
    await host.start();
    return host;
  }

  get memory(): WebAssembly.Memory {
    return this.exports.memory as WebAssembly.Memory;
  }

  /** Bytes of linear memory (grows only, as wasm memory does). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Runs the configuration canary as Envoy does (a VM that is started and configured, then
   * discarded; its stats stay, since Envoy keeps them by name), then instantiates the worker VM
   * and runs its root context's start and configure calls. The canary's log lines go to
   * `canaryLogs` (Envoy prints them too) so that `logs` holds the worker's alone.
   */
  async start(): Promise<void> {
    const config = this.options.pluginConfig;
    this.rootConfig = enc.encode(
      config === undefined ? "" : typeof config === "string" ? config : JSON.stringify(config),
    );
    if (this.options.canary !== false) {
      this.inCanary = true;
      try {
        await this.boot();
      } finally {
        this.inCanary = false;
      }
      if (this.failed) return;
    }
    await this.boot();
    // Define calls made while configuring (the configuration gauge) are not counted: defineCalls
    // measures what streams cost.
    this.defineCalls = 0;
  }

  private async boot(): Promise<void> {
    const imports = this.imports();
    this.instance = await WebAssembly.instantiate(this.module, imports);
    this.exports = this.instance.exports as Record<string, any>;
    for (const name of ["malloc", "proxy_on_context_create", "memory"]) {
      if (!(name in this.exports)) throw new Error(`module does not export ${name}`);
    }
    if (!("proxy_abi_version_0_2_1" in this.exports) && !("proxy_abi_version_0_2_0" in this.exports)) {
      throw new Error("Missing or unknown Proxy-Wasm ABI version");
    }
    this.inRoot = true;
    try {
      this.call("proxy_on_context_create", this.rootContextId, 0);
      this.call("proxy_on_vm_start", this.rootContextId, 0);
      const ok = this.call("proxy_on_configure", this.rootContextId, this.rootConfig.length);
      if (ok === 0) throw new Error("proxy_on_configure returned false: Envoy rejects the plugin");
    } finally {
      this.inRoot = false;
    }
  }

  /** Opens a new HTTP stream (proxy_on_context_create with the root as parent). */
  stream(options: StreamOptions = {}): HttpStream {
    const s = new HttpStream(this, this.nextContextId++, options);
    this.streams.set(s.id, s);
    this.call("proxy_on_context_create", s.id, this.rootContextId);
    return s;
  }

  /** Resolves once no proxy_http_call is in flight (answers delivered to the plugin). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }

  /** Closes the pooled connections of proxy_http_call. */
  close(): void {
    this.agent.destroy();
  }

  /** Samples of a histogram by the name the plugin gave it. */
  histogram(name: string): number[] | undefined {
    return this.metrics.get("wasmcustom." + name)?.samples;
  }

  /** Current value of a gauge by the name the plugin gave it. */
  gauge(name: string): number | undefined {
    const m = this.metrics.get("wasmcustom." + name);
    return m?.type === MetricType.Gauge ? m.value : undefined;
  }

  /** Current value of a counter by the name the plugin gave it. */
  counter(name: string): number | undefined {
    return this.metrics.get("wasmcustom." + name)?.value;
  }

  /** Calls an export; a trap fails the VM (later calls are skipped, as under FAIL_OPEN). */
  call(name: string, ...args: number[]): number | undefined {
    if (this.failed) return undefined;
    const fn = this.exports[name];
    if (typeof fn !== "function") return undefined; // Envoy skips callbacks a module lacks
    this.depth++;
    let result: number | undefined;
    try {
      result = fn(...args) as number;
    } catch (e) {
      this.failed = true;
      this.traps.push(e as Error);
      result = undefined;
    } finally {
      this.depth--;
    }
    if (this.depth === 0) this.drain();
    return result;
  }

  /** Runs what the last VM call deferred (each may make VM calls of its own). */
  private drain(): void {
    while (this.afterCall.length > 0 && !this.failed) this.afterCall.shift()!();
    this.afterCall = [];
  }

  /** A stream that Envoy deleted: set_effective_context to it is BadArgument from now on. */
  forget(id: number): void {
    this.streams.delete(id);
  }

  /** The header map of a type as the running callback sees it. */
  private headerMap(type: number): Headers | undefined {
    if (type === HeaderMapType.HttpCallResponseHeaders) return this.callResponse?.headers;
    if (type === HeaderMapType.HttpCallResponseTrailers) return this.callResponse ? [] : undefined;
    return this.current?.readableHeaders(type);
  }

  private startCall(record: HttpCallRecord, port: number, body: Uint8Array): void {
    const started = performance.now();
    const headers: Record<string, string> = {};
    let method = "GET";
    let path = "/";
    for (const [k, v] of record.headers) {
      if (k === ":method") method = v;
      else if (k === ":path") path = v;
      else if (k === ":authority") headers.host = v;
      else if (!k.startsWith(":")) headers[k] = v;
    }
    if (body.length > 0) headers["content-length"] = String(body.length);
    const text = (status: number, message: string) => ({
      headers: [
        [":status", String(status)],
        ["content-length", String(message.length)],
        ["content-type", "text/plain"],
      ] as Headers,
      body: enc.encode(message),
    });
    const done = new Promise<void>((resolve) => {
      let settled = false;
      const finish = (answer: { headers: Headers; body: Uint8Array } | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        record.ms = performance.now() - started;
        record.status = answer ? Number(answer.headers[0][1]) : 0;
        this.deliver(record.token, answer);
        resolve();
      };
      const req = httpRequest(
        { host: "127.0.0.1", port, method, path, headers, agent: this.agent },
        (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => {
            const h: Headers = [[":status", String(res.statusCode)]];
            for (const [k, v] of Object.entries(res.headers))
              for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined) h.push([k, String(one)]);
            finish({ headers: h, body: new Uint8Array(Buffer.concat(parts)) });
          });
          // A reset after the headers: Envoy's onHttpCallFailure, 0 headers.
          res.on("aborted", () => finish(null));
          res.on("error", () => finish(null));
        },
      );
      req.on("error", () =>
        finish(
          text(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
          ),
        ),
      );
      // A timeout of 0 is none, as in Envoy's async client.
      const timer =
        record.timeoutMs > 0
          ? setTimeout(() => {
              finish(text(504, "upstream request timeout"));
              req.destroy();
            }, record.timeoutMs)
          : undefined;
      req.end(Buffer.from(body));
    });
    this.inflight.add(done);
    done.then(() => this.inflight.delete(done));
  }

  /** on_http_call_response on the root context, the answer readable during it alone. */
  private deliver(token: number, answer: { headers: Headers; body: Uint8Array } | null): void {
    if (this.failed) return;
    const previous = this.current;
    this.callResponse = answer ?? { headers: [], body: new Uint8Array(0) };
    this.current = null;
    this.inRoot = true;
    this.depth++;
    try {
      const n = answer ? answer.headers.length : 0;
      const size = answer ? answer.body.length : 0;
      this.call("proxy_on_http_call_response", this.rootContextId, token, n, size, 0);
    } finally {
      this.callResponse = null;
      this.inRoot = false;
      this.current = previous;
      this.depth--;
    }
    if (this.depth === 0) this.drain();
  }

  withStream<T>(s: HttpStream, f: () => T): T {
    const previous = this.current;
    this.current = s;
    this.depth++;
    try {
      return f();
    } finally {
      this.current = previous;
      this.depth--;
      if (this.depth === 0) this.drain();
    }
  }

  // ---- memory helpers ---------------------------------------------------------------------

  // Views of linear memory, rebuilt only when memory grows (growth replaces the ArrayBuffer).
  private viewBuffer: ArrayBuffer | null = null;
  private bytesView!: Uint8Array;
  private dataView!: DataView;

  private refresh(): void {
    const buffer = this.memory.buffer;
    if (buffer !== this.viewBuffer) {
      this.viewBuffer = buffer;
      this.bytesView = new Uint8Array(buffer);
      this.dataView = new DataView(buffer);
    }
  }

  private bytes(): Uint8Array {
    this.refresh();
    return this.bytesView;
  }

  private view(): DataView {
    this.refresh();
    return this.dataView;
  }

  private read(ptr: number, len: number): Uint8Array {
    if (ptr + len > this.memory.buffer.byteLength) throw new Trap("out of bounds read");
    return this.bytes().slice(ptr, ptr + len);
  }

  private readString(ptr: number, len: number): string {
    if (ptr + len > this.memory.buffer.byteLength) throw new Trap("out of bounds read");
    return dec.decode(this.bytes().subarray(ptr, ptr + len));
  }

  /** Allocates in the guest with its malloc and copies data there; writes ptr/size out-params. */
  private give(data: Uint8Array, ptrOut: number, sizeOut: number): number {
    if (data.length === 0) {
      this.view().setUint32(ptrOut, 0, true);
      this.view().setUint32(sizeOut, 0, true);
      return WasmResult.Ok;
    }
    const ptr = this.exports.malloc(data.length) as number;
    if (!ptr) return WasmResult.InvalidMemoryAccess;
    this.bytes().set(data, ptr); // re-read the buffer: malloc may have grown memory
    this.view().setUint32(ptrOut, ptr, true);
    this.view().setUint32(sizeOut, data.length, true);
    return WasmResult.Ok;
  }

  // ---- imports ----------------------------------------------------------------------------

  private imports(): WebAssembly.Imports {
    // The import functions are called by the module, not as methods: they reach the host through h.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const h = this;
    const env: Record<string, (...a: any[]) => any> = {
      proxy_log(level: number, ptr: number, len: number) {
        const line = { level: LEVEL_NAMES[level] ?? String(level), message: h.readString(ptr, len) };
        (h.inCanary ? h.canaryLogs : h.logs).push(line);
        if (h.options.printLogs) process.stderr.write(`[wasm ${line.level}] ${line.message}\n`);
        return WasmResult.Ok;
      },
      proxy_get_log_level(out: number) {
        h.view().setUint32(out, h.options.logLevel ?? LogLevel.info, true);
        return WasmResult.Ok;
      },
      proxy_get_current_time_nanoseconds(out: number) {
        h.view().setBigUint64(out, h.clockNs, true);
        return WasmResult.Ok;
      },
      proxy_get_property(pathPtr: number, pathLen: number, outPtr: number, outSize: number) {
        const value = h.property(h.readString(pathPtr, pathLen).split("\0"));
        if (value === undefined) return WasmResult.NotFound;
        return h.give(value, outPtr, outSize);
      },
      proxy_set_property(pathPtr: number, pathLen: number, valuePtr: number, valueLen: number) {
        const s = h.current;
        if (s === null || h.inRoot) return WasmResult.NotFound;
        // Envoy: key = "wasm." + path, the path taken byte for byte (no NUL splitting).
        const key = "wasm." + h.readString(pathPtr, pathLen);
        s.filterState.set(key, h.read(valuePtr, valueLen));
        s.propertySets++;
        return WasmResult.Ok;
      },
      proxy_get_header_map_value(
        type: number,
        keyPtr: number,
        keyLen: number,
        outPtr: number,
        outSize: number,
      ) {
        const map = h.headerMap(type);
        if (!map) return WasmResult.NotFound;
        const key = h.readString(keyPtr, keyLen).toLowerCase();
        const found = map.find(([k]) => k === key);
        if (!found) return WasmResult.NotFound;
        return h.give(enc.encode(found[1]), outPtr, outSize);
      },
      proxy_get_header_map_pairs(type: number, outPtr: number, outSize: number) {
        const map = h.headerMap(type);
        if (!map) return WasmResult.NotFound;
        return h.give(serializePairs(encodePairs(map)), outPtr, outSize);
      },
      proxy_get_header_map_size(type: number, out: number) {
        const map = h.headerMap(type);
        if (!map) return WasmResult.NotFound;
        h.view().setUint32(out, serializePairs(encodePairs(map)).length, true);
        return WasmResult.Ok;
      },
      proxy_replace_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number) {
        const map = h.current?.readableHeaders(type);
        if (!map) return WasmResult.NotFound;
        const key = h.readString(kp, kl).toLowerCase();
        const value = h.readString(vp, vl);
        // Envoy's setCopy (since 1.15.1): every value of the header goes, one is added.
        for (let i = map.length - 1; i >= 0; i--) if (map[i][0] === key) map.splice(i, 1);
        map.push([key, value]);
        h.current!.headerChanged(type);
        return WasmResult.Ok;
      },
      proxy_add_header_map_value(type: number, kp: number, kl: number, vp: number, vl: number) {
        const map = h.current?.readableHeaders(type);
        if (!map) return WasmResult.NotFound;
        map.push([h.readString(kp, kl).toLowerCase(), h.readString(vp, vl)]);
        h.current!.headerChanged(type);
        return WasmResult.Ok;
      },
      proxy_remove_header_map_value(type: number, kp: number, kl: number) {
        const map = h.current?.readableHeaders(type);
        if (!map) return WasmResult.NotFound;
        const key = h.readString(kp, kl).toLowerCase();
        let removed = 0;
        for (let i = map.length - 1; i >= 0; i--) {
          if (map[i][0] === key) {
            map.splice(i, 1);
            removed++;
          }
        }
        // Removing a header that is not there changes nothing (and is Ok in Envoy), but Envoy
        // clears the route cache all the same.
        if (removed > 0) h.current!.headerChanges++;
        if (type === HeaderMapType.RequestHeaders) h.current!.clearRouteCache();
        return WasmResult.Ok;
      },
      proxy_get_buffer_status(type: number, lenOut: number, flagsOut: number) {
        const buf = h.buffer(type);
        if (buf === undefined) return WasmResult.NotFound;
        h.view().setUint32(lenOut, buf.length, true);
        h.view().setUint32(flagsOut, 0, true);
        return WasmResult.Ok;
      },
      proxy_get_buffer_bytes(type: number, start: number, length: number, outPtr: number, outSize: number) {
        const buf = h.buffer(type);
        if (buf === undefined) return WasmResult.NotFound;
        if (start + length > 0xffffffff) return WasmResult.BadArgument;
        const from = Math.min(start, buf.length);
        const to = Math.min(buf.length, from + length);
        return h.give(buf.subarray(from, to), outPtr, outSize);
      },
      proxy_set_buffer_bytes(type: number, start: number, length: number, dataPtr: number, dataLen: number) {
        const s = h.current;
        if (s === null) return WasmResult.NotFound;
        s.bufferChanges++;
        return s.setBuffer(type, start, length, h.read(dataPtr, dataLen));
      },
      proxy_define_metric(type: number, namePtr: number, nameLen: number, idOut: number) {
        if (type !== MetricType.Counter && type !== MetricType.Gauge && type !== MetricType.Histogram) {
          return WasmResult.BadArgument;
        }
        h.defineCalls++;
        const name = "wasmcustom." + h.readString(namePtr, nameLen);
        let metric = h.metrics.get(name);
        if (!metric) {
          metric = { name, type, value: 0, order: h.metrics.size, samples: [] };
          h.metrics.set(name, metric);
        }
        const id = h.nextMetricId++; // Envoy hands out a new id on every call
        h.metricIds.set(id, metric);
        h.view().setUint32(idOut, id, true);
        return WasmResult.Ok;
      },
      proxy_increment_metric(id: number, delta: bigint) {
        const metric = h.metricIds.get(id);
        if (!metric) return WasmResult.NotFound;
        if (metric.type === MetricType.Histogram) return WasmResult.BadArgument;
        if (metric.type === MetricType.Counter && delta <= 0n) return WasmResult.BadArgument;
        metric.value += Number(delta);
        return WasmResult.Ok;
      },
      proxy_record_metric(id: number, value: bigint) {
        const metric = h.metricIds.get(id);
        if (!metric) return WasmResult.NotFound;
        if (metric.type === MetricType.Gauge) metric.value = Number(value);
        else metric.value += Number(value);
        if (metric.type === MetricType.Histogram) metric.samples.push(Number(value));
        return WasmResult.Ok;
      },
      proxy_get_metric(id: number, out: number) {
        const metric = h.metricIds.get(id);
        if (!metric || metric.type === MetricType.Histogram) return WasmResult.NotFound;
        h.view().setBigUint64(out, BigInt(metric.value), true);
        return WasmResult.Ok;
      },
      proxy_continue_stream(type: number) {
        const s = h.current;
        if (s === null) return WasmResult.BadArgument;
        if (type > 2) return WasmResult.BadArgument;
        s.continues++;
        if (type === 0) h.afterCall.push(() => s.continueRequest());
        return WasmResult.Ok;
      },
      proxy_close_stream() {
        return WasmResult.Ok;
      },
      proxy_send_local_response(
        status: number,
        detailsPtr: number,
        detailsLen: number,
        bodyPtr: number,
        bodyLen: number,
        headersPtr: number,
        headersLen: number,
      ) {
        const s = h.current;
        if (s === null) return WasmResult.NotFound;
        s.localReplies++;
        const reply: LocalReply = {
          status,
          details: h.readString(detailsPtr, detailsLen),
          body: h.read(bodyPtr, bodyLen),
          headers: parsePairs(h.read(headersPtr, headersLen)),
        };
        s.localReply ??= reply;
        h.stopNext = true;
        h.afterCall.push(() => s.sendLocalReply(reply));
        return WasmResult.Ok;
      },
      proxy_http_call(
        uriPtr: number,
        uriLen: number,
        headersPtr: number,
        headersLen: number,
        bodyPtr: number,
        bodyLen: number,
        _trailersPtr: number,
        _trailersLen: number,
        timeoutMs: number,
        tokenOut: number,
      ) {
        const cluster = h.readString(uriPtr, uriLen);
        const port = h.options.clusters?.[cluster];
        if (port === undefined) return WasmResult.BadArgument;
        const headers = parsePairs(h.read(headersPtr, headersLen));
        for (const required of [":method", ":path", ":authority"])
          if (!headers.some(([k]) => k === required)) return WasmResult.BadArgument;
        const token = h.nextToken++;
        h.view().setUint32(tokenOut, token, true);
        const body = h.read(bodyPtr, bodyLen);
        const record: HttpCallRecord = {
          token,
          cluster,
          headers,
          body: dec.decode(body),
          timeoutMs,
          stream: h.current?.id,
        };
        h.httpCalls.push(record);
        h.startCall(record, port, body);
        return WasmResult.Ok;
      },
      proxy_set_tick_period_milliseconds() {
        return WasmResult.Ok;
      },
      proxy_get_status() {
        return WasmResult.Unimplemented;
      },
      proxy_done() {
        return WasmResult.Ok;
      },
      proxy_set_effective_context(id: number) {
        if (id === h.rootContextId) {
          h.current = null;
          h.inRoot = true;
          return WasmResult.Ok;
        }
        const s = h.streams.get(id);
        if (s === undefined) return WasmResult.BadArgument;
        h.current = s;
        h.inRoot = false;
        return WasmResult.Ok;
      },
    };
    // Every host call of a stream is counted (what a request costs in host calls).
    for (const [name, fn] of Object.entries(env)) {
      env[name] = (...a: any[]) => {
        if (h.current) h.current.hostCalls++;
        return fn(...a);
      };
    }
    const wasi: Record<string, (...a: any[]) => any> = {
      fd_write(fd: number, iovs: number, iovsLen: number, written: number) {
        const v = h.view();
        let total = 0;
        let text = "";
        for (let i = 0; i < iovsLen; i++) {
          const ptr = v.getUint32(iovs + i * 8, true);
          const len = v.getUint32(iovs + i * 8 + 4, true);
          text += h.readString(ptr, len);
          total += len;
        }
        (h.inCanary ? h.canaryLogs : h.logs).push({ level: fd === 2 ? "error" : "info", message: text });
        v.setUint32(written, total, true);
        return 0;
      },
      proc_exit() {
        // Envoy only logs; the trap comes from the `unreachable` that follows.
      },
      clock_time_get(_id: number, _precision: bigint, out: number) {
        h.view().setBigUint64(out, h.clockNs, true);
        return 0;
      },
      random_get(ptr: number, len: number) {
        h.bytes().fill(4, ptr, ptr + len);
        return 0;
      },
      // proxy-wasm-cpp-host: each variable as "NAME=value\0", pointers in the array.
      environ_sizes_get(count: number, size: number) {
        const entries = h.environ();
        h.view().setUint32(count, entries.length, true);
        h.view().setUint32(
          size,
          entries.reduce((n, e) => n + e.length, 0),
          true,
        );
        return 0;
      },
      environ_get(array: number, buf: number) {
        h.environReads++;
        let p = buf;
        h.environ().forEach((e, i) => {
          h.view().setUint32(array + i * 4, p, true);
          h.bytes().set(e, p);
          p += e.length;
        });
        return 0;
      },
      args_sizes_get(count: number, size: number) {
        h.view().setUint32(count, 0, true);
        h.view().setUint32(size, 0, true);
        return 0;
      },
      args_get() {
        return 0;
      },
    };
    return { env, wasi_snapshot_preview1: wasi, wasi_unstable: wasi };
  }

  /** Number of environ_get calls (the plugin should read the environment once per configuration). */
  environReads = 0;

  private environ(): Uint8Array[] {
    return Object.entries(this.options.env ?? {}).map(([k, v]) => enc.encode(`${k}=${v}\0`));
  }

  /** Advances the host clock. */
  advanceMs(ms: number): void {
    this.clockNs += BigInt(Math.round(ms * 1e6));
  }

  private buffer(type: number): Uint8Array | undefined {
    if (type === BufferType.HttpCallResponseBody) return this.callResponse?.body;
    if (type === BufferType.PluginConfiguration) return this.rootConfig;
    if (type === BufferType.VmConfiguration) return new Uint8Array(0);
    return this.current?.bodyBuffer(type);
  }

  /** Envoy's attribute lookup, as far as this plugin can reach it. */
  private property(path: string[]): Uint8Array | undefined {
    const legacy = this.options.attributes === "legacy";
    const meta = this.options.nodeMetadata ?? {};
    const s = this.current;
    const top = path[0];
    if (!legacy && top === "xds") {
      if (path[1] === "node" && path[2] === "metadata" && path.length === 4) return str(meta[path[3]]);
      if (path[1] === "cluster_name" && path.length === 2 && s && !this.inRoot) return str(s.cluster);
      // Envoy answers an empty name for a route without one.
      if (path[1] === "route_name" && path.length === 2 && s && !this.inRoot)
        return enc.encode(s.routeName ?? "");
      return undefined;
    }
    if (legacy && top === "node") {
      if (path[1] === "metadata" && path.length === 3) return str(meta[path[2]]);
      return undefined;
    }
    if (legacy && top === "cluster_name" && path.length === 1 && s && !this.inRoot) return str(s.cluster);
    if (legacy && top === "route_name" && path.length === 1 && s && !this.inRoot)
      return enc.encode(s.routeName ?? "");
    if (top === "plugin_root_id" && path.length === 1) return enc.encode(this.options.rootId ?? "");
    if (top === "plugin_name" && path.length === 1) return enc.encode("asm-llm-proxy");
    // An unknown top-level name falls back to the stream's filter state "wasm.<name>".
    if (path.length === 1 && s && !this.inRoot) return s.filterState.get("wasm." + top);
    return undefined;
  }
}

function str(v: string | undefined): Uint8Array | undefined {
  return v === undefined ? undefined : enc.encode(v);
}

/**
 * proxy-wasm header map serialization: count, then (key len, value len) pairs, then NUL-ended
 * strings. It takes the names and values already encoded, so that bench/lean-host.ts encodes its
 * maps once and serves the same bytes.
 */
export function serializePairs(parts: ReadonlyArray<readonly [Uint8Array, Uint8Array]>): Uint8Array {
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + 1 + v.length + 1;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let p = 4;
  for (const [k, v] of parts) {
    dv.setUint32(p, k.length, true);
    dv.setUint32(p + 4, v.length, true);
    p += 8;
  }
  for (const [k, v] of parts) {
    out.set(k, p);
    p += k.length + 1;
    out.set(v, p);
    p += v.length + 1;
  }
  return out;
}

/** The inverse of serializePairs (what a module passes to proxy_http_call and local replies). */
export function parsePairs(data: Uint8Array): Headers {
  if (data.length < 4) return [];
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = dv.getUint32(0, true);
  const out: Headers = [];
  let p = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + i * 8, true);
    const vl = dv.getUint32(8 + i * 8, true);
    const key = dec.decode(data.subarray(p, p + kl));
    p += kl + 1;
    out.push([key, dec.decode(data.subarray(p, p + vl))]);
    p += vl + 1;
  }
  return out;
}

function encodePairs(pairs: Headers): Array<readonly [Uint8Array, Uint8Array]> {
  return pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)] as const);
}

type Phase = "none" | "requestHeaders" | "requestBody" | "responseHeaders" | "responseBody" | "log";

/** One HTTP stream driven through the plugin, with what reached each side. */
export class HttpStream {
  readonly filterState = new Map<string, Uint8Array>();
  requestHeaders: Headers = [];
  responseHeaders: Headers = [];
  /** Bytes the filter let through, in order, per direction. */
  readonly forwardedRequest: Uint8Array[] = [];
  readonly forwardedResponse: Uint8Array[] = [];
  /** Number of body callbacks that did not return Continue. */
  held = 0;
  /** Header-callback results other than Continue. */
  headerStops = 0;
  propertySets = 0;
  bufferChanges = 0;
  headerChanges = 0;
  localReplies = 0;
  /** The first local reply the plugin sent, if any. */
  localReply?: LocalReply;
  /** proxy_continue_stream calls. */
  continues = 0;
  /** A request-headers callback stopped the request, and it has not been continued. */
  requestPaused = false;
  /** How the request left the filter: on to the upstream, or answered by a local reply. */
  readonly released: Promise<"continue" | "local">;
  private release!: (how: "continue" | "local") => void;
  /** Request body that arrived while the request was paused (Envoy buffers it). */
  private waitingBody: { parts: Uint8Array[]; end: boolean } | null = null;
  /** Host calls the plugin made for this stream. */
  hostCalls = 0;
  /** Route cache clears (request-header changes) and route choices, with `routes`. */
  routeCacheClears = 0;
  routePicks = 0;
  /** The cluster of each route choice, in order. */
  readonly pickedClusters: Array<string | undefined> = [];
  /** The request headers as the router sends them upstream: after the route's host rewrite. */
  upstreamRequestHeaders: Headers = [];
  ended = false;
  private route: { name?: string; cluster: string; authority?: string } | null = null;
  private routeStale = true;
  /** The router has run: the route is final. */
  private routed = false;

  private phase: Phase = "none";
  /** The body buffer of the running body callback: parts, joined only when the plugin reads it. */
  private chunkParts: Uint8Array[] | null = null;
  private chunkJoined: Uint8Array | null = null;
  /** What a StopIterationAndBuffer kept, per direction (Envoy appends; so does this). */
  private buffered: Uint8Array[][] = [[], []];

  private get chunk(): Uint8Array | null {
    if (this.chunkJoined === null && this.chunkParts !== null) {
      this.chunkJoined = this.chunkParts.length === 1 ? this.chunkParts[0] : concat(this.chunkParts);
    }
    return this.chunkJoined;
  }

  private set chunk(v: Uint8Array | null) {
    this.chunkJoined = v;
    this.chunkParts = v === null ? null : [v];
  }

  constructor(
    readonly host: ProxyWasmHost,
    readonly id: number,
    readonly options: StreamOptions,
  ) {
    this.released = new Promise((resolve) => (this.release = resolve));
  }

  /** proxy_continue_stream(Request), after the VM call: the waiting body, then the upstream. */
  continueRequest(): void {
    if (!this.requestPaused || this.ended) return;
    this.requestPaused = false;
    const waiting = this.waitingBody;
    this.waitingBody = null;
    if (waiting) this.body(0, concat(waiting.parts), waiting.end);
    this.toRouter();
  }

  /**
   * A local reply, as Envoy sends one from a decoder filter: through the filter's response
   * callbacks (headers, then the body with end_of_stream), then the end of the stream. Envoy
   * sets content-type text/plain for a body; the plugin's headers replace same-named ones.
   */
  sendLocalReply(reply: LocalReply): void {
    if (this.ended) return;
    this.requestPaused = false;
    this.waitingBody = null;
    const headers: Headers = [[":status", String(reply.status)]];
    if (reply.body.length > 0)
      headers.push(["content-length", String(reply.body.length)], ["content-type", "text/plain"]);
    for (const [k, v] of reply.headers) {
      const key = k.toLowerCase();
      for (let i = headers.length - 1; i >= 0; i--) if (headers[i][0] === key) headers.splice(i, 1);
      headers.push([key, v]);
    }
    this.sendResponseHeaders(headers, reply.body.length === 0);
    if (reply.body.length > 0) this.sendResponseBody(reply.body, true);
    this.end();
    this.release("local");
  }

  headerChanged(type: number): void {
    this.headerChanges++;
    if (type === HeaderMapType.RequestHeaders) this.clearRouteCache();
  }

  clearRouteCache(): void {
    this.routeCacheClears++;
    this.routeStale = true;
  }

  /** Chooses the route from the current request headers (the connection manager, the router). */
  private pickRoute(): void {
    const rules = this.host.options.routes;
    if (!rules) return;
    this.routeStale = false;
    this.routePicks++;
    // Envoy's header matchers see every value of a repeated header, joined with commas.
    const get = (k: string) =>
      this.requestHeaders
        .filter(([n]) => n === k)
        .map(([, v]) => v)
        .join(",");
    const has = (k: string) => this.requestHeaders.some(([n]) => n === k);
    const rule = rules.find(
      (r) =>
        Object.entries(r.headers ?? {}).every(([k, v]) => get(k) === v) &&
        (r.matches === undefined || r.matches((k) => (has(k) ? get(k) : undefined))),
    );
    if (!rule) this.route = null;
    else {
      // Envoy: random value (the stream id) modulo the total weight, then cumulative weights.
      const total = rule.clusters.reduce((n, c) => n + c.weight, 0);
      let pick = (this.options.streamId ?? this.id * 2654435761) % Math.max(total, 1);
      let chosen = rule.clusters[0];
      for (const c of rule.clusters) {
        if (pick < c.weight) {
          chosen = c;
          break;
        }
        pick -= c.weight;
      }
      this.route = { name: rule.name, cluster: chosen.cluster, authority: chosen.authority };
    }
    this.pickedClusters.push(this.route?.cluster);
  }

  /**
   * The upstream cluster Envoy's attributes show: once the router has run, `finalCluster` if the
   * stream has one; with `routes`, the last route choice (stale after a header change until the
   * router chooses again); else the stream's fixed one.
   */
  get cluster(): string | undefined {
    if (this.routed && this.options.finalCluster !== undefined) return this.options.finalCluster;
    return this.host.options.routes ? this.route?.cluster : this.options.cluster;
  }

  /** The route name Envoy logs as %ROUTE_NAME%, or undefined. */
  get routeName(): string | undefined {
    return this.host.options.routes ? this.route?.name : undefined;
  }

  /** The value of a filter-state key as text, or undefined. */
  state(key: string): string | undefined {
    const v = this.filterState.get(key);
    return v === undefined ? undefined : dec.decode(v);
  }

  readableHeaders(type: number): Headers | undefined {
    // Envoy keeps the request headers while a headers callback's stop holds the request.
    if (type === HeaderMapType.RequestHeaders && (this.phase === "requestHeaders" || this.requestPaused))
      return this.requestHeaders;
    if (type === HeaderMapType.ResponseHeaders && this.phase === "responseHeaders")
      return this.responseHeaders;
    return undefined;
  }

  bodyBuffer(type: number): Uint8Array | undefined {
    if (type === BufferType.HttpRequestBody && this.phase === "requestBody") return this.chunk ?? undefined;
    if (type === BufferType.HttpResponseBody && this.phase === "responseBody") return this.chunk ?? undefined;
    return undefined;
  }

  setBuffer(type: number, start: number, length: number, data: Uint8Array): number {
    const cur = this.bodyBuffer(type);
    if (cur === undefined) return WasmResult.NotFound;
    let next: Uint8Array;
    if (start === 0) next = concat([data, cur.subarray(Math.min(length, cur.length))]);
    else if (start >= cur.length) next = concat([cur, data]);
    else return WasmResult.BadArgument;
    this.chunk = next;
    return WasmResult.Ok;
  }

  private run<T>(phase: Phase, f: () => T): T {
    this.phase = phase;
    try {
      return this.host.withStream(this, f);
    } finally {
      this.phase = "none";
    }
  }

  sendRequestHeaders(headers: Record<string, string> | Headers, endOfStream = false): void {
    this.requestHeaders = toPairs(headers);
    this.pickRoute(); // the connection manager chooses the route before the filters run
    this.host.stopNext = false;
    const r = this.run("requestHeaders", () =>
      this.host.call("proxy_on_request_headers", this.id, this.requestHeaders.length, endOfStream ? 1 : 0),
    );
    const stopped = (r !== undefined && r !== 0) || this.host.stopNext;
    this.host.stopNext = false;
    if (stopped) this.headerStops++;
    // A stop holds the request until the plugin continues it (or answers it, which already ran).
    if (this.ended) return;
    if (stopped && r !== undefined) this.requestPaused = true;
    else this.toRouter();
  }

  /**
   * The router, after every decoder filter: the route of the headers as the filters left them
   * (chosen again only if a change cleared the cache), then the route's host rewrite.
   */
  private toRouter(): void {
    if (this.routeStale) this.pickRoute();
    this.routed = true;
    const authority = this.route?.authority;
    this.upstreamRequestHeaders = this.requestHeaders.map(([k, v]) =>
      k === ":authority" && authority !== undefined ? [k, authority] : [k, v],
    );
    this.release("continue");
  }

  sendRequestBody(data: Uint8Array | string, endOfStream = false): void {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    if (this.ended) return;
    if (this.requestPaused) {
      this.waitingBody ??= { parts: [], end: false };
      this.waitingBody.parts.push(bytes);
      this.waitingBody.end = endOfStream;
      return;
    }
    this.body(0, bytes, endOfStream);
  }

  sendRequestTrailers(): void {
    this.run("requestBody", () => this.host.call("proxy_on_request_trailers", this.id, 0));
  }

  sendResponseHeaders(headers: Record<string, string> | Headers, endOfStream = false): void {
    this.responseHeaders = toPairs(headers);
    const r = this.run("responseHeaders", () =>
      this.host.call("proxy_on_response_headers", this.id, this.responseHeaders.length, endOfStream ? 1 : 0),
    );
    if (r !== undefined && r !== 0) this.headerStops++;
  }

  sendResponseBody(data: Uint8Array | string, endOfStream = false): void {
    this.body(1, typeof data === "string" ? enc.encode(data) : data, endOfStream);
  }

  sendResponseTrailers(): void {
    this.run("responseBody", () => this.host.call("proxy_on_response_trailers", this.id, 0));
  }

  /** Sends a body in chunks of the given sizes (the rest in one last chunk), the last with end_of_stream. */
  sendResponseChunks(data: Uint8Array | string, cuts: number[]): void {
    for (const part of split(typeof data === "string" ? enc.encode(data) : data, cuts)) {
      this.sendResponseBody(part.bytes, part.last);
    }
  }

  sendRequestChunks(data: Uint8Array | string, cuts: number[]): void {
    for (const part of split(typeof data === "string" ? enc.encode(data) : data, cuts)) {
      this.sendRequestBody(part.bytes, part.last);
    }
  }

  /** Stream completion, in Envoy's order: access-log handlers (on_log), then done and delete. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.requestPaused = false;
    this.run("log", () => this.host.call("proxy_on_log", this.id));
    this.host.withStream(this, () => {
      this.host.call("proxy_on_done", this.id);
      this.host.call("proxy_on_delete", this.id);
    });
    this.host.forget(this.id);
  }

  /** All bytes forwarded in one direction. */
  forwarded(direction: "request" | "response"): Uint8Array {
    return concat(direction === "request" ? this.forwardedRequest : this.forwardedResponse);
  }

  private body(direction: 0 | 1, data: Uint8Array, endOfStream: boolean): void {
    const parts = [...this.buffered[direction], data];
    let size = 0;
    for (const p of parts) size += p.length;
    this.chunkParts = parts;
    this.chunkJoined = null;
    const phase = direction === 0 ? "requestBody" : "responseBody";
    const cb = direction === 0 ? "proxy_on_request_body" : "proxy_on_response_body";
    const status = this.run(phase, () => this.host.call(cb, this.id, size, endOfStream ? 1 : 0));
    const changed =
      this.chunkJoined !== null && this.chunkParts!.length === 1 && this.chunkParts![0] === this.chunkJoined;
    const out = changed ? [this.chunkJoined!] : this.chunkParts!;
    this.chunkParts = null;
    this.chunkJoined = null;
    // A failed VM under FAIL_OPEN lets data through; so does Continue.
    if (status === undefined || status === DataStatus.Continue || endOfStream) {
      if (status !== undefined && status !== DataStatus.Continue) this.held++;
      (direction === 0 ? this.forwardedRequest : this.forwardedResponse).push(
        out.length === 1 ? out[0] : concat(out),
      );
      this.buffered[direction] = [];
    } else {
      this.held++;
      this.buffered[direction] = status === DataStatus.StopIterationAndBuffer ? out : [];
    }
  }
}

function toPairs(headers: Record<string, string> | Headers): Headers {
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return pairs.map(([k, v]) => [k.toLowerCase(), v]);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Splits bytes at the given offsets (ascending, deduplicated, within range). */
export function split(data: Uint8Array, cuts: number[]): Array<{ bytes: Uint8Array; last: boolean }> {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < data.length))].sort((a, b) => a - b);
  const out: Array<{ bytes: Uint8Array; last: boolean }> = [];
  let from = 0;
  for (const p of points) {
    out.push({ bytes: data.subarray(from, p), last: false });
    from = p;
  }
  out.push({ bytes: data.subarray(from), last: true });
  return out;
}

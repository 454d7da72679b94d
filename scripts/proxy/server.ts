// SPDX-License-Identifier: Apache-2.0
// The local sidecar: an HTTP/1.1 proxy on Node that drives every request through the built
// plugin in the project's proxy-wasm host, in Envoy's order: request headers (the route chosen
// before and again after the filter, as the connection manager does), each request body chunk
// as it arrives, then upstream; response headers, each response body chunk as it arrives, then
// on_log, on_done and on_delete. Nothing is held: a chunk goes on once the plugin has seen it,
// and a side that cannot take more pauses the other (backpressure). The admin listener serves
// /stats/prometheus (the bootstrap's stats_tags applied) and /config_dump.

import { createServer, request as httpRequest, Agent as HttpAgent } from "node:http";
import type { IncomingMessage, ServerResponse, ClientRequest, Server } from "node:http";
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { networkInterfaces } from "node:os";
import { ProxyWasmHost, LogLevel, type HttpStream } from "../../tests/host/host.ts";
import { renderPrometheus, type TagSpecifier } from "../../tests/host/telemetry.ts";
import { accessLogLine, checkFormat } from "./access-log.ts";
import { clusterHost, ensureDefaultRoute, hostOf, type ProxyRoutes } from "./routes.ts";
import type { PluginConfig } from "./config.ts";

export interface Address {
  host: string;
  port: number;
}

export interface ProxyOptions {
  wasm: string;
  config: PluginConfig;
  routes: ProxyRoutes;
  /** HOST -> where its requests go (else https://HOST:443). */
  upstreams: Map<string, URL>;
  nodeMetadata: Record<string, string>;
  /** The VM environment. */
  env: Record<string, string>;
  /** The plugin's log level (LogLevel; 6 for off). */
  logLevel: number;
  listen: Address;
  admin?: Address;
  /** The :authority of requests addressed to the proxy itself (origin form with base_url). */
  defaultHost?: string;
  statsTags: TagSpecifier[];
  logFormat: Record<string, string>;
  /** Problems of the configuration found before starting (schema, routes). */
  problems: string[];
  accessLog?: (line: string) => void;
  log?: (line: string) => void;
}

const LEVELS: Record<string, number> = LogLevel;
/**
 * Hop-by-hop headers: they concern one connection and are not passed on (RFC 9110 7.6.1); and
 * `expect`, which Envoy answers itself (100 Continue) and removes.
 */
const HOP = new Set([
  "expect",
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

type Pairs = Array<[string, string]>;

/** This machine's addresses, which name the proxy itself when the port is its port. */
const LOCAL_ADDRESSES = new Set([
  "0.0.0.0",
  "::",
  ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address)),
]);

/** The end-to-end headers of a raw header list. */
function endToEnd(raw: string[]): Pairs {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i].toLowerCase() === "connection")
      for (const n of raw[i + 1].split(",")) named.add(n.trim().toLowerCase());
  const out: Pairs = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (!HOP.has(k) && !named.has(k)) out.push([k, raw[i + 1]]);
  }
  return out;
}

/** Header pairs as Node's flat [name, value, ...] list, pseudo-headers left out. */
function flat(pairs: Pairs): string[] {
  const out: string[] = [];
  for (const [k, v] of pairs) if (!k.startsWith(":")) out.push(k, v);
  return out;
}

function get(pairs: Pairs, name: string): string | undefined {
  return pairs.find(([k]) => k === name)?.[1];
}

const address = (a: string | undefined, p: number | undefined) =>
  a === undefined ? undefined : `${a.includes(":") ? `[${a}]` : a}:${p}`;

interface Exchange {
  s: HttpStream;
  req: IncomingMessage;
  res: ServerResponse;
  t0: number;
  start: Date;
  up?: ClientRequest;
  upstreamName?: string;
  bytesReceived: number;
  bytesSent: number;
  flags: string[];
  upstreamHost?: string;
  upstreamLocal?: string;
  failure?: string;
  /** The proxy answered itself: the rest of the request goes neither to the plugin nor upstream. */
  local: boolean;
  done: boolean;
  sentHeaders: Pairs;
  code?: number;
}

export class LocalProxy {
  readonly counts = { requests: 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, reset: 0, local: 0 };
  server!: Server;
  adminServer?: Server;
  listenAddress!: Address;
  adminAddress?: Address;
  /** Problems the configuration has: the plugin's warnings at configure time, and ProxyOptions.problems. */
  configProblems: string[] = [];
  private readonly active = new Set<Exchange>();
  private readonly defaultsAdded = new Set<string>();
  private readonly agents = {
    http: new HttpAgent({ keepAlive: true }),
    https: new HttpsAgent({ keepAlive: true }),
  };
  private last = performance.now();
  private trapsReported = 0;
  private readonly accessLog: (line: string) => void;
  private readonly log: (line: string) => void;

  private constructor(
    readonly host: ProxyWasmHost,
    readonly options: ProxyOptions,
  ) {
    this.accessLog = options.accessLog ?? ((l) => process.stdout.write(l + "\n"));
    this.log = options.log ?? ((l) => process.stderr.write(l + "\n"));
  }

  /** Loads the plugin (canary VM, then the worker VM) and opens the listeners. */
  static async start(options: ProxyOptions): Promise<LocalProxy> {
    // The format is checked once, before any request, so that a bad one fails here.
    checkFormat(options.logFormat);
    const host = await ProxyWasmHost.load(options.wasm, {
      pluginConfig: options.config.json,
      nodeMetadata: options.nodeMetadata,
      env: options.env,
      routes: options.routes.rules,
      logLevel: Math.min(options.logLevel, LogLevel.critical),
    });
    const proxy = new LocalProxy(host, options);
    proxy.configProblems = [
      ...host.logs.filter((l) => LEVELS[l.level] >= LogLevel.warn).map((l) => `plugin: ${l.message}`),
      ...options.problems,
    ];
    host.canaryLogs.length = 0; // the canary says what the worker says: print it once
    proxy.drainLogs();
    proxy.server = createServer({ noDelay: true }, (req, res) => {
      try {
        proxy.handle(req, res);
      } catch (e) {
        // A request the proxy cannot handle (an authority that is no host name, ...) fails alone.
        proxy.log(`[proxy error] ${req.method} ${req.url}: ${(e as Error).message}`);
        if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain" });
        res.end(`asm-llm-proxy: ${(e as Error).message}\n`);
      }
    });
    proxy.server.on("connect", (_req, socket: Socket) => {
      socket.on("error", () => undefined); // a client that resets is no concern of the proxy's
      const body =
        "CONNECT is not proxied: the plugin reads plain HTTP. Call http://HOST/ through the proxy; it opens TLS to the provider itself.\n";
      socket.end(
        `HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
    proxy.listenAddress = await listen(proxy.server, options.listen, "--listen");
    if (options.admin) {
      proxy.adminServer = createServer((req, res) => proxy.adminRequest(req, res));
      try {
        proxy.adminAddress = await listen(proxy.adminServer, options.admin, "--admin");
      } catch (e) {
        proxy.server.close();
        throw e;
      }
    }
    return proxy;
  }

  /** Stops listening, lets running requests finish (up to graceMs), then closes everything. */
  async close(graceMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    this.adminServer?.close();
    this.adminServer?.closeAllConnections();
    const deadline = Date.now() + graceMs;
    while (this.active.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.server.closeAllConnections();
    await closed;
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /** The proxy's counts and the plugin's counters, as printed on exit. */
  summary(): string {
    const c = this.counts;
    const lines = [
      `${c.requests} requests: ${c["2xx"]} 2xx, ${c["3xx"]} 3xx, ${c["4xx"]} 4xx, ${c["5xx"]} 5xx, ${c.reset} reset, ${c.local} answered by the proxy`,
    ];
    for (const l of this.prometheus().split("\n"))
      if (l.startsWith("asm_llm_proxy_") && !/_(bucket|sum|count)\{/.test(l)) lines.push(l);
    return lines.join("\n");
  }

  prometheus(): string {
    return renderPrometheus(this.host, this.options.statsTags);
  }

  /** Advances the host clock to now, so that the plugin's durations are real. */
  private tick(): void {
    const now = performance.now();
    this.host.advanceMs(now - this.last);
    this.last = now;
  }

  private drainLogs(): void {
    for (const l of this.host.logs.splice(0))
      if ((LEVELS[l.level] ?? LogLevel.info) >= this.options.logLevel)
        this.log(`[wasm ${l.level}] ${l.message}`);
    while (this.trapsReported < this.host.traps.length)
      this.log(
        `[proxy error] the plugin trapped and is skipped from now on (FAIL_OPEN): ${this.host.traps[this.trapsReported++].message}`,
      );
  }

  /** Whether an authority names the proxy itself (origin form: base_url points at the proxy). */
  private isSelf(authority: string): boolean {
    if (authority === "") return true;
    const m = /:(\d+)$/.exec(authority);
    if (!m || Number(m[1]) !== this.listenAddress.port) return false;
    const host = hostOf(authority).replace(/^\[|\]$/g, "");
    return host === "localhost" || host === this.listenAddress.host || LOCAL_ADDRESSES.has(host);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.counts.requests++;
    let authority = req.headers.host ?? "";
    let path = req.url ?? "/";
    // Forward-proxy form (curl -x, HTTP_PROXY): the absolute URL names the host.
    const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(path);
    if (absolute) {
      authority = absolute[1];
      path = absolute[2] === "" ? "/" : absolute[2].startsWith("/") ? absolute[2] : "/" + absolute[2];
    }
    const self = this.isSelf(authority);
    if (self && this.options.defaultHost) authority = this.options.defaultHost;
    const requestHeaders: Pairs = [
      [":authority", authority],
      [":path", path],
      [":method", req.method ?? "GET"],
      [":scheme", "http"],
      ...endToEnd(req.rawHeaders),
    ];
    if (get(requestHeaders, "x-forwarded-proto") === undefined)
      requestHeaders.push(["x-forwarded-proto", "http"]);
    if (get(requestHeaders, "x-request-id") === undefined)
      requestHeaders.push(["x-request-id", randomUUID()]);
    const hasBody =
      req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] ?? "0") !== "0";
    if (!self || this.options.defaultHost)
      ensureDefaultRoute(this.options.routes, authority, this.defaultsAdded);
    const x: Exchange = {
      s: this.host.stream({ streamId: Math.floor(Math.random() * 0xffffffff) }),
      req,
      res,
      t0: performance.now(),
      start: new Date(),
      bytesReceived: 0,
      bytesSent: 0,
      flags: [],
      local: false,
      done: false,
      sentHeaders: [],
    };
    this.active.add(x);
    // A client's reset shows as 'close' below; the streams' own errors add nothing to it.
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    res.on("close", () => {
      if (x.done) return;
      // The client went away before the response ended: Envoy resets the upstream stream.
      x.flags.push("DC");
      x.up?.destroy();
      this.finish(x);
    });
    this.tick();
    x.s.sendRequestHeaders(requestHeaders, !hasBody);
    this.drainLogs();
    const cluster = x.s.cluster;
    if (self && !this.options.defaultHost) {
      return this.localReply(
        x,
        404,
        `this request names the proxy itself (${authority}): call http://HOST/... with -x/HTTP_PROXY, or start the proxy with --default-host HOST\n`,
        "NR",
      );
    }
    if (cluster === undefined) {
      return this.localReply(
        x,
        404,
        `no route for ${authority}${path} in the --routes VirtualServices\n`,
        "NR",
      );
    }
    const upHost = clusterHost(cluster) ?? hostOf(authority);
    const target = this.options.upstreams.get(upHost) ?? new URL(`https://${upHost}:443`);
    x.upstreamName = `${upHost} (${target.origin})`;
    this.forward(x, target, hasBody);
  }

  private forward(x: Exchange, target: URL, hasBody: boolean): void {
    const { s, req } = x;
    const tls = target.protocol === "https:";
    const prefix = target.pathname.replace(/\/$/, "");
    // The request as the router sends it: after the route's host rewrite, if it has one.
    const upstream = s.upstreamRequestHeaders;
    const headers: string[] = [];
    headers.push("host", get(upstream, ":authority") ?? "");
    headers.push(...flat(upstream));
    const up = (tls ? httpsRequest : httpRequest)({
      host: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port || (tls ? 443 : 80),
      method: get(s.requestHeaders, ":method"),
      path: prefix + (get(s.requestHeaders, ":path") ?? "/"),
      headers: headers as any,
      agent: tls ? this.agents.https : this.agents.http,
    });
    x.up = up;
    const sentAt = performance.now();
    up.on("socket", (socket) => socket.setNoDelay(true));
    let paused = false;
    const flushUp = () => {
      for (const b of s.forwardedRequest.splice(0)) {
        if (b.length > 0 && !up.write(b) && !paused) {
          paused = true;
          req.pause();
          up.once("drain", () => {
            paused = false;
            req.resume();
          });
        }
      }
    };
    if (!hasBody) up.end();
    else {
      req.on("data", (chunk: Buffer) => {
        x.bytesReceived += chunk.length;
        if (x.local || x.done) return;
        this.tick();
        s.sendRequestBody(chunk, false);
        this.drainLogs();
        flushUp();
      });
      req.on("end", () => {
        if (x.local || x.done) return;
        this.tick();
        s.sendRequestBody(new Uint8Array(0), true);
        this.drainLogs();
        flushUp();
        up.end();
      });
    }
    up.on("response", (ures) => this.respond(x, ures, Math.round(performance.now() - sentAt)));
    up.on("error", (err: NodeJS.ErrnoException) => {
      if (x.done) return;
      if (x.res.headersSent) return this.reset(x, "UC");
      const tlsFailure = /CERT|SSL|TLS|self.signed|certificate/i.test(`${err.code} ${err.message}`);
      x.failure = `${err.code ?? "error"}: ${err.message}`;
      const what = tlsFailure ? "upstream TLS failure" : "upstream connect error";
      this.log(`[proxy warn] ${what}: ${x.upstreamName}: ${x.failure}`);
      this.localReply(x, 502, `${what}: ${x.upstreamName}: ${x.failure}\n`, "UF");
    });
  }

  private respond(x: Exchange, ures: IncomingMessage, serviceMs: number): void {
    if (x.done) return void ures.resume();
    const { s, res } = x;
    const sock = ures.socket;
    x.upstreamHost = address(sock?.remoteAddress, sock?.remotePort);
    x.upstreamLocal = address(sock?.localAddress, sock?.localPort);
    const status = ures.statusCode ?? 502;
    const method = get(s.requestHeaders, ":method");
    const bodyless =
      method === "HEAD" || status === 204 || status === 304 || ures.headers["content-length"] === "0";
    this.tick();
    s.sendResponseHeaders(
      [
        [":status", String(status)],
        ...endToEnd(ures.rawHeaders),
        ["x-envoy-upstream-service-time", String(serviceMs)],
      ],
      bodyless,
    );
    this.drainLogs();
    this.writeHead(x);
    let paused = false;
    const flushDown = () => {
      for (const b of s.forwardedResponse.splice(0)) {
        if (b.length === 0) continue;
        x.bytesSent += b.length;
        if (!res.write(b) && !paused) {
          paused = true;
          ures.pause();
          res.once("drain", () => {
            paused = false;
            ures.resume();
          });
        }
      }
    };
    ures.on("data", (chunk: Buffer) => {
      if (x.done) return;
      this.tick();
      s.sendResponseBody(chunk, false);
      this.drainLogs();
      flushDown();
    });
    ures.on("end", () => {
      if (x.done) return;
      if (!bodyless) {
        this.tick();
        s.sendResponseBody(new Uint8Array(0), true);
        this.drainLogs();
        flushDown();
      }
      res.end(() => this.finish(x));
    });
    ures.on("error", () => undefined);
    ures.on("close", () => {
      // The upstream connection ended before the body did: the client's response is cut too.
      if (!ures.complete && !x.done) this.reset(x, "UC");
    });
  }

  /** The response head as the plugin left it. */
  private writeHead(x: Exchange): void {
    const status = Number(get(x.s.responseHeaders, ":status")) || 502;
    x.code = status;
    x.sentHeaders = x.s.responseHeaders.filter(([k]) => !k.startsWith(":"));
    x.res.writeHead(status, flat(x.s.responseHeaders) as any);
  }

  /** A reply of the proxy's own (no route, upstream unreachable), through the plugin like Envoy's. */
  private localReply(x: Exchange, status: number, body: string, flag: string): void {
    x.local = true;
    x.flags.push(flag);
    this.counts.local++;
    x.req.resume(); // the rest of the request body is read and dropped
    this.tick();
    x.s.sendResponseHeaders(
      [
        [":status", String(status)],
        ["content-type", "text/plain"],
        ["content-length", String(Buffer.byteLength(body))],
      ],
      false,
    );
    x.s.sendResponseBody(body, true);
    this.drainLogs();
    this.writeHead(x);
    for (const b of x.s.forwardedResponse.splice(0)) {
      x.bytesSent += b.length;
      x.res.write(b);
    }
    x.res.end(() => this.finish(x));
  }

  /** An upstream reset after the response began: the downstream connection is closed mid-body. */
  private reset(x: Exchange, flag: string): void {
    if (x.done) return;
    x.flags.push(flag);
    this.counts.reset++;
    this.log(`[proxy warn] upstream ${x.upstreamName} reset the stream mid-response`);
    this.finish(x);
    x.res.destroy();
  }

  private finish(x: Exchange): void {
    if (x.done) return;
    x.done = true;
    // A response that ended before its request did: the upstream request is reset, as Envoy does.
    if (x.up && !x.up.writableEnded) x.up.destroy();
    this.active.delete(x);
    this.tick();
    x.s.end();
    this.drainLogs();
    const code = x.code;
    if (code !== undefined) {
      const cls = `${Math.floor(code / 100)}xx` as "2xx";
      if (cls in this.counts) this.counts[cls]++;
    }
    const sock = x.req.socket;
    this.accessLog(
      accessLogLine(this.options.logFormat, {
        stream: x.s,
        responseHeaders: x.sentHeaders,
        values: {
          BYTES_RECEIVED: x.bytesReceived,
          BYTES_SENT: x.bytesSent,
          DOWNSTREAM_LOCAL_ADDRESS: address(sock.localAddress, sock.localPort),
          DOWNSTREAM_REMOTE_ADDRESS: address(sock.remoteAddress, sock.remotePort),
          DURATION: Math.round(performance.now() - x.t0),
          PROTOCOL: `HTTP/${x.req.httpVersion}`,
          REQUESTED_SERVER_NAME: undefined,
          RESPONSE_CODE: code ?? 0,
          RESPONSE_FLAGS: x.flags.join(","),
          ROUTE_NAME: x.s.routeName,
          START_TIME: x.start.toISOString(),
          UPSTREAM_CLUSTER: x.s.cluster,
          UPSTREAM_HOST: x.upstreamHost,
          UPSTREAM_LOCAL_ADDRESS: x.upstreamLocal,
          UPSTREAM_TRANSPORT_FAILURE_REASON: x.failure,
        },
      }),
    );
  }

  private adminRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (path === "/stats/prometheus") return send(200, "text/plain; version=0.0.4", this.prometheus());
    if (path === "/stats") {
      const lines = [...this.host.metrics.values()].map(
        (m) => `${m.name}: ${m.type === 2 ? `P0(${m.samples.length} samples)` : m.value}`,
      );
      return send(200, "text/plain", lines.sort().join("\n") + "\n");
    }
    if (path === "/config_dump") {
      const o = this.options;
      const dump = {
        plugin_config: { source: o.config.source, value: JSON.parse(o.config.json) },
        problems: this.configProblems,
        node_metadata: o.nodeMetadata,
        routes: o.routes.rules.map((r) => ({ name: r.name ?? null, clusters: r.clusters })),
        route_warnings: o.routes.warnings,
        upstreams: Object.fromEntries([...o.upstreams].map(([k, v]) => [k, v.href])),
        default_host: o.defaultHost ?? null,
      };
      return send(200, "application/json", JSON.stringify(dump, null, 2) + "\n");
    }
    if (path === "/ready") return send(200, "text/plain", "LIVE\n");
    send(404, "text/plain", "admin paths: /stats/prometheus /stats /config_dump /ready\n");
  }
}

function listen(server: Server, a: Address, option: string): Promise<Address> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const why =
        e.code === "EADDRINUSE"
          ? "the port is in use (another proxy or Envoy?): stop it or choose another port"
          : e.code === "EACCES"
            ? "permission denied (ports below 1024 need privileges)"
            : e.message;
      reject(new Error(`${option} ${a.host}:${a.port}: cannot listen: ${why}`));
    };
    server.once("error", onError);
    server.listen(a.port, a.host, () => {
      server.off("error", onError);
      const info = server.address() as AddressInfo;
      resolve({ host: a.host, port: info.port });
    });
  });
}

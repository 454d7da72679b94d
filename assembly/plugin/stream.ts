// SPDX-License-Identifier: Apache-2.0
// One HTTP stream: decides whether it is an LLM call, scans the request and response bodies as
// they pass (JSON, or server-sent events), and publishes the model and token counts. Every
// callback lets its data continue at once; nothing here holds a byte, and the only change it can
// make are the configured rewrites of a request: the opt-in `inject_stream_usage`, and for a
// provider host (`providers`) its path, key, model and stream.

import { JsonScanner } from "../llm/json";
import {
  REQUEST_SCHEMA,
  RESPONSE_SCHEMA,
  REQUEST_MODEL,
  REQUEST_STREAM,
  REQUEST_STREAM_OPTIONS,
} from "../llm/formats";
import { Usage, requestModel, NO_COUNT } from "../llm/usage";
import { SseReader } from "../llm/sse";
import { Routing, Target, withQuery } from "../llm/routing";
import { ClosingBrace, members } from "../llm/rewrite";
import {
  KEY_REQUEST_MODEL,
  KEY_RESPONSE_MODEL,
  KEY_PROMPT_TOKENS,
  KEY_COMPLETION_TOKENS,
  KEY_TOTAL_TOKENS,
  KEY_CACHED_TOKENS,
  KEY_REASONING_TOKENS,
  KEY_REQUEST_STREAM,
  KEY_USAGE,
  KEY_FIRST_TOKEN_MS,
  KEY_DURATION_MS,
  KEY_MS_PER_OUTPUT_TOKEN,
  USAGE_PRESENT,
  USAGE_MISSING,
  USAGE_INJECTED,
  USAGE_ENCODED,
  USAGE_PARSE_ERROR,
  USAGE_ABORTED,
  USAGE_ERROR,
  UNKNOWN,
  ISSUE_ENCODED_BODY,
  ISSUE_PARSE_ERROR,
  serviceFromCluster,
  hostFromAuthority,
  asciiLower,
} from "../telemetry/names";
import {
  getHeader,
  removeHeader,
  replaceHeader,
  getProperty,
  setProperty,
  readBuffer,
  replaceBuffer,
  bufferLength,
  release,
  nowNanos,
  log,
  logEnabled,
  LogLevel,
  BufferType,
  HeaderMapType,
} from "../host/host";
import { Root, CallRecord, firstProperty } from "./root";

const H_METHOD = String.UTF8.encode(":method");
const H_PATH = String.UTF8.encode(":path");
const H_AUTHORITY = String.UTF8.encode(":authority");
const H_STATUS = String.UTF8.encode(":status");
const H_CONTENT_TYPE = String.UTF8.encode("content-type");
const H_CONTENT_ENCODING = String.UTF8.encode("content-encoding");
const H_CONTENT_LENGTH = String.UTF8.encode("content-length");
const H_ACCEPT_ENCODING = String.UTF8.encode("accept-encoding");

const P_REQUEST_MODEL = String.UTF8.encode(KEY_REQUEST_MODEL);
const P_RESPONSE_MODEL = String.UTF8.encode(KEY_RESPONSE_MODEL);
const P_PROMPT_TOKENS = String.UTF8.encode(KEY_PROMPT_TOKENS);
const P_COMPLETION_TOKENS = String.UTF8.encode(KEY_COMPLETION_TOKENS);
const P_TOTAL_TOKENS = String.UTF8.encode(KEY_TOTAL_TOKENS);
const P_CACHED_TOKENS = String.UTF8.encode(KEY_CACHED_TOKENS);
const P_REASONING_TOKENS = String.UTF8.encode(KEY_REASONING_TOKENS);
const P_REQUEST_STREAM = String.UTF8.encode(KEY_REQUEST_STREAM);
const P_USAGE = String.UTF8.encode(KEY_USAGE);
const P_FIRST_TOKEN_MS = String.UTF8.encode(KEY_FIRST_TOKEN_MS);
const P_DURATION_MS = String.UTF8.encode(KEY_DURATION_MS);
const P_MS_PER_OUTPUT_TOKEN = String.UTF8.encode(KEY_MS_PER_OUTPUT_TOKEN);

const CLUSTER_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0cluster_name"),
  String.UTF8.encode("cluster_name"),
];
// The route's name (Envoy's %ROUTE_NAME%; in Istio a VirtualService http route's `name`): under
// `xds` since Envoy 1.33, a Wasm-only top-level attribute before.
const P_XDS_ROUTE_NAME = String.UTF8.encode("xds\0route_name");
const P_ROUTE_NAME = String.UTF8.encode("route_name");

/** The route name, "" when the route has none; read only for a call to a provider with routes. */
function routeName(): string | null {
  const name = getProperty(P_XDS_ROUTE_NAME);
  return name !== null ? name : getProperty(P_ROUTE_NAME);
}

/** Inserted before the closing brace of a streamed request that does not ask for usage. */
const USAGE_OPTION_TEXT = ',"stream_options":{"include_usage":true}';
const USAGE_OPTION = String.UTF8.encode(USAGE_OPTION_TEXT);

// Parsers are reused across streams: each holds about a kilobyte that need not be reallocated.
const requestScanners: JsonScanner[] = [];
const responseScanners: JsonScanner[] = [];
const sseReaders: SseReader[] = [];

function takeScanner(pool: JsonScanner[], response: bool): JsonScanner {
  if (pool.length > 0) {
    const s = pool.pop();
    s.reset();
    return s;
  }
  return new JsonScanner(response ? RESPONSE_SCHEMA : REQUEST_SCHEMA);
}

function takeSseReader(): SseReader {
  if (sseReaders.length > 0) {
    const r = sseReaders.pop();
    r.reset();
    return r;
  }
  return new SseReader(new JsonScanner(RESPONSE_SCHEMA), new Usage());
}

/**
 * Chunks are read in windows of at most this size, so that plugin memory does not grow to the
 * size of the largest chunk Envoy ever delivers (the host copies what it hands over).
 */
const WINDOW: usize = 16384;
/** The last request chunk is read whole for usage injection only up to this size. */
const MAX_INJECT_CHUNK: usize = 65536;

/** Scans the current chunk of a body in place, window by window: read, never held or changed. */
function feedWindows(scanner: JsonScanner | null, events: SseReader | null, type: i32, size: usize): void {
  for (let start: usize = 0; start < size; start += WINDOW) {
    const length = size - start < WINDOW ? size - start : WINDOW;
    const ptr = readBuffer(type, start, length);
    if (ptr == 0) return;
    if (scanner !== null) scanner.feed(ptr, bufferLength);
    if (events !== null) events.feed(ptr, bufferLength);
    release(ptr);
  }
}

/** Usage of a JSON response body: filled and published within one call, so one serves all. */
const bodyUsage = new Usage();
/** Likewise the record handed to Root.record. */
const callRecord = new CallRecord();

const ERROR_NAMES: string[] = ["none", "syntax error", "nesting too deep", "truncated"];

function startsWithIgnoreCase(value: string, prefix: string): bool {
  return value.length >= prefix.length && asciiLower(value.substring(0, prefix.length)) == prefix;
}

export class Stream {
  root: Root;
  /** A POST to an LLM API path. Everything else is left alone from the first callback on. */
  llm: bool = false;
  authority: string = "";
  path: string = "";
  /** Values of the configured header dimensions. */
  headers: string[] = [];
  request: JsonScanner | null = null;
  /** The response body is one JSON document. */
  response: JsonScanner | null = null;
  /** The response body is an event stream. */
  events: SseReader | null = null;
  model: string | null = null;
  /** The model came from the request body (it then wins over the response's). */
  modelFromRequest: bool = false;
  /** The request asked for a stream, or the response is one. */
  streamed: bool = false;
  /** content-length was removed so that the request body may grow by USAGE_OPTION. */
  mayInject: bool = false;
  /** A provider call whose body gets members (model, stream) before its closing brace. */
  target: Target | null = null;
  brace: ClosingBrace | null = null;
  /** What was inserted, published as the request's own values when the body ends valid. */
  insertedModel: string | null = null;
  insertedStream: i8 = -1;
  /** The upstream cluster, when read in the request headers; "" when read and absent. */
  cluster: string | null = null;
  /** The provider's host, when the route chose a provider other than the one the authority names. */
  movedTo: string | null = null;
  /** The upstream cluster is the provider's own (Istio's outbound|port||host): the key may go. */
  keyAllowed: bool = false;
  injected: bool = false;
  /** Set when the response says why its usage cannot be had (error, encoded). */
  usageStatus: string = "";
  /** The response ended (end_of_stream or trailers); otherwise on_log finds it cut short. */
  responseEnded: bool = false;
  responseParseFailed: bool = false;
  completed: bool = false;
  startNs: u64 = 0;
  firstByteMs: i64 = -1;

  constructor(root: Root) {
    this.root = root;
  }

  onRequestHeaders(endOfStream: bool): void {
    const method = getHeader(HeaderMapType.RequestHeaders, H_METHOD);
    if (method === null || method != "POST") return;
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    const config = this.root.config;
    if (path === null) return;
    const known = config.matchesPath(path);
    let authority: string | null = null;
    let target: Target | null = null;
    if (config.routing.active) {
      // With providers configured, the host decides first: a POST to a provider is an LLM call
      // whatever its path (the seed's curl posts to `/`).
      authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
      if (authority !== null) target = this.providerTarget(config.routing, authority, known);
      if (target === null && !known) return;
    } else {
      if (!known) return;
      authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
    }
    this.llm = true;
    this.path = path;
    this.startNs = nowNanos();
    // Request headers cannot be read after this callback: keep what is needed later.
    if (authority !== null) this.authority = authority;
    this.readHeaderDimensions();
    this.root.readIdentity();
    if (target !== null) this.applyTarget(target, path, known);
    // Ask for an uncompressed response, so that its usage can be read (clients such as the
    // OpenAI SDKs ask for gzip by default, and the sidecar has no decompressor).
    if (config.stripAcceptEncoding) removeHeader(HeaderMapType.RequestHeaders, H_ACCEPT_ENCODING);
    if (endOfStream) return;
    this.request = takeScanner(requestScanners, false);
    // Headers can only change now, before the body shows whether it will change; without
    // content-length Envoy frames the body itself (chunked, or HTTP/2 data frames).
    if (target !== null && target.rewritesBody) {
      removeHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH);
      this.target = target;
      this.brace = new ClosingBrace();
    } else if (config.acceptsUsageOption(this.path)) {
      this.mayInject = removeHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH);
    }
  }

  /**
   * The provider this POST is for and what its route sets, or null. The upstream cluster decides
   * when it names a provider host (a weighted VirtualService split chose it); the authority
   * otherwise. A cluster that names another service is not a provider call: its key stays home.
   * The key goes only where the cluster is the provider's own: not through PassthroughCluster
   * (no ServiceEntry), which would send it wherever the client's DNS pointed, without the TLS a
   * DestinationRule originates. Everything is read before any header changes (each change makes
   * Envoy pick the route again).
   */
  private providerTarget(routing: Routing, authority: string, known: bool): Target | null {
    let provider = routing.find(authority);
    if (provider === null && !known) return null;
    const cluster = firstProperty(CLUSTER_PATHS);
    this.cluster = cluster !== null ? cluster : "";
    const service = cluster !== null ? serviceFromCluster(cluster) : null;
    if (service !== null) {
      const named = provider;
      provider = routing.find(service);
      // A weighted split sent the call to another provider: it gets its own host name too.
      if (provider !== null && provider !== named) this.movedTo = provider.host;
      this.keyAllowed = provider !== null;
    }
    if (provider === null) return null;
    return provider.targetFor(provider.routes.size > 0 ? routeName() : null);
  }

  /** The provider's path (for a path that names no known API) and key. */
  private applyTarget(target: Target, path: string, known: bool): void {
    if (!known && target.path.length > 0) {
      const upstream = withQuery(target.path, path);
      const bytes = upstream.length == target.path.length ? target.pathBytes : String.UTF8.encode(upstream);
      if (replaceHeader(HeaderMapType.RequestHeaders, H_PATH, bytes)) this.path = upstream;
    }
    const moved = this.movedTo;
    if (
      moved !== null &&
      replaceHeader(HeaderMapType.RequestHeaders, H_AUTHORITY, String.UTF8.encode(moved))
    ) {
      this.authority = moved;
    }
    // The configured key replaces whatever the client sent in that header.
    const key = target.authValue;
    if (key === null) return;
    if (this.keyAllowed) {
      replaceHeader(HeaderMapType.RequestHeaders, target.authName, key);
    } else if (logEnabled(LogLevel.Debug)) {
      const cluster = this.cluster !== null && this.cluster!.length > 0 ? this.cluster! : "-";
      log(
        LogLevel.Debug,
        "asm-llm-proxy: no key sent to " +
          this.authority +
          ": upstream cluster " +
          cluster +
          " is not the provider's",
      );
    }
  }

  private readHeaderDimensions(): void {
    const config = this.root.config;
    const n = config.headerKeys.length;
    if (n == 0) return;
    const values = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const value = getHeader(HeaderMapType.RequestHeaders, unchecked(config.headerKeys[i]));
      values[i] = value !== null && value.length > 0 ? value : UNKNOWN;
      setProperty(unchecked(config.headerProperties[i]), values[i]);
    }
    this.headers = values;
  }

  onRequestBody(size: usize, endOfStream: bool): void {
    const scanner = this.request;
    if (scanner === null) return;
    if (this.target !== null) {
      this.feedInserting(scanner, size);
      if (endOfStream) this.finishRequest();
      return;
    }
    if (endOfStream && this.mayInject && size <= MAX_INJECT_CHUNK) {
      // Injection rewrites the last chunk, so it is read whole.
      const ptr = readBuffer(BufferType.HttpRequestBody, 0, size);
      const length = bufferLength;
      if (ptr != 0) scanner.feed(ptr, length);
      this.finishRequest(ptr, length);
      release(ptr);
      return;
    }
    feedWindows(scanner, null, BufferType.HttpRequestBody, size);
    if (endOfStream) this.finishRequest();
  }

  /**
   * Scans a chunk of a provider call's body; the chunk holding the top-level closing brace gets
   * the members the body lacks inserted before that brace. Nothing is held: the chunk goes on at
   * once, changed or not.
   */
  private feedInserting(scanner: JsonScanner, size: usize): void {
    const brace = this.brace!;
    for (let start: usize = 0; start < size; start += WINDOW) {
      const length = size - start < WINDOW ? size - start : WINDOW;
      const ptr = readBuffer(BufferType.HttpRequestBody, start, length);
      if (ptr == 0) return;
      const got = bufferLength;
      const at = brace.feed(scanner, ptr, got);
      if (at >= 0) {
        const text = this.insertion(scanner, brace.empty);
        if (text.length > 0 && !this.insert(start + <usize>at, start == 0 ? ptr : 0, text)) {
          // The host refused the change: the body went on as the client sent it.
          this.insertedModel = null;
          this.insertedStream = -1;
          this.injected = false;
        }
      }
      release(ptr);
    }
  }

  /** What the closed body lacks, given what the scanner saw of its top-level keys. */
  private insertion(scanner: JsonScanner, empty: bool): string {
    const target = this.target!;
    const absent = target.model.length > 0 && scanner.state(REQUEST_MODEL) == 0;
    const stream: i8 = target.stream >= 0 && scanner.state(REQUEST_STREAM) == 0 ? target.stream : -1;
    const streamed = stream >= 0 ? stream > 0 : scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
    const usage =
      this.root.config.acceptsUsageOption(this.path) &&
      streamed &&
      scanner.state(REQUEST_STREAM_OPTIONS) == 0;
    const text = members(absent ? target.modelJson : null, stream, usage ? USAGE_OPTION_TEXT : "", empty);
    if (text.length > 0) {
      this.insertedModel = absent ? target.model : null;
      this.insertedStream = stream;
      this.injected = usage;
    }
    return text;
  }

  /**
   * Inserts `text` at byte `at` of the current request chunk. `head` is the chunk's first bytes
   * when already read (they reach past `at`), else 0 and they are read again.
   */
  private insert(at: usize, head: usize, text: string): bool {
    let prefix = head;
    if (prefix == 0 && at > 0) {
      prefix = readBuffer(BufferType.HttpRequestBody, 0, at);
      if (prefix == 0 || bufferLength < at) {
        release(prefix);
        return false;
      }
    }
    const bytes = String.UTF8.encode(text);
    const extra = <usize>bytes.byteLength;
    const out = heap.alloc(at + extra);
    if (at > 0) memory.copy(out, prefix, at);
    memory.copy(out + at, changetype<usize>(bytes), extra);
    // Envoy's set_buffer_bytes with start 0 drains `at` bytes and prepends the new ones.
    const done = replaceBuffer(BufferType.HttpRequestBody, at, out, at + extra);
    heap.free(out);
    if (prefix != head) release(prefix);
    return done;
  }

  /**
   * Ends the request body. `ptr` and `length` are its last chunk, when this is called from the
   * body callback: the only place where usage can be injected.
   */
  finishRequest(ptr: usize = 0, length: usize = 0): void {
    const scanner = this.request;
    if (scanner === null) return;
    this.request = null;
    if (scanner.finish()) {
      this.readRequest(scanner);
      if (this.mayInject) this.injectUsageOption(scanner, ptr, length);
    } else {
      this.root.issue(ISSUE_PARSE_ERROR);
      if (logEnabled(LogLevel.Debug)) {
        log(
          LogLevel.Debug,
          "asm-llm-proxy: request body of " +
            this.path +
            " is not JSON (" +
            ERROR_NAMES[scanner.error] +
            "); nothing recorded from it",
        );
      }
    }
    requestScanners.push(scanner);
  }

  private readRequest(scanner: JsonScanner): void {
    // What the plugin inserted is what goes upstream: it is the request's model and stream.
    const model = this.insertedModel !== null ? this.insertedModel : requestModel(scanner);
    if (model !== null) {
      this.model = model;
      this.modelFromRequest = true;
      setProperty(P_REQUEST_MODEL, model);
    }
    const stream =
      this.insertedStream >= 0
        ? this.insertedStream > 0
        : scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
    if (stream) this.streamed = true;
    setProperty(P_REQUEST_STREAM, stream ? "true" : "false");
  }

  /**
   * Adds `"stream_options":{"include_usage":true}` to a streamed request that has no
   * stream_options, by rewriting the last chunk around the object's closing brace.
   */
  private injectUsageOption(scanner: JsonScanner, ptr: usize, length: usize): void {
    if (!scanner.has(REQUEST_STREAM) || !scanner.bool(REQUEST_STREAM)) return;
    if (scanner.state(REQUEST_STREAM_OPTIONS) != 0) return; // the client chose its options
    const at = scanner.closedAt;
    if (ptr == 0 || at < 0 || <usize>at >= length) {
      if (logEnabled(LogLevel.Debug)) {
        log(
          LogLevel.Debug,
          "asm-llm-proxy: usage not requested for " +
            this.path +
            ": the body's closing brace was not in its last chunk",
        );
      }
      return;
    }
    const extra = <usize>USAGE_OPTION.byteLength;
    const size = length + extra;
    const out = heap.alloc(size);
    memory.copy(out, ptr, <usize>at);
    memory.copy(out + <usize>at, changetype<usize>(USAGE_OPTION), extra);
    memory.copy(out + <usize>at + extra, ptr + <usize>at, length - <usize>at);
    this.injected = replaceBuffer(BufferType.HttpRequestBody, length, out, size);
    heap.free(out);
  }

  onResponseHeaders(endOfStream: bool): void {
    if (!this.llm) return;
    const status = getHeader(HeaderMapType.ResponseHeaders, H_STATUS);
    if (status === null || status.length != 3 || !status.startsWith("2")) {
      this.usageStatus = USAGE_ERROR;
      this.skipResponse("status " + (status !== null ? status : "-"));
    } else {
      const encoding = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_ENCODING);
      const type = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_TYPE);
      const sse = type !== null && startsWithIgnoreCase(type, "text/event-stream");
      if (sse) this.streamed = true;
      if (encoding !== null && encoding.length > 0 && asciiLower(encoding) != "identity") {
        this.usageStatus = USAGE_ENCODED;
        this.root.issue(ISSUE_ENCODED_BODY);
        this.skipResponse("content-encoding " + encoding);
      } else if (type !== null && startsWithIgnoreCase(type, "application/json")) {
        if (!endOfStream) this.response = takeScanner(responseScanners, true);
      } else if (sse) {
        if (!endOfStream) this.events = takeSseReader();
      } else {
        this.skipResponse("content-type " + (type !== null ? type : "-"));
      }
    }
    if (endOfStream) this.endResponse();
  }

  private skipResponse(why: string): void {
    if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: response to " + this.path + " not read: " + why);
    }
  }

  onResponseBody(size: usize, endOfStream: bool): void {
    if (!this.llm || this.completed) return;
    if (this.firstByteMs < 0 && size > 0) {
      // Time to the first byte of the body: for a stream, the first token.
      this.firstByteMs = this.elapsedMs();
      if (this.firstByteMs >= 0) setProperty(P_FIRST_TOKEN_MS, this.firstByteMs.toString());
    }
    if (this.response !== null || this.events !== null) {
      feedWindows(this.response, this.events, BufferType.HttpResponseBody, size);
    }
    if (endOfStream) this.endResponse();
  }

  /** The response ended normally: end_of_stream on a body chunk or on the headers, or trailers. */
  endResponse(): void {
    if (!this.llm || this.completed) return;
    this.responseEnded = true;
    this.complete();
  }

  /**
   * The access-log phase: Envoy is about to log the stream. Anything still open was cut short
   * (client cancel, upstream reset, timeout) or ended without end_of_stream reaching the filter.
   */
  onLog(): void {
    this.finishRequest();
    if (this.llm && !this.completed) this.complete();
  }

  /** Publishes the call once: filter state and metrics. */
  private complete(): void {
    this.completed = true;
    const usage = this.finishParsers();
    const durationMs = this.elapsedMs();
    if (usage !== null) this.publishUsage(usage);
    const status = this.statusOf(usage);
    setProperty(P_USAGE, status);
    if (durationMs >= 0) {
      setProperty(P_DURATION_MS, durationMs.toString());
      if (usage !== null && usage.completion > 0 && this.firstByteMs >= 0 && durationMs >= this.firstByteMs) {
        setProperty(P_MS_PER_OUTPUT_TOKEN, perToken(durationMs - this.firstByteMs, usage.completion));
      }
    }
    const r = callRecord;
    r.destination = this.destination();
    const model = this.model;
    r.model = model !== null ? model : UNKNOWN;
    const responseModel = usage !== null ? usage.model : null;
    r.responseModel = responseModel !== null ? responseModel : UNKNOWN;
    r.headers = this.headers;
    r.usage = usage;
    r.usageStatus = status;
    r.stream = this.streamed;
    r.firstTokenMs = this.firstByteMs;
    r.durationMs = durationMs;
    this.root.record(r);
    r.usage = null;
  }

  /** Ends the response parsers; returns what the response said, or null when it said nothing. */
  private finishParsers(): Usage | null {
    const scanner = this.response;
    if (scanner !== null) {
      this.response = null;
      responseScanners.push(scanner);
      if (scanner.finish()) {
        const usage = bodyUsage;
        usage.reset();
        usage.add(scanner);
        return usage;
      }
      if (this.responseEnded) {
        this.responseParseFailed = true;
        this.root.issue(ISSUE_PARSE_ERROR);
        log(
          LogLevel.Info,
          "asm-llm-proxy: response body of " +
            this.path +
            " could not be read (" +
            ERROR_NAMES[scanner.error] +
            "); no tokens recorded",
        );
      }
      return null;
    }
    const events = this.events;
    if (events !== null) {
      this.events = null;
      sseReaders.push(events);
      events.finish();
      if (events.invalidEvents > 0) {
        this.root.issue(ISSUE_PARSE_ERROR);
        if (!events.usage.hasTokens) this.responseParseFailed = true;
        log(
          LogLevel.Info,
          "asm-llm-proxy: " +
            events.invalidEvents.toString() +
            " event(s) of the stream of " +
            this.path +
            " could not be read; usage taken from the other " +
            events.events.toString(),
        );
      }
      return events.usage;
    }
    return null;
  }

  /** llmproxy_usage: how the usage of this call was, or was not, obtained. */
  private statusOf(usage: Usage | null): string {
    if (usage !== null && usage.hasTokens) return this.injected ? USAGE_INJECTED : USAGE_PRESENT;
    if (this.usageStatus.length > 0) return this.usageStatus; // error, encoded
    if (!this.responseEnded) return USAGE_ABORTED;
    if (this.responseParseFailed) return USAGE_PARSE_ERROR;
    return USAGE_MISSING;
  }

  private publishUsage(usage: Usage): void {
    const responseModel = usage.model;
    if (responseModel !== null) {
      setProperty(P_RESPONSE_MODEL, responseModel);
      if (!this.modelFromRequest) {
        this.model = responseModel;
        setProperty(P_REQUEST_MODEL, responseModel);
      }
    }
    if (usage.prompt != NO_COUNT) setProperty(P_PROMPT_TOKENS, usage.prompt.toString());
    if (usage.completion != NO_COUNT) setProperty(P_COMPLETION_TOKENS, usage.completion.toString());
    const total = usage.totalTokens;
    if (total != NO_COUNT) setProperty(P_TOTAL_TOKENS, total.toString());
    if (usage.cached != NO_COUNT) setProperty(P_CACHED_TOKENS, usage.cached.toString());
    if (usage.reasoning != NO_COUNT) setProperty(P_REASONING_TOKENS, usage.reasoning.toString());
  }

  /** Milliseconds since the request headers, or -1 when the clock did not answer. */
  private elapsedMs(): i64 {
    if (this.startNs == 0) return -1;
    const now = nowNanos();
    if (now < this.startNs) return -1;
    return <i64>((now - this.startNs) / 1000000);
  }

  /** The service host of the upstream cluster, else the authority's host, else "unknown". */
  private destination(): string {
    const cached = this.cluster;
    const cluster = cached !== null && cached.length > 0 ? cached : firstProperty(CLUSTER_PATHS);
    if (cluster !== null) {
      const service = serviceFromCluster(cluster);
      if (service !== null) return service;
    }
    if (this.authority.length > 0) return hostFromAuthority(this.authority);
    return UNKNOWN;
  }

  /** Returns pooled state; called when the host deletes the stream. */
  dispose(): void {
    // Envoy logs every HTTP stream before destroying it; should a stream ever be deleted without
    // that, the call is still counted (filter state can no longer be set, metrics can).
    if (this.llm && !this.completed) this.complete();
    const req = this.request;
    if (req !== null) requestScanners.push(req);
    const res = this.response;
    if (res !== null) responseScanners.push(res);
    const events = this.events;
    if (events !== null) sseReaders.push(events);
    this.request = null;
    this.response = null;
    this.events = null;
  }
}

/** Milliseconds per token with three decimals, from whole milliseconds: "12.345". */
function perToken(ms: i64, tokens: i64): string {
  const micros = (ms * 1000) / tokens;
  const fraction = (micros % 1000).toString();
  return (micros / 1000).toString() + "." + "000".substring(fraction.length) + fraction;
}

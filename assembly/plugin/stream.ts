// SPDX-License-Identifier: Apache-2.0
// One HTTP stream: decides whether it is an LLM call, scans the request and response bodies as
// they pass (JSON, or server-sent events), and publishes the model and token counts. Every
// callback lets its data continue at once; nothing here holds a byte, and the only change it can
// make is the opt-in `inject_stream_usage` rewrite of a request body.

import { JsonScanner } from "../llm/json";
import { REQUEST_SCHEMA, RESPONSE_SCHEMA, REQUEST_STREAM, REQUEST_STREAM_OPTIONS } from "../llm/formats";
import { Usage, requestModel, NO_COUNT } from "../llm/usage";
import { SseReader } from "../llm/sse";
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
  STATE_TOTAL_TOKENS,
  STATE_CACHED_TOKENS,
  STATE_REASONING_TOKENS,
  STATE_RESPONSE_MODEL,
  STATE_REQUEST_STREAM,
  STATE_USAGE,
  STATE_FIRST_TOKEN_MS,
  STATE_DURATION_MS,
  STATE_MS_PER_OUTPUT_TOKEN,
  ISSUE_ENCODED_BODY,
  ISSUE_PARSE_ERROR,
  serviceFromCluster,
  hostFromAuthority,
  asciiLower,
} from "../telemetry/names";
import {
  getHeader,
  headerEquals,
  loadHeaders,
  dropHeaders,
  removeHeader,
  setProperty,
  setPropertyCount,
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
const V_POST = String.UTF8.encode("POST");
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

/** Inserted before the closing brace of a streamed request that does not ask for usage. */
const USAGE_OPTION = String.UTF8.encode(',"stream_options":{"include_usage":true}');

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
 * size of the largest chunk Envoy ever delivers (the host copies what it hands over). Most of
 * Envoy's chunks are smaller (HTTP/2 frames are 16 KiB), so a chunk is usually read whole, with
 * one host call; larger ones cost one call per 32 KiB.
 */
const WINDOW: usize = 32768;
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

const NO_HEADERS: string[] = [];

/** Opt-in keys that need the time of the first response byte of a call that is not streamed. */
const FIRST_BYTE_STATE: u32 = STATE_FIRST_TOKEN_MS | STATE_MS_PER_OUTPUT_TOKEN;

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
  /** Values of the configured header dimensions (none: a shared empty array, no allocation). */
  headers: string[] = NO_HEADERS;
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
    // Only a POST can be an LLM call: :method compared as bytes, nothing decoded for other requests.
    if (!headerEquals(HeaderMapType.RequestHeaders, H_METHOD, V_POST)) return;
    // The headers read below come from one copy of the whole map: one host call, not one each.
    loadHeaders(HeaderMapType.RequestHeaders);
    this.readRequestHeaders(endOfStream);
    dropHeaders();
  }

  private readRequestHeaders(endOfStream: bool): void {
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    const config = this.root.config;
    if (path === null || !config.matchesPath(path)) return;
    this.llm = true;
    this.path = path;
    this.startNs = nowNanos();
    // Request headers cannot be read after this callback: keep what is needed later.
    const authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
    if (authority !== null) this.authority = authority;
    this.readHeaderDimensions();
    this.root.readIdentity();
    // Ask for an uncompressed response, so that its usage can be read (clients such as the
    // OpenAI SDKs ask for gzip by default, and the sidecar has no decompressor).
    if (config.stripAcceptEncoding) removeHeader(HeaderMapType.RequestHeaders, H_ACCEPT_ENCODING);
    if (endOfStream) return;
    this.request = takeScanner(requestScanners, false);
    // Headers can only change now, before the body shows whether usage will be injected; without
    // content-length Envoy frames the body itself (chunked, or HTTP/2 data frames).
    if (config.acceptsUsageOption(path)) {
      this.mayInject = removeHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH);
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
    const model = requestModel(scanner);
    if (model !== null) {
      this.model = model;
      this.modelFromRequest = true;
      setProperty(P_REQUEST_MODEL, model);
    }
    const stream = scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
    if (stream) this.streamed = true;
    if (this.root.config.filterState & STATE_REQUEST_STREAM)
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
    // :status, content-type and content-encoding from one copy of the map: one host call.
    loadHeaders(HeaderMapType.ResponseHeaders);
    this.readResponseHeaders(endOfStream);
    dropHeaders();
  }

  private readResponseHeaders(endOfStream: bool): void {
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
    const published = this.root.config.filterState;
    if (this.firstByteMs < 0 && size > 0 && (this.streamed || published & FIRST_BYTE_STATE)) {
      // Time to the first byte of the body: for a stream, the first token. Only a stream's
      // histogram and two opt-in keys use it, so a call that is not streamed reads no clock here.
      this.firstByteMs = this.elapsedMs();
      if (this.firstByteMs >= 0 && published & STATE_FIRST_TOKEN_MS) {
        setPropertyCount(P_FIRST_TOKEN_MS, this.firstByteMs);
      }
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
    const published = this.root.config.filterState;
    const config = this.root.config;
    // Decoded once, and only when something uses it: its filter state, the model when the request
    // named none, or the opt-in metric dimension.
    const responseModel =
      usage !== null &&
      (!this.modelFromRequest || published & STATE_RESPONSE_MODEL || config.responseModelDimension)
        ? usage.model
        : null;
    if (usage !== null) this.publishUsage(usage, responseModel, published);
    const status = this.statusOf(usage);
    if (published & STATE_USAGE) setProperty(P_USAGE, status);
    if (durationMs >= 0) {
      if (published & STATE_DURATION_MS) setPropertyCount(P_DURATION_MS, durationMs);
      if (
        published & STATE_MS_PER_OUTPUT_TOKEN &&
        usage !== null &&
        usage.completion > 0 &&
        this.firstByteMs >= 0 &&
        durationMs >= this.firstByteMs
      ) {
        setProperty(P_MS_PER_OUTPUT_TOKEN, perToken(durationMs - this.firstByteMs, usage.completion));
      }
    }
    const r = callRecord;
    r.destination = this.destination();
    const model = this.model;
    r.model = model !== null ? model : UNKNOWN;
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

  private publishUsage(usage: Usage, responseModel: string | null, published: u32): void {
    if (responseModel !== null) {
      if (published & STATE_RESPONSE_MODEL) setProperty(P_RESPONSE_MODEL, responseModel);
      if (!this.modelFromRequest) {
        this.model = responseModel;
        setProperty(P_REQUEST_MODEL, responseModel);
      }
    }
    if (usage.prompt != NO_COUNT) setPropertyCount(P_PROMPT_TOKENS, usage.prompt);
    if (usage.completion != NO_COUNT) setPropertyCount(P_COMPLETION_TOKENS, usage.completion);
    // The other keys only when configured (`filter_state`): each is a host call and a
    // filter-state object in Envoy on every call.
    if (published & STATE_TOTAL_TOKENS) {
      const total = usage.totalTokens;
      if (total != NO_COUNT) setPropertyCount(P_TOTAL_TOKENS, total);
    }
    if (published & STATE_CACHED_TOKENS && usage.cached != NO_COUNT)
      setPropertyCount(P_CACHED_TOKENS, usage.cached);
    if (published & STATE_REASONING_TOKENS && usage.reasoning != NO_COUNT) {
      setPropertyCount(P_REASONING_TOKENS, usage.reasoning);
    }
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
    const cluster = firstProperty(CLUSTER_PATHS);
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

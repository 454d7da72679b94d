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
  UNKNOWN,
  ISSUE_ENCODED_BODY,
  ISSUE_PARSE_ERROR,
  serviceFromCluster,
  hostFromAuthority,
} from "../telemetry/names";
import {
  getHeader,
  removeHeader,
  setProperty,
  readBuffer,
  replaceBuffer,
  bufferLength,
  release,
  log,
  logEnabled,
  LogLevel,
  BufferType,
  HeaderMapType,
} from "../host/host";
import { Root, firstProperty } from "./root";

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

const ERROR_NAMES: string[] = ["none", "syntax error", "nesting too deep", "truncated"];

function startsWithIgnoreCase(value: string, prefix: string): bool {
  return value.length >= prefix.length && value.substring(0, prefix.length).toLowerCase() == prefix;
}

export class Stream {
  root: Root;
  /** A POST to an LLM API path. Everything else is left alone from the first callback on. */
  llm: bool = false;
  authority: string = "";
  path: string = "";
  request: JsonScanner | null = null;
  /** The response body is one JSON document. */
  response: JsonScanner | null = null;
  /** The response body is an event stream. */
  events: SseReader | null = null;
  model: string | null = null;
  /** The model came from the request body (it then wins over the response's). */
  modelFromRequest: bool = false;
  /** content-length was removed so that the request body may grow by USAGE_OPTION. */
  mayInject: bool = false;
  injected: bool = false;

  constructor(root: Root) {
    this.root = root;
  }

  onRequestHeaders(endOfStream: bool): void {
    const method = getHeader(HeaderMapType.RequestHeaders, H_METHOD);
    if (method === null || method != "POST") return;
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    const config = this.root.config;
    if (path === null || !config.matchesPath(path)) return;
    this.llm = true;
    this.path = path;
    // Request headers cannot be read after this callback: keep what is needed later.
    const authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
    if (authority !== null) this.authority = authority;
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
    if (endOfStream) return;
    const status = getHeader(HeaderMapType.ResponseHeaders, H_STATUS);
    if (status === null || status.length != 3 || !status.startsWith("2")) {
      this.skipResponse("status " + (status !== null ? status : "-"));
      return;
    }
    const encoding = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_ENCODING);
    if (encoding !== null && encoding.length > 0 && encoding.toLowerCase() != "identity") {
      this.root.issue(ISSUE_ENCODED_BODY);
      this.skipResponse("content-encoding " + encoding);
      return;
    }
    const type = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_TYPE);
    if (type !== null && startsWithIgnoreCase(type, "application/json")) {
      this.response = takeScanner(responseScanners, true);
    } else if (type !== null && startsWithIgnoreCase(type, "text/event-stream")) {
      this.events = takeSseReader();
    } else {
      this.skipResponse("content-type " + (type !== null ? type : "-"));
    }
  }

  private skipResponse(why: string): void {
    if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: response to " + this.path + " not read: " + why);
    }
  }

  onResponseBody(size: usize, endOfStream: bool): void {
    if (this.response === null && this.events === null) return;
    feedWindows(this.response, this.events, BufferType.HttpResponseBody, size);
    if (endOfStream) this.finishResponse();
  }

  finishResponse(): void {
    const scanner = this.response;
    if (scanner !== null) {
      this.response = null;
      responseScanners.push(scanner);
      if (scanner.finish()) {
        const usage = bodyUsage;
        usage.reset();
        usage.add(scanner);
        this.publish(usage);
      } else {
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
    }
    const events = this.events;
    if (events !== null) {
      this.events = null;
      sseReaders.push(events);
      events.finish();
      if (events.invalidEvents > 0) {
        this.root.issue(ISSUE_PARSE_ERROR);
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
      this.publish(events.usage);
    }
  }

  /** Ends whatever is still open: trailers or the access-log phase came before end_of_stream. */
  onLog(): void {
    this.finishRequest();
    this.finishResponse();
  }

  private publish(usage: Usage): void {
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
    if (usage.prompt > 0 || usage.completion > 0) {
      const model = this.model;
      this.root.countTokens(
        this.destination(),
        model !== null ? model : UNKNOWN,
        usage.prompt,
        usage.completion,
      );
    }
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

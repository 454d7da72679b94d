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
  NATIVE_SCHEMA,
  REQUEST_STREAM,
  REQUEST_STREAM_OPTIONS,
} from "../llm/formats";
import { Usage, requestModel, NO_COUNT } from "../llm/usage";
import { SseReader } from "../llm/sse";
import { Routing, Target, withQuery } from "../llm/routing";
import { ClosingBrace, members } from "../llm/rewrite";
import { MessageReader } from "../llm/reader";
import { NdjsonReader } from "../llm/ndjson";
import { JsonArrayReader } from "../llm/jsonarray";
import { EventStreamReader } from "../llm/eventstream";
import {
  API_DEFAULT,
  API_GEMINI_STREAM,
  API_BEDROCK_INVOKE,
  API_BEDROCK_INVOKE_STREAM,
  API_OLLAMA,
  API_RESPONSES,
  API_RESPONSES_GET,
  API_EMBEDDINGS,
  streamFromPath,
  pathStreams,
  queryHas,
  percentDecode,
  modelStart,
  modelEnd,
  PathShape,
} from "../llm/paths";
import {
  KEY_REQUEST_MODEL,
  KEY_RESPONSE_MODEL,
  KEY_PROMPT_TOKENS,
  KEY_COMPLETION_TOKENS,
  KEY_TOTAL_TOKENS,
  KEY_CACHED_TOKENS,
  KEY_REASONING_TOKENS,
  KEY_CACHE_WRITE_TOKENS,
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
  STATE_CACHE_WRITE_TOKENS,
  STATE_RESPONSE_MODEL,
  STATE_REQUEST_STREAM,
  STATE_USAGE,
  STATE_FIRST_TOKEN_MS,
  STATE_DURATION_MS,
  STATE_MS_PER_OUTPUT_TOKEN,
  ISSUE_ENCODED_BODY,
  ISSUE_PARSE_ERROR,
} from "../telemetry/names";
import { serviceFromCluster, hostFromAuthority, asciiLower } from "../llm/hosts";
import {
  getHeader,
  headerChoice,
  loadHeaders,
  dropHeaders,
  removeHeader,
  replaceHeader,
  getProperty,
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
const V_GET = String.UTF8.encode("GET");
const H_PATH = String.UTF8.encode(":path");
const H_AUTHORITY = String.UTF8.encode(":authority");
const H_STATUS = String.UTF8.encode(":status");
const H_CONTENT_TYPE = String.UTF8.encode("content-type");
const H_CONTENT_ENCODING = String.UTF8.encode("content-encoding");
const H_CONTENT_LENGTH = String.UTF8.encode("content-length");
const H_ACCEPT_ENCODING = String.UTF8.encode("accept-encoding");
const H_BEDROCK_INPUT_TOKENS = String.UTF8.encode("x-amzn-bedrock-input-token-count");
const H_BEDROCK_OUTPUT_TOKENS = String.UTF8.encode("x-amzn-bedrock-output-token-count");

const P_REQUEST_MODEL = String.UTF8.encode(KEY_REQUEST_MODEL);
const P_RESPONSE_MODEL = String.UTF8.encode(KEY_RESPONSE_MODEL);
const P_PROMPT_TOKENS = String.UTF8.encode(KEY_PROMPT_TOKENS);
const P_COMPLETION_TOKENS = String.UTF8.encode(KEY_COMPLETION_TOKENS);
const P_TOTAL_TOKENS = String.UTF8.encode(KEY_TOTAL_TOKENS);
const P_CACHED_TOKENS = String.UTF8.encode(KEY_CACHED_TOKENS);
const P_REASONING_TOKENS = String.UTF8.encode(KEY_REASONING_TOKENS);
const P_CACHE_WRITE_TOKENS = String.UTF8.encode(KEY_CACHE_WRITE_TOKENS);
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
// The same for the APIs with their own response fields (formats.ts NATIVE_FORMAT).
const nativeScanners: JsonScanner[] = [];
const nativeSseReaders: SseReader[] = [];
const ndjsonReaders: MessageReader[] = [];
const arrayReaders: MessageReader[] = [];
const eventStreamReaders: MessageReader[] = [];

const READER_NDJSON: u8 = 0;
const READER_ARRAY: u8 = 1;
const READER_EVENT_STREAM: u8 = 2;

function readerPool(kind: u8): MessageReader[] {
  return kind == READER_NDJSON ? ndjsonReaders : kind == READER_ARRAY ? arrayReaders : eventStreamReaders;
}

function takeMessageReader(kind: u8): MessageReader {
  const pool = readerPool(kind);
  if (pool.length > 0) {
    const r = pool.pop();
    r.reset();
    return r;
  }
  // Only the APIs with their own formats use these framings.
  const scanner = new JsonScanner(NATIVE_SCHEMA);
  if (kind == READER_NDJSON) return new NdjsonReader(scanner, new Usage());
  if (kind == READER_ARRAY) return new JsonArrayReader(scanner, new Usage());
  return new EventStreamReader(scanner, new Usage());
}

/**
 * Ids of Responses API responses already counted by this VM, so that a completed response polled
 * again (GET /v1/responses/{id}) is not counted twice. Bounded: the oldest id is forgotten first.
 */
const SEEN_RESPONSES = 256;
const seenIds = new Set<string>();
const seenOrder = new Array<string>(SEEN_RESPONSES);
let seenNext = 0;

/** Whether the id was counted before; remembers it otherwise. */
function seenBefore(id: string): bool {
  if (seenIds.has(id)) return true;
  const old = unchecked(seenOrder[seenNext]);
  if (old !== null && old.length > 0) seenIds.delete(old);
  unchecked((seenOrder[seenNext] = id));
  seenNext = (seenNext + 1) % SEEN_RESPONSES;
  seenIds.add(id);
  return false;
}

/** A decimal header value as a count, or NO_COUNT. */
function parseCount(value: string | null): i64 {
  if (value === null || value.length == 0 || value.length > 15) return NO_COUNT;
  let n: i64 = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return NO_COUNT;
    n = n * 10 + <i64>(c - 0x30);
  }
  return n;
}

function takeScanner(pool: JsonScanner[], response: bool, native: bool = false): JsonScanner {
  if (pool.length > 0) {
    const s = pool.pop();
    s.reset();
    return s;
  }
  return new JsonScanner(response ? (native ? NATIVE_SCHEMA : RESPONSE_SCHEMA) : REQUEST_SCHEMA);
}

function takeSseReader(native: bool): SseReader {
  const pool = native ? nativeSseReaders : sseReaders;
  if (pool.length > 0) {
    const r = pool.pop();
    r.reset();
    return r;
  }
  return new SseReader(new JsonScanner(native ? NATIVE_SCHEMA : RESPONSE_SCHEMA), new Usage());
}

/** Returns a response parser to the pool of its schema. */
function returnScanner(s: JsonScanner): void {
  (s.schema === NATIVE_SCHEMA ? nativeScanners : responseScanners).push(s);
}

function returnSseReader(r: SseReader): void {
  (r.scanner.schema === NATIVE_SCHEMA ? nativeSseReaders : sseReaders).push(r);
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
function feedWindows(
  scanner: JsonScanner | null,
  events: SseReader | null,
  type: i32,
  size: usize,
  messages: MessageReader | null = null,
): void {
  for (let start: usize = 0; start < size; start += WINDOW) {
    const length = size - start < WINDOW ? size - start : WINDOW;
    const ptr = readBuffer(type, start, length);
    if (ptr == 0) return;
    if (scanner !== null) scanner.feed(ptr, bufferLength);
    if (events !== null) events.feed(ptr, bufferLength);
    if (messages !== null) messages.feed(ptr, bufferLength);
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
  /** The response body is a stream of JSON messages in another framing (NDJSON, array, binary). */
  messages: MessageReader | null = null;
  messagesKind: u8 = 0;
  /** What the path shape says about the API (llm/paths.ts). */
  api: u8 = API_DEFAULT;
  /** The API answers in its own format (formats.ts NATIVE_FORMAT). */
  native: bool = false;
  /** Bedrock InvokeModel's own counts, from the response headers. */
  headerPrompt: i64 = NO_COUNT;
  headerCompletion: i64 = NO_COUNT;
  model: string | null = null;
  /** The model came from the request body or path (it then wins over the response's). */
  modelFromRequest: bool = false;
  pathModel: bool = false;
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
  /** The service host that cluster names (serviceFromCluster), kept for the metrics' tag. */
  clusterService: string | null = null;
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
    // Only a POST (or a GET, where a GET shape is configured) can be an LLM call: :method
    // compared as bytes, nothing decoded for other requests.
    const config = this.root.config;
    const method = headerChoice(HeaderMapType.RequestHeaders, H_METHOD, V_POST, V_GET);
    const post = method == 0;
    if (!post) {
      if (method != 1 || !config.getShapes) return;
      // A GET is an LLM call only on a GET shape (the Responses API's polls): its :path alone
      // decides, before the whole map is copied, so that other GETs cost one small read.
      const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
      if (path === null || config.matchShape(true, path) === null) return;
    }
    // The headers read below come from one copy of the whole map: one host call, not one each.
    loadHeaders(HeaderMapType.RequestHeaders);
    this.readRequestHeaders(endOfStream, post);
    dropHeaders();
  }

  private readRequestHeaders(endOfStream: bool, post: bool): void {
    const config = this.root.config;
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    if (path === null) return;
    let shape = config.matchShape(!post, path);
    // Where the match found a model in the path (module state of paths.ts, kept before any
    // other match).
    let from = modelStart;
    let to = modelEnd;
    const known = shape !== null;
    let authority: string | null = null;
    let target: Target | null = null;
    if (post && config.routing.active) {
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
    if (target !== null) {
      this.applyTarget(target, path, known);
      // A routed path (the seed's `/`) is read as the API the provider's path names.
      if (!known) {
        shape = config.matchShape(false, this.path);
        from = modelStart;
        to = modelEnd;
      }
    }
    if (shape !== null) this.readShape(shape, this.path, from, to);
    // Ask for an uncompressed response, so that its usage can be read (clients such as the
    // OpenAI SDKs ask for gzip by default, and the sidecar has no decompressor).
    if (config.stripAcceptEncoding) removeHeader(HeaderMapType.RequestHeaders, H_ACCEPT_ENCODING);
    if (endOfStream) return;
    this.request = takeScanner(requestScanners, false);
    // Headers can only change now, before the body shows whether it will change; without
    // content-length Envoy frames the body itself (chunked, or HTTP/2 data frames).
    // An API that names its model and stream in the path (Gemini, Bedrock) gets no body members.
    if (target !== null && target.rewritesBody && !this.pathModel && !streamFromPath(this.api)) {
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
    this.clusterService = service;
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

  /** What an API's path says: which API it is, its model (Gemini, Vertex, Bedrock), its stream. */
  private readShape(shape: PathShape, path: string, from: i32, to: i32): void {
    this.api = shape.api;
    this.native = shape.native;
    if (from >= 0) this.modelFromPath(percentDecode(path, from, to));
    if (streamFromPath(shape.api) || shape.api == API_RESPONSES_GET) {
      const stream =
        pathStreams(shape.api) || (shape.api == API_RESPONSES_GET && queryHas(path, "stream=true"));
      this.streamed = stream;
      if (this.root.config.filterState & STATE_REQUEST_STREAM)
        setProperty(P_REQUEST_STREAM, stream ? "true" : "false");
    }
  }

  /** Gemini, Vertex and Bedrock name the model in the path: it wins over anything in a body. */
  private modelFromPath(model: string): void {
    if (model.length == 0) return;
    this.model = model;
    this.modelFromRequest = true;
    this.pathModel = true;
    setProperty(P_REQUEST_MODEL, model);
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
    // A model in the path wins; what the plugin inserted is what goes upstream.
    const model: string | null = this.pathModel
      ? null
      : this.insertedModel !== null
        ? this.insertedModel
        : requestModel(scanner);
    if (model !== null) {
      this.model = model;
      this.modelFromRequest = true;
      setProperty(P_REQUEST_MODEL, model);
    }
    if (streamFromPath(this.api)) return; // set from the path
    // Ollama's native API streams unless the body says "stream": false.
    const stream =
      this.insertedStream >= 0
        ? this.insertedStream > 0
        : this.api == API_OLLAMA
          ? !(scanner.has(REQUEST_STREAM) && !scanner.bool(REQUEST_STREAM))
          : scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
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
      if (this.api == API_BEDROCK_INVOKE) this.readBedrockCounts();
      if (encoding !== null && encoding.length > 0 && asciiLower(encoding) != "identity") {
        this.usageStatus = USAGE_ENCODED;
        this.root.issue(ISSUE_ENCODED_BODY);
        this.skipResponse("content-encoding " + encoding);
      } else if (type !== null && startsWithIgnoreCase(type, "application/json")) {
        if (endOfStream) {
          this.emptyBody(); // an empty body is not a JSON document
        } else if (this.api == API_GEMINI_STREAM) {
          this.startMessages(READER_ARRAY); // one JSON array, element by element
        } else {
          this.response = this.native
            ? takeScanner(nativeScanners, true, true)
            : takeScanner(responseScanners, true);
        }
      } else if (sse) {
        if (!endOfStream) this.events = takeSseReader(this.native);
      } else if (type !== null && startsWithIgnoreCase(type, "application/x-ndjson")) {
        this.streamed = true;
        if (!endOfStream) this.startMessages(READER_NDJSON);
      } else if (type !== null && startsWithIgnoreCase(type, "application/vnd.amazon.eventstream")) {
        this.streamed = true;
        if (!endOfStream) {
          this.startMessages(READER_EVENT_STREAM);
          if (this.api == API_BEDROCK_INVOKE_STREAM) (this.messages as EventStreamReader).chunks = true;
        }
      } else {
        this.skipResponse("content-type " + (type !== null ? type : "-"));
      }
    }
    if (endOfStream) this.endResponse();
  }

  private startMessages(kind: u8): void {
    this.messages = takeMessageReader(kind);
    this.messagesKind = kind;
  }

  private emptyBody(): void {
    this.responseParseFailed = true;
    this.root.issue(ISSUE_PARSE_ERROR);
    log(LogLevel.Info, "asm-llm-proxy: response body of " + this.path + " is empty; no tokens recorded");
  }

  /** Bedrock InvokeModel states what it bills in headers; only read on those paths. */
  private readBedrockCounts(): void {
    this.headerPrompt = parseCount(getHeader(HeaderMapType.ResponseHeaders, H_BEDROCK_INPUT_TOKENS));
    this.headerCompletion = parseCount(getHeader(HeaderMapType.ResponseHeaders, H_BEDROCK_OUTPUT_TOKENS));
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
    if (this.response !== null || this.events !== null || this.messages !== null) {
      feedWindows(this.response, this.events, BufferType.HttpResponseBody, size, this.messages);
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
    const usage = this.adjust(this.finishParsers());
    // A Responses API response polled again after it was counted: described, not counted again.
    const repeated = this.countedBefore(usage);
    const durationMs = this.elapsedMs();
    const published = this.root.config.filterState;
    const config = this.root.config;
    // Decoded once, and only when something uses it: its filter state, the model when the request
    // named none, or the opt-in metric dimension.
    let responseModel =
      usage !== null &&
      (!this.modelFromRequest || published & STATE_RESPONSE_MODEL || config.responseModelDimension)
        ? usage.model
        : null;
    if (usage !== null) this.publishUsage(usage, responseModel, published);
    // A response read whole that names no model (Bedrock Converse, Cohere) was answered by the
    // request's.
    if (responseModel === null && usage !== null) responseModel = this.model;
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
    r.usage = repeated ? null : usage;
    r.usageStatus = status;
    r.stream = this.streamed;
    r.firstTokenMs = this.firstByteMs;
    r.durationMs = durationMs;
    this.root.record(r);
    r.usage = null;
  }

  /** What an API's own rules make of the usage a body reported. */
  private adjust(parsed: Usage | null): Usage | null {
    let usage = parsed;
    const api = this.api;
    if (api == API_BEDROCK_INVOKE && (this.headerPrompt != NO_COUNT || this.headerCompletion != NO_COUNT)) {
      // Bedrock's own counts are what it bills; the model's body usage may count differently.
      if (usage === null) {
        usage = bodyUsage;
        usage.reset();
      }
      usage.prompt = this.headerPrompt;
      usage.completion = this.headerCompletion;
      usage.total = NO_COUNT;
    }
    if (usage === null) return null;
    if (api == API_EMBEDDINGS) usage.totalAsPrompt();
    // A Responses API response still queued or in progress has no usage yet.
    if (usage.pending) usage.dropTokens();
    return usage;
  }

  private countedBefore(usage: Usage | null): bool {
    if (usage === null || !usage.hasTokens) return false;
    if (this.api != API_RESPONSES && this.api != API_RESPONSES_GET) return false;
    const id = usage.id;
    if (id === null || !seenBefore(id)) return false;
    if (logEnabled(LogLevel.Debug)) {
      log(
        LogLevel.Debug,
        "asm-llm-proxy: response " + id + " was counted before; its tokens are not counted again",
      );
    }
    return true;
  }

  /** Ends the response parsers; returns what the response said, or null when it said nothing. */
  private finishParsers(): Usage | null {
    const scanner = this.response;
    if (scanner !== null) {
      this.response = null;
      returnScanner(scanner);
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
      returnSseReader(events);
      events.finish();
      return this.streamUsage(events.usage, events.invalidEvents, events.events);
    }
    const messages = this.messages;
    if (messages !== null) {
      this.messages = null;
      readerPool(this.messagesKind).push(messages);
      messages.finish();
      return this.streamUsage(messages.usage, messages.invalidEvents, messages.events);
    }
    return null;
  }

  /** The usage of a stream of events or messages, some of which may have been unreadable. */
  private streamUsage(usage: Usage, invalid: i32, valid: i32): Usage {
    if (invalid > 0) {
      this.root.issue(ISSUE_PARSE_ERROR);
      if (!usage.hasTokens) this.responseParseFailed = true;
      log(
        LogLevel.Info,
        "asm-llm-proxy: " +
          invalid.toString() +
          " event(s) of the stream of " +
          this.path +
          " could not be read; usage taken from the other " +
          valid.toString(),
      );
    }
    return usage;
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
    } else if (published & STATE_RESPONSE_MODEL) {
      // The response names no model (Bedrock Converse, Cohere): the request's answered.
      const model = this.model;
      if (model !== null) setProperty(P_RESPONSE_MODEL, model);
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
    if (published & STATE_CACHE_WRITE_TOKENS && usage.cacheWrite != NO_COUNT) {
      setPropertyCount(P_CACHE_WRITE_TOKENS, usage.cacheWrite);
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
    const cached = this.cluster;
    if (cached !== null && cached.length > 0) {
      // Read in the request headers: its service was found then.
      const service = this.clusterService;
      if (service !== null) return service;
    } else {
      const cluster = firstProperty(CLUSTER_PATHS);
      const service = cluster !== null ? serviceFromCluster(cluster) : null;
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
    if (res !== null) returnScanner(res);
    const events = this.events;
    if (events !== null) returnSseReader(events);
    const messages = this.messages;
    if (messages !== null) readerPool(this.messagesKind).push(messages);
    this.request = null;
    this.response = null;
    this.events = null;
    this.messages = null;
  }
}

/** Milliseconds per token with three decimals, from whole milliseconds: "12.345". */
function perToken(ms: i64, tokens: i64): string {
  const micros = (ms * 1000) / tokens;
  const fraction = (micros % 1000).toString();
  return (micros / 1000).toString() + "." + "000".substring(fraction.length) + fraction;
}

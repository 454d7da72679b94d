// SPDX-License-Identifier: Apache-2.0
// One HTTP stream: decides whether it is an LLM call and what to read, and calls the parts that
// do it: the provider call (provider-call.ts), the request-body insertion (insertion.ts), the
// parsers (pools.ts, chunks.ts) and, at the end, the publication (publish.ts, whose Call this
// extends). What differs between APIs comes from the path shape's rules (llm/apis.ts). Every
// callback lets its data continue at once, except that an LLM call with a token budget
// (`rate_limit`, budget.ts) waits in its request headers for the check; nothing here holds a
// byte, and the only change it can make are the configured rewrites of a request: the opt-in
// `inject_stream_usage`, and for a provider host (`providers`) its path, key, model and stream.

import { JsonScanner } from "../llm/json";
import { REQUEST_STREAM } from "../llm/formats";
import { Usage, requestModel, parseCount } from "../llm/usage";
import { Target } from "../llm/routing";
import { MessageReader } from "../llm/reader";
import { ApiRules } from "../llm/apis";
import { streamOfPath, percentDecode, modelStart, modelEnd, PathShape } from "../llm/paths";
import { asciiLower } from "../llm/hosts";
import {
  framingOf,
  framingStreams,
  FRAMING_NONE,
  FRAMING_DOCUMENT,
  FRAMING_SSE,
  FRAMING_ARRAY,
} from "../llm/framing";
import {
  USAGE_ENCODED,
  USAGE_ERROR,
  STATE_REQUEST_STREAM,
  STATE_FIRST_TOKEN_MS,
  STATE_MS_PER_OUTPUT_TOKEN,
  ISSUE_ENCODED_BODY,
} from "../telemetry/names";
import {
  getHeader,
  headerChoice,
  loadHeaders,
  dropHeaders,
  hasHeader,
  removeHeader,
  setProperty,
  setPropertyCount,
  nowNanos,
  log,
  logEnabled,
  LogLevel,
  BufferType,
  HeaderMapType,
} from "../host/host";
import { Root } from "./root";
import { Call } from "./publish";
import { providerCall, checkKeyCluster } from "./provider-call";
import { BodyInsertion } from "./insertion";
import { feedWindows } from "./chunks";
import { requestRead, emptyBody, documentUsage, streamUsage } from "./ends";
import { Check, newCheck, startCheck, report } from "./budget";
import {
  takeRequestScanner,
  returnRequestScanner,
  takeResponseScanner,
  returnResponseScanner,
  takeReader,
  returnReader,
  takeInsertion,
  returnInsertion,
} from "./pools";
import {
  H_METHOD,
  V_POST,
  V_GET,
  H_PATH,
  H_AUTHORITY,
  H_STATUS,
  H_CONTENT_TYPE,
  H_CONTENT_ENCODING,
  H_CONTENT_LENGTH,
  H_ACCEPT_ENCODING,
  P_REQUEST_MODEL,
  P_REQUEST_STREAM,
  P_FIRST_TOKEN_MS,
} from "./headers";

/** Opt-in keys that need the time of the first response byte of a call that is not streamed. */
const FIRST_BYTE_STATE: u32 = STATE_FIRST_TOKEN_MS | STATE_MS_PER_OUTPUT_TOKEN;

export class Stream extends Call {
  /** A POST to an LLM API path. Everything else is left alone from the first callback on. */
  llm: bool = false;
  request: JsonScanner | null = null;
  /** The response body is one JSON document. */
  response: JsonScanner | null = null;
  /** The response body is a stream of messages: events, NDJSON lines, array elements, binary. */
  reader: MessageReader | null = null;
  /** The API answers in its own format (formats.ts NATIVE_FORMAT). */
  native: bool = false;
  /** The model came from the path. */
  pathModel: bool = false;
  /** The request body gets members before its closing brace (provider call, usage option). */
  insertion: BodyInsertion | null = null;
  completed: bool = false;
  /** The host's id of this stream (its context id). */
  contextId: u32 = 0;
  /** The token budget check of this call, when `rate_limit` checked it. */
  check: Check | null = null;
  /**
   * A provider key was set: the provider's host and the cluster the key was allowed for, until
   * the router's final choice is checked (checkKeyRoute).
   */
  keyHost: string | null = null;
  keyCluster: string | null = null;

  constructor(root: Root) {
    super(root);
  }

  /** Whether the request must wait (a token budget check is out, or refused it). */
  onRequestHeaders(endOfStream: bool): bool {
    // Only a POST (or a GET, where a GET shape is configured) can be an LLM call: :method
    // compared as bytes, nothing decoded for other requests.
    const config = this.root.config;
    const method = headerChoice(HeaderMapType.RequestHeaders, H_METHOD, V_POST, V_GET);
    const post = method == 0;
    if (!post) {
      if (method != 1 || !config.getShapes) return false;
      // A GET is an LLM call only on a GET shape (the Responses API's polls): its :path alone
      // decides, before the whole map is copied, so that other GETs cost one small read.
      const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
      if (path === null || config.matchShape(true, path) === null) return false;
    }
    // The headers read below come from one copy of the whole map: one host call, not one each.
    loadHeaders(HeaderMapType.RequestHeaders);
    const wait = this.readRequestHeaders(endOfStream, post);
    dropHeaders();
    return wait;
  }

  private readRequestHeaders(endOfStream: bool, post: bool): bool {
    const config = this.root.config;
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    if (path === null) return false;
    let shape = config.matchShape(!post, path);
    // Where the match found a model in the path (module state of paths.ts, kept before any
    // other match).
    let from = modelStart;
    let to = modelEnd;
    const known = shape !== null;
    let authority: string | null = null;
    let target: Target | null = null;
    const call = providerCall;
    if (post && config.routing.active) {
      // With providers configured, the host decides first: a POST to a provider is an LLM call
      // whatever its path (the seed's curl posts to `/`).
      authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
      if (authority !== null) {
        target = call.find(config.routing, path, authority, known);
        this.cluster = call.cluster;
        this.clusterService = call.clusterService;
      }
      if (target === null && !known) return false;
    } else {
      if (!known) return false;
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
      call.apply(target, known);
      this.path = call.path;
      this.keyHost = call.keyHost;
      this.keyCluster = call.keyCluster;
      // A routed path (the seed's `/`) is read as the API the provider's path names.
      if (!known) {
        shape = config.matchShape(false, this.path);
        from = modelStart;
        to = modelEnd;
      }
    }
    if (shape !== null) this.readShape(shape, this.path, from, to);
    // The call is decided: provider, route, path, API and any model in the path. Its token
    // budget is checked now, before the body starts; the request waits for the answer.
    const check = newCheck(config.budget, this.root, this.contextId, this, this.model, this.headers);
    this.check = check;
    const wait = check !== null && startCheck(check);
    // Ask for an uncompressed response, so that its usage can be read (clients such as the
    // OpenAI SDKs ask for gzip by default, and the sidecar has no decompressor).
    // Only when present: removing an absent header is a host call and a route-cache clear for
    // nothing.
    if (config.stripAcceptEncoding && hasHeader(HeaderMapType.RequestHeaders, H_ACCEPT_ENCODING)) {
      removeHeader(HeaderMapType.RequestHeaders, H_ACCEPT_ENCODING);
    }
    if (endOfStream) return wait;
    this.request = takeRequestScanner();
    // Headers can only change now, before the body shows whether it will change; without
    // content-length Envoy frames the body itself (chunked, or HTTP/2 data frames).
    // An API that names its model and stream in the path (Gemini, Bedrock) gets no body members.
    const sized = hasHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH);
    if (target !== null && target.rewritesBody && !this.pathModel && !this.api.pathNamesStream) {
      if (sized) removeHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH);
      this.startInsertion(target);
    } else if (config.acceptsUsageOption(this.path)) {
      if (!sized || removeHeader(HeaderMapType.RequestHeaders, H_CONTENT_LENGTH)) this.startInsertion(null);
    }
    return wait;
  }

  /** The token budget answered this call itself (denied, or failed closed): nothing to read. */
  private get refused(): bool {
    const check = this.check;
    return check !== null && check.refused;
  }

  private startInsertion(target: Target | null): void {
    const insertion = takeInsertion();
    insertion.start(target, this.root.config, this.path);
    this.insertion = insertion;
  }

  /** What an API's path says: its rules, its model (Gemini, Vertex, Bedrock), its stream. */
  private readShape(shape: PathShape, path: string, from: i32, to: i32): void {
    const api = shape.rules;
    this.api = api;
    this.native = shape.native;
    if (from >= 0) this.modelFromPath(percentDecode(path, from, to));
    const stream = streamOfPath(api, path);
    if (stream >= 0) {
      this.streamed = stream > 0;
      if (this.root.config.filterState & STATE_REQUEST_STREAM)
        setProperty(P_REQUEST_STREAM, stream > 0 ? "true" : "false");
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

  onRequestBody(size: usize, endOfStream: bool): void {
    const scanner = this.request;
    if (scanner === null) return;
    const insertion = this.insertion;
    if (insertion !== null) {
      insertion.feed(scanner, size);
      this.injected = insertion.usageOption;
    } else {
      feedWindows(scanner, null, BufferType.HttpRequestBody, size);
    }
    if (endOfStream) this.finishRequest();
  }

  /** Ends the request body: its end_of_stream, its trailers, or the end of the stream. */
  finishRequest(): void {
    const scanner = this.request;
    if (scanner === null) return;
    this.request = null;
    if (requestRead(this, scanner)) this.readRequest(scanner);
    returnRequestScanner(scanner);
    const insertion = this.insertion;
    if (insertion !== null) {
      this.insertion = null;
      returnInsertion(insertion);
    }
  }

  private readRequest(scanner: JsonScanner): void {
    const insertion = this.insertion;
    // A model in the path wins; what the plugin inserted is what goes upstream.
    const inserted = insertion !== null ? insertion.model : null;
    const model: string | null = this.pathModel ? null : inserted !== null ? inserted : requestModel(scanner);
    if (model !== null) {
      this.model = model;
      this.modelFromRequest = true;
      setProperty(P_REQUEST_MODEL, model);
    }
    const api = this.api;
    if (api.pathNamesStream) return; // set from the path
    const insertedStream: i8 = insertion !== null ? insertion.stream : -1;
    // Some APIs (Ollama's native one) stream unless the body says "stream": false.
    const stream =
      insertedStream >= 0
        ? insertedStream > 0
        : api.streamsByDefault
          ? !(scanner.has(REQUEST_STREAM) && !scanner.bool(REQUEST_STREAM))
          : scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
    if (stream) this.streamed = true;
    if (this.root.config.filterState & STATE_REQUEST_STREAM)
      setProperty(P_REQUEST_STREAM, stream ? "true" : "false");
  }

  /**
   * Once the router has chosen (from the response on, `xds.cluster_name` is final): a key that
   * went with the call to another cluster than the one it was allowed for is an error, logged
   * with both clusters (never the key) and counted per provider. A header the plugin changed
   * made Envoy choose the route again, and a route matched on it (README: the precondition).
   */
  private checkKeyRoute(): void {
    const allowed = this.keyCluster;
    if (allowed === null) return;
    this.keyCluster = null;
    // A call the plugin answered itself (its budget) sent its key nowhere.
    if (!this.refused) checkKeyCluster(this.root, this.keyHost!, allowed);
  }

  onResponseHeaders(endOfStream: bool): void {
    this.checkKeyRoute();
    if (!this.llm || this.refused) return;
    // :status, content-type and content-encoding from one copy of the map: one host call.
    loadHeaders(HeaderMapType.ResponseHeaders);
    this.readResponseHeaders(endOfStream);
    dropHeaders();
  }

  /** What the response headers say about reading the body; checks on them belong here too. */
  private readResponseHeaders(endOfStream: bool): void {
    const status = getHeader(HeaderMapType.ResponseHeaders, H_STATUS);
    if (status === null || status.length != 3 || !status.startsWith("2")) {
      this.usageStatus = USAGE_ERROR;
      this.skipResponse("status " + (status !== null ? status : "-"));
    } else {
      const api = this.api;
      const encoding = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_ENCODING);
      const type = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_TYPE);
      const framing = framingOf(type, api.jsonArray);
      if (framing == FRAMING_SSE) this.streamed = true;
      if (api.promptHeader !== null) this.readHeaderCounts(api);
      if (encoding !== null && encoding.length > 0 && asciiLower(encoding) != "identity") {
        this.usageStatus = USAGE_ENCODED;
        this.root.issue(ISSUE_ENCODED_BODY);
        this.skipResponse("content-encoding " + encoding);
      } else if (framing == FRAMING_NONE) {
        this.skipResponse("content-type " + (type !== null ? type : "-"));
      } else {
        if (framingStreams(framing)) this.streamed = true;
        if (!endOfStream) {
          if (framing == FRAMING_DOCUMENT) this.response = takeResponseScanner(this.native);
          else this.reader = takeReader(framing, this.native, api.base64Payloads);
        } else if (framing == FRAMING_DOCUMENT || framing == FRAMING_ARRAY) {
          emptyBody(this); // an empty body is not a JSON document
        }
      }
    }
    if (endOfStream) this.endResponse();
  }

  /** An API that states what it bills in headers (Bedrock InvokeModel); only read on its paths. */
  private readHeaderCounts(api: ApiRules): void {
    this.headerPrompt = parseCount(getHeader(HeaderMapType.ResponseHeaders, api.promptHeader!));
    this.headerCompletion = parseCount(getHeader(HeaderMapType.ResponseHeaders, api.completionHeader!));
  }

  private skipResponse(why: string): void {
    if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: response to " + this.logPath + " not read: " + why);
    }
  }

  onResponseBody(size: usize, endOfStream: bool): void {
    if (!this.llm || this.completed || this.refused) return;
    const published = this.root.config.filterState;
    if (this.firstByteMs < 0 && size > 0 && (this.streamed || published & FIRST_BYTE_STATE)) {
      // Time to the first byte of the body: for a stream, the first token. Only a stream's
      // histogram and two opt-in keys use it, so a call that is not streamed reads no clock here.
      this.firstByteMs = this.elapsedMs();
      if (this.firstByteMs >= 0 && published & STATE_FIRST_TOKEN_MS) {
        setPropertyCount(P_FIRST_TOKEN_MS, this.firstByteMs);
      }
    }
    if (this.response !== null || this.reader !== null) {
      feedWindows(this.response, this.reader, BufferType.HttpResponseBody, size);
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
    // A call reset before its response still went where the router chose.
    this.checkKeyRoute();
    this.finishRequest();
    if (this.llm && !this.completed) this.complete();
  }

  /**
   * Publishes the call once: filter state and metrics; then reports its tokens to its budget. A
   * call its budget answered was no call: only the check's outcome is counted.
   */
  private complete(): void {
    this.completed = true;
    if (this.refused) return;
    const usage = this.publish(this.finishParsers());
    const check = this.check;
    if (check !== null && usage !== null) report(check, usage.prompt, usage.completion, usage.totalTokens);
  }

  /** Ends the response parsers; returns what the response said, or null when it said nothing. */
  private finishParsers(): Usage | null {
    const scanner = this.response;
    if (scanner !== null) {
      this.response = null;
      returnResponseScanner(scanner);
      return documentUsage(this, scanner);
    }
    const reader = this.reader;
    if (reader === null) return null;
    this.reader = null;
    returnReader(reader);
    return streamUsage(this, reader);
  }

  /** Returns pooled state; called when the host deletes the stream. */
  dispose(): void {
    // Envoy logs every HTTP stream before destroying it; should a stream ever be deleted without
    // that, the call is still counted (filter state can no longer be set, metrics can).
    if (this.llm && !this.completed) this.complete();
    const req = this.request;
    if (req !== null) returnRequestScanner(req);
    const res = this.response;
    if (res !== null) returnResponseScanner(res);
    const reader = this.reader;
    if (reader !== null) returnReader(reader);
    const insertion = this.insertion;
    if (insertion !== null) returnInsertion(insertion);
    this.request = null;
    this.response = null;
    this.reader = null;
    this.insertion = null;
  }
}

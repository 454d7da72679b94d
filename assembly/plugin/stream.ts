// SPDX-License-Identifier: Apache-2.0
// One HTTP stream: decides whether it is an LLM call, scans the request and response bodies as
// they pass, and publishes the model and token counts. Every callback lets its data continue at
// once; nothing here ever holds or changes a byte of the stream.

import { JsonScanner } from "../llm/json";
import {
  REQUEST_SCHEMA,
  RESPONSE_SCHEMA,
  Usage,
  readResponse,
  requestModel,
  NO_COUNT,
} from "../llm/openai";
import {
  KEY_REQUEST_MODEL,
  KEY_PROMPT_TOKENS,
  KEY_COMPLETION_TOKENS,
  UNKNOWN,
  serviceFromCluster,
  hostFromAuthority,
} from "../telemetry/names";
import {
  getHeader,
  setProperty,
  readBuffer,
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

const P_REQUEST_MODEL = String.UTF8.encode(KEY_REQUEST_MODEL);
const P_PROMPT_TOKENS = String.UTF8.encode(KEY_PROMPT_TOKENS);
const P_COMPLETION_TOKENS = String.UTF8.encode(KEY_COMPLETION_TOKENS);

const CLUSTER_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0cluster_name"),
  String.UTF8.encode("cluster_name"),
];

// Scanners are reused across streams: each holds about a kilobyte that need not be reallocated.
const requestScanners: JsonScanner[] = [];
const responseScanners: JsonScanner[] = [];

function takeScanner(pool: JsonScanner[], response: bool): JsonScanner {
  if (pool.length > 0) {
    const s = pool.pop();
    s.reset();
    return s;
  }
  return new JsonScanner(response ? RESPONSE_SCHEMA : REQUEST_SCHEMA);
}

const ERROR_NAMES: string[] = ["none", "syntax error", "nesting too deep", "truncated"];

export class Stream {
  root: Root;
  /** A POST to an LLM API path. Everything else is left alone from the first callback on. */
  llm: bool = false;
  authority: string = "";
  path: string = "";
  request: JsonScanner | null = null;
  response: JsonScanner | null = null;
  model: string | null = null;
  /** The model came from the request body (it then wins over the response's). */
  modelFromRequest: bool = false;

  constructor(root: Root) {
    this.root = root;
  }

  onRequestHeaders(endOfStream: bool): void {
    const method = getHeader(HeaderMapType.RequestHeaders, H_METHOD);
    if (method === null || method != "POST") return;
    const path = getHeader(HeaderMapType.RequestHeaders, H_PATH);
    if (path === null || !this.root.config.matchesPath(path)) return;
    this.llm = true;
    this.path = path;
    // Request headers cannot be read after this callback: keep what is needed later.
    const authority = getHeader(HeaderMapType.RequestHeaders, H_AUTHORITY);
    if (authority !== null) this.authority = authority;
    this.root.readIdentity();
    if (!endOfStream) this.request = takeScanner(requestScanners, false);
  }

  onRequestBody(size: usize, endOfStream: bool): void {
    const scanner = this.request;
    if (scanner === null) return;
    feed(scanner, BufferType.HttpRequestBody, size);
    if (endOfStream) this.finishRequest();
  }

  finishRequest(): void {
    const scanner = this.request;
    if (scanner === null) return;
    this.request = null;
    if (scanner.finish()) {
      const model = requestModel(scanner);
      if (model !== null) {
        this.model = model;
        this.modelFromRequest = true;
        setProperty(P_REQUEST_MODEL, model);
      }
    } else if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: request body of " + this.path + " is not JSON (" +
        ERROR_NAMES[scanner.error] + "); nothing recorded from it");
    }
    requestScanners.push(scanner);
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
      this.skipResponse("content-encoding " + encoding);
      return;
    }
    const type = getHeader(HeaderMapType.ResponseHeaders, H_CONTENT_TYPE);
    if (type === null || !type.toLowerCase().startsWith("application/json")) {
      this.skipResponse("content-type " + (type !== null ? type : "-"));
      return;
    }
    this.response = takeScanner(responseScanners, true);
  }

  private skipResponse(why: string): void {
    if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: response to " + this.path + " not read: " + why);
    }
  }

  onResponseBody(size: usize, endOfStream: bool): void {
    const scanner = this.response;
    if (scanner === null) return;
    feed(scanner, BufferType.HttpResponseBody, size);
    if (endOfStream) this.finishResponse();
  }

  finishResponse(): void {
    const scanner = this.response;
    if (scanner === null) return;
    this.response = null;
    if (scanner.finish()) {
      const usage = new Usage();
      readResponse(scanner, usage);
      this.publish(usage);
    } else {
      log(LogLevel.Info, "asm-llm-proxy: response body of " + this.path + " could not be read (" +
        ERROR_NAMES[scanner.error] + "); no tokens recorded");
    }
    responseScanners.push(scanner);
  }

  /** Ends whatever is still open: trailers or the access-log phase came before end_of_stream. */
  onLog(): void {
    this.finishRequest();
    this.finishResponse();
  }

  private publish(usage: Usage): void {
    const responseModel = usage.model;
    if (!this.modelFromRequest && responseModel !== null) {
      this.model = responseModel;
      setProperty(P_REQUEST_MODEL, responseModel);
    }
    if (usage.prompt != NO_COUNT) setProperty(P_PROMPT_TOKENS, usage.prompt.toString());
    if (usage.completion != NO_COUNT) setProperty(P_COMPLETION_TOKENS, usage.completion.toString());
    if (usage.prompt > 0 || usage.completion > 0) {
      const model = this.model;
      this.root.countTokens(this.destination(), model !== null ? model : UNKNOWN, usage.prompt, usage.completion);
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
    this.request = null;
    this.response = null;
  }
}

/** Scans the current chunk of a body in place: it is read, never held or changed. */
function feed(scanner: JsonScanner, type: i32, size: usize): void {
  const ptr = readBuffer(type, size);
  if (ptr == 0) return;
  scanner.feed(ptr, bufferLength);
  release(ptr);
}

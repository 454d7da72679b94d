// SPDX-License-Identifier: Apache-2.0
// What one LLM call has learnt, and its publication at the end: the API's own rules applied to
// the usage the response reported, the filter state, and the record Root turns into metrics.
// `Stream` (stream.ts) extends `Call`: the callbacks learn, this publishes.

import { Usage, NO_COUNT } from "../llm/usage";
import { ApiRules, DEFAULT_API } from "../llm/apis";
import { RecentIds } from "../llm/recent";
import { hostFromAuthority, serviceFromCluster } from "../llm/hosts";
import { pathEnd } from "../llm/paths";
import {
  USAGE_PRESENT,
  USAGE_MISSING,
  USAGE_INJECTED,
  USAGE_PARSE_ERROR,
  USAGE_ABORTED,
  UNKNOWN,
  STATE_TOTAL_TOKENS,
  STATE_CACHED_TOKENS,
  STATE_REASONING_TOKENS,
  STATE_CACHE_WRITE_TOKENS,
  STATE_RESPONSE_MODEL,
  STATE_USAGE,
  STATE_DURATION_MS,
  STATE_MS_PER_OUTPUT_TOKEN,
} from "../telemetry/names";
import {
  getHeader,
  setProperty,
  setPropertyCount,
  setPropertyBytes,
  nowNanos,
  log,
  logEnabled,
  LogLevel,
  HeaderMapType,
} from "../host/host";
import { Root, CallRecord, firstProperty } from "./root";
import { Destination } from "./budget";
import {
  P_REQUEST_MODEL,
  P_RESPONSE_MODEL,
  P_PROMPT_TOKENS,
  P_COMPLETION_TOKENS,
  P_TOTAL_TOKENS,
  P_CACHED_TOKENS,
  P_REASONING_TOKENS,
  P_CACHE_WRITE_TOKENS,
  P_USAGE,
  P_DURATION_MS,
  P_MS_PER_OUTPUT_TOKEN,
  P_REQUEST_COST,
  CLUSTER_PATHS,
} from "./headers";
import { callCost, costBytes, COST_BYTES } from "../telemetry/cost";
import { tokenAccounting } from "../telemetry/genai";

/**
 * Ids of responses already counted by this VM (APIs whose rules say `countOnce`), so that a
 * completed response polled again (GET /v1/responses/{id}) is not counted twice.
 */
const counted = new RecentIds(256);

/**
 * Usage of a JSON response body, or of counts from headers: filled and published within one
 * call, so one serves all.
 */
export const bodyUsage = new Usage();
/** Likewise the record handed to Root.record. */
const callRecord = new CallRecord();

const NO_HEADERS: string[] = [];

export class Call extends Destination {
  root: Root;
  authority: string = "";
  path: string = "";
  /** The path as log lines show it: without its query string, which may carry a key (`?key=`). */
  get logPath(): string {
    const end = pathEnd(this.path);
    return end == this.path.length ? this.path : this.path.substring(0, end);
  }
  /** Values of the configured header dimensions (none: a shared empty array, no allocation). */
  headers: string[] = NO_HEADERS;
  /** What the path shape says of the API (llm/apis.ts). */
  api: ApiRules = DEFAULT_API;
  model: string | null = null;
  /** The model came from the request body or path (it then wins over the response's). */
  modelFromRequest: bool = false;
  /** The request asked for a stream, or the response is one. */
  streamed: bool = false;
  /** The usage option was inserted (`inject_stream_usage`). */
  injected: bool = false;
  /** Counts from response headers (ApiRules.promptHeader), NO_COUNT when none. */
  headerPrompt: i64 = NO_COUNT;
  headerCompletion: i64 = NO_COUNT;
  /** The upstream cluster, when read in the request headers; "" when read and absent. */
  cluster: string | null = null;
  /** The service host that cluster names (serviceFromCluster), kept for the metrics' tag. */
  clusterService: string | null = null;
  /** Set when the response says why its usage cannot be had (error, encoded). */
  usageStatus: string = "";
  /** The response ended (end_of_stream or trailers); otherwise on_log finds it cut short. */
  responseEnded: bool = false;
  responseParseFailed: bool = false;
  startNs: u64 = 0;
  firstByteMs: i64 = -1;

  constructor(root: Root) {
    super();
    this.root = root;
  }

  /** Reads the configured header dimensions from the request headers, and publishes each. */
  protected readHeaderDimensions(): void {
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

  /**
   * Publishes the call once, given what its response reported (null: nothing): filter state,
   * then the record Root counts. Whatever else is computed from a finished call goes here.
   * Returns the usage counted (null for none, or a response counted before).
   */
  protected publish(parsed: Usage | null): Usage | null {
    const usage = this.adjust(parsed);
    // A response polled again after it was counted: described, not counted again.
    const repeated = this.countedBefore(usage);
    const durationMs = this.elapsedMs();
    const config = this.root.config;
    const published = config.filterState;
    // Decoded once, and only when something uses it: its filter state, the model when the request
    // named none, the opt-in metric dimension, a price for the model that answered, or the
    // OpenTelemetry histogram's label.
    let responseModel =
      usage !== null &&
      (!this.modelFromRequest ||
        published & STATE_RESPONSE_MODEL ||
        config.responseModelDimension ||
        config.prices.active ||
        config.genAiMetrics)
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
    r.cost = usage !== null && config.prices.active ? this.publishCost(usage, responseModel) : -1;
    r.path = this.path;
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
    // The usage is final here (the API's rules applied, a repeated response known): what else is
    // computed from a finished call fills the record before Root counts it.
    this.root.record(r);
    r.usage = null;
    return repeated ? null : usage;
  }

  /**
   * With `prices`: the cost of a call that reported tokens, published as request_cost (also for
   * a response polled again, which is not counted again); -1 when no entry prices its model (or
   * the sum would pass 63 bits, which real counts cannot reach).
   */
  private publishCost(usage: Usage, responseModel: string | null): i64 {
    if (!usage.hasTokens) return -1;
    const price = this.root.config.prices.priceOf(this.model, responseModel);
    if (price === null) return -1;
    const cost = callCost(
      price,
      usage.prompt,
      usage.completion,
      usage.cached,
      usage.cacheWrite,
      usage.reasoning,
      tokenAccounting(this.path),
    );
    if (cost >= 0) setPropertyBytes(P_REQUEST_COST, COST_BYTES, <usize>costBytes(cost));
    return cost;
  }

  /** What an API's own rules make of the usage a body reported. */
  private adjust(parsed: Usage | null): Usage | null {
    let usage = parsed;
    const api = this.api;
    if (this.headerPrompt != NO_COUNT || this.headerCompletion != NO_COUNT) {
      // The provider's own counts are what it bills; the model's body usage may count differently.
      if (usage === null) {
        usage = bodyUsage;
        usage.reset();
      }
      usage.prompt = this.headerPrompt;
      usage.completion = this.headerCompletion;
      usage.total = NO_COUNT;
    }
    if (usage === null) return null;
    if (api.totalIsPrompt) usage.totalAsPrompt();
    // A Responses API response still queued or in progress has no usage yet.
    if (usage.pending) usage.dropTokens();
    return usage;
  }

  private countedBefore(usage: Usage | null): bool {
    if (usage === null || !usage.hasTokens || !this.api.countOnce) return false;
    const id = usage.id;
    if (id === null || !counted.seenBefore(id)) return false;
    if (logEnabled(LogLevel.Debug)) {
      log(
        LogLevel.Debug,
        "asm-llm-proxy: response " + id + " was counted before; its tokens are not counted again",
      );
    }
    return true;
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
  protected elapsedMs(): i64 {
    if (this.startNs == 0) return -1;
    const now = nowNanos();
    if (now < this.startNs) return -1;
    return <i64>((now - this.startNs) / 1000000);
  }

  /** The service host of the upstream cluster, else the authority's host, else "unknown". */
  destination(): string {
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
}

/** Milliseconds per token with three decimals, from whole milliseconds: "12.345". */
function perToken(ms: i64, tokens: i64): string {
  const micros = (ms * 1000) / tokens;
  const fraction = (micros % 1000).toString();
  return (micros / 1000).toString() + "." + "000".substring(fraction.length) + fraction;
}

// SPDX-License-Identifier: Apache-2.0
// Per-plugin state shared by all streams of one VM (one per Envoy worker thread): the
// configuration, the workload identity read once from the node metadata, the counter ids, and
// the series cap that keeps clients from creating counters without bound.

import { Config, parseConfig } from "../config/config";
import { resolveKeys, needsEnvironment } from "../config/providers";
import {
  tagValue,
  tagSuffix,
  issueName,
  UNKNOWN,
  OTHER,
  METRIC_PROMPT_TOKENS,
  METRIC_COMPLETION_TOKENS,
  METRIC_CACHED_TOKENS,
  METRIC_REASONING_TOKENS,
  METRIC_CACHE_WRITE_TOKENS,
  METRIC_REQUESTS,
  METRIC_FIRST_TOKEN_MS,
  METRIC_DURATION_MS,
  TAG_RESPONSE_MODEL,
  TAG_USAGE,
  TAG_STREAM,
  USAGE_STATUSES,
  ISSUE_NAMES,
  ISSUE_CARDINALITY_OVERFLOW,
  METRIC_CONFIG_PROBLEMS,
  METRIC_RATELIMIT,
  TAG_RATELIMIT,
  RATELIMIT_OUTCOMES,
  METRIC_COST,
  METRIC_COST_UNPRICED,
  TAG_CURRENCY,
  keyMisrouteName,
} from "../telemetry/names";
import { toMicros } from "../telemetry/cost";
import { GenAiHistograms } from "./genai";
import { SeriesTable } from "../telemetry/series";
import { Usage, NO_COUNT } from "../llm/usage";
import {
  getProperty,
  defineCounter,
  defineHistogram,
  defineGauge,
  setGauge,
  incrementCounter,
  recordHistogram,
  environment,
  log,
  logEnabled,
  LogLevel,
} from "../host/host";

// Metric slots of a series (telemetry/series.ts). The first FIXED_SLOTS (8) are what most calls
// use and are kept per series; the rest (rarer statuses, cached, reasoning and cache-write tokens) are kept
// only once used.
const SLOT_PROMPT: i32 = 0;
const SLOT_COMPLETION: i32 = 1;
const SLOT_DURATION_MS: i32 = 2;
const SLOT_FIRST_TOKEN_MS: i32 = 3;
/** asm_llm_proxy_requests: + 2 * usage status (USAGE_STATUSES) + stream, 14 slots. */
const SLOT_REQUESTS: i32 = 4;
const SLOT_CACHED: i32 = 18;
const SLOT_REASONING: i32 = 19;
const SLOT_CACHE_WRITE: i32 = 20;
/** Opt-in (`prices`): the cost counter and the unpriced-calls counter. */
const SLOT_COST: i32 = 21;
const SLOT_COST_UNPRICED: i32 = 22;
/** asm_llm_proxy_ratelimit: + outcome (RATELIMIT_OUTCOMES), 4 slots; the last slots (see id()). */
const SLOT_RATELIMIT: i32 = 23;
/** The metric of a slot other than SLOT_REQUESTS's. */
function slotMetric(slot: i32): string {
  if (slot == SLOT_PROMPT) return METRIC_PROMPT_TOKENS;
  if (slot == SLOT_COMPLETION) return METRIC_COMPLETION_TOKENS;
  if (slot == SLOT_DURATION_MS) return METRIC_DURATION_MS;
  if (slot == SLOT_FIRST_TOKEN_MS) return METRIC_FIRST_TOKEN_MS;
  if (slot == SLOT_CACHED) return METRIC_CACHED_TOKENS;
  if (slot == SLOT_COST_UNPRICED) return METRIC_COST_UNPRICED;
  return slot == SLOT_CACHE_WRITE ? METRIC_CACHE_WRITE_TOKENS : METRIC_REASONING_TOKENS;
}

/**
 * Metrics defined since the last collection. Each definition leaves its stat name behind as
 * garbage (a few hundred bytes per string), so exports.ts collects early after a burst of new
 * series instead of letting that garbage grow linear memory.
 */
export let definedSinceCollect: i32 = 0;

export function collected(): void {
  definedSinceCollect = 0;
}

/** What one finished LLM call reports to the metrics. */
export class CallRecord {
  destination: string = UNKNOWN;
  model: string = UNKNOWN;
  responseModel: string = UNKNOWN;
  /** Values of the configured header dimensions, in configuration order. */
  headers: string[] = [];
  usage: Usage | null = null;
  usageStatus: string = "";
  stream: bool = false;
  /** Milliseconds, or -1 when unknown. */
  firstTokenMs: i64 = -1;
  durationMs: i64 = -1;
  /** The request path (its API's operation and way of counting tokens). */
  path: string = "";
  /** With `prices`: the call's cost in 10^-12 units of the currency, or -1 when not priced. */
  cost: i64 = -1;
}

// Property paths: segments joined by NUL, as proxy_get_property expects. Current Envoy serves the
// node under `xds`; releases before 1.33 served it as the top-level `node`.
const WORKLOAD_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0node\0metadata\0WORKLOAD_NAME"),
  String.UTF8.encode("node\0metadata\0WORKLOAD_NAME"),
];
const NAMESPACE_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0node\0metadata\0NAMESPACE"),
  String.UTF8.encode("node\0metadata\0NAMESPACE"),
];

/** The first of the property paths the host has, or null. */
export function firstProperty(paths: ArrayBuffer[]): string | null {
  for (let i = 0; i < paths.length; i++) {
    const v = getProperty(unchecked(paths[i]));
    if (v !== null && v.length > 0) return v;
  }
  return null;
}

export class Root {
  config: Config = new Config();

  private identityRead: bool = false;
  workload: string = UNKNOWN;
  namespace: string = UNKNOWN;

  /**
   * Metric ids per series (Envoy hands out a new id for every define call), and the series
   * counted so far, up to config.maxSeries plus the folded "other" one.
   */
  private table: SeriesTable = new SeriesTable();
  private foldedSeries: i32 = -1;
  /** The suffix of the series of the call being recorded, once built. */
  private builtSuffix: string | null = null;
  /** Issue counter ids, defined on first use. */
  private issueIds: StaticArray<i64> = new StaticArray<i64>(ISSUE_NAMES.length);
  /** The configuration-problems gauge id, defined at the first configure. */
  private configProblemsId: i64 = -1;
  /** `gen_ai_metrics`: OpenTelemetry's token histogram, with its own series. */
  private genAi: GenAiHistograms = new GenAiHistograms();
  /** Key-misroute counter ids by provider host, defined on first use (one per provider at most). */
  private misrouteHosts: string[] = [];
  private misrouteIds: i64[] = [];

  constructor() {
    for (let i = 0; i < this.issueIds.length; i++) unchecked((this.issueIds[i] = -1));
  }

  configure(bytes: Uint8Array): void {
    const result = parseConfig(bytes);
    this.config = result.config;
    const routing = result.config.routing;
    // Keys named by api_key_env come from the VM environment, read once here, never per request.
    if (routing.active) resolveKeys(routing, needsEnvironment(routing) ? environment() : [], result.errors);
    // Series keys have the shape of the configured dimensions: start afresh.
    this.table.clear();
    this.genAi.clear();
    this.foldedSeries = -1;
    // A configuration ignored as a whole loses its providers: keys and models are then missing
    // from every provider call, which is worth more than a warn.
    const level = result.failed ? LogLevel.Error : LogLevel.Warn;
    for (let i = 0; i < result.errors.length; i++) {
      log(level, "asm-llm-proxy: " + result.errors[i]);
    }
    // Set, not incremented, and also to 0: a good configuration clears what a bad one reported.
    if (this.configProblemsId < 0) this.configProblemsId = defineGauge(METRIC_CONFIG_PROBLEMS);
    if (this.configProblemsId >= 0) setGauge(<u32>this.configProblemsId, <u64>result.errors.length);
  }

  /**
   * Reads the workload name and namespace once. It is done from the first stream rather than at
   * configure time because the root context has no stream to resolve `xds` attributes against.
   */
  readIdentity(): void {
    if (this.identityRead) return;
    this.identityRead = true;
    const workload = firstProperty(WORKLOAD_PATHS);
    const namespace = firstProperty(NAMESPACE_PATHS);
    if (workload !== null) this.workload = tagValue(workload);
    if (namespace !== null) this.namespace = tagValue(namespace);
    if (logEnabled(LogLevel.Debug)) {
      log(LogLevel.Debug, "asm-llm-proxy: source workload " + this.workload + "." + this.namespace);
    }
  }

  /**
   * The series of a call, within the series cap: a set of dimension values (destination, model,
   * and the opt-in dimensions) not seen before in this VM is folded into "other" once the VM has
   * counted config.maxSeries of them. Found from the values alone: no stat name is built.
   */
  private seriesOf(r: CallRecord): i32 {
    const config = this.config;
    const t = this.table;
    t.begin();
    t.part(tagValue(r.destination));
    t.part(tagValue(r.model));
    if (config.responseModelDimension) t.part(tagValue(r.responseModel));
    const names = config.headerNames;
    // A stream that started under an earlier configuration may carry fewer header values.
    for (let i = 0; i < names.length; i++) t.part(i < r.headers.length ? tagValue(r.headers[i]) : UNKNOWN);
    const found = t.find();
    if (found >= 0) return found;
    if (t.size - (this.foldedSeries >= 0 ? 1 : 0) < config.maxSeries) return t.add();
    this.issue(ISSUE_CARDINALITY_OVERFLOW);
    if (this.foldedSeries >= 0) return this.foldedSeries;
    t.begin();
    t.part(OTHER);
    t.part(OTHER);
    if (config.responseModelDimension) t.part(OTHER);
    for (let i = 0; i < names.length; i++) t.part(OTHER);
    // A call whose own values were "other" may have created this series before the cap.
    const other = t.find();
    this.foldedSeries = other >= 0 ? other : t.add();
    return this.foldedSeries;
  }

  /**
   * The dimensions part of the stat names of a series: built only when a metric is defined, and
   * then once for all the metrics a call defines.
   */
  private suffix(r: CallRecord, folded: bool): string {
    const built = this.builtSuffix;
    if (built !== null) return built;
    const config = this.config;
    let extra = "";
    if (config.responseModelDimension) {
      extra += "|" + TAG_RESPONSE_MODEL + "=" + (folded ? OTHER : tagValue(r.responseModel));
    }
    const names = config.headerNames;
    for (let i = 0; i < names.length; i++) {
      const value = folded ? OTHER : i < r.headers.length ? tagValue(r.headers[i]) : UNKNOWN;
      extra += "|llmproxy_" + names[i] + "=" + value;
    }
    const suffix = folded
      ? tagSuffix(this.workload, this.namespace, OTHER, OTHER) + extra
      : tagSuffix(this.workload, this.namespace, tagValue(r.destination), tagValue(r.model)) + extra;
    this.builtSuffix = suffix;
    return suffix;
  }

  /** Counts a finished LLM call: the request, its tokens and its latency. */
  record(r: CallRecord): void {
    const series = this.seriesOf(r);
    this.builtSuffix = null;
    const status = USAGE_STATUSES.indexOf(r.usageStatus);
    if (status >= 0) this.add(series, SLOT_REQUESTS + status * 2 + (r.stream ? 1 : 0), r, 1);
    const usage = r.usage;
    if (usage !== null) {
      if (usage.prompt > 0) this.add(series, SLOT_PROMPT, r, <u64>usage.prompt);
      if (usage.completion > 0) this.add(series, SLOT_COMPLETION, r, <u64>usage.completion);
      if (usage.cached > 0) this.add(series, SLOT_CACHED, r, <u64>usage.cached);
      if (usage.reasoning > 0) this.add(series, SLOT_REASONING, r, <u64>usage.reasoning);
      if (usage.cacheWrite > 0) this.add(series, SLOT_CACHE_WRITE, r, <u64>usage.cacheWrite);
      // The opt-in metrics, for a call that reported tokens.
      const config = this.config;
      if (config.prices.active && usage.hasTokens) {
        if (r.cost < 0) this.add(series, SLOT_COST_UNPRICED, r, 1);
        else {
          // Envoy refuses a zero increment: a call that rounds to 0 adds nothing.
          const micros = toMicros(r.cost);
          if (micros > 0) this.add(series, SLOT_COST, r, <u64>micros);
        }
      }
      if (config.genAiMetrics && usage.hasTokens) this.recordGenAi(r, usage);
    }
    if (r.stream && r.firstTokenMs != NO_COUNT)
      this.sample(series, SLOT_FIRST_TOKEN_MS, r, <u64>r.firstTokenMs);
    if (r.durationMs != NO_COUNT) this.sample(series, SLOT_DURATION_MS, r, <u64>r.durationMs);
  }

  /** Counts a token budget check's outcome (RATELIMIT_*), with the dimensions known at the check. */
  recordBudget(r: CallRecord, outcome: i32): void {
    const series = this.seriesOf(r);
    this.builtSuffix = null;
    this.add(series, SLOT_RATELIMIT + outcome, r, 1);
  }

  private recordGenAi(r: CallRecord, usage: Usage): void {
    const g = this.genAi;
    if (g.record(r.path, r.destination, r.model, r.responseModel, usage, this.config.maxSeries)) {
      this.issue(ISSUE_CARDINALITY_OVERFLOW);
    }
    definedSinceCollect += g.defined;
    g.defined = 0;
  }

  /** Counts a provider key that went with a call to another cluster than its own. */
  keyMisrouted(provider: string): void {
    const known = this.misrouteHosts.indexOf(provider);
    let id: i64 = known >= 0 ? this.misrouteIds[known] : -1;
    if (id < 0) {
      id = defineCounter(keyMisrouteName(this.workload, this.namespace, provider));
      if (id < 0) return;
      this.misrouteHosts.push(provider);
      this.misrouteIds.push(id);
    }
    incrementCounter(<u32>id, 1);
  }

  /** Counts one occurrence of the filter's own trouble. */
  issue(kind: i32): void {
    let id = unchecked(this.issueIds[kind]);
    if (id < 0) {
      id = defineCounter(issueName(kind));
      if (id < 0) return;
      unchecked((this.issueIds[kind] = id));
    }
    incrementCounter(<u32>id, 1);
  }

  /**
   * The id of a metric of a series, defined on first use; -1 when the proxy refuses it. Only
   * here, once per metric and series, is a stat name built.
   */
  private id(series: i32, slot: i32, r: CallRecord): i64 {
    const known = this.table.id(series, slot);
    if (known >= 0) return known;
    const histogram = slot == SLOT_FIRST_TOKEN_MS || slot == SLOT_DURATION_MS;
    let name = this.suffix(r, series == this.foldedSeries);
    if (slot >= SLOT_RATELIMIT) {
      name = METRIC_RATELIMIT + name + "|" + TAG_RATELIMIT + "=" + RATELIMIT_OUTCOMES[slot - SLOT_RATELIMIT];
    } else if (slot >= SLOT_REQUESTS && slot < SLOT_CACHED) {
      const status = (slot - SLOT_REQUESTS) >> 1;
      const stream = (slot - SLOT_REQUESTS) & 1 ? "true" : "false";
      name =
        METRIC_REQUESTS +
        name +
        "|" +
        TAG_USAGE +
        "=" +
        USAGE_STATUSES[status] +
        "|" +
        TAG_STREAM +
        "=" +
        stream;
    } else if (slot == SLOT_COST) {
      name = METRIC_COST + name + "|" + TAG_CURRENCY + "=" + this.config.currency;
    } else {
      name = slotMetric(slot) + name;
    }
    const defined = histogram ? defineHistogram(name) : defineCounter(name);
    if (defined < 0) {
      log(LogLevel.Warn, "asm-llm-proxy: the proxy refused to define metric " + name);
      return -1;
    }
    this.table.setId(series, slot, <u32>defined);
    definedSinceCollect++;
    return defined;
  }

  private add(series: i32, slot: i32, r: CallRecord, delta: u64): void {
    const id = this.id(series, slot, r);
    if (id >= 0) incrementCounter(<u32>id, delta);
  }

  private sample(series: i32, slot: i32, r: CallRecord, value: u64): void {
    const id = this.id(series, slot, r);
    if (id >= 0) recordHistogram(<u32>id, value);
  }
}

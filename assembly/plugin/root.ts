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
  ISSUE_NAMES,
  ISSUE_CARDINALITY_OVERFLOW,
  METRIC_CONFIG_PROBLEMS,
} from "../telemetry/names";
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

  /** Metric ids by full stat name: Envoy hands out a new id for every define call. */
  private metrics: Map<string, u32> = new Map<string, u32>();
  /** Distinct dimension suffixes (destination, model) counted so far, up to config.maxSeries. */
  private series: Set<string> = new Set<string>();
  /** Issue counter ids, defined on first use. */
  private issueIds: StaticArray<i64> = new StaticArray<i64>(ISSUE_NAMES.length);
  /** The configuration-problems gauge id, defined at the first configure. */
  private configProblemsId: i64 = -1;

  constructor() {
    for (let i = 0; i < this.issueIds.length; i++) unchecked((this.issueIds[i] = -1));
  }

  configure(bytes: Uint8Array): void {
    const result = parseConfig(bytes);
    this.config = result.config;
    const routing = result.config.routing;
    // Keys named by api_key_env come from the VM environment, read once here, never per request.
    if (routing.active) resolveKeys(routing, needsEnvironment(routing) ? environment() : [], result.errors);
    for (let i = 0; i < result.errors.length; i++) {
      log(LogLevel.Warn, "asm-llm-proxy: " + result.errors[i]);
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
   * The dimensions part of the stat names of a call, within the series cap: a pair (destination,
   * model, and the opt-in dimensions) not seen before in this VM is folded into "other" once the
   * VM has counted config.maxSeries of them.
   */
  private dimensions(r: CallRecord): string {
    const config = this.config;
    let extra = "";
    if (config.responseModelDimension) extra += "|" + TAG_RESPONSE_MODEL + "=" + tagValue(r.responseModel);
    const names = config.headerNames;
    // A stream that started under an earlier configuration may carry fewer header values.
    for (let i = 0; i < names.length; i++) {
      extra += "|llmproxy_" + names[i] + "=" + (i < r.headers.length ? tagValue(r.headers[i]) : UNKNOWN);
    }
    const suffix =
      tagSuffix(this.workload, this.namespace, tagValue(r.destination), tagValue(r.model)) + extra;
    if (this.series.has(suffix)) return suffix;
    if (this.series.size < config.maxSeries) {
      this.series.add(suffix);
      return suffix;
    }
    this.issue(ISSUE_CARDINALITY_OVERFLOW);
    let folded = "";
    if (config.responseModelDimension) folded += "|" + TAG_RESPONSE_MODEL + "=" + OTHER;
    for (let i = 0; i < names.length; i++) folded += "|llmproxy_" + names[i] + "=" + OTHER;
    return tagSuffix(this.workload, this.namespace, OTHER, OTHER) + folded;
  }

  /** Counts a finished LLM call: the request, its tokens and its latency. */
  record(r: CallRecord): void {
    const dims = this.dimensions(r);
    this.add(
      METRIC_REQUESTS +
        dims +
        "|" +
        TAG_USAGE +
        "=" +
        r.usageStatus +
        "|" +
        TAG_STREAM +
        "=" +
        (r.stream ? "true" : "false"),
      1,
    );
    const usage = r.usage;
    if (usage !== null) {
      if (usage.prompt > 0) this.add(METRIC_PROMPT_TOKENS + dims, <u64>usage.prompt);
      if (usage.completion > 0) this.add(METRIC_COMPLETION_TOKENS + dims, <u64>usage.completion);
      if (usage.cached > 0) this.add(METRIC_CACHED_TOKENS + dims, <u64>usage.cached);
      if (usage.reasoning > 0) this.add(METRIC_REASONING_TOKENS + dims, <u64>usage.reasoning);
      if (usage.cacheWrite > 0) this.add(METRIC_CACHE_WRITE_TOKENS + dims, <u64>usage.cacheWrite);
    }
    if (r.stream && r.firstTokenMs != NO_COUNT)
      this.sample(METRIC_FIRST_TOKEN_MS + dims, <u64>r.firstTokenMs);
    if (r.durationMs != NO_COUNT) this.sample(METRIC_DURATION_MS + dims, <u64>r.durationMs);
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

  /** The id of a metric by full name, defined on first use; -1 when the proxy refuses it. */
  private id(name: string, histogram: bool): i64 {
    if (this.metrics.has(name)) return <i64>this.metrics.get(name);
    const defined = histogram ? defineHistogram(name) : defineCounter(name);
    if (defined < 0) {
      log(LogLevel.Warn, "asm-llm-proxy: the proxy refused to define metric " + name);
      return -1;
    }
    this.metrics.set(name, <u32>defined);
    return defined;
  }

  private add(name: string, delta: u64): void {
    const id = this.id(name, false);
    if (id >= 0) incrementCounter(<u32>id, delta);
  }

  private sample(name: string, value: u64): void {
    const id = this.id(name, true);
    if (id >= 0) recordHistogram(<u32>id, value);
  }
}

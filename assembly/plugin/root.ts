// SPDX-License-Identifier: Apache-2.0
// Per-plugin state shared by all streams of one VM (one per Envoy worker thread): the
// configuration, the workload identity read once from the node metadata, the counter ids, and
// the series cap that keeps clients from creating counters without bound.

import { Config, parseConfig } from "../config/config";
import {
  tagValue,
  tagSuffix,
  issueName,
  UNKNOWN,
  OTHER,
  METRIC_PROMPT_TOKENS,
  METRIC_COMPLETION_TOKENS,
  ISSUE_NAMES,
  ISSUE_CARDINALITY_OVERFLOW,
  ISSUE_CONFIG_ERROR,
} from "../telemetry/names";
import { getProperty, defineCounter, incrementCounter, log, logEnabled, LogLevel } from "../host/host";

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

  /** Counter ids by full stat name: Envoy hands out a new id for every define call. */
  private counters: Map<string, u32> = new Map<string, u32>();
  /** Distinct dimension suffixes (destination, model) counted so far, up to config.maxSeries. */
  private series: Set<string> = new Set<string>();
  /** Issue counter ids, defined on first use. */
  private issueIds: StaticArray<i64> = new StaticArray<i64>(ISSUE_NAMES.length);

  constructor() {
    for (let i = 0; i < this.issueIds.length; i++) unchecked((this.issueIds[i] = -1));
  }

  configure(bytes: Uint8Array): void {
    const result = parseConfig(bytes);
    this.config = result.config;
    for (let i = 0; i < result.errors.length; i++) {
      log(LogLevel.Warn, "asm-llm-proxy: " + result.errors[i]);
      this.issue(ISSUE_CONFIG_ERROR);
    }
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

  /** Adds prompt and completion tokens to the counters of (destination, model). */
  countTokens(destination: string, model: string, prompt: i64, completion: i64): void {
    let suffix = tagSuffix(this.workload, this.namespace, tagValue(destination), tagValue(model));
    if (!this.series.has(suffix)) {
      if (this.series.size < this.config.maxSeries) {
        this.series.add(suffix);
      } else {
        suffix = tagSuffix(this.workload, this.namespace, OTHER, OTHER);
        this.issue(ISSUE_CARDINALITY_OVERFLOW);
      }
    }
    if (prompt > 0) this.add(METRIC_PROMPT_TOKENS + suffix, <u64>prompt);
    if (completion > 0) this.add(METRIC_COMPLETION_TOKENS + suffix, <u64>completion);
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

  private add(name: string, delta: u64): void {
    let id: u32;
    if (this.counters.has(name)) {
      id = this.counters.get(name);
    } else {
      const defined = defineCounter(name);
      if (defined < 0) {
        log(LogLevel.Warn, "asm-llm-proxy: the proxy refused to define counter " + name);
        return;
      }
      id = <u32>defined;
      this.counters.set(name, id);
    }
    incrementCounter(id, delta);
  }
}

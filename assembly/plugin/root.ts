// SPDX-License-Identifier: Apache-2.0
// Per-plugin state shared by all streams of one VM (one per Envoy worker thread): the
// configuration, the workload identity read once from the node metadata, and the counter ids.

import { Config, parseConfig } from "../config/config";
import {
  tagValue,
  tagSuffix,
  UNKNOWN,
  METRIC_PROMPT_TOKENS,
  METRIC_COMPLETION_TOKENS,
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

  configure(bytes: Uint8Array): void {
    const result = parseConfig(bytes);
    this.config = result.config;
    for (let i = 0; i < result.errors.length; i++) {
      log(LogLevel.Warn, "asm-llm-proxy: " + result.errors[i]);
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
    const suffix = tagSuffix(this.workload, this.namespace, tagValue(destination), tagValue(model));
    if (prompt > 0) this.add(METRIC_PROMPT_TOKENS + suffix, <u64>prompt);
    if (completion > 0) this.add(METRIC_COMPLETION_TOKENS + suffix, <u64>completion);
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

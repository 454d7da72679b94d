// SPDX-License-Identifier: Apache-2.0
// What an operator reads from Envoy, rendered from the host's state the way Envoy renders it:
// /stats/prometheus (tag extraction by bootstrap stats_tags, then name sanitising) and access-log
// lines with %FILTER_STATE(KEY:PLAIN)% fields.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { HttpStream, Metric, ProxyWasmHost } from "./host.ts";

export interface TagSpecifier {
  tag_name: string;
  regex: string;
}

/** Custom stat namespaces Envoy registers and strips from Prometheus names (no envoy_ prefix). */
const CUSTOM_NAMESPACES = ["wasmcustom."];

/** Reads stats_tags from a bootstrap ConfigMap in deploy/ (key custom_bootstrap.json, YAML or JSON). */
export function loadStatsTags(configMapPath: string): TagSpecifier[] {
  const cm = parseYaml(readFileSync(configMapPath, "utf8"));
  const text = cm?.data?.["custom_bootstrap.json"];
  if (typeof text !== "string") throw new Error(`${configMapPath}: no data.custom_bootstrap.json`);
  const bootstrap = parseYaml(text);
  const tags = bootstrap?.stats_config?.stats_tags;
  if (!Array.isArray(tags)) throw new Error(`${configMapPath}: no stats_config.stats_tags`);
  return tags as TagSpecifier[];
}

/** One stats_config.histogram_bucket_settings rule: a StringMatcher (prefix or exact) and bounds. */
export interface HistogramBucketSetting {
  match: { prefix?: string; exact?: string };
  buckets: number[];
}

/** Reads stats_config.histogram_bucket_settings from the same ConfigMap (none: Envoy's defaults). */
export function loadHistogramBuckets(configMapPath: string): HistogramBucketSetting[] {
  const cm = parseYaml(readFileSync(configMapPath, "utf8"));
  const settings = parseYaml(cm.data["custom_bootstrap.json"])?.stats_config?.histogram_bucket_settings;
  return Array.isArray(settings) ? (settings as HistogramBucketSetting[]) : [];
}

/**
 * The bounds of a histogram: the first rule whose matcher matches the stat's full name before
 * tag extraction (Envoy's ThreadLocalStoreImpl passes that name to HistogramSettingsImpl),
 * else Envoy's defaults.
 */
export function bucketsOf(fullName: string, settings: HistogramBucketSetting[]): number[] {
  for (const s of settings) {
    const { prefix, exact } = s.match;
    if ((prefix !== undefined && fullName.startsWith(prefix)) || (exact !== undefined && fullName === exact))
      return s.buckets;
  }
  return HISTOGRAM_BUCKETS;
}

/**
 * Envoy's tag extraction for one stat name: each specifier's regex is searched in the full name;
 * the first capture group is removed from the name, the second (or the first when there is no
 * second) is the tag value. A part already removed is not matched again.
 */
export function extractTags(
  fullName: string,
  specs: TagSpecifier[],
): { name: string; tags: Array<[string, string]> } {
  const removed: Array<[number, number]> = [];
  const tags: Array<[string, string]> = [];
  for (const spec of specs) {
    const re = new RegExp(spec.regex, "d");
    const m = re.exec(fullName);
    if (!m || m[1] === undefined) continue;
    const [start, end] = m.indices![1];
    if (removed.some(([s, e]) => start < e && s < end)) continue;
    removed.push([start, end]);
    tags.push([spec.tag_name, m[2] ?? m[1]]);
  }
  let name = "";
  let p = 0;
  for (const [s, e] of removed.sort((a, b) => a[0] - b[0])) {
    name += fullName.slice(p, s);
    p = e;
  }
  name += fullName.slice(p);
  return { name, tags };
}

function sanitizeName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_]/g, "_");
}

function sanitizeValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/**
 * The text of /stats/prometheus for the host's custom (wasm) stats; histograms get the bounds
 * of `buckets` (the bootstrap's histogram_bucket_settings) where a rule matches.
 */
export function renderPrometheus(
  host: ProxyWasmHost,
  specs: TagSpecifier[],
  buckets: HistogramBucketSetting[] = [],
): string {
  const families = new Map<string, Array<{ metric: Metric; tags: Array<[string, string]> }>>();
  for (const metric of host.metrics.values()) {
    const { name, tags } = extractTags(metric.name, specs);
    const ns = CUSTOM_NAMESPACES.find((n) => name.startsWith(n));
    const promName = ns ? sanitizeName(name.slice(ns.length)) : "envoy_" + sanitizeName(name);
    if (promName === "" || /^[0-9]/.test(promName)) continue; // Envoy drops such names
    let family = families.get(promName);
    if (!family) families.set(promName, (family = []));
    family.push({ metric, tags });
  }
  let out = "";
  for (const name of [...families.keys()].sort()) {
    const family = families.get(name)!.sort((a, b) => a.metric.order - b.metric.order);
    const type =
      family[0].metric.type === 0 ? "counter" : family[0].metric.type === 1 ? "gauge" : "histogram";
    out += `# TYPE ${name} ${type}\n`;
    for (const { metric, tags } of family) {
      const labels = tags.map(([k, v]) => `${sanitizeName(k)}="${sanitizeValue(v)}"`);
      const braces = (extra: string[] = []) => {
        const all = [...labels, ...extra];
        return all.length ? `{${all.join(",")}}` : "";
      };
      if (type !== "histogram") {
        out += `${name}${braces()} ${metric.value}\n`;
        continue;
      }
      // Envoy: cumulative buckets (the configured or default bounds), then +Inf, sum and count.
      for (const bound of bucketsOf(metric.name, buckets)) {
        out += `${name}_bucket${braces([`le="${bound}"`])} ${metric.samples.filter((v) => v <= bound).length}\n`;
      }
      out += `${name}_bucket${braces(['le="+Inf"'])} ${metric.samples.length}\n`;
      out += `${name}_sum${braces()} ${metric.samples.reduce((a, b) => a + b, 0)}\n`;
      out += `${name}_count${braces()} ${metric.samples.length}\n`;
    }
  }
  return out;
}

/** Envoy's default histogram bucket bounds (stats_config.histogram_bucket_settings unset). */
export const HISTOGRAM_BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

export interface AccessLogContext {
  stream: HttpStream;
  responseCode?: number;
  upstreamCluster?: string;
}

/**
 * Renders one Envoy access-log format string. Supported commands: %FILTER_STATE(KEY:PLAIN)%,
 * %REQ(header)%, %RESPONSE_CODE%, %UPSTREAM_CLUSTER%, %ROUTE_NAME%. A missing value prints "-", as in Envoy.
 */
export function renderAccessLog(format: string, ctx: AccessLogContext): string {
  return format.replace(
    /%([A-Z_]+)(?:\(([^)]*)\))?(?::(\d+))?%/g,
    (_all, command: string, arg: string | undefined, max: string | undefined) => {
      let value: string | undefined;
      switch (command) {
        case "FILTER_STATE": {
          const [key, format = ""] = (arg ?? "").split(":");
          if (format !== "PLAIN") throw new Error(`FILTER_STATE(${arg}): only :PLAIN is emulated`);
          value = ctx.stream.state(key);
          break;
        }
        case "REQ": {
          const name = (arg ?? "").toLowerCase();
          value = ctx.stream.requestHeaders.find(([k]) => k === name)?.[1];
          break;
        }
        case "RESPONSE_CODE":
          value = ctx.responseCode === undefined ? "0" : String(ctx.responseCode);
          break;
        case "UPSTREAM_CLUSTER":
          value = ctx.upstreamCluster ?? ctx.stream.cluster;
          break;
        case "ROUTE_NAME":
          value = ctx.stream.routeName;
          break;
        default:
          throw new Error(`access-log command %${command}% is not emulated`);
      }
      if (value === undefined || value === "") return "-";
      return max ? value.slice(0, Number(max)) : value;
    },
  );
}

/** A JSON access-log line: each field's format rendered, as Istio's JSON encoding prints strings. */
export function renderJsonAccessLog(fields: Record<string, string>, ctx: AccessLogContext): string {
  const out: Record<string, string> = {};
  for (const [k, f] of Object.entries(fields)) out[k] = renderAccessLog(f, ctx);
  return JSON.stringify(out);
}

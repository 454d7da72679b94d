// SPDX-License-Identifier: Apache-2.0
// The plugin configuration (WasmPlugin `pluginConfig`, sent by Istio as a JSON string) and its
// validation. Pure: no host imports; errors are returned for the caller to log.
//
// Policy for a bad configuration: report each problem, keep the defaults for what is wrong and
// keep running. Refusing to start (proxy_on_configure returning false) would, under Istio's
// default FAIL_CLOSE, turn every request of the pod into a 503 for the sake of a telemetry filter.

import { JSON } from "assemblyscript-json/assembly";
import { Schema } from "../llm/schema";
import { JsonScanner } from "../llm/json";

/** Request paths (query string ignored) that end with one of these are LLM calls. */
export const DEFAULT_PATHS: string[] = [
  "/chat/completions",
  "/completions",
  "/embeddings",
  "/responses",
  "/v1/messages",
];

/** Paths of the OpenAI-style APIs that accept `stream_options.include_usage`. */
const USAGE_OPTION_PATHS: string[] = ["/chat/completions", "/completions"];

function stripQuery(path: string): string {
  const q = path.indexOf("?");
  return q >= 0 ? path.substring(0, q) : path;
}

function endsWithAny(path: string, suffixes: string[]): bool {
  for (let i = 0, n = suffixes.length; i < n; i++) {
    if (path.endsWith(unchecked(suffixes[i]))) return true;
  }
  return false;
}

export class Config {
  paths: string[] = DEFAULT_PATHS;
  /** Ask OpenAI-style streamed requests for usage when they do not ask themselves. */
  injectStreamUsage: bool = false;

  /** Whether a request path (which may carry a query string) names an LLM API. */
  matchesPath(path: string): bool {
    return endsWithAny(stripQuery(path), this.paths);
  }

  /** Whether usage may be injected into a request to this path. */
  acceptsUsageOption(path: string): bool {
    return this.injectStreamUsage && endsWithAny(stripQuery(path), USAGE_OPTION_PATHS);
  }
}

export class ConfigResult {
  config: Config = new Config();
  errors: string[] = [];
}

const SYNTAX = new Schema();

function isBlank(bytes: Uint8Array): bool {
  for (let i = 0, n = bytes.length; i < n; i++) {
    const c = unchecked(bytes[i]);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return false;
  }
  return true;
}

/** Parses the configuration bytes. An empty configuration means all defaults. */
export function parseConfig(bytes: Uint8Array): ConfigResult {
  const result = new ConfigResult();
  if (isBlank(bytes)) return result;

  // The JSON library aborts (a VM trap) on malformed input, so the input is checked first with
  // the plugin's own scanner, which never traps.
  const check = new JsonScanner(SYNTAX);
  check.feed(bytes.dataStart, <usize>bytes.length);
  if (!check.finish()) {
    result.errors.push("configuration is not valid JSON; using defaults");
    return result;
  }
  const root = JSON.parse<Uint8Array>(bytes);
  if (!root.isObj) {
    result.errors.push("configuration must be a JSON object; using defaults");
    return result;
  }
  const obj = root as JSON.Obj;
  const keys = obj.keys;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const value = obj.get(key);
    if (key == "paths") {
      const paths = parsePaths(value, result.errors);
      if (paths !== null) result.config.paths = paths;
    } else if (key == "inject_stream_usage") {
      if (value !== null && value.isBool) result.config.injectStreamUsage = (value as JSON.Bool).valueOf();
      else result.errors.push("'inject_stream_usage' must be true or false; using false");
    } else {
      result.errors.push("unknown configuration key '" + key + "' ignored");
    }
  }
  return result;
}

function parsePaths(value: JSON.Value | null, errors: string[]): string[] | null {
  if (value === null || !value.isArr) {
    errors.push("'paths' must be an array of strings; using the default");
    return null;
  }
  const items = (value as JSON.Arr).valueOf();
  const out = new Array<string>();
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (!item.isString) {
      errors.push("'paths[" + i.toString() + "]' must be a string; using the default paths");
      return null;
    }
    const s = (item as JSON.Str).valueOf();
    if (s.length == 0) {
      errors.push("'paths[" + i.toString() + "]' is empty; using the default paths");
      return null;
    }
    out.push(s);
  }
  return out;
}

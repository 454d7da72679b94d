// SPDX-License-Identifier: Apache-2.0
// The plugin configuration (WasmPlugin `pluginConfig`, sent by Istio as a JSON string) and its
// validation. The options, their types, bounds and defaults come from options.json through the
// generated options.ts; this file only applies validated values. Pure: no host imports; errors
// are returned for the caller to log.
//
// Policy for a bad configuration: report each problem, keep the default for what is wrong and
// keep running. Refusing to start (proxy_on_configure returning false) would, under Istio's
// default FAIL_CLOSE, turn every request of the pod into an error for the sake of a telemetry
// filter.

import { JSON } from "assemblyscript-json/assembly";
import { Schema } from "../llm/schema";
import { JsonScanner } from "../llm/json";
import {
  OPTION_NAMES,
  OPTION_TYPES,
  OPTION_MINIMUMS,
  OPTION_MAXIMUMS,
  TYPE_BOOLEAN,
  TYPE_INTEGER,
  TYPE_STRING,
  TYPE_STRINGS,
  TYPE_OBJECTS,
  TYPE_OBJECT,
  OPT_RATE_LIMIT,
  OPT_PATHS,
  OPT_INJECT_STREAM_USAGE,
  OPT_STRIP_ACCEPT_ENCODING,
  OPT_MAX_SERIES,
  OPT_RESPONSE_MODEL_DIMENSION,
  OPT_HEADER_DIMENSIONS,
  OPT_PROVIDERS,
  OPT_FILTER_STATE,
  OPT_PRICES,
  OPT_CURRENCY,
  OPT_GEN_AI_METRICS,
  DEFAULT_PATHS,
  DEFAULT_INJECT_STREAM_USAGE,
  DEFAULT_STRIP_ACCEPT_ENCODING,
  DEFAULT_MAX_SERIES,
  DEFAULT_RESPONSE_MODEL_DIMENSION,
  DEFAULT_HEADER_DIMENSIONS,
  DEFAULT_CURRENCY,
  DEFAULT_GEN_AI_METRICS,
  OPTION_MAX_ITEMS,
  ENUM_FILTER_STATE,
  REFUSED_PARTS_HEADER_DIMENSIONS,
} from "./options";
import { syntaxError } from "./syntax";
import { headerDimension, stateBits, KEY_HEADER_PREFIX } from "../telemetry/names";
import { asciiLower } from "../llm/hosts";
import { Routing } from "../llm/routing";
import { readProviders } from "./providers";
import { readBudget } from "./ratelimit";
import { BudgetConfig } from "../llm/budget";
import { readPrices, isCurrencyCode } from "./prices";
import { PriceTable } from "../telemetry/cost";
import { PathShape, compileShape, matchShape, pathEnd } from "../llm/paths";

export { DEFAULT_PATHS };

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

function compileShapes(paths: string[]): PathShape[] {
  return paths.map<PathShape>((p) => compileShape(p));
}

/** The default shapes, compiled once per VM and shared by every configuration that keeps them. */
const DEFAULT_SHAPES: PathShape[] = compileShapes(DEFAULT_PATHS);

function anyGet(shapes: PathShape[]): bool {
  for (let i = 0; i < shapes.length; i++) if (shapes[i].get) return true;
  return false;
}

export class Config {
  paths: string[] = DEFAULT_PATHS;
  /** `paths` compiled once per configuration. */
  shapes: PathShape[] = DEFAULT_SHAPES;
  /** Some shape matches GET requests (so their :path is worth reading). */
  getShapes: bool = anyGet(this.shapes);
  injectStreamUsage: bool = DEFAULT_INJECT_STREAM_USAGE;
  stripAcceptEncoding: bool = DEFAULT_STRIP_ACCEPT_ENCODING;
  maxSeries: i32 = <i32>DEFAULT_MAX_SERIES;
  responseModelDimension: bool = DEFAULT_RESPONSE_MODEL_DIMENSION;
  /** Request headers kept as dimensions, lower case, and their dimension names. */
  headers: string[] = DEFAULT_HEADER_DIMENSIONS;
  headerNames: string[] = [];
  /** The same, encoded once for the host calls of every request. */
  headerKeys: ArrayBuffer[] = [];
  headerProperties: ArrayBuffer[] = [];
  /** The `providers` option; inactive (no provider) by default. */
  routing: Routing = new Routing();
  /** Filter-state keys published beyond the seed's three: STATE_* bits (telemetry/names.ts). */
  filterState: u32 = 0;
  /** The `rate_limit` option: token budgets checked with a service; null (off) by default. */
  budget: BudgetConfig | null = null;
  /** The `prices` option; inactive (no entry) by default. */
  prices: PriceTable = new PriceTable();
  currency: string = DEFAULT_CURRENCY;
  /** Record OpenTelemetry's gen_ai_client_token_usage histogram. */
  genAiMetrics: bool = DEFAULT_GEN_AI_METRICS;

  /** Whether a request path (which may carry a query string) names an LLM API. */
  matchesPath(path: string): bool {
    return this.matchShape(false, path) != null;
  }

  /** The first shape a POST (or GET) to `path` matches, or null; see paths.ts for the capture. */
  matchShape(get: bool, path: string): PathShape | null {
    const end = pathEnd(path);
    const shapes = this.shapes;
    for (let i = 0, n = shapes.length; i < n; i++) {
      const s = unchecked(shapes[i]);
      if (s.get == get && matchShape(s, path, end)) return s;
    }
    return null;
  }

  /** Whether usage may be injected into a request to this path. */
  acceptsUsageOption(path: string): bool {
    return this.injectStreamUsage && endsWithAny(stripQuery(path), USAGE_OPTION_PATHS);
  }

  /**
   * Sets one option from a value that has passed type validation. A list option keeps its good
   * items: each bad one is one message in `errors`, naming the item (never a secret: header names
   * and filter-state names are not).
   */
  apply(option: i32, value: JSON.Value, errors: string[]): void {
    const key = OPTION_NAMES[option];
    switch (option) {
      case OPT_HEADER_DIMENSIONS: {
        const given = capped(option, strings(value), errors);
        const headers: string[] = [];
        const names: string[] = [];
        for (let i = 0; i < given.length; i++) {
          const header = given[i];
          const problem = refusedHeader(header);
          if (problem !== null) {
            errors.push("'" + key + "' " + problem + ": " + header + "; ignored");
            continue;
          }
          const name = headerDimension(header)!;
          if (names.includes(name)) {
            errors.push("'" + key + "' names two headers with the same dimension: " + name + "; ignored");
            continue;
          }
          names.push(name);
          headers.push(asciiLower(header));
        }
        this.headers = headers;
        this.headerNames = names;
        this.headerKeys = headers.map<ArrayBuffer>((h) => String.UTF8.encode(h));
        this.headerProperties = names.map<ArrayBuffer>((n) => String.UTF8.encode(KEY_HEADER_PREFIX + n));
        break;
      }
      case OPT_FILTER_STATE: {
        const names = strings(value);
        let bits: u32 = 0;
        const unknown: string[] = [];
        for (let i = 0; i < names.length; i++) {
          const b = stateBits(names[i]);
          if (b < 0) unknown.push("'" + names[i] + "'");
          else bits |= <u32>b;
        }
        if (unknown.length > 0) {
          errors.push(
            "'" +
              key +
              "' names unknown " +
              (unknown.length == 1 ? "key " : "keys ") +
              unknown.join(", ") +
              ", ignored; the others are kept (known keys: " +
              ENUM_FILTER_STATE.join(", ") +
              ")",
          );
        }
        this.filterState = bits;
        break;
      }
      case OPT_RESPONSE_MODEL_DIMENSION:
        this.responseModelDimension = (value as JSON.Bool).valueOf();
        break;
      case OPT_PATHS:
        this.paths = strings(value);
        this.shapes = compileShapes(this.paths);
        this.getShapes = anyGet(this.shapes);
        break;
      case OPT_INJECT_STREAM_USAGE:
        this.injectStreamUsage = (value as JSON.Bool).valueOf();
        break;
      case OPT_STRIP_ACCEPT_ENCODING:
        this.stripAcceptEncoding = (value as JSON.Bool).valueOf();
        break;
      case OPT_MAX_SERIES:
        this.maxSeries = <i32>(value as JSON.Integer).valueOf();
        break;
      case OPT_CURRENCY: {
        const code = (value as JSON.Str).valueOf();
        if (!isCurrencyCode(code)) {
          errors.push(
            "'" +
              key +
              "' must be an ISO 4217 code of three capital letters (USD, CNY, EUR); using the default",
          );
          break;
        }
        this.currency = code;
        break;
      }
      case OPT_GEN_AI_METRICS:
        this.genAiMetrics = (value as JSON.Bool).valueOf();
        break;
    }
  }
}

/**
 * Why a header may not be a dimension, or null: a header that carries credentials would put a
 * client's secret into a metric name and filter state; a name that maps to a built-in dimension
 * would collide with it.
 */
function refusedHeader(header: string): string | null {
  const lower = asciiLower(header);
  for (let i = 0; i < REFUSED_PARTS_HEADER_DIMENSIONS.length; i++) {
    if (lower.includes(REFUSED_PARTS_HEADER_DIMENSIONS[i]))
      return "names a header that may carry credentials";
  }
  if (headerDimension(header) === null) return "names a header that collides with a built-in dimension";
  return null;
}

/** The first OPTION_MAX_ITEMS items of a list option, with a message when there were more. */
function capped(option: i32, items: string[], errors: string[]): string[] {
  const max = OPTION_MAX_ITEMS[option];
  if (max <= 0 || items.length <= max) return items;
  errors.push(
    "'" +
      OPTION_NAMES[option] +
      "' lists " +
      items.length.toString() +
      " items; at most " +
      max.toString() +
      " are kept, the rest are ignored",
  );
  return items.slice(0, max);
}

export class ConfigResult {
  config: Config = new Config();
  errors: string[] = [];
  /**
   * The whole configuration was ignored (not JSON, not an object): logged at error level, since
   * every provider is lost with it and calls then go out without their key or model.
   */
  failed: bool = false;
}

/** What ignoring the whole configuration means for traffic, appended to that message. */
export const IGNORED_CONSEQUENCE =
  "the whole configuration is ignored and the defaults apply: no provider is configured, so provider calls go out without the configured key, model or path";

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
    const where = syntaxError(bytes);
    result.errors.push(
      "configuration is not valid JSON" + (where !== null ? " at " + where : "") + "; " + IGNORED_CONSEQUENCE,
    );
    result.failed = true;
    return result;
  }
  const root = JSON.parse<Uint8Array>(bytes);
  if (!root.isObj) {
    result.errors.push("configuration must be a JSON object; " + IGNORED_CONSEQUENCE);
    result.failed = true;
    return result;
  }
  const obj = root as JSON.Obj;
  const keys = obj.keys;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const option = OPTION_NAMES.indexOf(key);
    if (option < 0) {
      result.errors.push("unknown configuration key '" + key + "' ignored");
      continue;
    }
    const value = obj.get(key);
    const problem = value === null ? "is missing" : invalid(option, value);
    if (problem !== null) {
      result.errors.push("'" + key + "' " + problem + "; using the default");
      continue;
    }
    if (option == OPT_RATE_LIMIT) {
      result.config.budget = readBudget(value!, result.errors);
      continue;
    }
    if (option == OPT_PROVIDERS) {
      // Each provider and route is checked on its own: a broken one is skipped, not the option.
      readProviders(value!, result.config.routing, result.errors);
      continue;
    }
    if (option == OPT_PRICES) {
      // Likewise: a broken price entry is skipped, the others kept.
      readPrices(value!, result.config.prices, result.errors);
      continue;
    }
    result.config.apply(option, value!, result.errors);
  }
  return result;
}

/** What is wrong with a value for an option, or null. */
function invalid(option: i32, value: JSON.Value): string | null {
  const type = OPTION_TYPES[option];
  if (type == TYPE_BOOLEAN) return value.isBool ? null : "must be true or false";
  if (type == TYPE_STRING) {
    return value.isString && (value as JSON.Str).valueOf().length > 0 ? null : "must be a non-empty string";
  }
  if (type == TYPE_INTEGER) {
    const min = OPTION_MINIMUMS[option];
    const max = OPTION_MAXIMUMS[option];
    const range = "must be an integer from " + min.toString() + " to " + max.toString();
    if (!value.isInteger) return range;
    const n = (value as JSON.Integer).valueOf();
    return n >= min && n <= max ? null : range;
  }
  if (type == TYPE_STRINGS) {
    if (!value.isArr) return "must be an array of non-empty strings";
    const items = (value as JSON.Arr).valueOf();
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (!item.isString || (item as JSON.Str).valueOf().length == 0) {
        return "must be an array of non-empty strings (item " + i.toString() + " is not)";
      }
    }
    return null;
  }
  if (type == TYPE_OBJECTS) return value.isArr ? null : "must be an array of objects";
  if (type == TYPE_OBJECT) return value.isObj ? null : "must be an object";
  return "has an unknown type";
}

function strings(value: JSON.Value): string[] {
  const items = (value as JSON.Arr).valueOf();
  const out = new Array<string>(items.length);
  for (let i = 0; i < items.length; i++) out[i] = (items[i] as JSON.Str).valueOf();
  return out;
}

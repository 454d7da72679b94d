// SPDX-License-Identifier: Apache-2.0
// Names the plugin shows to the outside: filter-state keys, stat names and their tag encoding.
// Pure: no host imports.

import { asciiLower } from "../llm/hosts";

/**
 * Filter-state paths. Envoy stores a property set at path P under the key "wasm." + P, so these
 * become `wasm.asm.llmproxy.request_model` etc., read in access logs with
 * `%FILTER_STATE(wasm.asm.llmproxy.request_model:PLAIN)%`.
 */
export const KEY_REQUEST_MODEL = "asm.llmproxy.request_model";
export const KEY_PROMPT_TOKENS = "asm.llmproxy.request_prompt_tokens";
export const KEY_COMPLETION_TOKENS = "asm.llmproxy.request_completion_tokens";
export const KEY_TOTAL_TOKENS = "asm.llmproxy.request_total_tokens";
export const KEY_CACHED_TOKENS = "asm.llmproxy.request_cached_tokens";
export const KEY_REASONING_TOKENS = "asm.llmproxy.request_reasoning_tokens";
/** Prompt tokens written to the provider's cache (billed at a premium by Anthropic and Bedrock). */
export const KEY_CACHE_WRITE_TOKENS = "asm.llmproxy.request_cache_write_tokens";
export const KEY_RESPONSE_MODEL = "asm.llmproxy.response_model";
export const KEY_REQUEST_STREAM = "asm.llmproxy.request_stream";
/** How the usage of the call was obtained: one of the USAGE_* values below. */
export const KEY_USAGE = "asm.llmproxy.usage";
export const KEY_FIRST_TOKEN_MS = "asm.llmproxy.first_token_ms";
export const KEY_DURATION_MS = "asm.llmproxy.duration_ms";
export const KEY_MS_PER_OUTPUT_TOKEN = "asm.llmproxy.ms_per_output_token";
/** The token budget check's outcome (one of RATELIMIT_OUTCOMES), set on every checked call. */
export const KEY_RATELIMIT = "asm.llmproxy.ratelimit";
/** The call's cost in the configured currency, an exact decimal (set when `prices` priced it). */
export const KEY_REQUEST_COST = "asm.llmproxy.request_cost";
/** Prefix of the filter-state key of a configured header dimension. */
export const KEY_HEADER_PREFIX = "asm.llmproxy.";

export const METRIC_PROMPT_TOKENS = "asm_llm_proxy_prompt_tokens";
export const METRIC_COMPLETION_TOKENS = "asm_llm_proxy_completion_tokens";
export const METRIC_CACHED_TOKENS = "asm_llm_proxy_cached_tokens";
export const METRIC_REASONING_TOKENS = "asm_llm_proxy_reasoning_tokens";
export const METRIC_CACHE_WRITE_TOKENS = "asm_llm_proxy_cache_write_tokens";
/** One count per matched LLM call, whatever became of it. */
export const METRIC_REQUESTS = "asm_llm_proxy_requests";
/** Histograms, in milliseconds, with Envoy's default buckets. */
export const METRIC_FIRST_TOKEN_MS = "asm_llm_proxy_first_token_ms";
export const METRIC_DURATION_MS = "asm_llm_proxy_duration_ms";
/** Opt-in (`prices`): cost in micro-units of the currency, and calls with tokens but no price. */
export const METRIC_COST = "asm_llm_proxy_cost";
export const METRIC_COST_UNPRICED = "asm_llm_proxy_cost_unpriced";

/** One count per checked LLM call, by outcome (`llmproxy_ratelimit`), with the seed's dimensions. */
export const METRIC_RATELIMIT = "asm_llm_proxy_ratelimit";
export const TAG_RATELIMIT = "llmproxy_ratelimit";
export const RATELIMIT_ALLOWED: i32 = 0;
export const RATELIMIT_DENIED: i32 = 1;
export const RATELIMIT_FAILED_OPEN: i32 = 2;
export const RATELIMIT_FAILED_CLOSED: i32 = 3;
export const RATELIMIT_OUTCOMES: string[] = ["allowed", "denied", "failed_open", "failed_closed"];

/** Tag names, in the order they appear in a stat name and in the bootstrap stats_tags. */
export const TAG_SOURCE_WORKLOAD = "llmproxy_source_workload";
export const TAG_SOURCE_NAMESPACE = "llmproxy_source_workload_namespace";
export const TAG_DESTINATION_SERVICE = "llmproxy_destination_service";
export const TAG_MODEL = "llmproxy_model";
/** Opt-in: the model the provider says answered. */
export const TAG_RESPONSE_MODEL = "llmproxy_response_model";
/** On asm_llm_proxy_requests only. */
export const TAG_USAGE = "llmproxy_usage";
export const TAG_STREAM = "llmproxy_stream";
/** On asm_llm_proxy_cost only: the `currency` option. */
export const TAG_CURRENCY = "llmproxy_currency";

/**
 * Opt-in (`gen_ai_metrics`): OpenTelemetry's gen_ai.client.token.usage histogram, under the name
 * and labels Prometheus gives the conventions' names (dots become underscores).
 */
export const METRIC_GEN_AI_TOKEN_USAGE = "gen_ai_client_token_usage";
export const TAG_GEN_AI_TOKEN_TYPE = "gen_ai_token_type";
export const TAG_GEN_AI_OPERATION = "gen_ai_operation_name";
export const TAG_GEN_AI_PROVIDER = "gen_ai_provider_name";
export const TAG_GEN_AI_REQUEST_MODEL = "gen_ai_request_model";
export const TAG_GEN_AI_RESPONSE_MODEL = "gen_ai_response_model";
export const TAG_SERVER_ADDRESS = "server_address";

/**
 * The stat name of one gen_ai_client_token_usage series. Each value must already have passed
 * through tagValue.
 */
export function genAiTokenUsageName(
  tokenType: string,
  operation: string,
  provider: string,
  requestModel: string,
  responseModel: string,
  server: string,
): string {
  return [
    METRIC_GEN_AI_TOKEN_USAGE,
    "|",
    TAG_GEN_AI_TOKEN_TYPE,
    "=",
    tokenType,
    "|",
    TAG_GEN_AI_OPERATION,
    "=",
    operation,
    "|",
    TAG_GEN_AI_PROVIDER,
    "=",
    provider,
    "|",
    TAG_GEN_AI_REQUEST_MODEL,
    "=",
    requestModel,
    "|",
    TAG_GEN_AI_RESPONSE_MODEL,
    "=",
    responseModel,
    "|",
    TAG_SERVER_ADDRESS,
    "=",
    server,
  ].join("");
}

/** Values of llmproxy_usage (and of the `usage` filter state). */
export const USAGE_PRESENT = "present";
export const USAGE_MISSING = "missing";
export const USAGE_INJECTED = "injected";
export const USAGE_ENCODED = "encoded";
export const USAGE_PARSE_ERROR = "parse_error";
export const USAGE_ABORTED = "aborted";
export const USAGE_ERROR = "error";
/** Every value of llmproxy_usage, in the order of the plugin's metric slots. */
export const USAGE_STATUSES: string[] = [
  USAGE_PRESENT,
  USAGE_MISSING,
  USAGE_INJECTED,
  USAGE_ENCODED,
  USAGE_PARSE_ERROR,
  USAGE_ABORTED,
  USAGE_ERROR,
];

/**
 * Dimension names a configured header may not take. options.json lists the same for the JSON
 * Schema (header_dimensions.reservedNames); tests/config-mistakes.test.ts checks they agree.
 */
const RESERVED_DIMENSIONS: string[] = [
  "source_workload",
  "source_workload_namespace",
  "destination_service",
  "model",
  "response_model",
  "usage",
  "stream",
  "issue",
  "ratelimit",
  "currency",
];

/**
 * The dimension name of a request header: lower case, with every character other than a-z, 0-9
 * and `_` turned into `_` (`x-user-id` → `x_user_id`). The tag is `llmproxy_` + that, the
 * filter-state key `wasm.asm.llmproxy.` + that. Returns null for a name that would collide with
 * the plugin's own dimensions.
 */
export function headerDimension(header: string): string | null {
  const lower = asciiLower(header);
  const out = new Array<string>(lower.length);
  for (let i = 0; i < lower.length; i++) {
    const c = lower.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x5f;
    out[i] = ok ? String.fromCharCode(c) : "_";
  }
  const name = out.join("");
  if (name.length == 0 || RESERVED_DIMENSIONS.includes(name)) return null;
  return name;
}

export const UNKNOWN = "unknown";
/** The value dimensions are folded into once a VM has reached its series cap. */
export const OTHER = "other";

/**
 * The filter's own trouble, one counter per kind: `asm_llm_proxy_issues|llmproxy_issue=<kind>`.
 * encoded_body: a response body not read because it was compressed;
 * parse_error: a request or response body (or stream event) that was not valid JSON;
 * cardinality_overflow: a token count folded into the "other" series.
 */
export const METRIC_ISSUES = "asm_llm_proxy_issues";
export const TAG_ISSUE = "llmproxy_issue";
export const ISSUE_ENCODED_BODY = 0;
export const ISSUE_PARSE_ERROR = 1;
export const ISSUE_CARDINALITY_OVERFLOW = 2;
export const ISSUE_NAMES: string[] = ["encoded_body", "parse_error", "cardinality_overflow"];

/**
 * The number of problems in the current configuration, a gauge set (never incremented) at each
 * configure. Envoy keeps stats by name across VMs and runs a canary VM before each worker VM, so
 * a counter bumped at configure time would read (1 + workers) x problems; every VM sets the
 * gauge to the same value, so it reads the right number whatever the VM count.
 */
export const METRIC_CONFIG_PROBLEMS = "asm_llm_proxy_config_problems";

/**
 * A provider key that went with a call the router sent, after the plugin's header changes, to
 * another cluster than the one the key was allowed for: a counter per source workload and
 * provider, `asm_llm_proxy_key_misroutes|llmproxy_source_workload=..|..._namespace=..|
 * llmproxy_destination_service=<provider host>` (the bootstrap's stats_tags of those three).
 */
export const METRIC_KEY_MISROUTES = "asm_llm_proxy_key_misroutes";

export function keyMisrouteName(workload: string, namespace: string, provider: string): string {
  return METRIC_KEY_MISROUTES + sourceAndDestination(workload, namespace, tagValue(provider));
}

export function issueName(issue: i32): string {
  return METRIC_ISSUES + "|" + TAG_ISSUE + "=" + ISSUE_NAMES[issue];
}

/** Longest tag value kept, in UTF-16 units; longer values are cut. */
export const MAX_TAG_LENGTH: i32 = 128;

/**
 * A value made safe to carry in a stat name: `|` and `=` (which delimit the `|key=value` parts the
 * stats_tags regexes split) and control characters become `_`; the value is cut to
 * MAX_TAG_LENGTH; an empty value becomes "unknown".
 */
export function tagValue(value: string): string {
  let n = value.length;
  if (n == 0) return UNKNOWN;
  if (n > MAX_TAG_LENGTH) {
    n = MAX_TAG_LENGTH;
    // Never cut a surrogate pair in half.
    const last = value.charCodeAt(n - 1);
    if (last >= 0xd800 && last <= 0xdbff) n--;
  }
  let clean = true;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c == 0x7c || c == 0x3d || c < 0x20 || c == 0x7f) {
      clean = false;
      break;
    }
  }
  if (clean) return n == value.length ? value : value.substring(0, n);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    out[i] = c == 0x7c || c == 0x3d || c < 0x20 || c == 0x7f ? "_" : String.fromCharCode(c);
  }
  return out.join("");
}

/**
 * The dimensions part of a stat name: `|llmproxy_source_workload=sleep|...|llmproxy_model=m`.
 * Each value must already have passed through tagValue.
 */
export function tagSuffix(workload: string, namespace: string, destination: string, model: string): string {
  return sourceAndDestination(workload, namespace, destination) + "|" + TAG_MODEL + "=" + model;
}

/** `|llmproxy_source_workload=..|llmproxy_source_workload_namespace=..|llmproxy_destination_service=..`. */
function sourceAndDestination(workload: string, namespace: string, destination: string): string {
  // One join rather than a chain of concatenations: a single allocation of the result.
  return [
    "|",
    TAG_SOURCE_WORKLOAD,
    "=",
    workload,
    "|",
    TAG_SOURCE_NAMESPACE,
    "=",
    namespace,
    "|",
    TAG_DESTINATION_SERVICE,
    "=",
    destination,
  ].join("");
}

/**
 * Filter-state keys beyond the seed's three (request_model, request_prompt_tokens,
 * request_completion_tokens, always published), each published only when the `filter_state`
 * option lists it: one bit per key, in the order of STATE_NAMES.
 */
export const STATE_TOTAL_TOKENS: u32 = 1 << 0;
export const STATE_CACHED_TOKENS: u32 = 1 << 1;
export const STATE_REASONING_TOKENS: u32 = 1 << 2;
export const STATE_RESPONSE_MODEL: u32 = 1 << 3;
export const STATE_REQUEST_STREAM: u32 = 1 << 4;
export const STATE_USAGE: u32 = 1 << 5;
export const STATE_FIRST_TOKEN_MS: u32 = 1 << 6;
export const STATE_DURATION_MS: u32 = 1 << 7;
export const STATE_MS_PER_OUTPUT_TOKEN: u32 = 1 << 8;
export const STATE_CACHE_WRITE_TOKENS: u32 = 1 << 9;
export const STATE_NAMES: string[] = [
  "request_total_tokens",
  "request_cached_tokens",
  "request_reasoning_tokens",
  "response_model",
  "request_stream",
  "usage",
  "first_token_ms",
  "duration_ms",
  "ms_per_output_token",
  "request_cache_write_tokens",
];
export const STATE_ALL: u32 = (1 << 10) - 1;
/** Always published; accepted in `filter_state` and changing nothing. */
const STATE_ALWAYS: string[] = ["request_model", "request_prompt_tokens", "request_completion_tokens"];

/**
 * The bit of a `filter_state` entry (a key name without the `asm.llmproxy.` prefix, or `all`),
 * 0 for a key that is always published, -1 for an unknown name.
 */
export function stateBits(name: string): i64 {
  if (name == "all") return STATE_ALL;
  const i = STATE_NAMES.indexOf(name);
  if (i >= 0) return 1 << i;
  return STATE_ALWAYS.includes(name) ? 0 : -1;
}

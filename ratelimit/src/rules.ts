// SPDX-License-Identifier: Apache-2.0
// RATE_LIMIT_CONFIG: the rules of ASM's example rate-limit service. A JSON list of
// {rate_limit_key_regex, redis_expired_seconds, fill_interval_second, tokens_per_fill, max_tokens};
// the first rule whose regex matches a key applies to it, and a key no rule matches is not limited.

export interface Rule {
  /** The regex as written in the configuration (logged and named in descriptions). */
  pattern: string;
  regex: RegExp;
  /** A bucket nobody touched for this long is forgotten (it starts full again). */
  expireMs: number;
  /** Every fillIntervalMs the bucket gains tokensPerFill tokens, up to maxTokens. */
  fillIntervalMs: number;
  tokensPerFill: number;
  maxTokens: number;
}

const FIELDS = [
  "rate_limit_key_regex",
  "redis_expired_seconds",
  "fill_interval_second",
  "tokens_per_fill",
  "max_tokens",
];

/** Parses RATE_LIMIT_CONFIG; throws an Error naming the rule and field that is wrong. */
export function parseRules(text: string | undefined): Rule[] {
  if (text === undefined || text.trim() === "") return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`RATE_LIMIT_CONFIG is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new Error("RATE_LIMIT_CONFIG must be a JSON list of rules");
  return raw.map((r, i) => {
    const where = `RATE_LIMIT_CONFIG[${i}]`;
    if (typeof r !== "object" || r === null || Array.isArray(r)) throw new Error(`${where} is not an object`);
    for (const k of Object.keys(r)) if (!FIELDS.includes(k)) throw new Error(`${where}: unknown field ${k}`);
    const pattern = r.rate_limit_key_regex;
    if (typeof pattern !== "string" || pattern === "")
      throw new Error(`${where}.rate_limit_key_regex must be a non-empty string`);
    let regex: RegExp;
    try {
      regex = new RegExp(pattern);
    } catch (e) {
      throw new Error(`${where}.rate_limit_key_regex: ${(e as Error).message}`);
    }
    const positive = (field: string, integer: boolean): number => {
      const v = r[field];
      if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v)))
        throw new Error(`${where}.${field} must be a positive ${integer ? "integer" : "number"}`);
      return v;
    };
    const fillIntervalMs = Math.round(positive("fill_interval_second", false) * 1000);
    const expireMs = Math.round(positive("redis_expired_seconds", false) * 1000);
    if (fillIntervalMs < 1 || expireMs < 1) throw new Error(`${where}: intervals below 1 ms`);
    return {
      pattern,
      regex,
      expireMs,
      fillIntervalMs,
      tokensPerFill: positive("tokens_per_fill", true),
      maxTokens: positive("max_tokens", true),
    };
  });
}

/** The first rule whose regex matches the key (a search, as Go's regexp.MatchString), or null. */
export function ruleFor(rules: readonly Rule[], key: string): Rule | null {
  for (const r of rules) if (r.regex.test(key)) return r;
  return null;
}

// SPDX-License-Identifier: Apache-2.0
// The HTTP side of the rate-limit service, ASM's contract:
//   GET  /ratelimit?ratelimit_keys=["k1","k2"]  -> 200 {"allow": bool, "description": "..."}
//        (a denied answer also carries retry_after_seconds, which a plugin may turn into
//        Retry-After; ASM's plugin ignores fields it does not know)
//   POST /update_ratelimit_record {"ratelimit_keys":[...],"prompt_tokens":N,
//        "completion_tokens":N,"total_tokens":N} -> 200; charges total_tokens (else prompt +
//        completion) to every key a rule limits
//   GET  /healthz -> 200 when Redis answers a PING, else 503
// Bad input answers 400 and changes nothing; Redis unreachable answers 503 with the reason.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Redis } from "ioredis";
import { touch } from "./bucket.ts";
import type { Logger } from "./log.ts";
import { ruleFor, type Rule } from "./rules.ts";

export interface ServiceOptions {
  redis: Redis;
  rules: Rule[];
  log: Logger;
  /** Prefix of the Redis keys of the buckets. */
  keyPrefix?: string;
}

/** Most keys one call may name, and the largest update body. */
export const MAX_KEYS = 64;
export const MAX_BODY = 64 * 1024;

class BadRequest extends Error {}

/** A JSON list of strings of at most MAX_KEYS, else BadRequest. */
function keyList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((k) => typeof k === "string"))
    throw new BadRequest(`${what} must be a JSON list of strings`);
  if (value.length > MAX_KEYS) throw new BadRequest(`${what}: more than ${MAX_KEYS} keys`);
  return value;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new BadRequest(`${what} is not JSON`);
  }
}

/** The tokens an update charges: total_tokens, else prompt + completion; each a whole number >= 0. */
function charged(body: Record<string, unknown>): number {
  const count = (field: string): number | undefined => {
    const v = body[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw new BadRequest(`${field} must be a whole number of tokens, 0 or more`);
    return v;
  };
  const prompt = count("prompt_tokens");
  const completion = count("completion_tokens");
  const total = count("total_tokens");
  if (total !== undefined) return total;
  if (prompt === undefined && completion === undefined)
    throw new BadRequest("no total_tokens, prompt_tokens or completion_tokens");
  return (prompt ?? 0) + (completion ?? 0);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) reject(new BadRequest(`body over ${MAX_BODY} bytes`));
      else parts.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

export function createService(options: ServiceOptions): Server {
  const { redis, rules, log } = options;
  const prefix = options.keyPrefix ?? "asm-llm-ratelimit:";
  const limited = (keys: string[]) =>
    keys.flatMap((key) => {
      const rule = ruleFor(rules, key);
      return rule ? [{ key, rule }] : [];
    });

  async function check(url: URL) {
    const param = url.searchParams.get("ratelimit_keys");
    if (param === null) throw new BadRequest("no ratelimit_keys parameter");
    const keys = keyList(parseJson(param, "ratelimit_keys"), "ratelimit_keys");
    const states = await Promise.all(
      limited(keys).map(async ({ key, rule }) => ({
        key,
        rule,
        ...(await touch(redis, prefix, key, rule, 0)),
      })),
    );
    const spent = states.find((s) => s.tokens <= 0);
    if (!spent) return { allow: true, description: "" };
    const retryAfter = Math.max(1, Math.ceil(spent.waitMs / 1000));
    log.info("denied", {
      key: spent.key,
      rule: spent.rule.pattern,
      tokens: spent.tokens,
      retry_after_s: retryAfter,
    });
    return {
      allow: false,
      description:
        `token budget of key ${JSON.stringify(spent.key)} is spent (${spent.tokens} tokens left); ` +
        `it refills ${spent.rule.tokensPerFill} tokens every ${spent.rule.fillIntervalMs / 1000}s ` +
        `up to ${spent.rule.maxTokens}`,
      retry_after_seconds: retryAfter,
    };
  }

  async function update(req: IncomingMessage) {
    const body = parseJson(await readBody(req), "the body");
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new BadRequest("the body must be a JSON object");
    const record = body as Record<string, unknown>;
    const keys = keyList(record.ratelimit_keys, "ratelimit_keys");
    const tokens = charged(record);
    const states = await Promise.all(
      limited(keys).map(async ({ key, rule }) => ({
        key,
        ...(await touch(redis, prefix, key, rule, tokens)),
      })),
    );
    log.debug("charged", { keys: states.map((s) => s.key), tokens });
    return { charged: tokens, keys: states.map((s) => ({ key: s.key, tokens_left: s.tokens })) };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const url = new URL(req.url ?? "/", "http://service");
    const route = `${req.method} ${url.pathname}`;
    let status = 200;
    let answer: unknown;
    try {
      if (route === "GET /ratelimit") answer = await check(url);
      else if (route === "POST /update_ratelimit_record") answer = await update(req);
      else if (route === "GET /healthz") answer = { status: (await redis.ping()) === "PONG" ? "ok" : "?" };
      else if (["/ratelimit", "/update_ratelimit_record", "/healthz"].includes(url.pathname)) {
        status = 405;
        answer = { error: `${req.method} is not allowed on ${url.pathname}` };
      } else {
        status = 404;
        answer = { error: `no such path ${url.pathname}` };
      }
    } catch (e) {
      if (e instanceof BadRequest) {
        status = 400;
        answer = { error: e.message };
        log.warn("bad request", { route, error: e.message });
      } else {
        // Redis unreachable, a timeout, or a script error: the caller's fail-open setting decides.
        status = 503;
        answer = { error: `rate-limit store unavailable: ${(e as Error).message}` };
        log.error("store unavailable", { route, error: (e as Error).message });
      }
    }
    const text = JSON.stringify(answer);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    log.debug("request", { route, status, duration_ms: Math.round(ms * 1000) / 1000 });
  }

  return createServer((req, res) => {
    handle(req, res).catch((e) => {
      log.error("unhandled", { error: (e as Error).message });
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
}

// SPDX-License-Identifier: Apache-2.0
// The token bucket of one key, kept in a Redis hash {tokens, last} and changed only by one Lua
// script, so that checks and charges from any number of service replicas are atomic per key.
// The script reads Redis's own clock (TIME), so replicas need not agree on theirs.

import type { Redis } from "ioredis";
import type { Rule } from "./rules.ts";

/**
 * KEYS[1]: the bucket. ARGV: fill interval (ms), tokens per fill, max tokens, expiry (ms), the
 * tokens to charge (0 for a check). A missing bucket starts full; whole intervals since `last`
 * add their fills (a full bucket banks no time); the charge is taken even below zero (a call's
 * tokens are known only after it ran). Returns {tokens left, ms until the bucket is above 0
 * again (0 when it is)}.
 */
export const BUCKET_SCRIPT = `
local interval = tonumber(ARGV[1])
local per_fill = tonumber(ARGV[2])
local max_tokens = tonumber(ARGV[3])
local expire_ms = tonumber(ARGV[4])
local charge = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = max_tokens
  last = now
elseif now > last then
  local fills = math.floor((now - last) / interval)
  if fills > 0 then
    tokens = tokens + fills * per_fill
    last = last + fills * interval
  end
end
if tokens >= max_tokens then
  tokens = max_tokens
  last = now
end
tokens = tokens - charge
redis.call('HSET', KEYS[1], 'tokens', tokens, 'last', last)
redis.call('PEXPIRE', KEYS[1], expire_ms)
local wait = 0
if tokens <= 0 then
  local fills = math.floor(-tokens / per_fill) + 1
  wait = last + fills * interval - now
end
return {tokens, wait}
`;

export interface BucketState {
  tokens: number;
  /** Milliseconds until the bucket is above 0 again; 0 when it is. */
  waitMs: number;
}

/** The script as the client command defineBucket registers. */
interface WithBucket {
  asmTokenBucket(key: string, ...args: number[]): Promise<[number, number]>;
}

/** Registers the script on a client (sent once with EVALSHA, EVAL when Redis lacks it). */
export function defineBucket(redis: Redis): void {
  redis.defineCommand("asmTokenBucket", { numberOfKeys: 1, lua: BUCKET_SCRIPT });
}

/** Refills the key's bucket, charges it `charge` tokens (0: a check) and answers what is left. */
export async function touch(
  redis: Redis,
  prefix: string,
  key: string,
  rule: Rule,
  charge: number,
): Promise<BucketState> {
  const [tokens, waitMs] = await (redis as unknown as WithBucket).asmTokenBucket(
    prefix + key,
    rule.fillIntervalMs,
    rule.tokensPerFill,
    rule.maxTokens,
    rule.expireMs,
    charge,
  );
  return { tokens, waitMs };
}

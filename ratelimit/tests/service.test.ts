// SPDX-License-Identifier: Apache-2.0
// The rate-limit service against a real redis-server on loopback: RATE_LIMIT_CONFIG's rules and
// their order, the bucket's charge, refill, cap and expiry, concurrent updates through the Lua
// script, bad input (400, nothing changed), Redis stopped (503, then back), and the process's
// structured logs and graceful shutdown.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { parseRules, ruleFor } from "../src/rules.ts";
import { start, type Running } from "../src/main.ts";
import { createLogger } from "../src/log.ts";
import { REDIS_SKIP, RedisServer } from "./redis.ts";

const RULES = [
  {
    rate_limit_key_regex: "^vip\\.",
    redis_expired_seconds: 60,
    fill_interval_second: 60,
    tokens_per_fill: 500,
    max_tokens: 1000,
  },
  {
    rate_limit_key_regex: "^refill\\.",
    redis_expired_seconds: 60,
    fill_interval_second: 0.4,
    tokens_per_fill: 50,
    max_tokens: 100,
  },
  {
    rate_limit_key_regex: "^short\\.",
    redis_expired_seconds: 0.5,
    fill_interval_second: 60,
    tokens_per_fill: 10,
    max_tokens: 100,
  },
  {
    rate_limit_key_regex: "\\.default$|^user\\.",
    redis_expired_seconds: 60,
    fill_interval_second: 60,
    tokens_per_fill: 10,
    max_tokens: 100,
  },
];

let redis: RedisServer;
let service: Running;
let client: Redis;
const logs: any[] = [];
let base = "";

const opts = { skip: REDIS_SKIP };

before(async () => {
  if (REDIS_SKIP) return;
  redis = await RedisServer.start();
  const log = createLogger("debug", (line) => logs.push(JSON.parse(line)));
  service = await start(
    {
      PORT: "0",
      REDIS_ADDRESS: redis.address,
      RATE_LIMIT_CONFIG: JSON.stringify(RULES),
      REDIS_TIMEOUT_MS: "2000",
    },
    log,
  );
  base = `http://127.0.0.1:${service.port}`;
  client = new Redis({ host: "127.0.0.1", port: redis.port });
  client.on("error", () => {}); // while the test stops Redis
});

after(async () => {
  if (REDIS_SKIP) return;
  client.disconnect();
  await service.stop();
  await redis.stop();
});

async function check(keys: unknown, raw = false): Promise<{ status: number; body: any }> {
  const q = raw ? String(keys) : encodeURIComponent(JSON.stringify(keys));
  const r = await fetch(`${base}/ratelimit?ratelimit_keys=${q}`);
  return { status: r.status, body: await r.json() };
}

async function update(body: unknown, raw = false): Promise<{ status: number; body: any }> {
  const r = await fetch(`${base}/update_ratelimit_record`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: raw ? String(body) : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

const charge = (keys: string[], total: number) =>
  update({ ratelimit_keys: keys, prompt_tokens: total, completion_tokens: 0, total_tokens: total });

/** Every key and hash in Redis, to show that a request changed nothing. */
async function snapshot(): Promise<Record<string, Record<string, string>>> {
  const out: Record<string, Record<string, string>> = {};
  for (const k of (await client.keys("*")).sort()) out[k] = await client.hgetall(k);
  return out;
}

test("RATE_LIMIT_CONFIG: fields checked, the first matching regex applies, no rule means no limit", () => {
  const rules = parseRules(JSON.stringify(RULES));
  assert.equal(ruleFor(rules, "vip.alice.default")?.maxTokens, 1000, "first match wins over .default$");
  assert.equal(ruleFor(rules, "sleep.default")?.pattern, "\\.default$|^user\\.");
  assert.equal(ruleFor(rules, "nobody.prod"), null);
  assert.deepEqual(parseRules(undefined), []);
  const wrong = (rule: object) => () => parseRules(JSON.stringify([{ ...RULES[0], ...rule }]));
  assert.throws(wrong({ max_tokens: -1 }), /RATE_LIMIT_CONFIG\[0\]\.max_tokens must be a positive integer/);
  assert.throws(wrong({ tokens_per_fill: 1.5 }), /tokens_per_fill/);
  assert.throws(wrong({ fill_interval_second: "1" }), /fill_interval_second/);
  assert.throws(wrong({ rate_limit_key_regex: "(" }), /rate_limit_key_regex/);
  assert.throws(wrong({ max_token: 1 }), /unknown field max_token/);
  assert.throws(() => parseRules("{"), /not JSON/);
  assert.throws(() => parseRules("{}"), /a JSON list/);
});

test("a bucket is allowed while above 0, denied once spent, naming the key and the wait", opts, async () => {
  assert.deepEqual((await check(["user.a"])).body, { allow: true, description: "" });
  assert.equal((await charge(["user.a"], 60)).body.keys[0].tokens_left, 40);
  assert.equal((await check(["user.a"])).body.allow, true);
  assert.equal((await charge(["user.a"], 60)).body.keys[0].tokens_left, -20, "the charge goes below 0");
  const denied = await check(["user.a"]);
  assert.equal(denied.status, 200);
  assert.equal(denied.body.allow, false);
  assert.match(denied.body.description, /key "user\.a" is spent \(-20 tokens left\)/);
  // -20 needs 3 fills of 10 to be above 0 again: about 3 minutes.
  assert.ok(denied.body.retry_after_seconds > 170 && denied.body.retry_after_seconds <= 180);
  assert.ok(logs.some((l) => l.msg === "denied" && l.key === "user.a" && l.level === "info"));
  // Two keys on one call: denied when either is spent; a key no rule limits is never denied.
  assert.equal((await check(["user.b", "user.a"])).body.allow, false);
  assert.equal((await check(["user.b"])).body.allow, true);
  assert.equal((await charge(["nobody.prod"], 1_000_000)).body.keys.length, 0);
  assert.equal((await check(["nobody.prod"])).body.allow, true);
  assert.equal(await client.exists("asm-llm-ratelimit:nobody.prod"), 0, "nothing stored for it");
  assert.deepEqual((await check([])).body, { allow: true, description: "" });
});

test("rule order: the first matching rule's bucket, not a later one's", opts, async () => {
  await charge(["vip.alice.default"], 500);
  assert.equal((await check(["vip.alice.default"])).body.allow, true, "1000-token rule, not the 100 one");
  assert.equal(await client.hget("asm-llm-ratelimit:vip.alice.default", "tokens"), "500");
});

test("refill: tokens_per_fill every fill_interval_second, up to max_tokens", opts, async () => {
  assert.equal((await charge(["refill.a"], 120)).body.keys[0].tokens_left, -20);
  const denied = await check(["refill.a"]);
  assert.equal(denied.body.allow, false);
  assert.equal(denied.body.retry_after_seconds, 1, "under a second, rounded up");
  await new Promise((r) => setTimeout(r, 450));
  assert.equal((await check(["refill.a"])).body.allow, true, "one fill of 50: 30 tokens");
  assert.equal(await client.hget("asm-llm-ratelimit:refill.a", "tokens"), "30");
  await new Promise((r) => setTimeout(r, 900));
  await check(["refill.a"]);
  assert.equal(await client.hget("asm-llm-ratelimit:refill.a", "tokens"), "100", "capped at max_tokens");
});

test("expiry: a bucket untouched for redis_expired_seconds is gone and starts full", opts, async () => {
  await charge(["short.a"], 150);
  assert.equal((await check(["short.a"])).body.allow, false);
  const ttl = await client.pttl("asm-llm-ratelimit:short.a");
  assert.ok(ttl > 0 && ttl <= 500, `pttl ${ttl}`);
  await new Promise((r) => setTimeout(r, 650));
  assert.equal(await client.exists("asm-llm-ratelimit:short.a"), 0);
  assert.equal((await check(["short.a"])).body.allow, true);
  assert.equal(await client.hget("asm-llm-ratelimit:short.a", "tokens"), "100");
});

test("concurrent updates on one key through the Lua script lose nothing", opts, async () => {
  await check(["vip.concurrent"]);
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => charge(["vip.concurrent", `user.c${i % 4}`], 3)),
  );
  assert.deepEqual(
    results.filter((r) => r.status !== 200).map((r) => r.body),
    [],
  );
  assert.equal(await client.hget("asm-llm-ratelimit:vip.concurrent", "tokens"), String(1000 - 600));
  for (let i = 0; i < 4; i++)
    assert.equal(await client.hget(`asm-llm-ratelimit:user.c${i}`, "tokens"), String(100 - 150));
  // The remaining counts the 200 answers saw are 200 distinct values: each charge saw the one before.
  const seen = new Set(results.map((r) => r.body.keys[0].tokens_left));
  assert.equal(seen.size, 200);
});

test("bad input answers 400 with the reason and changes nothing", opts, async () => {
  await charge(["user.bad"], 10);
  const before = await snapshot();
  const cases: Array<[Promise<{ status: number; body: any }>, RegExp]> = [
    [check("not json", true), /ratelimit_keys is not JSON/],
    [check('"user.bad"', true), /must be a JSON list of strings/],
    [check("[1,2]", true), /must be a JSON list of strings/],
    [
      fetch(`${base}/ratelimit`).then(async (r) => ({ status: r.status, body: await r.json() })),
      /no ratelimit_keys/,
    ],
    [update("{not json", true), /the body is not JSON/],
    [update([1]), /must be a JSON object/],
    [update({ ratelimit_keys: "user.bad", total_tokens: 5 }), /must be a JSON list of strings/],
    [update({ ratelimit_keys: ["user.bad"], total_tokens: -5 }), /total_tokens must be a whole number/],
    [update({ ratelimit_keys: ["user.bad"], prompt_tokens: 3, completion_tokens: -1 }), /completion_tokens/],
    [update({ ratelimit_keys: ["user.bad"], total_tokens: 1.5 }), /total_tokens/],
    [update({ ratelimit_keys: ["user.bad"] }), /no total_tokens/],
    [update({ ratelimit_keys: Array(65).fill("user.bad"), total_tokens: 1 }), /more than 64 keys/],
  ];
  for (const [answer, reason] of cases) {
    const { status, body } = await answer;
    assert.equal(status, 400, reason.source);
    assert.match(body.error, reason);
  }
  assert.deepEqual(await snapshot(), before);
  // Without total_tokens, prompt + completion is charged.
  const r = await update({ ratelimit_keys: ["user.bad"], prompt_tokens: 3, completion_tokens: 4 });
  assert.equal(r.body.keys[0].tokens_left, 83);
  assert.equal((await fetch(`${base}/ratelimit`, { method: "POST" })).status, 405);
  assert.equal((await fetch(`${base}/other`)).status, 404);
});

test(
  "Redis stopped: check, update and /healthz answer 503 with the reason; back when Redis is",
  opts,
  async () => {
    assert.deepEqual(await (await fetch(`${base}/healthz`)).json(), { status: "ok" });
    await redis.stop();
    const c = await check(["user.a"]);
    assert.equal(c.status, 503);
    assert.match(c.body.error, /^rate-limit store unavailable: /);
    assert.equal((await charge(["user.a"], 1)).status, 503);
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
    assert.equal((await check(["nobody.prod"])).status, 200, "a key no rule limits needs no Redis");
    assert.ok(logs.some((l) => l.level === "error" && l.msg === "redis unreachable"));
    assert.ok(logs.some((l) => l.level === "error" && l.msg === "store unavailable"));
    await redis.restart();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await fetch(`${base}/healthz`)).status;
    }
    assert.equal(status, 200, "reconnected");
    assert.equal((await check(["user.a"])).body.allow, true, "an empty Redis: the bucket starts full");
  },
);

const RATELIMIT = fileURLToPath(new URL("..", import.meta.url));
const DIST = fileURLToPath(new URL("../../build/ratelimit-dist/", import.meta.url));

/** Compiles the service as its Dockerfile does (tsc, then plain node runs dist/main.js). */
function compile(): void {
  const tsc = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url));
  const r = spawnSync(process.execPath, [tsc, "-p", RATELIMIT + "tsconfig.json", "--outDir", DIST], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
}

function run(env: Record<string, string>) {
  const child = spawn(process.execPath, [DIST + "main.js"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: any[] = [];
  let rest = "";
  child.stdout.on("data", (c: Buffer) => {
    rest += c.toString();
    const parts = rest.split("\n");
    rest = parts.pop()!;
    for (const p of parts) lines.push(JSON.parse(p));
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, lines, exited };
}

test(
  "the compiled process (the image's CMD): JSON logs, a clear error on bad rules, a graceful SIGTERM stop",
  opts,
  async () => {
    compile();
    const bad = run({ RATE_LIMIT_CONFIG: '[{"rate_limit_key_regex": "("}]', REDIS_ADDRESS: redis.address });
    assert.equal(await bad.exited, 1);
    assert.equal(bad.lines[0].level, "error");
    assert.match(bad.lines[0].error, /RATE_LIMIT_CONFIG\[0\]\.rate_limit_key_regex/);

    const p = run({ PORT: "0", REDIS_ADDRESS: redis.address, RATE_LIMIT_CONFIG: JSON.stringify(RULES) });
    for (let i = 0; i < 100 && !p.lines.some((l) => l.msg === "listening"); i++)
      await new Promise((r) => setTimeout(r, 50));
    const listening = p.lines.find((l) => l.msg === "listening");
    assert.ok(listening, JSON.stringify(p.lines));
    assert.match(listening.time, /^\d{4}-\d\d-\d\dT/);
    const r = await fetch(`http://127.0.0.1:${listening.port}/ratelimit?ratelimit_keys=["user.p"]`);
    assert.equal(r.status, 200, "the raw JSON list in the query works too");
    p.child.kill("SIGTERM");
    assert.equal(await p.exited, 0);
    assert.deepEqual(
      p.lines.map((l) => l.msg).filter((m) => m !== "redis ready"),
      ["listening", "shutting down", "stopped"],
    );
  },
);

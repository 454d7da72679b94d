// SPDX-License-Identifier: Apache-2.0
// Token budgets end to end on loopback: the plugin (rate_limit) checks each LLM call with the
// rate-limit service of ratelimit/ on a real redis-server, through the test host's real
// proxy_http_call, and reports the call's tokens after the response. A 100-token bucket lets the
// first calls through and denies once spent (429, upstream untouched), refills after its
// interval; two keys on one call; the service stopped (fail open, fail closed); Redis stopped
// (the service answers 503); a slow service (the timeout decides); 100 concurrent calls on one
// key (the overshoot README states); and traffic that is not checked costs no extra host call.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HostOptions } from "./host/host.ts";
import { WASM, NODE_METADATA } from "./seed.ts";
import { BudgetStack, REDIS_SKIP, SERVICE, PER_CALL } from "./budget-stack.ts";

let stack: BudgetStack;
const opts = { skip: REDIS_SKIP };

before(async () => {
  if (!REDIS_SKIP) stack = await BudgetStack.start();
});

after(async () => {
  if (!REDIS_SKIP) await stack.stop();
});

const plugin = (budget: object = {}, options: HostOptions = {}) => stack.plugin(WASM, budget, options);
const call = (host: ProxyWasmHost, headers: Record<string, string> = {}) => stack.call(host, headers);
const tokens = (key: string) => stack.tokens(key);

const outcome = (host: ProxyWasmHost, o: string) =>
  host.counter(
    `asm_llm_proxy_ratelimit|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=unknown|llmproxy_ratelimit=${o}`,
  ) ?? 0;

test(
  "a 100-token bucket lets calls through until it is spent, then denies without the upstream",
  opts,
  async () => {
    const host = await plugin();
    const team = { "x-team": "team-a" };
    const before = stack.upstreamCalls;
    for (let i = 1; i <= 5; i++) {
      const r = await call(host, team);
      assert.equal(r.status, 200, `call ${i}`);
      assert.equal(r.stream.state("wasm.asm.llmproxy.ratelimit"), "allowed");
      assert.equal(await tokens("team-a"), 100 - PER_CALL * i, "the update charged the call's total tokens");
    }
    assert.equal(stack.upstreamCalls, before + 5);
    const denied = await call(host, team);
    assert.equal(denied.status, 429);
    assert.equal(denied.local, true);
    assert.equal(stack.upstreamCalls, before + 5, "the upstream was never called");
    const body = JSON.parse(denied.body);
    assert.equal(body.error.code, "rate_limit_exceeded");
    assert.equal(body.error.type, "tokens");
    assert.match(body.error.message, /^Token rate limit exceeded: token budget of key "team-a" is spent/);
    const headers = Object.fromEntries(denied.stream.responseHeaders);
    assert.equal(headers["content-type"], "application/json");
    assert.ok(
      Number(headers["retry-after"]) >= 1 && Number(headers["retry-after"]) <= 2,
      headers["retry-after"],
    );
    assert.equal(denied.stream.state("wasm.asm.llmproxy.ratelimit"), "denied");
    assert.equal(await tokens("team-a"), 0, "a denied call charges nothing");
    assert.equal(outcome(host, "allowed"), 5);
    assert.equal(outcome(host, "denied"), 1);
    // The denial counts as no LLM call of its own (it never reached a provider).
    assert.equal(
      host.counter(
        "asm_llm_proxy_prompt_tokens|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=api.openai.com|llmproxy_model=gpt-4o-mini",
      ),
      5 * 7,
    );
    // After the interval the bucket is full again.
    await new Promise((r) => setTimeout(r, 1600));
    const refilled = await call(host, team);
    assert.equal(refilled.status, 200);
    assert.equal(await tokens("team-a"), 100 - PER_CALL);
    host.close();
  },
);

test("two keys on one call: checked together, denied when either is spent, both charged", opts, async () => {
  const host = await plugin({ keys: ["{header:x-team}", "tier-{header:x-tier}"] });
  const r = await call(host, { "x-team": "team-b", "x-tier": "gold" });
  assert.equal(r.status, 200);
  const [check] = host.httpCalls;
  assert.equal(
    decodeURIComponent(check.headers.find(([k]) => k === ":path")![1]),
    '/ratelimit?ratelimit_keys=["team-b","tier-gold"]',
  );
  const update = host.httpCalls[1];
  assert.deepEqual(JSON.parse(update.body), {
    ratelimit_keys: ["team-b", "tier-gold"],
    prompt_tokens: 7,
    completion_tokens: 13,
    total_tokens: 20,
  });
  assert.equal(await tokens("team-b"), 80);
  assert.equal(await tokens("tier-gold"), 100000 - 20);
  await stack.client.hset("asm-llm-ratelimit:team-b", "tokens", "0");
  assert.equal((await call(host, { "x-team": "team-b", "x-tier": "gold" })).status, 429);
  // Only the header that is present makes a key; no header at all: no check, no http call.
  const calls = host.httpCalls.length;
  assert.equal((await call(host, { "x-tier": "gold" })).status, 200);
  assert.equal(host.httpCalls.length, calls + 2, "a check and an update for tier-gold alone");
  const unchecked = await call(host);
  assert.equal(unchecked.status, 200);
  assert.equal(host.httpCalls.length, calls + 2, "a call with no key is not checked");
  assert.equal(unchecked.stream.state("wasm.asm.llmproxy.ratelimit"), undefined);
  host.close();
});

test("the service stopped: fail_open lets the call through, fail_open false refuses it", opts, async () => {
  const port = stack.service.port;
  await stack.service.stop();
  try {
    const open = await plugin();
    const r = await call(open, { "x-team": "team-c" });
    assert.equal(r.status, 200);
    assert.equal(r.stream.state("wasm.asm.llmproxy.ratelimit"), "failed_open");
    assert.equal(open.httpCalls[0].status, 503, "Envoy answers an unreachable cluster with 503");
    assert.equal(outcome(open, "failed_open"), 1);
    open.close();
    const closed = await plugin({ fail_open: false, rejected_code: 503 });
    const before = stack.upstreamCalls;
    const refused = await call(closed, { "x-team": "team-c" });
    assert.equal(refused.status, 503);
    assert.equal(stack.upstreamCalls, before);
    assert.equal(refused.stream.state("wasm.asm.llmproxy.ratelimit"), "failed_closed");
    assert.match(JSON.parse(refused.body).error.message, /could not be checked/);
    closed.close();
  } finally {
    stack.service = await stack.startService(String(port));
  }
});

test("Redis stopped: the service answers 503 and the plugin's fail_open decides", opts, async () => {
  const host = await plugin();
  await stack.redis.stop();
  try {
    const direct = await fetch(`http://127.0.0.1:${stack.service.port}/ratelimit?ratelimit_keys=["team-d"]`);
    assert.equal(direct.status, 503);
    const r = await call(host, { "x-team": "team-d" });
    assert.equal(r.status, 200);
    assert.equal(host.httpCalls[0].status, 503);
    assert.equal(r.stream.state("wasm.asm.llmproxy.ratelimit"), "failed_open");
  } finally {
    await stack.redis.restart();
    for (
      let i = 0;
      i < 50 && (await fetch(`http://127.0.0.1:${stack.service.port}/healthz`)).status !== 200;
      i++
    )
      await new Promise((r) => setTimeout(r, 100));
  }
  host.close();
});

test("a slow service: the call's timeout ends the wait, and fail_open decides", opts, async (t) => {
  // A service whose Redis hangs (stopped with SIGSTOP) answers only after its own 2 s timeout;
  // the plugin's 200 ms decide first.
  const slow = await stack.startService("0", "2000");
  const host = await plugin({ timeout_ms: 200 }, { clusters: { [SERVICE]: slow.port } });
  await call(host, { "x-team": "team-e" }); // connects Redis
  stack.redis.signal("SIGSTOP");
  try {
    const started = performance.now();
    const r = await call(host, { "x-team": "team-e" });
    const waited = performance.now() - started;
    assert.equal(r.status, 200);
    const check = host.httpCalls.filter((c) => c.headers.some(([k, v]) => k === ":method" && v === "GET"))[1];
    assert.equal(check.status, 504);
    assert.ok(check.ms! >= 195 && check.ms! < 1000, `the check waited ${check.ms} ms`);
    assert.ok(waited < 1500, `the call took ${waited} ms`);
    t.diagnostic(`the check waited ${check.ms!.toFixed(1)} ms, the call ${waited.toFixed(1)} ms`);
    assert.equal(r.stream.state("wasm.asm.llmproxy.ratelimit"), "failed_open");
  } finally {
    stack.redis.signal("SIGCONT");
  }
  host.close();
  await slow.stop();
});

test(
  "100 concurrent calls on one key: every charge counts, the overshoot is the calls in flight",
  opts,
  async (t) => {
    const crowd = { "x-crowd": "crowd" };
    const h = await plugin({ keys: ["{header:x-crowd}"] });
    const results = await Promise.all(Array.from({ length: 100 }, () => call(h, crowd)));
    await h.idle();
    const allowed = results.filter((r) => r.status === 200).length;
    const denied = results.filter((r) => r.status === 429).length;
    assert.equal(allowed + denied, 100);
    // Each call was checked while the 1,000-token bucket was above 0 unless earlier calls had
    // already been charged: at least the 50 it holds went through, and every charge landed.
    assert.ok(allowed >= 1000 / PER_CALL, `${allowed} allowed`);
    assert.equal(await tokens("crowd"), 1000 - PER_CALL * allowed, "no update lost");
    // The overshoot is at most the calls in flight (100 here) times their tokens.
    assert.ok(1000 - PER_CALL * allowed >= -PER_CALL * 100);
    const left = await tokens("crowd");
    t.diagnostic(
      `${allowed} of 100 allowed on a 1,000-token bucket at ${PER_CALL} tokens a call: ${left} left`,
    );
    assert.equal((await call(h, crowd)).status, left > 0 ? 200 : 429);
    h.close();
  },
);

test("traffic the budget does not check costs no extra host call", opts, async () => {
  const plain = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA });
  const budgeted = await plugin();
  const costs = async (host: ProxyWasmHost) => {
    const get = host.stream({ cluster: "outbound|80||example.com" });
    get.sendRequestHeaders({ ":method": "GET", ":path": "/", ":authority": "example.com" }, true);
    get.end();
    const llm = await call(host); // no x-team: no key
    return [get.hostCalls, llm.stream.hostCalls];
  };
  await costs(plain);
  await costs(budgeted);
  assert.deepEqual(await costs(budgeted), await costs(plain));
  assert.equal(budgeted.httpCalls.length, 0);
  plain.close();
  budgeted.close();
});

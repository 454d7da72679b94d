// SPDX-License-Identifier: Apache-2.0
// What a token budget check costs on loopback (`npm run bench:budget`, needs redis-server): the
// plugin in the test host, the rate-limit service of ratelimit/ on a real Redis, an upstream.
// Prints the added latency of a checked call (proxy_http_call to its answer, and the whole call
// with and without the budget), and what a denied call costs the sidecar (host calls, time in
// the module's callbacks).

import { ProxyWasmHost } from "../tests/host/host.ts";
import { BudgetStack, REDIS_SKIP } from "../tests/budget-stack.ts";
import { RELEASE_WASM, NODE_METADATA } from "../tests/seed.ts";

if (REDIS_SKIP) {
  console.log(`skipped: ${REDIS_SKIP}`);
  process.exit(0);
}

const N = Number(process.env.BUDGET_CALLS ?? 500);
const stack = await BudgetStack.start();

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const ms = (x: number) => x.toFixed(2) + " ms";

/** Time spent inside the module's exports, per stream id. */
function timed(host: ProxyWasmHost): Map<number, number> {
  const spent = new Map<number, number>();
  const call = host.call.bind(host);
  let depth = 0;
  host.call = (name: string, ...args: number[]) => {
    // Only the outermost call is timed: the host runs a deferred local reply within it.
    if (depth > 0) return call(name, ...args);
    depth++;
    const t = performance.now();
    try {
      return call(name, ...args);
    } finally {
      depth--;
      const id = name === "proxy_on_http_call_response" ? -1 : args[0];
      spent.set(id, (spent.get(id) ?? 0) + performance.now() - t);
    }
  };
  return spent;
}

try {
  const budgeted = await stack.plugin(RELEASE_WASM, { keys: ["{header:x-team}"] });
  const plain = await ProxyWasmHost.load(RELEASE_WASM, { nodeMetadata: NODE_METADATA });
  const checks: number[] = [];
  const withBudget: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < N + 50; i++) {
    // A key per call, each a fresh bucket of the 100,000-token rule: every check is allowed.
    let t = performance.now();
    await stack.call(budgeted, { "x-team": `tier-${i}` });
    const a = performance.now() - t;
    t = performance.now();
    await stack.call(plain);
    const b = performance.now() - t;
    if (i < 50) continue; // warm-up
    withBudget.push(a);
    without.push(b);
    const check = budgeted.httpCalls.filter((c) =>
      c.headers.some(([k, v]) => k === ":method" && v === "GET"),
    );
    checks.push(check[check.length - 1].ms!);
  }
  console.log(`checked calls: ${N} (after 50 warm-up), loopback, one service, one Redis`);
  console.log(
    `check (proxy_http_call to on_http_call_response): median ${ms(percentile(checks, 50))}, p99 ${ms(percentile(checks, 99))}`,
  );
  console.log(
    `whole call with the budget: median ${ms(percentile(withBudget, 50))}, p99 ${ms(percentile(withBudget, 99))}`,
  );
  console.log(
    `whole call without: median ${ms(percentile(without, 50))}, p99 ${ms(percentile(without, 99))}`,
  );

  // A denied call: the 40-token key spent by two calls, then denials.
  const spent = timed(budgeted);
  await stack.call(budgeted, { "x-team": "spent-bench" });
  await stack.call(budgeted, { "x-team": "spent-bench" });
  const hostCalls: number[] = [];
  const guest: number[] = [];
  for (let i = 0; i < 200; i++) {
    spent.clear();
    const r = await stack.call(budgeted, { "x-team": "spent-bench" });
    if (r.status !== 429) throw new Error(`not denied: ${r.status}`);
    hostCalls.push(r.stream.hostCalls);
    guest.push((spent.get(r.stream.id) ?? 0) + (spent.get(-1) ?? 0));
  }
  console.log(
    `denied call: ${percentile(hostCalls, 50)} host calls on the stream (the check's answer included), ` +
      `module time median ${(percentile(guest, 50) * 1000).toFixed(1)} µs, p99 ${(percentile(guest, 99) * 1000).toFixed(1)} µs ` +
      `(Node's V8 with the test host's own JavaScript host functions inside that time: an upper bound)`,
  );
  budgeted.close();
  plain.close();
} finally {
  await stack.stop();
}

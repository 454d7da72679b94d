// SPDX-License-Identifier: Apache-2.0
// The parts a token budget meets on loopback, for the tests that drive the plugin's
// `rate_limit`: a real redis-server, the rate-limit service of ratelimit/ on it (in-process, as
// its tests run it), an OpenAI-compatible upstream that answers every chat completion with 20
// tokens of usage, and the test host wired to them (the service's Envoy cluster mapped to its
// port). REDIS_SKIP says why a test that needs them skips.

import { createServer, type Server } from "node:http";
import { Redis } from "ioredis";
import { ProxyWasmHost, type HostOptions } from "./host/host.ts";
import { exchange, type ExchangeResult } from "./host/exchange.ts";
import { completionBody } from "./mock-upstream.ts";
import { NODE_METADATA } from "./seed.ts";
import { start, type Running } from "../ratelimit/src/main.ts";
import { createLogger } from "../ratelimit/src/log.ts";
import { RedisServer } from "../ratelimit/tests/redis.ts";

export { REDIS_SKIP } from "../ratelimit/tests/redis.ts";

export const SERVICE = "outbound|80||asm-llm-token-ratelimit-service.default.svc.cluster.local";
/** Every call the upstream answers costs 7 + 13 = 20 tokens (completionBody's usage). */
export const PER_CALL = 20;
export const RULES = [
  // 100 tokens, refilled whole every 1.5 s.
  {
    rate_limit_key_regex: "^team-",
    redis_expired_seconds: 60,
    fill_interval_second: 1.5,
    tokens_per_fill: 100,
    max_tokens: 100,
  },
  // 40 tokens, never refilled during a test: two calls, then denials.
  {
    rate_limit_key_regex: "^spent-",
    redis_expired_seconds: 600,
    fill_interval_second: 3600,
    tokens_per_fill: 40,
    max_tokens: 40,
  },
  // 1,000 tokens, not refilled during a test.
  {
    rate_limit_key_regex: "^crowd$",
    redis_expired_seconds: 60,
    fill_interval_second: 3600,
    tokens_per_fill: 1000,
    max_tokens: 1000,
  },
  {
    rate_limit_key_regex: "^(sleep\\.default|tier-.*)$",
    redis_expired_seconds: 60,
    fill_interval_second: 3600,
    tokens_per_fill: 1000,
    max_tokens: 100000,
  },
];

export class BudgetStack {
  service!: Running;
  readonly client: Redis;
  upstreamCalls = 0;
  private upstream!: Server;
  upstreamPort = 0;

  private constructor(readonly redis: RedisServer) {
    this.client = new Redis({ host: "127.0.0.1", port: redis.port });
    this.client.on("error", () => {}); // while a test stops Redis
  }

  static async start(): Promise<BudgetStack> {
    const stack = new BudgetStack(await RedisServer.start());
    stack.service = await stack.startService();
    stack.upstream = createServer((req, res) => {
      stack.upstreamCalls++;
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => {
        const model = JSON.parse(Buffer.concat(parts).toString()).model ?? "m";
        res.writeHead(200, { "content-type": "application/json" });
        res.end(completionBody(model));
      });
    });
    await new Promise<void>((r) => stack.upstream.listen(0, "127.0.0.1", r));
    stack.upstreamPort = (stack.upstream.address() as { port: number }).port;
    return stack;
  }

  /** Another instance of the service on this Redis (the port "0": a free one). */
  startService(port = "0", redisTimeoutMs = "1000"): Promise<Running> {
    return start(
      {
        PORT: port,
        REDIS_ADDRESS: this.redis.address,
        RATE_LIMIT_CONFIG: JSON.stringify(RULES),
        REDIS_TIMEOUT_MS: redisTimeoutMs,
      },
      createLogger("error", () => {}),
    );
  }

  /** The plugin (`wasm`) with a budget on the service, keyed by x-team unless `budget` says. */
  plugin(wasm: string, budget: object = {}, options: HostOptions = {}): Promise<ProxyWasmHost> {
    return ProxyWasmHost.load(wasm, {
      nodeMetadata: NODE_METADATA,
      clusters: { [SERVICE]: this.service.port },
      pluginConfig: {
        rate_limit: { cluster: SERVICE, keys: ["{header:x-team}"], timeout_ms: 200, ...budget },
      },
      ...options,
    });
  }

  /** One chat completion through the plugin; its update (if any) has reached the service after. */
  async call(host: ProxyWasmHost, headers: Record<string, string> = {}): Promise<ExchangeResult> {
    const r = await exchange(
      host,
      {
        method: "POST",
        path: "/v1/chat/completions",
        authority: "api.openai.com",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      },
      this.upstreamPort,
      "outbound|443||api.openai.com",
    );
    await host.idle();
    return r;
  }

  /** The tokens left in a key's bucket. */
  async tokens(key: string): Promise<number> {
    return Number(await this.client.hget("asm-llm-ratelimit:" + key, "tokens"));
  }

  async stop(): Promise<void> {
    this.client.disconnect();
    await this.service.stop();
    await this.redis.stop();
    this.upstream.close();
  }
}

// SPDX-License-Identifier: Apache-2.0
// The rate-limit service's process: configuration from the environment, one Redis client, the
// HTTP server, and a graceful shutdown on SIGTERM/SIGINT (stop accepting, finish the requests in
// flight, close Redis, exit; forced after SHUTDOWN_TIMEOUT_MS).
//
//   PORT                 HTTP port (8080)
//   REDIS_ADDRESS        host:port of Redis (127.0.0.1:6379)
//   REDIS_PASSWORD       Redis password (none)
//   REDIS_KEY_PREFIX     prefix of the bucket keys (asm-llm-ratelimit:)
//   REDIS_TIMEOUT_MS     longest wait for one Redis command (100)
//   RATE_LIMIT_CONFIG    the rules, a JSON list (rules.ts)
//   LOG_LEVEL            debug, info, warn, error (info)

import { Redis } from "ioredis";
import type { AddressInfo } from "node:net";
import { pathToFileURL } from "node:url";
import { defineBucket } from "./bucket.ts";
import { createLogger, type Logger } from "./log.ts";
import { parseRules } from "./rules.ts";
import { createService } from "./service.ts";

export interface Running {
  port: number;
  redis: Redis;
  /** Stops as on SIGTERM; resolves when everything is closed. */
  stop(): Promise<void>;
}

export async function start(
  env: NodeJS.ProcessEnv,
  log: Logger = createLogger(env.LOG_LEVEL),
): Promise<Running> {
  const rules = parseRules(env.RATE_LIMIT_CONFIG);
  const [host, port] = (env.REDIS_ADDRESS ?? "127.0.0.1:6379").split(/:(?=\d+$)/);
  const timeout = Number(env.REDIS_TIMEOUT_MS ?? 100);
  const redis = new Redis({
    host,
    port: Number(port ?? 6379),
    password: env.REDIS_PASSWORD || undefined,
    // Fail a command at once while Redis is away (the caller's fail-open setting decides),
    // never queue it behind a reconnect; reconnect in the background, at most every 2 s.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeout,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    lazyConnect: true,
  });
  let up: boolean | null = null;
  redis.on("ready", () => {
    if (up !== true) log.info("redis ready", { address: `${host}:${port}` });
    up = true;
  });
  const down = (error: string) => {
    if (up !== false) log.error("redis unreachable", { address: `${host}:${port}`, error });
    up = false;
  };
  redis.on("error", (e: Error) => down(e.message));
  redis.on("close", () => down("connection closed"));
  defineBucket(redis);
  // Start even when Redis is down (answering 503 until it is back), as a pod must to be probed.
  await redis.connect().catch(() => {});

  const server = createService({ redis, rules, log, keyPrefix: env.REDIS_KEY_PREFIX });
  await new Promise<void>((resolve) => server.listen(Number(env.PORT ?? 8080), resolve));
  const listening = (server.address() as AddressInfo).port;
  log.info("listening", { port: listening, rules: rules.map((r) => r.pattern) });

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info("shutting down");
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await redis.quit().catch(() => redis.disconnect());
      log.info("stopped");
    })());
  return { port: listening, redis, stop };
}

async function main(): Promise<void> {
  const log = createLogger(process.env.LOG_LEVEL);
  let running: Running;
  try {
    running = await start(process.env, log);
  } catch (e) {
    log.error("cannot start", { error: (e as Error).message });
    process.exit(1);
  }
  const deadline = Number(process.env.SHUTDOWN_TIMEOUT_MS ?? 10000);
  for (const signal of ["SIGTERM", "SIGINT"] as const)
    process.once(signal, () => {
      setTimeout(() => {
        log.error("shutdown timed out", { after_ms: deadline });
        process.exit(1);
      }, deadline).unref();
      running.stop().then(() => process.exit(0));
    });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();

// SPDX-License-Identifier: Apache-2.0
// End to end against a real Envoy: builds Dockerfile.envoy, starts it with testcontainers in
// front of the strict mock upstream (on this host), sends the seed's two curl calls as written
// (POST /, no model, no key: the plugin's provider routing completes them, or the mock answers
// 401 or 404) and a streamed one through port 10000, and checks the access-log lines on Envoy's
// stdout and the /stats/prometheus lines of its admin port with the same expectations as the
// host-based tests (tests/seed.ts).
// Needs a Docker engine; where none answers, the test is reported as skipped with the reason and
// costs nothing. `npm run test:e2e` runs it alone; E2E_KEEP=1 leaves the container running.

import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import {
  GenericContainer,
  TestContainers,
  Wait,
  getContainerRuntimeClient,
  type StartedTestContainer,
} from "testcontainers";
import { startMockUpstream } from "./mock-upstream.ts";
import {
  CALLS,
  CLUSTER,
  LOG_FIELDS,
  PATH,
  PROMETHEUS_LINES,
  REQUEST_BODY,
  ROOT,
  grepLlmproxy,
} from "./seed.ts";

const IMAGE = "asm-llm-proxy-envoy:e2e";
/** The Envoy arguments of Dockerfile.envoy, spelt out: one worker, and access logs flushed
 * every second (Istio's setting; Envoy's default is ten). */
const ENVOY_ARGS = [
  "--concurrency",
  "1",
  "--file-flush-interval-msec",
  "1000",
  "--component-log-level",
  "wasm:info",
];
/** The streamed call: a model the mock does not know answers with 7 prompt and 13 completion tokens. */
const STREAMED = { model: "qwen-plus", prompt: 7, completion: 13 };

async function dockerProblem(): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer within 10 s")), 10_000);
      }),
    ]);
    return null;
  } catch (e) {
    return String((e as Error).message).split("\n")[0];
  } finally {
    // A pending timer would keep this file's process, and so `npm test`, alive for its duration.
    clearTimeout(timer);
  }
}

/**
 * A build context with only the files the Dockerfile copies: the repository holds node_modules,
 * hundreds of megabytes that testcontainers would otherwise send to the engine on every run.
 */
function buildContext(): string {
  const dir = mkdtempSync(join(tmpdir(), "asm-llm-proxy-e2e-"));
  const dockerfile = readFileSync(ROOT + "Dockerfile.envoy", "utf8");
  const sources = [...dockerfile.matchAll(/^COPY\s+(\S+)\s/gm)].map((m) => m[1]);
  for (const f of ["Dockerfile.envoy", ...sources]) {
    if (!existsSync(ROOT + f)) throw new Error(`${f} is missing (npm run build:release builds the plugin)`);
    mkdirSync(join(dir, dirname(f)), { recursive: true });
    copyFileSync(ROOT + f, join(dir, f));
  }
  return dir;
}

function send(
  host: string,
  port: number,
  headers: Record<string, string>,
  body: string,
  path = PATH,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method: "POST",
        path,
        headers: { ...headers, "content-length": Buffer.byteLength(body) },
        timeout: 30_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (p: Buffer) => parts.push(p));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("request timed out after 30 s")));
    req.end(body);
  });
}

/** A Prometheus sample line with its labels sorted: Envoy need not order them as the seed does. */
function normalise(line: string): string {
  const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
  if (!m) return line;
  const labels = m[2].match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
  return `${m[1]}{${labels.sort().join(",")}} ${m[3]}`;
}

/** Container output, split into whole lines whatever the chunking of the log stream. */
class Lines {
  readonly all: string[] = [];
  private partial = "";
  consume = (stream: Readable): void => {
    stream.on("data", (chunk: Buffer | string) => {
      const parts = (this.partial + String(chunk)).split("\n");
      this.partial = parts.pop() ?? "";
      this.all.push(...parts);
    });
  };
  tail(n: number): string {
    return [...this.all, this.partial].slice(-n).join("\n");
  }
}

async function waitFor<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * The seed's two calls and a streamed one through the proxy at host:port, then the checks of its
 * access-log lines (as they appear in `logLines()`) and of /stats/prometheus on its admin port.
 */
export async function scenario(
  host: string,
  port: number,
  admin: number,
  logLines: () => string[],
): Promise<void> {
  // The seed's two curl calls as written (POST /, no model, no key), with the Host header.
  for (const call of CALLS) {
    const headers = Object.fromEntries(Object.entries(call.headers).filter(([k]) => !k.startsWith(":")));
    const r = await send(
      host,
      port,
      { ...headers, host: call.headers[":authority"] },
      REQUEST_BODY,
      call.headers[":path"],
    );
    assert.equal(r.status, 200, r.body);
  }
  const s = await send(
    host,
    port,
    { host: "dashscope.aliyuncs.com", "content-type": "application/json" },
    JSON.stringify({
      model: STREAMED.model,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Please introduce yourself." }],
    }),
  );
  assert.equal(s.status, 200);
  assert.ok(s.body.trimEnd().endsWith("data: [DONE]"), "the stream reached the client whole");

  const entries = await waitFor("three access-log lines", 30_000, () => {
    const found = logLines()
      .filter((l) => l.startsWith("{") && l.includes('"request_model"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    return found.length >= 3 ? found : undefined;
  });
  assert.equal(entries.length, 3, "one access-log line per call");
  for (const e of entries) {
    for (const field of Object.keys(LOG_FIELDS)) assert.ok(field in e, `access log has ${field}`);
    assert.equal(e.authority_for, "dashscope.aliyuncs.com");
    assert.equal(e.path, PATH);
    assert.equal(String(e.response_code), "200");
    assert.equal(e.upstream_cluster, CLUSTER);
  }
  const expected = [
    ...CALLS.map((c) => [c.model, String(c.prompt), String(c.completion), "false"]),
    [STREAMED.model, String(STREAMED.prompt), String(STREAMED.completion), "true"],
  ];
  assert.deepEqual(
    // String(): Envoy's JSON formatter may type a value that looks like a number.
    entries.map((e) =>
      [e.request_model, e.request_prompt_tokens, e.request_completion_tokens, e.request_stream].map(String),
    ),
    expected,
  );

  const res = await fetch(`http://${host}:${admin}/stats/prometheus`, {
    signal: AbortSignal.timeout(10_000),
  });
  // The seed's four lines, and the streamed call's two with the same labels.
  const series = (metric: string, value: number) =>
    `${metric}{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",` +
    `llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="${STREAMED.model}"} ${value}`;
  const expectedLines = [
    ...PROMETHEUS_LINES,
    series("asm_llm_proxy_completion_tokens", STREAMED.completion),
    series("asm_llm_proxy_prompt_tokens", STREAMED.prompt),
  ];
  assert.deepEqual(
    grepLlmproxy(await res.text())
      .map(normalise)
      .sort(),
    expectedLines.map(normalise).sort(),
  );
}

const problem = await dockerProblem();
const skip =
  problem === null ? false : `no Docker engine answers here (${problem}); where one runs: npm run test:e2e`;

test(
  "e2e: the seed's access-log lines and Prometheus lines from a real Envoy",
  { skip, timeout: 600_000 },
  async () => {
    const upstream = await startMockUpstream();
    const output = new Lines();
    let envoy: StartedTestContainer | undefined;
    let context: string | undefined;
    try {
      // The port forwarder reaches the mock through this process, so loopback is enough.
      await TestContainers.exposeHostPorts(upstream.port);
      context = buildContext();
      const image = await GenericContainer.fromDockerfile(context, "Dockerfile.envoy").build(IMAGE, {
        deleteOnExit: false,
      });
      envoy = await image
        .withEnvironment({
          UPSTREAM_HOST: "host.testcontainers.internal",
          UPSTREAM_PORT: String(upstream.port),
        })
        .withCommand(ENVOY_ARGS)
        .withExposedPorts(10000, 9901)
        .withLogConsumer(output.consume)
        .withWaitStrategy(Wait.forHttp("/ready", 9901).forStatusCode(200))
        .withStartupTimeout(120_000)
        .start();
      await scenario(
        envoy.getHost(),
        envoy.getMappedPort(10000),
        envoy.getMappedPort(9901),
        () => output.all,
      );
    } catch (e) {
      // What Envoy said is what explains a failure here (a module that did not load, a refused
      // configuration, an upstream it could not reach).
      if (output.all.length > 0) console.error(`Envoy's last output:\n${output.tail(60)}`);
      throw e;
    } finally {
      if (envoy && process.env.E2E_KEEP === undefined) await envoy.stop();
      await upstream.close();
      if (context) rmSync(context, { recursive: true, force: true });
    }
  },
);

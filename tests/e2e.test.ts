// SPDX-License-Identifier: Apache-2.0
// End to end against a real Envoy: builds Dockerfile.envoy, starts it with testcontainers in
// front of the mock upstream (on this host), sends the seed's requests and a streamed one, and
// checks the access-log lines on Envoy's stdout and the /stats/prometheus lines of its admin port
// with the same expectations as the host-based tests. Needs a Docker engine; where none answers,
// the test is reported as skipped with the reason. `npm run test:e2e` runs it alone.

import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import {
  GenericContainer,
  TestContainers,
  Wait,
  getContainerRuntimeClient,
  type StartedTestContainer,
} from "testcontainers";
import { startMockUpstream } from "./mock-upstream.ts";
import { ROOT, CALLS, REQUEST_BODY, PROMETHEUS_LINES, grepLlmproxy } from "./seed.ts";

async function dockerProblem(): Promise<string | null> {
  try {
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no answer within 20 s")), 20_000)),
    ]);
    return null;
  } catch (e) {
    return String((e as Error).message).split("\n")[0];
  }
}

function send(
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  body: string,
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
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.end(body);
  });
}

/** A Prometheus sample line with its labels sorted. */
function normalise(line: string): string {
  const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
  if (!m) return line;
  const labels = m[2].match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
  return `${m[1]}{${labels.sort().join(",")}} ${m[3]}`;
}

async function get(host: string, port: number, path: string): Promise<string> {
  const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}

const problem = await dockerProblem();
const skip =
  problem === null
    ? false
    : `no Docker engine answers here (${problem}); run it where Docker runs: npm run test:e2e`;

test(
  "e2e: the seed's access-log lines and Prometheus lines from a real Envoy",
  { skip, timeout: 600_000 },
  async () => {
    const upstream = await startMockUpstream("0.0.0.0", 0);
    let envoy: StartedTestContainer | undefined;
    const logLines: string[] = [];
    try {
      await TestContainers.exposeHostPorts(upstream.port);
      const image = await GenericContainer.fromDockerfile(ROOT, "Dockerfile.envoy").build(
        "asm-llm-proxy-envoy:e2e",
        { deleteOnExit: false },
      );
      envoy = await image
        .withEnvironment({
          UPSTREAM_HOST: "host.testcontainers.internal",
          UPSTREAM_PORT: String(upstream.port),
        })
        .withExposedPorts(10000, 9901)
        .withWaitStrategy(Wait.forHttp("/ready", 9901))
        .withStartupTimeout(120_000)
        .start();
      (await envoy.logs()).on("data", (line: Buffer | string) => logLines.push(...String(line).split("\n")));
      const host = envoy.getHost();
      const port = envoy.getMappedPort(10000);
      const admin = envoy.getMappedPort(9901);

      for (const call of CALLS) {
        const { [":path"]: path, [":authority"]: authority, ":method": _method, ...headers } = call.headers;
        void _method;
        const r = await send(host, port, path, { ...headers, host: authority }, REQUEST_BODY);
        assert.equal(r.status, 200, r.body);
      }
      const streamed = JSON.stringify({
        model: "qwen-plus",
        stream: true,
        stream_options: { include_usage: true },
        messages: [],
      });
      const s = await send(
        host,
        port,
        CALLS[0].headers[":path"],
        { host: "dashscope.aliyuncs.com", "content-type": "application/json" },
        streamed,
      );
      assert.equal(s.status, 200);
      assert.ok(s.body.includes("data: [DONE]"), "the stream reached the client whole");

      // Envoy flushes access logs on a timer: wait for the three lines, bounded.
      const deadline = Date.now() + 20_000;
      let entries: Array<Record<string, string>> = [];
      while (Date.now() < deadline) {
        entries = logLines
          .filter((l) => l.startsWith("{") && l.includes("request_model"))
          .map((l) => JSON.parse(l));
        if (entries.length >= 3) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(
        entries.map((e) => [e.request_model, e.request_prompt_tokens, e.request_completion_tokens]),
        [
          ["qwen1.5-72b-chat", "3", "55"],
          ["qwen-turbo", "11", "90"],
          ["qwen-plus", "7", "13"],
        ],
      );
      assert.equal(entries[2].request_stream, "true");

      const prometheus = await get(host, admin, "/stats/prometheus");
      const seedModels = grepLlmproxy(prometheus).filter((l) => !l.includes('"qwen-plus"'));
      // Envoy may order the series of a family, and the labels of a series, differently from
      // the seed's sample: compare name, label set and value.
      assert.deepEqual(seedModels.map(normalise).sort(), PROMETHEUS_LINES.map(normalise).sort());
    } finally {
      if (envoy && process.env.E2E_KEEP === undefined) await envoy.stop();
      await upstream.close();
    }
  },
);

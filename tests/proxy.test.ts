// SPDX-License-Identifier: Apache-2.0
// `npm run proxy`, the local sidecar, as a user runs it: a child process on loopback, real
// clients (Debian's curl, the `openai` npm client, Node's http), real upstream servers on
// 127.0.0.1. Every check is on what was received or in which order, never on how fast.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  createServer,
  request,
  Agent,
  type IncomingMessage,
  type ServerResponse,
  type Server,
} from "node:http";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect, type AddressInfo } from "node:net";
import OpenAI from "openai";
import {
  startMockUpstream,
  completionEvents,
  respond,
  MOCK_API_KEY,
  USAGE,
  type MockUpstream,
} from "./mock-upstream.ts";
import { ROOT, PATH, CLUSTER, REQUEST_BODY, PROMETHEUS_LINES, grepLlmproxy } from "./seed.ts";
import { startProxy, runProxy, until, admin, type RunningProxy } from "./proxy-harness.ts";

const WASMPLUGIN = ROOT + "deploy/istio/wasmplugin.yaml";
const VIRTUALSERVICE = ROOT + "deploy/istio/dashscope-routing.yaml";
const SEED = ["--node-metadata", "WORKLOAD_NAME=sleep,NAMESPACE=default"];
const KEY_ENV = { DASHSCOPE_API_KEY: MOCK_API_KEY };

/** Debian's curl, which .ci/run installs; without it the curl checks skip, saying so. */
const NO_CURL =
  spawnSync("curl", ["--version"]).status === 0 ? false : "curl is not installed (apt-get install curl)";

let mock: MockUpstream;
let seedProxy: RunningProxy;
let tmp: string;

before(async () => {
  mock = await startMockUpstream();
  tmp = mkdtempSync(tmpdir() + "/asm-llm-proxy-test-");
  seedProxy = await startProxy(
    [
      "--config",
      WASMPLUGIN,
      "--routes",
      VIRTUALSERVICE,
      "--upstream",
      `dashscope.aliyuncs.com=http://127.0.0.1:${mock.port}`,
      ...SEED,
    ],
    KEY_ENV,
  );
});

after(async () => {
  await seedProxy?.stop();
  await mock?.close();
  rmSync(tmp, { recursive: true, force: true });
});

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("curl", ["-sS", ...args], (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as any).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const seedCurl = (port: number, extra: string[] = []) =>
  curl([
    "-x",
    `http://127.0.0.1:${port}`,
    "--location",
    "http://dashscope.aliyuncs.com",
    "--header",
    "Content-Type: application/json",
    ...extra,
    "--data",
    REQUEST_BODY,
  ]);

const SEED_LINE_FIELDS = [
  "authority_for",
  "path",
  "route_name",
  "response_code",
  "upstream_cluster",
  "request_model",
  "request_prompt_tokens",
  "request_completion_tokens",
];
const pick = (line: Record<string, string>, keys: string[]) =>
  Object.fromEntries(keys.map((k) => [k, line[k]]));

test(
  "proxy: the seed's two curl calls through deploy/'s WasmPlugin and VirtualService",
  { skip: NO_CURL },
  async () => {
    const p = seedProxy;
    const first = await seedCurl(p.port);
    const second = await seedCurl(p.port, ["--header", "user-type: subscriber"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(JSON.parse(first.stdout).model, "qwen1.5-72b-chat");
    assert.equal(JSON.parse(second.stdout).model, "qwen-turbo");
    // What the strict mock received: the provider's path, the key from the environment, the model.
    const got = mock.requests.slice(-2);
    for (const [i, model] of ["qwen1.5-72b-chat", "qwen-turbo"].entries()) {
      assert.equal(got[i].path, PATH);
      assert.equal(got[i].headers.authorization, `Bearer ${MOCK_API_KEY}`);
      assert.equal(got[i].headers.host, "dashscope.aliyuncs.com");
      assert.equal(JSON.parse(got[i].body).model, model);
    }
    await until(() => p.logs.length >= 2, "two access-log lines");
    const [a, b] = p.logs;
    const seedLine = (route: string, model: string, prompt: string, completion: string) => ({
      authority_for: "dashscope.aliyuncs.com",
      path: PATH,
      route_name: route,
      response_code: "200",
      upstream_cluster: CLUSTER,
      request_model: model,
      request_prompt_tokens: prompt,
      request_completion_tokens: completion,
    });
    assert.deepEqual(pick(a, SEED_LINE_FIELDS), seedLine("-", "qwen1.5-72b-chat", "3", "55"));
    assert.deepEqual(pick(b, SEED_LINE_FIELDS), seedLine("vip-route", "qwen-turbo", "11", "90"));
    // The rest of the mesh's access-log fields, as Envoy fills them for this call.
    assert.equal(a.bytes_received, "85"); // the seed's bytes_received
    assert.equal(a.method, "POST");
    assert.equal(a.protocol, "HTTP/1.1");
    assert.equal(a.response_flags, "-");
    assert.match(a.user_agent, /^curl\//);
    assert.equal(a.upstream_host, `127.0.0.1:${mock.port}`);
    assert.equal(Number(a.bytes_sent), Buffer.byteLength(first.stdout));
    assert.match(a.duration, /^\d+$/);
    assert.equal(a.usage, "present");
    assert.equal(a.request_stream, "false");
    assert.notEqual(a.request_id, b.request_id);
    // The key is in no log line.
    assert.ok(!JSON.stringify(p.logs).includes(MOCK_API_KEY) && !p.stderr().includes(MOCK_API_KEY));
    const prometheus = await admin(p, "/stats/prometheus");
    assert.deepEqual(grepLlmproxy(prometheus), PROMETHEUS_LINES);
    const dump = JSON.parse(await admin(p, "/config_dump"));
    assert.deepEqual(dump.problems, []);
    assert.equal(dump.plugin_config.value.providers[0].host, "dashscope.aliyuncs.com");
  },
);

test("proxy: 200 concurrent streams, every access-log line present and the counters their sum", async () => {
  const p = seedProxy;
  const seen = p.logs.length;
  const agent = new Agent({ keepAlive: true, maxSockets: 200 });
  const body = JSON.stringify({
    model: "qwen-plus",
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "Please introduce yourself." }],
  });
  const one = () =>
    new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: p.port,
          method: "POST",
          path: "/compatible-mode/v1/chat/completions",
          agent,
          headers: { host: "dashscope.aliyuncs.com", "content-type": "application/json" },
        },
        (res) => {
          let text = "";
          res.on("data", (d) => (text += d));
          res.on("end", () => resolve(text));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const bodies = await Promise.all(Array.from({ length: 200 }, one));
  agent.destroy();
  const expected = completionEvents("qwen-plus", true).join("");
  assert.equal(bodies.filter((b) => b === expected).length, 200, "every stream arrived whole");
  await until(() => p.logs.length >= seen + 200, "200 access-log lines");
  const lines = p.logs.slice(seen);
  assert.equal(lines.length, 200);
  assert.equal(new Set(lines.map((l) => l.request_id)).size, 200);
  assert.ok(
    lines.every(
      (l) => l.request_model === "qwen-plus" && l.request_stream === "true" && l.response_code === "200",
    ),
  );
  const u = USAGE["qwen-plus"] ?? { prompt: 7, completion: 13 };
  const sum = (k: string) => lines.reduce((n, l) => n + Number(l[k]), 0);
  assert.equal(sum("request_prompt_tokens"), 200 * u.prompt);
  const prometheus = await admin(p, "/stats/prometheus");
  const value = (metric: string) =>
    Number(
      prometheus
        .split("\n")
        .find((l) => l.startsWith(metric + "{") && l.includes('llmproxy_model="qwen-plus"'))
        ?.split(" ")
        .pop(),
    );
  assert.equal(value("asm_llm_proxy_prompt_tokens"), sum("request_prompt_tokens"));
  assert.equal(value("asm_llm_proxy_completion_tokens"), sum("request_completion_tokens"));
  assert.equal(value("asm_llm_proxy_requests"), 200);
});

// ---- an upstream of the test's own, for streams it controls ----------------------------------

interface Controlled {
  server: Server;
  port: number;
  /** Events in order: what the upstream did and what the clients saw. */
  order: string[];
  release: () => void;
  hangClosed: Promise<void>;
  bigRequestHash?: string;
  bigResponseHash?: string;
  /** Bytes slow.test has handed to its socket so far. */
  slowWritten: number;
}

const BIG = 5 * 1024 * 1024;
const SLOW = 64 * 1024 * 1024;

async function startControlled(): Promise<Controlled> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let hangClosed!: () => void;
  const c: Controlled = {
    order: [],
    release,
    hangClosed: new Promise<void>((r) => (hangClosed = r)),
    slowWritten: 0,
  } as any;
  const sse = (res: ServerResponse) =>
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const host = req.headers.host;
    const hash = createHash("sha256");
    let text = "";
    for await (const part of req) {
      hash.update(part as Buffer);
      if (host !== "big.test") text += part;
    }
    if (host === "dashscope.aliyuncs.com") {
      // The strict mock's rules, then a stream whose last event waits for the client's first chunk.
      const answer = respond(req.method ?? "", req.url ?? "", req.headers.authorization, text);
      if (answer.status !== 200) return void res.writeHead(answer.status).end(answer.body);
      const events = completionEvents(JSON.parse(text).model, true);
      sse(res);
      for (const e of events.slice(0, 2)) res.write(e);
      await Promise.race([released, new Promise((r) => setTimeout(r, 20_000))]);
      for (const e of events.slice(2, -1)) res.write(e);
      c.order.push("upstream sends its last event");
      res.end(events[events.length - 1]);
    } else if (host === "big.test") {
      c.bigRequestHash = hash.digest("hex");
      const out = createHash("sha256");
      const head =
        '{"id":"big-1","object":"chat.completion","model":"big-model","choices":[{"index":0,"message":{"role":"assistant","content":"';
      const tail =
        '"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":2000,"total_tokens":3000}}';
      res.writeHead(200, { "content-type": "application/json" });
      const piece = Buffer.alloc(64 * 1024, "a");
      const write = (b: Buffer) => {
        out.update(b);
        return res.write(b);
      };
      write(Buffer.from(head));
      for (let sent = 0; sent < BIG; sent += piece.length) {
        if (!write(piece)) await new Promise((r) => res.once("drain", r));
      }
      write(Buffer.from(tail));
      c.bigResponseHash = out.digest("hex");
      res.end();
    } else if (host === "reset.test") {
      sse(res);
      res.write(completionEvents("reset-model", true)[0]);
      setTimeout(() => res.socket?.destroy(), 50);
    } else if (host === "slow.test") {
      // SLOW bytes, written only as fast as the socket takes them ('drain').
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const piece = Buffer.alloc(64 * 1024, "s");
      while (c.slowWritten < SLOW) {
        c.slowWritten += piece.length;
        if (!res.write(piece)) await new Promise((r) => res.once("drain", r));
      }
      res.end();
    } else if (host === "hang.test") {
      sse(res);
      res.write(completionEvents("hang-model", true)[0]);
      res.on("close", () => hangClosed());
    } else res.writeHead(404).end();
  };
  c.server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => c.server.listen(0, "127.0.0.1", r));
  c.port = (c.server.address() as AddressInfo).port;
  return c;
}

/** A POST through the proxy as forward proxy (absolute URL), whole response or the error. */
function post(
  p: RunningProxy,
  url: string,
  body: string | Buffer,
  onChunk?: (chunk: Buffer, req: ReturnType<typeof request>) => void,
): Promise<{ status: number; body: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: p.port,
        method: "POST",
        path: url,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => {
          parts.push(d);
          onChunk?.(d, req);
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on("error", (e) =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), error: e.message }),
        );
      },
    );
    req.on("error", (e) => resolve({ status: 0, body: Buffer.alloc(0), error: e.message }));
    req.end(body);
  });
}

test("proxy: streams, big bodies, resets, disconnects and unreachable upstreams", async (t) => {
  const up = await startControlled();
  const closed = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => closed.once("listening", r));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r)); // nothing listens there now
  const plain = `http://127.0.0.1:${up.port}`;
  const p = await startProxy(
    [
      "--config",
      WASMPLUGIN,
      "--routes",
      VIRTUALSERVICE,
      "--default-host",
      "dashscope.aliyuncs.com",
      ...["dashscope.aliyuncs.com", "big.test", "reset.test", "hang.test", "slow.test"].flatMap((h) => [
        "--upstream",
        `${h}=${plain}`,
      ]),
      "--upstream",
      `down.test=http://127.0.0.1:${closedPort}`,
      "--upstream",
      `tls.test=https://127.0.0.1:${up.port}`,
      ...SEED,
    ],
    KEY_ENV,
  );
  /** A streamed call to <name>.test for the model <name>-model. */
  const streamed = (name: string, onChunk?: Parameters<typeof post>[3]) =>
    post(
      p,
      `http://${name}.test/v1/chat/completions`,
      JSON.stringify({ model: `${name}-model`, stream: true, messages: [] }),
      onChunk,
    );
  const lineFor = async (authority: string) => {
    await until(
      () => p.logs.some((l) => l.authority_for === authority),
      `the access-log line of ${authority}`,
    );
    return p.logs.find((l) => l.authority_for === authority)!;
  };
  try {
    await t.test(
      "the openai client (baseURL = the proxy): the first chunk arrives before the last is sent",
      async () => {
        const client = new OpenAI({
          apiKey: "sk-placeholder-the-sidecar-sets-the-key",
          baseURL: `http://127.0.0.1:${p.port}/compatible-mode/v1`,
          maxRetries: 0,
        });
        const stream = await client.chat.completions.create({
          model: "qwen-plus",
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "Please introduce yourself." }],
        });
        let text = "";
        let usage;
        for await (const chunk of stream) {
          const content = chunk.choices[0]?.delta?.content ?? "";
          if (content !== "" && text === "") {
            up.order.push("client has its first content chunk");
            up.release();
          }
          text += content;
          if (chunk.usage) usage = chunk.usage;
        }
        assert.equal(text, "I am a large language model.");
        assert.deepEqual(up.order, ["client has its first content chunk", "upstream sends its last event"]);
        assert.equal(usage?.completion_tokens, 13);
        const line = await lineFor("dashscope.aliyuncs.com");
        assert.equal(line.request_model, "qwen-plus");
        assert.equal(line.request_stream, "true");
        assert.equal(line.request_completion_tokens, "13");
        assert.equal(line.upstream_cluster, CLUSTER);
      },
    );

    await t.test("a 5 MB request and a 5 MB response pass byte for byte, usage read at the end", async () => {
      const content = "b".repeat(BIG);
      const body = JSON.stringify({ model: "big-model", messages: [{ role: "user", content }] });
      const r = await post(p, "http://big.test/v1/chat/completions", body);
      assert.equal(r.status, 200);
      assert.equal(up.bigRequestHash, createHash("sha256").update(body).digest("hex"));
      assert.equal(createHash("sha256").update(r.body).digest("hex"), up.bigResponseHash);
      assert.ok(r.body.length > BIG);
      const line = await lineFor("big.test");
      assert.equal(line.bytes_received, String(Buffer.byteLength(body)));
      assert.equal(line.bytes_sent, String(r.body.length));
      assert.equal(line.request_prompt_tokens, "1000");
      assert.equal(line.request_completion_tokens, "2000");
    });

    await t.test("backpressure: a client that stops reading stops the upstream's writes", async () => {
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        request({ host: "127.0.0.1", port: p.port, path: "http://slow.test/files/blob" }, (res) => {
          res.once("data", () => res.pause());
          res.on("data", (d: Buffer) => (received += d.length));
          res.on("end", resolve);
          res.on("error", reject);
          // Paused after its first chunk: until the upstream has stopped making progress, it
          // must not have written it all (the proxy would then hold what the client did not take).
          void (async () => {
            let last = -1;
            let still = 0;
            while (still < 10) {
              await new Promise((r) => setTimeout(r, 50));
              assert.ok(up.slowWritten < SLOW, "the upstream wrote everything while the client read nothing");
              still = up.slowWritten === last ? still + 1 : 0;
              last = up.slowWritten;
            }
            res.resume();
          })().catch(reject);
        })
          .on("error", reject)
          .end();
      });
      await done;
      assert.equal(received, SLOW);
    });

    await t.test(
      "an upstream that resets mid-stream: the client's response is cut, the log says UC",
      async () => {
        const r = await streamed("reset");
        assert.equal(r.status, 200);
        assert.ok(r.error !== undefined, "the client sees the response end early");
        assert.ok(r.body.toString().startsWith("data: "), "what came before the reset was forwarded");
        const line = await lineFor("reset.test");
        assert.equal(line.response_flags, "UC");
        assert.equal(line.request_model, "reset-model");
      },
    );

    await t.test(
      "a client that disconnects mid-stream: the upstream request is closed, the log says DC",
      async () => {
        const r = await streamed("hang", (_c, req) => req.destroy());
        assert.ok(r.error !== undefined);
        await up.hangClosed;
        const line = await lineFor("hang.test");
        assert.equal(line.response_flags, "DC");
        assert.equal(line.response_code, "200");
      },
    );

    await t.test("an unreachable upstream: 502 naming it; a TLS failure: 502 naming it", async () => {
      const down = await post(p, "http://down.test/v1/chat/completions", "{}");
      assert.equal(down.status, 502);
      assert.match(
        down.body.toString(),
        new RegExp(
          `upstream connect error: down\\.test \\(http://127\\.0\\.0\\.1:${closedPort}\\): ECONNREFUSED`,
        ),
      );
      const line = await lineFor("down.test");
      assert.equal(line.response_flags, "UF");
      assert.equal(line.response_code, "502");
      const tls = await post(p, "http://tls.test/v1/chat/completions", "{}");
      assert.equal(tls.status, 502);
      assert.match(tls.body.toString(), /^upstream TLS failure: tls\.test \(https:\/\/127\.0\.0\.1:\d+\): /);
      assert.match((await lineFor("tls.test")).upstream_transport_failure_reason, /SSL|TLS/i);
    });

    await t.test("after all that the proxy still serves (curl, origin form)", { skip: NO_CURL }, async () => {
      // The seed's first curl, in origin form this time (Host names the provider): completed and streamed.
      const r = await curl([
        "-H",
        "Host: dashscope.aliyuncs.com",
        "-H",
        "Content-Type: application/json",
        "--data",
        REQUEST_BODY,
        `http://127.0.0.1:${p.port}/`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, completionEvents("qwen1.5-72b-chat", true).join(""));
    });
  } finally {
    const { code, stderr } = await p.stop();
    await new Promise((r) => up.server.close(r));
    up.server.closeAllConnections();
    assert.equal(code, 0, stderr);
    assert.match(stderr, /\n\d+ requests: \d+ 2xx/);
    assert.match(stderr, /\nasm_llm_proxy_prompt_tokens\{[^}]*llmproxy_model="big-model"\} 1000\n/);
  }
});

test("proxy --routes: header regex, uri prefix, match names, a weighted split (one side with its own host name) and the default route", async () => {
  const servers = await Promise.all(
    ["A", "B"].map(async (name) => {
      const server = createServer((req, res) =>
        res.end(JSON.stringify({ server: name, host: req.headers.host })),
      );
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
    }),
  );
  const vs = tmp + "/routes.yaml";
  writeFileSync(
    vs,
    [
      "apiVersion: networking.istio.io/v1",
      "kind: VirtualService",
      "metadata: {name: llm}",
      "spec:",
      "  hosts: [llm.test]",
      "  http:",
      "    - name: by-tier",
      "      match:",
      "        - name: gold",
      '          headers: {x-tier: {regex: "gold|platinum"}}',
      "      route: [{destination: {host: a.test}}]",
      "    - name: v2",
      "      match: [{uri: {prefix: /v2/}}]",
      "      route: [{destination: {host: b.test, port: {number: 8080}}}]",
      "    - name: split",
      "      retries: {attempts: 3}",
      "      route:",
      "        - {destination: {host: a.test}, weight: 50}",
      "        - {destination: {host: b.test}, weight: 50, headers: {request: {set: {host: b.test}}}}",
    ].join("\n"),
  );
  const p = await startProxy([
    "--routes",
    vs,
    "--upstream",
    `a.test=${servers[0].url}`,
    "--upstream",
    `b.test=${servers[1].url}`,
    "--upstream",
    `other.test=${servers[0].url}`,
  ]);
  const get = (url: string, headers: Record<string, string> = {}) =>
    new Promise<{ server: string; host: string }>((resolve, reject) => {
      request({ host: "127.0.0.1", port: p.port, path: url, headers }, (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve(JSON.parse(text)));
      })
        .on("error", reject)
        .end();
    });
  try {
    assert.deepEqual(await get("http://llm.test/v1/x", { "x-tier": "platinum" }), {
      server: "A",
      host: "llm.test",
    });
    assert.deepEqual(await get("http://llm.test/v2/models"), { server: "B", host: "llm.test" });
    assert.equal((await get("http://other.test/")).server, "A");
    const split = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const answer = await get("http://llm.test/v1/x", { "x-tier": "silver" });
      split.add(answer.server);
      // The destination's host name is set after routing (Envoy's host_rewrite_literal).
      assert.equal(answer.host, answer.server === "B" ? "b.test" : "llm.test");
    }
    assert.deepEqual([...split].sort(), ["A", "B"], "both sides of the 50/50 split are used");
    await until(() => p.logs.length >= 43, "43 access-log lines");
    const routes = p.logs.map((l) => `${l.route_name} ${l.upstream_cluster}`);
    assert.equal(routes[0], "by-tier.gold outbound|80||a.test");
    assert.equal(routes[1], "v2 outbound|8080||b.test");
    assert.equal(routes[2], "default outbound|80||other.test");
    assert.deepEqual([...new Set(routes.slice(3))].sort(), [
      "split outbound|80||a.test",
      "split outbound|80||b.test",
    ]);
    assert.match(p.stderr(), /spec\.http\[2\]\.retries is not emulated \(ignored\)/);
  } finally {
    await p.stop();
    for (const s of servers) s.server.close();
  }
});

// ---- bad input --------------------------------------------------------------------------------

test("proxy: CONNECT (https:// through the proxy) is refused with a 405 that says why, and the proxy serves on", async () => {
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(seedProxy.port, "127.0.0.1", () =>
      socket.write("CONNECT dashscope.aliyuncs.com:443 HTTP/1.1\r\nHost: dashscope.aliyuncs.com:443\r\n\r\n"),
    );
    let text = "";
    socket.on("data", (d) => (text += d));
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });
  assert.match(answer, /^HTTP\/1\.1 405 /);
  assert.match(answer, /the plugin reads plain HTTP/);
  if (!NO_CURL) {
    // curl resets the connection when its tunnel is refused: the proxy must take that.
    const r = await curl([
      "-v",
      "-x",
      `http://127.0.0.1:${seedProxy.port}`,
      "https://dashscope.aliyuncs.com/",
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /< HTTP\/1\.1 405 /);
  }
  assert.equal(await admin(seedProxy, "/ready"), "LIVE\n");
});

test("proxy --check: deploy/'s WasmPlugin passes; a bad configuration prints every problem and exits 1", async () => {
  const good = await runProxy(["--check", "--config", WASMPLUGIN], KEY_ENV);
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.match(good.stdout, /no problems/);
  const bad = tmp + "/bad.json";
  writeFileSync(bad, JSON.stringify({ max_series: "many", stream_usage: true }));
  const r = await runProxy(["--check", "--config", bad]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^plugin: asm-llm-proxy: .*max_series/m, "the plugin's own warning");
  assert.match(r.stdout, /^schema: \/max_series must be integer/m);
  assert.match(r.stdout, /^schema: \(top level\) must NOT have additional properties \(stream_usage\)/m);
  const broken = tmp + "/broken.json";
  writeFileSync(broken, '{"providers": [');
  const s = await runProxy(["--check", "--config", broken]);
  assert.equal(s.code, 1);
  assert.match(s.stderr, /not valid JSON/);
  const missing = await runProxy(["--config", tmp + "/missing.yaml"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /missing\.yaml: cannot read it \(ENOENT\)/);
});

test("proxy: unknown --routes fields and a port in use stop it with a message, exit 1", async () => {
  const vs = tmp + "/vs.yaml";
  writeFileSync(
    vs,
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [a.test]\n  http:\n    - name: r\n      matches:\n        - headers: {x: {exact: y}}\n      route:\n        - destination: {host: a.test}\n",
  );
  const r = await runProxy(["--routes", vs]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /spec\.http\[0\]\.matches is not a field of Istio's VirtualService/);
  const busy = createServer().listen(0, "127.0.0.1");
  await new Promise((res) => busy.once("listening", res));
  try {
    const port = (busy.address() as AddressInfo).port;
    const b = await runProxy(["--listen", `127.0.0.1:${port}`, "--admin", "off"]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, new RegExp(`--listen 127\\.0\\.0\\.1:${port}: cannot listen: the port is in use`));
  } finally {
    busy.close();
  }
});

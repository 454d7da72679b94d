// SPDX-License-Identifier: Apache-2.0
// `npm run bench:proxy`: what the local proxy (npm run proxy) adds on loopback. One upstream with
// the strict mock's rules (tests/mock-upstream.ts: path, key, model) answers both ways: directly,
// and through the proxy running deploy/'s WasmPlugin configuration. Measured in this process with
// one clock, calls alternating between the two ways, one at a time over keep-alive connections:
//  - per request: a non-streamed call, from the request's start to the response's last byte;
//  - per chunk: a streamed call's events, each from the upstream's write to the client's read.
// Prints median and p99 of each way and their difference. BENCH_PROXY_CALLS (default 1000).

import { createServer, request, Agent, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import {
  respond,
  completionEvents,
  completionBody,
  MOCK_API_KEY,
  MOCK_PATH,
} from "../tests/mock-upstream.ts";
import { ROOT, REQUEST_BODY } from "../tests/seed.ts";
import { startProxy } from "../tests/proxy-harness.ts";

const CALLS = Number(process.env.BENCH_PROXY_CALLS ?? 1000);
const WARMUP = 100;

/** The current stream's events as written: when, and the bytes so far (one stream runs at a time). */
let writes: Array<{ at: number; end: number }> = [];

async function body(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const part of req) text += part;
  return text;
}

const upstream = createServer(async (req, res) => {
  const text = await body(req);
  const answer = respond(req.method ?? "", req.url ?? "", req.headers.authorization, text);
  if (answer.status !== 200) return void res.writeHead(answer.status).end(answer.body);
  const request = JSON.parse(text);
  if (request.stream !== true) {
    const out = completionBody(request.model);
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
    return void res.end(out);
  }
  res.writeHead(200, { "content-type": "text/event-stream" });
  const events = completionEvents(request.model, true);
  // One event per timer turn, so that each is its own chunk on the wire.
  const next = (i: number) => {
    if (i === events.length) return void res.end();
    const end = (writes.at(-1)?.end ?? 0) + Buffer.byteLength(events[i]);
    writes.push({ at: performance.now(), end });
    res.write(events[i]);
    setTimeout(() => next(i + 1), 1);
  };
  next(0);
});
await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
const upstreamPort = (upstream.address() as AddressInfo).port;

const proxy = await startProxy(
  [
    "--config",
    ROOT + "deploy/istio/wasmplugin.yaml",
    "--upstream",
    `dashscope.aliyuncs.com=http://127.0.0.1:${upstreamPort}`,
    "--node-metadata",
    "WORKLOAD_NAME=sleep,NAMESPACE=default",
  ],
  { DASHSCOPE_API_KEY: MOCK_API_KEY },
);

const agents = {
  direct: new Agent({ keepAlive: true, maxSockets: 1 }),
  proxy: new Agent({ keepAlive: true, maxSockets: 1 }),
};
type Way = keyof typeof agents;

/** One call; returns its duration and each response chunk's arrival: when, and the bytes so far. */
function call(way: Way, stream: boolean): Promise<{ ms: number; reads: Array<{ at: number; end: number }> }> {
  // The proxied call is the seed's (no model, no key: the plugin completes it); the direct call
  // carries what the plugin adds, so that the upstream does the same work both ways.
  const data = JSON.parse(REQUEST_BODY);
  if (stream) Object.assign(data, { stream: true, stream_options: { include_usage: true } });
  if (way === "direct") data.model = "qwen1.5-72b-chat";
  const payload = JSON.stringify(data);
  const headers: Record<string, string> = {
    host: "dashscope.aliyuncs.com",
    "content-type": "application/json",
  };
  if (way === "direct") headers.authorization = `Bearer ${MOCK_API_KEY}`;
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: way === "direct" ? upstreamPort : proxy.port,
        method: "POST",
        path: way === "direct" ? MOCK_PATH : "/",
        headers,
        agent: agents[way],
      },
      (res) => {
        const reads: Array<{ at: number; end: number }> = [];
        let bytes = 0;
        res.on("data", (d: Buffer) => reads.push({ at: performance.now(), end: (bytes += d.length) }));
        res.on("end", () => {
          if (res.statusCode !== 200) reject(new Error(`${way}: status ${res.statusCode}`));
          else resolve({ ms: performance.now() - start, reads });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const results = {
  request: { direct: [] as number[], proxy: [] as number[] },
  chunk: { direct: [] as number[], proxy: [] as number[] },
};
for (let i = 0; i < WARMUP + CALLS; i++) {
  for (const way of ["direct", "proxy"] as const) {
    const r = await call(way, false);
    writes = [];
    const s = await call(way, true);
    if (i < WARMUP) continue;
    results.request[way].push(r.ms);
    // An event has arrived with the first read that completes its bytes (a read may complete several).
    let k = 0;
    for (const w of writes) {
      while (k < s.reads.length && s.reads[k].end < w.end) k++;
      if (k < s.reads.length) results.chunk[way].push(s.reads[k].at - w.at);
    }
  }
}
await proxy.stop();
upstream.close();
for (const a of Object.values(agents)) a.destroy();

const f = (x: number) => x.toFixed(3).padStart(8);
console.log(`local proxy on loopback, ${CALLS} calls each way (after ${WARMUP} warm-up), ms:`);
console.log("                     direct median    p99   proxied median    p99   added median    p99");
for (const [name, r] of Object.entries(results)) {
  const [dm, dp, pm, pp] = [
    quantile(r.direct, 0.5),
    quantile(r.direct, 0.99),
    quantile(r.proxy, 0.5),
    quantile(r.proxy, 0.99),
  ];
  console.log(
    `${(name === "request" ? "per request" : "per chunk").padEnd(20)} ${f(dm)} ${f(dp)}     ${f(pm)} ${f(pp)}   ${f(pm - dm)} ${f(pp - dp)}   (${r.proxy.length} samples)`,
  );
}

// SPDX-License-Identifier: Apache-2.0
// `npm run bench`: what the plugin costs, measured in one run against
//  - the floor: a module that only copies each body chunk in (bench/wasm/floor.ts), and
//  - the obvious alternative: buffer each body whole and parse it with a JSON library
//    (bench/wasm/buffering.ts),
// all three driven by the same test host in V8, plus the parsers' throughput next to V8's
// JSON.parse on the same bytes, the module size and linear memory. Prints a table and writes
// build/bench.json. BENCH_ROUNDS scales the run (default 15 measured rounds after 3 warm-up).

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { cpus, platform, release } from "node:os";
import asc from "assemblyscript/asc";
import { ProxyWasmHost } from "../tests/host/host.ts";
import { ROOT, NODE_METADATA } from "../tests/seed.ts";
import { bedrockEvent } from "../tests/fixtures/eventstream.ts";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const WARMUP = 3;
const enc = new TextEncoder();
const OUT = ROOT + "build/bench/";

async function compile(name: string): Promise<string> {
  mkdirSync(OUT, { recursive: true });
  const out = OUT + name + ".wasm";
  const { error, stderr } = await asc.main(
    // The plugin's release settings (bench/wasm/asconfig.json), without its abort handler.
    [`bench/wasm/${name}.ts`, "--config", "bench/wasm/asconfig.json", "-o", out, "--use", "abort="],
    {},
  );
  if (error) throw new Error(`${name}: ${stderr.toString()}`);
  return out;
}

// ---- traffic ------------------------------------------------------------------------------

const REQUEST = enc.encode(
  JSON.stringify({
    model: "qwen-turbo",
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "Please introduce yourself in a few sentences, and mention what you can do." },
    ],
  }),
);

function chatBody(contentBytes: number): Uint8Array {
  const words = "Large language models generate text one token at a time, and this sentence is filler. ";
  const content = words.repeat(Math.ceil(contentBytes / words.length)).slice(0, contentBytes);
  return enc.encode(
    JSON.stringify({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1720754403,
      model: "qwen-turbo",
      choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop", logprobs: null }],
      usage: { prompt_tokens: 11, completion_tokens: 90, total_tokens: 101 },
      system_fingerprint: null,
    }),
  );
}

const CHAT_2K = chatBody(1750);
const CHAT_1M = chatBody(1024 * 1024 - 300);
const CHAT_8M = chatBody(8 * 1024 * 1024 - 300);

function streamEvents(n: number): Uint8Array[] {
  const events: Uint8Array[] = [];
  for (let i = 0; i < n - 1; i++) {
    events.push(
      enc.encode(
        `data: ${JSON.stringify({ id: "chatcmpl-2", object: "chat.completion.chunk", created: 1720754403, model: "qwen-turbo", choices: [{ index: 0, delta: { content: "token " + i }, finish_reason: null }], usage: null })}\n\n`,
      ),
    );
  }
  events.push(
    enc.encode(
      `data: ${JSON.stringify({ id: "chatcmpl-2", object: "chat.completion.chunk", created: 1720754403, model: "qwen-turbo", choices: [], usage: { prompt_tokens: 11, completion_tokens: 299, total_tokens: 310 } })}\n\ndata: [DONE]\n\n`,
    ),
  );
  return events;
}
const STREAM_300 = streamEvents(300);

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}
const CHAT_1M_CHUNKS = chunks(CHAT_1M, 65536);

type Scenario = { name: string; perRound: number; run: (h: ProxyWasmHost) => void };

function llm(h: ProxyWasmHost, contentType: string, parts: Uint8Array[]): void {
  const s = h.stream({ cluster: "outbound|80||dashscope.aliyuncs.com" });
  s.sendRequestHeaders({
    ":method": "POST",
    ":path": "/compatible-mode/v1/chat/completions",
    ":authority": "dashscope.aliyuncs.com",
    "content-type": "application/json",
  });
  s.sendRequestBody(REQUEST, true);
  s.sendResponseHeaders({ ":status": "200", "content-type": contentType });
  for (let i = 0; i < parts.length; i++) s.sendResponseBody(parts[i], i === parts.length - 1);
  s.end();
}

const SCENARIOS: Scenario[] = [
  { name: "chat completion, 2 KB JSON", perRound: 2000, run: (h) => llm(h, "application/json", [CHAT_2K]) },
  {
    name: "streamed, 300 chunks, usage last",
    perRound: 60,
    run: (h) => llm(h, "text/event-stream", STREAM_300),
  },
  {
    name: "1 MB JSON response (64 KB chunks)",
    perRound: 20,
    run: (h) => llm(h, "application/json", CHAT_1M_CHUNKS),
  },
  {
    name: "non-LLM request on an LLM host",
    perRound: 2000,
    run: (h) => {
      const s = h.stream({ cluster: "outbound|80||dashscope.aliyuncs.com" });
      s.sendRequestHeaders(
        { ":method": "GET", ":path": "/compatible-mode/v1/models", ":authority": "dashscope.aliyuncs.com" },
        true,
      );
      s.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
      s.sendResponseBody(CHAT_2K, true);
      s.end();
    },
  },
];

// Bedrock ConverseStream: N binary event-stream messages (prelude, headers, JSON payload, two
// CRCs), one per chunk, usage in the last; the per-chunk cost of the event-stream reader is
// (plugin - floor) / N.
const CONVERSE_FRAMES = 300;
const CONVERSE_STREAM: Uint8Array[] = [];
for (let i = 0; i < CONVERSE_FRAMES - 1; i++) {
  CONVERSE_STREAM.push(
    bedrockEvent("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "token " + i }, p: "abcdefgh" }),
  );
}
CONVERSE_STREAM.push(
  bedrockEvent("metadata", {
    usage: { inputTokens: 11, outputTokens: 299, totalTokens: 310 },
    metrics: { latencyMs: 900 },
  }),
);
SCENARIOS.push({
  name: `Bedrock ConverseStream, ${CONVERSE_FRAMES} event-stream messages`,
  perRound: 60,
  run: (h) => {
    const s = h.stream({ cluster: "outbound|443||bedrock-runtime.us-east-1.amazonaws.com" });
    s.sendRequestHeaders({
      ":method": "POST",
      ":path": "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
      ":authority": "bedrock-runtime.us-east-1.amazonaws.com",
      "content-type": "application/json",
    });
    s.sendRequestBody(REQUEST, true);
    s.sendResponseHeaders({ ":status": "200", "content-type": "application/vnd.amazon.eventstream" });
    for (let i = 0; i < CONVERSE_STREAM.length; i++)
      s.sendResponseBody(CONVERSE_STREAM[i], i === CONVERSE_STREAM.length - 1);
    s.end();
  },
});

// ---- measurement --------------------------------------------------------------------------

interface Stats {
  min: number;
  median: number;
  max: number;
}

function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
}

/** Microseconds per stream, one sample per round. */
function measure(host: ProxyWasmHost, sc: Scenario): Stats {
  const samples: number[] = [];
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < sc.perRound; i++) sc.run(host);
    const us = Number(process.hrtime.bigint() - t0) / 1000 / sc.perRound;
    if (round >= WARMUP) samples.push(us);
  }
  if (host.traps.length > 0) throw host.traps[0];
  return stats(samples);
}

/** MB/s of f over the bytes, one sample per repetition. */
function throughput(bytes: number, reps: number, f: () => unknown): Stats {
  const samples: number[] = [];
  for (let r = 0; r < WARMUP + reps; r++) {
    const t0 = process.hrtime.bigint();
    f();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= WARMUP) samples.push(bytes / 1e6 / s);
  }
  return stats(samples);
}

const fmt = (x: number, d = 1) => x.toFixed(d);
const fmtStats = (s: Stats, d = 1) => `${fmt(s.median, d)} (${fmt(s.min, d)}..${fmt(s.max, d)})`;

async function main(): Promise<void> {
  const pluginPath = ROOT + "build/asm-llm-proxy.wasm";
  const floorPath = await compile("floor");
  const altPath = await compile("buffering");
  const scanPath = await compile("scan");

  const modules = {
    plugin: await WebAssembly.compile(readFileSync(pluginPath)),
    floor: await WebAssembly.compile(readFileSync(floorPath)),
    buffering: await WebAssembly.compile(readFileSync(altPath)),
  };
  const hosts: Record<string, ProxyWasmHost> = {};
  for (const [name, m] of Object.entries(modules)) {
    hosts[name] = new ProxyWasmHost(m, { nodeMetadata: NODE_METADATA });
    await hosts[name].start();
  }

  const rows: Array<Record<string, unknown>> = [];
  console.log(
    `asm-llm-proxy benchmark: ${ROUNDS} rounds after ${WARMUP} warm-up; µs per stream, median (min..max)\n`,
  );
  console.log("| scenario | plugin | floor | buffer + JSON library | plugin / floor | buffering / floor |");
  console.log("|---|---|---|---|---|---|");
  for (const sc of SCENARIOS) {
    // Interleave the three so that machine noise falls on all of them alike.
    const plugin = measure(hosts.plugin, sc);
    const floor = measure(hosts.floor, sc);
    const buffering = measure(hosts.buffering, sc);
    const row = {
      scenario: sc.name,
      plugin,
      floor,
      buffering,
      pluginToFloor: plugin.median / floor.median,
      bufferingToFloor: buffering.median / floor.median,
    };
    rows.push(row);
    console.log(
      `| ${sc.name} | ${fmtStats(plugin)} | ${fmtStats(floor)} | ${fmtStats(buffering)} | ${fmt(row.pluginToFloor, 2)}× | ${fmt(row.bufferingToFloor, 2)}× |`,
    );
  }

  // Parser throughput: the plugin's scanners alone, next to V8's JSON.parse on the same bytes.
  const scan = (await WebAssembly.instantiate(readFileSync(scanPath), { env: {} })) as unknown as {
    instance: WebAssembly.Instance;
  };
  const ex = scan.instance.exports as any;
  const place = (bytes: Uint8Array) => {
    const ptr = ex.alloc(bytes.length);
    new Uint8Array(ex.memory.buffer).set(bytes, ptr);
    return ptr;
  };
  const sse = new Uint8Array(streamEvents(40000).reduce((n, e) => n + e.length, 0));
  {
    let o = 0;
    for (const e of streamEvents(40000)) {
      sse.set(e, o);
      o += e.length;
    }
  }
  const json8 = CHAT_8M;
  const pJson = place(json8);
  const pSse = place(sse);
  if (ex.scanJson(pJson, json8.length, 16384) !== 1) throw new Error("scanner refused the 8 MB body");
  if (ex.scanSse(pSse, sse.length, 16384) !== 40000) throw new Error("SSE reader missed events");
  const dec = new TextDecoder();
  const jsonText = dec.decode(json8);
  const sseText = dec.decode(sse);
  const parseSseInJs = (text: string) => {
    let n = 0;
    for (const line of text.split("\n"))
      if (line.startsWith("data: {")) n += JSON.parse(line.slice(6)) ? 1 : 0;
    return n;
  };
  const reps = Math.max(5, Math.round(ROUNDS / 1.5));
  const tp = {
    json: {
      bytes: json8.length,
      scanner: throughput(json8.length, reps, () => ex.scanJson(pJson, json8.length, 16384)),
      jsonParseOfBytes: throughput(json8.length, reps, () => JSON.parse(dec.decode(json8))),
      jsonParseOfString: throughput(json8.length, reps, () => JSON.parse(jsonText)),
    },
    sse: {
      bytes: sse.length,
      scanner: throughput(sse.length, reps, () => ex.scanSse(pSse, sse.length, 16384)),
      jsonParseOfBytes: throughput(sse.length, reps, () => parseSseInJs(dec.decode(sse))),
      jsonParseOfString: throughput(sse.length, reps, () => parseSseInJs(sseText)),
    },
  };
  console.log("\nParser throughput, MB/s, median (min..max):\n");
  console.log(
    "| body | plugin's scanner | V8 JSON.parse of the bytes (decode + parse) | V8 JSON.parse of a ready string | scanner / JSON.parse of the bytes |",
  );
  console.log("|---|---|---|---|---|");
  for (const [name, t] of Object.entries(tp)) {
    const label =
      name === "json"
        ? `${fmt(t.bytes / 1e6)} MB chat completion`
        : `${fmt(t.bytes / 1e6)} MB event stream (40,000 events)`;
    console.log(
      `| ${label} | ${fmtStats(t.scanner, 0)} | ${fmtStats(t.jsonParseOfBytes, 0)} | ${fmtStats(t.jsonParseOfString, 0)} | ${fmt(t.scanner.median / t.jsonParseOfBytes.median, 2)}× |`,
    );
  }

  const wasm = readFileSync(pluginPath);
  const size = { raw: wasm.length, gzip: gzipSync(wasm, { level: 9 }).length };
  const memory = Object.fromEntries(Object.entries(hosts).map(([k, h]) => [k, h.memoryBytes]));
  console.log(`\nRelease module: ${size.raw} bytes, ${size.gzip} gzipped.`);
  console.log(
    `Linear memory per VM after the run: plugin ${memory.plugin} bytes, floor ${memory.floor}, buffering ${memory.buffering}.`,
  );
  const machine = {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    os: `${platform()} ${release()}`,
    node: process.version,
    v8: process.versions.v8,
  };
  console.log(
    `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.os}, Node ${machine.node} (V8 ${machine.v8}).`,
  );
  console.log(
    "Times include the TypeScript host's own work for each callback, the same for all three modules; the ratios, not the microseconds, carry over to Envoy.",
  );

  mkdirSync(ROOT + "build", { recursive: true });
  writeFileSync(
    ROOT + "build/bench.json",
    JSON.stringify(
      { rounds: ROUNDS, warmup: WARMUP, streams: rows, throughput: tp, size, memory, machine },
      null,
      2,
    ) + "\n",
  );
  console.log("\nWritten: build/bench.json");
}

await main();

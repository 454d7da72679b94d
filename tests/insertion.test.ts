// SPDX-License-Identifier: Apache-2.0
// Inserting a provider's members before a body's closing brace, in chunks of any size: the
// scanner keeps reading the bytes the client sent after the insertion (read windows are 32 KiB),
// and a large chunk is rewritten a window at a time, so linear memory does not grow with it.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, type HttpStream } from "./host/host.ts";
import { WASM, NODE_METADATA, CLUSTER, PATH } from "./seed.ts";
import { completionBody } from "./mock-upstream.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KEY = "sk-test-5f0c1e2d3b4a69788796a5b4c3d2e1f0";
const MODEL = "qwen1.5-72b-chat";
const WINDOW = 32768;
const PARSE_ERROR = "wasmcustom.asm_llm_proxy_issues|llmproxy_issue=parse_error";

function load() {
  return ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    pluginConfig: {
      providers: [{ host: "dashscope.aliyuncs.com", path: PATH, model: MODEL, stream: true, api_key: KEY }],
      filter_state: ["usage", "request_stream"],
    },
  });
}

/** A body whose top-level closing brace is at byte `brace`, followed by `trailer`. */
function bodyWithBraceAt(brace: number, trailer = " \n\n"): string {
  const head = '{"messages":[{"role":"user","content":"';
  const tail = '"}]';
  const fill = brace - head.length - tail.length;
  assert.ok(fill >= 0);
  return head + "a".repeat(fill) + tail + "}" + trailer;
}

/** The body as it must go upstream: the members before the brace. */
function expected(body: string): string {
  const at = body.lastIndexOf("}");
  return body.slice(0, at) + `,"model":"${MODEL}","stream":true` + body.slice(at);
}

function send(host: ProxyWasmHost, body: Uint8Array, cuts: number[] = []): HttpStream {
  const s = host.stream({ cluster: CLUSTER });
  s.sendRequestHeaders({ ":method": "POST", ":path": "/", ":authority": "dashscope.aliyuncs.com" });
  s.sendRequestChunks(body, cuts);
  s.sendResponseHeaders({ ":status": "200", "content-type": "text/event-stream" });
  s.sendResponseBody(
    `data: ${JSON.stringify({ ...JSON.parse(completionBody(MODEL)), object: "chat.completion.chunk" })}\n\ndata: [DONE]\n\n`,
    true,
  );
  s.end();
  assert.deepEqual(host.traps, []);
  assert.equal(s.held, 0);
  return s;
}

describe("a closing brace near a read-window edge", () => {
  for (const edge of [WINDOW, 2 * WINDOW]) {
    test(`every offset within 64 bytes of ${edge / 1024} KiB: the body right, the scanner fed the client's bytes`, async () => {
      const host = await load();
      for (let brace = edge - 64; brace <= edge + 64; brace++) {
        for (const trailer of [" \n\n", " ".repeat(100)]) {
          const body = bodyWithBraceAt(brace, trailer);
          const s = send(host, enc.encode(body));
          const where = `brace at ${brace}, ${trailer.length} bytes after it`;
          assert.equal(dec.decode(s.forwarded("request")), expected(body), where);
          assert.equal(s.state("wasm.asm.llmproxy.request_model"), MODEL, where);
          assert.equal(s.state("wasm.asm.llmproxy.request_stream"), "true", where);
        }
      }
      assert.equal(host.metrics.get(PARSE_ERROR)?.value ?? 0, 0, "no call counted a parse error");
    });
  }

  test("the same bodies cut into two chunks at the edge", async () => {
    const host = await load();
    for (let brace = WINDOW - 8; brace <= WINDOW + 8; brace++) {
      const body = bodyWithBraceAt(brace, " ".repeat(40));
      for (const cut of [WINDOW - 1, WINDOW, WINDOW + 1, brace, brace + 1]) {
        const s = send(host, enc.encode(body), [cut]);
        assert.equal(dec.decode(s.forwarded("request")), expected(body), `brace ${brace}, cut ${cut}`);
        assert.equal(s.state("wasm.asm.llmproxy.request_model"), MODEL);
      }
    }
    assert.equal(host.metrics.get(PARSE_ERROR)?.value ?? 0, 0);
  });
});

describe("an insertion into one large chunk is done a window at a time", () => {
  for (const [name, size, braceAt] of [
    ["8 MiB, the brace at its end", 8 << 20, (n: number) => n - 3],
    ["8 MiB, the brace in its middle (the rest white space)", 8 << 20, (n: number) => n >> 1],
    ["1 MiB", 1 << 20, (n: number) => n - 3],
  ] as const) {
    test(`${name}: linear memory grows by at most 1 MiB`, async () => {
      const host = await load();
      // Warm-up: a small call of the same kind, so that what is measured is the large chunk.
      send(host, enc.encode(bodyWithBraceAt(200)));
      const before = host.memoryBytes;
      const brace = braceAt(size);
      const body = bodyWithBraceAt(brace, " ".repeat(size - brace - 1));
      assert.equal(body.length, size);
      const s = send(host, enc.encode(body));
      const grown = host.memoryBytes - before;
      console.log(`# ${name}: linear memory +${grown} bytes`);
      assert.ok(grown <= 1 << 20, `grew by ${grown} bytes`);
      const out = s.forwarded("request");
      assert.equal(out.length, size + `,"model":"${MODEL}","stream":true`.length);
      assert.equal(dec.decode(out), expected(body));
      assert.equal(s.state("wasm.asm.llmproxy.request_model"), MODEL);
    });
  }
});

// SPDX-License-Identifier: Apache-2.0
// A response reset before its end counts one way in every framing (README, failure behaviour):
// `usage` = `aborted` (or `present` when the usage had arrived), and the message the reset cut
// short is neither read nor a parse error, as for a JSON document cut by a reset. Log lines say
// what happened: "usage taken from the other N" only when one of them carried usage.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost } from "./host/host.ts";
import { WASM, NODE_METADATA } from "./seed.ts";
import { CASES, API_CASES, sse } from "./fixtures/providers.ts";

const enc = new TextEncoder();
const PARSE_ERROR = "wasmcustom.asm_llm_proxy_issues|llmproxy_issue=parse_error";

const load = () =>
  ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA, pluginConfig: { filter_state: ["all"] } });

/** The framings of the fixtures, each with the first of its cases. */
const cases = [...CASES, ...API_CASES].filter((c) => (c as { method?: string }).method !== "GET");
const framings = new Map<string, (typeof cases)[number]>();
for (const c of cases) {
  const type = c.contentType.split(";")[0];
  const framing =
    c.path.includes(":streamGenerateContent") && type === "application/json" ? "json array" : type;
  if (!framings.has(framing)) framings.set(framing, c);
}

describe("a response reset before its end", () => {
  test("the fixtures cover every framing", () => {
    assert.deepEqual([...framings.keys()].sort(), [
      "application/json",
      "application/vnd.amazon.eventstream",
      "application/x-ndjson",
      "json array",
      "text/event-stream",
    ]);
  });

  for (const [framing, c] of framings) {
    test(`${framing} (${c.name}): aborted or present, never a parse error, at every cut in its last 64 bytes`, async () => {
      const host = await load();
      const body = typeof c.body === "string" ? enc.encode(c.body) : c.body;
      for (let cut = Math.max(1, body.length - 64); cut < body.length; cut++) {
        const s = host.stream({ cluster: `outbound|443||${c.authority}` });
        s.sendRequestHeaders({ ":method": "POST", ":path": c.path, ":authority": c.authority });
        s.sendRequestBody(c.request, true);
        s.sendResponseHeaders({ ":status": "200", "content-type": c.contentType });
        s.sendResponseBody(body.subarray(0, cut), false);
        s.end(); // reset: no end_of_stream reached the filter
        const usage = s.state("wasm.asm.llmproxy.usage");
        const tokens = s.state("wasm.asm.llmproxy.request_prompt_tokens");
        assert.equal(usage, tokens !== undefined ? "present" : "aborted", `cut at ${cut} of ${body.length}`);
        assert.deepEqual(host.traps, []);
      }
      assert.equal(host.metrics.get(PARSE_ERROR)?.value ?? 0, 0, "the cut message is not a parse error");
      assert.deepEqual(
        host.logs.filter((l) => l.level !== "debug"),
        [],
      );
    });
  }
});

describe("log lines say what happened", () => {
  const run = async (body: string) => {
    const host = await load();
    const s = host.stream({ cluster: "outbound|443||api.openai.com" });
    s.sendRequestHeaders({
      ":method": "POST",
      ":path": "/v1/chat/completions",
      ":authority": "api.openai.com",
    });
    s.sendRequestBody('{"model":"gpt-4o","stream":true,"messages":[]}', true);
    s.sendResponseHeaders({ ":status": "200", "content-type": "text/event-stream" });
    s.sendResponseBody(body, true);
    s.end();
    return host.logs.filter((l) => l.level === "info").map((l) => l.message);
  };
  const chunk = { object: "chat.completion.chunk", model: "gpt-4o", choices: [] };

  test("one unreadable event and no usage in the others: it says so", async () => {
    const lines = await run(sse([{ data: chunk }, { data: "{not json" }, { data: chunk }]));
    assert.deepEqual(lines, [
      "asm-llm-proxy: 1 event(s) of the stream of /v1/chat/completions could not be read; none of the other 2 carried usage",
    ]);
  });

  test("one unreadable event, the usage in another: taken from the others", async () => {
    const lines = await run(
      sse([
        { data: "{not json" },
        { data: { ...chunk, usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } } },
      ]),
    );
    assert.deepEqual(lines, [
      "asm-llm-proxy: 1 event(s) of the stream of /v1/chat/completions could not be read; usage taken from the other 1",
    ]);
  });
});

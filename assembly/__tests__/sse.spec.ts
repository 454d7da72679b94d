// SPDX-License-Identifier: Apache-2.0
// The SSE reader: events split anywhere, every line ending, usage merged across events.

import { JsonScanner } from "../llm/json";
import { RESPONSE_SCHEMA } from "../llm/formats";
import { SseReader } from "../llm/sse";
import { Usage, NO_COUNT } from "../llm/usage";

function read(text: string, at: i32): SseReader {
  const r = new SseReader(new JsonScanner(RESPONSE_SCHEMA), new Usage());
  const bytes = String.UTF8.encode(text);
  const p = changetype<usize>(bytes);
  const n = bytes.byteLength;
  const cut = at < n ? at : n;
  r.feed(p, <usize>cut);
  r.feed(p + <usize>cut, <usize>(n - cut));
  r.finish();
  return r;
}

describe("SseReader", () => {
  it("takes the last usage and the model from any event, at every split point", () => {
    const text =
      'event: a\r\ndata: {"model":"m","usage":null}\r\n\r\n: c\rdata: {"usage":{"prompt_tokens":5,\ndata: "completion_tokens":6}}\n\ndata: [DONE]\n\n';
    const n = String.UTF8.byteLength(text);
    for (let i = 0; i <= n; i++) {
      const r = read(text, i);
      expect(r.usage.model).toBe("m", "split at " + i.toString());
      expect(r.usage.prompt).toBe(5);
      expect(r.usage.completion).toBe(6);
      expect(r.events).toBe(2);
      expect(r.invalidEvents).toBe(0);
      expect(r.doneSeen).toBe(true);
    }
  });

  it("counts an unreadable event and keeps the rest", () => {
    const r = read('data: {"x":\n\ndata: {"usage":{"output_tokens":3}}\n\n', 0);
    expect(r.invalidEvents).toBe(1);
    expect(r.usage.completion).toBe(3);
    expect(r.usage.prompt).toBe(NO_COUNT);
  });

  it("reads a last event that lacks its blank line", () => {
    const r = read('data: {"usage":{"input_tokens":1}}', 0);
    expect(r.usage.prompt).toBe(1);
  });

  it("is reusable after reset", () => {
    const r = read('data: {"model":"a"}\n\n', 0);
    r.reset();
    expect(r.usage.model).toBeNull();
    expect(r.events).toBe(0);
  });
});

describe("SseReader after a reset", () => {
  it("drops an event the reset cut short, uncounted; keeps the complete ones", () => {
    const r = new SseReader(new JsonScanner(RESPONSE_SCHEMA), new Usage());
    const text = 'data: {"model":"m","usage":{"prompt_tokens":5,"completion_tokens":6}}\n\ndata: {"choi';
    const bytes = String.UTF8.encode(text);
    r.feed(changetype<usize>(bytes), <usize>bytes.byteLength);
    r.finish(false);
    expect(r.events).toBe(1);
    expect(r.invalidEvents).toBe(0);
    expect(r.usage.prompt).toBe(5);
  });
});

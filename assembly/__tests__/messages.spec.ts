// SPDX-License-Identifier: Apache-2.0
// Newline-delimited JSON and the JSON array read element by element, split at every byte.

import { JsonScanner } from "../llm/json";
import { NATIVE_SCHEMA } from "../llm/formats";
import { Usage, NO_COUNT } from "../llm/usage";
import { MessageReader } from "../llm/reader";
import { NdjsonReader } from "../llm/ndjson";
import { JsonArrayReader } from "../llm/jsonarray";

function read(r: MessageReader, text: string, at: i32): MessageReader {
  r.reset();
  const bytes = String.UTF8.encode(text);
  const p = changetype<usize>(bytes);
  const n = bytes.byteLength;
  const cut = at < n ? at : n;
  r.feed(p, <usize>cut);
  r.feed(p + <usize>cut, <usize>(n - cut));
  r.finish();
  return r;
}

const ndjson = new NdjsonReader(new JsonScanner(NATIVE_SCHEMA), new Usage());
const array = new JsonArrayReader(new JsonScanner(NATIVE_SCHEMA), new Usage());

describe("NdjsonReader", () => {
  it("reads every line at every split point; CRLF, blank lines, no final LF", () => {
    const text = '{"model":"m","done":false}\r\n\n  \n{"done":true,"prompt_eval_count":2,"eval_count":3}';
    const n = String.UTF8.byteLength(text);
    for (let i = 0; i <= n; i++) {
      const r = read(ndjson, text, i);
      expect(r.usage.model).toBe("m", "split at " + i.toString());
      expect(r.usage.prompt).toBe(2);
      expect(r.usage.completion).toBe(3);
      expect(r.events).toBe(2);
      expect(r.invalidEvents).toBe(0);
    }
  });

  it("counts a bad line and keeps the others", () => {
    const r = read(ndjson, '{"eval_count":\n{"eval_count":4}\n', 0);
    expect(r.invalidEvents).toBe(1);
    expect(r.usage.completion).toBe(4);
  });
});

describe("JsonArrayReader", () => {
  it("reads each element at every split point, brackets in strings included", () => {
    const text =
      ' [{"modelVersion":"g","x":"]}[{\\"\\\\"},\r\n {"usageMetadata":{"promptTokenCount":5,"totalTokenCount":9},"a":[[],{}]}]\n';
    const n = String.UTF8.byteLength(text);
    for (let i = 0; i <= n; i++) {
      const r = read(array, text, i);
      expect(r.usage.model).toBe("g", "split at " + i.toString());
      expect(r.usage.prompt).toBe(5);
      expect(r.usage.total).toBe(9);
      expect(r.events).toBe(2);
      expect(r.invalidEvents).toBe(0);
    }
  });

  it("reads a single object body and an empty array", () => {
    const one = read(array, '{"usageMetadata":{"candidatesTokenCount":1}}', 3);
    expect(one.usage.completion).toBe(1);
    expect(one.invalidEvents).toBe(0);
    const empty = read(array, "[ ]", 1);
    expect(empty.events).toBe(0);
    expect(empty.invalidEvents).toBe(0);
  });

  it("counts what is not an array of objects, and an array cut short", () => {
    expect(read(array, "", 0).invalidEvents).toBe(1);
    expect(read(array, "[1]", 0).invalidEvents).toBe(1);
    expect(read(array, '[{"a":1} {"b":2}]', 0).invalidEvents).toBe(1);
    expect(read(array, '[{"a":1}] x', 0).invalidEvents).toBe(1);
    const cut = read(array, '[{"usageMetadata":{"promptTokenCount":5}},{"usageMetadata":', 0);
    expect(cut.invalidEvents).toBe(1);
    expect(cut.usage.prompt).toBe(5);
    expect(read(array, '[{"a":1},', 0).invalidEvents).toBe(1);
    expect(read(array, '[{"a":1},]', 0).usage.prompt).toBe(NO_COUNT);
  });
});

describe("after a reset", () => {
  it("a message the reset cut short is dropped uncounted, in both framings", () => {
    for (let i = 0; i < 2; i++) {
      const r: MessageReader = i == 0 ? ndjson : array;
      const text =
        i == 0 ? '{"done":true,"eval_count":3}\n{"mod' : '[{"usageMetadata":{"promptTokenCount":2}},{"mo';
      r.reset();
      const bytes = String.UTF8.encode(text);
      r.feed(changetype<usize>(bytes), <usize>bytes.byteLength);
      r.finish(false);
      expect(r.events).toBe(1);
      expect(r.invalidEvents).toBe(0);
      // The same bytes at a normal end: the open message is unreadable.
      r.reset();
      r.feed(changetype<usize>(bytes), <usize>bytes.byteLength);
      r.finish();
      expect(r.invalidEvents).toBeGreaterThan(0);
    }
  });
});

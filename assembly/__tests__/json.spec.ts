// SPDX-License-Identifier: Apache-2.0
// The JSON scanner: keeps exactly the schema's top-level fields, validates strictly, and gives
// the same answer whatever the chunking.

import { Schema, KIND_STRING, KIND_INT, KIND_BOOL } from "../llm/schema";
import { JsonScanner, PRESENT, INVALID, ABSENT, ERR_DEPTH, ERR_SYNTAX, ERR_TRUNCATED } from "../llm/json";

const schema = new Schema();
const MODEL = schema.add("model", KIND_STRING);
const STREAM = schema.add("stream", KIND_BOOL);
const PROMPT = schema.add("usage.prompt_tokens", KIND_INT);
const COMPLETION = schema.add("usage.completion_tokens", KIND_INT);

function scanWhole(text: string): JsonScanner {
  const s = new JsonScanner(schema);
  const bytes = String.UTF8.encode(text);
  s.feed(changetype<usize>(bytes), bytes.byteLength);
  s.finish();
  return s;
}

function scanSplit(text: string, at: i32): JsonScanner {
  const s = new JsonScanner(schema);
  const bytes = String.UTF8.encode(text);
  const p = changetype<usize>(bytes);
  s.feed(p, <usize>at);
  s.feed(p + <usize>at, <usize>(bytes.byteLength - at));
  s.finish();
  return s;
}

describe("JsonScanner", () => {
  it("reads the top-level string, bool and nested integers", () => {
    const s = scanWhole(
      '{"model":"qwen-turbo","stream":true,"usage":{"prompt_tokens":11,"completion_tokens":90}}',
    );
    expect(s.finish()).toBe(true);
    expect(s.string(MODEL)).toBe("qwen-turbo");
    expect(s.bool(STREAM)).toBe(true);
    expect(s.number(PROMPT)).toBe(11);
    expect(s.number(COMPLETION)).toBe(90);
  });

  it("gives the same result for every split point", () => {
    const text =
      '{ "a": [1, -2.5e+3, "x\\"y", {"model": "no"}], "model" : "m\\u00e9\\ud83d\\ude00é", "usage": {"prompt_tokens": 1234, "completion_tokens": 0}, "stream": false }';
    const n = String.UTF8.byteLength(text);
    for (let i = 1; i < n; i++) {
      const s = scanSplit(text, i);
      expect(s.finish()).toBe(true, "split at " + i.toString());
      expect(s.string(MODEL)).toBe("mé😀é");
      expect(s.number(PROMPT)).toBe(1234);
      expect(s.state(COMPLETION)).toBe(PRESENT);
      expect(s.number(COMPLETION)).toBe(0);
      expect(s.bool(STREAM)).toBe(false);
    }
  });

  it("ignores keys below other objects and in arrays", () => {
    const s = scanWhole('{"x":{"model":"a","usage":{"prompt_tokens":1}},"y":[{"model":"b"}]}');
    expect(s.finish()).toBe(true);
    expect(s.state(MODEL)).toBe(ABSENT);
    expect(s.state(PROMPT)).toBe(ABSENT);
  });

  it("marks wrong types invalid", () => {
    const s = scanWhole('{"model":1,"stream":"yes","usage":{"prompt_tokens":-1,"completion_tokens":2.0}}');
    expect(s.finish()).toBe(true);
    expect(s.state(MODEL)).toBe(INVALID);
    expect(s.state(STREAM)).toBe(INVALID);
    expect(s.state(PROMPT)).toBe(INVALID);
    expect(s.state(COMPLETION)).toBe(INVALID);
  });

  it("forgets an object's members when the key appears again", () => {
    const s = scanWhole('{"usage":{"prompt_tokens":1,"completion_tokens":2},"usage":null}');
    expect(s.finish()).toBe(true);
    expect(s.state(PROMPT)).toBe(ABSENT);
    expect(s.state(COMPLETION)).toBe(ABSENT);
  });

  it("rejects what JSON.parse rejects", () => {
    const bad: string[] = [
      "",
      "{",
      "{}x",
      '{"a":}',
      '{"a" 1}',
      "[1,]",
      "01",
      "1.",
      "-",
      "1e",
      '"\\u12"',
      '"\\q"',
      "tru",
      "nul",
      '{"a":1,}',
      "{'a':1}",
      "[1 2]",
      "]",
    ];
    for (let i = 0; i < bad.length; i++) {
      const s = scanWhole(bad[i]);
      expect(s.failed).toBe(true, bad[i]);
    }
  });

  it("accepts what JSON.parse accepts", () => {
    const good: string[] = [
      "0",
      "-0.5e-7",
      '"x"',
      "true",
      "null",
      "[]",
      "{}",
      " [ [ ] , { } ] ",
      '{"":{"":[]}}',
      '"\\/\\b\\f\\n\\r\\t"',
    ];
    for (let i = 0; i < good.length; i++) {
      const s = scanWhole(good[i]);
      expect(s.failed).toBe(false, good[i]);
    }
  });

  it("reports truncation and excessive depth", () => {
    const t = scanWhole('{"model":"m"');
    expect(t.error).toBe(ERR_TRUNCATED);
    const deep = scanWhole("[".repeat(2000));
    expect(deep.error).toBe(ERR_DEPTH);
    const syntax = scanWhole("{]");
    expect(syntax.error).toBe(ERR_SYNTAX);
  });

  it("is reusable after reset", () => {
    const s = new JsonScanner(schema);
    const a = String.UTF8.encode('{"model":"first"');
    s.feed(changetype<usize>(a), a.byteLength);
    s.reset();
    const b = String.UTF8.encode('{"model":"second"}');
    s.feed(changetype<usize>(b), b.byteLength);
    expect(s.finish()).toBe(true);
    expect(s.string(MODEL)).toBe("second");
  });
});

// SPDX-License-Identifier: Apache-2.0
// Inserting members before a body's top-level closing brace as it passes: the same result for
// every split of the body, into chunks down to one byte, and valid JSON whatever the white space.

import { JsonScanner } from "../llm/json";
import { REQUEST_SCHEMA, REQUEST_MODEL } from "../llm/formats";
import { ClosingBrace, members, jsonString } from "../llm/rewrite";

/**
 * Feeds `text` in chunks cut at the offsets in `cuts` (ascending) and rebuilds what goes on:
 * each chunk as it came, with `insert` placed before the closing brace when the model is absent.
 */
function pass(text: string, cuts: i32[], insert: string): string {
  const scanner = new JsonScanner(REQUEST_SCHEMA);
  const brace = new ClosingBrace();
  const bytes = String.UTF8.encode(text);
  const p = changetype<usize>(bytes);
  let out = "";
  let from = 0;
  for (let i = 0; i <= cuts.length; i++) {
    const to = i < cuts.length ? cuts[i] : bytes.byteLength;
    const chunk = String.UTF8.decodeUnsafe(p + <usize>from, <usize>(to - from));
    const at = brace.feed(scanner, p + <usize>from, <usize>(to - from));
    if (at >= 0 && scanner.state(REQUEST_MODEL) == 0) {
      const text = members(jsonString(insert), -1, "", brace.empty);
      out += chunk.substring(0, <i32>at) + text + chunk.substring(<i32>at);
    } else {
      out += chunk;
    }
    from = to;
  }
  return out;
}

function everySplit(text: string, expected: string): void {
  const n = String.UTF8.byteLength(text);
  expect(pass(text, [], "m")).toBe(expected);
  for (let i = 1; i < n; i++) expect(pass(text, [i], "m")).toBe(expected);
  for (let i = 1; i + 1 < n; i++) expect(pass(text, [i, i + 1], "m")).toBe(expected);
  const bytes: i32[] = [];
  for (let i = 1; i < n; i++) bytes.push(i);
  expect(pass(text, bytes, "m")).toBe(expected);
}

describe("ClosingBrace", () => {
  it("inserts before the closing brace of the seed's body at every split", () => {
    everySplit(
      '{\n  "messages": [\n    {"role": "user", "content": "Please introduce yourself."}\n  ]\n}',
      '{\n  "messages": [\n    {"role": "user", "content": "Please introduce yourself."}\n  ]\n,"model":"m"}',
    );
  });
  it("finds the brace when white space follows it in later chunks", () => {
    everySplit('{"a":1}  \n\r\n', '{"a":1,"model":"m"}  \n\r\n');
  });
  it("adds no comma to an empty object, whatever white space and split", () => {
    everySplit("{}", '{"model":"m"}');
    everySplit(" {  \n } ", ' {  \n "model":"m"} ');
  });
  it("ignores braces inside strings and nested objects", () => {
    everySplit('{"x":{"y":"}"},"z":"{}"}', '{"x":{"y":"}"},"z":"{}","model":"m"}');
  });
  it("adds nothing when the model is there, even last", () => {
    everySplit('{"messages":[],"model":"own"}', '{"messages":[],"model":"own"}');
  });
  it("adds nothing to an array, a string or an invalid body", () => {
    everySplit("[1,{}]", "[1,{}]");
    everySplit('"{}"', '"{}"');
    everySplit('{"a":}', '{"a":}');
    everySplit('{"a":1', '{"a":1');
  });
});

describe("members", () => {
  it("joins model, stream and extra text, with the comma only after other members", () => {
    expect(members(jsonString("qwen-turbo"), 1, ',"x":1', false)).toBe(
      ',"model":"qwen-turbo","stream":true,"x":1',
    );
    expect(members(null, 0, "", true)).toBe('"stream":false');
    expect(members(null, -1, "", false)).toBe("");
  });
  it("escapes what JSON requires", () => {
    expect(jsonString('a"b\\c\n\t\u0001é')).toBe('"a\\"b\\\\c\\n\\t\\u0001é"');
  });
});

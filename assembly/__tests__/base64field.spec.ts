// SPDX-License-Identifier: Apache-2.0
// The `bytes` field of InvokeModelWithResponseStream chunks: base64 decoded into the scanner.

import { JsonScanner } from "../llm/json";
import { NATIVE_SCHEMA } from "../llm/formats";
import { Usage } from "../llm/usage";
import { Base64Field } from "../llm/base64field";

const scanner = new JsonScanner(NATIVE_SCHEMA);
const field = new Base64Field();

/** Feeds the payload split at `at`; returns the decoded document's completion tokens, or -2. */
function decode(payload: string, at: i32): i64 {
  scanner.reset();
  field.reset();
  const b = String.UTF8.encode(payload);
  const p = changetype<usize>(b);
  const n = b.byteLength;
  const cut = at < n ? at : n;
  field.feed(p, <usize>cut, scanner);
  field.feed(p + <usize>cut, <usize>(n - cut), scanner);
  if (!field.ok || !scanner.finish()) return -2;
  const u = new Usage();
  u.add(scanner);
  return u.completion;
}

describe("Base64Field", () => {
  it("decodes every padding at every split point", () => {
    // {"eval_count":7} plus 0, 1 and 2 spaces: padding "=", "==" and none.
    const cases = [
      '{"bytes":"eyJldmFsX2NvdW50Ijo3fQ=="}',
      '{"bytes":"eyJldmFsX2NvdW50Ijo3fSA="}',
      '{"p":"x","bytes" : "eyJldmFsX2NvdW50Ijo3fSAg","p":"y"}',
    ];
    for (let c = 0; c < cases.length; c++) {
      const n = cases[c].length;
      for (let i = 0; i <= n; i++)
        expect(decode(cases[c], i)).toBe(7, cases[c] + " split at " + i.toString());
    }
  });

  it("takes an escaped slash and refuses what is not base64", () => {
    // {"eval_count":7,"x":"???"} has a "/" in its base64.
    expect(decode('{"bytes":"eyJldmFsX2NvdW50Ijo3LCJ4IjoiPz8\\/In0="}', 5)).toBe(7);
    expect(decode('{"bytes":"eyJldmFsX2NvdW50Ijo3fQ==', 0)).toBe(-2); // the string never closes
    expect(decode('{"bytes":"eyJldmFsX2NvdW50Ijo3f!=="}', 0)).toBe(-2);
    expect(decode('{"bytes":"eyJldmFsX2NvdW50Ijo3fQ=a"}', 0)).toBe(-2);
    expect(decode('{"bytes":"eyJldmFsX2NvdW50Ijo3fQ\\n"}', 0)).toBe(-2);
    expect(decode('{"bytes":1}', 0)).toBe(-2);
    expect(decode('{"other":"eyJldmFsX2NvdW50Ijo3fQ=="}', 0)).toBe(-2);
  });
});

// SPDX-License-Identifier: Apache-2.0
// Arrays of objects in a schema (`name[]`): each element is read as the node's object, and each
// integer below it is the sum over the elements, whatever the chunking.

import { Schema, KIND_STRING, KIND_INT } from "../llm/schema";
import { JsonScanner, PRESENT, INVALID, ABSENT } from "../llm/json";

const schema = new Schema();
const MODEL = schema.add("model", KIND_STRING);
const TOKENS = schema.add("predictions[].embeddings.statistics.token_count", KIND_INT);
const OTHER = schema.add("predictions[].n", KIND_INT);

function scan(text: string, cuts: i32[] = []): JsonScanner {
  const s = new JsonScanner(schema);
  const bytes = String.UTF8.encode(text);
  const p = changetype<usize>(bytes);
  let from = 0;
  for (let i = 0; i < cuts.length; i++) {
    s.feed(p + <usize>from, <usize>(cuts[i] - from));
    from = cuts[i];
  }
  s.feed(p + <usize>from, <usize>(bytes.byteLength - from));
  s.finish();
  return s;
}

const TWO =
  '{"predictions":[{"embeddings":{"statistics":{"truncated":false,"token_count":6},"values":[0.1,-2e-3]}},' +
  '{"embeddings":{"values":[1,2],"statistics":{"token_count":9,"truncated":true}},"n":4}],' +
  '"metadata":{"billableCharacterCount":30},"model":"m"}';

describe("JsonScanner, arrays of objects", () => {
  it("sums an integer over the elements that have it", () => {
    const s = scan(TWO);
    expect(s.finish()).toBe(true);
    expect(s.state(TOKENS)).toBe(PRESENT);
    expect(s.number(TOKENS)).toBe(15);
    expect(s.number(OTHER)).toBe(4);
    expect(s.string(MODEL)).toBe("m");
  });

  it("gives the same sums at every split point", () => {
    const n = String.UTF8.byteLength(TWO);
    for (let i = 1; i < n; i++) {
      const s = scan(TWO, [i]);
      expect(s.finish()).toBe(true, "split at " + i.toString());
      expect(s.number(TOKENS)).toBe(15, "split at " + i.toString());
      expect(s.number(OTHER)).toBe(4);
    }
    const bytes: i32[] = [];
    for (let i = 1; i < n; i++) bytes.push(i);
    expect(scan(TWO, bytes).number(TOKENS)).toBe(15);
  });

  it("is absent without elements that have it, and for an empty array", () => {
    expect(scan('{"predictions":[]}').state(TOKENS)).toBe(ABSENT);
    expect(scan('{"predictions":[{"embeddings":{}},{"n":1}]}').state(TOKENS)).toBe(ABSENT);
    expect(scan('{"predictions":[{"embeddings":{}},{"n":1}]}').number(OTHER)).toBe(1);
  });

  it("is invalid when one element's value is not a whole number, or the array is not one", () => {
    const bad = scan('{"predictions":[{"n":1},{"n":1.5},{"n":2}]}');
    expect(bad.finish()).toBe(true);
    expect(bad.state(OTHER)).toBe(INVALID);
    expect(scan('{"predictions":{"n":1}}').state(OTHER)).not.toBe(PRESENT);
    expect(scan('{"predictions":[[{"n":1}],7,"x",{"n":2}]}').number(OTHER)).toBe(2);
  });

  it("takes the last array of a repeated key, and no element of an array elsewhere", () => {
    expect(scan('{"predictions":[{"n":1},{"n":2}],"predictions":[{"n":5}]}').number(OTHER)).toBe(5);
    expect(scan('{"x":{"predictions":[{"n":1}]},"y":[{"n":2}]}').state(OTHER)).toBe(ABSENT);
  });

  it("keeps the last value of a key repeated within one element", () => {
    expect(scan('{"predictions":[{"n":1,"n":2},{"n":3}]}').number(OTHER)).toBe(5);
  });

  it("reads nothing from a document that is not valid JSON", () => {
    const s = scan('{"predictions":[{"n":1},{"n":2}]');
    expect(s.finish()).toBe(false);
  });
});

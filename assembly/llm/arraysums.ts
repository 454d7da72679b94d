// SPDX-License-Identifier: Apache-2.0
// The sums a JsonScanner keeps below an array of objects (a schema key written `name[]`): each
// element is read as that key's object; when it closes, each integer below the key that it had
// joins the sum (invalid if it was invalid, or the sum passes 2^53 - 1); when the array closes,
// each integer's result is its sum. Pure: no host imports.

import { Schema, KIND_INT } from "./schema";

/** Field states, as in json.ts. */
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;
const INVALID: u8 = 2;
const MAX_SAFE_INT: u64 = 9007199254740991;

/** Steps of the sums below an array of objects. */
export const SUM_OPEN: u8 = 0;
export const SUM_ELEMENT: u8 = 1;
export const SUM_ARRAY: u8 = 2;

export class ArraySums {
  private readonly schema: Schema;
  /** The scanner's results, which the sums are read from and written to. */
  private readonly values: StaticArray<u8>;
  private readonly numbers: StaticArray<u64>;
  private sums: StaticArray<u64>;
  private states: StaticArray<u8>;

  constructor(schema: Schema, states: StaticArray<u8>, numbers: StaticArray<u64>) {
    this.schema = schema;
    this.values = states;
    this.numbers = numbers;
    this.sums = new StaticArray<u64>(schema.size);
    this.states = new StaticArray<u8>(schema.size);
  }

  /**
   * One step for the integers below `node`: the array opens (no element summed yet), an element
   * closes (its values join the sums), the array closes (each value becomes its sum). Returns the
   * scanner's `present` bits of the values made present.
   */
  step(node: i32, step: u8): u64 {
    const schema = this.schema;
    const states = this.values;
    const numbers = this.numbers;
    let present: u64 = 0;
    const below = unchecked(schema.descendants[node]);
    for (let i = 0, n = below.length; i < n; i++) {
      const b = unchecked(below[i]);
      if (unchecked(schema.kinds[b]) != KIND_INT) continue;
      const total = unchecked(this.states[b]);
      if (step == SUM_OPEN) {
        unchecked((this.states[b] = ABSENT));
        unchecked((this.sums[b] = 0));
      } else if (step == SUM_ARRAY) {
        unchecked((states[b] = total));
        unchecked((numbers[b] = unchecked(this.sums[b])));
        if (total == PRESENT) present |= b < 64 ? (<u64>1) << (<u64>b) : ~(<u64>0);
      } else {
        const state = unchecked(states[b]);
        if (state == ABSENT || total == INVALID) continue;
        const sum = unchecked(this.sums[b]) + unchecked(numbers[b]);
        unchecked((this.states[b] = state == PRESENT && sum <= MAX_SAFE_INT ? PRESENT : INVALID));
        unchecked((this.sums[b] = sum));
      }
    }
    return present;
  }
}

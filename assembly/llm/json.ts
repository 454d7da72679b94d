// SPDX-License-Identifier: Apache-2.0
// An incremental, validating JSON scanner that keeps only the values a Schema names.
//
// Bodies reach the plugin in chunks that split anywhere: inside a number, an escape, a multi-byte
// character. The scanner is a byte-level state machine whose whole state lives in this object, so
// `feed` can stop at any byte and resume with the next chunk. It never recurses (nesting is a
// bit stack, capped at MAX_DEPTH), never allocates after construction, and never throws: a syntax
// error moves it to a terminal error state. It checks the document strictly (RFC 8259, including
// UTF-8), so a body that JSON.parse would refuse yields nothing.
//
// Duplicate keys: the last occurrence wins, as with JSON.parse; an occurrence of the wrong type
// makes the field invalid rather than leaving an earlier value in place.
// Below a key `name[]`, an array of objects, integers are summed over the elements (arraysums.ts).
// Pure: no host imports.

import {
  Schema,
  KIND_OBJECT,
  KIND_STRING,
  KIND_INT,
  KIND_BOOL,
  KIND_ARRAY,
  MAX_KEY_BYTES,
  MAX_STRING_BYTES,
} from "./schema";
import { ArraySums, SUM_OPEN, SUM_ELEMENT, SUM_ARRAY } from "./arraysums";

/** Field states. */
export const ABSENT: u8 = 0;
export const PRESENT: u8 = 1;
export const INVALID: u8 = 2;

/** Deepest nesting accepted; deeper documents are treated as unparseable. */
export const MAX_DEPTH: i32 = 1024;
/** Schema keys are only looked for in objects this close to the top. */
const MAX_MATCH_DEPTH: i32 = 8;
/** Largest integer kept: Number.MAX_SAFE_INTEGER, so values agree with any JSON reader. */
const MAX_SAFE_INT: u64 = 9007199254740991;

// Scanner modes.
const M_VALUE: u8 = 0; // a value must follow
const M_ARRAY_FIRST: u8 = 1; // after '[': a value or ']'
const M_OBJECT_FIRST: u8 = 2; // after '{': a key or '}'
const M_KEY: u8 = 3; // after ',' in an object: a key
const M_COLON: u8 = 4;
const M_AFTER: u8 = 5; // after a value: ',' or a closing bracket, or the end
const M_STRING: u8 = 6;
const M_NUMBER: u8 = 7;
const M_LITERAL: u8 = 8;
const M_DONE: u8 = 9; // the top-level value is complete: only white space may follow
const M_ERROR: u8 = 10;

// Number sub-states (the grammar of RFC 8259 section 6).
const N_MINUS: u8 = 0;
const N_ZERO: u8 = 1;
const N_INT: u8 = 2;
const N_DOT: u8 = 3;
const N_FRAC: u8 = 4;
const N_E: u8 = 5;
const N_ESIGN: u8 = 6;
const N_EXP: u8 = 7;

// String escape sub-states.
const E_NONE: u8 = 0;
const E_BACKSLASH: u8 = 1;
const E_HEX: u8 = 2; // reading the 4 hex digits of \uXXXX

// What a string being read is captured into.
const CAP_NONE: i32 = -1;
const CAP_KEY: i32 = -2;

// Error codes, for log lines.
export const ERR_NONE: u8 = 0;
export const ERR_SYNTAX: u8 = 1;
export const ERR_DEPTH: u8 = 2;
export const ERR_TRUNCATED: u8 = 3;

const LITERAL_TRUE = memory.data<u8>([0x74, 0x72, 0x75, 0x65]);
const LITERAL_FALSE = memory.data<u8>([0x66, 0x61, 0x6c, 0x73, 0x65]);
const LITERAL_NULL = memory.data<u8>([0x6e, 0x75, 0x6c, 0x6c]);

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

/** One of 64 bits for a key's length and first byte. */
function keyBit(length: i32, first: u8): u64 {
  const bit = (<u32>length * 31 + <u32>first) & 63;
  return (<u64>1) << (<u64>bit);
}

function hexValue(c: u32): i32 {
  if (c - 0x30 < 10) return <i32>(c - 0x30);
  const l = c | 0x20;
  if (l - 0x61 < 6) return <i32>(l - 0x61 + 10);
  return -1;
}

export class JsonScanner {
  readonly schema: Schema;

  // Results, indexed by schema node.
  states: StaticArray<u8>;
  numbers: StaticArray<u64>;
  /** Per schema node, the keyBit of each of its children's keys. */
  keyFilter: StaticArray<u64>;
  stringLengths: StaticArray<i32>;
  strings: StaticArray<u8>;
  sums: ArraySums | null = null; // below arrays of objects, when the schema has a key `name[]`

  // Parse state.
  mode: u8 = M_VALUE;
  error: u8 = ERR_NONE;
  depth: i32 = 0;
  /** Bit d set: the container at depth d is an object. */
  containers: StaticArray<u64> = new StaticArray<u64>(MAX_DEPTH / 64 + 1);
  /** Schema node of the object at each depth below MAX_MATCH_DEPTH, or -1. */
  matchNodes: StaticArray<i32> = new StaticArray<i32>(MAX_MATCH_DEPTH + 1);
  /** Schema node the next value belongs to, or -1. */
  pending: i32 = -1;
  /**
   * Bit n set when node n (n < 64; any higher node sets every bit) has been PRESENT since the
   * last reset: a cheap first test before reading fields. It may be set for a field that was
   * forgotten or made invalid later, never clear for one that is present.
   */
  present: u64 = 0;
  /**
   * Offset, within the bytes of the `feed` call in which it happened, of the bracket that closed
   * the top-level object or array; -1 before that.
   */
  closedAt: isize = -1;

  // String state.
  keyString: bool = false;
  capture: i32 = CAP_NONE;
  captureLength: i32 = 0;
  captureBad: bool = false;
  escape: u8 = E_NONE;
  hexCount: i32 = 0;
  hexUnit: u32 = 0;
  highSurrogate: u32 = 0;
  utf8Remaining: i32 = 0;
  utf8Low: u32 = 0x80;
  utf8High: u32 = 0xbf;
  key: StaticArray<u8> = new StaticArray<u8>(MAX_KEY_BYTES);
  /** A key found whole in the current chunk: its address there (read before the chunk ends). */
  directKey: usize = 0;

  // Number state.
  numberState: u8 = N_MINUS;
  numberNode: i32 = -1;
  numberValue: u64 = 0;
  numberBad: bool = false;

  // Literal state.
  literal: usize = 0;
  literalLength: i32 = 0;
  literalIndex: i32 = 0;
  literalNode: i32 = -1;

  constructor(schema: Schema) {
    this.schema = schema;
    const n = schema.size;
    this.states = new StaticArray<u8>(n);
    this.numbers = new StaticArray<u64>(n);
    this.stringLengths = new StaticArray<i32>(n);
    this.strings = new StaticArray<u8>(schema.stringBytes);
    this.keyFilter = new StaticArray<u64>(n);
    if (schema.hasArrays) this.sums = new ArraySums(schema, this.states, this.numbers);
    for (let i = 1; i < n; i++) {
      const key = schema.keys[i];
      if (key.byteLength == 0) continue;
      const parent = schema.parents[i];
      const bit = keyBit(key.byteLength, load<u8>(changetype<usize>(key)));
      unchecked((this.keyFilter[parent] = unchecked(this.keyFilter[parent]) | bit));
    }
    this.reset();
  }

  /** Prepares for a new document; keeps the allocated storage. */
  reset(): void {
    this.mode = M_VALUE;
    this.error = ERR_NONE;
    this.closedAt = -1;
    this.depth = 0;
    this.pending = 0; // the top-level value, matched against the schema root
    this.capture = CAP_NONE;
    this.escape = E_NONE;
    this.highSurrogate = 0;
    this.utf8Remaining = 0;
    memory.fill(changetype<usize>(this.states), ABSENT, <usize>this.states.length);
    this.present = 0;
  }

  get failed(): bool {
    return this.mode == M_ERROR;
  }

  /**
   * Ends the document. True when it was one complete, valid JSON value with nothing but white
   * space after it; only then are the results meaningful.
   */
  finish(): bool {
    if (this.mode == M_NUMBER && this.depth == 0) {
      const s = this.numberState;
      if (s == N_ZERO || s == N_INT || s == N_FRAC || s == N_EXP) this.endNumber();
    }
    if (this.mode == M_DONE) return true;
    if (this.mode != M_ERROR) {
      this.mode = M_ERROR;
      this.error = ERR_TRUNCATED;
    }
    return false;
  }

  /** True when the whole document was valid and the field is present with the right type. */
  has(node: i32): bool {
    return unchecked(this.states[node]) == PRESENT;
  }

  state(node: i32): u8 {
    return unchecked(this.states[node]);
  }

  number(node: i32): u64 {
    return unchecked(this.numbers[node]);
  }

  bool(node: i32): bool {
    return unchecked(this.numbers[node]) != 0;
  }

  /** Pointer to a string field's UTF-8 bytes (valid until the next reset). */
  stringPtr(node: i32): usize {
    return changetype<usize>(this.strings) + <usize>unchecked(this.schema.stringOffsets[node]);
  }

  stringLength(node: i32): i32 {
    return unchecked(this.stringLengths[node]);
  }

  /** Decodes a string field into a new AssemblyScript string. */
  string(node: i32): string {
    return String.UTF8.decodeUnsafe(this.stringPtr(node), <usize>this.stringLength(node));
  }

  /** Scans `len` bytes at `ptr`. Can be called any number of times between reset and finish. */
  feed(ptr: usize, len: usize): void {
    const end = ptr + len;
    let p = ptr;
    while (p < end) {
      const mode = this.mode;
      if (mode == M_STRING) {
        p = this.scanString(p, end);
        continue;
      }
      if (mode == M_ERROR) return;
      const c = <u32>load<u8>(p);
      switch (mode) {
        case M_VALUE:
        case M_ARRAY_FIRST: {
          if (isSpace(c)) break;
          if (c == 0x5d && mode == M_ARRAY_FIRST) {
            this.close(false);
            if (this.mode == M_DONE) this.closedAt = <isize>(p - ptr);
            break;
          }
          this.startValue(c);
          break;
        }
        case M_OBJECT_FIRST:
        case M_KEY: {
          if (isSpace(c)) break;
          if (c == 0x22) {
            const d = this.depth;
            const matching = d < MAX_MATCH_DEPTH && unchecked(this.matchNodes[d]) >= 0;
            this.startString(true, matching ? CAP_KEY : CAP_NONE);
          } else if (c == 0x7d && mode == M_OBJECT_FIRST) {
            this.close(true);
            if (this.mode == M_DONE) this.closedAt = <isize>(p - ptr);
          } else {
            this.fail(ERR_SYNTAX);
          }
          break;
        }
        case M_COLON: {
          if (isSpace(c)) break;
          if (c == 0x3a) this.mode = M_VALUE;
          else this.fail(ERR_SYNTAX);
          break;
        }
        case M_AFTER: {
          if (isSpace(c)) break;
          const inObject = this.isObject(this.depth);
          if (c == 0x2c) {
            if (inObject) {
              this.mode = M_KEY;
            } else {
              this.mode = M_VALUE;
              this.pending = this.sums !== null ? this.elementNode(this.depth) : -1;
            }
          } else if (c == 0x7d && inObject) {
            this.close(true);
            if (this.mode == M_DONE) this.closedAt = <isize>(p - ptr);
          } else if (c == 0x5d && !inObject) {
            this.close(false);
            if (this.mode == M_DONE) this.closedAt = <isize>(p - ptr);
          } else {
            this.fail(ERR_SYNTAX);
          }
          break;
        }
        case M_NUMBER: {
          if (this.numberState == N_INT && c - 0x30 < 10) {
            // Digits of the integer part, in one run.
            let v = this.numberValue;
            let q = p;
            while (q < end) {
              const d = <u32>load<u8>(q) - 0x30;
              if (d >= 10) break;
              v = v * 10 + <u64>d;
              if (v > MAX_SAFE_INT) {
                this.numberBad = true;
                v = MAX_SAFE_INT;
              }
              q++;
            }
            this.numberValue = v;
            p = q;
            continue;
          }
          if (!this.numberByte(c)) continue; // the byte ends the number: look at it again
          break;
        }
        case M_LITERAL: {
          if (c != <u32>load<u8>(this.literal + <usize>this.literalIndex)) {
            this.fail(ERR_SYNTAX);
            break;
          }
          if (++this.literalIndex == this.literalLength) this.endLiteral();
          break;
        }
        case M_DONE: {
          if (!isSpace(c)) this.fail(ERR_SYNTAX);
          break;
        }
      }
      p++;
    }
  }

  // ---- values -------------------------------------------------------------------------------

  private startValue(c: u32): void {
    const node = this.pending;
    const kind = node >= 0 ? unchecked(this.schema.kinds[node]) : KIND_OBJECT;
    if (c == 0x7b) {
      // '{'
      let child = -1;
      if (node >= 0) {
        if (kind == KIND_OBJECT) {
          child = node;
          if (node > 0) this.markPresent(node);
        } else if (kind == KIND_ARRAY && !this.isObject(this.depth)) {
          child = node; // an element of the array: its members are read afresh
          this.forget(node);
        } else {
          unchecked((this.states[node] = INVALID));
        }
      }
      this.open(true, child);
    } else if (c == 0x5b) {
      // '['
      const array = node > 0 && kind == KIND_ARRAY && this.isObject(this.depth);
      if (array) this.present |= this.sums!.step(node, SUM_OPEN);
      else if (node > 0) unchecked((this.states[node] = INVALID));
      this.open(false, array ? node : -1); // its elements are then read as `node`
    } else if (c == 0x22) {
      // '"'
      let capture = CAP_NONE;
      if (node > 0) {
        if (kind == KIND_STRING) capture = node;
        else unchecked((this.states[node] = INVALID));
      }
      this.startString(false, capture);
    } else if (c == 0x2d || c - 0x30 < 10) {
      let capture = -1;
      if (node > 0) {
        if (kind == KIND_INT) capture = node;
        else unchecked((this.states[node] = INVALID));
      }
      this.mode = M_NUMBER;
      this.numberNode = capture;
      this.numberValue = 0;
      this.numberBad = false;
      if (c == 0x2d) {
        this.numberState = N_MINUS;
        this.numberBad = true; // a token count is never negative
      } else if (c == 0x30) {
        this.numberState = N_ZERO;
      } else {
        this.numberState = N_INT;
        this.numberValue = <u64>(c - 0x30);
      }
    } else if (c == 0x74 || c == 0x66 || c == 0x6e) {
      // true, false, null
      let capture = -1;
      if (node > 0) {
        if (kind == KIND_BOOL && c != 0x6e) capture = node;
        else unchecked((this.states[node] = INVALID));
      }
      this.mode = M_LITERAL;
      this.literalNode = capture;
      this.literalIndex = 1;
      if (c == 0x74) {
        this.literal = LITERAL_TRUE;
        this.literalLength = 4;
      } else if (c == 0x66) {
        this.literal = LITERAL_FALSE;
        this.literalLength = 5;
      } else {
        this.literal = LITERAL_NULL;
        this.literalLength = 4;
      }
    } else {
      this.fail(ERR_SYNTAX);
    }
  }

  // @ts-ignore: decorator
  @inline
  private endValue(): void {
    this.mode = this.depth == 0 ? M_DONE : M_AFTER;
  }

  // @ts-ignore: decorator
  @inline
  private open(isObject: bool, matchNode: i32): void {
    const d = this.depth + 1;
    if (d > MAX_DEPTH) {
      this.fail(ERR_DEPTH);
      return;
    }
    this.depth = d;
    this.pending = isObject ? -1 : matchNode;
    const word = d >>> 6;
    const shift = <u64>(d & 63);
    const bit: u64 = 1 << shift;
    const w = unchecked(this.containers[word]);
    unchecked((this.containers[word] = isObject ? w | bit : w & ~bit));
    if (d < MAX_MATCH_DEPTH) unchecked((this.matchNodes[d] = matchNode));
    this.mode = isObject ? M_OBJECT_FIRST : M_ARRAY_FIRST;
  }

  // @ts-ignore: decorator
  @inline
  private close(isObject: bool): void {
    if (this.isObject(this.depth) != isObject) {
      this.fail(ERR_SYNTAX);
      return;
    }
    if (this.sums !== null) this.closing(isObject);
    this.depth--;
    this.endValue();
  }

  // @ts-ignore: decorator
  @inline
  private isObject(d: i32): bool {
    return ((unchecked(this.containers[d >>> 6]) >>> (<u64>(d & 63))) & 1) != 0;
  }

  /** The array-of-objects node whose elements the array at depth d holds, or -1. */
  private elementNode(d: i32): i32 {
    return d > 0 && d < MAX_MATCH_DEPTH && !this.isObject(d) ? unchecked(this.matchNodes[d]) : -1;
  }

  /** The object or array at the current depth closes: an element's, or its array's, sums. */
  private closing(isObject: bool): void {
    const node = this.elementNode(isObject ? this.depth - 1 : this.depth);
    if (node >= 0) this.present |= this.sums!.step(node, isObject ? SUM_ELEMENT : SUM_ARRAY);
  }

  private fail(code: u8): void {
    this.mode = M_ERROR;
    this.error = code;
  }

  // ---- numbers ------------------------------------------------------------------------------

  /** Consumes c if it continues the number; returns false when c ends it. */
  private numberByte(c: u32): bool {
    const digit = c - 0x30 < 10;
    switch (this.numberState) {
      case N_MINUS: {
        if (!digit) break;
        this.numberState = c == 0x30 ? N_ZERO : N_INT;
        return true;
      }
      case N_ZERO:
      case N_INT: {
        if (digit && this.numberState == N_INT) {
          const v = this.numberValue * 10 + <u64>(c - 0x30);
          if (v > MAX_SAFE_INT) this.numberBad = true;
          else this.numberValue = v;
          return true;
        }
        if (c == 0x2e) {
          this.numberState = N_DOT;
          this.numberBad = true; // token counts are whole numbers
          return true;
        }
        if (c == 0x65 || c == 0x45) {
          this.numberState = N_E;
          this.numberBad = true;
          return true;
        }
        if (digit) break; // a digit after a leading zero
        this.endNumber();
        return false;
      }
      case N_DOT: {
        if (!digit) break;
        this.numberState = N_FRAC;
        return true;
      }
      case N_FRAC: {
        if (digit) return true;
        if (c == 0x65 || c == 0x45) {
          this.numberState = N_E;
          return true;
        }
        this.endNumber();
        return false;
      }
      case N_E: {
        if (c == 0x2b || c == 0x2d) {
          this.numberState = N_ESIGN;
          return true;
        }
        if (!digit) break;
        this.numberState = N_EXP;
        return true;
      }
      case N_ESIGN: {
        if (!digit) break;
        this.numberState = N_EXP;
        return true;
      }
      case N_EXP: {
        if (digit) return true;
        this.endNumber();
        return false;
      }
    }
    this.fail(ERR_SYNTAX);
    return true;
  }

  private endNumber(): void {
    const node = this.numberNode;
    if (node > 0) {
      if (this.numberBad) {
        unchecked((this.states[node] = INVALID));
      } else {
        this.markPresent(node);
        unchecked((this.numbers[node] = this.numberValue));
      }
    }
    this.endValue();
  }

  private endLiteral(): void {
    const node = this.literalNode;
    if (node > 0) {
      this.markPresent(node);
      unchecked((this.numbers[node] = this.literal == LITERAL_TRUE ? 1 : 0));
    }
    this.endValue();
  }

  // ---- strings ------------------------------------------------------------------------------

  /**
   * One bit per byte of the 16 at p, set where the byte is special: '"' or '\\', or outside
   * 0x20..0x7e ((b - 0x20) > 0x5e unsigned). SIMD builds only.
   */
  // @ts-ignore: decorator
  @inline
  private static specialMask(p: usize): i32 {
    const v = v128.load(p);
    const special = v128.or(
      v128.or(i8x16.eq(v, i8x16.splat(0x22)), i8x16.eq(v, i8x16.splat(0x5c))),
      i8x16.gt_u(i8x16.sub(v, i8x16.splat(0x20)), i8x16.splat(0x5e)),
    );
    return i8x16.bitmask(special);
  }

  /**
   * Where the run of plain ASCII bytes starting at p ends, 16 bytes at a time where the build has
   * SIMD (the caller finishes the last few bytes, and checks the byte found, one by one).
   */
  // @ts-ignore: decorator
  @inline
  private static plainRun(p: usize, end: usize): usize {
    if (ASC_FEATURE_SIMD) {
      if (p + 16 <= end) {
        // Most strings are short: one test first.
        const mask = JsonScanner.specialMask(p);
        if (mask != 0) return p + <usize>ctz(mask);
        p += 16;
      }
      while (p + 16 <= end) {
        const mask = JsonScanner.specialMask(p);
        if (mask != 0) return p + <usize>ctz(mask);
        p += 16;
      }
    }
    return p;
  }

  // @ts-ignore: decorator
  @inline
  private startString(isKey: bool, capture: i32): void {
    this.mode = M_STRING;
    this.keyString = isKey;
    this.capture = capture;
    this.directKey = 0;
    this.captureLength = 0;
    this.captureBad = false;
    this.escape = E_NONE;
    this.highSurrogate = 0;
    this.utf8Remaining = 0;
    this.utf8Low = 0x80;
    this.utf8High = 0xbf;
  }

  /** Scans string bytes from p; returns the position after what it consumed. */
  private scanString(p: usize, end: usize): usize {
    const capturing = this.capture != CAP_NONE;
    while (p < end) {
      const c = <u32>load<u8>(p);
      if (this.utf8Remaining > 0) {
        if (c < this.utf8Low || c > this.utf8High) {
          this.fail(ERR_SYNTAX);
          return end;
        }
        this.utf8Low = 0x80;
        this.utf8High = 0xbf;
        this.utf8Remaining--;
        if (capturing) this.append(c);
        p++;
        continue;
      }
      if (this.escape != E_NONE) {
        this.escapeByte(c);
        if (this.mode == M_ERROR) return end;
        p++;
        continue;
      }
      // Fast path: a run of plain ASCII (no quote, backslash, control character or DEL), taken
      // whole and, when the string is kept, copied at once.
      let q = JsonScanner.plainRun(p, end);
      while (q < end) {
        const b = <u32>load<u8>(q);
        if (b == 0x22 || b == 0x5c || b < 0x20 || b >= 0x7f) break;
        q++;
      }
      if (q > p) {
        if (capturing) {
          if (
            this.capture == CAP_KEY &&
            this.captureLength == 0 &&
            q < end &&
            load<u8>(q) == 0x22 &&
            this.highSurrogate == 0
          ) {
            // A whole key within this chunk: matched in place, without a copy.
            this.directKey = p;
            this.captureLength = <i32>(q - p);
          } else {
            this.appendRun(p, q - p);
          }
        }
        p = q;
        if (p == end) return p;
      }
      const b = <u32>load<u8>(p);
      if (this.highSurrogate != 0 && b != 0x5c) this.loneSurrogate();
      if (b == 0x22) {
        this.endString();
        return p + 1;
      }
      if (b == 0x5c) {
        this.escape = E_BACKSLASH;
      } else if (b < 0x20) {
        this.fail(ERR_SYNTAX);
        return end;
      } else if (b < 0x80) {
        if (capturing) this.append(b);
      } else {
        // A UTF-8 lead byte: how many continuation bytes, and the range of the first one
        // (which rules out overlong forms, surrogates and code points above U+10FFFF).
        if (b >= 0xc2 && b <= 0xdf) {
          this.utf8Remaining = 1;
        } else if (b >= 0xe0 && b <= 0xef) {
          this.utf8Remaining = 2;
          if (b == 0xe0) this.utf8Low = 0xa0;
          else if (b == 0xed) this.utf8High = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
          this.utf8Remaining = 3;
          if (b == 0xf0) this.utf8Low = 0x90;
          else if (b == 0xf4) this.utf8High = 0x8f;
        } else {
          this.fail(ERR_SYNTAX);
          return end;
        }
        if (capturing) this.append(b);
      }
      p++;
    }
    return p;
  }

  private escapeByte(c: u32): void {
    if (this.escape == E_HEX) {
      const h = hexValue(c);
      if (h < 0) {
        this.fail(ERR_SYNTAX);
        return;
      }
      this.hexUnit = (this.hexUnit << 4) | (<u32>h);
      if (++this.hexCount == 4) {
        this.escape = E_NONE;
        this.codeUnit(this.hexUnit);
      }
      return;
    }
    // After a backslash.
    let decoded: u32 = 0;
    switch (c) {
      case 0x22:
      case 0x5c:
      case 0x2f:
        decoded = c;
        break;
      case 0x62:
        decoded = 0x08;
        break;
      case 0x66:
        decoded = 0x0c;
        break;
      case 0x6e:
        decoded = 0x0a;
        break;
      case 0x72:
        decoded = 0x0d;
        break;
      case 0x74:
        decoded = 0x09;
        break;
      case 0x75:
        this.escape = E_HEX;
        this.hexCount = 0;
        this.hexUnit = 0;
        return;
      default:
        this.fail(ERR_SYNTAX);
        return;
    }
    this.escape = E_NONE;
    if (this.highSurrogate != 0) this.loneSurrogate();
    if (this.capture != CAP_NONE) this.append(decoded);
  }

  /** A UTF-16 code unit from a \u escape. */
  private codeUnit(u: u32): void {
    if (u >= 0xdc00 && u <= 0xdfff) {
      if (this.highSurrogate == 0) {
        this.loneSurrogate();
        return;
      }
      const cp = 0x10000 + ((this.highSurrogate - 0xd800) << 10) + (u - 0xdc00);
      this.highSurrogate = 0;
      this.appendCodePoint(cp);
      return;
    }
    if (this.highSurrogate != 0) this.loneSurrogate();
    if (u >= 0xd800 && u <= 0xdbff) {
      this.highSurrogate = u;
      return;
    }
    this.appendCodePoint(u);
  }

  private loneSurrogate(): void {
    this.highSurrogate = 0;
    this.captureBad = true; // valid JSON, but not valid Unicode: never kept
  }

  private appendCodePoint(cp: u32): void {
    if (this.capture == CAP_NONE) return;
    if (cp < 0x80) {
      this.append(cp);
    } else if (cp < 0x800) {
      this.append(0xc0 | (cp >> 6));
      this.append(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      this.append(0xe0 | (cp >> 12));
      this.append(0x80 | ((cp >> 6) & 0x3f));
      this.append(0x80 | (cp & 0x3f));
    } else {
      this.append(0xf0 | (cp >> 18));
      this.append(0x80 | ((cp >> 12) & 0x3f));
      this.append(0x80 | ((cp >> 6) & 0x3f));
      this.append(0x80 | (cp & 0x3f));
    }
  }

  /** Appends plain ASCII bytes (never control characters) to the string being kept. */
  private appendRun(ptr: usize, n: usize): void {
    if (this.highSurrogate != 0) this.loneSurrogate();
    const capture = this.capture;
    const length = this.captureLength;
    const room = capture == CAP_KEY ? MAX_KEY_BYTES : MAX_STRING_BYTES;
    if (length < room) {
      const take = <usize>(room - length) < n ? <usize>(room - length) : n;
      const base =
        capture == CAP_KEY
          ? changetype<usize>(this.key)
          : changetype<usize>(this.strings) + <usize>unchecked(this.schema.stringOffsets[capture]);
      memory.copy(base + <usize>length, ptr, take);
    }
    this.captureLength = length + <i32>n;
  }

  private append(b: u32): void {
    const capture = this.capture;
    const n = this.captureLength;
    if (capture == CAP_KEY) {
      if (n < MAX_KEY_BYTES) unchecked((this.key[n] = <u8>b));
      this.captureLength = n + 1;
      return;
    }
    // A kept string value: control characters never belong in a model name or a label.
    if (b < 0x20 || b == 0x7f) this.captureBad = true;
    if (n < MAX_STRING_BYTES) {
      const offset = unchecked(this.schema.stringOffsets[capture]);
      unchecked((this.strings[offset + n] = <u8>b));
    }
    this.captureLength = n + 1;
  }

  private endString(): void {
    if (this.highSurrogate != 0) this.loneSurrogate();
    const capture = this.capture;
    this.capture = CAP_NONE;
    if (this.keyString) {
      this.mode = M_COLON;
      let node = -1;
      const n = this.captureLength;
      if (capture == CAP_KEY && n <= MAX_KEY_BYTES && !this.captureBad) {
        const parent = unchecked(this.matchNodes[this.depth]);
        const key = this.directKey != 0 ? this.directKey : changetype<usize>(this.key);
        // Most keys are in no schema: a bit per (length, first byte) of the parent's keys rules
        // them out before any comparison.
        if (n > 0 && (unchecked(this.keyFilter[parent]) & keyBit(n, load<u8>(key))) != 0) {
          node = this.schema.find(parent, key, n);
        }
      }
      this.pending = node;
      if (node > 0) this.forget(node);
      return;
    }
    if (capture >= 0) {
      const n = this.captureLength;
      if (this.captureBad || n > MAX_STRING_BYTES) {
        unchecked((this.states[capture] = INVALID));
      } else {
        this.markPresent(capture);
        unchecked((this.stringLengths[capture] = n));
      }
    }
    this.endValue();
  }

  // @ts-ignore: decorator
  @inline
  private markPresent(node: i32): void {
    unchecked((this.states[node] = PRESENT));
    this.present |= node < 64 ? (<u64>1) << (<u64>node) : ~(<u64>0);
  }

  /** A new occurrence of a key: forget what an earlier one (and its members) said. */
  private forget(node: i32): void {
    unchecked((this.states[node] = ABSENT));
    const below = unchecked(this.schema.descendants[node]);
    for (let i = 0, n = below.length; i < n; i++) unchecked((this.states[unchecked(below[i])] = ABSENT));
  }
}

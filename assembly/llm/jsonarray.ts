// SPDX-License-Identifier: Apache-2.0
// An incremental reader of a JSON array streamed element by element (Gemini's
// `:streamGenerateContent` without `alt=sse`: `[{...}\r\n,{...}\r\n]`). Each element, an object
// or array, is fed straight into the JsonScanner as its bytes pass and merged when it closes; the
// reader itself follows only the array's punctuation, string quoting and bracket depth. A body
// that is one object is read as a one-element stream. Nothing of the body is kept.
// Pure: no host imports.

import { MessageReader } from "./reader";

const A_START: u8 = 0; // before the body's first value
const A_FIRST: u8 = 1; // after '[': an element or ']'
const A_NEXT: u8 = 2; // after ',': an element
const A_ELEMENT: u8 = 3; // inside an element
const A_AFTER: u8 = 4; // after an element: ',' or ']'
const A_DONE: u8 = 5; // after the array: white space only
const A_ERROR: u8 = 6;

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

export class JsonArrayReader extends MessageReader {
  private state: u8 = A_START;
  private depth: i32 = 0;
  private inString: bool = false;
  private escaped: bool = false;
  /** The body is a single object rather than an array. */
  private single: bool = false;

  reset(): void {
    super.reset();
    this.state = A_START;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.single = false;
  }

  feed(ptr: usize, len: usize): void {
    const end = ptr + len;
    let p = ptr;
    while (p < end) {
      if (this.state == A_ELEMENT) {
        p = this.element(p, end);
        continue;
      }
      if (this.state == A_ERROR) return;
      const c = <u32>load<u8>(p);
      if (!isSpace(c)) this.between(c);
      if (this.state == A_ELEMENT) continue; // the byte opens an element: element() reads it
      p++;
    }
  }

  /** A byte outside any element. */
  private between(c: u32): void {
    const state = this.state;
    if (state == A_START) {
      if (c == 0x5b) this.state = A_FIRST;
      else if (c == 0x7b) {
        this.single = true;
        this.state = A_ELEMENT;
      } else this.fail();
    } else if (state == A_FIRST || state == A_NEXT) {
      if (c == 0x7b || c == 0x5b) this.state = A_ELEMENT;
      else if (c == 0x5d && state == A_FIRST) this.state = A_DONE;
      else this.fail();
    } else if (state == A_AFTER) {
      if (c == 0x2c) this.state = A_NEXT;
      else if (c == 0x5d) this.state = A_DONE;
      else this.fail();
    } else if (state == A_DONE) {
      this.fail();
    }
  }

  /** Reads element bytes from p; returns where the element ended or the chunk did. */
  private element(p: usize, end: usize): usize {
    let q = p;
    let depth = this.depth;
    let inString = this.inString;
    let escaped = this.escaped;
    let closed = false;
    while (q < end) {
      const c = load<u8>(q);
      q++;
      if (inString) {
        if (escaped) escaped = false;
        else if (c == 0x5c) escaped = true;
        else if (c == 0x22) inString = false;
      } else if (c == 0x22) {
        inString = true;
      } else if (c == 0x7b || c == 0x5b) {
        depth++;
      } else if (c == 0x7d || c == 0x5d) {
        if (--depth == 0) {
          closed = true;
          break;
        }
      }
    }
    this.scanner.feed(p, q - p);
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    if (closed) {
      this.dispatch(true);
      this.state = this.single ? A_DONE : A_AFTER;
    }
    return q;
  }

  private fail(): void {
    if (this.state != A_ERROR) this.invalidEvents++;
    this.state = A_ERROR;
  }

  finish(ended: bool = true): void {
    const state = this.state;
    if (state == A_ELEMENT) {
      if (ended) this.invalidEvents++; // cut inside an element
      this.scanner.reset();
    } else if (ended && state != A_DONE && state != A_ERROR) {
      this.invalidEvents++; // the array was not closed (or the body was empty)
    }
  }
}

// SPDX-License-Identifier: Apache-2.0
// An incremental server-sent-events reader (text/event-stream, as the HTML standard defines it)
// that feeds each event's `data` straight into a JsonScanner as the bytes pass: nothing of the
// stream is copied or kept, and the state is a few fields whatever the stream's length.
//
// Lines end with LF, CRLF or CR; a CRLF split across chunks is one line end. Several `data:`
// lines in one event are joined with a newline, as the standard says. A blank line ends the
// event; its data must be one complete JSON document (or `[DONE]`). Other fields (`event:`,
// `id:`, `retry:`) and comment lines are skipped. At the end of the stream, an event that lacks
// its blank line still counts when its data is a complete JSON document. Pure: no host imports.

import { MessageReader } from "./reader";

const NAME_DATA = memory.data<u8>([0x64, 0x61, 0x74, 0x61]); // "data"
const DONE = memory.data<u8>([0x5b, 0x44, 0x4f, 0x4e, 0x45, 0x5d]); // "[DONE]"
const MAX_NAME: i32 = 8;

// Where in a line the reader is.
const L_NAME: u8 = 0;
const L_VALUE_START: u8 = 1; // just after the colon: one space may be skipped
const L_DATA: u8 = 2; // in the value of a data field
const L_SKIP: u8 = 3; // in a comment or another field

/** A MessageReader whose messages are events: `events` and `invalidEvents` count them. */
export class SseReader extends MessageReader {
  private line: u8 = L_NAME;
  private afterCR: bool = false;
  private name: StaticArray<u8> = new StaticArray<u8>(MAX_NAME);
  private nameLength: i32 = 0;
  private isData: bool = false;
  private dataLines: i32 = 0;
  private doneMatch: i32 = 0;
  doneSeen: bool = false;

  reset(): void {
    super.reset();
    this.line = L_NAME;
    this.afterCR = false;
    this.nameLength = 0;
    this.dataLines = 0;
    this.doneMatch = 0;
    this.doneSeen = false;
  }

  feed(ptr: usize, len: usize): void {
    const end = ptr + len;
    let p = ptr;
    while (p < end) {
      let c = <u32>load<u8>(p);
      if (this.afterCR) {
        this.afterCR = false;
        if (c == 0x0a) {
          p++;
          continue;
        }
      }
      if (c == 0x0a || c == 0x0d) {
        this.afterCR = c == 0x0d;
        this.endLine();
        p++;
        continue;
      }
      const line = this.line;
      if (line == L_NAME) {
        if (c == 0x3a) {
          this.startValue();
        } else {
          if (this.nameLength < MAX_NAME) unchecked((this.name[this.nameLength] = <u8>c));
          this.nameLength++;
        }
        p++;
        continue;
      }
      if (line == L_VALUE_START) {
        this.line = this.isData ? L_DATA : L_SKIP;
        if (c == 0x20) {
          p++;
          continue;
        }
      }
      // The rest of the line, up to the next line end, in one run.
      let q = SseReader.lineEnd(p, end);
      while (q < end) {
        c = <u32>load<u8>(q);
        if (c == 0x0a || c == 0x0d) break;
        q++;
      }
      if (this.line == L_DATA) this.data(p, q - p);
      p = q;
    }
  }

  /**
   * Where the first CR or LF at or after p is, 16 bytes at a time where the build has SIMD; end
   * or a position before the last 16 bytes when there is none (the caller finishes one by one).
   */
  // @ts-ignore: decorator
  @inline
  private static lineEnd(p: usize, end: usize): usize {
    if (ASC_FEATURE_SIMD) {
      const lf = i8x16.splat(0x0a);
      const cr = i8x16.splat(0x0d);
      while (p + 16 <= end) {
        const v = v128.load(p);
        const mask = i8x16.bitmask(v128.or(i8x16.eq(v, lf), i8x16.eq(v, cr)));
        if (mask != 0) return p + <usize>ctz(mask);
        p += 16;
      }
    }
    return p;
  }

  /**
   * The stream is over: an event still open counts if its data is a complete document. When it
   * did not end normally (`ended` false: a reset), an open event that is not complete is dropped
   * uncounted, as the other framings' (reader.ts) and a JSON body's are.
   */
  finish(ended: bool = true): void {
    if (this.line != L_NAME || this.nameLength > 0) this.endLine();
    if (this.dataLines > 0) this.endEvent(!ended);
  }

  private startValue(): void {
    this.isData = this.nameLength == 4 && memory.compare(changetype<usize>(this.name), NAME_DATA, 4) == 0;
    this.line = L_VALUE_START;
    if (this.isData) {
      // Lines of one event's data are joined with a newline (white space to the scanner).
      if (this.dataLines > 0) this.data(NEWLINE, 1);
      this.dataLines++;
    }
  }

  private data(ptr: usize, len: usize): void {
    let m = this.doneMatch;
    if (m >= 0) {
      for (let i: usize = 0; i < len; i++) {
        if (m < 6 && load<u8>(ptr + i) == load<u8>(DONE + <usize>m)) {
          m++;
        } else {
          m = -1;
          break;
        }
      }
      this.doneMatch = m;
    }
    this.scanner.feed(ptr, len);
  }

  private endLine(): void {
    const line = this.line;
    if (line == L_NAME) {
      if (this.nameLength == 0) {
        // A blank line ends the event.
        if (this.dataLines > 0) this.endEvent();
      } else if (this.nameLength == 4 && memory.compare(changetype<usize>(this.name), NAME_DATA, 4) == 0) {
        // "data" with no colon: a data line with an empty value.
        this.isData = true;
        if (this.dataLines > 0) this.data(NEWLINE, 1);
        this.dataLines++;
      }
    }
    this.line = L_NAME;
    this.nameLength = 0;
  }

  /**
   * An event ends: `[DONE]`, or one JSON document (invalid data counts as unreadable, unless the
   * event was cut short by a reset: `cut`).
   */
  private endEvent(cut: bool = false): void {
    if (this.doneMatch == 6) {
      this.doneSeen = true;
      this.scanner.reset();
    } else {
      this.dispatch(true, cut);
    }
    this.dataLines = 0;
    this.doneMatch = 0;
  }
}

const NEWLINE = memory.data<u8>([0x0a]);

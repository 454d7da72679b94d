// SPDX-License-Identifier: Apache-2.0
// The `bytes` field of Bedrock InvokeModelWithResponseStream's `chunk` events, decoded as it
// passes: the payload is `{"bytes":"<base64 of the model's own JSON event>", ...}`, and the
// decoded bytes go straight into a JsonScanner (in runs of up to 48 bytes), so the model's event
// (Anthropic's message_delta, the last chunk's amazon-bedrock-invocationMetrics) is read like any
// other. The payload around the field is Bedrock's own compact JSON; only the field's key, colon
// and string are followed. Pure: no host imports.

import { JsonScanner } from "./json";

const KEY = memory.data<u8>([0x22, 0x62, 0x79, 0x74, 0x65, 0x73, 0x22]); // "bytes" with its quotes
const KEY_LENGTH: i32 = 7;

const F_KEY: u8 = 0; // looking for the key
const F_COLON: u8 = 1;
const F_QUOTE: u8 = 2;
const F_VALUE: u8 = 3;
const F_DONE: u8 = 4;
const F_BAD: u8 = 5;

const OUT: i32 = 48;

function sextet(c: u32): i32 {
  if (c - 0x41 < 26) return <i32>(c - 0x41); // A-Z
  if (c - 0x61 < 26) return <i32>(c - 0x61 + 26); // a-z
  if (c - 0x30 < 10) return <i32>(c - 0x30 + 52); // 0-9
  if (c == 0x2b) return 62; // +
  if (c == 0x2f) return 63; // /
  return -1;
}

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

export class Base64Field {
  private state: u8 = F_KEY;
  private match: i32 = 0;
  private escaped: bool = false;
  private quad: u32 = 0;
  private count: i32 = 0;
  private padding: i32 = 0;
  private out: StaticArray<u8> = new StaticArray<u8>(OUT);
  private outLength: i32 = 0;

  reset(): void {
    this.state = F_KEY;
    this.match = 0;
    this.escaped = false;
    this.quad = 0;
    this.count = 0;
    this.padding = 0;
    this.outLength = 0;
  }

  /** The field was found and decoded whole. */
  get ok(): bool {
    return this.state == F_DONE;
  }

  feed(ptr: usize, len: usize, scanner: JsonScanner): void {
    for (let p = ptr, end = ptr + len; p < end; p++) {
      const c = <u32>load<u8>(p);
      const state = this.state;
      if (state == F_VALUE) {
        this.value(c, scanner);
      } else if (state == F_KEY) {
        if (c == <u32>load<u8>(KEY + <usize>this.match)) {
          if (++this.match == KEY_LENGTH) this.state = F_COLON;
        } else {
          this.match = c == 0x22 ? 1 : 0;
        }
      } else if (state == F_COLON || state == F_QUOTE) {
        if (isSpace(c)) continue;
        const want: u32 = state == F_COLON ? 0x3a : 0x22;
        if (c == want) this.state = state == F_COLON ? F_QUOTE : F_VALUE;
        else {
          this.state = F_KEY; // a key named "bytes" whose value is not a string: keep looking
          this.match = c == 0x22 ? 1 : 0;
        }
      } else {
        return; // done or bad: the rest of the payload is not read
      }
    }
  }

  private value(c: u32, scanner: JsonScanner): void {
    if (this.escaped) {
      this.escaped = false;
      if (c != 0x2f) {
        this.state = F_BAD; // only "\/" can stand in base64
        return;
      }
    } else if (c == 0x5c) {
      this.escaped = true;
      return;
    } else if (c == 0x22) {
      this.end(scanner);
      return;
    }
    if (c == 0x3d) {
      // '=' pads the last quad only.
      this.padding++;
      if (this.padding > 2 || this.count + this.padding > 4) this.state = F_BAD;
      return;
    }
    const v = sextet(c);
    if (v < 0 || this.padding > 0) {
      this.state = F_BAD;
      return;
    }
    this.quad = (this.quad << 6) | (<u32>v);
    if (++this.count == 4) {
      this.emit(<u8>(this.quad >>> 16), scanner);
      this.emit(<u8>(this.quad >>> 8), scanner);
      this.emit(<u8>this.quad, scanner);
      this.quad = 0;
      this.count = 0;
    }
  }

  private end(scanner: JsonScanner): void {
    const n = this.count;
    if (n == 1 || (this.padding > 0 && n + this.padding != 4)) {
      this.state = F_BAD;
      return;
    }
    if (n == 2) this.emit(<u8>(this.quad >>> 4), scanner);
    else if (n == 3) {
      this.emit(<u8>(this.quad >>> 10), scanner);
      this.emit(<u8>(this.quad >>> 2), scanner);
    }
    this.flush(scanner);
    this.state = F_DONE;
  }

  private emit(b: u8, scanner: JsonScanner): void {
    unchecked((this.out[this.outLength++] = b));
    if (this.outLength == OUT) this.flush(scanner);
  }

  private flush(scanner: JsonScanner): void {
    if (this.outLength > 0) scanner.feed(changetype<usize>(this.out), <usize>this.outLength);
    this.outLength = 0;
  }
}

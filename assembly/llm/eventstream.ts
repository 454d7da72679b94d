// SPDX-License-Identifier: Apache-2.0
// An incremental reader of Amazon's binary event stream (`application/vnd.amazon.eventstream`,
// the framing of Bedrock ConverseStream and InvokeModelWithResponseStream). Each message is
//
//   total length (u32 BE) | headers length (u32 BE) | prelude CRC32 (of the first 8 bytes)
//   | headers | payload | message CRC32 (of everything before it)
//
// and each header is name length (u8), name, type (u8), value (by type; strings and byte arrays
// carry a u16 BE length). The payload of an `event` message is one JSON document, fed straight
// into the JsonScanner as it passes; its values count only once the message CRC checks out. A
// message with a bad CRC is counted unreadable and not read; a bad prelude CRC leaves no way to
// find the next message, so the rest of the stream is not read. Bytes may split anywhere.
// State is a few fields and two small buffers whatever the stream's length. Pure: no host imports.

import { MessageReader } from "./reader";
import { crc32Update, crc32Final, CRC32_INIT } from "./crc32";
import { Base64Field } from "./base64field";

const S_PRELUDE: u8 = 0;
const S_HEADERS: u8 = 1;
const S_PAYLOAD: u8 = 2;
const S_CRC: u8 = 3;
const S_BROKEN: u8 = 4;

// Where in a header the walker is.
const H_NAME_LEN: u8 = 0;
const H_NAME: u8 = 1;
const H_TYPE: u8 = 2;
const H_VALUE_LEN: u8 = 3;
const H_VALUE: u8 = 4;
const H_BAD: u8 = 5;

/** Value sizes by header type (0 bool true, 1 bool false, 2 byte, 3 short, 4 int, 5 long,
 *  6 byte array, 7 string, 8 timestamp, 9 uuid); -1: a u16 length follows. */
const VALUE_SIZES = memory.data<i8>([0, 0, 1, 2, 4, 8, -1, -1, 8, 16]);
const MESSAGE_TYPE = memory.data<u8>([
  0x3a, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65, 0x2d, 0x74, 0x79, 0x70, 0x65,
]); // ":message-type"
const MESSAGE_TYPE_LENGTH: i32 = 13;
const EVENT = memory.data<u8>([0x65, 0x76, 0x65, 0x6e, 0x74]); // "event"
const EVENT_LENGTH: i32 = 5;

/** Smallest message: the prelude and the message CRC. */
const MIN_MESSAGE: u32 = 16;

function readU32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

export class EventStreamReader extends MessageReader {
  private state: u8 = S_PRELUDE;
  private buffer: StaticArray<u8> = new StaticArray<u8>(12);
  private have: i32 = 0;
  private crc: u32 = CRC32_INIT;
  private headersLeft: u32 = 0;
  private payloadLeft: u32 = 0;
  // Header walker.
  private header: u8 = H_NAME_LEN;
  private nameLeft: i32 = 0;
  private namePos: i32 = 0;
  private nameIsMessageType: bool = false;
  private valueLeft: i32 = 0;
  private valuePos: i32 = 0;
  private valueIsEvent: bool = false;
  /** The current message's `:message-type` was seen and is not `event`. */
  private notEvent: bool = false;
  private emptyPayload: bool = false;
  private chunk: Base64Field = new Base64Field();
  /** Messages that are not events (exceptions, errors): skipped, not counted unreadable. */
  exceptions: i32 = 0;
  /** The stream could not be followed past a bad prelude. */
  broken: bool = false;

  reset(): void {
    super.reset();
    this.state = S_PRELUDE;
    this.have = 0;
    this.exceptions = 0;
    this.broken = false;
  }

  feed(ptr: usize, len: usize): void {
    const end = ptr + len;
    let p = ptr;
    while (p < end) {
      const state = this.state;
      if (state == S_PAYLOAD) {
        const avail = <u32>(end - p);
        const run = avail < this.payloadLeft ? avail : this.payloadLeft;
        this.crc = crc32Update(this.crc, p, <usize>run);
        if (!this.notEvent) {
          if (this.base64Payloads) this.chunk.feed(p, <usize>run, this.scanner);
          else this.scanner.feed(p, <usize>run);
        }
        p += <usize>run;
        this.payloadLeft -= run;
        if (this.payloadLeft == 0) this.state = S_CRC;
      } else if (state == S_HEADERS) {
        const c = load<u8>(p);
        this.crc = crc32Update(this.crc, p, 1);
        this.walkHeader(c);
        p++;
        if (--this.headersLeft == 0) this.endHeaders();
      } else if (state == S_PRELUDE || state == S_CRC) {
        const want = state == S_PRELUDE ? 12 : 4;
        while (p < end && this.have < want) {
          unchecked((this.buffer[this.have++] = load<u8>(p)));
          p++;
        }
        if (this.have == want) {
          this.have = 0;
          if (state == S_PRELUDE) this.prelude();
          else this.endMessage();
        }
      } else {
        return; // broken: the rest passes unread
      }
    }
  }

  finish(ended: bool = true): void {
    if (this.state != S_BROKEN && (this.state != S_PRELUDE || this.have > 0)) {
      if (ended) this.invalidEvents++; // cut inside a message
      this.scanner.reset();
    }
  }

  private prelude(): void {
    const b = changetype<usize>(this.buffer);
    const total = readU32(b);
    const headers = readU32(b + 4);
    const ok = crc32Final(crc32Update(CRC32_INIT, b, 8)) == readU32(b + 8);
    if (!ok || total < MIN_MESSAGE || headers > total - MIN_MESSAGE) {
      this.state = S_BROKEN;
      this.broken = true;
      this.invalidEvents++;
      return;
    }
    this.crc = crc32Update(CRC32_INIT, b, 12);
    this.headersLeft = headers;
    this.payloadLeft = total - MIN_MESSAGE - headers;
    this.header = H_NAME_LEN;
    this.notEvent = false;
    this.emptyPayload = this.payloadLeft == 0;
    this.scanner.reset();
    this.chunk.reset();
    if (headers > 0) this.state = S_HEADERS;
    else this.endHeaders();
  }

  private endHeaders(): void {
    if (this.header != H_NAME_LEN) this.header = H_BAD; // the last header overran the section
    this.state = this.payloadLeft > 0 ? S_PAYLOAD : S_CRC;
  }

  private walkHeader(c: u8): void {
    switch (this.header) {
      case H_NAME_LEN: {
        if (c == 0) {
          this.header = H_BAD;
          return;
        }
        this.nameLeft = c;
        this.namePos = 0;
        this.nameIsMessageType = c == MESSAGE_TYPE_LENGTH;
        this.header = H_NAME;
        return;
      }
      case H_NAME: {
        if (this.nameIsMessageType && load<u8>(MESSAGE_TYPE + <usize>this.namePos) != c)
          this.nameIsMessageType = false;
        this.namePos++;
        if (--this.nameLeft == 0) this.header = H_TYPE;
        return;
      }
      case H_TYPE: {
        if (c > 9) {
          this.header = H_BAD;
          return;
        }
        const size = <i32>load<i8>(VALUE_SIZES + <usize>c);
        if (size < 0) {
          this.valuePos = 0;
          this.valueLeft = 0;
          this.header = H_VALUE_LEN;
        } else {
          this.nameIsMessageType = false; // only a string names the message type
          this.startValue(size);
        }
        return;
      }
      case H_VALUE_LEN: {
        this.valueLeft = (this.valueLeft << 8) | c;
        if (++this.valuePos == 2) this.startValue(this.valueLeft);
        return;
      }
      case H_VALUE: {
        if (
          this.valueIsEvent &&
          (this.valuePos >= EVENT_LENGTH || load<u8>(EVENT + <usize>this.valuePos) != c)
        ) {
          this.valueIsEvent = false;
        }
        this.valuePos++;
        if (--this.valueLeft == 0) this.endValue();
        return;
      }
    }
  }

  private startValue(size: i32): void {
    this.valuePos = 0;
    this.valueLeft = size;
    this.valueIsEvent = this.nameIsMessageType && size == EVENT_LENGTH;
    if (size == 0) this.endValue();
    else this.header = H_VALUE;
  }

  private endValue(): void {
    if (this.nameIsMessageType && !this.valueIsEvent) this.notEvent = true;
    this.header = H_NAME_LEN;
  }

  private endMessage(): void {
    this.state = S_PRELUDE;
    const ok = crc32Final(this.crc) == readU32(changetype<usize>(this.buffer)) && this.header != H_BAD;
    if (ok && (this.notEvent || this.emptyPayload)) {
      // An exception, or an event with nothing to read.
      if (this.notEvent) this.exceptions++;
      this.scanner.reset();
      return;
    }
    this.dispatch(ok && (!this.base64Payloads || this.chunk.ok));
  }
}

// SPDX-License-Identifier: Apache-2.0
// CRC-32 and the event-stream reader: messages built here, split at every byte.

import { JsonScanner } from "../llm/json";
import { NATIVE_SCHEMA } from "../llm/formats";
import { Usage, NO_COUNT } from "../llm/usage";
import { EventStreamReader } from "../llm/eventstream";
import { crc32Update, crc32Final, CRC32_INIT } from "../llm/crc32";

function crcOf(text: string): u32 {
  const b = String.UTF8.encode(text);
  return crc32Final(crc32Update(CRC32_INIT, changetype<usize>(b), <usize>b.byteLength));
}

function putU32(out: Uint8Array, at: i32, v: u32): void {
  out[at] = <u8>(v >>> 24);
  out[at + 1] = <u8>(v >>> 16);
  out[at + 2] = <u8>(v >>> 8);
  out[at + 3] = <u8>v;
}

function crcRange(out: Uint8Array, from: i32, to: i32): u32 {
  return crc32Final(crc32Update(CRC32_INIT, out.dataStart + <usize>from, <usize>(to - from)));
}

/** One message with a `:message-type` string header and an int header, then the payload. */
function frame(messageType: string, payload: string): Uint8Array {
  const name = String.UTF8.encode(":message-type");
  const value = String.UTF8.encode(messageType);
  const body = String.UTF8.encode(payload);
  const headers = 1 + name.byteLength + 3 + value.byteLength + (1 + 1 + 1 + 4);
  const total = 16 + headers + body.byteLength;
  const out = new Uint8Array(total);
  putU32(out, 0, total);
  putU32(out, 4, headers);
  putU32(out, 8, crcRange(out, 0, 8));
  let at = 12;
  out[at++] = <u8>name.byteLength;
  memory.copy(out.dataStart + <usize>at, changetype<usize>(name), name.byteLength);
  at += name.byteLength;
  out[at++] = 7;
  out[at++] = 0;
  out[at++] = <u8>value.byteLength;
  memory.copy(out.dataStart + <usize>at, changetype<usize>(value), value.byteLength);
  at += value.byteLength;
  out[at++] = 1;
  out[at++] = 0x6e; // "n"
  out[at++] = 4;
  putU32(out, at, 42);
  at += 4;
  memory.copy(out.dataStart + <usize>at, changetype<usize>(body), body.byteLength);
  putU32(out, total - 4, crcRange(out, 0, total - 4));
  return out;
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function read(bytes: Uint8Array, at: i32): EventStreamReader {
  const r = new EventStreamReader(new JsonScanner(NATIVE_SCHEMA), new Usage());
  const cut = at < bytes.length ? at : bytes.length;
  r.feed(bytes.dataStart, <usize>cut);
  r.feed(bytes.dataStart + <usize>cut, <usize>(bytes.length - cut));
  r.finish();
  return r;
}

describe("crc32", () => {
  it("gives the standard check value and works incrementally", () => {
    expect(crcOf("123456789")).toBe(0xcbf43926);
    expect(crcOf("")).toBe(0);
    const b = String.UTF8.encode("123456789");
    const p = changetype<usize>(b);
    expect(crc32Final(crc32Update(crc32Update(CRC32_INIT, p, 4), p + 4, 5))).toBe(0xcbf43926);
  });
});

describe("EventStreamReader", () => {
  const usage = '{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}';

  it("reads each event's payload at every split point", () => {
    const bytes = join(frame("event", '{"p":"x"}'), frame("event", usage));
    for (let i = 0; i <= bytes.length; i++) {
      const r = read(bytes, i);
      expect(r.usage.prompt).toBe(3, "split at " + i.toString());
      expect(r.usage.completion).toBe(4);
      expect(r.usage.total).toBe(7);
      expect(r.events).toBe(2);
      expect(r.invalidEvents).toBe(0);
    }
  });

  it("does not read a message whose CRC fails, and reads the next", () => {
    const bad = frame("event", usage);
    bad[bad.length - 20] = 0x38; // a digit of the payload: still JSON, wrong CRC
    const r = read(join(bad, frame("event", '{"usage":{"inputTokens":5}}')), 0);
    expect(r.invalidEvents).toBe(1);
    expect(r.events).toBe(1);
    expect(r.usage.prompt).toBe(5);
    expect(r.usage.completion).toBe(NO_COUNT);
  });

  it("stops at a bad prelude", () => {
    const bad = frame("event", usage);
    bad[11] ^= 1;
    const r = read(join(bad, frame("event", usage)), 0);
    expect(r.broken).toBe(true);
    expect(r.invalidEvents).toBe(1);
    expect(r.usage.prompt).toBe(NO_COUNT);
  });

  it("skips exceptions, and counts a message cut short", () => {
    const r = read(frame("exception", usage), 0);
    expect(r.exceptions).toBe(1);
    expect(r.invalidEvents).toBe(0);
    expect(r.usage.prompt).toBe(NO_COUNT);
    const whole = frame("event", usage);
    const cut = read(whole.subarray(0, whole.length - 1), 0);
    expect(cut.invalidEvents).toBe(1);
    expect(cut.usage.prompt).toBe(NO_COUNT);
  });

  it("refuses a header section that does not end on a header boundary", () => {
    const f = frame("event", usage);
    f[12] = 200; // the first name runs past the headers
    putU32(f, f.length - 4, crcRange(f, 0, f.length - 4));
    const r = read(f, 0);
    expect(r.invalidEvents).toBe(1);
    expect(r.usage.prompt).toBe(NO_COUNT);
  });
});

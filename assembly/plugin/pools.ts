// SPDX-License-Identifier: Apache-2.0
// Parsers and insertion state reused across streams: each scanner holds about a kilobyte that
// need not be reallocated, and a pooled object costs no allocation on the next call. Taken when
// a body starts, returned when it ends or the stream is deleted; never freed.

import { JsonScanner } from "../llm/json";
import { Schema } from "../llm/schema";
import { REQUEST_SCHEMA, RESPONSE_SCHEMA, NATIVE_SCHEMA } from "../llm/formats";
import { MessageReader } from "../llm/reader";
import { FRAMINGS, newReader, readsNative } from "../llm/framing";
import { BodyInsertion } from "./insertion";

const requestScanners: JsonScanner[] = [];
const responseScanners: JsonScanner[] = [];
// The same for the APIs with their own response fields (formats.ts NATIVE_FORMAT).
const nativeScanners: JsonScanner[] = [];
/** Readers of streamed responses, one pool per framing and format: framing * 2 + native. */
const readers: MessageReader[][] = [];
for (let i: i32 = 0; i < <i32>FRAMINGS * 2; i++) readers.push([]);
const insertions: BodyInsertion[] = [];

function takeScanner(pool: JsonScanner[], schema: Schema): JsonScanner {
  if (pool.length > 0) {
    const s = pool.pop();
    s.reset();
    return s;
  }
  return new JsonScanner(schema);
}

export function takeRequestScanner(): JsonScanner {
  return takeScanner(requestScanners, REQUEST_SCHEMA);
}

export function returnRequestScanner(s: JsonScanner): void {
  requestScanners.push(s);
}

/** A scanner for a response read whole, of the common or the API's own format. */
export function takeResponseScanner(native: bool): JsonScanner {
  return native ? takeScanner(nativeScanners, NATIVE_SCHEMA) : takeScanner(responseScanners, RESPONSE_SCHEMA);
}

/** Returns a response scanner to the pool of its schema. */
export function returnResponseScanner(s: JsonScanner): void {
  (s.schema === NATIVE_SCHEMA ? nativeScanners : responseScanners).push(s);
}

function readerPool(framing: u8, native: bool): MessageReader[] {
  return unchecked(readers[<i32>framing * 2 + (readsNative(framing, native) ? 1 : 0)]);
}

/**
 * A reader of a streamed response, of a framing of llm/framing.ts, for the common format or the
 * API's own; `base64Payloads`: the API wraps payloads in base64 (apis.ts).
 */
export function takeReader(framing: u8, native: bool, base64Payloads: bool): MessageReader {
  const pool = readerPool(framing, native);
  let r: MessageReader;
  if (pool.length > 0) {
    r = pool.pop();
    r.reset();
  } else {
    r = newReader(framing, native);
  }
  r.base64Payloads = base64Payloads;
  return r;
}

/** Returns a reader to the pool of its framing and format. */
export function returnReader(r: MessageReader): void {
  readerPool(r.framing, r.scanner.schema === NATIVE_SCHEMA).push(r);
}

/** The state of a request body that gets members before its closing brace. */
export function takeInsertion(): BodyInsertion {
  if (insertions.length > 0) {
    const b = insertions.pop();
    b.reset();
    return b;
  }
  return new BodyInsertion();
}

export function returnInsertion(b: BodyInsertion): void {
  insertions.push(b);
}

// SPDX-License-Identifier: Apache-2.0
// Parsers and insertion state reused across streams: each scanner holds about a kilobyte that
// need not be reallocated, and a pooled object costs no allocation on the next call. Taken when
// a body starts, returned when it ends or the stream is deleted; never freed.

import { JsonScanner } from "../llm/json";
import { Schema } from "../llm/schema";
import { REQUEST_SCHEMA, RESPONSE_SCHEMA, NATIVE_SCHEMA } from "../llm/formats";
import { Usage } from "../llm/usage";
import { MessageReader } from "../llm/reader";
import { SseReader } from "../llm/sse";
import { NdjsonReader } from "../llm/ndjson";
import { JsonArrayReader } from "../llm/jsonarray";
import { EventStreamReader } from "../llm/eventstream";
import { FRAMING_SSE, FRAMING_NDJSON, FRAMING_ARRAY, FRAMING_EVENT_STREAM } from "../llm/framing";
import { BodyInsertion } from "./insertion";

const requestScanners: JsonScanner[] = [];
const responseScanners: JsonScanner[] = [];
// The same for the APIs with their own response fields (formats.ts NATIVE_FORMAT).
const nativeScanners: JsonScanner[] = [];
const sseReaders: MessageReader[] = [];
const nativeSseReaders: MessageReader[] = [];
const ndjsonReaders: MessageReader[] = [];
const arrayReaders: MessageReader[] = [];
const eventStreamReaders: MessageReader[] = [];
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

function readerPool(kind: u8, native: bool): MessageReader[] {
  if (kind == FRAMING_SSE) return native ? nativeSseReaders : sseReaders;
  return kind == FRAMING_NDJSON ? ndjsonReaders : kind == FRAMING_ARRAY ? arrayReaders : eventStreamReaders;
}

/**
 * A reader of a streamed response (a FRAMING_* of llm/framing.ts). Server-sent events are read with the common or the API's own
 * format; the other framings are only used by APIs with their own format. `base64Payloads`: an
 * event stream whose payloads wrap the JSON in base64 (apis.ts).
 */
export function takeReader(kind: u8, native: bool, base64Payloads: bool): MessageReader {
  const pool = readerPool(kind, native);
  let r: MessageReader;
  if (pool.length > 0) {
    r = pool.pop();
    r.reset();
  } else if (kind == FRAMING_SSE) {
    r = new SseReader(new JsonScanner(native ? NATIVE_SCHEMA : RESPONSE_SCHEMA), new Usage());
  } else {
    const scanner = new JsonScanner(NATIVE_SCHEMA);
    if (kind == FRAMING_NDJSON) r = new NdjsonReader(scanner, new Usage());
    else if (kind == FRAMING_ARRAY) r = new JsonArrayReader(scanner, new Usage());
    else r = new EventStreamReader(scanner, new Usage());
  }
  if (base64Payloads && kind == FRAMING_EVENT_STREAM) (<EventStreamReader>r).chunks = true;
  return r;
}

/** Returns a reader to the pool of its framing and format. */
export function returnReader(r: MessageReader): void {
  const pool =
    r instanceof SseReader
      ? readerPool(FRAMING_SSE, r.scanner.schema === NATIVE_SCHEMA)
      : r instanceof NdjsonReader
        ? ndjsonReaders
        : r instanceof JsonArrayReader
          ? arrayReaders
          : eventStreamReaders;
  pool.push(r);
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

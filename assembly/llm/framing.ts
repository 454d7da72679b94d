// SPDX-License-Identifier: Apache-2.0
// How a response body is framed, from its content-type and the API's rules: one JSON document,
// or a stream of messages (server-sent events, NDJSON lines, the elements of a JSON array,
// Amazon's binary event stream), each with its reader. A new framing adds its content type and
// its reader here. Pure: no host imports.

import { startsWithIgnoreCase } from "./hosts";
import { JsonScanner } from "./json";
import { RESPONSE_SCHEMA, NATIVE_SCHEMA } from "./formats";
import { Usage } from "./usage";
import { MessageReader } from "./reader";
import { SseReader } from "./sse";
import { NdjsonReader } from "./ndjson";
import { JsonArrayReader } from "./jsonarray";
import { EventStreamReader } from "./eventstream";

/** A body the plugin does not read. */
export const FRAMING_NONE: u8 = 0;
/** One JSON document, read by a JsonScanner. */
export const FRAMING_DOCUMENT: u8 = 1;
// A stream of messages, read by a MessageReader (reader.ts).
export const FRAMING_SSE: u8 = 2;
export const FRAMING_NDJSON: u8 = 3;
export const FRAMING_ARRAY: u8 = 4;
export const FRAMING_EVENT_STREAM: u8 = 5;
/** The number of framings. */
export const FRAMINGS: u8 = 6;

/** The framing of a response of `contentType`; `jsonArray`: the API streams JSON as an array. */
export function framingOf(contentType: string | null, jsonArray: bool): u8 {
  if (contentType === null) return FRAMING_NONE;
  if (startsWithIgnoreCase(contentType, "text/event-stream")) return FRAMING_SSE;
  if (startsWithIgnoreCase(contentType, "application/json"))
    return jsonArray ? FRAMING_ARRAY : FRAMING_DOCUMENT;
  if (startsWithIgnoreCase(contentType, "application/x-ndjson")) return FRAMING_NDJSON;
  if (startsWithIgnoreCase(contentType, "application/vnd.amazon.eventstream")) return FRAMING_EVENT_STREAM;
  return FRAMING_NONE;
}

/** Whether a framing is a stream (the call counts as streamed whatever its request said). */
export function framingStreams(framing: u8): bool {
  return framing >= FRAMING_SSE && framing != FRAMING_ARRAY;
}

/**
 * Whether a reader of `framing` reads the APIs' own formats (formats.ts NATIVE_FORMAT): server-sent
 * events as the API says (`native`); the other framings are only used by APIs with their own.
 */
export function readsNative(framing: u8, native: bool): bool {
  return native || framing != FRAMING_SSE;
}

/** A new reader of a stream of messages (a framing other than NONE and DOCUMENT). */
export function newReader(framing: u8, native: bool): MessageReader {
  const scanner = new JsonScanner(readsNative(framing, native) ? NATIVE_SCHEMA : RESPONSE_SCHEMA);
  const usage = new Usage();
  let r: MessageReader;
  if (framing == FRAMING_SSE) r = new SseReader(scanner, usage);
  else if (framing == FRAMING_NDJSON) r = new NdjsonReader(scanner, usage);
  else if (framing == FRAMING_ARRAY) r = new JsonArrayReader(scanner, usage);
  else r = new EventStreamReader(scanner, usage);
  r.framing = framing;
  return r;
}

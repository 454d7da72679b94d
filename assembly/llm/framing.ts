// SPDX-License-Identifier: Apache-2.0
// How a response body is framed, from its content-type and the API's rules: one JSON document,
// or a stream of messages (server-sent events, NDJSON lines, the elements of a JSON array,
// Amazon's binary event stream), each with its reader. Pure: no host imports.

import { startsWithIgnoreCase } from "./hosts";

/** A body the plugin does not read. */
export const FRAMING_NONE: u8 = 0;
/** One JSON document, read by a JsonScanner. */
export const FRAMING_DOCUMENT: u8 = 1;
// A stream of messages, read by a MessageReader (reader.ts).
export const FRAMING_SSE: u8 = 2;
export const FRAMING_NDJSON: u8 = 3;
export const FRAMING_ARRAY: u8 = 4;
export const FRAMING_EVENT_STREAM: u8 = 5;

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

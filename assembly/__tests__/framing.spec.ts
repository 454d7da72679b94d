// SPDX-License-Identifier: Apache-2.0
// The framing a response's content-type means, and the reader each framing gets.

import {
  framingOf,
  framingStreams,
  newReader,
  FRAMING_NONE,
  FRAMING_DOCUMENT,
  FRAMING_SSE,
  FRAMING_NDJSON,
  FRAMING_ARRAY,
  FRAMING_EVENT_STREAM,
} from "../llm/framing";
import { NATIVE_SCHEMA, RESPONSE_SCHEMA } from "../llm/formats";
import { SseReader } from "../llm/sse";
import { EventStreamReader } from "../llm/eventstream";

describe("framing", () => {
  it("from the content-type, any case, parameters ignored", () => {
    expect(framingOf("application/json", false)).toBe(FRAMING_DOCUMENT);
    expect(framingOf("Application/JSON; charset=utf-8", false)).toBe(FRAMING_DOCUMENT);
    expect(framingOf("application/json", true)).toBe(FRAMING_ARRAY);
    expect(framingOf("text/event-stream;charset=UTF-8", false)).toBe(FRAMING_SSE);
    expect(framingOf("text/event-stream", true)).toBe(FRAMING_SSE);
    expect(framingOf("application/x-ndjson", false)).toBe(FRAMING_NDJSON);
    expect(framingOf("application/vnd.amazon.eventstream", false)).toBe(FRAMING_EVENT_STREAM);
    expect(framingOf("text/html", false)).toBe(FRAMING_NONE);
    expect(framingOf("application/js", false)).toBe(FRAMING_NONE);
    expect(framingOf(null, false)).toBe(FRAMING_NONE);
  });

  it("which framings are streams", () => {
    expect(framingStreams(FRAMING_SSE)).toBe(true);
    expect(framingStreams(FRAMING_NDJSON)).toBe(true);
    expect(framingStreams(FRAMING_EVENT_STREAM)).toBe(true);
    expect(framingStreams(FRAMING_ARRAY)).toBe(false); // Gemini's path says it streams
    expect(framingStreams(FRAMING_DOCUMENT)).toBe(false);
  });

  it("a reader per framing; only SSE reads the common format", () => {
    const sse = newReader(FRAMING_SSE, false);
    expect(sse instanceof SseReader).toBe(true);
    expect(sse.scanner.schema === RESPONSE_SCHEMA).toBe(true);
    expect(newReader(FRAMING_SSE, true).scanner.schema === NATIVE_SCHEMA).toBe(true);
    const binary = newReader(FRAMING_EVENT_STREAM, false);
    expect(binary instanceof EventStreamReader).toBe(true);
    expect(binary.scanner.schema === NATIVE_SCHEMA).toBe(true);
    expect(binary.framing).toBe(FRAMING_EVENT_STREAM);
    expect(newReader(FRAMING_NDJSON, false).scanner.schema === NATIVE_SCHEMA).toBe(true);
  });
});

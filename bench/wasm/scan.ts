// SPDX-License-Identifier: Apache-2.0
// The plugin's parsers alone, for throughput: the JSON scanner with the response schema, and the
// SSE reader, over bytes the benchmark places in memory.

import { JsonScanner } from "../../assembly/llm/json";
import { SseReader } from "../../assembly/llm/sse";
import { Usage } from "../../assembly/llm/usage";
import { RESPONSE_SCHEMA } from "../../assembly/llm/formats";

const scanner = new JsonScanner(RESPONSE_SCHEMA);
const reader = new SseReader(new JsonScanner(RESPONSE_SCHEMA), new Usage());

export function alloc(size: usize): usize {
  return heap.alloc(size);
}

/** Scans a JSON document in chunks of `chunk` bytes; 1 when it is valid. */
export function scanJson(ptr: usize, len: usize, chunk: usize): i32 {
  scanner.reset();
  for (let at: usize = 0; at < len; at += chunk) scanner.feed(ptr + at, len - at < chunk ? len - at : chunk);
  return scanner.finish() ? 1 : 0;
}

/** Reads an event stream in chunks; returns the number of events with valid JSON data. */
export function scanSse(ptr: usize, len: usize, chunk: usize): i32 {
  reader.reset();
  for (let at: usize = 0; at < len; at += chunk) reader.feed(ptr + at, len - at < chunk ? len - at : chunk);
  reader.finish();
  return reader.events;
}

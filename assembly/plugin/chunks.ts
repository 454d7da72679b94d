// SPDX-License-Identifier: Apache-2.0
// Reading the current chunk of a body in place, window by window: read, never held or changed.

import { JsonScanner } from "../llm/json";
import { MessageReader } from "../llm/reader";
import { readBuffer, bufferLength, release } from "../host/host";

/**
 * Chunks are read in windows of at most this size, so that plugin memory does not grow to the
 * size of the largest chunk Envoy ever delivers (the host copies what it hands over). Most of
 * Envoy's chunks are smaller (HTTP/2 frames are 16 KiB), so a chunk is usually read whole, with
 * one host call; larger ones cost one call per 32 KiB.
 */
export const WINDOW: usize = 32768;

/** Feeds the current chunk of a body to a scanner (a document) or a reader (a stream). */
export function feedWindows(
  scanner: JsonScanner | null,
  reader: MessageReader | null,
  type: i32,
  size: usize,
): void {
  for (let start: usize = 0; start < size; start += WINDOW) {
    const length = size - start < WINDOW ? size - start : WINDOW;
    const ptr = readBuffer(type, start, length);
    if (ptr == 0) return;
    if (scanner !== null) scanner.feed(ptr, bufferLength);
    if (reader !== null) reader.feed(ptr, bufferLength);
    release(ptr);
  }
}

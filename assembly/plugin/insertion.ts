// SPDX-License-Identifier: Apache-2.0
// Members added to a request body before its top-level closing brace, in whichever chunk that
// brace arrives (llm/rewrite.ts): a provider's model and stream flag, and the opt-in
// `stream_options` of `inject_stream_usage`. Nothing is held: the chunk goes on at once, changed
// or not.

import { JsonScanner } from "../llm/json";
import { REQUEST_MODEL, REQUEST_STREAM, REQUEST_STREAM_OPTIONS } from "../llm/formats";
import { Target } from "../llm/routing";
import { ClosingBrace, members } from "../llm/rewrite";
import { Config } from "../config/config";
import { readBuffer, replaceBuffer, appendBuffer, bufferLength, release, BufferType } from "../host/host";
import { WINDOW } from "./chunks";

/** Inserted before the closing brace of a streamed request that does not ask for usage. */
const USAGE_OPTION_TEXT = ',"stream_options":{"include_usage":true}';

export class BodyInsertion {
  private brace: ClosingBrace = new ClosingBrace();
  /** The provider call's members (model, stream), or null: only the usage option. */
  private target: Target | null = null;
  private config: Config | null = null;
  private path: string = "";
  /** What was inserted, published as the request's own values when the body ends valid. */
  model: string | null = null;
  stream: i8 = -1;
  /** `stream_options` was inserted. */
  usageOption: bool = false;

  reset(): void {
    this.brace.reset();
    this.target = null;
    this.config = null;
    this.path = "";
    this.model = null;
    this.stream = -1;
    this.usageOption = false;
  }

  /** For a call to `path`, with a provider's members or none (`target` null). */
  start(target: Target | null, config: Config, path: string): void {
    this.target = target;
    this.config = config;
    this.path = path;
  }

  /**
   * Scans a chunk of the body; the chunk holding the top-level closing brace gets the members.
   * After an insertion the rest of the chunk is read where it now is, `extra` bytes further on,
   * so that the scanner goes on with the client's bytes.
   */
  feed(scanner: JsonScanner, size: usize): void {
    const brace = this.brace;
    let shift: usize = 0;
    for (let start: usize = 0; start < size; start += WINDOW) {
      const length = size - start < WINDOW ? size - start : WINDOW;
      const ptr = readBuffer(BufferType.HttpRequestBody, start + shift, length);
      if (ptr == 0) return;
      const got = bufferLength;
      const at = brace.feed(scanner, ptr, got);
      if (at >= 0) {
        const text = this.members(scanner, brace.empty);
        if (text.length > 0) {
          const bytes = String.UTF8.encode(text);
          const extra = <usize>bytes.byteLength;
          const end = start + got;
          const inserted =
            start + <usize>at <= MAX_PREPEND
              ? prepend(start + <usize>at, start == 0 ? ptr : 0, bytes)
              : rotate(start + <usize>at, size, bytes, scanner, end);
          release(ptr);
          if (!inserted) {
            // The host refused the change: the body went on as the client sent it.
            this.model = null;
            this.stream = -1;
            this.usageOption = false;
          } else if (end < size && start + <usize>at > MAX_PREPEND) {
            return; // rotate() moved, and scanned, the rest of the chunk
          }
          shift = inserted ? extra : 0;
          continue;
        }
      }
      release(ptr);
    }
  }

  /** What the closed body lacks, given what the scanner saw of its top-level keys. */
  private members(scanner: JsonScanner, empty: bool): string {
    const target = this.target;
    const absent = target !== null && target.model.length > 0 && scanner.state(REQUEST_MODEL) == 0;
    const stream: i8 =
      target !== null && target.stream >= 0 && scanner.state(REQUEST_STREAM) == 0 ? target.stream : -1;
    const streamed = stream >= 0 ? stream > 0 : scanner.has(REQUEST_STREAM) && scanner.bool(REQUEST_STREAM);
    const usage =
      streamed && scanner.state(REQUEST_STREAM_OPTIONS) == 0 && this.config!.acceptsUsageOption(this.path);
    const text = members(absent ? target!.modelJson : null, stream, usage ? USAGE_OPTION_TEXT : "", empty);
    if (text.length > 0) {
      this.model = absent ? target!.model : null;
      this.stream = stream;
      this.usageOption = usage;
    }
    return text;
  }
}

/**
 * Up to this insertion point, the bytes before it are read in one piece and put back with the
 * members in one call; past it, the chunk is moved a window at a time (rotate).
 */
const MAX_PREPEND: usize = 2 * WINDOW;

/**
 * Inserts `bytes` at byte `at` of the current request chunk, by replacing its first `at` bytes
 * with them and the members. `head` is the chunk's first bytes when already read (they reach
 * past `at`), else 0 and they are read again.
 */
function prepend(at: usize, head: usize, bytes: ArrayBuffer): bool {
  let prefix = head;
  if (prefix == 0 && at > 0) {
    prefix = readBuffer(BufferType.HttpRequestBody, 0, at);
    if (prefix == 0 || bufferLength < at) {
      release(prefix);
      return false;
    }
  }
  const extra = <usize>bytes.byteLength;
  const out = heap.alloc(at + extra);
  if (at > 0) memory.copy(out, prefix, at);
  memory.copy(out + at, changetype<usize>(bytes), extra);
  // Envoy's set_buffer_bytes with start 0 drains `at` bytes and prepends the new ones.
  const done = replaceBuffer(BufferType.HttpRequestBody, at, out, at + extra);
  heap.free(out);
  if (prefix != head) release(prefix);
  return done;
}

/**
 * Inserts `bytes` at byte `at` of the current request chunk of `size` bytes without holding more
 * than a window of it: Envoy's set_buffer_bytes can only drain-and-prepend at the start or
 * append at the end, so the bytes before `at` are moved, a window at a time, from the front to
 * the back; then the members are appended; then the bytes from `at` on are moved the same way.
 * The chunk is then the client's bytes with the members at `at`, and every byte was moved once.
 * Bytes from `scanned` on have not been fed to the scanner yet: they are fed as they pass.
 */
function rotate(at: usize, size: usize, bytes: ArrayBuffer, scanner: JsonScanner, scanned: usize): bool {
  // The first move is the only one that may fail without having changed anything: the host
  // refuses set_buffer_bytes only for a position that is neither the start nor the end.
  if (!moveFront(at, size, null, 0)) return false;
  if (!appendBuffer(BufferType.HttpRequestBody, size, changetype<usize>(bytes), <usize>bytes.byteLength))
    return false;
  return moveFront(size - at, size + <usize>bytes.byteLength, scanner, scanned - at);
}

/**
 * Moves the first `count` bytes of the current request chunk (of `size` bytes) to its end, a
 * window at a time; the bytes from offset `from` of those moved are fed to `scanner`.
 */
function moveFront(count: usize, size: usize, scanner: JsonScanner | null, from: usize): bool {
  for (let moved: usize = 0; moved < count;) {
    const n = count - moved < WINDOW ? count - moved : WINDOW;
    const ptr = readBuffer(BufferType.HttpRequestBody, 0, n);
    if (ptr == 0 || bufferLength < n) {
      release(ptr);
      return false;
    }
    if (scanner !== null && moved + n > from) {
      const skip = from > moved ? from - moved : 0;
      scanner.feed(ptr + skip, n - skip);
    }
    const ok =
      replaceBuffer(BufferType.HttpRequestBody, n, ptr, 0) &&
      appendBuffer(BufferType.HttpRequestBody, size - n, ptr, n);
    release(ptr);
    if (!ok) return false;
    moved += n;
  }
  return true;
}

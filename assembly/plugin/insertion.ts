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
import { readBuffer, replaceBuffer, bufferLength, release, BufferType } from "../host/host";
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

  /** Scans a chunk of the body; the chunk holding the top-level closing brace gets the members. */
  feed(scanner: JsonScanner, size: usize): void {
    const brace = this.brace;
    for (let start: usize = 0; start < size; start += WINDOW) {
      const length = size - start < WINDOW ? size - start : WINDOW;
      const ptr = readBuffer(BufferType.HttpRequestBody, start, length);
      if (ptr == 0) return;
      const got = bufferLength;
      const at = brace.feed(scanner, ptr, got);
      if (at >= 0) {
        const text = this.members(scanner, brace.empty);
        if (text.length > 0 && !insert(start + <usize>at, start == 0 ? ptr : 0, text)) {
          // The host refused the change: the body went on as the client sent it.
          this.model = null;
          this.stream = -1;
          this.usageOption = false;
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
 * Inserts `text` at byte `at` of the current request chunk. `head` is the chunk's first bytes
 * when already read (they reach past `at`), else 0 and they are read again.
 */
function insert(at: usize, head: usize, text: string): bool {
  let prefix = head;
  if (prefix == 0 && at > 0) {
    prefix = readBuffer(BufferType.HttpRequestBody, 0, at);
    if (prefix == 0 || bufferLength < at) {
      release(prefix);
      return false;
    }
  }
  const bytes = String.UTF8.encode(text);
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

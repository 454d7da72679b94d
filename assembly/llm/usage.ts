// SPDX-License-Identifier: Apache-2.0
// What a response said about its model and tokens, gathered from one JSON body or from the
// events of a stream. Pure: no host imports.

import { JsonScanner } from "./json";
import { MAX_STRING_BYTES } from "./schema";
import {
  REQUEST_MODEL,
  Format,
  formatOf,
  F_MODEL,
  F_PROMPT,
  F_COMPLETION,
  F_TOTAL,
  F_CACHED,
  F_REASONING,
  F_CACHE_WRITE,
  F_ID,
  F_STATUS,
} from "./formats";

/** Longest Responses API id kept (they are about 50 bytes); a longer one is not kept. */
const MAX_ID_BYTES: i32 = 96;
const QUEUED = memory.data<u8>([0x71, 0x75, 0x65, 0x75, 0x65, 0x64]); // "queued"
const IN_PROGRESS = memory.data<u8>([0x69, 0x6e, 0x5f, 0x70, 0x72, 0x6f, 0x67, 0x72, 0x65, 0x73, 0x73]); // "in_progress"

function isString(s: JsonScanner, node: i32, text: usize, len: i32): bool {
  return s.stringLength(node) == len && memory.compare(s.stringPtr(node), text, <usize>len) == 0;
}

/** A count the response did not report (or reported with the wrong type). */
export const NO_COUNT: i64 = -1;

export class Usage {
  /** The model's UTF-8 bytes: copied from each event that names one, decoded once at the end. */
  private modelBytes: StaticArray<u8> = new StaticArray<u8>(MAX_STRING_BYTES);
  private modelLength: i32 = -1;
  prompt: i64 = NO_COUNT;
  completion: i64 = NO_COUNT;
  total: i64 = NO_COUNT;
  cached: i64 = NO_COUNT;
  reasoning: i64 = NO_COUNT;
  cacheWrite: i64 = NO_COUNT;
  private idBytes: StaticArray<u8> = new StaticArray<u8>(MAX_ID_BYTES);
  private idLength: i32 = -1;
  /** The last status named was `queued` or `in_progress`: a Responses API response not yet done. */
  pending: bool = false;

  reset(): void {
    this.cacheWrite = NO_COUNT;
    this.idLength = -1;
    this.pending = false;
    this.modelLength = -1;
    this.prompt = NO_COUNT;
    this.completion = NO_COUNT;
    this.total = NO_COUNT;
    this.cached = NO_COUNT;
    this.reasoning = NO_COUNT;
  }

  get hasTokens(): bool {
    return this.prompt != NO_COUNT || this.completion != NO_COUNT;
  }

  /**
   * Merges one finished, valid document (a body or one event's data). A value an event reports
   * replaces the earlier one: providers that repeat usage (vLLM's continuous usage, Anthropic's
   * message_delta) send running totals, so the last report is the total and a sum would count
   * twice. An empty model (Azure's first chunk) is no model.
   */
  add(s: JsonScanner): void {
    if (s.present == 0) return; // most stream events carry none of the fields
    const fmt = formatOf(s.schema);
    const node = firstString(s, fmt, F_MODEL);
    if (node >= 0) {
      const n = s.stringLength(node);
      memory.copy(changetype<usize>(this.modelBytes), s.stringPtr(node), <usize>n);
      this.modelLength = n;
    }
    const prompt = firstCount(s, fmt, F_PROMPT);
    if (prompt != NO_COUNT) this.prompt = prompt;
    const completion = firstCount(s, fmt, F_COMPLETION);
    if (completion != NO_COUNT) this.completion = completion;
    const total = firstCount(s, fmt, F_TOTAL);
    if (total != NO_COUNT) this.total = total;
    const cached = firstCount(s, fmt, F_CACHED);
    if (cached != NO_COUNT) this.cached = cached;
    const reasoning = firstCount(s, fmt, F_REASONING);
    if (reasoning != NO_COUNT) this.reasoning = reasoning;
    const cacheWrite = firstCount(s, fmt, F_CACHE_WRITE);
    if (cacheWrite != NO_COUNT) this.cacheWrite = cacheWrite;
    const id = firstString(s, fmt, F_ID);
    if (id >= 0 && s.stringLength(id) <= MAX_ID_BYTES) {
      const n = s.stringLength(id);
      memory.copy(changetype<usize>(this.idBytes), s.stringPtr(id), <usize>n);
      this.idLength = n;
    }
    const status = firstString(s, fmt, F_STATUS);
    if (status >= 0) this.pending = isString(s, status, QUEUED, 6) || isString(s, status, IN_PROGRESS, 11);
  }

  /** The Responses API id the response named, or null. */
  get id(): string | null {
    const n = this.idLength;
    return n > 0 ? String.UTF8.decodeUnsafe(changetype<usize>(this.idBytes), <usize>n) : null;
  }

  /** An embeddings response that reports only a total: its input is the total (Voyage). */
  totalAsPrompt(): void {
    if (this.prompt == NO_COUNT && this.completion == NO_COUNT && this.total != NO_COUNT)
      this.prompt = this.total;
  }

  /** Drops the token counts (a response not yet completed), keeping the model. */
  dropTokens(): void {
    this.prompt = NO_COUNT;
    this.completion = NO_COUNT;
    this.total = NO_COUNT;
    this.cached = NO_COUNT;
    this.reasoning = NO_COUNT;
    this.cacheWrite = NO_COUNT;
  }

  /** The model the response named, or null. */
  get model(): string | null {
    const n = this.modelLength;
    return n > 0 ? String.UTF8.decodeUnsafe(changetype<usize>(this.modelBytes), <usize>n) : null;
  }

  /** The total the provider reported, else prompt + completion when both are known. */
  get totalTokens(): i64 {
    if (this.total != NO_COUNT) return this.total;
    if (this.prompt != NO_COUNT && this.completion != NO_COUNT) return this.prompt + this.completion;
    return NO_COUNT;
  }
}

function firstCount(s: JsonScanner, fmt: Format, f: i32): i64 {
  if ((s.present & unchecked(fmt.masks[f])) == 0) return NO_COUNT;
  const nodes = unchecked(fmt.nodes[f]);
  for (let i = 0, n = nodes.length; i < n; i++) {
    const node = unchecked(nodes[i]);
    if (s.has(node)) return <i64>s.number(node);
  }
  return NO_COUNT;
}

/** The schema node of the first non-empty string that carries the value, or -1. */
function firstString(s: JsonScanner, fmt: Format, f: i32): i32 {
  if ((s.present & unchecked(fmt.masks[f])) == 0) return -1;
  const nodes = unchecked(fmt.nodes[f]);
  for (let i = 0, n = nodes.length; i < n; i++) {
    const node = unchecked(nodes[i]);
    if (s.has(node) && s.stringLength(node) > 0) return node;
  }
  return -1;
}

/** The model a finished, valid request document names, or null. */
export function requestModel(s: JsonScanner): string | null {
  return s.has(REQUEST_MODEL) && s.stringLength(REQUEST_MODEL) > 0 ? s.string(REQUEST_MODEL) : null;
}

/** A decimal count as a header states it (Bedrock's token-count headers), or NO_COUNT. */
export function parseCount(value: string | null): i64 {
  if (value === null || value.length == 0 || value.length > 15) return NO_COUNT;
  let n: i64 = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return NO_COUNT;
    n = n * 10 + <i64>(c - 0x30);
  }
  return n;
}

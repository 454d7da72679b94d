// SPDX-License-Identifier: Apache-2.0
// What a response said about its model and tokens, gathered from one JSON body or from the
// events of a stream. Pure: no host imports.

import { JsonScanner } from "./json";
import { MAX_STRING_BYTES } from "./schema";
import {
  REQUEST_MODEL,
  FIELD_NODES,
  FIELD_MASKS,
  F_MODEL,
  F_PROMPT,
  F_COMPLETION,
  F_TOTAL,
  F_CACHED,
  F_REASONING,
} from "./formats";

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

  reset(): void {
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
    const node = firstString(s, F_MODEL);
    if (node >= 0) {
      const n = s.stringLength(node);
      memory.copy(changetype<usize>(this.modelBytes), s.stringPtr(node), <usize>n);
      this.modelLength = n;
    }
    const prompt = firstCount(s, F_PROMPT);
    if (prompt != NO_COUNT) this.prompt = prompt;
    const completion = firstCount(s, F_COMPLETION);
    if (completion != NO_COUNT) this.completion = completion;
    const total = firstCount(s, F_TOTAL);
    if (total != NO_COUNT) this.total = total;
    const cached = firstCount(s, F_CACHED);
    if (cached != NO_COUNT) this.cached = cached;
    const reasoning = firstCount(s, F_REASONING);
    if (reasoning != NO_COUNT) this.reasoning = reasoning;
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

function firstCount(s: JsonScanner, f: i32): i64 {
  if ((s.present & unchecked(FIELD_MASKS[f])) == 0) return NO_COUNT;
  const nodes = unchecked(FIELD_NODES[f]);
  for (let i = 0, n = nodes.length; i < n; i++) {
    const node = unchecked(nodes[i]);
    if (s.has(node)) return <i64>s.number(node);
  }
  return NO_COUNT;
}

/** The schema node of the first non-empty string that carries the value, or -1. */
function firstString(s: JsonScanner, f: i32): i32 {
  if ((s.present & unchecked(FIELD_MASKS[f])) == 0) return -1;
  const nodes = unchecked(FIELD_NODES[f]);
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

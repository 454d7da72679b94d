// SPDX-License-Identifier: Apache-2.0
// The OpenAI-compatible request and response fields the plugin reads, as scanner schemas, and
// how a scanned document turns into a model and token counts. Pure: no host imports.

import { Schema, KIND_STRING, KIND_INT, KIND_BOOL } from "./schema";
import { JsonScanner } from "./json";

/** Request body: `{"model": "...", "stream": true, ...}`. */
export const REQUEST_SCHEMA = new Schema();
export const REQUEST_MODEL = REQUEST_SCHEMA.add("model", KIND_STRING);
export const REQUEST_STREAM = REQUEST_SCHEMA.add("stream", KIND_BOOL);

/** Response body: `{"model": "...", "usage": {"prompt_tokens": 3, ...}, ...}`. */
export const RESPONSE_SCHEMA = new Schema();
export const RESPONSE_MODEL = RESPONSE_SCHEMA.add("model", KIND_STRING);
export const USAGE_PROMPT = RESPONSE_SCHEMA.add("usage.prompt_tokens", KIND_INT);
export const USAGE_COMPLETION = RESPONSE_SCHEMA.add("usage.completion_tokens", KIND_INT);
export const USAGE_TOTAL = RESPONSE_SCHEMA.add("usage.total_tokens", KIND_INT);

/** A token count not reported (or not valid) in the body. */
export const NO_COUNT: i64 = -1;

/** What one response body said. */
export class Usage {
  model: string | null = null;
  prompt: i64 = NO_COUNT;
  completion: i64 = NO_COUNT;
  total: i64 = NO_COUNT;
}

function count(s: JsonScanner, node: i32): i64 {
  return s.has(node) ? <i64>s.number(node) : NO_COUNT;
}

/** Reads a finished, valid response document into `out`. */
export function readResponse(s: JsonScanner, out: Usage): void {
  out.model = s.has(RESPONSE_MODEL) && s.stringLength(RESPONSE_MODEL) > 0 ? s.string(RESPONSE_MODEL) : null;
  out.prompt = count(s, USAGE_PROMPT);
  out.completion = count(s, USAGE_COMPLETION);
  out.total = count(s, USAGE_TOTAL);
}

/** The model a finished, valid request document names, or null. */
export function requestModel(s: JsonScanner): string | null {
  return s.has(REQUEST_MODEL) && s.stringLength(REQUEST_MODEL) > 0 ? s.string(REQUEST_MODEL) : null;
}

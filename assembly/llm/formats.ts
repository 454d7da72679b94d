// SPDX-License-Identifier: Apache-2.0
// The fields the plugin reads from each LLM API, as scanner schemas, and which of them feed which
// logical value. One response schema serves every API and every streamed event: its paths never
// collide, so no provider needs to be detected first. Pure: no host imports.
//
// | API                                   | model            | prompt / completion                 | cached                                     | reasoning                                   |
// |---------------------------------------|------------------|-------------------------------------|--------------------------------------------|---------------------------------------------|
// | OpenAI chat, completions, embeddings  | model            | usage.prompt_tokens / completion_tokens | usage.prompt_tokens_details.cached_tokens | usage.completion_tokens_details.reasoning_tokens |
// | (and DashScope, Azure, DeepSeek, vLLM, Ollama, Gemini's OpenAI endpoint) |  |                 | DeepSeek: usage.prompt_cache_hit_tokens    |                                             |
// | OpenAI Responses (body)               | model            | usage.input_tokens / output_tokens  | usage.input_tokens_details.cached_tokens   | usage.output_tokens_details.reasoning_tokens |
// | OpenAI Responses (stream events)      | response.model   | response.usage.input_tokens / ...   | response.usage.input_tokens_details...     | response.usage.output_tokens_details...     |
// | Anthropic Messages (body, message_delta) | model         | usage.input_tokens / output_tokens  | usage.cache_read_input_tokens              | -                                           |
// | Anthropic Messages (message_start)    | message.model    | message.usage.input_tokens / ...    | message.usage.cache_read_input_tokens      | -                                           |
// | Gemini / Vertex (body, event, element) | modelVersion    | usageMetadata.promptTokenCount / candidatesTokenCount | usageMetadata.cachedContentTokenCount | usageMetadata.thoughtsTokenCount |
// | Bedrock Converse, ConverseStream metadata | (path)        | usage.inputTokens / outputTokens    | usage.cacheReadInputTokens                 | -                                           |
// | Bedrock invocation metrics (last chunk) | (path)         | amazon-bedrock-invocationMetrics.inputTokenCount / outputTokenCount (preferred) | ...cacheReadInputTokenCount | - |
// | Cohere v2 chat (body, message-end delta) | (request)     | usage.tokens.* , else usage.billed_units.* | -                                   | -                                           |
// | Cohere v2 embed                        | (request)        | meta.billed_units.input_tokens      | -                                          | -                                           |
// | Ollama native                          | model            | prompt_eval_count / eval_count      | -                                          | -                                           |
// Cache writes: usage.cache_creation_input_tokens, usage.prompt_tokens_details.cache_write_tokens,
// usage.cacheWriteInputTokens. The model in Gemini's and Bedrock's paths is read by paths.ts.

import { Schema, KIND_OBJECT, KIND_STRING, KIND_INT, KIND_BOOL } from "./schema";

/** Request body: the model, the stream flag and whether the client asked for streamed usage. */
export const REQUEST_SCHEMA = new Schema();
export const REQUEST_MODEL = REQUEST_SCHEMA.add("model", KIND_STRING);
export const REQUEST_STREAM = REQUEST_SCHEMA.add("stream", KIND_BOOL);
export const REQUEST_STREAM_OPTIONS = REQUEST_SCHEMA.add("stream_options", KIND_OBJECT);
export const REQUEST_INCLUDE_USAGE = REQUEST_SCHEMA.add("stream_options.include_usage", KIND_BOOL);

/** Logical values read from a response document or event. */
export const F_MODEL = 0;
export const F_PROMPT = 1;
export const F_COMPLETION = 2;
export const F_TOTAL = 3;
export const F_CACHED = 4;
export const F_REASONING = 5;
export const F_CACHE_WRITE = 6;
/** The Responses API's response id and status (a completed response is counted once). */
export const F_ID = 7;
export const F_STATUS = 8;
export const FIELD_COUNT = 9;

export const RESPONSE_SCHEMA = new Schema();

/** For each logical value, the schema nodes that carry it, in order of preference. */
export const FIELD_NODES: Array<Array<i32>> = [[], [], [], [], [], [], [], [], []];

function field(f: i32, path: string, kind: u8): void {
  FIELD_NODES[f].push(RESPONSE_SCHEMA.add(path, kind));
}

function usageAt(prefix: string): void {
  // OpenAI-style names.
  field(F_PROMPT, prefix + "usage.prompt_tokens", KIND_INT);
  field(F_COMPLETION, prefix + "usage.completion_tokens", KIND_INT);
  field(F_CACHED, prefix + "usage.prompt_tokens_details.cached_tokens", KIND_INT);
  field(F_CACHED, prefix + "usage.prompt_cache_hit_tokens", KIND_INT);
  field(F_REASONING, prefix + "usage.completion_tokens_details.reasoning_tokens", KIND_INT);
  // Responses API and Anthropic names.
  field(F_PROMPT, prefix + "usage.input_tokens", KIND_INT);
  field(F_COMPLETION, prefix + "usage.output_tokens", KIND_INT);
  field(F_CACHED, prefix + "usage.input_tokens_details.cached_tokens", KIND_INT);
  field(F_CACHED, prefix + "usage.cache_read_input_tokens", KIND_INT);
  field(F_REASONING, prefix + "usage.output_tokens_details.reasoning_tokens", KIND_INT);
  field(F_TOTAL, prefix + "usage.total_tokens", KIND_INT);
}

field(F_MODEL, "model", KIND_STRING);
usageAt("");
field(F_MODEL, "response.model", KIND_STRING);
usageAt("response.");
field(F_MODEL, "message.model", KIND_STRING);
usageAt("message.");

// Added after the fields above so that those keep their low node ids (JsonScanner.present).
function moreUsageAt(prefix: string): void {
  field(F_CACHED, prefix + "usage.num_cached_tokens", KIND_INT); // Mistral
  field(F_CACHED, prefix + "usage.cached_tokens", KIND_INT); // Moonshot, Together, Hugging Face
  field(F_CACHE_WRITE, prefix + "usage.cache_creation_input_tokens", KIND_INT); // Anthropic
  field(F_CACHE_WRITE, prefix + "usage.prompt_tokens_details.cache_write_tokens", KIND_INT); // OpenRouter
  field(F_REASONING, prefix + "usage.output_tokens_details.thinking_tokens", KIND_INT);
}
moreUsageAt("");
moreUsageAt("message.");
moreUsageAt("response.");

// Gemini and Vertex generateContent (a body, an SSE event or an element of the streamed array).
field(F_MODEL, "modelVersion", KIND_STRING);
field(F_PROMPT, "usageMetadata.promptTokenCount", KIND_INT);
field(F_COMPLETION, "usageMetadata.candidatesTokenCount", KIND_INT);
field(F_TOTAL, "usageMetadata.totalTokenCount", KIND_INT);
field(F_CACHED, "usageMetadata.cachedContentTokenCount", KIND_INT);
field(F_REASONING, "usageMetadata.thoughtsTokenCount", KIND_INT);

// Bedrock Converse (the body) and ConverseStream (the `metadata` event's payload).
field(F_PROMPT, "usage.inputTokens", KIND_INT);
field(F_COMPLETION, "usage.outputTokens", KIND_INT);
field(F_TOTAL, "usage.totalTokens", KIND_INT);
field(F_CACHED, "usage.cacheReadInputTokens", KIND_INT);
field(F_CACHE_WRITE, "usage.cacheWriteInputTokens", KIND_INT);

// Cohere v2 chat (the body; `message-end`'s delta): the token counts, else the billed units.
function cohereAt(prefix: string): void {
  field(F_PROMPT, prefix + "usage.tokens.input_tokens", KIND_INT);
  field(F_COMPLETION, prefix + "usage.tokens.output_tokens", KIND_INT);
}
function cohereBilledAt(prefix: string): void {
  field(F_PROMPT, prefix + "usage.billed_units.input_tokens", KIND_INT);
  field(F_COMPLETION, prefix + "usage.billed_units.output_tokens", KIND_INT);
}
cohereAt("");
cohereAt("delta.");
cohereBilledAt("");
cohereBilledAt("delta.");
field(F_PROMPT, "meta.billed_units.input_tokens", KIND_INT); // Cohere v2 embed

// Ollama native: the `done: true` object (or the whole body) of /api/chat, /api/generate.
field(F_PROMPT, "prompt_eval_count", KIND_INT);
field(F_COMPLETION, "eval_count", KIND_INT);

// Bedrock InvokeModelWithResponseStream: the last chunk's own counts, preferred over the model's.
function bedrockMetric(f: i32, key: string): void {
  FIELD_NODES[f].unshift(RESPONSE_SCHEMA.add("amazon-bedrock-invocationMetrics." + key, KIND_INT));
}
bedrockMetric(F_PROMPT, "inputTokenCount");
bedrockMetric(F_COMPLETION, "outputTokenCount");
bedrockMetric(F_CACHED, "cacheReadInputTokenCount");
bedrockMetric(F_CACHE_WRITE, "cacheWriteInputTokenCount");

// Responses API: the response's id and status, in a body or a stream event.
field(F_ID, "id", KIND_STRING);
field(F_STATUS, "status", KIND_STRING);
field(F_ID, "response.id", KIND_STRING);
field(F_STATUS, "response.status", KIND_STRING);

/** For each logical value, a mask of its nodes for JsonScanner.present (a node >= 64: every bit). */
export const FIELD_MASKS = new StaticArray<u64>(FIELD_COUNT);
for (let f = 0; f < FIELD_COUNT; f++) {
  let mask: u64 = 0;
  const nodes = FIELD_NODES[f];
  for (let i = 0; i < nodes.length; i++) mask |= nodes[i] < 64 ? (<u64>1) << (<u64>nodes[i]) : ~(<u64>0);
  FIELD_MASKS[f] = mask;
}

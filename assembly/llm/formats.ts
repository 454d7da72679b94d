// SPDX-License-Identifier: Apache-2.0
// The fields the plugin reads from each LLM API, as scanner schemas, and which of them feed which
// logical value. Two response formats: COMMON_FORMAT reads every OpenAI-style API, the Responses
// API and Anthropic (their paths never collide, so no provider is detected first); NATIVE_FORMAT
// adds the fields of the APIs with formats of their own (Gemini, Bedrock, Cohere, Ollama), used
// only where the path shape names one of them, so that the OpenAI path keeps its cost. Pure: no
// host imports.
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
// | Gemini / Vertex embedContent           | (path)           | usageMetadata.promptTokenCount / -  | -                                          | -                                           |
// | Vertex :predict (text embeddings)      | (path)           | sum of predictions[].embeddings.statistics.token_count / - | -           | -                                           |
// Cache writes: usage.cache_creation_input_tokens, usage.prompt_tokens_details.cache_write_tokens,
// usage.input_tokens_details.cache_write_tokens (Responses, also in response.usage),
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

/**
 * A response schema and, for each logical value, the schema nodes that carry it (in order of
 * preference) with their mask for JsonScanner.present.
 */
export class Format {
  schema: Schema = new Schema();
  nodes: Array<Array<i32>> = [[], [], [], [], [], [], [], [], []];
  masks: StaticArray<u64> = new StaticArray<u64>(FIELD_COUNT);

  field(f: i32, path: string, kind: u8): void {
    this.nodes[f].push(this.schema.add(path, kind));
  }

  /** A node that wins over the ones already added for the value. */
  preferred(f: i32, path: string, kind: u8): void {
    this.nodes[f].unshift(this.schema.add(path, kind));
  }

  /**
   * A node >= 64 is stood for by bit 63 alone: the scanner sets every bit when such a node is
   * present, so the test never misses one, and a value's low nodes keep their own bits (a ~0 mask
   * would send every document that names only a model through every node list of every value).
   */
  seal(): void {
    for (let f = 0; f < FIELD_COUNT; f++) {
      let mask: u64 = 0;
      const nodes = this.nodes[f];
      for (let i = 0; i < nodes.length; i++) {
        const bit: i32 = nodes[i] >= 64 ? 63 : nodes[i];
        mask |= (<u64>1) << (<u64>bit);
      }
      this.masks[f] = mask;
    }
  }
}

function usageAt(fmt: Format, prefix: string): void {
  // OpenAI-style names.
  fmt.field(F_PROMPT, prefix + "usage.prompt_tokens", KIND_INT);
  fmt.field(F_COMPLETION, prefix + "usage.completion_tokens", KIND_INT);
  fmt.field(F_CACHED, prefix + "usage.prompt_tokens_details.cached_tokens", KIND_INT);
  fmt.field(F_CACHED, prefix + "usage.prompt_cache_hit_tokens", KIND_INT);
  fmt.field(F_REASONING, prefix + "usage.completion_tokens_details.reasoning_tokens", KIND_INT);
  // Responses API and Anthropic names.
  fmt.field(F_PROMPT, prefix + "usage.input_tokens", KIND_INT);
  fmt.field(F_COMPLETION, prefix + "usage.output_tokens", KIND_INT);
  fmt.field(F_CACHED, prefix + "usage.input_tokens_details.cached_tokens", KIND_INT);
  fmt.field(F_CACHED, prefix + "usage.cache_read_input_tokens", KIND_INT);
  fmt.field(F_REASONING, prefix + "usage.output_tokens_details.reasoning_tokens", KIND_INT);
  fmt.field(F_TOTAL, prefix + "usage.total_tokens", KIND_INT);
}

/** The OpenAI-style, Responses API and Anthropic fields, read on every path. */
function common(fmt: Format): void {
  fmt.field(F_MODEL, "model", KIND_STRING);
  // The Responses API's id and status, early so that their node ids stay below 64: an OpenAI
  // chunk's "id" must not set every bit of JsonScanner.present.
  fmt.field(F_ID, "id", KIND_STRING);
  fmt.field(F_STATUS, "status", KIND_STRING);
  usageAt(fmt, "");
  fmt.field(F_MODEL, "response.model", KIND_STRING);
  usageAt(fmt, "response.");
  fmt.field(F_MODEL, "message.model", KIND_STRING);
  usageAt(fmt, "message.");
  fmt.field(F_CACHED, "usage.num_cached_tokens", KIND_INT); // Mistral
  fmt.field(F_CACHED, "usage.cached_tokens", KIND_INT); // Moonshot, Together, Hugging Face
  fmt.field(F_CACHE_WRITE, "usage.cache_creation_input_tokens", KIND_INT); // Anthropic
  fmt.field(F_CACHE_WRITE, "message.usage.cache_creation_input_tokens", KIND_INT);
  fmt.field(F_CACHE_WRITE, "usage.prompt_tokens_details.cache_write_tokens", KIND_INT); // OpenRouter
  fmt.field(F_REASONING, "usage.output_tokens_details.thinking_tokens", KIND_INT); // Anthropic
  fmt.field(F_ID, "response.id", KIND_STRING);
  fmt.field(F_STATUS, "response.status", KIND_STRING);
  // OpenAI Responses: the body, and response.completed / response.incomplete events.
  fmt.field(F_CACHE_WRITE, "usage.input_tokens_details.cache_write_tokens", KIND_INT);
  fmt.field(F_CACHE_WRITE, "response.usage.input_tokens_details.cache_write_tokens", KIND_INT);
}

/**
 * The APIs whose path shape says what they are (paths.ts: Gemini, Vertex, Bedrock, Cohere, Ollama
 * native). Their fields are kept out of the common format because every key of every OpenAI chunk
 * is compared with the schema's top-level keys, and every `usage` key forgets all nodes below it.
 */
function native(fmt: Format): void {
  // Gemini and Vertex generateContent (a body, an SSE event or an element of the streamed array).
  fmt.field(F_MODEL, "modelVersion", KIND_STRING);
  fmt.field(F_PROMPT, "usageMetadata.promptTokenCount", KIND_INT);
  fmt.field(F_COMPLETION, "usageMetadata.candidatesTokenCount", KIND_INT);
  fmt.field(F_TOTAL, "usageMetadata.totalTokenCount", KIND_INT);
  fmt.field(F_CACHED, "usageMetadata.cachedContentTokenCount", KIND_INT);
  fmt.field(F_REASONING, "usageMetadata.thoughtsTokenCount", KIND_INT);
  // Bedrock Converse (the body) and ConverseStream (the `metadata` event's payload).
  fmt.field(F_PROMPT, "usage.inputTokens", KIND_INT);
  fmt.field(F_COMPLETION, "usage.outputTokens", KIND_INT);
  fmt.field(F_TOTAL, "usage.totalTokens", KIND_INT);
  fmt.field(F_CACHED, "usage.cacheReadInputTokens", KIND_INT);
  fmt.field(F_CACHE_WRITE, "usage.cacheWriteInputTokens", KIND_INT);
  // Cohere v2 chat (the body; `message-end`'s delta): the token counts, else the billed units.
  fmt.field(F_PROMPT, "usage.tokens.input_tokens", KIND_INT);
  fmt.field(F_COMPLETION, "usage.tokens.output_tokens", KIND_INT);
  fmt.field(F_PROMPT, "delta.usage.tokens.input_tokens", KIND_INT);
  fmt.field(F_COMPLETION, "delta.usage.tokens.output_tokens", KIND_INT);
  fmt.field(F_PROMPT, "usage.billed_units.input_tokens", KIND_INT);
  fmt.field(F_COMPLETION, "usage.billed_units.output_tokens", KIND_INT);
  fmt.field(F_PROMPT, "delta.usage.billed_units.input_tokens", KIND_INT);
  fmt.field(F_COMPLETION, "delta.usage.billed_units.output_tokens", KIND_INT);
  fmt.field(F_PROMPT, "meta.billed_units.input_tokens", KIND_INT); // Cohere v2 embed
  // Ollama native: the `done: true` object (or the whole body) of /api/chat, /api/generate.
  fmt.field(F_PROMPT, "prompt_eval_count", KIND_INT);
  fmt.field(F_COMPLETION, "eval_count", KIND_INT);
  // Bedrock InvokeModelWithResponseStream: the last chunk's own counts, preferred over the model's.
  const metrics = "amazon-bedrock-invocationMetrics.";
  fmt.preferred(F_PROMPT, metrics + "inputTokenCount", KIND_INT);
  fmt.preferred(F_COMPLETION, metrics + "outputTokenCount", KIND_INT);
  fmt.preferred(F_CACHED, metrics + "cacheReadInputTokenCount", KIND_INT);
  fmt.preferred(F_CACHE_WRITE, metrics + "cacheWriteInputTokenCount", KIND_INT);
  // Vertex AI :predict of text-embedding models: one token count per input, summed. (Its
  // metadata.billableCharacterCount counts characters, not tokens, and is not read.)
  fmt.field(F_PROMPT, "predictions[].embeddings.statistics.token_count", KIND_INT);
}

/** Every path's responses. */
export const COMMON_FORMAT = new Format();
common(COMMON_FORMAT);
COMMON_FORMAT.seal();

/** The responses of the APIs with their own formats: the common fields and theirs. */
export const NATIVE_FORMAT = new Format();
common(NATIVE_FORMAT);
native(NATIVE_FORMAT);
NATIVE_FORMAT.seal();

export const RESPONSE_SCHEMA = COMMON_FORMAT.schema;
export const NATIVE_SCHEMA = NATIVE_FORMAT.schema;

/** The format a scanner's schema belongs to. */
export function formatOf(schema: Schema): Format {
  return schema === NATIVE_SCHEMA ? NATIVE_FORMAT : COMMON_FORMAT;
}

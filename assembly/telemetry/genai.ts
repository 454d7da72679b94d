// SPDX-License-Identifier: Apache-2.0
// OpenTelemetry's GenAI semantic conventions (the GenAI registry and metrics pages of
// open-telemetry/semantic-conventions-genai, which link semantic-conventions v1.41.1; status
// "Development"): the operation and provider names of a call, and how each API's token counts
// relate, which both the cost and the conventions' input/output totals depend on. Pure: no host
// imports.

import { INPUT_EXCLUDES_CACHE, OUTPUT_EXCLUDES_REASONING } from "./cost";

/** gen_ai.operation.name well-known values used here. */
export const OP_CHAT = "chat";
export const OP_TEXT_COMPLETION = "text_completion";
export const OP_EMBEDDINGS = "embeddings";
export const OP_GENERATE_CONTENT = "generate_content";

/** gen_ai.token.type values. */
export const TOKEN_INPUT = "input";
export const TOKEN_OUTPUT = "output";

/** The path without its query string. */
function bare(path: string): string {
  const q = path.indexOf("?");
  return q >= 0 ? path.substring(0, q) : path;
}

/**
 * gen_ai.operation.name of a call, from how its path ends: `generate_content` for Gemini and
 * Vertex, `embeddings` for every embeddings API, `text_completion` for the legacy completions
 * and Ollama's `/api/generate`, `chat` for the rest (chat completions, the Responses API,
 * Anthropic Messages, Bedrock Converse and InvokeModel, Cohere and Ollama chat).
 */
export function operationName(path: string): string {
  const p = bare(path);
  if (p.endsWith(":generateContent") || p.endsWith(":streamGenerateContent")) return OP_GENERATE_CONTENT;
  if (p.endsWith("/embeddings") || p.endsWith("/embed")) return OP_EMBEDDINGS;
  if (p.endsWith("/chat/completions")) return OP_CHAT;
  if (p.endsWith("/completions") || p.endsWith("/api/generate")) return OP_TEXT_COMPLETION;
  return OP_CHAT;
}

/**
 * Hosts and the gen_ai.provider.name they mean, one `host name` pair a line: an exact host, or a
 * suffix when it starts with `.` or `-` (`-aiplatform.googleapis.com`: Vertex AI's regional
 * endpoints). `dashscope` (Alibaba Cloud Model Studio, the seed's provider) is not a well-known
 * value of the conventions, which allow a custom one. One literal rather than an array: no
 * start-up code, and about half the module bytes.
 */
const HOSTS =
  "api.openai.com openai\napi.anthropic.com anthropic\ngenerativelanguage.googleapis.com gcp.gemini\napi.deepseek.com deepseek\napi.mistral.ai mistral_ai\napi.groq.com groq\napi.x.ai x_ai\napi.perplexity.ai perplexity\napi.cohere.com cohere\napi.cohere.ai cohere\napi.moonshot.cn moonshot_ai\napi.moonshot.ai moonshot_ai\ndashscope.aliyuncs.com dashscope\ndashscope-intl.aliyuncs.com dashscope\n.openai.azure.com azure.ai.openai\n.services.ai.azure.com azure.ai.inference\n.models.ai.azure.com azure.ai.inference\naiplatform.googleapis.com gcp.vertex_ai\n-aiplatform.googleapis.com gcp.vertex_ai\n.amazonaws.com aws.bedrock\n";

/** The provider HOSTS names for a host, or null. */
function providerOfHost(host: string): string | null {
  let at = 0;
  const n = HOSTS.length;
  while (at < n) {
    const space = HOSTS.indexOf(" ", at);
    const end = HOSTS.indexOf("\n", space);
    const len = space - at;
    const c = HOSTS.charCodeAt(at);
    const suffix = c == 0x2e || c == 0x2d;
    const from = suffix ? host.length - len : 0;
    if (
      (suffix ? from >= 0 : host.length == len) &&
      memory.compare(
        changetype<usize>(host) + ((<usize>from) << 1),
        changetype<usize>(HOSTS) + ((<usize>at) << 1),
        (<usize>len) << 1,
      ) == 0
    ) {
      return HOSTS.substring(space + 1, end);
    }
    at = end + 1;
  }
  return null;
}

/**
 * gen_ai.provider.name of a call: the provider its host names (`server.address`), else the
 * family its path shape belongs to (Anthropic Messages, Gemini, Bedrock, Cohere, Ollama), else
 * `openai`: the conventions use the name for the API's flavour, and an OpenAI-compatible
 * server (vLLM, a gateway) speaks OpenAI's; `server_address` says which server it was.
 */
export function providerName(host: string, path: string): string {
  const named = providerOfHost(host);
  return named !== null ? named : apiProvider(path);
}

/** The provider a path's API family implies (providerName for a host it does not know). */
export function apiProvider(path: string): string {
  const p = bare(path);
  if (p.endsWith("/v1/messages")) return "anthropic";
  if (p.endsWith(":generateContent") || p.endsWith(":streamGenerateContent")) {
    return p.indexOf("/publishers/google/") >= 0 ? "gcp.vertex_ai" : "gcp.gemini";
  }
  if (isBedrock(p)) return "aws.bedrock";
  if (p.endsWith("/v2/chat") || p.endsWith("/v2/embed")) return "cohere";
  // Custom value: Ollama's native API has no well-known name.
  if (p.endsWith("/api/chat") || p.endsWith("/api/generate") || p.endsWith("/api/embed")) return "ollama";
  return "openai";
}

function isBedrock(p: string): bool {
  return (
    p.indexOf("/model/") >= 0 &&
    (p.endsWith("/converse") ||
      p.endsWith("/converse-stream") ||
      p.endsWith("/invoke") ||
      p.endsWith("/invoke-with-response-stream"))
  );
}

/**
 * How the API of a path reports its counts (INPUT_EXCLUDES_CACHE, OUTPUT_EXCLUDES_REASONING):
 * Anthropic Messages and Bedrock (Converse, and InvokeModel's Anthropic bodies and invocation
 * metrics) report cache reads and writes beside the input tokens; Gemini and Vertex report
 * thoughts beside the candidates. Every OpenAI-style API (DashScope, DeepSeek, Azure, vLLM, the
 * Responses API) counts cached tokens inside the prompt and reasoning inside the completion.
 */
export function tokenAccounting(path: string): u8 {
  const p = bare(path);
  if (p.endsWith("/v1/messages") || isBedrock(p)) return INPUT_EXCLUDES_CACHE;
  if (p.endsWith(":generateContent") || p.endsWith(":streamGenerateContent"))
    return OUTPUT_EXCLUDES_REASONING;
  return 0;
}

function count(n: i64): i64 {
  return n > 0 ? n : 0;
}

/**
 * The conventions' input tokens (gen_ai.usage.input_tokens: every input token, cached and
 * cache-write ones included), or -1 when the prompt was not reported.
 */
export function inputTokens(prompt: i64, cached: i64, cacheWrite: i64, accounting: u8): i64 {
  if (prompt < 0) return -1;
  return (accounting & INPUT_EXCLUDES_CACHE) != 0 ? prompt + count(cached) + count(cacheWrite) : prompt;
}

/**
 * The conventions' output tokens (reasoning included), or -1 when the completion was not
 * reported.
 */
export function outputTokens(completion: i64, reasoning: i64, accounting: u8): i64 {
  if (completion < 0) return -1;
  return (accounting & OUTPUT_EXCLUDES_REASONING) != 0 ? completion + count(reasoning) : completion;
}

// SPDX-License-Identifier: Apache-2.0
// What each API's path shape says beyond the fields of its body, as data: one entry per API,
// naming the shape endings that select it and the rules the stream follows for it (where the
// model and the stream flag come from, how a JSON response is framed, which counts are which,
// whether a response may be counted twice). The stream reads these flags and never names an
// API. Adding an API adds an entry here, its fields in formats.ts, its reader if it has its own
// framing, and its tests. Pure: no host imports.

/** Ids of the APIs a path shape can name (PathShape.api). */
export const API_DEFAULT: u8 = 0;
/** Gemini / Vertex `:generateContent`: model in the path. */
export const API_GEMINI: u8 = 1;
/** Gemini / Vertex `:streamGenerateContent`: model in the path, always streamed. */
export const API_GEMINI_STREAM: u8 = 2;
/** Bedrock Converse: model in the path, not streamed. */
export const API_BEDROCK: u8 = 3;
/** Bedrock ConverseStream: model in the path, streamed. */
export const API_BEDROCK_STREAM: u8 = 4;
/** Bedrock InvokeModel (either form): Bedrock's own token counts win over the model's. */
export const API_BEDROCK_INVOKE: u8 = 5;
export const API_BEDROCK_INVOKE_STREAM: u8 = 6;
/** Ollama `/api/chat`, `/api/generate`: streamed unless the body says `"stream": false`. */
export const API_OLLAMA: u8 = 7;
/** OpenAI Responses, POST: a completed response is counted once by id. */
export const API_RESPONSES: u8 = 8;
/** OpenAI Responses by id (GET): streamed when the query has `stream=true`. */
export const API_RESPONSES_GET: u8 = 9;
/** An embeddings API: a response that reports only a total has that many prompt tokens. */
export const API_EMBEDDINGS: u8 = 10;

/** Where a call's stream flag comes from. */
export const STREAM_FROM_BODY: u8 = 0;
/** The path alone says: `ApiRules.pathStreams`. */
export const STREAM_FROM_PATH: u8 = 1;
/** The query string says: streamed when it has `ApiRules.streamQuery`. */
export const STREAM_FROM_QUERY: u8 = 2;

const NONE: string[] = [];

export class ApiRules {
  readonly id: u8;
  /** A GET shape (`GET ...`); the entry then matches a shape that contains `within`. */
  readonly get: bool;
  /** How a shape ends (after its method) to name this API. */
  readonly endings: string[];
  within: string = "";
  /** The API answers in its own format (formats.ts NATIVE_FORMAT), on every shape. */
  native: bool = false;
  /** Shape endings on which it answers in its own format (when `native` is false). */
  nativeEndings: string[] = NONE;
  stream: u8 = STREAM_FROM_BODY;
  /** With STREAM_FROM_PATH: the path is the streaming form of the call. */
  pathStreams: bool = false;
  /** With STREAM_FROM_QUERY: the query parameter (`name=value`) that asks for a stream. */
  streamQuery: string = "";
  /** With STREAM_FROM_BODY: a body without `"stream": false` streams (Ollama). */
  streamsByDefault: bool = false;
  /** An `application/json` response is a JSON array streamed element by element (Gemini). */
  jsonArray: bool = false;
  /** Event-stream payloads wrap the model's JSON in `{"bytes":"<base64>"}` (Bedrock Invoke). */
  base64Payloads: bool = false;
  /** Response headers with the prompt and completion counts the provider bills; they win. */
  promptHeader: ArrayBuffer | null = null;
  completionHeader: ArrayBuffer | null = null;
  /** A response that reports only a total has that many prompt tokens (embeddings). */
  totalIsPrompt: bool = false;
  /** A completed response is counted once by its id, however often it is read (Responses). */
  countOnce: bool = false;

  constructor(id: u8, get: bool, endings: string[]) {
    this.id = id;
    this.get = get;
    this.endings = endings;
  }

  /** The path, not the body, says whether the call streams (a body gets no `stream` member). */
  get pathNamesStream(): bool {
    return this.stream == STREAM_FROM_PATH;
  }

  /** Whether a shape (its text after the method) names this API. */
  names(get: bool, text: string): bool {
    if (get != this.get) return false;
    if (this.within.length > 0) return text.indexOf(this.within) >= 0;
    return endsWithAny(text, this.endings);
  }

  /** Whether the API answers in its own format on a shape. */
  nativeOn(text: string): bool {
    return this.native || endsWithAny(text, this.nativeEndings);
  }

  // Builders for the table below.
  containing(text: string): ApiRules {
    this.within = text;
    return this;
  }
  ownFormat(): ApiRules {
    this.native = true;
    return this;
  }
  ownFormatOn(endings: string[]): ApiRules {
    this.nativeEndings = endings;
    return this;
  }
  streamFromPath(streams: bool): ApiRules {
    this.stream = STREAM_FROM_PATH;
    this.pathStreams = streams;
    return this;
  }
  streamFromQuery(param: string): ApiRules {
    this.stream = STREAM_FROM_QUERY;
    this.streamQuery = param;
    return this;
  }
  streamUnlessFalse(): ApiRules {
    this.streamsByDefault = true;
    return this;
  }
  arrayOfMessages(): ApiRules {
    this.jsonArray = true;
    return this;
  }
  base64InEvents(): ApiRules {
    this.base64Payloads = true;
    return this;
  }
  countsInHeaders(prompt: string, completion: string): ApiRules {
    this.promptHeader = String.UTF8.encode(prompt);
    this.completionHeader = String.UTF8.encode(completion);
    return this;
  }
  totalAsPrompt(): ApiRules {
    this.totalIsPrompt = true;
    return this;
  }
  countedOnceById(): ApiRules {
    this.countOnce = true;
    return this;
  }
}

function endsWithAny(text: string, endings: string[]): bool {
  for (let i = 0; i < endings.length; i++) if (text.endsWith(unchecked(endings[i]))) return true;
  return false;
}

function post(id: u8, endings: string[]): ApiRules {
  return new ApiRules(id, false, endings);
}

/**
 * OpenAI-style chat, completions, Anthropic messages: a shape that names no other API. Cohere v2
 * chat (and a GET shape ending like a native embed path) answers in its own format.
 */
export const DEFAULT_API = post(API_DEFAULT, NONE).ownFormatOn(["/v2/chat", "/api/embed", "/v2/embed"]);

/** The APIs a shape can name, tried in order; a shape that names none is DEFAULT_API. */
const APIS: ApiRules[] = [
  new ApiRules(API_RESPONSES_GET, true, NONE)
    .containing("/responses/")
    .streamFromQuery("stream=true")
    .countedOnceById(),
  post(API_GEMINI_STREAM, [":streamGenerateContent"]).ownFormat().streamFromPath(true).arrayOfMessages(),
  post(API_GEMINI, [":generateContent"]).ownFormat().streamFromPath(false),
  post(API_BEDROCK_STREAM, ["/converse-stream"]).ownFormat().streamFromPath(true),
  post(API_BEDROCK, ["/converse"]).ownFormat().streamFromPath(false),
  post(API_BEDROCK_INVOKE_STREAM, ["/invoke-with-response-stream"])
    .ownFormat()
    .streamFromPath(true)
    .base64InEvents(),
  post(API_BEDROCK_INVOKE, ["/invoke"])
    .ownFormat()
    .streamFromPath(false)
    .countsInHeaders("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count"),
  post(API_OLLAMA, ["/api/chat", "/api/generate"]).ownFormat().streamUnlessFalse(),
  post(API_RESPONSES, ["/responses", "/responses/compact"]).countedOnceById(),
  post(API_EMBEDDINGS, ["/embeddings", "/embed"]).ownFormatOn(["/api/embed", "/v2/embed"]).totalAsPrompt(),
];

/** The API a shape names, from its method and its text after the method. */
export function apiOf(get: bool, text: string): ApiRules {
  for (let i = 0; i < APIS.length; i++) {
    const api = unchecked(APIS[i]);
    if (api.names(get, text)) return api;
  }
  return DEFAULT_API;
}

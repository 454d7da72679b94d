// SPDX-License-Identifier: Apache-2.0
// A small OpenAI-compatible upstream for the demo and the tests, as strict as DashScope's
// compatible mode: only POST /compatible-mode/v1/chat/completions (else 404), only with
// `Authorization: Bearer <its key>` (else 401 with DashScope's error body), only for a body that
// names a model (else 400). It answers with the model the request named, never one of its own
// choosing: completing a request (path, model, key) is the sidecar's job, as in ASM.

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Token usage the upstream reports per model (the seed's access-log values). */
export const USAGE: Record<string, { prompt: number; completion: number }> = {
  "qwen1.5-72b-chat": { prompt: 3, completion: 55 },
  "qwen-turbo": { prompt: 11, completion: 90 },
};

/** The key the mock accepts unless told another (a test value, not a real key). */
export const MOCK_API_KEY = "sk-mock-0123456789abcdef";
export const MOCK_PATH = "/compatible-mode/v1/chat/completions";

/** DashScope compatible mode's answers to a request it refuses (OpenAI's error shape). */
export const ERROR_BODIES = {
  401: JSON.stringify({
    error: {
      message: "Incorrect API key provided. ",
      type: "invalid_request_error",
      param: null,
      code: "invalid_api_key",
    },
  }),
  400: JSON.stringify({
    error: {
      message: "Required parameter(s) missing or invalid, please check the request parameters.",
      type: "invalid_request_error",
      param: null,
      code: "invalid_parameter_error",
    },
  }),
  404: JSON.stringify({
    error: { message: "Not Found", type: "invalid_request_error", param: null, code: "not_found" },
  }),
};

/** The non-streamed chat completion body the upstream sends for a model. */
export function completionBody(model: string, id = "chatcmpl-0"): string {
  const u = USAGE[model] ?? { prompt: 7, completion: 13 };
  return JSON.stringify({
    choices: [
      {
        message: {
          role: "assistant",
          content: `I am a large language model (served as ${model}). Ask me about "model" or "usage": I will answer.`,
        },
        finish_reason: "stop",
        index: 0,
        logprobs: null,
      },
    ],
    object: "chat.completion",
    usage: {
      prompt_tokens: u.prompt,
      completion_tokens: u.completion,
      total_tokens: u.prompt + u.completion,
    },
    created: 1720754403,
    system_fingerprint: null,
    model,
    id,
  });
}

/** The events of a streamed chat completion; the last carries usage when the request asked for it. */
export function completionEvents(model: string, includeUsage: boolean, id = "chatcmpl-0"): string[] {
  const u = USAGE[model] ?? { prompt: 7, completion: 13 };
  const chunk = (delta: object, finish: string | null, extra: object = {}) =>
    JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created: 1720754403,
      model,
      choices: [{ index: 0, delta, finish_reason: finish }],
      ...extra,
    });
  const events = [
    chunk({ role: "assistant", content: "" }, null),
    ...["I am ", "a large ", "language model."].map((t) => chunk({ content: t }, null)),
    chunk({}, "stop"),
  ];
  if (includeUsage) {
    events.push(
      JSON.stringify({
        id,
        object: "chat.completion.chunk",
        created: 1720754403,
        model,
        choices: [],
        usage: {
          prompt_tokens: u.prompt,
          completion_tokens: u.completion,
          total_tokens: u.prompt + u.completion,
        },
      }),
    );
  }
  events.push("[DONE]");
  return events.map((e) => `data: ${e}\n\n`);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const p of req) parts.push(p as Buffer);
  return Buffer.concat(parts).toString("utf8");
}

/**
 * What the mock answers a request, decided as DashScope's compatible mode decides: the path
 * first, then the key, then the body. A 200 carries the completion of the model the body named.
 */
export function respond(
  method: string,
  path: string,
  authorization: string | undefined,
  body: string,
  apiKey = MOCK_API_KEY,
): { status: 200 | 400 | 401 | 404; body: string } {
  if (method !== "POST" || path.split("?")[0] !== MOCK_PATH) return { status: 404, body: ERROR_BODIES[404] };
  if (authorization !== `Bearer ${apiKey}`) return { status: 401, body: ERROR_BODIES[401] };
  let request: any;
  try {
    request = JSON.parse(body);
  } catch {
    return { status: 400, body: ERROR_BODIES[400] };
  }
  if (typeof request !== "object" || request === null || typeof request.model !== "string" || !request.model)
    return { status: 400, body: ERROR_BODIES[400] };
  return { status: 200, body: completionBody(request.model) };
}

export interface MockUpstream {
  server: Server;
  port: number;
  /** Every request as it arrived: path, headers and body. */
  requests: Array<{ path: string; headers: Record<string, string | string[] | undefined>; body: string }>;
  close(): Promise<void>;
}

export async function startMockUpstream(
  host = "127.0.0.1",
  port = 0,
  apiKey = MOCK_API_KEY,
): Promise<MockUpstream> {
  const requests: MockUpstream["requests"] = [];
  const server = createServer(async (req, res) => {
    const text = await readBody(req);
    requests.push({ path: req.url ?? "", headers: req.headers, body: text });
    const answer = respond(req.method ?? "", req.url ?? "", req.headers.authorization, text, apiKey);
    if (answer.status !== 200) {
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(answer.body);
      return;
    }
    const request = JSON.parse(text);
    const model: string = request.model;
    if (request.stream === true) {
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
      const events = completionEvents(model, request.stream_options?.include_usage === true);
      const next = (i: number) => {
        if (i === events.length) return void res.end();
        res.write(events[i]);
        setTimeout(() => next(i + 1), 2);
      };
      next(0);
      return;
    }
    const body = completionBody(model);
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    // Two writes, so the proxy sees the body in more than one chunk.
    const half = Math.floor(body.length / 2);
    res.write(body.slice(0, half));
    setTimeout(() => res.end(body.slice(half)), 5);
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    server,
    requests,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

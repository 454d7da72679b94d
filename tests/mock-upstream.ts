// SPDX-License-Identifier: Apache-2.0
// A small OpenAI-compatible upstream for the demo and the tests: it answers chat completions the
// way DashScope's compatible mode does in the seed's scenario. The model is the request's, or
// chosen the way the seed's routing does (`user-type: subscriber` goes to qwen-turbo).

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Token usage the upstream reports per model (the seed's access-log values). */
export const USAGE: Record<string, { prompt: number; completion: number }> = {
  "qwen1.5-72b-chat": { prompt: 3, completion: 55 },
  "qwen-turbo": { prompt: 11, completion: 90 },
};

export function chooseModel(
  requestModel: string | undefined,
  headers: Record<string, string | string[] | undefined>,
): string {
  if (requestModel) return requestModel;
  return headers["user-type"] === "subscriber" ? "qwen-turbo" : "qwen1.5-72b-chat";
}

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

export interface MockUpstream {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startMockUpstream(host = "127.0.0.1", port = 0): Promise<MockUpstream> {
  const server = createServer(async (req, res) => {
    const text = await readBody(req);
    if (req.method !== "POST" || !req.url?.split("?")[0].endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":{"message":"not found"}}');
      return;
    }
    let request: any;
    try {
      request = JSON.parse(text);
    } catch {
      res.writeHead(400, { "content-type": "application/json" });
      res.end('{"error":{"message":"invalid JSON"}}');
      return;
    }
    const model = chooseModel(typeof request.model === "string" ? request.model : undefined, req.headers);
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
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

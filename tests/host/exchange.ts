// SPDX-License-Identifier: Apache-2.0
// The test host as a tiny proxy: one request goes through the plugin's request callbacks, then to
// a real upstream over loopback HTTP; the response's chunks reach the plugin as the socket
// delivers them, then the stream ends as Envoy ends it (on_log, on_done, on_delete). A request
// the plugin pauses goes upstream only once it is continued; one it answers with a local reply
// never does.

import { request as httpRequest } from "node:http";
import type { HttpStream, ProxyWasmHost } from "./host.ts";

export interface Exchange {
  method: string;
  path: string;
  authority: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface ExchangeResult {
  stream: HttpStream;
  /** The request as it went upstream. */
  upstreamPath: string;
  upstreamHeaders: Record<string, string>;
  upstreamBody: string;
  status: number;
  body: string;
  /** Number of response chunks the plugin saw. */
  chunks: number;
  /** The plugin answered with a local reply: nothing went upstream. */
  local: boolean;
}

export async function exchange(
  host: ProxyWasmHost,
  x: Exchange,
  upstreamPort: number,
  cluster?: string,
): Promise<ExchangeResult> {
  const s = host.stream({ cluster });
  const hasBody = x.body !== undefined && x.body.length > 0;
  s.sendRequestHeaders(
    { ":method": x.method, ":path": x.path, ":authority": x.authority, ...x.headers },
    !hasBody,
  );
  if (hasBody) s.sendRequestBody(x.body!, true);
  if ((await s.released) === "local") {
    return {
      stream: s,
      upstreamPath: "",
      upstreamHeaders: {},
      upstreamBody: "",
      status: s.localReply!.status,
      body: new TextDecoder().decode(s.forwarded("response")),
      chunks: 0,
      local: true,
    };
  }
  const requestBody = s.forwarded("request");

  // Upstream goes what the plugin left of the request: its headers (a path or key it set, a
  // content-length it removed) and its body.
  const headers: Record<string, string> = {};
  let path = x.path;
  for (const [k, v] of s.requestHeaders) {
    if (k === ":path") path = v;
    else if (k === ":authority") headers.host = v;
    else if (!k.startsWith(":") && k !== "content-length" && !(k in headers)) headers[k] = v;
  }
  if (hasBody) headers["content-length"] = String(requestBody.length);

  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port: upstreamPort, method: x.method, path, headers },
      (res) => {
        const responseHeaders: Record<string, string> = { ":status": String(res.statusCode) };
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === "string") responseHeaders[k] = v;
        s.sendResponseHeaders(responseHeaders, false);
        let chunks = 0;
        res.on("data", (chunk: Buffer) => {
          chunks++;
          s.sendResponseBody(new Uint8Array(chunk), false);
        });
        res.on("end", () => {
          // Chunked HTTP/1.1 ends with a zero-length data frame carrying end_of_stream.
          s.sendResponseBody(new Uint8Array(0), true);
          s.end();
          resolve({
            stream: s,
            upstreamPath: path,
            upstreamHeaders: headers,
            upstreamBody: new TextDecoder().decode(requestBody),
            status: res.statusCode ?? 0,
            body: new TextDecoder().decode(s.forwarded("response")),
            chunks,
            local: false,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(Buffer.from(requestBody));
  });
}

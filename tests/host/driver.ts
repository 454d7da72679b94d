// SPDX-License-Identifier: Apache-2.0
// One HTTP call through the plugin, in the order Envoy drives a stream: the context is created,
// request headers, request body chunks, response headers, response body chunks (or trailers, or
// a reset), then the stream ends (on_log, on_done, on_delete). The host tests send their calls
// through here and keep their own defaults and assertions.

import { split, type HttpStream, type ProxyWasmHost } from "./host.ts";

export interface Request {
  /** Every request header, pseudo-headers included, in order. */
  headers: Record<string, string> | Array<[string, string]>;
  /** The body; without one the request headers carry end_of_stream. */
  body?: string | Uint8Array;
  /** Offsets the body is cut at, each part its own chunk, the last with end_of_stream. */
  cuts?: number[];
}

export interface Response {
  /** ":status", 200 unless given. */
  status?: string | number;
  /** The headers after ":status", in order. */
  headers?: Record<string, string>;
  /** The body; without one (and without `timed`) no data chunk is sent. */
  body?: string | Uint8Array;
  /** Offsets the body is cut at, each part its own chunk. */
  cuts?: number[];
  /** Instead of body and cuts: chunks, each sent after advancing the host clock by its delay (ms). */
  timed?: Array<[number, string | Uint8Array]>;
  /**
   * How the response ends: "body", end_of_stream on the last data chunk (the default); "headers",
   * on the headers, with no body; "trailers", after the data; "reset", never (only on_log follows).
   */
  end?: "body" | "headers" | "trailers" | "reset";
}

export interface Call {
  /** The upstream cluster (xds.cluster_name); none when absent. */
  cluster?: string;
  /** Envoy's stream id, which a weighted route split picks by. */
  streamId?: number;
  /** The cluster the router finally chooses, when it differs from the one read in the request. */
  finalCluster?: string;
  request: Request;
  /** Milliseconds on the host clock between the request and the response headers. */
  wait?: number;
  /**
   * The response, or a function that answers from the stream as the plugin left the request
   * (its path, headers, body). Without one the stream ends after the request.
   */
  response?: Response | ((s: HttpStream) => Response);
  /** Milliseconds on the host clock after the response, before the stream ends. */
  linger?: number;
}

const enc = new TextEncoder();
const bytes = (data: string | Uint8Array) => (typeof data === "string" ? enc.encode(data) : data);

export function drive(host: ProxyWasmHost, c: Call): HttpStream {
  const s = host.stream({ cluster: c.cluster, streamId: c.streamId, finalCluster: c.finalCluster });
  const { headers, body, cuts = [] } = c.request;
  s.sendRequestHeaders(headers, body === undefined);
  if (body !== undefined) s.sendRequestChunks(body, cuts);
  if (c.response !== undefined) {
    if (c.wait !== undefined) host.advanceMs(c.wait);
    respond(host, s, typeof c.response === "function" ? c.response(s) : c.response);
    if (c.linger !== undefined) host.advanceMs(c.linger);
  }
  s.end();
  return s;
}

function respond(host: ProxyWasmHost, s: HttpStream, r: Response): void {
  const end = r.end ?? "body";
  s.sendResponseHeaders({ ":status": String(r.status ?? 200), ...r.headers }, end === "headers");
  if (end === "headers") return;
  const chunks: Array<[number, Uint8Array]> = r.timed
    ? r.timed.map(([delay, data]) => [delay, bytes(data)])
    : r.body === undefined
      ? []
      : split(bytes(r.body), r.cuts ?? []).map((part) => [0, part.bytes]);
  chunks.forEach(([delay, data], i) => {
    host.advanceMs(delay);
    s.sendResponseBody(data, end === "body" && i === chunks.length - 1);
  });
  if (end === "trailers") s.sendResponseTrailers();
}

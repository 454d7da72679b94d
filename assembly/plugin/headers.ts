// SPDX-License-Identifier: Apache-2.0
// Header, value and property names, UTF-8-encoded once per VM so that no callback encodes one.

import {
  KEY_REQUEST_MODEL,
  KEY_RESPONSE_MODEL,
  KEY_PROMPT_TOKENS,
  KEY_COMPLETION_TOKENS,
  KEY_TOTAL_TOKENS,
  KEY_CACHED_TOKENS,
  KEY_REASONING_TOKENS,
  KEY_CACHE_WRITE_TOKENS,
  KEY_REQUEST_STREAM,
  KEY_USAGE,
  KEY_FIRST_TOKEN_MS,
  KEY_DURATION_MS,
  KEY_MS_PER_OUTPUT_TOKEN,
  KEY_REQUEST_COST,
} from "../telemetry/names";

export const H_METHOD = String.UTF8.encode(":method");
export const V_POST = String.UTF8.encode("POST");
export const V_GET = String.UTF8.encode("GET");
export const H_PATH = String.UTF8.encode(":path");
export const H_AUTHORITY = String.UTF8.encode(":authority");
export const H_STATUS = String.UTF8.encode(":status");
export const H_CONTENT_TYPE = String.UTF8.encode("content-type");
export const H_CONTENT_ENCODING = String.UTF8.encode("content-encoding");
export const H_CONTENT_LENGTH = String.UTF8.encode("content-length");
export const H_ACCEPT_ENCODING = String.UTF8.encode("accept-encoding");

// Filter-state paths (telemetry/names.ts KEY_*).
export const P_REQUEST_MODEL = String.UTF8.encode(KEY_REQUEST_MODEL);
export const P_RESPONSE_MODEL = String.UTF8.encode(KEY_RESPONSE_MODEL);
export const P_PROMPT_TOKENS = String.UTF8.encode(KEY_PROMPT_TOKENS);
export const P_COMPLETION_TOKENS = String.UTF8.encode(KEY_COMPLETION_TOKENS);
export const P_TOTAL_TOKENS = String.UTF8.encode(KEY_TOTAL_TOKENS);
export const P_CACHED_TOKENS = String.UTF8.encode(KEY_CACHED_TOKENS);
export const P_REASONING_TOKENS = String.UTF8.encode(KEY_REASONING_TOKENS);
export const P_CACHE_WRITE_TOKENS = String.UTF8.encode(KEY_CACHE_WRITE_TOKENS);
export const P_REQUEST_STREAM = String.UTF8.encode(KEY_REQUEST_STREAM);
export const P_USAGE = String.UTF8.encode(KEY_USAGE);
export const P_FIRST_TOKEN_MS = String.UTF8.encode(KEY_FIRST_TOKEN_MS);
export const P_DURATION_MS = String.UTF8.encode(KEY_DURATION_MS);
export const P_MS_PER_OUTPUT_TOKEN = String.UTF8.encode(KEY_MS_PER_OUTPUT_TOKEN);
export const P_REQUEST_COST = String.UTF8.encode(KEY_REQUEST_COST);

// Property paths: segments joined by NUL, as proxy_get_property expects.
export const CLUSTER_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0cluster_name"),
  String.UTF8.encode("cluster_name"),
];
// The route's name (Envoy's %ROUTE_NAME%; in Istio a VirtualService http route's `name`): under
// `xds` since Envoy 1.33, a Wasm-only top-level attribute before.
export const ROUTE_NAME_PATHS: ArrayBuffer[] = [
  String.UTF8.encode("xds\0route_name"),
  String.UTF8.encode("route_name"),
];

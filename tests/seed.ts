// SPDX-License-Identifier: Apache-2.0
// The scenario of ../shared/seed/000_63318bf96f258a56.txt ("Observe LLM traffic"): the `sleep`
// workload in `default` calls dashscope.aliyuncs.com twice with a body that names no model; the
// mesh routes the second call (user-type: subscriber) to qwen-turbo.

import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import type { HttpStream, ProxyWasmHost } from "./host/host.ts";
import { completionBody } from "./mock-upstream.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/**
 * The module under test: ASM_LLM_PROXY_WASM (a path), else the release build. `npm test` runs
 * the host tests once with the SIMD build and once with the build without SIMD.
 */
export const WASM = process.env.ASM_LLM_PROXY_WASM
  ? resolve(ROOT, process.env.ASM_LLM_PROXY_WASM)
  : ROOT + "build/asm-llm-proxy.wasm";
export const BOOTSTRAP_CONFIGMAP = ROOT + "deploy/istio/asm-llm-proxy-bootstrap-config.yaml";

/**
 * The configuration that publishes every filter-state key (`filter_state`), for tests that
 * assert keys beyond the seed's three.
 */
export const ALL_FILTER_STATE = { filter_state: ["all"] };

export const NODE_METADATA = { WORKLOAD_NAME: "sleep", NAMESPACE: "default" };
export const CLUSTER = "outbound|80||dashscope.aliyuncs.com";
export const PATH = "/compatible-mode/v1/chat/completions";

export const REQUEST_BODY = JSON.stringify({
  messages: [{ role: "user", content: "Please introduce yourself." }],
});

export interface SeedCall {
  headers: Record<string, string>;
  model: string;
  prompt: number;
  completion: number;
}

export const CALLS: SeedCall[] = [
  {
    headers: {
      ":method": "POST",
      ":path": PATH,
      ":authority": "dashscope.aliyuncs.com",
      "content-type": "application/json",
    },
    model: "qwen1.5-72b-chat",
    prompt: 3,
    completion: 55,
  },
  {
    headers: {
      ":method": "POST",
      ":path": PATH,
      ":authority": "dashscope.aliyuncs.com",
      "content-type": "application/json",
      "user-type": "subscriber",
    },
    model: "qwen-turbo",
    prompt: 11,
    completion: 90,
  },
];

/** The seed's three log fields, as configured in its "Configure log fields" step. */
export const LOG_FIELDS = {
  authority_for: "%REQ(:AUTHORITY)%",
  path: "%REQ(:PATH)%",
  response_code: "%RESPONSE_CODE%",
  upstream_cluster: "%UPSTREAM_CLUSTER%",
  request_model: "%FILTER_STATE(wasm.asm.llmproxy.request_model:PLAIN)%",
  request_prompt_tokens: "%FILTER_STATE(wasm.asm.llmproxy.request_prompt_tokens:PLAIN)%",
  request_completion_tokens: "%FILTER_STATE(wasm.asm.llmproxy.request_completion_tokens:PLAIN)%",
};

/**
 * The seed's `grep llmproxy` of /stats/prometheus, with the token counts of its access-log step
 * (the seed's own Prometheus sample, 72 and 85 completion tokens, came from other requests).
 */
export const PROMETHEUS_LINES = [
  'asm_llm_proxy_completion_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen1.5-72b-chat"} 55',
  'asm_llm_proxy_completion_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-turbo"} 90',
  'asm_llm_proxy_prompt_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen1.5-72b-chat"} 3',
  'asm_llm_proxy_prompt_tokens{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="dashscope.aliyuncs.com",llmproxy_model="qwen-turbo"} 11',
];

/**
 * `grep llmproxy` over a /stats/prometheus text, kept to the seed's two token counters (the
 * plugin also exports asm_llm_proxy_requests and latency histograms, which the seed predates).
 */
export function grepLlmproxy(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l.includes("llmproxy") && /^asm_llm_proxy_(prompt|completion)_tokens\{/.test(l));
}

/** One seed call through the host, answered as the mock upstream answers it, whole. */
export function seedCall(host: ProxyWasmHost, call: SeedCall): HttpStream {
  const s = host.stream({ cluster: CLUSTER });
  s.sendRequestHeaders(call.headers);
  s.sendRequestBody(REQUEST_BODY, true);
  s.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
  s.sendResponseBody(completionBody(call.model), true);
  s.end();
  return s;
}

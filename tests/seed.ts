// SPDX-License-Identifier: Apache-2.0
// The scenario of ../shared/seed/000_63318bf96f258a56.txt ("Observe LLM traffic"): the `sleep`
// workload in `default` runs the seed's two curl calls: POST / to dashscope.aliyuncs.com with a
// body of only `messages`, no model and no key. The sidecar completes them as ASM's LLM routing
// does (`providers`): the provider's path, its key from the VM environment, the model of the
// route Envoy chose (the VirtualService route `vip-route` for `user-type: subscriber`).

import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import type { HttpStream, ProxyWasmHost, HostOptions, RouteRule } from "./host/host.ts";
import { respond, MOCK_API_KEY } from "./mock-upstream.ts";
import { drive } from "./host/driver.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The release module (SIMD), the one `npm run image` ships. */
export const RELEASE_WASM = ROOT + "build/asm-llm-proxy.wasm";
/**
 * The module under test: ASM_LLM_PROXY_WASM (a path), else the release build. `npm test` runs
 * every test file that names it twice, with the SIMD build and with the build without SIMD
 * (package.json `test:nosimd` lists them; tests/modules.test.ts fails when one is missing). A
 * test that needs a module only as an artefact or a source of metrics takes RELEASE_WASM and
 * runs once.
 */
export const WASM = process.env.ASM_LLM_PROXY_WASM
  ? resolve(ROOT, process.env.ASM_LLM_PROXY_WASM)
  : RELEASE_WASM;
export const BOOTSTRAP_CONFIGMAP = ROOT + "deploy/istio/asm-llm-proxy-bootstrap-config.yaml";

/**
 * The configuration that publishes every filter-state key (`filter_state`), for tests that
 * assert keys beyond the seed's three.
 */
export const ALL_FILTER_STATE = { filter_state: ["all"] };

export const NODE_METADATA = { WORKLOAD_NAME: "sleep", NAMESPACE: "default" };
export const CLUSTER = "outbound|80||dashscope.aliyuncs.com";
export const PATH = "/compatible-mode/v1/chat/completions";

/**
 * The seed's `--data`, byte for byte as curl sends it (newlines kept). With the documentation's
 * two-space indentation it is the 85 bytes of the seed's `bytes_received`.
 */
export const REQUEST_BODY =
  '{\n  "messages": [\n    {"role": "user", "content": "Please introduce yourself."}\n  ]\n}';

/** The WasmPlugin's pluginConfig of deploy/istio/wasmplugin.yaml: the seed's routing. */
export const PLUGIN_CONFIG = {
  providers: [
    {
      host: "dashscope.aliyuncs.com",
      path: PATH,
      model: "qwen1.5-72b-chat",
      api_key_env: "DASHSCOPE_API_KEY",
      routes: { "vip-route": { model: "qwen-turbo" } },
    },
  ],
};

/** The VirtualService of deploy/istio/dashscope-routing.yaml, as the proxy's routes. */
export const ROUTES: RouteRule[] = [
  {
    name: "vip-route",
    headers: { "user-type": "subscriber" },
    clusters: [{ cluster: CLUSTER, weight: 100 }],
  },
  { clusters: [{ cluster: CLUSTER, weight: 100 }] },
];

/** The test host as the seed's sidecar: its workload, routes, plugin configuration and key. */
export const SEED_HOST: HostOptions = {
  nodeMetadata: NODE_METADATA,
  pluginConfig: PLUGIN_CONFIG,
  routes: ROUTES,
  env: { DASHSCOPE_API_KEY: MOCK_API_KEY },
};

export interface SeedCall {
  headers: Record<string, string>;
  model: string;
  prompt: number;
  completion: number;
}

/** What curl 8.8.0 sends for `curl --location 'http://dashscope.aliyuncs.com' --header ... --data ...`. */
const CURL = {
  ":method": "POST",
  ":path": "/",
  ":authority": "dashscope.aliyuncs.com",
  "user-agent": "curl/8.8.0",
  accept: "*/*",
  "content-type": "application/json",
  "content-length": String(new TextEncoder().encode(REQUEST_BODY).length),
};

export const CALLS: SeedCall[] = [
  {
    headers: { ...CURL },
    model: "qwen1.5-72b-chat",
    prompt: 3,
    completion: 55,
  },
  {
    headers: { ...CURL, "user-type": "subscriber" },
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
  route_name: "%ROUTE_NAME%",
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

/** What went upstream of a stream: its path, authorization and body. */
export function upstreamRequest(s: HttpStream): { path: string; authorization?: string; body: string } {
  const get = (k: string) => s.requestHeaders.find(([n]) => n === k)?.[1];
  return {
    path: get(":path") ?? "",
    authorization: get("authorization"),
    body: new TextDecoder().decode(s.forwarded("request")),
  };
}

/**
 * One seed call through the host (its body in chunks cut at `cuts`), answered by the strict
 * mock's rules from what the plugin let upstream, whole. Returns the stream and the status.
 */
export function seedCall(
  host: ProxyWasmHost,
  call: SeedCall,
  cuts: number[] = [],
  finalCluster?: string,
): HttpStream & { status: number } {
  let answer = { status: 0, body: "" };
  const s = drive(host, {
    cluster: CLUSTER,
    finalCluster,
    request: { headers: call.headers, body: REQUEST_BODY, cuts },
    response: (s) => {
      const up = upstreamRequest(s);
      answer = respond("POST", up.path, up.authorization, up.body);
      return { status: answer.status, headers: { "content-type": "application/json" }, body: answer.body };
    },
  });
  return Object.assign(s, { status: answer.status });
}

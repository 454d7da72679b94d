// SPDX-License-Identifier: Apache-2.0
// `npm start`: the seed's "Verify access logs" and "Verify token metrics" steps without a mesh.
// The built plugin runs in the test host, which forwards the seed's two requests to a mock
// OpenAI-compatible upstream on loopback; then the access-log lines and the token lines of
// /stats/prometheus are printed as the seed shows them.

import { ProxyWasmHost } from "./host/host.ts";
import { exchange } from "./host/exchange.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { startMockUpstream } from "./mock-upstream.ts";
import {
  WASM,
  BOOTSTRAP_CONFIGMAP,
  NODE_METADATA,
  CLUSTER,
  CALLS,
  REQUEST_BODY,
  LOG_FIELDS,
  grepLlmproxy,
} from "./seed.ts";

const upstream = await startMockUpstream();
try {
  const host = await ProxyWasmHost.load(WASM, { nodeMetadata: NODE_METADATA, printLogs: true });
  console.log(`# plugin ${WASM} in the test host; mock upstream on 127.0.0.1:${upstream.port}`);
  console.log(
    "# sleep (namespace default) sends the seed's two requests (the second with user-type: subscriber)\n",
  );
  console.log("$ kubectl logs deployments/sleep -c istio-proxy | tail -2");
  for (const call of CALLS) {
    const { [":method"]: method, [":path"]: path, [":authority"]: authority, ...headers } = call.headers;
    const r = await exchange(
      host,
      { method, path, authority, headers, body: REQUEST_BODY },
      upstream.port,
      CLUSTER,
    );
    console.log(renderJsonAccessLog(LOG_FIELDS, { stream: r.stream, responseCode: r.status }));
  }
  console.log("\n# and one streamed call (stream: true, stream_options.include_usage: true) to qwen-plus:");
  const streamed = await exchange(
    host,
    {
      method: "POST",
      path: CALLS[0].headers[":path"],
      authority: "dashscope.aliyuncs.com",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "qwen-plus",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "Please introduce yourself." }],
      }),
    },
    upstream.port,
    CLUSTER,
  );
  console.log(`# (${streamed.chunks} response chunks, each forwarded as it arrived)`);
  console.log(renderJsonAccessLog(LOG_FIELDS, { stream: streamed.stream, responseCode: streamed.status }));
  const prometheus = renderPrometheus(host, loadStatsTags(BOOTSTRAP_CONFIGMAP));
  const curl = "kubectl exec deployments/sleep -c istio-proxy -- curl -s localhost:15090/stats/prometheus";
  // The seed's `grep llmproxy` would also show the plugin's newer series; show them apart.
  console.log(`\n$ ${curl} | grep -E '^asm_llm_proxy_(prompt|completion)_tokens'`);
  for (const line of grepLlmproxy(prometheus)) console.log(line);
  console.log(`\n$ ${curl} | grep -E '^asm_llm_proxy_requests'`);
  for (const line of prometheus.split("\n").filter((l) => l.startsWith("asm_llm_proxy_requests{")))
    console.log(line);
  if (host.traps.length > 0) {
    console.error("the plugin trapped:", host.traps);
    process.exitCode = 1;
  }
} finally {
  await upstream.close();
}

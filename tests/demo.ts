// SPDX-License-Identifier: Apache-2.0
// `npm start`: the seed's "Verify access logs" and "Verify token metrics" steps without a mesh.
// The built plugin runs in the test host with the seed's routing (providers, the vip-route
// VirtualService, the key in the VM environment); the seed's two curl calls, exactly as written
// (POST /, no model, no key), go through it to a mock upstream on loopback that is as strict as
// DashScope's compatible mode; then the access-log lines and the token lines of
// /stats/prometheus are printed as the seed shows them.

import { ProxyWasmHost } from "./host/host.ts";
import { exchange } from "./host/exchange.ts";
import { loadStatsTags, renderPrometheus, renderJsonAccessLog } from "./host/telemetry.ts";
import { startMockUpstream, MOCK_API_KEY } from "./mock-upstream.ts";
import {
  WASM,
  BOOTSTRAP_CONFIGMAP,
  SEED_HOST,
  CLUSTER,
  CALLS,
  REQUEST_BODY,
  LOG_FIELDS,
  grepLlmproxy,
} from "./seed.ts";

const upstream = await startMockUpstream();
try {
  const host = await ProxyWasmHost.load(WASM, { ...SEED_HOST, printLogs: true });
  console.log(`# plugin ${WASM} in the test host; mock upstream on 127.0.0.1:${upstream.port}`);
  console.log("# sleep (namespace default) runs the seed's two curl calls:");
  console.log("$ kubectl exec deployment/sleep -it -- curl --location 'http://dashscope.aliyuncs.com' \\");
  console.log("    --header 'Content-Type: application/json' [--header 'user-type: subscriber'] \\");
  console.log(`    --data '${REQUEST_BODY.replace(/\n/g, "\n    ")}'\n`);
  const sent: string[] = [];
  const lines: string[] = [];
  for (const call of CALLS) {
    const { [":method"]: method, [":path"]: path, [":authority"]: authority, ...headers } = call.headers;
    const r = await exchange(
      host,
      { method, path, authority, headers, body: REQUEST_BODY },
      upstream.port,
      CLUSTER,
    );
    // What the sidecar sent upstream; the key itself is never printed.
    const key = r.upstreamHeaders.authorization === `Bearer ${MOCK_API_KEY}` ? "the key" : "no key";
    sent.push(
      `# POST ${r.upstreamPath} with ${key} (DASHSCOPE_API_KEY), body ${r.upstreamBody.replace(/\s+/g, " ")}`,
    );
    lines.push(renderJsonAccessLog(LOG_FIELDS, { stream: r.stream, responseCode: r.status }));
  }
  console.log("# the sidecar completed them (route vip-route for user-type: subscriber):");
  for (const line of sent) console.log(line);
  console.log("\n$ kubectl logs deployments/sleep -c istio-proxy | tail -2");
  for (const line of lines) console.log(line);
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

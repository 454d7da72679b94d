// SPDX-License-Identifier: Apache-2.0
// Provider keys that cannot follow a request elsewhere: the clusters a key may go through, the
// route Envoy finally chooses after the plugin's header changes (detected and counted when it is
// not the cluster the key was allowed for), and no secret in any log line.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, LogLevel, type HostOptions, type RouteRule, type HttpStream } from "./host/host.ts";
import { WASM, NODE_METADATA, CLUSTER, PATH, REQUEST_BODY, BOOTSTRAP_CONFIGMAP } from "./seed.ts";
import { completionBody } from "./mock-upstream.ts";
import { loadStatsTags, renderPrometheus } from "./host/telemetry.ts";

const dec = new TextDecoder();
const KEY = "sk-test-5f0c1e2d3b4a69788796a5b4c3d2e1f0";
const MOONSHOT_KEY = "sk-moon-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const DASHSCOPE = "dashscope.aliyuncs.com";
const MOONSHOT = "outbound|80||api.moonshot.cn";
const CACHE = "outbound|80||llm-cache.default.svc.cluster.local";
const MISROUTES = "asm_llm_proxy_key_misroutes";

const PROVIDERS = [
  { host: DASHSCOPE, path: PATH, model: "qwen1.5-72b-chat", api_key_env: "DASHSCOPE_API_KEY" },
  {
    host: "api.moonshot.cn",
    path: "/v1/chat/completions",
    model: "moonshot-v1-8k",
    api_key_env: "MOONSHOT_API_KEY",
  },
];

function load(options: HostOptions = {}, extra: object = {}) {
  return ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    env: { DASHSCOPE_API_KEY: KEY, MOONSHOT_API_KEY: MOONSHOT_KEY },
    logLevel: LogLevel.trace,
    ...options,
    pluginConfig: { providers: PROVIDERS, ...extra },
  });
}

/** A POST to `authority` with path `path`; the response starts and ends. */
function send(
  host: ProxyWasmHost,
  path = "/",
  authority = DASHSCOPE,
  stream: { cluster?: string; finalCluster?: string; streamId?: number } = { cluster: CLUSTER },
  more: Record<string, string> = {},
): HttpStream {
  const s = host.stream(stream);
  s.sendRequestHeaders({
    ":method": "POST",
    ":path": path,
    ":authority": authority,
    "content-type": "application/json",
    ...more,
  });
  s.sendRequestBody(REQUEST_BODY, true);
  s.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
  s.sendResponseBody(completionBody("qwen-turbo"), true);
  s.end();
  assert.deepEqual(host.traps, []);
  return s;
}

const upstream = (s: HttpStream, name: string) =>
  s.upstreamRequestHeaders.filter(([k]) => k === name).map(([, v]) => v);

const misroutes = (host: ProxyWasmHost) =>
  [...host.metrics.entries()].filter(([name]) => name.includes(MISROUTES)).map(([n, m]) => [n, m.value]);

describe("only outbound|<port>|<subset>|<provider host> clusters get the key", () => {
  for (const [cluster, key] of [
    [CLUSTER, true],
    ["outbound|80|v1|dashscope.aliyuncs.com", true],
    ["inbound|80||dashscope.aliyuncs.com", false],
    ["outbound|443||dashscope.aliyuncs.com:443", false],
    ["outbound|80||dashscope.aliyuncs.com:80", false],
    ["outbound|x||dashscope.aliyuncs.com", false],
  ] as const) {
    test(`${cluster}: ${key ? "the key" : "no key"}`, async () => {
      const host = await load();
      const s = send(host, "/", DASHSCOPE, { cluster });
      assert.deepEqual(upstream(s, "authorization"), key ? [`Bearer ${KEY}`] : []);
    });
  }
});

describe("a keyed call that Envoy routes elsewhere after the plugin's header changes", () => {
  // Three route tables a user might have, each matching on a header the plugin changes, and the
  // request headers that pick the provider's own cluster before the plugin runs.
  const tables: Array<[string, RouteRule[], Record<string, string>]> = [
    [
      "a route on the rewritten path",
      [
        { headers: { ":path": PATH }, clusters: [{ cluster: CACHE, weight: 1 }] },
        { clusters: [{ cluster: CLUSTER, weight: 1 }] },
      ],
      {},
    ],
    [
      "a route on the auth header",
      [
        { headers: { authorization: `Bearer ${KEY}` }, clusters: [{ cluster: CACHE, weight: 1 }] },
        { clusters: [{ cluster: CLUSTER, weight: 1 }] },
      ],
      {},
    ],
    [
      "a route on accept-encoding, which the plugin removes",
      [
        { headers: { "accept-encoding": "gzip" }, clusters: [{ cluster: CLUSTER, weight: 1 }] },
        { clusters: [{ cluster: CACHE, weight: 1 }] },
      ],
      { "accept-encoding": "gzip" },
    ],
  ];
  for (const [name, routes, headers] of tables) {
    test(`${name}: an error naming the final cluster, never the key, and asm_llm_proxy_key_misroutes +1`, async () => {
      const host = await load({ routes });
      const s = send(host, "/", DASHSCOPE, {}, headers);
      assert.equal(s.pickedClusters[0], CLUSTER, "the cluster the plugin checked");
      assert.equal(s.cluster, CACHE, "the router chose another cluster after the plugin's changes");
      const errors = host.logs.filter((l) => l.level === "error").map((l) => l.message);
      assert.equal(errors.length, 1, JSON.stringify(host.logs));
      assert.ok(errors[0].includes(CACHE), errors[0]);
      assert.ok(errors[0].includes(CLUSTER), "and the cluster it was allowed for");
      const everything = host.logs.map((l) => l.message).join("\n") + [...host.metrics.keys()].join("\n");
      assert.ok(!everything.includes(KEY) && !everything.includes("sk-"));
      assert.deepEqual(misroutes(host), [
        [
          `wasmcustom.${MISROUTES}|llmproxy_source_workload=sleep|llmproxy_source_workload_namespace=default|llmproxy_destination_service=${DASHSCOPE}`,
          1,
        ],
      ]);
    });
  }

  test("the bootstrap's stats_tags turn the counter's name parts into labels", async () => {
    const host = await load({ routes: tables[0][1] });
    send(host, "/", DASHSCOPE, {});
    const line = renderPrometheus(host, loadStatsTags(BOOTSTRAP_CONFIGMAP))
      .split("\n")
      .find((l) => l.startsWith(MISROUTES));
    assert.equal(
      line,
      `${MISROUTES}{llmproxy_source_workload="sleep",llmproxy_source_workload_namespace="default",llmproxy_destination_service="${DASHSCOPE}"} 1`,
    );
  });

  test("a final cluster that differs without routes (a stream option) is detected the same way", async () => {
    const host = await load();
    send(host, "/", DASHSCOPE, { cluster: CLUSTER, finalCluster: "PassthroughCluster" });
    assert.equal(misroutes(host).length, 1);
    assert.match(host.logs.find((l) => l.level === "error")!.message, /PassthroughCluster/);
  });

  test("a call that stays on its cluster, and one that got no key, count nothing", async () => {
    const host = await load({ routes: [{ clusters: [{ cluster: CLUSTER, weight: 1 }] }] });
    send(host, "/", DASHSCOPE, {});
    const noKey = await load();
    send(noKey, "/", DASHSCOPE, { cluster: "PassthroughCluster", finalCluster: CACHE });
    for (const h of [host, noKey]) {
      assert.deepEqual(misroutes(h), []);
      assert.deepEqual(
        h.logs.filter((l) => l.level === "error"),
        [],
      );
    }
  });

  test("the opt-in split plus a user's VirtualService for api.moonshot.cn: Moonshot's key stays on Moonshot's cluster", async () => {
    // deploy/istio/components/moonshot-split/routing-split.yaml: Moonshot's share gets its host
    // name from the route (applied after routing); the user's own route for api.moonshot.cn
    // sends elsewhere. The plugin no longer changes :authority, so that route is never chosen.
    const routes: RouteRule[] = [
      {
        headers: { ":authority": DASHSCOPE },
        clusters: [
          { cluster: CLUSTER, weight: 50 },
          { cluster: MOONSHOT, weight: 50, authority: "api.moonshot.cn" },
        ],
      },
      { headers: { ":authority": "api.moonshot.cn" }, clusters: [{ cluster: CACHE, weight: 1 }] },
    ];
    const host = await load({ routes });
    const seen = new Set<string>();
    for (let id = 0; id < 40; id++) {
      const s = send(host, "/", DASHSCOPE, { streamId: id * 7919 });
      const moonshot = s.cluster === MOONSHOT;
      seen.add(s.cluster!);
      assert.notEqual(s.cluster, CACHE);
      assert.deepEqual(new Set(s.pickedClusters), new Set([s.cluster]), "the choice did not move");
      assert.deepEqual(upstream(s, ":authority"), [moonshot ? "api.moonshot.cn" : DASHSCOPE]);
      assert.deepEqual(upstream(s, "authorization"), [`Bearer ${moonshot ? MOONSHOT_KEY : KEY}`]);
      assert.equal(upstream(s, ":path")[0], moonshot ? "/v1/chat/completions" : PATH);
      assert.equal(
        JSON.parse(dec.decode(s.forwarded("request"))).model,
        moonshot ? "moonshot-v1-8k" : "qwen1.5-72b-chat",
      );
    }
    assert.equal(seen.size, 2);
    assert.deepEqual(misroutes(host), []);
  });
});

describe("no secret in any log line", () => {
  test("logged paths drop their query string (Gemini clients send ?key=...)", async () => {
    const host = await ProxyWasmHost.load(WASM, {
      nodeMetadata: NODE_METADATA,
      logLevel: LogLevel.trace,
    });
    const secret = "AIzaSy-client-key-0123456789";
    const path = `/v1beta/models/gemini-2.5-pro:generateContent?key=${secret}&alt=json`;
    for (const [status, type, body] of [
      ["500", "application/json", "{}"],
      ["200", "application/json", "{broken"],
      ["200", "application/json", ""],
      ["200", "text/html", "<html>"],
    ]) {
      const s = host.stream({ cluster: "outbound|443||generativelanguage.googleapis.com" });
      s.sendRequestHeaders({
        ":method": "POST",
        ":path": path,
        ":authority": "generativelanguage.googleapis.com",
      });
      s.sendRequestBody("{not json", true);
      s.sendResponseHeaders({ ":status": status, "content-type": type }, body === "");
      if (body !== "") s.sendResponseBody(body, true);
      s.end();
    }
    assert.ok(host.logs.length >= 4, JSON.stringify(host.logs));
    for (const l of host.logs) {
      assert.ok(!l.message.includes(secret), l.message);
      assert.ok(!l.message.includes("?"), l.message);
    }
    assert.ok(host.logs.some((l) => l.message.includes("/v1beta/models/gemini-2.5-pro:generateContent")));
  });
});

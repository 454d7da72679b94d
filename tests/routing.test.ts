// SPDX-License-Identifier: Apache-2.0
// Provider routing (`providers`) through the compiled plugin: what a provider call gets (path,
// key, model, stream), what every other request keeps (every byte, its path, its auth header),
// where keys may never appear, each bad configuration, and the route Envoy chooses again after
// the plugin's header changes.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ProxyWasmHost, LogLevel, type HttpStream, type HostOptions } from "./host/host.ts";
import { drive } from "./host/driver.ts";
import {
  WASM,
  NODE_METADATA,
  CLUSTER,
  PATH,
  CALLS,
  REQUEST_BODY,
  SEED_HOST,
  ALL_FILTER_STATE,
  seedCall,
} from "./seed.ts";
import { completionBody } from "./mock-upstream.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KEY = "sk-test-5f0c1e2d3b4a69788796a5b4c3d2e1f0";
const MOONSHOT_KEY = "sk-moon-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const MOONSHOT = "outbound|80||api.moonshot.cn";
const CONFIG_PROBLEMS = "asm_llm_proxy_config_problems";

const DASHSCOPE = {
  host: "dashscope.aliyuncs.com",
  path: PATH,
  model: "qwen1.5-72b-chat",
  api_key_env: "DASHSCOPE_API_KEY",
  routes: { "vip-route": { model: "qwen-turbo" } },
};

function load(providers: unknown[], options: HostOptions = {}, extra: object = {}) {
  return ProxyWasmHost.load(WASM, {
    nodeMetadata: NODE_METADATA,
    env: { DASHSCOPE_API_KEY: KEY },
    ...options,
    pluginConfig: { providers, ...ALL_FILTER_STATE, ...extra },
  });
}

interface Sent {
  s: HttpStream;
  path: string | undefined;
  headers: Array<[string, string]>;
  body: string;
}

/** One request through the plugin (body cut at `cuts`), answered 200 with a completion. */
function send(
  host: ProxyWasmHost,
  headers: Record<string, string> | Array<[string, string]>,
  body: string | null,
  cuts: number[] = [],
  cluster: string | undefined = CLUSTER,
): Sent {
  const s = drive(host, {
    cluster,
    request: { headers, body: body ?? undefined, cuts },
    response: { headers: { "content-type": "application/json" }, body: completionBody("qwen-turbo") },
  });
  assert.equal(s.held, 0);
  assert.deepEqual(host.traps, []);
  // Request headers and body are final once the request is through: what went upstream.
  return {
    s,
    path: s.requestHeaders.find(([k]) => k === ":path")?.[1],
    headers: s.requestHeaders.map(([k, v]) => [k, v] as [string, string]),
    body: dec.decode(s.forwarded("request")),
  };
}

const post = (authority: string, path = "/", more: Record<string, string> = {}) => ({
  ":method": "POST",
  ":path": path,
  ":authority": authority,
  "content-type": "application/json",
  ...more,
});

const header = (x: Sent, name: string) => x.headers.filter(([k]) => k === name).map(([, v]) => v);

describe("a POST to a provider host", () => {
  test("gets the provider's path, its key from the VM environment, and the model", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(host, post("dashscope.aliyuncs.com"), REQUEST_BODY);
    assert.equal(x.path, PATH);
    assert.deepEqual(header(x, "authorization"), [`Bearer ${KEY}`]);
    assert.deepEqual(JSON.parse(x.body), { ...JSON.parse(REQUEST_BODY), model: "qwen1.5-72b-chat" });
    assert.equal(x.s.state("wasm.asm.llmproxy.request_model"), "qwen1.5-72b-chat");
    // Once per VM at configure time (Envoy's canary VM, then the worker), never per request.
    assert.equal(host.environReads, 2, "the environment is read once per VM, at configure time");
  });

  test("matches the host in any case and with a port, and keeps a query string", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(host, post("DashScope.Aliyuncs.COM:80", "/?trace=1"), REQUEST_BODY);
    assert.equal(x.path, PATH + "?trace=1");
    assert.deepEqual(header(x, "authorization"), [`Bearer ${KEY}`]);
  });

  test("a path the plugin knows is kept", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(host, post("dashscope.aliyuncs.com", "/api/v1/chat/completions"), REQUEST_BODY);
    assert.equal(x.path, "/api/v1/chat/completions");
  });

  test("the client's own model is kept, byte for byte, whatever the split", async () => {
    const host = await load([DASHSCOPE]);
    const body = '{"model":"qwen-max","messages":[{"role":"user","content":"\\"model\\": {}"}]} \n';
    for (let i = 0; i <= body.length; i++) {
      const x = send(host, post("dashscope.aliyuncs.com", "/", { "user-type": "subscriber" }), body, [i]);
      assert.equal(x.body, body, `split at ${i}`);
      assert.equal(x.s.bufferChanges, 0);
      assert.equal(x.s.state("wasm.asm.llmproxy.request_model"), "qwen-max");
    }
  });

  test("the client's Authorization is replaced by the provider's key (one header, the key)", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(
      host,
      post("dashscope.aliyuncs.com", "/", { authorization: "Bearer sk-client-own" }),
      REQUEST_BODY,
    );
    assert.deepEqual(header(x, "authorization"), [`Bearer ${KEY}`]);
  });

  test("a repeated header: the client's Authorization headers all go; the plugin reads the first value", async () => {
    const host = await load([DASHSCOPE], { routes: SEED_HOST.routes }, { header_dimensions: ["user-type"] });
    const x = send(
      host,
      [
        ...Object.entries(post("dashscope.aliyuncs.com")),
        ["authorization", "Bearer sk-client-one"],
        ["authorization", "Bearer sk-client-two"],
        ["user-type", "subscriber"],
        ["user-type", "free"],
      ],
      REQUEST_BODY,
    );
    assert.deepEqual(header(x, "authorization"), [`Bearer ${KEY}`]);
    assert.equal(x.s.state("wasm.asm.llmproxy.user_type"), "subscriber");
    // Envoy's route match sees "subscriber,free", which is not exactly "subscriber": the default
    // route, so the provider's own model.
    assert.equal(x.s.routeName, undefined);
    assert.equal(JSON.parse(x.body).model, "qwen1.5-72b-chat");
  });

  test("x-api-key and api-key providers get their header; the client's other headers stay", async () => {
    const host = await load([
      { host: "api.anthropic.com", auth: "x-api-key", api_key: KEY, model: "claude-sonnet-4-5" },
      { host: "my.openai.azure.com", auth: "api-key", api_key: KEY },
    ]);
    const a = send(
      host,
      post("api.anthropic.com", "/v1/messages", { authorization: "Bearer mine" }),
      "{}",
      [],
      "outbound|443||api.anthropic.com",
    );
    assert.deepEqual(header(a, "x-api-key"), [KEY]);
    assert.deepEqual(header(a, "authorization"), ["Bearer mine"]);
    assert.equal(a.body, '{"model":"claude-sonnet-4-5"}', "an empty object gets no comma");
    const b = send(
      host,
      post("my.openai.azure.com", "/openai/deployments/x/chat/completions"),
      REQUEST_BODY,
      [],
      "outbound|443||my.openai.azure.com",
    );
    assert.deepEqual(header(b, "api-key"), [KEY]);
    assert.equal(b.body, REQUEST_BODY, "no model configured: the body is left alone");
  });

  test("stream is inserted when configured and absent, with usage when asked for", async () => {
    const host = await load([{ ...DASHSCOPE, stream: true }], {}, { inject_stream_usage: true });
    const body = '{"messages":[]}\n\n';
    for (let i = 0; i <= body.length; i++) {
      const x = send(host, post("dashscope.aliyuncs.com"), body, [i, i + 1]);
      assert.equal(
        x.body,
        '{"messages":[],"model":"qwen1.5-72b-chat","stream":true,"stream_options":{"include_usage":true}}\n\n',
        `split at ${i}`,
      );
      assert.equal(x.s.state("wasm.asm.llmproxy.request_stream"), "true");
    }
    const own = send(host, post("dashscope.aliyuncs.com"), '{"stream":false,"model":"m"}');
    assert.equal(own.body, '{"stream":false,"model":"m"}', "the client's stream is kept");
  });

  test("content-length is removed in the headers callback when the body may change", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(host, post("dashscope.aliyuncs.com", "/", { "content-length": "85" }), REQUEST_BODY);
    assert.deepEqual(header(x, "content-length"), []);
    const noModel = await load([{ host: "dashscope.aliyuncs.com", api_key: KEY }]);
    const y = send(noModel, post("dashscope.aliyuncs.com", PATH, { "content-length": "85" }), REQUEST_BODY);
    assert.deepEqual(header(y, "content-length"), ["85"], "kept when nothing can be inserted");
  });

  test("a body that is not a JSON object is passed on unchanged", async () => {
    const host = await load([DASHSCOPE]);
    for (const body of ["[1,2]", '{"messages":', "not json", '"x"']) {
      const x = send(host, post("dashscope.aliyuncs.com"), body, [1]);
      assert.equal(x.body, body);
      assert.equal(x.s.bufferChanges, 0, body);
    }
  });

  test("an API that names its model in the path (Gemini) gets the key, and no member in its body", async () => {
    const gemini = {
      host: "generativelanguage.googleapis.com",
      model: "gemini-2.0-flash",
      stream: true,
      api_key: "AIza-test-0123456789",
      auth: "x-api-key",
    };
    const host = await load([gemini]);
    const path = "/v1beta/models/gemini-2.5-pro:generateContent";
    const body = '{"contents":[{"parts":[{"text":"Hi"}]}]}';
    for (const cuts of [[], [1], [body.length - 1]]) {
      const x = send(
        host,
        post(gemini.host, path),
        body,
        cuts,
        "outbound|443||generativelanguage.googleapis.com",
      );
      assert.equal(x.path, path, "a known API path is kept");
      assert.equal(x.body, body, "Gemini takes no model or stream member: the body is unchanged");
      assert.deepEqual(header(x, "x-api-key"), [gemini.api_key]);
      assert.equal(x.s.state("wasm.asm.llmproxy.request_model"), "gemini-2.5-pro", "the path's model");
      assert.equal(x.s.state("wasm.asm.llmproxy.request_stream"), "false", "the path says: not streamed");
    }
  });

  test("a routed path is read as the API the provider's path names", async () => {
    const ollama = { host: "ollama.internal", path: "/api/chat", model: "llama3.2" };
    const host = await load([ollama]);
    const x = send(host, post(ollama.host), '{"messages":[]}', [], "outbound|11434||ollama.internal");
    assert.equal(x.path, "/api/chat");
    assert.deepEqual(JSON.parse(x.body), { messages: [], model: "llama3.2" });
    // Ollama's native API streams unless the body says "stream": false.
    assert.equal(x.s.state("wasm.asm.llmproxy.request_stream"), "true");
  });

  test("a GET (or any method but POST) to a provider host is left alone", async () => {
    const host = await load([DASHSCOPE]);
    for (const method of ["GET", "PUT", "DELETE"]) {
      const x = send(host, { ...post("dashscope.aliyuncs.com"), ":method": method }, null);
      assert.equal(x.path, "/");
      assert.deepEqual(header(x, "authorization"), []);
      assert.equal(x.s.headerChanges, 0);
      assert.equal(x.s.filterState.size, 0);
    }
  });
});

describe("every other host behaves exactly as without providers", () => {
  const others = [
    "dashscope.aliyuncs.com.evil.example",
    "xdashscope.aliyuncs.com",
    "dashscope.aliyuncs.co",
    "api.openai.com",
    "aliyuncs.com",
  ];
  for (const authority of others) {
    test(authority, async () => {
      const withProviders = await load([DASHSCOPE]);
      const without = await ProxyWasmHost.load(WASM, {
        nodeMetadata: NODE_METADATA,
        pluginConfig: ALL_FILTER_STATE,
      });
      const cluster = `outbound|80||${authority}`;
      for (const path of ["/", PATH, "/v1/chat/completions"]) {
        const h = post(authority, path, { authorization: "Bearer sk-client-own", "content-length": "85" });
        const a = send(withProviders, h, REQUEST_BODY, [7], cluster);
        const b = send(without, h, REQUEST_BODY, [7], cluster);
        assert.equal(a.body, REQUEST_BODY);
        assert.deepEqual(a.headers, b.headers, "path, auth header and every other header");
        assert.equal(a.s.bufferChanges, 0);
        assert.deepEqual([...a.s.filterState.keys()], [...b.s.filterState.keys()]);
        assert.deepEqual(header(a, "authorization"), ["Bearer sk-client-own"]);
        // No extra cost: the :authority of a POST whose path names no API comes from the header
        // map the plugin already copied (one host call for every header it reads).
        assert.equal(a.s.hostCalls - b.s.hostCalls, 0, path);
      }
    });
  }

  test("a GET costs no extra host call", async () => {
    const a = send(await load([DASHSCOPE]), { ...post("api.openai.com"), ":method": "GET" }, null);
    const b = send(await ProxyWasmHost.load(WASM, {}), { ...post("api.openai.com"), ":method": "GET" }, null);
    assert.equal(a.s.hostCalls, b.s.hostCalls);
    // :method, and :path because the default paths have a GET shape (the Responses API's polls).
    assert.equal(a.s.hostCalls, 2, ":method and :path");
  });

  for (const cluster of ["PassthroughCluster", ""]) {
    test(`a provider host through ${cluster || "no known cluster"}: path and model, but no key`, async () => {
      const host = await load([DASHSCOPE], { logLevel: LogLevel.debug });
      const x = send(host, post("dashscope.aliyuncs.com"), REQUEST_BODY, [], cluster);
      assert.equal(x.path, PATH);
      assert.equal(JSON.parse(x.body).model, "qwen1.5-72b-chat");
      assert.deepEqual(
        header(x, "authorization"),
        [],
        "no key without the provider's own cluster (and its TLS)",
      );
      assert.ok(
        host.logs.some(
          (l) => l.level === "debug" && /no key sent to dashscope\.aliyuncs\.com/.test(l.message),
        ),
      );
    });
  }

  test("a provider host routed to another service's cluster gets no key (it stays home)", async () => {
    const host = await load([DASHSCOPE]);
    const x = send(
      host,
      post("dashscope.aliyuncs.com"),
      REQUEST_BODY,
      [],
      "outbound|80||llm-cache.default.svc.cluster.local",
    );
    assert.equal(x.path, "/");
    assert.deepEqual(header(x, "authorization"), []);
    assert.equal(x.body, REQUEST_BODY);
  });
});

describe("keys stay secret", () => {
  test("no key in any log line at trace level, in filter state or in a metric name", async () => {
    const host = await load(
      [
        DASHSCOPE,
        {
          host: "api.moonshot.cn",
          path: "/v1/chat/completions",
          model: "moonshot-v1-8k",
          api_key: MOONSHOT_KEY,
        },
        // Broken entries whose messages must not show the key either.
        { host: "bad.example", api_key: MOONSHOT_KEY, api_key_env: "X" },
        { host: "bad2.example", api_key: 42, routes: { r: { api_key: MOONSHOT_KEY, path: "no-slash" } } },
      ],
      { logLevel: LogLevel.trace },
    );
    const streams = [];
    for (const call of CALLS) streams.push(seedCall(host, call));
    streams.push(send(host, post("api.moonshot.cn"), REQUEST_BODY, [3], MOONSHOT).s);
    streams.push(send(host, post("api.moonshot.cn"), "{broken", [3], MOONSHOT).s);
    const everything = [
      ...host.logs.map((l) => l.message),
      ...streams.flatMap((s) => [...s.filterState.entries()].map(([k, v]) => k + "=" + dec.decode(v))),
      ...host.metrics.keys(),
    ].join("\n");
    assert.ok(host.logs.length > 3, "trace logging produced lines");
    for (const secret of [KEY, MOONSHOT_KEY, "sk-"]) assert.ok(!everything.includes(secret), secret);
  });

  test("a missing api_key_env: one warn naming the field, no auth header, traffic passes", async () => {
    const host = await load([DASHSCOPE], { env: {} });
    const warns = host.logs.filter((l) => l.level === "warn").map((l) => l.message);
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.match(
      warns[0],
      /'providers\[0\]\.api_key_env' names a variable that the VM environment does not have/,
    );
    assert.equal(host.gauge(CONFIG_PROBLEMS), 1);
    const x = send(
      host,
      post("dashscope.aliyuncs.com", "/", { authorization: "Bearer sk-client-own" }),
      REQUEST_BODY,
    );
    assert.deepEqual(header(x, "authorization"), ["Bearer sk-client-own"], "nothing injected");
    assert.equal(x.path, PATH, "the rest of the provider still applies");
    assert.equal(JSON.parse(x.body).model, "qwen1.5-72b-chat");
  });
});

describe("bad configuration: one warn per problem naming the field, the entry skipped, never a trap", () => {
  const cases: Array<[string, unknown, string[], number]> = [
    [
      "providers not an array",
      { host: "x" },
      ["'providers' must be an array of objects; using the default"],
      0,
    ],
    [
      "a provider not an object",
      ["dashscope.aliyuncs.com"],
      ["'providers[0]' must be an object; provider skipped"],
      0,
    ],
    ["no host", [{ path: PATH }], ["'providers[0].host' is required: a host name; provider skipped"], 0],
    [
      "a host with a port",
      [{ host: "dashscope.aliyuncs.com:443" }],
      [
        "'providers[0].host' must be a host name (letters, digits, '-', '_' and dots, or [IPv6]) without port, scheme or path; provider skipped",
      ],
      0,
    ],
    [
      "both api_key and api_key_env",
      [{ host: "a.example", api_key: KEY, api_key_env: "K" }],
      ["'providers[0]' sets both api_key and api_key_env; set one; provider skipped"],
      0,
    ],
    [
      "a path not starting with /",
      [{ host: "a.example", path: "v1/chat" }],
      ["'providers[0].path' must be a string starting with '/'; provider skipped"],
      0,
    ],
    [
      "a model of the wrong type",
      [{ host: "a.example", model: 5 }],
      ["'providers[0].model' must be a non-empty string; provider skipped"],
      0,
    ],
    [
      "stream not a boolean",
      [{ host: "a.example", stream: "yes" }],
      ["'providers[0].stream' must be true or false; provider skipped"],
      0,
    ],
    [
      "an unknown auth style",
      [{ host: "a.example", auth: "basic" }],
      ["'providers[0].auth' must be one of bearer, x-api-key, api-key; provider skipped"],
      0,
    ],
    [
      "a route that is not an object",
      [{ host: "a.example", routes: { "vip-route": "qwen-turbo", ok: { model: "m" } } }],
      ["'providers[0].routes.vip-route' must be an object; route skipped"],
      1,
    ],
    [
      "a bad field in a route",
      [{ host: "a.example", routes: { r: { stream: 1 } } }],
      ["'providers[0].routes.r.stream' must be true or false; route skipped"],
      1,
    ],
    [
      "routes not an object",
      [{ host: "a.example", routes: [] }],
      ["'providers[0].routes' must be an object of route names; routes ignored"],
      1,
    ],
    [
      "an unknown field",
      [{ host: "a.example", modle: "m" }],
      ["'providers[0].modle' is not a known field; ignored"],
      1,
    ],
    [
      "a repeated host",
      [{ host: "a.example" }, { host: "A.example" }],
      ["'providers[1].host' repeats a.example; provider skipped"],
      1,
    ],
  ];
  for (const [name, providers, expected, kept] of cases) {
    test(name, async () => {
      const host = await ProxyWasmHost.load(WASM, { pluginConfig: { providers, ...ALL_FILTER_STATE } });
      assert.deepEqual(host.traps, []);
      const warns = host.logs.filter((l) => l.level === "warn").map((l) => l.message);
      assert.deepEqual(
        warns,
        expected.map((m) => "asm-llm-proxy: " + m),
      );
      assert.equal(host.gauge(CONFIG_PROBLEMS), expected.length);
      // What was kept: a provider applies to its host; a skipped one leaves it alone.
      const x = send(host, post("a.example"), "{}", [], "outbound|80||a.example");
      assert.equal(
        x.s.filterState.has("wasm.asm.llmproxy.request_stream"),
        kept === 1,
        "a.example is a provider",
      );
    });
  }
});

describe("the route Envoy chose", () => {
  test("each plugin header change clears the route cache; the route is chosen again, the same", async () => {
    const host = await ProxyWasmHost.load(WASM, SEED_HOST);
    for (const call of CALLS) {
      const s = seedCall(host, call);
      // :path, authorization and content-length; the seed's curl sends no accept-encoding, and
      // an absent header is not removed (no host call, no clear).
      assert.equal(s.routeCacheClears, 3);
      assert.ok(s.routePicks >= 2, "chosen before the filters and again after the clears");
      assert.equal(s.routeName, call.model === "qwen-turbo" ? "vip-route" : undefined);
    }
  });

  test("a weighted split: the plugin applies the provider of the cluster the route chose, which clears do not move", async () => {
    // The route of deploy/istio/components/moonshot-split/routing-split.yaml (the split, whose
    // Moonshot destination sets the host name after routing), and Istio's default route of the
    // Moonshot ServiceEntry's own virtual host.
    const split = [
      {
        headers: { ":authority": "dashscope.aliyuncs.com" },
        clusters: [
          { cluster: CLUSTER, weight: 50 },
          { cluster: MOONSHOT, weight: 50, authority: "api.moonshot.cn" },
        ],
      },
      { headers: { ":authority": "api.moonshot.cn" }, clusters: [{ cluster: MOONSHOT, weight: 100 }] },
    ];
    const host = await load(
      [
        DASHSCOPE,
        {
          host: "api.moonshot.cn",
          path: "/v1/chat/completions",
          model: "moonshot-v1-8k",
          api_key_env: "MOONSHOT_API_KEY",
        },
      ],
      { routes: split, env: { DASHSCOPE_API_KEY: KEY, MOONSHOT_API_KEY: MOONSHOT_KEY } },
    );
    const seen = new Map<string, number>();
    for (let id = 0; id < 40; id++) {
      const s = host.stream({ streamId: id * 7919 });
      s.sendRequestHeaders(post("dashscope.aliyuncs.com"));
      s.sendRequestBody(REQUEST_BODY, true);
      const cluster = s.cluster!;
      // Chosen before the plugin ran, and again after each of its header changes (each cleared
      // the route cache): the same cluster every time, so the key goes to the host it is for.
      assert.ok(s.pickedClusters.length >= 2);
      assert.deepEqual(new Set(s.pickedClusters), new Set([cluster]));
      seen.set(cluster, (seen.get(cluster) ?? 0) + 1);
      const moonshot = cluster === MOONSHOT;
      const get = (k: string) => s.upstreamRequestHeaders.find(([n]) => n === k)?.[1];
      assert.ok(s.routeCacheClears > 0);
      assert.equal(get(":path"), moonshot ? "/v1/chat/completions" : PATH);
      assert.equal(get(":authority"), moonshot ? "api.moonshot.cn" : "dashscope.aliyuncs.com");
      assert.equal(
        s.requestHeaders.find(([n]) => n === ":authority")?.[1],
        "dashscope.aliyuncs.com",
        "the plugin changes no :authority: the route does, after routing",
      );
      assert.equal(
        get("authorization"),
        `Bearer ${moonshot ? MOONSHOT_KEY : KEY}`,
        "the key of the chosen host only",
      );
      assert.equal(
        JSON.parse(dec.decode(s.forwarded("request"))).model,
        moonshot ? "moonshot-v1-8k" : "qwen1.5-72b-chat",
      );
      s.end();
    }
    assert.deepEqual([...seen.keys()].sort(), [CLUSTER, MOONSHOT].sort(), "both providers were chosen");
  });

  test("without routes the route name is not read (fewer host calls)", async () => {
    const host = await load([{ host: "dashscope.aliyuncs.com", path: PATH, model: "m", api_key: KEY }]);
    const routed = await load([DASHSCOPE]);
    const a = send(host, post("dashscope.aliyuncs.com"), REQUEST_BODY);
    const b = send(routed, post("dashscope.aliyuncs.com"), REQUEST_BODY);
    assert.equal(b.s.hostCalls - a.s.hostCalls, 1, "one property read: xds.route_name");
  });
});

test("host calls of a seed call, printed for the record", async () => {
  const host = await ProxyWasmHost.load(WASM, SEED_HOST);
  const s = seedCall(host, CALLS[1]);
  seedCall(host, CALLS[1]);
  const again = seedCall(host, CALLS[1]);
  assert.ok(again.hostCalls <= s.hostCalls);
  console.log(`# seed call host calls: first ${s.hostCalls}, later ${again.hostCalls}`);
  assert.equal(enc.encode(REQUEST_BODY).length, 85);
});

// SPDX-License-Identifier: Apache-2.0
// Offline checks of deploy/, Dockerfile.envoy and the local Envoy: every file parses; Istio
// resources validate against Istio's CRD schemas (unknown fields refused, as
// `kubectl apply --validate=strict` would); the local Envoy uses the ConfigMap's stats_tags and
// stands in for the sidecar as the README says; access-log formats and Telemetry expressions name
// only filter-state keys the plugin sets; the dashboard and the rules name only the metrics and
// labels that the plugin and Istio export; deploy/istio/kustomization.yaml lists every resource and
// yields valid ones, with and without its opt-in Moonshot split component (built as kustomize
// builds it, and compared with `kubectl kustomize` where it is installed). Each check is shown failing on a broken input too. tests/prometheus.test.ts runs
// the same queries on a real Prometheus.

import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { relative } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { Ajv } from "ajv";
import ts from "typescript";
import { spawnSync } from "node:child_process";
import { CLUSTER, LOG_FIELDS, NODE_METADATA, ROOT, PLUGIN_CONFIG, ROUTES } from "./seed.ts";
import { MOCK_API_KEY } from "./mock-upstream.ts";
import { walk } from "../scripts/check-structure.ts";

const DEPLOY = ROOT + "deploy/";
const CONFIGMAP = DEPLOY + "istio/asm-llm-proxy-bootstrap-config.yaml";

// ---- what the plugin and Istio export (the seed's names) -------------------------------------

/** The filter-state keys the plugin sets that deploy/ may print. */
const FILTER_STATE_KEYS = [
  "request_model",
  "request_prompt_tokens",
  "request_completion_tokens",
  "request_total_tokens",
  "request_cached_tokens",
  "request_cache_write_tokens",
  "request_reasoning_tokens",
  "response_model",
  "request_stream",
  "usage",
  "first_token_ms",
  "duration_ms",
  "ms_per_output_token",
].map((k) => "wasm.asm.llmproxy." + k);

const PLUGIN_LABELS = [
  "llmproxy_source_workload",
  "llmproxy_source_workload_namespace",
  "llmproxy_destination_service",
  "llmproxy_model",
];
/** The labels of OpenTelemetry's gen_ai_client_token_usage (gen_ai_metrics). */
const GEN_AI_LABELS = [
  "gen_ai_token_type",
  "gen_ai_operation_name",
  "gen_ai_provider_name",
  "gen_ai_request_model",
  "gen_ai_response_model",
  "server_address",
];
/** Istio's standard labels of its HTTP metrics, plus the `model` dimension telemetry.yaml adds. */
const ISTIO_LABELS = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "source_canonical_service",
  "source_canonical_revision",
  "source_cluster",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_service",
  "destination_service_name",
  "destination_service_namespace",
  "destination_canonical_service",
  "destination_canonical_revision",
  "destination_cluster",
  "request_protocol",
  "response_code",
  "grpc_response_status",
  "response_flags",
  "connection_security_policy",
  "model",
];
/**
 * The labels Prometheus adds to every series of a sidecar target: `job` and `instance`, and the
 * `namespace` and `pod` that Kubernetes service discovery's relabelling gives it (Istio's
 * Prometheus integration, kube-prometheus-stack's PodMonitors).
 */
const TARGET_LABELS = ["job", "instance", "namespace", "pod"];
/** Metric -> the labels it carries. */
const METRICS: Record<string, string[]> = Object.fromEntries(
  Object.entries({
    asm_llm_proxy_prompt_tokens: PLUGIN_LABELS,
    asm_llm_proxy_completion_tokens: PLUGIN_LABELS,
    asm_llm_proxy_cached_tokens: PLUGIN_LABELS,
    asm_llm_proxy_cache_write_tokens: PLUGIN_LABELS,
    asm_llm_proxy_reasoning_tokens: PLUGIN_LABELS,
    asm_llm_proxy_requests: [...PLUGIN_LABELS, "llmproxy_usage", "llmproxy_stream"],
    asm_llm_proxy_ratelimit: [...PLUGIN_LABELS, "llmproxy_ratelimit"],
    asm_llm_proxy_first_token_ms_bucket: [...PLUGIN_LABELS, "le"],
    asm_llm_proxy_duration_ms_bucket: [...PLUGIN_LABELS, "le"],
    asm_llm_proxy_issues: ["llmproxy_issue"],
    asm_llm_proxy_config_problems: [],
    asm_llm_proxy_cost: [...PLUGIN_LABELS, "llmproxy_currency"],
    asm_llm_proxy_cost_unpriced: PLUGIN_LABELS,
    gen_ai_client_token_usage_sum: GEN_AI_LABELS,
    gen_ai_client_token_usage_count: GEN_AI_LABELS,
    gen_ai_client_token_usage_bucket: [...GEN_AI_LABELS, "le"],
    asm_llm_proxy_key_misroutes: [
      "llmproxy_source_workload",
      "llmproxy_source_workload_namespace",
      "llmproxy_destination_service",
    ],
    istio_requests_total: ISTIO_LABELS,
    istio_request_duration_milliseconds_bucket: [...ISTIO_LABELS, "le"],
  }).map(([m, labels]) => [m, [...labels, ...TARGET_LABELS]]),
);

// ---- files ------------------------------------------------------------------------------------

const deployFiles = walk(DEPLOY);
const yamlFiles = deployFiles.filter((f) => /\.ya?ml$/.test(f));
const jsonFiles = deployFiles.filter((f) => f.endsWith(".json"));
const read = (f: string) => readFileSync(f.startsWith("/") ? f : ROOT + f, "utf8");

interface Doc {
  file: string;
  doc: any;
}

function yamlDocuments(file: string, text = read(file)): Doc[] {
  const out: Doc[] = [];
  for (const d of parseAllDocuments(text)) {
    if (d.errors.length > 0) throw new Error(`${relative(ROOT, file)}: ${d.errors[0].message}`);
    const doc = d.toJS();
    if (doc !== null && doc !== undefined) out.push({ file: relative(ROOT, file), doc });
  }
  return out;
}

const documents = (): Doc[] => yamlFiles.flatMap((f) => yamlDocuments(f));
const ofKind = (kind: string) => documents().filter((d) => d.doc?.kind === kind);

/** stats_tags of the ConfigMap: its custom_bootstrap.json is a YAML mapping, not strict JSON. */
function configMapStatsTags(text = read(CONFIGMAP)): unknown {
  const cm = parseYaml(text);
  return parseYaml(cm.data["custom_bootstrap.json"]).stats_config.stats_tags;
}

function envoyConfig(text = read(DEPLOY + "envoy/envoy.yaml")): any {
  return parseYaml(text);
}

test("every YAML and JSON file under deploy/ parses (multi-document YAML allowed)", () => {
  assert.ok(
    yamlFiles.length >= 9 && jsonFiles.length >= 2,
    `${yamlFiles.length} YAML, ${jsonFiles.length} JSON`,
  );
  for (const f of yamlFiles) assert.doesNotThrow(() => yamlDocuments(f), f);
  for (const f of jsonFiles) assert.doesNotThrow(() => JSON.parse(read(f)), f);
  // The check itself fails on a broken document.
  assert.throws(() => yamlDocuments("broken.yaml", "a: 1\n---\nb: [1, 2\n"), /broken\.yaml/);
});

// ---- Istio resources against Istio's CRDs --------------------------------------------------

/**
 * Istio's resource schemas come from `@kubernetes-models/istio` (generated from Istio 1.29's
 * crd-all.gen.yaml), so that the check runs in any clone after `npm ci`. Two checks per resource:
 * the package's validator (types, enums, patterns: the CRD's OpenAPI schema, which Kubernetes
 * applies), and TypeScript's excess-property check against the package's interfaces, which
 * refuses a field the CRD does not declare (`kubectl apply --validate=strict` refuses it too; the
 * CRD schema alone does not say so).
 */
const ISTIO_MODELS = ROOT + "node_modules/@kubernetes-models/istio/";

async function istioValidator(docs: any[]): Promise<Array<string | null>> {
  const results: Array<string | null> = [];
  let source = "";
  const lines: number[] = [];
  for (const [i, doc] of docs.entries()) {
    const [group, version] = String(doc.apiVersion).split("/");
    const module = `${group}/${version}/${doc.kind}`;
    if (!/^[\w.-]+\/\w+\/\w+$/.test(module) || !existsSync(`${ISTIO_MODELS}${module}.js`)) {
      results.push(`no served CRD version for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    const Model = (await import(`@kubernetes-models/istio/${module}`))[doc.kind];
    try {
      new Model(doc).validate();
      results.push(null);
    } catch (e) {
      results.push((e as Error).message);
    }
    lines[i] = source.split("\n").length;
    source += `import type { I${doc.kind} as T${i} } from "@kubernetes-models/istio/${module}";\n`;
    source += `export const r${i}: T${i} = ${JSON.stringify(doc, null, 1)};\n`;
  }
  // One program for every resource: the diagnostics are mapped back by line.
  mkdirSync(ROOT + "build", { recursive: true });
  const dir = mkdtempSync(ROOT + "build/istio-check-");
  try {
    writeFileSync(dir + "/resources.ts", source);
    const program = ts.createProgram([dir + "/resources.ts"], {
      strict: true,
      noEmit: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      if (!d.file || !d.file.fileName.endsWith("resources.ts")) continue;
      const line = d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1;
      const i = lines.findLastIndex((l) => l !== undefined && l <= line);
      const message = ts.flattenDiagnosticMessageText(d.messageText, " ");
      results[i] = (results[i] ? results[i] + "; " : "") + message;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

const isIstioResource = (doc: any) =>
  /^[\w.-]+\.istio\.io\//.test(String(doc?.apiVersion)) && !String(doc.apiVersion).startsWith("install.");

test("every Istio resource validates against its CRD version, unknown fields refused", async () => {
  const resources = documents().filter((d) => isIstioResource(d.doc));
  const kinds = resources.map((d) => d.doc.kind).sort();
  assert.deepEqual(kinds, [
    "DestinationRule",
    "DestinationRule",
    "EnvoyFilter",
    "ServiceEntry",
    "ServiceEntry",
    "Telemetry",
    "VirtualService",
    "WasmPlugin",
    "WasmPlugin",
    "WasmPlugin",
  ]);
  // The check itself fails on a misspelt field, a wrong enum value, a wrong type, a version that
  // is not served and a bad checksum.
  const wasm = resources.find((d) => d.doc.kind === "WasmPlugin")!.doc;
  const spec = wasm.spec;
  const broken = [
    { ...wasm, spec: { ...spec, failStratgy: "FAIL_OPEN" } },
    { ...wasm, spec: { ...spec, failStrategy: "FAIL_SOMETIMES" } },
    { ...wasm, spec: { ...spec, match: [{ mode: "OUTBOUND" }] } },
    { ...wasm, spec: { ...spec, phase: 3 } },
    { ...wasm, spec: { ...spec, sha256: "abc" } },
    { ...wasm, spec: { ...spec, match: [{ mode: "CLIENT", prots: [{ number: 80 }] }] } },
    { ...wasm, apiVersion: "extensions.istio.io/v1beta7" },
  ];
  const results = await istioValidator([...resources.map((d) => d.doc), ...broken]);
  for (const [i, { file, doc }] of resources.entries()) {
    assert.equal(results[i], null, `${file} ${doc.kind}/${doc.metadata?.name}`);
  }
  for (const [i, b] of broken.entries()) {
    assert.notEqual(results[resources.length + i], null, JSON.stringify(b.spec).slice(0, 120));
  }
});

/** MeshConfig.extensionProviders[].envoyFileAccessLog, from istio/api mesh/v1alpha1/config.proto. */
const FILE_ACCESS_LOG_PROVIDER = {
  type: "object",
  required: ["name", "envoyFileAccessLog"],
  additionalProperties: false,
  properties: {
    name: { type: "string", minLength: 1 },
    envoyFileAccessLog: {
      type: "object",
      additionalProperties: false,
      properties: {
        path: { type: "string" },
        logFormat: {
          type: "object",
          additionalProperties: false,
          minProperties: 1,
          maxProperties: 1,
          properties: {
            text: { type: "string" },
            labels: { type: "object", additionalProperties: { type: "string" } },
          },
        },
      },
    },
  },
};

test("the mesh configuration defines the access-log provider with the plugin's fields", () => {
  const validate = new Ajv({ strict: false, allErrors: true }).compile(FILE_ACCESS_LOG_PROVIDER);
  const [mesh] = ofKind("IstioOperator");
  assert.ok(mesh, "an IstioOperator with the meshConfig snippet");
  const providers: any[] = mesh.doc.spec.meshConfig.extensionProviders;
  for (const p of providers) assert.ok(validate(p), JSON.stringify(validate.errors));
  const labels: Record<string, string> = providers[0].envoyFileAccessLog.logFormat.labels;
  for (const key of FILTER_STATE_KEYS) {
    const field = key.slice("wasm.asm.llmproxy.".length);
    assert.equal(labels[field], `%FILTER_STATE(${key}:PLAIN)%`, `label ${field}`);
  }
  for (const field of Object.keys(LOG_FIELDS)) assert.ok(field in labels, `the seed's field ${field}`);
  // The Telemetry resource turns on a provider that exists.
  const [telemetry] = ofKind("Telemetry");
  const names = new Set(providers.map((p) => p.name));
  for (const a of telemetry.doc.spec.accessLogging)
    for (const p of a.providers) assert.ok(names.has(p.name), `provider ${p.name} is defined`);
  // The check itself fails on a misspelt field.
  assert.equal(
    validate({ name: "x", envoyFileAccessLog: { path: "/dev/stdout", logformat: { text: "" } } }),
    false,
  );
});

test("Telemetry adds `model` from the plugin's filter state to REQUEST_COUNT and REQUEST_DURATION", () => {
  const [telemetry] = ofKind("Telemetry");
  assert.deepEqual(telemetry.doc.spec.selector, { matchLabels: { app: "sleep" } });
  const overrides = telemetry.doc.spec.metrics.flatMap((m: any) => m.overrides);
  for (const metric of ["REQUEST_COUNT", "REQUEST_DURATION"]) {
    const o = overrides.find((x: any) => x.match?.metric === metric);
    assert.ok(o, metric);
    assert.equal(o.match.mode, "CLIENT");
    assert.deepEqual(o.tagOverrides.model, {
      operation: "UPSERT",
      value: "filter_state['wasm.asm.llmproxy.request_model']",
    });
  }
});

test("the WasmPlugins: oci, https with sha256, file; otherwise the same, FAIL_OPEN, STATS, CLIENT", () => {
  const plugins = ofKind("WasmPlugin");
  const schema = new Ajv({ strict: false, allErrors: true }).compile(
    JSON.parse(read(DEPLOY + "plugin-config.schema.json")),
  );
  const schemes = plugins.map((p) => String(p.doc.spec.url).split("://")[0]).sort();
  assert.deepEqual(schemes, ["file", "https", "oci"]);
  const common = (spec: any) =>
    Object.fromEntries(
      Object.entries(spec).filter(([k]) => !["url", "sha256", "imagePullPolicy"].includes(k)),
    );
  for (const { file, doc } of plugins) {
    const spec = doc.spec;
    assert.deepEqual(spec.selector, { matchLabels: { app: "sleep" } }, file);
    assert.equal(spec.phase, "STATS", file);
    assert.deepEqual(spec.match, [{ mode: "CLIENT" }], file);
    assert.equal(spec.failStrategy, "FAIL_OPEN", `${file}: a telemetry plugin must not fail closed`);
    assert.ok(schema(spec.pluginConfig), `${file}: ${JSON.stringify(schema.errors)}`);
    assert.equal(spec.pluginConfig.paths, undefined, `${file}: the default paths cover every API`);
    // The access log reads every filter-state key, so every key is published.
    assert.deepEqual(spec.pluginConfig.filter_state, ["all"], `${file}: filter_state`);
    assert.equal(typeof spec.pluginConfig.inject_stream_usage, "boolean", `${file}: inject_stream_usage`);
    if (spec.url.startsWith("https://")) assert.match(spec.sha256, /^[0-9a-f]{64}$/, file);
    assert.deepEqual(common(spec), common(plugins[0].doc.spec), `${file} differs from ${plugins[0].file}`);
  }
  // The configuration check itself fails on a misspelt key and a wrong type.
  assert.equal(schema({ path: ["/chat/completions"] }), false);
  assert.equal(schema({ inject_stream_usage: "yes" }), false);
});

test("the example prices patch the WasmPlugin into a valid configuration, each price with its source", () => {
  const schema = new Ajv({ strict: false, allErrors: true }).compile(
    JSON.parse(read(DEPLOY + "plugin-config.schema.json")),
  );
  const text = read(DEPLOY + "istio/prices-dashscope.yaml");
  const ops = parseYaml(text) as Array<{ op: string; path: string; value: unknown }>;
  const plugin = structuredClone(
    ofKind("WasmPlugin").find((d) => d.file === "deploy/istio/wasmplugin.yaml")!.doc,
  );
  for (const { op, path, value } of ops) {
    assert.equal(op, "add");
    const key = path.replace(/^\/spec\/pluginConfig\//, "");
    assert.ok(key !== path && !key.includes("/"), path);
    plugin.spec.pluginConfig[key] = value;
  }
  assert.ok(schema(plugin.spec.pluginConfig), JSON.stringify(schema.errors));
  assert.equal(plugin.spec.pluginConfig.gen_ai_metrics, true);
  // Each priced model is named in the comments with a source address and a date.
  for (const p of plugin.spec.pluginConfig.prices) {
    const model = String(p.model).replace(/\*$/, "");
    assert.match(text, new RegExp(`# - ${model}: .*\n#\\s+https://`), `a source for ${p.model}`);
  }
  assert.match(text, /read on \d{4}-\d{2}-\d{2}/);
  // The check itself fails on a price the plugin would refuse.
  assert.equal(schema({ prices: [{ model: "m", input: "0.05", output: 1 }] }), false);
  assert.equal(schema({ prices: [{ model: "m", input: 1 }] }), false);
});

/**
 * The routing of a bundle: its providers take their keys from the proxy's environment (each key
 * named in vmConfig.env, and nothing else there), its VirtualService's routes go to provider hosts
 * that the same bundle declares with TLS origination from port 80.
 */
function routingProblems(bundle: any[]): string[] {
  const problems: string[] = [];
  const [plugin] = bundle.filter((r) => r.kind === "WasmPlugin");
  const providers: any[] = plugin.spec.pluginConfig.providers;
  const env: any[] = plugin.spec.vmConfig.env;
  for (const p of providers) {
    if (p.api_key !== undefined) problems.push(`${p.host}: an inline key in a resource anyone can read`);
    if (!env.some((e) => e.name === p.api_key_env && e.valueFrom === "HOST" && Object.keys(e).length === 2))
      problems.push(`${p.host}: ${p.api_key_env} is not taken from the proxy's environment`);
  }
  // A variable no provider reads would be reported missing for nothing, or hold a key for nothing.
  for (const e of env)
    if (!providers.some((p) => p.api_key_env === e.name)) problems.push(`no provider reads ${e.name}`);
  const hosts = new Set(providers.map((p) => p.host));
  const services = bundle.filter((r) => r.kind === "VirtualService");
  if (services.length !== 1) problems.push(`${services.length} VirtualServices`);
  for (const vs of services) {
    const [vip, rest] = vs.spec.http;
    if (JSON.stringify(vs.spec.hosts) !== '["dashscope.aliyuncs.com"]') problems.push("hosts");
    if (vip.name !== "vip-route") problems.push(`first route ${vip.name}`);
    if (JSON.stringify(vip.match) !== '[{"headers":{"user-type":{"exact":"subscriber"}}}]')
      problems.push("vip-route's match");
    if (rest.match !== undefined) problems.push("the second route is not the default route");
    if (!Object.keys(providers[0].routes).includes(vip.name)) problems.push("no settings for vip-route");
    // Each destination is a provider host with TLS origination from port 80 (so the plugin sees
    // plain HTTP and the cluster outbound|80||<host>).
    for (const r of vs.spec.http)
      for (const d of r.route) {
        const host = d.destination.host;
        if (!hosts.has(host)) problems.push(`${host} is not a provider`);
        if (d.destination.port.number !== 80) problems.push(`${host}: port ${d.destination.port.number}`);
        const dr = bundle.find((x) => x.kind === "DestinationRule" && x.spec.host === host);
        if (dr?.spec.trafficPolicy.portLevelSettings[0].tls.mode !== "SIMPLE")
          problems.push(`${host}: no TLS origination`);
        if (!bundle.some((x) => x.kind === "ServiceEntry" && x.spec.hosts.includes(host)))
          problems.push(`${host}: no ServiceEntry`);
      }
  }
  return problems;
}

test("the seed's routing: the bundle configures DashScope alone, vip-route on user-type subscriber", () => {
  const bundle = kustomize(ISTIO_DIR);
  assert.deepEqual(routingProblems(bundle), []);
  const plugin = bundle.find((r) => r.kind === "WasmPlugin");
  // The DashScope provider is the one the seed test and npm start run with, and the only one:
  // a platform engineer who follows the seed has its one key, and no problem is reported.
  assert.deepEqual(plugin.spec.pluginConfig.providers, PLUGIN_CONFIG.providers);
  assert.deepEqual(plugin.spec.vmConfig.env, [{ name: "DASHSCOPE_API_KEY", valueFrom: "HOST" }]);
  // Every WasmPlugin file, the alternatives too (the WasmPlugin test keeps them the same).
  for (const { file, doc } of ofKind("WasmPlugin"))
    assert.deepEqual(doc.spec.pluginConfig.providers, PLUGIN_CONFIG.providers, file);
  const [vs] = bundle.filter((r) => r.kind === "VirtualService");
  assert.deepEqual(
    vs.spec.http.flatMap((r: any) => r.route.map((d: any) => [r.name, d.destination.host, d.weight])),
    [
      ["vip-route", "dashscope.aliyuncs.com", undefined],
      [undefined, "dashscope.aliyuncs.com", undefined],
    ],
  );
  // The test host's routes of the seed are these.
  assert.deepEqual(
    ROUTES.map((r) => [r.name, r.headers]),
    [
      ["vip-route", { "user-type": "subscriber" }],
      [undefined, undefined],
    ],
  );
  // The check itself fails on a provider without its variable, a variable no provider reads, an
  // inline key, and a destination the bundle does not declare.
  const broken = (edit: (b: any[]) => void) => {
    const b = structuredClone(bundle);
    edit(b);
    return routingProblems(b);
  };
  const wasm = (b: any[]) => b.find((r) => r.kind === "WasmPlugin").spec;
  assert.notDeepEqual(
    broken((b) =>
      wasm(b).pluginConfig.providers.push({ host: "api.moonshot.cn", api_key_env: "MOONSHOT_API_KEY" }),
    ),
    [],
  );
  assert.notDeepEqual(
    broken((b) => wasm(b).vmConfig.env.push({ name: "MOONSHOT_API_KEY", valueFrom: "HOST" })),
    [],
  );
  assert.notDeepEqual(
    broken((b) => (wasm(b).pluginConfig.providers[0].api_key = "sk-x")),
    [],
  );
  assert.notDeepEqual(
    broken(
      (b) =>
        (b.find((r) => r.kind === "VirtualService").spec.http[1].route[0].destination.host =
          "api.moonshot.cn"),
    ),
    [],
  );
});

test("the Moonshot split, opted in: a second provider with its key, the default route split 50/50", () => {
  const bundle = kustomize(ISTIO_DIR, withSplit());
  assert.deepEqual(routingProblems(bundle), []);
  const plugin = bundle.find((r) => r.kind === "WasmPlugin");
  assert.deepEqual(plugin.spec.pluginConfig.providers, [
    ...PLUGIN_CONFIG.providers,
    {
      host: "api.moonshot.cn",
      path: "/v1/chat/completions",
      model: "moonshot-v1-8k",
      api_key_env: "MOONSHOT_API_KEY",
    },
  ]);
  assert.deepEqual(plugin.spec.vmConfig.env, [
    { name: "DASHSCOPE_API_KEY", valueFrom: "HOST" },
    { name: "MOONSHOT_API_KEY", valueFrom: "HOST" },
  ]);
  const [vs] = bundle.filter((r) => r.kind === "VirtualService");
  assert.deepEqual(
    vs.spec.http.flatMap((r: any) => r.route.map((d: any) => [r.name, d.destination.host, d.weight])),
    [
      ["vip-route", "dashscope.aliyuncs.com", undefined],
      ["split-route", "dashscope.aliyuncs.com", 50],
      ["split-route", "api.moonshot.cn", 50],
    ],
  );
  // Apart from these, the bundle is the seed's.
  const seed = kustomize(ISTIO_DIR);
  const key = (r: any) => `${r.kind}/${r.metadata.name}`;
  assert.deepEqual(
    bundle.map(key).filter((k) => !seed.map(key).includes(k)),
    ["ServiceEntry/moonshot", "DestinationRule/moonshot"],
  );
  for (const r of seed.filter((x) => !["WasmPlugin", "VirtualService"].includes(x.kind)))
    assert.deepEqual(
      bundle.find((x) => key(x) === key(r)),
      r,
      key(r),
    );
});

/**
 * The request headers the plugin changes on a provider call (README, "Route LLM traffic"). Each
 * change makes Envoy choose the route again: a route that matched on one of them could take the
 * call, its key already set, to another cluster.
 */
const CHANGED_HEADERS = [
  ":path",
  "authorization",
  "x-api-key",
  "api-key",
  "accept-encoding",
  "content-length",
];

/** Why a bundle's routes could move a keyed call after the plugin's header changes. */
function rerouteProblems(bundle: any[]): string[] {
  const problems: string[] = [];
  for (const vs of bundle.filter((r) => r.kind === "VirtualService")) {
    for (const [i, r] of vs.spec.http.entries()) {
      const where = `${vs.metadata.name}.http[${i}]${r.name ? ` (${r.name})` : ""}`;
      for (const m of r.match ?? []) {
        if (m.uri !== undefined) problems.push(`${where} matches on the path`);
        if (m.authority !== undefined) problems.push(`${where} matches on the authority`);
        for (const h of [...Object.keys(m.headers ?? {}), ...Object.keys(m.withoutHeaders ?? {})])
          if (CHANGED_HEADERS.includes(h.toLowerCase()) || h.toLowerCase() === "host")
            problems.push(`${where} matches on ${h}`);
      }
      // A destination of another host than the one the client called gets its host name from
      // the route (applied by the router after routing), so that the plugin changes no
      // :authority.
      for (const d of r.route ?? []) {
        const host = d.destination.host;
        if (!vs.spec.hosts.includes(host) && d.headers?.request?.set?.host !== host)
          problems.push(`${where}: ${host} does not get its host name from the route`);
      }
    }
  }
  return problems;
}

test("no route of either bundle matches on a header the plugin changes: a keyed call stays on the cluster it was checked for", () => {
  for (const bundle of [kustomize(ISTIO_DIR), kustomize(ISTIO_DIR, withSplit())])
    assert.deepEqual(rerouteProblems(bundle), []);
  const split = kustomize(ISTIO_DIR, withSplit());
  const moonshot = split
    .find((r) => r.kind === "VirtualService")
    .spec.http[1].route.find((d: any) => d.destination.host === "api.moonshot.cn");
  assert.deepEqual(moonshot.headers, { request: { set: { host: "api.moonshot.cn" } } });
  // The check itself fails on a route that matches on the path, on the auth header or on the
  // authority, and on a split whose second host is given no host name.
  const broken = (edit: (http: any[]) => void) => {
    const b = structuredClone(split);
    edit(b.find((r: any) => r.kind === "VirtualService").spec.http);
    return rerouteProblems(b);
  };
  assert.equal(broken((h) => (h[0].match[0].uri = { prefix: "/compatible-mode" })).length, 1);
  assert.equal(broken((h) => (h[0].match[0].headers = { Authorization: { prefix: "Bearer" } })).length, 1);
  assert.equal(broken((h) => (h[0].match[0].authority = { exact: "api.moonshot.cn" })).length, 1);
  assert.equal(broken((h) => delete h[1].route[1].headers).length, 1);
});

test("the egress resources originate TLS for the host whose cluster the plugin reads", () => {
  const egress = (d: Doc) => d.file.endsWith("istio/dashscope-egress.yaml");
  const [se] = ofKind("ServiceEntry").filter(egress);
  const [dr] = ofKind("DestinationRule").filter(egress);
  const host = CLUSTER.split("|")[3];
  assert.deepEqual(se.doc.spec.hosts, [host]);
  assert.ok(
    se.doc.spec.ports.some((p: any) => p.number === 80 && p.protocol === "HTTP" && p.targetPort === 443),
    "port 80 HTTP to 443",
  );
  assert.equal(dr.doc.spec.host, host);
  const port80 = dr.doc.spec.trafficPolicy.portLevelSettings.find((s: any) => s.port.number === 80);
  assert.equal(port80?.tls?.mode, "SIMPLE");
});

// ---- the local Envoy -------------------------------------------------------------------------

test("the local Envoy uses exactly the ConfigMap's stats_tags (tag_name and regex)", () => {
  const tags = configMapStatsTags() as Array<{ tag_name: string; regex: string }>;
  assert.deepEqual(
    tags.slice(0, 4).map((t) => t.tag_name),
    PLUGIN_LABELS,
  );
  assert.equal(tags[3].regex, "(\\|llmproxy_model=([^|]*))");
  assert.deepEqual(envoyConfig().stats_config.stats_tags, tags);
  // The check itself fails on a regex that differs by one character.
  const broken = read(CONFIGMAP).replace("(\\\\|llmproxy_model=([^|]*))", "(\\\\|llmproxy_model=([^|]+))");
  assert.notDeepEqual(configMapStatsTags(broken), tags);
});

/** OpenTelemetry GenAI conventions: gen_ai.client.token.usage's explicit bucket boundaries. */
const GEN_AI_TOKEN_BUCKETS = [
  1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
];

test("both bootstraps give gen_ai_client_token_usage the conventions' buckets, and label it", () => {
  const configMap = (text = read(CONFIGMAP)) =>
    parseYaml(parseYaml(text).data["custom_bootstrap.json"]).stats_config.histogram_bucket_settings;
  const settings = configMap();
  assert.deepEqual(settings, [
    { match: { prefix: "wasmcustom.gen_ai_client_token_usage|" }, buckets: GEN_AI_TOKEN_BUCKETS },
  ]);
  assert.deepEqual(envoyConfig().stats_config.histogram_bucket_settings, settings);
  // Four times the last, as the conventions list them.
  GEN_AI_TOKEN_BUCKETS.slice(1).forEach((b, i) => assert.equal(b, GEN_AI_TOKEN_BUCKETS[i] * 4));
  const tags = (configMapStatsTags() as Array<{ tag_name: string }>).map((t) => t.tag_name);
  for (const label of ["llmproxy_currency", ...GEN_AI_LABELS]) {
    assert.ok(tags.includes(label), `a stats_tags entry for ${label}`);
  }
  // The check itself fails on a bucket that differs.
  assert.notDeepEqual(configMap(read(CONFIGMAP).replace("16777216,", "16777215,")), settings);
});

test("the local Envoy stands in for the sleep sidecar: node, ports, wasm filter, route, access log", () => {
  const envoy = envoyConfig();
  assert.deepEqual(envoy.node.metadata, NODE_METADATA);
  assert.ok(envoy.node.id && envoy.node.cluster);
  assert.equal(envoy.admin.address.socket_address.port_value, 9901);
  const [listener] = envoy.static_resources.listeners;
  assert.equal(listener.address.socket_address.port_value, 10000);
  const hcm = listener.filter_chains[0].filters[0].typed_config;
  const [wasm, router] = hcm.http_filters;
  assert.equal(wasm.name, "envoy.filters.http.wasm");
  assert.equal(router.name, "envoy.filters.http.router");
  const config = wasm.typed_config.config;
  assert.equal(config.fail_open, true);
  assert.equal(config.vm_config.runtime, "envoy.wasm.runtime.v8");
  // The seed's routing, as Istio sends the WasmPlugin's pluginConfig, and the mock's key in the
  // VM environment as vmConfig.env puts it there.
  assert.equal(config.configuration["@type"], "type.googleapis.com/google.protobuf.StringValue");
  // Every filter-state key too: the access log below reads them all.
  assert.deepEqual(JSON.parse(config.configuration.value), { ...PLUGIN_CONFIG, filter_state: ["all"] });
  assert.deepEqual(config.vm_config.environment_variables, {
    key_values: { DASHSCOPE_API_KEY: MOCK_API_KEY },
  });
  // The module is where Dockerfile.envoy puts it, and the configuration where the entry point
  // reads it.
  const dockerfile = read("Dockerfile.envoy");
  assert.match(
    dockerfile,
    new RegExp(`^COPY build/asm-llm-proxy\\.wasm ${config.vm_config.code.local.filename}$`, "m"),
  );
  assert.match(dockerfile, /^COPY deploy\/envoy\/envoy\.yaml \/etc\/envoy\/envoy\.template\.yaml$/m);
  assert.match(read(DEPLOY + "envoy/entrypoint.sh"), /\/etc\/envoy\/envoy\.template\.yaml/);
  // Everything goes to the LLM host's cluster, named as Istio names it: subscribers by the
  // route named vip-route (as the VirtualService's), everyone else by the default route.
  const [vip, route] = hcm.route_config.virtual_hosts[0].routes;
  assert.equal(vip.name, "vip-route");
  assert.deepEqual(vip.match.headers, [{ name: "user-type", string_match: { exact: "subscriber" } }]);
  assert.equal(vip.route.cluster, CLUSTER);
  assert.deepEqual(route.match, { prefix: "/" });
  assert.equal(route.route.cluster, CLUSTER);
  assert.deepEqual(
    envoy.static_resources.clusters.map((c: any) => c.name),
    [CLUSTER],
  );
  // The JSON access log on stdout has the seed's fields, the plugin's read as the seed reads them.
  const log = hcm.access_log[0].typed_config;
  assert.match(log["@type"], /StdoutAccessLog$/);
  const fields: Record<string, string> = log.log_format.json_format;
  for (const [field, format] of Object.entries(LOG_FIELDS)) {
    assert.ok(field in fields, `access-log field ${field}`);
    if (format.startsWith("%FILTER_STATE")) assert.equal(fields[field], format, field);
  }
});

test("the entry point's substitutions each find their one target in envoy.yaml", () => {
  const text = read(DEPLOY + "envoy/envoy.yaml");
  const script = read(DEPLOY + "envoy/entrypoint.sh");
  const patterns = [...script.matchAll(/-e "s\/([^/]+)\//g)].map((m) => m[1]);
  assert.equal(patterns.length, 2, "host and port");
  for (const p of patterns) {
    const literal = new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "g");
    assert.equal(text.match(literal)?.length ?? 0, 1, `"${p}" occurs once in envoy.yaml`);
  }
  const cluster = envoyConfig().static_resources.clusters[0];
  const address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  assert.deepEqual(address, { address: "host.docker.internal", port_value: 18080 });
  assert.match(read("Dockerfile.envoy"), /^ENV UPSTREAM_HOST=host\.docker\.internal UPSTREAM_PORT=18080$/m);
});

test("the Dockerfiles: pinned Envoy release, Istio's Wasm image layout, inputs that exist", () => {
  const envoy = read("Dockerfile.envoy");
  assert.match(envoy, /^FROM envoyproxy\/envoy:v\d+\.\d+\.\d+$/m, "a pinned release tag");
  const wasm = read(DEPLOY + "istio/Dockerfile.wasm");
  assert.deepEqual(
    wasm.split("\n").filter((l) => /^[A-Z]+ /.test(l)),
    ["FROM scratch", "COPY build/asm-llm-proxy.wasm ./plugin.wasm"],
  );
  for (const text of [envoy, wasm]) {
    for (const m of text.matchAll(/^COPY (\S+) /gm)) {
      assert.ok(m[1] === "build/asm-llm-proxy.wasm" || existsSync(ROOT + m[1]), `${m[1]} does not exist`);
    }
  }
});

// ---- filter state ----------------------------------------------------------------------------

/** Problems with the filter-state references of a text: unknown keys, or a format other than PLAIN. */
function filterStateProblems(text: string): string[] {
  const problems: string[] = [];
  for (const m of text.matchAll(/%FILTER_STATE\(([^)]*)\)(?::\d+)?%/g)) {
    const [key, format] = m[1].split(":");
    if (key.includes("<")) continue; // a placeholder in prose: %FILTER_STATE(<key>:PLAIN)%
    if (!FILTER_STATE_KEYS.includes(key)) problems.push(`the plugin never sets ${key}`);
    if (format !== "PLAIN") problems.push(`${m[0]} without :PLAIN prints a serialized protobuf`);
  }
  for (const m of text.matchAll(/filter_state\[\s*["']([^"']+)["']\s*\]/g)) {
    if (!FILTER_STATE_KEYS.includes(m[1])) problems.push(`the plugin never sets ${m[1]}`);
  }
  return problems;
}

test("every %FILTER_STATE(...)% and filter_state[...] in deploy/ names a key the plugin sets, with :PLAIN", () => {
  // The keys are the plugin's: each appears in its source.
  const source = walk(ROOT + "assembly")
    .filter((f) => f.endsWith(".ts") && !f.includes("__tests__"))
    .map((f) => read(f))
    .join("\n");
  for (const key of FILTER_STATE_KEYS) {
    assert.ok(source.includes(`"${key.slice("wasm.".length)}"`), `the plugin's source names ${key}`);
  }
  let seen = 0;
  for (const f of deployFiles) {
    const text = read(f);
    assert.deepEqual(filterStateProblems(text), [], relative(ROOT, f));
    seen += [...text.matchAll(/%FILTER_STATE\(|filter_state\[/g)].length;
  }
  assert.ok(seen >= 20, `checked ${seen} references`);
  // The check itself fails on an unknown key, a missing :PLAIN and an unknown CEL key.
  assert.deepEqual(filterStateProblems('"%FILTER_STATE(wasm.asm.llmproxy.request_modle:PLAIN)%"'), [
    "the plugin never sets wasm.asm.llmproxy.request_modle",
  ]);
  assert.equal(filterStateProblems("%FILTER_STATE(wasm.asm.llmproxy.request_model)%").length, 1);
  assert.equal(filterStateProblems("%FILTER_STATE(wasm.asm.llmproxy.request_model:TYPED)%").length, 1);
  assert.equal(filterStateProblems("filter_state['wasm.asm.llmproxy.model']").length, 1);
});

// ---- PromQL ----------------------------------------------------------------------------------

const FUNCTIONS = new Set(
  "sum avg min max count topk bottomk quantile rate irate increase delta histogram_quantile clamp_min clamp_max abs round ceil floor vector scalar time label_replace absent sort sort_desc".split(
    " ",
  ),
);
const KEYWORDS = new Set(
  "by without on ignoring group_left group_right bool and or unless offset".split(" "),
);

/**
 * Problems with a PromQL expression: metrics other than METRICS, labels a metric does not carry,
 * unknown functions. Grafana's `label_values(selector, label)` is accepted as a query.
 */
export function promqlProblems(expr: string): string[] {
  const problems: string[] = [];
  const lv = /^\s*label_values\((.*),\s*(\w+)\s*\)\s*$/.exec(expr);
  if (lv) {
    const inner = promqlProblems(lv[1]);
    const metrics = metricsOf(lv[1]);
    if (!metrics.every((m) => METRICS[m]?.includes(lv[2]))) inner.push(`unknown label ${lv[2]}`);
    return inner;
  }
  const metrics = metricsOf(expr);
  if (metrics.length === 0) problems.push("names no metric");
  for (const m of metrics) if (!(m in METRICS)) problems.push(`unknown metric ${m}`);
  const known = metrics.filter((m) => m in METRICS);
  // Selectors: the labels of a metric's own selector must be that metric's.
  for (const m of expr.matchAll(/(\b[a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g)) {
    const owner = m[1] && !FUNCTIONS.has(m[1]) && !KEYWORDS.has(m[1]) ? [m[1]] : selectorNames(m[2]);
    for (const [, label] of m[2].matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) {
      if (label === "__name__") continue;
      for (const o of owner)
        if (METRICS[o] && !METRICS[o].includes(label)) problems.push(`${o} has no label ${label}`);
    }
  }
  // Grouping and matching clauses: labels of the metrics the expression reads.
  const carried = new Set(known.flatMap((m) => METRICS[m]));
  for (const m of expr.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const label of m[1]
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)) {
      if (!carried.has(label)) problems.push(`unknown label ${label}`);
    }
  }
  // What is left: functions (followed by a parenthesis), keywords and metric names.
  for (const m of skeleton(expr).matchAll(/\b([a-zA-Z_][\w:]*)\s*(\()?/g)) {
    const [, word, call] = m;
    if (call && !FUNCTIONS.has(word)) problems.push(`unknown function ${word}`);
  }
  return problems;
}

/** An expression without string literals, selector contents, ranges and grouping clauses. */
function skeleton(expr: string): string {
  return expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "{}")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
}

/** Metric names of an expression: bare selectors and `__name__` matchers. */
function metricsOf(expr: string): string[] {
  const names = [...skeleton(expr).matchAll(/\b([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)]
    .map((m) => m[1])
    .filter((w) => !KEYWORDS.has(w));
  for (const m of expr.matchAll(/\{([^}]*)\}/g)) names.push(...selectorNames(m[1]));
  return [...new Set(names)];
}

function selectorNames(selector: string): string[] {
  const m = /__name__\s*(?:=~|=)\s*"([^"]*)"/.exec(selector);
  return m ? m[1].split("|") : [];
}

/** Every expression of the dashboard and the rules, with the labels their texts may print. */
function expressions(): Array<{ where: string; expr: string; printed: string[] }> {
  const out: Array<{ where: string; expr: string; printed: string[] }> = [];
  const dashboard = JSON.parse(read(DEPLOY + "grafana/asm-llm-proxy-dashboard.json"));
  for (const p of dashboard.panels) {
    for (const t of p.targets ?? []) {
      const printed = [...String(t.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]);
      out.push({ where: `panel "${p.title}"`, expr: t.expr, printed });
    }
  }
  for (const v of dashboard.templating.list) {
    if (v.type !== "query") continue;
    // Grafana runs `query` and shows `definition`: both are checked.
    for (const q of new Set([v.query?.query ?? v.query, v.definition ?? v.query?.query ?? v.query]))
      out.push({ where: `variable ${v.name}`, expr: q, printed: [] });
  }
  const rules = parseYaml(read(DEPLOY + "prometheus/asm-llm-proxy-rules.yaml"));
  for (const g of rules.spec.groups) {
    for (const r of g.rules) {
      const text = JSON.stringify(r.annotations ?? {});
      const printed = [...text.matchAll(/\$labels\.(\w+)/g)].map((m) => m[1]);
      out.push({ where: `rule ${r.record ?? r.alert}`, expr: r.expr, printed });
    }
  }
  return out;
}

test("the dashboard and the rules name only the plugin's and Istio's metrics and labels", () => {
  const dashboard = JSON.parse(read(DEPLOY + "grafana/asm-llm-proxy-dashboard.json"));
  const rules = parseYaml(read(DEPLOY + "prometheus/asm-llm-proxy-rules.yaml"));
  assert.equal(rules.apiVersion, "monitoring.coreos.com/v1");
  assert.equal(rules.kind, "PrometheusRule");
  const all = rules.spec.groups.flatMap((g: any) => g.rules);
  assert.ok(all.some((r: any) => r.record) && all.some((r: any) => r.alert), "recording rules and an alert");
  const exprs = expressions();
  assert.ok(exprs.length >= 15, `${exprs.length} expressions`);
  for (const { where, expr, printed } of exprs) {
    assert.deepEqual(promqlProblems(expr), [], `${where}: ${expr}`);
    const carried = new Set(metricsOf(expr).flatMap((m) => METRICS[m] ?? []));
    for (const l of printed) assert.ok(carried.has(l), `${where} prints label ${l}, which its metrics lack`);
  }
  // Panels: tokens per model and per workload, top consumers, success rate and p95 by model.
  const text = JSON.stringify(dashboard.panels.map((p: any) => p.targets.map((t: any) => t.expr)));
  for (const needle of [
    "sum by (llmproxy_model) (rate(asm_llm_proxy_prompt_tokens",
    "sum by (llmproxy_model) (rate(asm_llm_proxy_completion_tokens",
    "sum by (llmproxy_source_workload_namespace, llmproxy_source_workload)",
    "topk(10,",
    'response_code=~\\"2..\\"',
    "histogram_quantile(0.95, sum by (model, le) (rate(istio_request_duration_milliseconds_bucket",
    "llmproxy_model, llmproxy_currency) (rate(asm_llm_proxy_cost{",
    "sum by (gen_ai_token_type, gen_ai_provider_name) (rate(gen_ai_client_token_usage_sum",
  ]) {
    assert.ok(text.includes(needle), `a panel with ${needle}`);
  }
  // The checker itself fails on each kind of mistake.
  const cases: Array<[string, string]> = [
    ["sum by (llmproxy_modle) (rate(asm_llm_proxy_prompt_tokens[5m]))", "unknown label llmproxy_modle"],
    ["rate(asm_llm_proxy_tokens[5m])", "unknown metric asm_llm_proxy_tokens"],
    ["rate(asm_llm_proxy_latency[5m])", "unknown metric asm_llm_proxy_latency"],
    [
      'rate(istio_requests_total{llmproxy_model="x"}[5m])',
      "istio_requests_total has no label llmproxy_model",
    ],
    ['rate(asm_llm_proxy_prompt_tokens{model="x"}[5m])', "asm_llm_proxy_prompt_tokens has no label model"],
    ['rate({__name__=~"asm_llm_proxy_prompt_tokens|up"}[5m])', "unknown metric up"],
    ["rat(asm_llm_proxy_prompt_tokens[5m])", "unknown function rat"],
    ["label_values(asm_llm_proxy_prompt_tokens, source_workload)", "unknown label source_workload"],
  ];
  for (const [expr, problem] of cases)
    assert.ok(promqlProblems(expr).includes(problem), `${expr}: ${problem}`);
});

// ---- the kustomize bundle -------------------------------------------------------------------

const ISTIO_DIR = DEPLOY + "istio/";
/** YAML files in deploy/istio that the bundle leaves out on purpose, and why. */
const NOT_IN_BUNDLE: Record<string, string> = {
  "kustomization.yaml": "the bundle itself",
  "kustomizeconfig.yaml": "the bundle's image-field configuration",
  "meshconfig-access-log.yaml": "an IstioOperator overlay for istioctl, not a cluster resource",
  "alternatives/wasmplugin-https.yaml": "an alternative to wasmplugin.yaml (same name)",
  "alternatives/wasmplugin-file.yaml": "an alternative to wasmplugin.yaml (same name)",
  "prices-dashscope.yaml": "an opt-in JSON patch of the WasmPlugin (prices, gen_ai_metrics)",
};

/** kustomization.yaml with the Moonshot split's component turned on, as its comment says. */
function withSplit(text = read(ISTIO_DIR + "kustomization.yaml")): string {
  const on = text.replace(
    /^# components:\n# {3}- components\/moonshot-split$/m,
    "components:\n  - components/moonshot-split",
  );
  assert.notEqual(on, text, "kustomization.yaml has the split's component, commented out");
  return on;
}

/** A JSON pointer's parent and last key (RFC 6901), for a JSON patch. */
function pointer(doc: any, path: string): [any, string] {
  const keys = path
    .split("/")
    .slice(1)
    .map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
  const parent = keys.slice(0, -1).reduce((o: any, k) => {
    if (o?.[k] === undefined) throw new Error(`${path}: no ${k}`);
    return o[k];
  }, doc);
  return [parent, keys[keys.length - 1]];
}

/** A JSON patch (RFC 6902) with the operations the bundle's patches use: add, replace, remove, test. */
function jsonPatch(doc: any, ops: any[]): void {
  for (const op of ops) {
    const [parent, key] = pointer(doc, op.path);
    const index = Array.isArray(parent) ? (key === "-" ? parent.length : Number(key)) : undefined;
    if (index !== undefined && !(Number.isInteger(index) && index <= parent.length))
      throw new Error(`${op.path}: no index ${key}`);
    if (op.op !== "add" && (index === undefined ? !(key in parent) : index >= parent.length))
      throw new Error(`${op.op} ${op.path}: nothing there`);
    if (op.op === "add" && index !== undefined) parent.splice(index, 0, structuredClone(op.value));
    else if (op.op === "add" || op.op === "replace") parent[key] = structuredClone(op.value);
    else if (op.op === "remove") {
      if (index !== undefined) parent.splice(index, 1);
      else delete parent[key];
    } else if (op.op === "test") assert.deepEqual(parent[key], op.value, `test ${op.path}`);
    else throw new Error(`unsupported operation ${op.op}`);
  }
}

/** The `name[:tag][@digest]` parts of an image reference, as kustomize splits them. */
function splitImage(ref: string): { name: string; tag?: string; digest?: string } {
  const [rest, digest] = ref.split("@");
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  return colon > slash
    ? { name: rest.slice(0, colon), tag: rest.slice(colon + 1), digest }
    : { name: rest, digest };
}

/**
 * What `kubectl apply -k` applies, built the way kustomize builds it for the features the bundle
 * uses: the listed resources in order; then each component's resources appended and its JSON
 * patches (RFC 6902, the only kind the components use) applied to the resources their target
 * names; then `namespace` set on each, and the `images` transformer applied to the fields its
 * `configurations` name (here WasmPlugin spec.url).
 */
function kustomize(dir: string, text = read(dir + "kustomization.yaml")): any[] {
  const k = parseYaml(text);
  assert.equal(k.kind, "Kustomization");
  const fields: Array<{ path: string; kind: string }> = (k.configurations ?? []).flatMap(
    (c: string) => parseYaml(read(dir + c)).images,
  );
  const load = (base: string, files: string[]) =>
    files.flatMap((file) => yamlDocuments(base + file).map(({ doc }) => structuredClone(doc)));
  const resources = load(dir, k.resources);
  for (const c of k.components ?? []) {
    const base = `${dir}${c}/`;
    const component = parseYaml(read(base + "kustomization.yaml"));
    assert.equal(component.kind, "Component", c);
    resources.push(...load(base, component.resources ?? []));
    for (const patch of component.patches ?? []) {
      const ops = parseYaml(read(base + patch.path));
      assert.ok(Array.isArray(ops), `${c}/${patch.path}: a JSON patch`);
      const targets = resources.filter(
        (r) => r.kind === patch.target.kind && r.metadata?.name === patch.target.name,
      );
      // kustomize skips a patch that selects nothing: here that is a mistake of the component.
      assert.equal(targets.length, 1, `${c}/${patch.path} patches ${patch.target.kind}/${patch.target.name}`);
      for (const r of targets) jsonPatch(r, ops);
    }
  }
  const keys = resources.map((r) => `${r.kind}/${r.metadata?.name}`);
  const twice = keys.filter((x, i) => keys.indexOf(x) !== i);
  assert.deepEqual(twice, [], "kustomize refuses two resources of the same kind and name");
  const out: any[] = [];
  for (const r of resources) {
    if (k.namespace) r.metadata = { ...r.metadata, namespace: k.namespace };
    for (const f of fields.filter((x) => x.kind === r.kind)) {
      const keys = f.path.split("/");
      const parent = keys.slice(0, -1).reduce((o: any, key) => o?.[key], r);
      const last = keys[keys.length - 1];
      if (typeof parent?.[last] !== "string") continue;
      const ref = splitImage(parent[last]);
      const image = (k.images ?? []).find((i: any) => i.name === ref.name);
      if (!image) continue;
      const name = image.newName ?? ref.name;
      parent[last] = image.digest
        ? `${name}@${image.digest}`
        : `${name}${(image.newTag ?? ref.tag) ? ":" + (image.newTag ?? ref.tag) : ""}`;
    }
    out.push(r);
  }
  return out;
}

test("kustomization.yaml lists every resource of deploy/istio, or it is left out on purpose", () => {
  const k = parseYaml(read(ISTIO_DIR + "kustomization.yaml"));
  // The bundle's resources, and the files of its components (on or off).
  const listed = new Set<string>(k.resources);
  for (const c of parseYaml(withSplit()).components) {
    const component = parseYaml(read(`${ISTIO_DIR}${c}/kustomization.yaml`));
    for (const f of [
      "kustomization.yaml",
      ...component.resources,
      ...component.patches.map((x: any) => x.path),
    ])
      listed.add(`${c}/${f}`);
  }
  const files = walk(ISTIO_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => relative(ISTIO_DIR, f));
  for (const f of files) {
    assert.ok(
      listed.has(f) !== f in NOT_IN_BUNDLE,
      listed.has(f)
        ? `deploy/istio/${f} is both listed and left out`
        : `deploy/istio/${f} is neither in kustomization.yaml's resources nor in NOT_IN_BUNDLE`,
    );
  }
  for (const r of listed) assert.ok(files.includes(r), `kustomization.yaml lists ${r}, which does not exist`);
  for (const r of Object.keys(NOT_IN_BUNDLE))
    assert.ok(files.includes(r), `NOT_IN_BUNDLE names ${r}, which does not exist`);
});

const SEED_KINDS = [
  "ConfigMap",
  "DestinationRule",
  "ServiceEntry",
  "Telemetry",
  "VirtualService",
  "WasmPlugin",
];
/** The bundles: name, kustomization.yaml, the kinds it yields (the split adds Moonshot's egress). */
const BUNDLES: Array<[string, () => string, string[]]> = [
  ["the seed's", () => read(ISTIO_DIR + "kustomization.yaml"), SEED_KINDS],
  ["the Moonshot split's", withSplit, [...SEED_KINDS, "DestinationRule", "ServiceEntry"].sort()],
];

for (const [name, text, kinds] of BUNDLES)
  test(`kubectl apply -k deploy/istio, ${name}: what the bundle yields validates, in one namespace, with the image set`, async () => {
    const yielded = kustomize(ISTIO_DIR, text());
    assert.deepEqual(yielded.map((r) => r.kind).sort(), kinds);
    const istio = yielded.filter(isIstioResource);
    assert.deepEqual(
      await istioValidator(istio),
      istio.map(() => null),
    );
    assert.deepEqual(new Set(yielded.map((r) => r.metadata.namespace)), new Set(["default"]));
    const plugin = yielded.find((r) => r.kind === "WasmPlugin");
    assert.equal(plugin.spec.url, "oci://registry.example.com/mesh/asm-llm-proxy:0.1.0");
    // The two places a user changes: the namespace, and the image (a tag or a digest).
    const mine = text()
      .replace(/^namespace: default$/m, "namespace: llm-apps")
      .replace(
        /newName: oci:\/\/registry\.example\.com\/mesh\/asm-llm-proxy\n {4}newTag: 0\.1\.0/,
        "newName: oci://my.registry.io/team/asm-llm-proxy\n    digest: sha256:" + "ab".repeat(32),
      );
    const changed = kustomize(ISTIO_DIR, mine);
    assert.deepEqual(new Set(changed.map((r) => r.metadata.namespace)), new Set(["llm-apps"]));
    assert.equal(
      changed.find((r) => r.kind === "WasmPlugin").spec.url,
      "oci://my.registry.io/team/asm-llm-proxy@sha256:" + "ab".repeat(32),
    );
    const changedIstio = changed.filter(isIstioResource);
    assert.deepEqual(
      await istioValidator(changedIstio),
      changedIstio.map(() => null),
    );
  });

const kubectl = spawnSync("sh", ["-c", "command -v kubectl"]).status === 0;

for (const [name, text] of BUNDLES)
  test(
    `kubectl kustomize (kustomize itself) yields exactly what the test builds, ${name} bundle`,
    {
      skip: kubectl
        ? false
        : "kubectl is not installed: the bundles are checked by the test's own build only",
    },
    () => {
      // A copy of deploy/istio with the bundle's kustomization.yaml (the split's is the same file
      // with its component turned on).
      mkdirSync(ROOT + "build", { recursive: true });
      const dir = mkdtempSync(ROOT + "build/kustomize-") + "/";
      try {
        cpSync(ISTIO_DIR, dir, { recursive: true });
        writeFileSync(dir + "kustomization.yaml", text());
        const r = spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        const key = (d: any) => `${d.kind}/${d.metadata.name}`;
        const real = parseAllDocuments(r.stdout)
          .map((d) => d.toJS())
          .sort((a, b) => key(a).localeCompare(key(b)));
        const mine = kustomize(dir).sort((a, b) => key(a).localeCompare(key(b)));
        assert.deepEqual(real, mine);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

// ---- the deploy documentation ----------------------------------------------------------------

/** The `kubectl create secret ...` commands of deploy/istio/README.md, continuation lines joined. */
function secretCommands(text = read(ISTIO_DIR + "README.md")): string[] {
  return text
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .filter((l) => l.startsWith("kubectl create secret"));
}

test("the README's Secret commands refuse an empty or unset key variable, and pass a set one", () => {
  const commands = secretCommands();
  assert.equal(commands.length, 2, "the seed's and the split's");
  const dir = mkdtempSync("/tmp/asm-llm-proxy-kubectl-");
  try {
    // A kubectl that records its arguments (one per line) and, like kubectl, refuses an
    // `apply -f -` that reads no manifest.
    writeFileSync(
      dir + "/kubectl",
      '#!/bin/sh\nprintf "%s\\n" "$@" >> "$KUBECTL_LOG"\n' +
        'if [ "$1" = apply ]; then [ -n "$(cat)" ] || { echo "error: no objects passed to apply" >&2; exit 1; }; fi\n' +
        "echo ok\n",
      { mode: 0o755 },
    );
    const run = (command: string, env: Record<string, string>) => {
      const log = `${dir}/log-${Math.random()}`;
      writeFileSync(log, "");
      const r = spawnSync("bash", ["-c", command], {
        env: { PATH: `${dir}:${process.env.PATH}`, KUBECTL_LOG: log, ...env },
        encoding: "utf8",
      });
      return { status: r.status, stderr: r.stderr, args: readFileSync(log, "utf8") };
    };
    for (const command of commands) {
      const names = [...command.matchAll(/--from-literal=(\w+)=/g)].map((m) => m[1]);
      const set = Object.fromEntries(names.map((n) => [n, `sk-${n}`]));
      for (const empty of names) {
        for (const env of [
          { ...set, [empty]: "" },
          Object.fromEntries(names.filter((n) => n !== empty).map((n) => [n, set[n]])),
        ]) {
          const r = run(command, env);
          assert.notEqual(r.status, 0, `${command} with ${empty} empty or unset`);
          assert.match(r.stderr, new RegExp(`set ${empty}`));
          assert.ok(!r.args.includes("create"), "kubectl never ran");
        }
      }
      const ok = run(command, set);
      assert.equal(ok.status, 0, ok.stderr);
      for (const n of names) assert.ok(ok.args.includes(`--from-literal=${n}=sk-${n}`), ok.args);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the root README's deploy bullet lists what must exist before kubectl apply -k", () => {
  const readme = read(ROOT + "README.md");
  const deploy = readme.slice(
    readme.indexOf("## Deploy"),
    readme.indexOf("- **The image, without Docker:**"),
  );
  for (const needed of [
    /image, pushed/,
    /key in a Secret/,
    /`istio-proxy` env patch/,
    /access-log provider/,
    /bootstrap override/,
  ])
    assert.match(deploy, needed);
});

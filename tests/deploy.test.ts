// SPDX-License-Identifier: Apache-2.0
// Offline checks of deploy/: every file parses; Istio resources validate against Istio's CRD
// schemas (../shared/schemas, unknown fields refused as `kubectl apply --validate=strict` would);
// the local Envoy uses the ConfigMap's stats_tags; access-log formats and Telemetry expressions
// name only filter-state keys the plugin sets; dashboards and rules name only metrics and labels
// that exist; the WasmPlugin's pluginConfig satisfies the plugin's JSON Schema.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync, existsSync } from "node:fs";
import { join, relative } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { Ajv } from "ajv";
import { loadStatsTags } from "./host/telemetry.ts";
import { ROOT, BOOTSTRAP_CONFIGMAP } from "./seed.ts";

const DEPLOY = ROOT + "deploy";
// Istio's CRDs live in the workspace's shared/ folder beside the repository (as on CI).
const CRDS = ROOT + "../shared/schemas/istio-crds.gen.yaml";
const noCrds = existsSync(CRDS)
  ? false
  : `Istio's CRD schemas are not at ${CRDS} (shared/ beside the repository)`;

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) files(full, out);
    else out.push(full);
  }
  return out;
}

const deployFiles = files(DEPLOY);
const yamlFiles = deployFiles.filter((f) => /\.ya?ml$/.test(f));
const jsonFiles = deployFiles.filter((f) => f.endsWith(".json"));

function documents(): Array<{ file: string; doc: any }> {
  const out: Array<{ file: string; doc: any }> = [];
  for (const f of yamlFiles) {
    for (const d of parseAllDocuments(readFileSync(f, "utf8"))) {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors[0].message}`);
      const doc = d.toJS();
      if (doc !== null && doc !== undefined) out.push({ file: relative(ROOT, f), doc });
    }
  }
  return out;
}

// ---- what the plugin defines, read from its source -----------------------------------------

const names = readFileSync(ROOT + "assembly/telemetry/names.ts", "utf8");
const PLUGIN_KEYS = new Set(
  [...names.matchAll(/KEY_\w+ = "asm\.llmproxy\.(\w+)"/g)].map((m) => "wasm.asm.llmproxy." + m[1]),
);
const HISTOGRAMS = [...names.matchAll(/METRIC_(?:FIRST_TOKEN_MS|DURATION_MS) = "(\w+)"/g)].map((m) => m[1]);
const PLUGIN_METRICS = new Set([...names.matchAll(/METRIC_\w+ = "(asm_llm_proxy_\w+)"/g)].map((m) => m[1]));
for (const h of HISTOGRAMS)
  for (const suffix of ["_bucket", "_sum", "_count"]) PLUGIN_METRICS.add(h + suffix);
const PLUGIN_LABELS = new Set([...names.matchAll(/TAG_\w+ = "(llmproxy_\w+)"/g)].map((m) => m[1]));
const ISTIO_METRICS = new Set([
  "istio_requests_total",
  "istio_request_duration_milliseconds_bucket",
  "istio_request_duration_milliseconds_sum",
  "istio_request_duration_milliseconds_count",
]);
// Istio's standard labels, plus the `model` dimension deploy/istio/telemetry.yaml adds.
const ISTIO_LABELS = new Set(
  "reporter source_workload source_canonical_service source_canonical_revision source_workload_namespace source_principal source_app source_version source_cluster destination_workload destination_workload_namespace destination_principal destination_app destination_version destination_service destination_canonical_service destination_canonical_revision destination_service_name destination_service_namespace destination_cluster request_protocol response_code grpc_response_status response_flags connection_security_policy model".split(
    " ",
  ),
);

/** Problems with a PromQL expression: metrics or labels that do not exist. */
export function promqlProblems(expr: string): string[] {
  const problems: string[] = [];
  const metrics = [...expr.matchAll(/\b(asm_llm_proxy_\w+|istio_\w+)\b/g)].map((m) => m[1]);
  if (metrics.length === 0) problems.push(`names no metric: ${expr}`);
  const istio = metrics.some((m) => m.startsWith("istio_"));
  for (const m of metrics) {
    if (!PLUGIN_METRICS.has(m) && !ISTIO_METRICS.has(m)) problems.push(`unknown metric ${m}`);
  }
  const allowed = new Set(["le", ...(istio ? ISTIO_LABELS : PLUGIN_LABELS)]);
  const labels = [
    ...[...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
      m[1]
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    ),
    ...[...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) =>
      [...m[1].matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]),
    ),
  ];
  for (const l of labels) if (!allowed.has(l)) problems.push(`unknown label ${l} in ${expr.slice(0, 80)}`);
  return problems;
}

test("every YAML and JSON file under deploy/ parses", () => {
  assert.ok(
    yamlFiles.length >= 8 && jsonFiles.length >= 2,
    `found ${yamlFiles.length} YAML, ${jsonFiles.length} JSON`,
  );
  assert.doesNotThrow(() => documents());
  for (const f of jsonFiles) assert.doesNotThrow(() => JSON.parse(readFileSync(f, "utf8")), f);
});

test("Istio resources validate against Istio's CRD schemas, unknown fields refused", { skip: noCrds }, () => {
  const crds = parseAllDocuments(readFileSync(CRDS, "utf8"))
    .map((d) => d.toJS())
    .filter((d) => d?.kind === "CustomResourceDefinition");
  const strict = (schema: any): any => {
    if (schema === null || typeof schema !== "object") return schema;
    if (Array.isArray(schema)) return schema.map(strict);
    const out: any = {};
    for (const [k, v] of Object.entries(schema)) out[k] = strict(v);
    if (
      out.type === "object" &&
      out.properties &&
      out.additionalProperties === undefined &&
      !out["x-kubernetes-preserve-unknown-fields"]
    ) {
      out.additionalProperties = false;
    }
    return out;
  };
  const ajv = new Ajv({ strict: false, allErrors: true });
  let checked = 0;
  for (const { file, doc } of documents()) {
    const [group, version] = String(doc.apiVersion).split("/");
    if (!group.endsWith("istio.io") || group === "install.istio.io") continue;
    const crd = crds.find((c) => c.spec.group === group && c.spec.names.kind === doc.kind);
    assert.ok(crd, `${file}: no CRD for ${doc.apiVersion} ${doc.kind}`);
    const v = crd.spec.versions.find((x: any) => x.name === version);
    assert.ok(v?.served, `${file}: ${doc.kind} ${version} is not served`);
    const schema = strict({
      ...v.schema.openAPIV3Schema,
      properties: {
        ...v.schema.openAPIV3Schema.properties,
        apiVersion: { type: "string" },
        kind: { type: "string" },
        metadata: { type: "object" },
      },
    });
    const validate = ajv.compile(schema);
    assert.ok(validate(doc), `${file} ${doc.kind}/${doc.metadata?.name}: ${ajv.errorsText(validate.errors)}`);
    checked++;
  }
  assert.equal(checked, 6, "WasmPlugin x3, ServiceEntry, DestinationRule, Telemetry");
});

test("the CRD check refuses a misspelt field", { skip: noCrds }, () => {
  const crds = parseAllDocuments(readFileSync(CRDS, "utf8")).map((d) => d.toJS());
  const wasm = crds.find((c) => c?.spec?.names?.kind === "WasmPlugin");
  const v = wasm.spec.versions.find((x: any) => x.name === "v1alpha1");
  const spec = { ...v.schema.openAPIV3Schema.properties.spec, additionalProperties: false };
  const validate = new Ajv({ strict: false }).compile(spec);
  assert.equal(validate({ url: "oci://x/y:1", failStrategy: "FAIL_OPEN" }), true);
  assert.equal(validate({ url: "oci://x/y:1", failStratgy: "FAIL_OPEN" }), false);
  assert.equal(validate({ url: "oci://x/y:1", failStrategy: "FAIL_SOMETIMES" }), false);
});

test("the local Envoy uses exactly the ConfigMap's stats_tags", () => {
  const envoy = parseYaml(readFileSync(DEPLOY + "/envoy/envoy.yaml", "utf8"));
  assert.deepEqual(envoy.stats_config.stats_tags, loadStatsTags(BOOTSTRAP_CONFIGMAP));
  assert.equal(
    envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config
      .config.fail_open,
    true,
  );
});

test("access-log formats and Telemetry expressions name only filter-state keys the plugin sets, with :PLAIN", () => {
  assert.ok(PLUGIN_KEYS.has("wasm.asm.llmproxy.request_model") && PLUGIN_KEYS.size >= 12);
  let seen = 0;
  for (const f of [...deployFiles, ROOT + "README.md"]) {
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/%FILTER_STATE\(([^)]*)\)%/g)) {
      const [key, format] = m[1].split(":");
      assert.equal(format, "PLAIN", `${f}: ${m[0]} without :PLAIN prints a serialized protobuf`);
      if (key.includes("<") || key.includes("...")) continue; // a placeholder in prose
      assert.ok(PLUGIN_KEYS.has(key), `${f}: the plugin never sets ${key}`);
      seen++;
    }
    for (const m of text.matchAll(/filter_state\[["']([^"']+)["']\]/g)) {
      assert.ok(PLUGIN_KEYS.has(m[1]), `${f}: the plugin never sets ${m[1]}`);
      seen++;
    }
  }
  assert.ok(seen >= 20, `checked ${seen} references`);
});

test("the dashboard and the rules name only metrics and labels that exist", () => {
  const dashboard = JSON.parse(readFileSync(DEPLOY + "/grafana/asm-llm-proxy-dashboard.json", "utf8"));
  const exprs: string[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
  for (const v of dashboard.templating.list) if (v.type === "query") exprs.push(v.query);
  const rules = parseYaml(readFileSync(DEPLOY + "/prometheus/asm-llm-proxy-rules.yaml", "utf8"));
  exprs.push(...rules.spec.groups.flatMap((g: any) => g.rules.map((r: any) => r.expr)));
  assert.ok(exprs.length >= 14);
  for (const e of exprs) assert.deepEqual(promqlProblems(e), [], e);
  for (const p of dashboard.panels) {
    for (const t of p.targets) {
      for (const m of String(t.legendFormat ?? "").matchAll(/\{\{(\w+)\}\}/g)) {
        assert.ok(PLUGIN_LABELS.has(m[1]) || ISTIO_LABELS.has(m[1]), `legend names unknown label ${m[1]}`);
      }
    }
  }
  // The checker itself can fail.
  assert.deepEqual(promqlProblems("sum by (llmproxy_modle) (rate(asm_llm_proxy_prompt_tokens[5m]))"), [
    "unknown label llmproxy_modle in sum by (llmproxy_modle) (rate(asm_llm_proxy_prompt_tokens[5m]))",
  ]);
  assert.deepEqual(promqlProblems("rate(asm_llm_proxy_tokens[5m])"), ["unknown metric asm_llm_proxy_tokens"]);
});

test("the WasmPlugin's pluginConfig satisfies the plugin's configuration schema", () => {
  const validate = new Ajv({ strict: false }).compile(
    JSON.parse(readFileSync(DEPLOY + "/plugin-config.schema.json", "utf8")),
  );
  let checked = 0;
  for (const { file, doc } of documents()) {
    if (doc.kind !== "WasmPlugin") continue;
    assert.ok(validate(doc.spec.pluginConfig ?? {}), `${file}: ${JSON.stringify(validate.errors)}`);
    assert.equal(doc.spec.failStrategy, "FAIL_OPEN", `${file}: a telemetry plugin must not fail closed`);
    checked++;
  }
  assert.equal(checked, 3);
});

test("the Dockerfiles copy files that the build produces or the repository holds", () => {
  for (const f of ["Dockerfile.envoy", "deploy/istio/Dockerfile.wasm"]) {
    for (const m of readFileSync(ROOT + f, "utf8").matchAll(/^COPY (\S+) /gm)) {
      const src = m[1];
      assert.ok(src === "build/asm-llm-proxy.wasm" || existsSync(ROOT + src), `${f}: ${src} does not exist`);
    }
  }
});

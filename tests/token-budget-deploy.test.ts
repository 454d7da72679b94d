// SPDX-License-Identifier: Apache-2.0
// The token-budget deployments, offline: deploy/envoy-ratelimit's EnvoyFilter uses Envoy's own
// field names (a schema of the messages it sets, written from Envoy's API protos, unknown fields
// refused) and the shape that charges tokens with no plugin code (an enforcing entry with
// hits_addend 0 and a charging one, apply_on_stream_done, on the same actions, reading the
// plugin's filter state); envoyproxy/ratelimit's rules match those descriptors; deploy/ratelimit
// runs the service of ratelimit/ with rules it accepts. tests/deploy.test.ts validates every
// Istio resource of deploy/ (this EnvoyFilter too) against Istio's CRDs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { Ajv } from "ajv";
import { ROOT } from "./seed.ts";
import { parseRules } from "../ratelimit/src/rules.ts";

const read = (f: string) => readFileSync(ROOT + f, "utf8");
const docs = (f: string): any[] => parseAllDocuments(read(f)).map((d) => d.toJS());

/** A message of Envoy's API: its fields (proto names, as Envoy's YAML/JSON takes them). */
const message = (properties: Record<string, object>, required: string[] = []) => ({
  type: "object",
  additionalProperties: false,
  properties,
  required,
});
const any = {};
const typed = (type: string, fields: Record<string, object>) =>
  message({ "@type": { const: "type.googleapis.com/" + type }, ...fields }, ["@type"]);

/**
 * envoy.config.route.v3.RateLimit (api/envoy/config/route/v3/route_components.proto), as
 * source/extensions/filters/common/ratelimit_config/ratelimit_config.cc reads it: `actions`
 * (each one of the Action oneof), `hits_addend` (HitsAddend: `number`, a UInt64Value, or
 * `format`, a substitution format with one operator), `apply_on_stream_done`, and the `stage`,
 * `disable_key` and `limit` it refuses or ignores there.
 */
const ROUTE_RATE_LIMIT = message(
  {
    stage: any,
    disable_key: any,
    limit: any,
    apply_on_stream_done: { type: "boolean" },
    hits_addend: {
      type: "object",
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
      properties: { number: { type: "integer", minimum: 0 }, format: { type: "string" } },
    },
    actions: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        minProperties: 1,
        maxProperties: 1,
        additionalProperties: false,
        properties: {
          source_cluster: message({}),
          destination_cluster: message({}),
          request_headers: message(
            { header_name: { type: "string" }, descriptor_key: { type: "string" }, skip_if_absent: any },
            ["header_name", "descriptor_key"],
          ),
          remote_address: message({}),
          generic_key: message({ descriptor_value: { type: "string", minLength: 1 }, descriptor_key: any }, [
            "descriptor_value",
          ]),
          header_value_match: any,
          dynamic_metadata: any,
          metadata: any,
          extension: any,
          masked_remote_address: any,
          query_parameter_value_match: any,
          query_parameters: any,
        },
      },
    },
  },
  ["actions"],
);

/** envoy.extensions.filters.http.ratelimit.v3 (api/envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto). */
const RATE_LIMIT_FILTER = typed("envoy.extensions.filters.http.ratelimit.v3.RateLimit", {
  domain: { type: "string", minLength: 1 },
  stage: any,
  request_type: any,
  timeout: { type: "string", pattern: "^\\d+(\\.\\d+)?s$" },
  failure_mode_deny: { type: "boolean" },
  rate_limited_as_resource_exhausted: any,
  enable_x_ratelimit_headers: any,
  disable_x_envoy_ratelimited_header: any,
  rate_limited_status: any,
  status_on_error: any,
  response_headers_to_add: any,
  filter_enabled: any,
  filter_enforced: any,
  rate_limits: any,
  // envoy.config.ratelimit.v3.RateLimitServiceConfig (api/envoy/config/ratelimit/v3/rls.proto)
  // with an envoy.config.core.v3.GrpcService (api/envoy/config/core/v3/grpc_service.proto).
  rate_limit_service: message(
    {
      transport_api_version: { const: "V3" },
      grpc_service: message({
        envoy_grpc: message({ cluster_name: { type: "string" }, authority: any, retry_policy: any }, [
          "cluster_name",
        ]),
        google_grpc: any,
        timeout: any,
        initial_metadata: any,
      }),
    },
    ["grpc_service", "transport_api_version"],
  ),
});
const RATE_LIMIT_PER_ROUTE = typed("envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute", {
  vh_rate_limits: any,
  override_option: any,
  domain: any,
  rate_limits: { type: "array", items: ROUTE_RATE_LIMIT },
});

const ajv = new Ajv({ strict: false, allErrors: true });
const filterSchema = ajv.compile(RATE_LIMIT_FILTER);
const perRouteSchema = ajv.compile(RATE_LIMIT_PER_ROUTE);

const BUNDLE = "deploy/envoy-ratelimit/";
const [envoyFilter] = docs(BUNDLE + "envoyfilter.yaml");
const patches: any[] = envoyFilter.spec.configPatches;
const filterPatch = patches.find((p) => p.applyTo === "HTTP_FILTER");
const vhostPatch = patches.find((p) => p.applyTo === "VIRTUAL_HOST");
const perRoute = () => vhostPatch.patch.value.typed_per_filter_config["envoy.filters.http.ratelimit"];

test("the EnvoyFilter's rate limit filter and per-route entries use Envoy's field names", () => {
  assert.equal(filterPatch.patch.value.name, "envoy.filters.http.ratelimit");
  assert.equal(filterPatch.patch.operation, "INSERT_BEFORE");
  assert.equal(filterPatch.match.listener.filterChain.filter.subFilter.name, "envoy.filters.http.router");
  assert.ok(filterSchema(filterPatch.patch.value.typed_config), JSON.stringify(filterSchema.errors));
  assert.ok(perRouteSchema(perRoute()), JSON.stringify(perRouteSchema.errors));
  // The schemas refuse a misspelt or misplaced field.
  const per = perRoute();
  const broken = [
    { ...per, rate_limit: per.rate_limits },
    { ...per, rate_limits: [{ ...per.rate_limits[0], hits_addend: { value: 0 } }] },
    { ...per, rate_limits: [{ ...per.rate_limits[1], apply_on_stream_complete: true }] },
    { ...per, rate_limits: [{ ...per.rate_limits[0], hits_addend: { number: 0, format: "%BYTES_SENT%" } }] },
    { ...per, rate_limits: [{ actions: [{ generic_key: { value: "x" } }] }] },
    { ...per, "@type": "type.googleapis.com/envoy.config.route.v3.RateLimit" },
  ];
  for (const b of broken) assert.equal(perRouteSchema(b), false, JSON.stringify(b).slice(0, 160));
  const config = filterPatch.patch.value.typed_config;
  assert.equal(filterSchema({ ...config, failure_mode_allow: true }), false);
  assert.equal(filterSchema({ ...config, rate_limit_service: { grpc_service: {} } }), false);
});

test("one entry enforces before the call (hits 0), one charges the call's tokens when done", () => {
  const [enforce, charge, ...rest] = perRoute().rate_limits;
  assert.equal(rest.length, 0);
  assert.deepEqual(enforce.actions, charge.actions, "the same actions: the same descriptor");
  assert.deepEqual(enforce.hits_addend, { number: 0 });
  assert.equal(enforce.apply_on_stream_done, undefined);
  assert.equal(charge.apply_on_stream_done, true);
  // Exactly one substitution operator, reading the plugin's key as raw bytes (PLAIN, not TYPED).
  assert.deepEqual(charge.hits_addend, {
    format: "%FILTER_STATE(wasm.asm.llmproxy.request_total_tokens:PLAIN)%",
  });
  // The plugin publishes that key in the bundle's WasmPlugin.
  const [plugin] = docs("deploy/istio/wasmplugin.yaml");
  const published: string[] = plugin.spec.pluginConfig.filter_state;
  assert.ok(published.includes("all") || published.includes("request_total_tokens"));
  // On the virtual host the routing bundle builds for the provider host, port 80.
  const [vs] = docs("deploy/istio/dashscope-routing.yaml").filter((d) => d.kind === "VirtualService");
  assert.equal(vhostPatch.match.routeConfiguration.vhost.name, `${vs.spec.hosts[0]}:80`);
  assert.equal(vhostPatch.match.context, "SIDECAR_OUTBOUND");
  assert.equal(vhostPatch.patch.operation, "MERGE");
  assert.deepEqual(envoyFilter.spec.workloadSelector, { labels: { app: "sleep" } });
});

test("envoyproxy/ratelimit's rules match the descriptor, the domain and the gRPC cluster", () => {
  const [config, deployment, service] = docs(BUNDLE + "ratelimit.yaml");
  const rules = parseYaml(config.data["config.yaml"]);
  const typedConfig = filterPatch.patch.value.typed_config;
  assert.equal(rules.domain, typedConfig.domain);
  // The actions build (budget=llm-tokens)(source_cluster=<the sidecar's cluster>).
  const [generic, source] = perRoute().rate_limits[0].actions;
  const top = rules.descriptors.find(
    (d: any) =>
      d.key === generic.generic_key.descriptor_key && d.value === generic.generic_key.descriptor_value,
  );
  assert.ok(top, "a rule for the generic key");
  assert.deepEqual(source, { source_cluster: {} });
  const perSource = top.descriptors.find((d: any) => d.key === "source_cluster" && d.value === undefined);
  assert.ok(perSource.rate_limit.requests_per_unit > 0, "a limit for each source cluster");
  // The filter's cluster is the Service's gRPC port, in the bundle's namespace.
  const k = parseYaml(read(BUNDLE + "kustomization.yaml"));
  const grpc = service.spec.ports.find((p: any) => p.name === "grpc");
  assert.equal(
    typedConfig.rate_limit_service.grpc_service.envoy_grpc.cluster_name,
    `outbound|${grpc.port}||${service.metadata.name}.${k.namespace}.svc.cluster.local`,
  );
  const container = deployment.spec.template.spec.containers[0];
  const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value]));
  const [, redisService] = docs(BUNDLE + "redis.yaml");
  assert.equal(env.REDIS_URL, `${redisService.metadata.name}:6379`);
  assert.equal(container.volumeMounts[0].mountPath, `${env.RUNTIME_ROOT}/${env.RUNTIME_SUBDIRECTORY}/config`);
});

for (const dir of ["deploy/ratelimit/", "deploy/envoy-ratelimit/"])
  test(`${dir}kustomization.yaml lists every file beside it`, () => {
    const k = parseYaml(read(dir + "kustomization.yaml"));
    assert.equal(k.kind, "Kustomization");
    const files = readdirSync(ROOT + dir).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
    assert.deepEqual([...k.resources].sort(), files.sort());
    for (const f of files) for (const d of docs(dir + f)) assert.ok(d.kind && d.metadata?.name, `${dir}${f}`);
  });

test("deploy/ratelimit runs the service of ratelimit/ with rules it accepts, probed on /healthz", () => {
  const [rules, deployment, service] = docs("deploy/ratelimit/service.yaml");
  const parsed = parseRules(rules.data.RATE_LIMIT_CONFIG);
  assert.ok(parsed.length > 0);
  const container = deployment.spec.template.spec.containers[0];
  const k = parseYaml(read("deploy/ratelimit/kustomization.yaml"));
  assert.equal(k.images[0].name, container.image, "kustomize sets the image");
  assert.equal(container.readinessProbe.httpGet.path, "/healthz");
  assert.equal(container.livenessProbe.httpGet, undefined, "a Redis outage must not restart the pods");
  const env = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env.RATE_LIMIT_CONFIG.configMapKeyRef.name, rules.metadata.name);
  assert.equal(container.ports[0].containerPort, Number(env.PORT));
  const [, redisService] = docs("deploy/ratelimit/redis.yaml");
  assert.equal(env.REDIS_ADDRESS, `${redisService.metadata.name}:6379`);
  // The cluster the plugin names: outbound|80||<service>.<namespace>.svc.cluster.local.
  assert.deepEqual(
    service.spec.ports.map((p: any) => [p.name, p.port]),
    [["http", 80]],
  );
  // The image runs as a numeric non-root user, as runAsNonRoot needs.
  assert.match(read("ratelimit/Dockerfile"), /^USER 1000:1000$/m);
  assert.equal(container.securityContext.runAsNonRoot, true);
});

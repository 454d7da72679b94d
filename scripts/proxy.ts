// SPDX-License-Identifier: Apache-2.0
// `npm run proxy -- [options]`: a local sidecar. The built plugin runs in the project's proxy-wasm
// host inside an HTTP/1.1 proxy on this machine, configured as a WasmPlugin configures it, routed
// as VirtualServices route, sending each host's calls to the provider over TLS (or where
// --upstream says). Access-log lines go to stdout, plugin and proxy log lines to stderr.

import { parseArgs } from "node:util";
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { walk } from "./check-structure.ts";
import { loadStatsTags } from "../tests/host/telemetry.ts";
import { LogLevel } from "../tests/host/host.ts";
import { ROOT, ConfigError, loadPluginConfig, schemaProblems, pluginProblems } from "./proxy/config.ts";
import { loadRoutes } from "./proxy/routes.ts";
import { loadLogFormat } from "./proxy/access-log.ts";
import { LocalProxy, type Address } from "./proxy/server.ts";

const USAGE = `usage: npm run proxy -- [options]
  --config FILE          plugin configuration: JSON, or a WasmPlugin YAML (its spec.pluginConfig)
  --routes FILE          Istio VirtualService YAML (repeatable; several documents per file)
  --upstream HOST=URL    send HOST's requests to URL, http:// or https:// (repeatable);
                         any other host goes to HOST:443 over TLS
  --listen HOST:PORT     the proxy (default 127.0.0.1:10000)
  --admin HOST:PORT|off  /stats/prometheus, /config_dump (default 127.0.0.1:15000)
  --default-host HOST    :authority of requests addressed to the proxy itself (SDK base_url);
                         default: the only --upstream host, else the only providers[] host
  --node-metadata K=V    Istio node metadata, e.g. WORKLOAD_NAME=sleep,NAMESPACE=default
                         (default: ISTIO_META_* and POD_NAMESPACE from the environment)
  --log-level LEVEL      trace, debug, info, warn (default), error, critical, off
  --wasm FILE            the module (default build/asm-llm-proxy.wasm)
  --check                validate --config (and --routes) and exit: 1 on any problem
The process environment is the VM environment (providers[].api_key_env).`;

function fail(message: string): never {
  console.error(`asm-llm-proxy: ${message}`);
  process.exit(1);
}

function parseAddress(value: string, option: string): Address {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) fail(`${option} ${value}: expected HOST:PORT, e.g. 127.0.0.1:10000`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port };
}

function parseUpstreams(values: string[]): Map<string, URL> {
  const out = new Map<string, URL>();
  for (const v of values) {
    const i = v.indexOf("=");
    let url: URL | undefined;
    try {
      url = new URL(v.slice(i + 1));
    } catch {
      url = undefined;
    }
    if (i <= 0 || !url || !/^https?:$/.test(url.protocol))
      fail(
        `--upstream ${v}: expected HOST=URL with an http:// or https:// URL, e.g. api.openai.com=http://127.0.0.1:8080`,
      );
    out.set(v.slice(0, i).toLowerCase(), url);
  }
  return out;
}

/** Node metadata as pilot-agent builds it (ISTIO_META_*, POD_NAMESPACE), then --node-metadata. */
function nodeMetadata(values: string[]): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (k.startsWith("ISTIO_META_") && v !== undefined) meta[k.slice("ISTIO_META_".length)] = v;
  if (meta.NAMESPACE === undefined && process.env.POD_NAMESPACE) meta.NAMESPACE = process.env.POD_NAMESPACE;
  for (const part of values.flatMap((v) => v.split(","))) {
    const i = part.indexOf("=");
    if (i <= 0) fail(`--node-metadata ${part}: expected KEY=VALUE, e.g. WORKLOAD_NAME=sleep`);
    meta[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return meta;
}

let args;
try {
  args = parseArgs({
    options: {
      config: { type: "string" },
      routes: { type: "string", multiple: true, default: [] },
      upstream: { type: "string", multiple: true, default: [] },
      listen: { type: "string", default: "127.0.0.1:10000" },
      admin: { type: "string", default: "127.0.0.1:15000" },
      "default-host": { type: "string" },
      "node-metadata": { type: "string", multiple: true, default: [] },
      "log-level": { type: "string", default: "warn" },
      wasm: { type: "string", default: process.env.ASM_LLM_PROXY_WASM ?? "build/asm-llm-proxy.wasm" },
      check: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  }).values;
} catch (e) {
  fail(`${(e as Error).message}\n${USAGE}`);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const levelName = args["log-level"]!;
const logLevel = levelName === "off" ? 6 : (LogLevel as Record<string, number>)[levelName];
if (logLevel === undefined)
  fail(`--log-level ${levelName}: one of trace, debug, info, warn, error, critical, off`);
const wasm = resolve(ROOT, args.wasm!);
if (!existsSync(wasm)) fail(`${wasm} does not exist: build it with npm run build:release`);
const built = statSync(wasm).mtimeMs;
if (walk(ROOT + "assembly").some((f) => f.endsWith(".ts") && statSync(f).mtimeMs > built))
  console.error(`asm-llm-proxy: ${args.wasm} is older than assembly/: npm run build:release builds it again`);

let config;
try {
  config = loadPluginConfig(args.config);
} catch (e) {
  if (e instanceof ConfigError) fail(e.message);
  throw e;
}
const routes = loadRoutes(args.routes!);
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
Object.assign(env, config.env);
const schema = schemaProblems(config.json);

if (args.check) {
  const problems = [...(await pluginProblems(wasm, config, env)), ...schema, ...routes.errors];
  for (const w of routes.warnings) console.log(`note: ${w}`);
  for (const p of problems) console.log(p);
  console.log(
    problems.length === 0
      ? `${config.source}: no problems`
      : `${config.source}: ${problems.length} problem(s)`,
  );
  process.exit(problems.length === 0 ? 0 : 1);
}

for (const e of routes.errors) console.error(`asm-llm-proxy: --routes: ${e}`);
if (routes.errors.length > 0) process.exit(1);
for (const w of routes.warnings) console.error(`asm-llm-proxy: --routes: ${w}`);

const providerHosts: string[] = (JSON.parse(config.json).providers ?? []).map((p: any) =>
  String(p?.host ?? ""),
);
const candidates = args.upstream!.length > 0 ? [...parseUpstreams(args.upstream!).keys()] : providerHosts;
const defaultHost = args["default-host"] ?? (candidates.length === 1 ? candidates[0] : undefined);

let proxy: LocalProxy;
try {
  proxy = await LocalProxy.start({
    wasm,
    config,
    routes,
    upstreams: parseUpstreams(args.upstream!),
    nodeMetadata: nodeMetadata(args["node-metadata"]!),
    env,
    logLevel,
    listen: parseAddress(args.listen!, "--listen"),
    admin: args.admin === "off" ? undefined : parseAddress(args.admin!, "--admin"),
    defaultHost,
    statsTags: loadStatsTags(ROOT + "deploy/istio/asm-llm-proxy-bootstrap-config.yaml"),
    logFormat: loadLogFormat(ROOT + "deploy/istio/meshconfig-access-log.yaml"),
    problems: schema,
  });
} catch (e) {
  fail((e as Error).message);
}

const l = proxy.listenAddress;
console.error(
  `asm-llm-proxy: proxy on http://${l.host}:${l.port}` +
    (proxy.adminAddress ? `, admin on http://${proxy.adminAddress.host}:${proxy.adminAddress.port}` : "") +
    `; config ${config.source}` +
    (defaultHost ? `; requests to the proxy itself go to ${defaultHost}` : ""),
);
// The plugin's own warnings were printed as it logged them, unless --log-level hides them.
for (const p of proxy.configProblems)
  if (!p.startsWith("plugin: ") || logLevel > LogLevel.warn)
    console.error(`asm-llm-proxy: configuration problem: ${p}`);

let stopping = false;
const stop = async () => {
  if (stopping) process.exit(130);
  stopping = true;
  console.error("asm-llm-proxy: stopping (Ctrl-C again to quit at once)");
  await proxy.close();
  console.error(proxy.summary());
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());

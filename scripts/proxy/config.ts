// SPDX-License-Identifier: Apache-2.0
// The plugin configuration of the local proxy: a JSON file, or a WasmPlugin YAML whose
// spec.pluginConfig Istio would send (and whose vmConfig.env INLINE values join the VM
// environment), and its problems as the plugin itself and the JSON Schema see them.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { Ajv } from "ajv";
import { ProxyWasmHost, LogLevel } from "../../tests/host/host.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const SCHEMA = ROOT + "deploy/plugin-config.schema.json";

export class ConfigError extends Error {}

export interface PluginConfig {
  /** Where it came from ("built-in defaults" without --config). */
  source: string;
  /** The configuration as Istio sends it: JSON text. */
  json: string;
  /** INLINE vmConfig.env values of a WasmPlugin (valueFrom: HOST names come from the process). */
  env: Record<string, string>;
}

/** Reads --config: JSON, or YAML holding a WasmPlugin (or a bare pluginConfig mapping). */
export function loadPluginConfig(file: string | undefined): PluginConfig {
  if (file === undefined) return { source: "built-in defaults", json: "{}", env: {} };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`--config ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  if (/\.json$/i.test(file) || /^\s*[{[]/.test(text)) {
    try {
      return { source: file, json: JSON.stringify(JSON.parse(text)), env: {} };
    } catch (e) {
      throw new ConfigError(`--config ${file}: not valid JSON (${(e as Error).message})`);
    }
  }
  const docs = parseAllDocuments(text);
  const values = [];
  for (const doc of docs) {
    if (doc.errors.length > 0)
      throw new ConfigError(`--config ${file}: not valid YAML (${doc.errors[0].message})`);
    values.push(doc.toJS());
  }
  const plugin = values.find((v) => v?.kind === "WasmPlugin");
  if (plugin) {
    const env: Record<string, string> = {};
    for (const e of plugin.spec?.vmConfig?.env ?? []) {
      if (typeof e?.name === "string" && e.valueFrom !== "HOST" && typeof e.value === "string")
        env[e.name] = e.value;
    }
    const config = plugin.spec?.pluginConfig ?? {};
    return {
      source: `${file} (WasmPlugin ${plugin.metadata?.name ?? ""} spec.pluginConfig)`,
      json: JSON.stringify(config),
      env,
    };
  }
  if (values.length === 1 && typeof values[0] === "object" && values[0] !== null && !("kind" in values[0]))
    return { source: file, json: JSON.stringify(values[0]), env: {} };
  throw new ConfigError(`--config ${file}: no WasmPlugin in it (and not one plugin configuration mapping)`);
}

/** What the JSON Schema (deploy/plugin-config.schema.json) says of a configuration. */
export function schemaProblems(json: string): string[] {
  const validate = new Ajv({ strict: false, allErrors: true }).compile(
    JSON.parse(readFileSync(SCHEMA, "utf8")),
  );
  if (validate(JSON.parse(json))) return [];
  return (validate.errors ?? []).map((e) => {
    const extra = e.keyword === "additionalProperties" ? ` (${(e.params as any).additionalProperty})` : "";
    return `schema: ${e.instancePath || "(top level)"} ${e.message}${extra}`;
  });
}

/** What the plugin itself warns of when configured with it (a VM of its own, no canary). */
export async function pluginProblems(
  wasm: string,
  config: PluginConfig,
  env: Record<string, string>,
): Promise<string[]> {
  try {
    const host = await ProxyWasmHost.load(wasm, {
      pluginConfig: config.json,
      env,
      canary: false,
      logLevel: LogLevel.warn,
    });
    const levels = ["warn", "error", "critical"];
    return [
      ...host.logs.filter((l) => levels.includes(l.level)).map((l) => `plugin: ${l.message}`),
      ...host.traps.map((t) => `plugin trapped: ${t.message}`),
    ];
  } catch (e) {
    return [`plugin: ${(e as Error).message}`];
  }
}

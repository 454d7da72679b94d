// SPDX-License-Identifier: Apache-2.0
// The structure rules CI enforces (run by tests/structure.test.ts, or directly):
// - layers only point one way: index -> plugin -> host, and plugin -> pure modules
//   (llm, telemetry, config); pure modules import only pure modules, and only downwards:
//   config -> telemetry -> llm; only host/abi.ts imports the proxy-wasm SDK, and only host/
//   declares host functions (@external);
// - every source file starts with the SPDX licence line.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SPDX = "SPDX-License-Identifier: Apache-2.0";

type Layer = "index" | "plugin" | "host" | "pure" | "spec" | "other";

export function layerOf(path: string): Layer {
  if (path === "assembly/index.ts") return "index";
  if (path.startsWith("assembly/__tests__/")) return "spec";
  if (path.startsWith("assembly/plugin/")) return "plugin";
  if (path.startsWith("assembly/host/")) return "host";
  if (/^assembly\/(llm|telemetry|config)\//.test(path)) return "pure";
  return "other";
}

/** Which layers each layer may import. */
const ALLOWED: Record<Layer, Layer[]> = {
  index: ["plugin", "host"],
  plugin: ["plugin", "host", "pure"],
  host: ["host"],
  pure: ["pure"],
  spec: ["pure"],
  other: [],
};

/**
 * The order of the pure layers, lowest first: a pure module imports its own folder or one below.
 * llm (wire formats, paths, routing) stands alone; telemetry names what llm reads; config builds
 * both from the plugin configuration.
 */
const PURE_ORDER = ["llm", "telemetry", "config"];

/** The rank of a pure module's folder in PURE_ORDER, -1 for any other path. */
export function pureRank(path: string): number {
  const m = /^assembly\/([a-z]+)\//.exec(path);
  return m ? PURE_ORDER.indexOf(m[1]) : -1;
}

const SDK = "@solo-io/proxy-runtime";

/** Violations in a set of AssemblyScript sources (path relative to the root -> text). */
export function checkLayers(files: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [path, text] of files) {
    const layer = layerOf(path);
    const specifiers = [
      ...text.matchAll(
        /^\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']/gm,
      ),
    ].map((m) => m[1] ?? m[2]);
    for (const spec of specifiers) {
      if (spec.startsWith(".")) {
        const target = normalize(join(dirname(path), spec)).replace(/\\/g, "/") + ".ts";
        const targetLayer = layerOf(target);
        if (!ALLOWED[layer].includes(targetLayer))
          problems.push(`${path}: a ${layer} module imports ${target} (${targetLayer})`);
        else if (layer === "pure" && pureRank(target) > pureRank(path))
          problems.push(
            `${path}: imports ${target}, a layer above it (pure layers, lowest first: ${PURE_ORDER.join(", ")})`,
          );
      } else if (spec.startsWith(SDK)) {
        if (path !== "assembly/host/abi.ts")
          problems.push(`${path}: only assembly/host/abi.ts may import ${SDK}`);
      } else if (layer === "host" || layer === "index") {
        problems.push(`${path}: the ${layer} layer imports the package ${spec}`);
      }
    }
    if (/@external\s*\(/.test(text) && layer !== "host")
      problems.push(`${path}: declares a host function outside assembly/host/`);
  }
  return problems;
}

export function checkHeaders(files: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [path, text] of files) {
    const head = text.split("\n").slice(0, 3).join("\n");
    if (!head.includes(SPDX)) problems.push(`${path}: does not start with "${SPDX}"`);
  }
  return problems;
}

/** Every file below a directory, as full paths. */
export function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) walk(full, out);
    else out.push(full);
  }
  return out;
}

/** Source files of the project, relative path -> text. */
export function sources(dirs: string[], pattern: RegExp): Map<string, string> {
  const files = new Map<string, string>();
  for (const d of dirs) {
    for (const f of walk(join(ROOT, d))) {
      const rel = relative(ROOT, f).replace(/\\/g, "/");
      if (pattern.test(rel)) files.set(rel, readFileSync(f, "utf8"));
    }
  }
  return files;
}

export function checkAll(): string[] {
  const assembly = sources(["assembly"], /\.ts$/);
  const all = sources(["assembly", "tests", "scripts", "bench"], /\.(ts|js|sh)$/);
  for (const f of ["eslint.config.js", "as-pect.config.js"]) all.set(f, readFileSync(join(ROOT, f), "utf8"));
  return [...checkLayers(assembly), ...checkHeaders(all)];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const problems = checkAll();
  for (const p of problems) console.error(p);
  process.exit(problems.length > 0 ? 1 : 0);
}

// SPDX-License-Identifier: Apache-2.0
// The `providers` option: LLM providers and their per-route overrides (ASM's LLMProvider and
// LLMRoute), validated into the routing tables of llm/routing.ts. Every problem is one message
// naming the field; a broken provider or route is skipped, the rest is kept. Keys are never part
// of a message. Pure: no host imports (the VM environment is handed in by the caller).

import { JSON } from "assemblyscript-json/assembly";
import { Routing, Provider, Target, AUTH_NAMES } from "../llm/routing";
import { asciiLower } from "../llm/hosts";

const PROVIDER_KEYS: string[] = [
  "host",
  "path",
  "model",
  "stream",
  "api_key",
  "api_key_env",
  "auth",
  "routes",
];
const ROUTE_KEYS: string[] = ["path", "model", "stream", "api_key", "api_key_env"];

function str(obj: JSON.Obj, key: string): string {
  const v = obj.get(key);
  return v !== null && v.isString ? (v as JSON.Str).valueOf() : "";
}

/**
 * The non-empty string at `key`: "" when absent, null (after a message) when of another kind.
 */
function nonEmpty(obj: JSON.Obj, key: string, where: string, skip: string, errors: string[]): string | null {
  const v = obj.get(key);
  if (v === null) return "";
  if (!v.isString || (v as JSON.Str).valueOf().length == 0) {
    errors.push("'" + where + "." + key + "' must be a non-empty string" + skip);
    return null;
  }
  return (v as JSON.Str).valueOf();
}

/**
 * Checks the fields a provider and a route share and sets them on `t`. Returns false (after
 * adding a message per problem) when the entry must be skipped.
 */
function readTarget(
  obj: JSON.Obj,
  where: string,
  keys: string[],
  t: Target,
  skip: string,
  errors: string[],
): bool {
  let ok = true;
  const names = obj.keys;
  for (let i = 0; i < names.length; i++) {
    const key = names[i];
    if (!keys.includes(key)) errors.push("'" + where + "." + key + "' is not a known field; ignored");
  }
  const path = obj.get("path");
  if (path !== null) {
    const p = path.isString ? (path as JSON.Str).valueOf() : "";
    if (!p.startsWith("/")) {
      errors.push("'" + where + ".path' must be a string starting with '/'" + skip);
      ok = false;
    } else if (!validUnicode(p)) {
      errors.push("'" + where + ".path' is not valid Unicode (a lone surrogate such as \\ud800)" + skip);
      ok = false;
    } else {
      t.path = p;
    }
  }
  const model = nonEmpty(obj, "model", where, skip, errors);
  if (model === null) ok = false;
  else if (!validUnicode(model)) {
    // It would go upstream as bytes that are not UTF-8, which a provider refuses.
    errors.push("'" + where + ".model' is not valid Unicode (a lone surrogate such as \\ud800)" + skip);
    ok = false;
  } else t.model = model;
  const stream = obj.get("stream");
  if (stream !== null) {
    if (!stream.isBool) {
      errors.push("'" + where + ".stream' must be true or false" + skip);
      ok = false;
    } else {
      t.stream = (stream as JSON.Bool).valueOf() ? 1 : 0;
    }
  }
  const key = obj.get("api_key");
  const env = obj.get("api_key_env");
  if (key !== null && env !== null) {
    errors.push("'" + where + "' sets both api_key and api_key_env; set one" + skip);
    ok = false;
  }
  // A key is a secret: messages name the field, never what it holds.
  const inline = nonEmpty(obj, "api_key", where, skip, errors);
  if (inline === null) ok = false;
  else t.apiKey = inline;
  const name = nonEmpty(obj, "api_key_env", where, skip, errors);
  if (name === null) ok = false;
  else t.apiKeyEnv = name;
  return ok;
}

/** Reads the `providers` array (already known to be an array) into `routing`. */
export function readProviders(value: JSON.Value, routing: Routing, errors: string[]): void {
  const items = (value as JSON.Arr).valueOf();
  for (let i = 0; i < items.length; i++) {
    const where = "providers[" + i.toString() + "]";
    const item = items[i];
    if (!item.isObj) {
      errors.push("'" + where + "' must be an object; provider skipped");
      continue;
    }
    const p = readProvider(item as JSON.Obj, where, routing, errors);
    if (p !== null) routing.providers.push(p);
  }
}

function readProvider(obj: JSON.Obj, where: string, routing: Routing, errors: string[]): Provider | null {
  const hostValue = obj.get("host");
  const host = asciiLower(str(obj, "host"));
  if (hostValue === null || !hostValue.isString || host.length == 0) {
    errors.push("'" + where + ".host' is required: a host name; provider skipped");
    return null;
  }
  if (!validHost(host)) {
    errors.push(
      "'" +
        where +
        ".host' must be a host name (letters, digits, '-', '_' and dots, or [IPv6]) without port, scheme or path; provider skipped",
    );
    return null;
  }
  if (routing.find(host) !== null) {
    errors.push("'" + where + ".host' repeats " + host + "; provider skipped");
    return null;
  }
  const p = new Provider();
  p.host = host;
  let ok = readTarget(obj, where, PROVIDER_KEYS, p.target, "; provider skipped", errors);
  const auth = obj.get("auth");
  if (auth !== null) {
    const a = auth.isString ? AUTH_NAMES.indexOf((auth as JSON.Str).valueOf()) : -1;
    if (a < 0) {
      errors.push("'" + where + ".auth' must be one of bearer, x-api-key, api-key; provider skipped");
      ok = false;
    } else {
      p.target.auth = <u8>a;
    }
  }
  if (!ok) return null;
  const routes = obj.get("routes");
  if (routes !== null) {
    if (!routes.isObj) {
      errors.push("'" + where + ".routes' must be an object of route names; routes ignored");
    } else {
      const r = routes as JSON.Obj;
      const names = r.keys;
      for (let j = 0; j < names.length; j++) {
        const name = names[j];
        const rwhere = where + ".routes." + name;
        const entry = r.get(name);
        if (entry === null || !entry.isObj) {
          errors.push("'" + rwhere + "' must be an object; route skipped");
          continue;
        }
        const t = new Target();
        if (!readTarget(entry as JSON.Obj, rwhere, ROUTE_KEYS, t, "; route skipped", errors)) continue;
        p.addRoute(name, p.target.overriddenBy(t));
      }
    }
  }
  return p;
}

/**
 * Looks up each key named by `api_key_env` in the VM environment (`env`, NAME=value entries) and
 * encodes every target's headers. A missing variable, or a key no header can carry, is one
 * message naming the field (never the variable's name or the key: either may be a secret); the
 * target then sends no key.
 */
export function resolveKeys(routing: Routing, env: string[], errors: string[]): void {
  const reported: string[] = [];
  for (let i = 0; i < routing.providers.length; i++) {
    const p = routing.providers[i];
    const where = "providers[" + i.toString() + "]";
    resolveTarget(p.target, where, p.host, env, reported, errors);
    const names = p.routes.keys();
    for (let j = 0; j < names.length; j++) {
      resolveTarget(p.routes.get(names[j]), where + ".routes." + names[j], p.host, env, reported, errors);
    }
  }
}

function resolveTarget(
  t: Target,
  where: string,
  host: string,
  env: string[],
  reported: string[],
  errors: string[],
): void {
  let key = t.apiKey;
  let field = where + ".api_key";
  if (t.apiKeyEnv.length > 0) {
    field = where + ".api_key_env";
    const found = lookup(env, t.apiKeyEnv);
    // Secret files (and `kubectl create secret --from-file`) end in a newline: it is not the key's.
    key = found !== null ? trimEnd(found) : "";
    if (key.length == 0) {
      // The variable's name is not shown: a key pasted into api_key_env by mistake would be.
      report(
        reported,
        errors,
        "missing\0" + t.apiKeyEnv + "\0" + host,
        "'" +
          field +
          "' names a variable that the VM environment does not have (or that is empty); no key is sent to " +
          host +
          ". Likely cause: the key is missing from the Secret (deploy/istio/README.md step 2a: `kubectl create secret generic llm-api-keys`) or from the istio-proxy env patch of the workload, or WasmPlugin vmConfig.env does not list the variable",
      );
      t.seal("");
      return;
    }
  }
  const problem = keyProblem(key);
  if (problem !== null) {
    // Named by field, never by value.
    report(
      reported,
      errors,
      problem + "\0" + t.apiKeyEnv + "\0" + host,
      "'" + field + "': the key " + problem + "; no key is sent to " + host,
    );
    key = "";
  }
  t.seal(key);
}

/** Adds a message once per id (a route that inherits its provider's key repeats its problem). */
function report(reported: string[], errors: string[], id: string, message: string): void {
  if (reported.includes(id)) return;
  reported.push(id);
  errors.push(message);
}

/** The longest key accepted, in UTF-8 bytes: far beyond any provider's, well within Envoy's header limits. */
export const MAX_KEY_BYTES: i32 = 8192;

/** What makes a key unusable in a header, or null ("" is no key, and no problem). */
export function keyProblem(key: string): string | null {
  if (String.UTF8.byteLength(key) > MAX_KEY_BYTES) return "is longer than 8 KiB";
  for (let i = 0, n = key.length; i < n; i++) {
    const c = key.charCodeAt(i);
    // CR or LF would end the header line; NUL and other controls are refused by HTTP itself.
    if (c < 0x20 || c == 0x7f) return "holds a control character (CR, LF, NUL, ...)";
  }
  return null;
}

/** `s` without trailing white space (space, tab, CR, LF). */
export function trimEnd(s: string): string {
  let n = s.length;
  while (n > 0) {
    const c = s.charCodeAt(n - 1);
    if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
    n--;
  }
  return n == s.length ? s : s.substring(0, n);
}

/** Whether a string is valid Unicode: every surrogate is half of a pair. */
export function validUnicode(s: string): bool {
  for (let i = 0, n = s.length; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c >= 0xdc00 || i + 1 >= n) return false;
    const d = s.charCodeAt(i + 1);
    if (d < 0xdc00 || d > 0xdfff) return false;
    i++;
  }
  return true;
}

/**
 * Whether `host` (lower case) is a host name without port, scheme or path: dot-separated labels
 * of letters, digits, `-` and `_`, or an IPv6 literal in brackets.
 */
export function validHost(host: string): bool {
  const n = host.length;
  if (n == 0) return false;
  if (host.charCodeAt(0) == 0x5b) {
    if (n < 3 || host.charCodeAt(n - 1) != 0x5d) return false;
    for (let i = 1; i < n - 1; i++) {
      const c = host.charCodeAt(i);
      const ok = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || c == 0x3a || c == 0x2e;
      if (!ok) return false;
    }
    return true;
  }
  let label = 0;
  for (let i = 0; i < n; i++) {
    const c = host.charCodeAt(i);
    if (c == 0x2e) {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x5f;
    if (!ok) return false;
    label++;
  }
  return label > 0;
}

/** The value of `name` among NAME=value entries, or null (an empty value counts as missing). */
export function lookup(env: string[], name: string): string | null {
  const prefix = name + "=";
  for (let i = 0; i < env.length; i++) {
    const e = env[i];
    if (e.startsWith(prefix)) {
      const v = e.substring(prefix.length);
      return v.length > 0 ? v : null;
    }
  }
  return null;
}

/** Whether any provider or route takes its key from the VM environment. */
export function needsEnvironment(routing: Routing): bool {
  for (let i = 0; i < routing.providers.length; i++) {
    const p = routing.providers[i];
    if (p.target.apiKeyEnv.length > 0) return true;
    const names = p.routes.keys();
    for (let j = 0; j < names.length; j++) if (p.routes.get(names[j]).apiKeyEnv.length > 0) return true;
  }
  return false;
}

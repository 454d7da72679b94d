// SPDX-License-Identifier: Apache-2.0
// Token budgets as ASM's LLM token rate limiting checks them: the keys a call is checked under
// (rendered from templates such as "{source_workload}.{source_namespace}"), the check request
// (GET /ratelimit?ratelimit_keys=[...]) and its answer ({"allow": bool, "description": "..."}),
// the update (POST /update_ratelimit_record) and the OpenAI-shaped body of a denial. Pure: no
// host imports; the plugin supplies each key part's value (KeySource).

import { Schema, KIND_BOOL, KIND_STRING, KIND_INT } from "./schema";
import { JsonScanner, PRESENT } from "./json";
import { jsonString } from "./rewrite";
import { asciiLower } from "./hosts";

/** Kinds of a key template's parts. */
export const PART_TEXT: u8 = 0;
export const PART_HEADER: u8 = 1;
export const PART_SOURCE_WORKLOAD: u8 = 2;
export const PART_SOURCE_NAMESPACE: u8 = 3;
export const PART_ROUTE: u8 = 4;
export const PART_DESTINATION: u8 = 5;
export const PART_MODEL: u8 = 6;

const FIELD_NAMES: string[] = [
  "",
  "header:",
  "source_workload",
  "source_namespace",
  "route",
  "destination",
  "model",
];

/** A key template: literal text and `{field}` parts, in order. */
export class KeyTemplate {
  kinds: u8[] = [];
  /** The literal text of a text part; the header name (lower case) of a header part; "" else. */
  texts: string[] = [];
  /** A header part's name, encoded once for the header lookup; empty for other parts. */
  names: ArrayBuffer[] = [];
  /** Why the template is not valid, or null. */
  error: string | null = null;

  private push(kind: u8, text: string): void {
    this.kinds.push(kind);
    this.texts.push(text);
    this.names.push(kind == PART_HEADER ? String.UTF8.encode(text) : new ArrayBuffer(0));
  }

  /** Whether some part needs this kind of value (so the plugin reads it only then). */
  uses(kind: u8): bool {
    return this.kinds.includes(kind);
  }

  static parse(template: string): KeyTemplate {
    const t = new KeyTemplate();
    let i = 0;
    const n = template.length;
    let fields = 0;
    while (i < n) {
      const open = template.indexOf("{", i);
      const close = template.indexOf("}", i);
      if (close >= 0 && (open < 0 || close < open)) {
        t.error = "has a '}' without its '{'";
        return t;
      }
      if (open < 0) {
        t.push(PART_TEXT, template.substring(i));
        break;
      }
      if (open > i) t.push(PART_TEXT, template.substring(i, open));
      if (close < 0) {
        t.error = "has a '{' without its '}'";
        return t;
      }
      const field = template.substring(open + 1, close);
      if (field.startsWith("header:") && field.length > 7)
        t.push(PART_HEADER, asciiLower(field.substring(7)));
      else {
        const kind = FIELD_NAMES.indexOf(field);
        if (kind < <i32>PART_SOURCE_WORKLOAD) {
          t.error =
            "names an unknown field {" +
            field +
            "} (known: {header:NAME}, {source_workload}, {source_namespace}, {route}, {destination}, {model})";
          return t;
        }
        t.push(<u8>kind, "");
      }
      fields++;
      i = close + 1;
    }
    if (fields == 0) t.error = "names no field: it would be one key for every call";
    return t;
  }
}

/** The value of each field for one call; null when the call does not have it. */
export abstract class KeySource {
  abstract value(kind: u8, header: ArrayBuffer): string | null;
}

/**
 * The key for one call: the fields' values with the text between them; a field the call lacks
 * is empty. A key whose fields are all missing is left out (null).
 */
export function renderKey(t: KeyTemplate, source: KeySource): string | null {
  let out = "";
  let found = false;
  for (let i = 0, n = t.kinds.length; i < n; i++) {
    const kind = unchecked(t.kinds[i]);
    if (kind == PART_TEXT) {
      out += unchecked(t.texts[i]);
      continue;
    }
    const v = source.value(kind, unchecked(t.names[i]));
    if (v !== null && v.length > 0) {
      found = true;
      out += v;
    }
  }
  return found ? out : null;
}

/** The JSON list of the keys: ["k1","k2"]. */
export function keyList(keys: string[]): string {
  let out = "[";
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out += ",";
    out += jsonString(unchecked(keys[i]));
  }
  return out + "]";
}

const HEX = "0123456789ABCDEF";

/** Percent-encodes the UTF-8 bytes of `s` except RFC 3986's unreserved characters. */
export function percentEncode(s: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  let out = "";
  let from = 0;
  for (let i = 0, n = bytes.length; i < n; i++) {
    const c = unchecked(bytes[i]);
    const plain =
      (c >= 0x30 && c <= 0x39) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      c == 0x2d ||
      c == 0x2e ||
      c == 0x5f ||
      c == 0x7e;
    if (plain) continue;
    if (i > from) out += String.UTF8.decodeUnsafe(bytes.dataStart + <usize>from, <usize>(i - from));
    out += "%" + HEX.charAt(c >> 4) + HEX.charAt(c & 0xf);
    from = i + 1;
  }
  if (bytes.length > from)
    out += String.UTF8.decodeUnsafe(bytes.dataStart + <usize>from, <usize>(bytes.length - from));
  return out;
}

/** The check's :path. */
export function checkPath(keys: string[]): string {
  return "/ratelimit?ratelimit_keys=" + percentEncode(keyList(keys));
}

export const UPDATE_PATH = "/update_ratelimit_record";

/** The update's body; a count the call did not report is 0. */
export function updateBody(keys: string[], prompt: i64, completion: i64, total: i64): string {
  return (
    '{"ratelimit_keys":' +
    keyList(keys) +
    ',"prompt_tokens":' +
    (prompt > 0 ? prompt : 0).toString() +
    ',"completion_tokens":' +
    (completion > 0 ? completion : 0).toString() +
    ',"total_tokens":' +
    (total > 0 ? total : 0).toString() +
    "}"
  );
}

/** The body of a denial, in the OpenAI error shape that clients' SDKs read (429, tokens). */
export function denialBody(description: string): string {
  const message =
    description.length > 0 ? "Token rate limit exceeded: " + description : "Token rate limit exceeded";
  return (
    '{"error":{"message":' +
    jsonString(message) +
    ',"type":"tokens","param":null,"code":"rate_limit_exceeded"}}'
  );
}

/** What the check answered. */
export const ANSWER_ALLOW: u8 = 0;
export const ANSWER_DENY: u8 = 1;
/** Not a 200 with a JSON object whose `allow` is a boolean: the service failed. */
export const ANSWER_FAILED: u8 = 2;

const ANSWER_SCHEMA = new Schema();
const N_ALLOW = ANSWER_SCHEMA.add("allow", KIND_BOOL);
const N_DESCRIPTION = ANSWER_SCHEMA.add("description", KIND_STRING);
const N_RETRY_AFTER = ANSWER_SCHEMA.add("retry_after_seconds", KIND_INT);

/** Reads a check's answer body, kept for the description and retry-after of a denial. */
export class CheckAnswer {
  private scanner: JsonScanner = new JsonScanner(ANSWER_SCHEMA);
  description: string = "";
  /** Seconds, or -1 when the answer does not say. */
  retryAfter: i64 = -1;

  /** The verdict of a 200 answer's body at ptr (len bytes). */
  read(ptr: usize, len: usize): u8 {
    const s = this.scanner;
    s.reset();
    this.description = "";
    this.retryAfter = -1;
    s.feed(ptr, len);
    if (!s.finish() || s.state(N_ALLOW) != PRESENT) return ANSWER_FAILED;
    if (s.state(N_DESCRIPTION) == PRESENT) this.description = s.string(N_DESCRIPTION);
    if (s.state(N_RETRY_AFTER) == PRESENT) this.retryAfter = <i64>s.number(N_RETRY_AFTER);
    return s.bool(N_ALLOW) ? ANSWER_ALLOW : ANSWER_DENY;
  }
}

/** The `rate_limit` option, validated (config/ratelimit.ts reads it). */
export class BudgetConfig {
  /** The service's Envoy cluster, and the :authority of its calls. */
  cluster: string = "";
  authority: string = "";
  clusterBytes: ArrayBuffer = new ArrayBuffer(0);
  templates: KeyTemplate[] = [];
  timeoutMs: u32 = 200;
  failOpen: bool = true;
  rejectedCode: u32 = 429;

  /** Whether some template needs this kind of value. */
  uses(kind: u8): bool {
    for (let i = 0; i < this.templates.length; i++) if (unchecked(this.templates[i]).uses(kind)) return true;
    return false;
  }

  /** The call's keys: each template rendered, those with no field left out, duplicates once. */
  keys(source: KeySource): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.templates.length; i++) {
      const k = renderKey(unchecked(this.templates[i]), source);
      if (k !== null && !out.includes(k)) out.push(k);
    }
    return out;
  }
}

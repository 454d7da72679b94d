// SPDX-License-Identifier: Apache-2.0
// A straightforward reference for what the plugin must record from a body or an event stream,
// built on V8's JSON.parse (validity) and a small whole-text parser that keeps number literals as
// written (JSON.parse would turn "1e3" into 1000, which the plugin must refuse as a token count).
// The fuzz test compares the plugin against it.

export interface Recorded {
  model?: string;
  prompt?: string;
  completion?: string;
  total?: string;
  cached?: string;
  reasoning?: string;
}

const MAX_DEPTH = 1024;
const MAX_SAFE = 9007199254740991n;

type Raw = { num: string } | string | boolean | null | Raw[] | Map<string, Raw>;

/** A whole-text parse that keeps number lexemes; only called on text JSON.parse accepted. */
function parseRaw(text: string): Raw {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = (): Raw => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const m = new Map<string, Raw>();
      ws();
      if (text[i] === "}") {
        i++;
        return m;
      }
      for (;;) {
        ws();
        const k = value() as string;
        ws();
        i++; // ':'
        m.delete(k); // last occurrence wins, as with JSON.parse
        m.set(k, value());
        ws();
        if (text[i++] === "}") return m;
      }
    }
    if (c === "[") {
      i++;
      const a: Raw[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return a;
      }
      for (;;) {
        a.push(value());
        ws();
        if (text[i++] === "]") return a;
      }
    }
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const s = JSON.parse(text.slice(i, j + 1)) as string;
      i = j + 1;
      return s;
    }
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(
      text.slice(i, i + 400),
    )!;
    i += m[0].length;
    if (m[0] === "true") return true;
    if (m[0] === "false") return false;
    if (m[0] === "null") return null;
    return { num: m[0] };
  };
  return value();
}

function depthOf(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") max = Math.max(max, ++depth);
    else if (c === "}" || c === "]") depth--;
  }
  return max;
}

/** The document, or undefined when the plugin must treat the bytes as not JSON. */
export function parseDocument(bytes: Uint8Array): Raw | undefined {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    if (text.charCodeAt(0) === 0xfeff) return undefined; // a BOM is not JSON white space
    JSON.parse(text);
  } catch {
    return undefined;
  }
  if (depthOf(text) > MAX_DEPTH) return undefined;
  return parseRaw(text);
}

function at(doc: Raw, path: string): Raw | undefined {
  let v: Raw | undefined = doc;
  for (const k of path.split(".")) {
    if (!(v instanceof Map)) return undefined;
    v = v.get(k);
  }
  return v;
}

function count(v: Raw | undefined): string | undefined {
  if (v === undefined || v === null || typeof v !== "object" || v instanceof Map || Array.isArray(v))
    return undefined;
  if (!/^(0|[1-9]\d*)$/.test(v.num) || BigInt(v.num) > MAX_SAFE) return undefined;
  return v.num;
}

function modelOf(v: Raw | undefined): string | undefined {
  if (typeof v !== "string" || v.length === 0 || !v.isWellFormed()) return undefined;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (new TextEncoder().encode(v).length > 256 || /[\u0000-\u001f\u007f]/.test(v)) return undefined;
  return v;
}

const PREFIXES = ["", "response.", "message."];
const FIELDS: Record<string, string[]> = {
  prompt: ["usage.prompt_tokens", "usage.input_tokens"],
  completion: ["usage.completion_tokens", "usage.output_tokens"],
  cached: [
    "usage.prompt_tokens_details.cached_tokens",
    "usage.prompt_cache_hit_tokens",
    "usage.input_tokens_details.cached_tokens",
    "usage.cache_read_input_tokens",
  ],
  reasoning: [
    "usage.completion_tokens_details.reasoning_tokens",
    "usage.output_tokens_details.reasoning_tokens",
  ],
  total: ["usage.total_tokens"],
};
/** Read at the top level only, after every prefixed path above (the plugin's order). */
const TOP_LEVEL_ONLY: Record<string, string[]> = {
  cached: ["usage.num_cached_tokens", "usage.cached_tokens"],
  reasoning: ["usage.output_tokens_details.thinking_tokens"],
};

/** What one valid document reports, in the plugin's order of preference. */
export function reportOf(doc: Raw): Recorded {
  const out: Recorded = {};
  for (const p of PREFIXES) {
    const m = modelOf(at(doc, p + "model"));
    if (m !== undefined) {
      out.model = m;
      break;
    }
  }
  for (const [field, paths] of Object.entries(FIELDS)) {
    for (const p of PREFIXES) {
      const found = paths.map((path) => count(at(doc, p + path))).find((v) => v !== undefined);
      if (found !== undefined) {
        out[field as keyof Recorded] = found;
        break;
      }
    }
    if (out[field as keyof Recorded] !== undefined) continue;
    const found = (TOP_LEVEL_ONLY[field] ?? [])
      .map((path) => count(at(doc, path)))
      .find((v) => v !== undefined);
    if (found !== undefined) out[field as keyof Recorded] = found;
  }
  return out;
}

/** Merges reports the way a stream does: a later report replaces an earlier one. */
export function merge(reports: Recorded[]): Recorded {
  const out: Recorded = {};
  for (const r of reports) Object.assign(out, r);
  if (out.total === undefined && out.prompt !== undefined && out.completion !== undefined) {
    out.total = String(BigInt(out.prompt) + BigInt(out.completion));
  }
  return out;
}

/** The data of each event of a complete text/event-stream body, per the HTML standard. */
export function sseEvents(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a || bytes[i] === 0x0d) {
      lines.push(bytes.subarray(start, i));
      if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) i++;
      start = i + 1;
    }
  }
  const tail = bytes.subarray(start);
  const events: Uint8Array[] = [];
  let data: number[] | null = null;
  const line = (l: Uint8Array, last: boolean) => {
    if (l.length === 0) {
      if (data !== null) events.push(Uint8Array.from(data));
      data = null;
      return;
    }
    const colon = l.indexOf(0x3a);
    const name = new TextDecoder().decode(colon < 0 ? l : l.subarray(0, colon));
    if (name !== "data") return;
    let value = colon < 0 ? new Uint8Array(0) : l.subarray(colon + 1);
    if (value[0] === 0x20) value = value.subarray(1);
    data = data === null ? [...value] : [...data, 0x0a, ...value];
    void last;
  };
  for (const l of lines) line(l, false);
  if (tail.length > 0) line(tail, true);
  // The plugin's one extension: an event left open at the end counts when it is complete JSON.
  if (data !== null) events.push(Uint8Array.from(data));
  return events;
}

const DONE = new TextEncoder().encode("[DONE]");

export function expectedFromStream(bytes: Uint8Array): Recorded {
  const reports: Recorded[] = [];
  for (const data of sseEvents(bytes)) {
    if (data.length === DONE.length && data.every((b, i) => b === DONE[i])) continue;
    const doc = parseDocument(data);
    if (doc !== undefined) reports.push(reportOf(doc));
  }
  return merge(reports);
}

export function expectedFromBody(bytes: Uint8Array): Recorded {
  const doc = parseDocument(bytes);
  return doc === undefined ? {} : merge([reportOf(doc)]);
}

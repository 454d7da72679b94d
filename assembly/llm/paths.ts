// SPDX-License-Identifier: Apache-2.0
// Path shapes: which request paths are LLM calls, which API each one is, and the model some APIs
// carry in the path (Gemini, Vertex, Bedrock). A shape is matched against the end of the path
// (without its query string), never against the host, so it works through any gateway or proxy.
//
// A shape is literal text with optional segments: `*` matches one or more characters other than
// `/`, and `{model}` does the same and captures the model (URL-decoded). A leading `GET ` makes
// the shape match GET requests instead of POST. Examples: `/chat/completions`,
// `/models/{model}:streamGenerateContent`, `/model/{model}/converse-stream`, `GET /responses/*`.
// Which API a shape names, and that API's rules, come from the table in apis.ts.
// Pure: no host imports.

import { ApiRules, DEFAULT_API, apiOf, STREAM_FROM_PATH, STREAM_FROM_QUERY, API_DEFAULT } from "./apis";

const CAPTURE_NONE: i32 = -1;

/** One compiled shape: literals and wildcards, matched from the end of the path. */
export class PathShape {
  /** Pieces in order; a null piece is a wildcard. */
  pieces: Array<string | null> = [];
  /** Index of the `{model}` piece, or -1. */
  modelPiece: i32 = CAPTURE_NONE;
  get: bool = false;
  /** The API the shape names (apis.ts), and its id. */
  rules: ApiRules = DEFAULT_API;
  api: u8 = API_DEFAULT;
  /** The API has its own response fields (formats.ts NATIVE_FORMAT). */
  native: bool = false;
}

export function compileShape(shape: string): PathShape {
  const s = new PathShape();
  let text = shape;
  if (text.startsWith("GET ")) {
    s.get = true;
    text = text.substring(4);
  } else if (text.startsWith("POST ")) {
    text = text.substring(5);
  }
  // Literal runs are cut out whole (substring), not built a character at a time: compiling the
  // default shapes then leaves a few dozen strings of garbage, not thousands.
  let start = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c == 0x2a /* * */ || (c == 0x7b /* { */ && text.indexOf("}", i) > i)) {
      if (i > start) s.pieces.push(text.substring(start, i));
      if (c == 0x7b) {
        const close = text.indexOf("}", i);
        if (text.substring(i + 1, close) == "model") s.modelPiece = s.pieces.length;
        i = close + 1;
      } else {
        i++;
      }
      s.pieces.push(null);
      start = i;
      continue;
    }
    i++;
  }
  if (n > start) s.pieces.push(text.substring(start, n));
  const rules = apiOf(s.get, text);
  s.rules = rules;
  s.api = rules.id;
  s.native = rules.nativeOn(text);
  return s;
}

/** What the path says of the call's stream: 1 streamed, 0 not, -1 the path does not say. */
export function streamOfPath(rules: ApiRules, path: string): i8 {
  if (rules.stream == STREAM_FROM_PATH) return rules.pathStreams ? 1 : 0;
  if (rules.stream == STREAM_FROM_QUERY) return queryHas(path, rules.streamQuery) ? 1 : 0;
  return -1;
}

/** The path up to its query string. */
export function pathEnd(path: string): i32 {
  const q = path.indexOf("?");
  return q >= 0 ? q : path.length;
}

/** Where the last match captured its model: [modelStart, modelEnd) of the path, or -1. */
export let modelStart: i32 = -1;
export let modelEnd: i32 = -1;

/**
 * Whether `path` (up to `end`) ends with the shape. Wildcards are matched from the right, each
 * taking the whole run of characters back to the previous `/`.
 */
export function matchShape(s: PathShape, path: string, end: i32): bool {
  let at = end;
  modelStart = -1;
  modelEnd = -1;
  const pieces = s.pieces;
  for (let i = pieces.length - 1; i >= 0; i--) {
    const piece = unchecked(pieces[i]);
    if (piece === null) {
      let from = at;
      while (from > 0 && path.charCodeAt(from - 1) != 0x2f) from--;
      if (from == at) return false;
      if (i == s.modelPiece) {
        modelStart = from;
        modelEnd = at;
      }
      at = from;
    } else {
      const len = piece.length;
      if (len > at) return false;
      for (let k = 0; k < len; k++) {
        if (path.charCodeAt(at - len + k) != piece.charCodeAt(k)) return false;
      }
      at -= len;
    }
  }
  return true;
}

/** Whether the query string of `path` has `name=value` among its parameters. */
export function queryHas(path: string, param: string): bool {
  const q = path.indexOf("?");
  if (q < 0) return false;
  let i = q + 1;
  const n = path.length;
  while (i < n) {
    let amp = path.indexOf("&", i);
    if (amp < 0) amp = n;
    if (amp - i == param.length && path.substring(i, amp) == param) return true;
    i = amp + 1;
  }
  return false;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/**
 * The percent-decoded text of path[start, end) (Bedrock model ids arrive as `...-v1%3A0`). A
 * malformed escape or bytes that are not UTF-8 leave the text as it came.
 */
export function percentDecode(path: string, start: i32, end: i32): string {
  const raw = path.substring(start, end);
  if (raw.indexOf("%") < 0) return raw;
  const utf8 = String.UTF8.encode(raw);
  const n = utf8.byteLength;
  const out = new Uint8Array(n);
  const src = changetype<usize>(utf8);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const c = <i32>load<u8>(src + <usize>i);
    if (c == 0x25) {
      if (i + 2 >= n) return raw;
      const h = hexDigit(<i32>load<u8>(src + <usize>(i + 1)));
      const l = hexDigit(<i32>load<u8>(src + <usize>(i + 2)));
      if (h < 0 || l < 0) return raw;
      out[o++] = <u8>((h << 4) | l);
      i += 2;
    } else {
      out[o++] = <u8>c;
    }
  }
  if (!validUtf8(out.dataStart, o)) return raw;
  return String.UTF8.decodeUnsafe(out.dataStart, <usize>o);
}

/** Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF); no control bytes. */
function validUtf8(p: usize, n: i32): bool {
  let i = 0;
  while (i < n) {
    const c = <u32>load<u8>(p + <usize>i);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      i++;
      continue;
    }
    let need = 0;
    let lo: u32 = 0x80;
    let hi: u32 = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) {
      need = 2;
      lo = 0xa0;
    } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) need = 2;
    else if (c == 0xed) {
      need = 2;
      hi = 0x9f;
    } else if (c == 0xf0) {
      need = 3;
      lo = 0x90;
    } else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) {
      need = 3;
      hi = 0x8f;
    } else return false;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return false;
      const d = <u32>load<u8>(p + <usize>(i + k));
      if (k == 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return false;
    }
    i += need + 1;
  }
  return true;
}

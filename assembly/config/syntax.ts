// SPDX-License-Identifier: Apache-2.0
// Where a configuration that is not valid JSON goes wrong, and what was expected there: "line 3,
// column 14 (byte 52): expected ',' or '}' but found '\"'". Run only after the plugin's scanner
// (llm/json.ts) has refused the text, so it favours a clear message over speed. Strict RFC 8259,
// as the scanner is (UTF-8 checked, no control character in a string, nesting capped at the
// scanner's depth). Pure: no host imports.

import { MAX_DEPTH } from "../llm/json";

class Cursor {
  bytes: Uint8Array;
  at: i32 = 0;
  /** The first problem found: what was expected there. */
  expected: string = "";
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  get end(): bool {
    return this.at >= this.bytes.length;
  }

  peek(): i32 {
    return this.at < this.bytes.length ? <i32>unchecked(this.bytes[this.at]) : -1;
  }

  fail(expected: string): bool {
    this.expected = expected;
    return false;
  }

  space(): void {
    while (!this.end) {
      const c = this.peek();
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) return;
      this.at++;
    }
  }

  literal(word: string): bool {
    for (let i = 0; i < word.length; i++) {
      if (this.peek() != word.charCodeAt(i)) return this.fail("'" + word + "'");
      this.at++;
    }
    return true;
  }

  /**
   * The whole document, without recursion (a deeply nested text must not exhaust the stack):
   * `open` holds the kind of each open container, true for an object.
   */
  document(): bool {
    const open: bool[] = [];
    let wantValue = true;
    while (true) {
      if (wantValue) {
        this.space();
        const c = this.peek();
        if (c == 0x7b || c == 0x5b) {
          if (open.length >= MAX_DEPTH)
            return this.fail("nesting of at most " + MAX_DEPTH.toString() + " levels");
          this.at++;
          this.space();
          const object = c == 0x7b;
          if (this.peek() == (object ? 0x7d : 0x5d)) {
            this.at++;
            wantValue = false;
            continue;
          }
          open.push(object);
          if (object && !this.key()) return false;
          continue;
        }
        if (!this.scalar()) return false;
        wantValue = false;
        continue;
      }
      // After a value: the end, or ',' or the closing bracket of the open container.
      if (open.length == 0) return true;
      this.space();
      const object = open[open.length - 1];
      const c = this.peek();
      if (c == (object ? 0x7d : 0x5d)) {
        this.at++;
        open.pop();
        continue;
      }
      if (c != 0x2c) return this.fail(object ? "',' or '}'" : "',' or ']'");
      this.at++;
      if (object && !this.key()) return false;
      wantValue = true;
    }
    return false;
  }

  /** A member name and its ':'; a value follows. */
  key(): bool {
    this.space();
    if (this.peek() != 0x22) return this.fail("a member name in double quotes");
    if (!this.string()) return false;
    this.space();
    if (this.peek() != 0x3a) return this.fail("':' after the member name");
    this.at++;
    return true;
  }

  scalar(): bool {
    const c = this.peek();
    if (c == 0x22) return this.string();
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (c == 0x74) return this.literal("true");
    if (c == 0x66) return this.literal("false");
    if (c == 0x6e) return this.literal("null");
    return this.fail("a value (object, array, string, number, true, false or null)");
  }

  digits(): bool {
    const c = this.peek();
    if (c < 0x30 || c > 0x39) return this.fail("a digit");
    while (this.peek() >= 0x30 && this.peek() <= 0x39) this.at++;
    return true;
  }

  number(): bool {
    if (this.peek() == 0x2d) this.at++;
    if (this.peek() == 0x30) this.at++;
    else if (!this.digits()) return false;
    if (this.peek() == 0x2e) {
      this.at++;
      if (!this.digits()) return false;
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.at++;
      const s = this.peek();
      if (s == 0x2b || s == 0x2d) this.at++;
      if (!this.digits()) return false;
    }
    return true;
  }

  string(): bool {
    this.at++; // '"'
    while (true) {
      const c = this.peek();
      if (c < 0) return this.fail("the closing '\"' of a string");
      if (c == 0x22) {
        this.at++;
        return true;
      }
      if (c < 0x20) return this.fail("no control character in a string (escape it, e.g. \\n)");
      if (c == 0x5c) {
        this.at++;
        const e = this.peek();
        if (e == 0x75) {
          this.at++;
          for (let i = 0; i < 4; i++) {
            const h = this.peek();
            const hex = (h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66);
            if (!hex) return this.fail("four hexadecimal digits after \\u");
            this.at++;
          }
          continue;
        }
        if (
          e == 0x22 ||
          e == 0x5c ||
          e == 0x2f ||
          e == 0x62 ||
          e == 0x66 ||
          e == 0x6e ||
          e == 0x72 ||
          e == 0x74
        ) {
          this.at++;
          continue;
        }
        return this.fail('an escape: one of \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX');
      }
      if (c < 0x80) {
        this.at++;
        continue;
      }
      if (!this.utf8()) return this.fail("valid UTF-8");
    }
    return false;
  }

  /** One multi-byte UTF-8 sequence (RFC 3629: no overlong form, no surrogate, at most U+10FFFF). */
  utf8(): bool {
    const c = this.peek();
    let n = 0;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else return false;
    const start = this.at;
    this.at++;
    for (let i = 0; i < n; i++) {
      const b = this.peek();
      if (b < (i == 0 ? lo : 0x80) || b > (i == 0 ? hi : 0xbf)) {
        this.at = start;
        return false;
      }
      this.at++;
    }
    return true;
  }
}

/** A character as a message shows it: 'x', or a byte in hex, or "the end". */
function shown(c: i32): string {
  if (c < 0) return "the end of the configuration";
  if (c >= 0x21 && c < 0x7f) return "'" + String.fromCharCode(c) + "'";
  if (c == 0x20) return "a space";
  return "byte 0x" + (c < 0x10 ? "0" : "") + c.toString(16);
}

/**
 * Where the JSON text goes wrong and what was expected there, or null when it is valid JSON.
 * Line and column count from 1; the column counts bytes.
 */
export function syntaxError(bytes: Uint8Array): string | null {
  const cur = new Cursor(bytes);
  let ok = cur.document();
  if (ok) {
    cur.space();
    if (!cur.end) ok = cur.fail("nothing after the top-level value");
  }
  if (ok) return null;
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < cur.at && i < bytes.length; i++) {
    if (unchecked(bytes[i]) == 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return (
    "line " +
    line.toString() +
    ", column " +
    (cur.at - lineStart + 1).toString() +
    " (byte " +
    cur.at.toString() +
    "): expected " +
    cur.expected +
    " but found " +
    shown(cur.peek())
  );
}

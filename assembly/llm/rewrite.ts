// SPDX-License-Identifier: Apache-2.0
// Adding members to a request body as it passes, without holding a byte of it.
//
// Whether the body names a `model` (or `stream`) is only known once its top-level object is
// complete: the key may come last. So members are inserted just before the top-level closing
// brace, in whichever chunk that brace arrives (a chunk of one byte, or one followed by white
// space in later chunks): by then the scanner has seen every top-level key. Inserting after the
// opening brace would need the answer before the bytes that hold it. Pure: no host imports.

import { JsonScanner } from "./json";

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

/**
 * Feeds a body's bytes to its scanner and finds the top-level closing brace: which byte of
 * which `feed` call it is, and whether the object had members before it (the inserted text then
 * starts with a comma).
 */
export class ClosingBrace {
  /** The last byte other than white space fed before the current call; 0 when none. */
  private lastByte: u32 = 0;
  /** Whether the object had no members: the byte before its closing brace was its opening one. */
  empty: bool = false;
  found: bool = false;

  reset(): void {
    this.lastByte = 0;
    this.empty = false;
    this.found = false;
  }

  /**
   * Feeds `len` bytes at `ptr`. Returns the offset among them of the brace that closes the
   * top-level object, or -1 (not in these bytes, already passed, or the body is not an object).
   */
  feed(scanner: JsonScanner, ptr: usize, len: usize): isize {
    if (len == 0) return -1;
    const open = !this.found && scanner.closedAt < 0 && !scanner.failed;
    scanner.feed(ptr, len);
    if (!open) return -1;
    const at = scanner.closedAt;
    if (at < 0 || scanner.failed) {
      this.remember(ptr, len);
      return -1;
    }
    this.found = true;
    if (load<u8>(ptr + <usize>at) != 0x7d) return -1; // a top-level array: nothing to add to
    let before = this.lastByte;
    for (let i = at - 1; i >= 0; i--) {
      const c = <u32>load<u8>(ptr + <usize>i);
      if (!isSpace(c)) {
        before = c;
        break;
      }
    }
    this.empty = before == 0x7b;
    return at;
  }

  private remember(ptr: usize, len: usize): void {
    for (let i = <isize>len - 1; i >= 0; i--) {
      const c = <u32>load<u8>(ptr + <usize>i);
      if (!isSpace(c)) {
        this.lastByte = c;
        return;
      }
    }
  }
}

/** A JSON string literal for `s`, with the escapes RFC 8259 requires. */
export function jsonString(s: string): string {
  let out = '"';
  let from = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(from, i);
    from = i + 1;
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + (c < 0x10 ? "0" : "1") + "0123456789abcdef".charAt(c & 0xf);
  }
  return out + s.substring(from) + '"';
}

/**
 * The members to insert before the closing brace, with the separating comma when the object
 * already has members: `,"model":"qwen-turbo","stream":true`. Empty when there is nothing to add.
 * `model` is a JSON string literal already (`jsonString`, done once per configuration).
 */
export function members(model: string | null, stream: i8, extra: string, empty: bool): string {
  // Runs on every provider call: each member is joined once, never onto an empty string.
  let out = model !== null ? ',"model":' + model : "";
  if (stream >= 0) out = joined(out, stream > 0 ? ',"stream":true' : ',"stream":false');
  out = joined(out, extra);
  if (empty && out.length > 0) out = out.substring(1);
  return out;
}

function joined(a: string, b: string): string {
  return b.length == 0 ? a : a.length == 0 ? b : a + b;
}

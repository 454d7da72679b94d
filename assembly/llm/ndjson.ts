// SPDX-License-Identifier: Apache-2.0
// An incremental reader of newline-delimited JSON (`application/x-ndjson`, Ollama's native
// streaming): every non-blank line is one JSON document, fed straight into the JsonScanner as its
// bytes pass. A line ends with LF (a CR before it is white space to the scanner); at the end of
// the body, a last line without its LF still counts when it is a complete document. Nothing of
// the stream is kept. Pure: no host imports.

import { MessageReader } from "./reader";

export class NdjsonReader extends MessageReader {
  /** The current line has a byte other than white space. */
  private content: bool = false;

  reset(): void {
    super.reset();
    this.content = false;
  }

  feed(ptr: usize, len: usize): void {
    const end = ptr + len;
    let p = ptr;
    while (p < end) {
      // The run up to the next LF goes to the scanner in one call.
      let q = p;
      let content = this.content;
      while (q < end) {
        const c = load<u8>(q);
        if (c == 0x0a) break;
        if (!content && c != 0x20 && c != 0x0d && c != 0x09) content = true;
        q++;
      }
      if (content) this.scanner.feed(p, q - p);
      this.content = content;
      if (q < end) {
        this.endLine();
        q++;
      }
      p = q;
    }
  }

  finish(ended: bool = true): void {
    if (this.content) this.endLine(!ended);
  }

  private endLine(cut: bool = false): void {
    if (this.content) this.dispatch(true, cut);
    this.content = false;
  }
}

// SPDX-License-Identifier: Apache-2.0
// What the readers of streamed bodies share (server-sent events, newline-delimited JSON, a JSON
// array read element by element, Amazon's binary event stream): each message's JSON is fed
// straight into one JsonScanner as its bytes pass and merged into one Usage when the message is
// complete. A stream holds one reader of this type, whatever the framing.
// Pure: no host imports.

import { JsonScanner } from "./json";
import { Usage } from "./usage";

export class MessageReader {
  readonly scanner: JsonScanner;
  readonly usage: Usage;
  /** Messages whose JSON was valid. */
  events: i32 = 0;
  /** Messages that could not be read (not JSON, a bad checksum, cut short), or a broken framing. */
  invalidEvents: i32 = 0;
  /** The framing this reader reads (framing.ts FRAMING_*), set by newReader. */
  framing: u8 = 0;
  /**
   * Payloads wrap the JSON to read in `{"bytes":"<base64>"}` (an API's rule, apis.ts); set after
   * reset, for the stream. Read by the framing that carries such payloads (eventstream.ts).
   */
  base64Payloads: bool = false;

  constructor(scanner: JsonScanner, usage: Usage) {
    this.scanner = scanner;
    this.usage = usage;
  }

  reset(): void {
    this.scanner.reset();
    this.usage.reset();
    this.events = 0;
    this.invalidEvents = 0;
    this.base64Payloads = false;
  }

  feed(ptr: usize, len: usize): void {}

  /**
   * The body is over. `ended`: it ended normally, and a message still open is read if complete,
   * else counted as unreadable. Otherwise the stream was reset: a message the reset cut short is
   * dropped, neither read nor counted (as a JSON body cut by a reset is), in every framing.
   */
  finish(ended: bool = true): void {}

  /**
   * Ends one message; its values count only when `ok` and its JSON is one complete document. A
   * message cut by a reset (`cut`) that is not complete is dropped uncounted.
   */
  protected dispatch(ok: bool, cut: bool = false): void {
    const s = this.scanner;
    if (ok && s.finish()) {
      this.events++;
      this.usage.add(s);
    } else if (!cut) {
      this.invalidEvents++;
    }
    s.reset();
  }
}

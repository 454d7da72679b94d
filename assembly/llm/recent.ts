// SPDX-License-Identifier: Apache-2.0
// A bounded memory of recent ids: whether an id was seen before, forgetting the oldest first.
// Pure: no host imports.

export class RecentIds {
  private ids: Set<string> = new Set<string>();
  private order: Array<string>;
  private next: i32 = 0;

  constructor(capacity: i32) {
    this.order = new Array<string>(capacity);
  }

  /** Whether the id was seen before; remembers it otherwise. */
  seenBefore(id: string): bool {
    if (this.ids.has(id)) return true;
    const old = unchecked(this.order[this.next]);
    if (old !== null && old.length > 0) this.ids.delete(old);
    unchecked((this.order[this.next] = id));
    this.next = (this.next + 1) % this.order.length;
    this.ids.add(id);
    return false;
  }
}

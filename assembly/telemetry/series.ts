// SPDX-License-Identifier: Apache-2.0
// The metric ids of each series (one set of dimension values), found from the values alone, so
// that a call repeating a series builds no stat name and allocates nothing. A series is keyed by
// its tag values (after tagValue) encoded as UTF-8, each preceded by its length; keys live in
// an arena of fixed-size chunks, the ids every series uses in fixed-size blocks and the rarer ones
// in a shared hash table, so the table costs well under 200 bytes per series and never holds a
// stat name. Nothing that grows with the series count is one block of memory that must move to
// grow: a key arena grown in place by realloc needed, at each step, one free span larger than all
// keys so far, and left the last copy behind as a hole that only smaller blocks could use (with
// 1,000 series the VM's memory doubled to 512 KiB while a third of it was free).
// Pure: no host imports.

/** Ids per series: the metric slots of a call (see SLOT_* in plugin/root.ts). */
export const SERIES_SLOTS: i32 = 27;
/** Slots below this are kept in blocks, one id per series each; the others in `sparse`. */
export const FIXED_SLOTS: i32 = 8;
/** Series per block of ids. */
const BLOCK: i32 = 32;
const BLOCK_BYTES: usize = <usize>(BLOCK * FIXED_SLOTS) * 4;
/** Bytes per arena chunk; a key longer than this gets a chunk of its own size. */
const ARENA_CHUNK: usize = 2048;
const KEY_START: usize = 512;

export class SeriesTable {
  /** The key being built by begin/part. */
  private key: usize = 0;
  private keyCapacity: usize = 0;
  private keyLength: usize = 0;

  /** Chunks of key bytes, never moved: a series' key is at an address that stays valid. */
  private chunks: Array<usize> = [];
  /** Where the next key goes in the last chunk, and where that chunk ends. */
  private arenaNext: usize = 0;
  private arenaEnd: usize = 0;
  /** The address of each series' key. */
  private addresses: Array<u32> = [];
  private lengths: Array<u32> = [];
  private hashes: Array<u32> = [];
  /** Blocks of BLOCK * FIXED_SLOTS ids, -1 where no metric was defined yet. */
  private blocks: Array<usize> = [];
  /** Open addressing: series index + 1, 0 for an empty slot. */
  private slots: StaticArray<i32> = new StaticArray<i32>(64);
  /** Ids of slots from FIXED_SLOTS on, by (series * SERIES_SLOTS + slot + 1) << 32 | id. */
  private sparse: StaticArray<u64> = new StaticArray<u64>(64);
  private sparseCount: i32 = 0;

  constructor() {
    // Room for the first series, taken with the VM rather than on its first call.
    this.key = heap.alloc(KEY_START);
    this.keyCapacity = KEY_START;
    this.newChunk(ARENA_CHUNK);
    this.blocks.push(newBlock());
  }

  get size(): i32 {
    return this.addresses.length;
  }

  /** Forgets every series (a new configuration may give series other dimensions). */
  clear(): void {
    // The first chunk is kept for the next series, the others given back.
    for (let i = 1; i < this.chunks.length; i++) heap.free(unchecked(this.chunks[i]));
    const first = unchecked(this.chunks[0]);
    this.chunks.length = 1;
    this.arenaNext = first;
    this.arenaEnd = first + ARENA_CHUNK;
    this.addresses.length = 0;
    this.lengths.length = 0;
    this.hashes.length = 0;
    // Blocks are kept for the next series.
    for (let i = 0; i < this.blocks.length; i++) memory.fill(unchecked(this.blocks[i]), 0xff, BLOCK_BYTES);
    this.slots = new StaticArray<i32>(64);
    this.sparse = new StaticArray<u64>(64);
    this.sparseCount = 0;
  }

  /** Starts a key. */
  begin(): void {
    this.keyLength = 0;
  }

  /** Appends one dimension value to the key. */
  part(value: string): void {
    const units = value.length;
    const need = this.keyLength + 4 + <usize>units * 3;
    if (need > this.keyCapacity) {
      const capacity = need * 2;
      this.key = heap.realloc(this.key, capacity);
      this.keyCapacity = capacity;
    }
    const at = this.key + this.keyLength;
    const n = String.UTF8.encodeUnsafe(changetype<usize>(value), units, at + 4);
    store<u32>(at, <u32>n);
    this.keyLength += 4 + n;
  }

  /** The index of the series of the key built, or -1. */
  find(): i32 {
    const h = hashOf(this.key, this.keyLength);
    const mask = this.slots.length - 1;
    let i = (<i32>h) & mask;
    while (true) {
      const s = unchecked(this.slots[i]) - 1;
      if (s < 0) return -1;
      if (
        unchecked(this.hashes[s]) == h &&
        <usize>unchecked(this.lengths[s]) == this.keyLength &&
        memory.compare(<usize>unchecked(this.addresses[s]), this.key, this.keyLength) == 0
      ) {
        return s;
      }
      i = (i + 1) & mask;
    }
  }

  /** Adds the key built as a new series (its ids undefined); returns its index. */
  add(): i32 {
    const n = this.keyLength;
    if (this.arenaNext + n > this.arenaEnd) this.newChunk(n > ARENA_CHUNK ? n : ARENA_CHUNK);
    const at = this.arenaNext;
    memory.copy(at, this.key, n);
    const s = this.addresses.length;
    this.addresses.push(<u32>at);
    this.lengths.push(<u32>n);
    this.hashes.push(hashOf(this.key, n));
    this.arenaNext = at + n;
    if (s / BLOCK >= this.blocks.length) this.blocks.push(newBlock());
    if ((s + 1) * 2 > this.slots.length) this.grow();
    else this.place(s);
    return s;
  }

  /** The id in a slot of a series, or -1. */
  id(series: i32, slot: i32): i64 {
    if (slot < FIXED_SLOTS) return <i64>load<i32>(this.idAt(series, slot));
    const key = <u32>(series * SERIES_SLOTS + slot + 1);
    const mask = this.sparse.length - 1;
    let i = (<i32>(key * 0x9e3779b1)) & mask;
    while (true) {
      const e = unchecked(this.sparse[i]);
      if (e == 0) return -1;
      if (<u32>(e >>> 32) == key) return <i64>(<u32>e);
      i = (i + 1) & mask;
    }
  }

  setId(series: i32, slot: i32, id: u32): void {
    if (slot < FIXED_SLOTS) {
      store<i32>(this.idAt(series, slot), <i32>id);
      return;
    }
    if ((this.sparseCount + 1) * 2 > this.sparse.length) {
      const old = this.sparse;
      this.sparse = new StaticArray<u64>(old.length * 2);
      for (let i = 0, n = old.length; i < n; i++) {
        const e = unchecked(old[i]);
        if (e != 0) this.putSparse(e);
      }
    }
    this.putSparse(((<u64>(series * SERIES_SLOTS + slot + 1)) << 32) | (<u64>id));
    this.sparseCount++;
  }

  /** Starts a chunk of `size` bytes for the keys that follow. */
  private newChunk(size: usize): void {
    const chunk = heap.alloc(size);
    this.chunks.push(chunk);
    this.arenaNext = chunk;
    this.arenaEnd = chunk + size;
  }

  /** Inserts an entry whose key is not in the table yet. */
  private putSparse(e: u64): void {
    const mask = this.sparse.length - 1;
    let i = (<i32>(<u32>(e >>> 32) * 0x9e3779b1)) & mask;
    while (unchecked(this.sparse[i]) != 0) i = (i + 1) & mask;
    unchecked((this.sparse[i] = e));
  }

  // @ts-ignore: decorator
  @inline
  private idAt(series: i32, slot: i32): usize {
    const block = unchecked(this.blocks[series / BLOCK]);
    return block + ((<usize>((series % BLOCK) * FIXED_SLOTS + slot)) << 2);
  }

  private place(s: i32): void {
    const mask = this.slots.length - 1;
    let i = (<i32>unchecked(this.hashes[s])) & mask;
    while (unchecked(this.slots[i]) != 0) i = (i + 1) & mask;
    unchecked((this.slots[i] = s + 1));
  }

  private grow(): void {
    this.slots = new StaticArray<i32>(this.slots.length * 2);
    for (let s = 0, n = this.addresses.length; s < n; s++) this.place(s);
  }
}

/** A block of ids, all -1. */
function newBlock(): usize {
  const block = heap.alloc(BLOCK_BYTES);
  memory.fill(block, 0xff, BLOCK_BYTES);
  return block;
}

/** FNV-1a. */
function hashOf(ptr: usize, len: usize): u32 {
  let h: u32 = 0x811c9dc5;
  for (let i: usize = 0; i < len; i++) {
    h ^= <u32>load<u8>(ptr + i);
    h *= 0x01000193;
  }
  return h;
}

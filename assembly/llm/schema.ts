// SPDX-License-Identifier: Apache-2.0
// Which keys of a JSON document the scanner keeps: a small tree of object keys from the top-level
// object down, each leaf typed. A key written `name[]` holds an array of objects whose members
// are matched below it; each integer below it is summed over the array's elements (Vertex AI's
// `predictions[].embeddings.statistics.token_count`). Pure: no host imports.

export const KIND_OBJECT: u8 = 0;
export const KIND_STRING: u8 = 1;
export const KIND_INT: u8 = 2;
export const KIND_BOOL: u8 = 3;
/** An array of objects (`name[]` in a path); only objects and integers may be below it. */
export const KIND_ARRAY: u8 = 4;

/** Longest key the scanner compares; a longer key can match nothing in a schema. */
export const MAX_KEY_BYTES: i32 = 32;
/** Longest string value kept; a longer one is recorded as invalid, never truncated. */
export const MAX_STRING_BYTES: i32 = 256;

/**
 * What the schemas built once per VM share, since they hold the VM's memory for its lifetime:
 * the one list of a node with nothing below it (most nodes are leaves), and each key's bytes
 * (the same keys recur under `usage`, `response.usage`, `message.usage` and in every format).
 */
const NOTHING_BELOW: Array<i32> = [];
const KEYS: Array<ArrayBuffer> = [];

/** The one copy of the key `text`. */
function internKey(text: string): ArrayBuffer {
  const key = String.UTF8.encode(text);
  const len = key.byteLength;
  for (let i = 0, n = KEYS.length; i < n; i++) {
    const k = unchecked(KEYS[i]);
    if (k.byteLength == len && memory.compare(changetype<usize>(k), changetype<usize>(key), len) == 0) {
      return k;
    }
  }
  KEYS.push(key);
  return key;
}

/**
 * Node 0 is the top-level object. Every other node is a key below its parent; `add` returns the
 * node id of a leaf, which is also its slot in a scanner's results.
 */
export class Schema {
  parents: Array<i32> = [-1];
  kinds: Array<u8> = [KIND_OBJECT];
  keys: Array<ArrayBuffer> = [new ArrayBuffer(0)];
  /** Offset of a string leaf's region in a scanner's string storage, -1 for other kinds. */
  stringOffsets: Array<i32> = [-1];
  /** Children as linked lists, so a key is compared only with its siblings. */
  firstChild: Array<i32> = [-1];
  nextSibling: Array<i32> = [-1];
  /**
   * Every node below each node, so that a repeated key can forget its members quickly (read
   * only: a leaf's list is the shared NOTHING_BELOW).
   */
  descendants: Array<Array<i32>> = [[]];
  stringBytes: i32 = 0;
  /** The schema has a KIND_ARRAY node (its scanners then keep sums). */
  hasArrays: bool = false;

  get size(): i32 {
    return this.parents.length;
  }

  /** Adds the dotted path (object keys from the top level) with the leaf's kind. */
  add(path: string, kind: u8): i32 {
    let node = 0;
    let from = 0;
    let last = false;
    let inArray = false;
    while (!last) {
      const dot = path.indexOf(".", from);
      last = dot < 0;
      let name = path.substring(from, last ? path.length : dot);
      const array = name.endsWith("[]");
      if (array) name = name.substring(0, name.length - 2);
      const key = internKey(name);
      from = dot + 1;
      assert(key.byteLength <= MAX_KEY_BYTES, "schema key too long");
      assert(!(array && last), "an array of objects cannot be a leaf");
      let child = this.find(node, changetype<usize>(key), key.byteLength);
      if (child < 0) {
        child = this.parents.length;
        const childKind = array ? KIND_ARRAY : last ? kind : KIND_OBJECT;
        this.parents.push(node);
        this.kinds.push(childKind);
        this.keys.push(key);
        this.firstChild.push(-1);
        this.nextSibling.push(this.firstChild[node]);
        this.firstChild[node] = child;
        this.descendants.push(NOTHING_BELOW);
        for (let a = node; a >= 0; a = this.parents[a]) {
          let below = this.descendants[a];
          if (below === NOTHING_BELOW) {
            below = [];
            this.descendants[a] = below;
          }
          below.push(child);
        }
        if (childKind == KIND_STRING) {
          this.stringOffsets.push(this.stringBytes);
          this.stringBytes += MAX_STRING_BYTES;
        } else {
          this.stringOffsets.push(-1);
        }
        if (array) this.hasArrays = true;
      }
      if (array) inArray = true;
      node = child;
    }
    assert(!inArray || kind == KIND_INT, "only integers are summed over an array");
    return node;
  }

  /** The child of `parent` named by the bytes at ptr, or -1. */
  find(parent: i32, ptr: usize, len: i32): i32 {
    let i = unchecked(this.firstChild[parent]);
    while (i >= 0) {
      const key = unchecked(this.keys[i]);
      if (key.byteLength == len && memory.compare(changetype<usize>(key), ptr, len) == 0) {
        return i;
      }
      i = unchecked(this.nextSibling[i]);
    }
    return -1;
  }
}

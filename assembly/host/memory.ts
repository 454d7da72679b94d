// SPDX-License-Identifier: Apache-2.0
// The allocator the host calls to hand the plugin bytes (bodies, headers, properties,
// configuration). It returns unmanaged memory: the plugin reads it in place and frees it with
// `release`, so a body chunk is never copied into a garbage-collected object.

/** Exported to the host as `malloc`. */
export function malloc(size: usize): usize {
  return heap.alloc(size);
}

/** Frees memory the host allocated through `malloc`. */
export function release(ptr: usize): void {
  if (ptr != 0) heap.free(ptr);
}

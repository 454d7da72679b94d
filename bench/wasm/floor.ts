// SPDX-License-Identifier: Apache-2.0
// The floor: a proxy-wasm module that copies every body chunk into its memory with
// proxy_get_buffer_bytes, frees it, and does nothing else. Any filter that reads bodies pays this.

import { proxy_get_buffer_bytes } from "@solo-io/proxy-runtime/assembly/imports";

const OUT: usize = memory.data(16, 8);

export function malloc(size: usize): usize {
  return heap.alloc(size);
}

function read(type: i32, size: u32): void {
  if (size == 0) return;
  if (proxy_get_buffer_bytes(type, 0, size, OUT, OUT + 8) == 0) heap.free(load<usize>(OUT));
}

export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_context_create(id: u32, root: u32): void {}
export function proxy_on_vm_start(id: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_configure(id: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_request_headers(id: u32, n: u32, eos: u32): u32 {
  return 0;
}
export function proxy_on_request_body(id: u32, size: u32, eos: u32): u32 {
  read(0, size);
  return 0;
}
export function proxy_on_response_headers(id: u32, n: u32, eos: u32): u32 {
  return 0;
}
export function proxy_on_response_body(id: u32, size: u32, eos: u32): u32 {
  read(1, size);
  return 0;
}
export function proxy_on_log(id: u32): void {}
export function proxy_on_done(id: u32): u32 {
  return 1;
}
export function proxy_on_delete(id: u32): void {}

// SPDX-License-Identifier: Apache-2.0
// asm-llm-proxy: the module's exports and nothing else. The ABI callbacks live in plugin/, the
// allocator the host calls in host/memory.ts.

import "./host/abort";
export { malloc } from "./host/memory";
export * from "./plugin/exports";

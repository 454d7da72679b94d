// SPDX-License-Identifier: Apache-2.0
// Allocation counting for `npm run bench`: adds counters to the debug build (which keeps its
// function names and is not inlined, so every allocation passes through the runtime's own
// functions) and exports them. Allocation counts do not depend on optimisation, so they hold for
// the release build; times are never taken from this module.
//   bench_objects:      managed objects (__new: strings, arrays, class instances)
//   bench_blocks:       every allocator block (managed objects, host buffers through malloc,
//                       the plugin's own heap.alloc/realloc)
//   bench_collections:  garbage collections (__collect)

import binaryen from "binaryen";

const COUNTERS: Array<[string, string]> = [
  ["bench_objects", "~lib/rt/tcms/__new"],
  ["bench_blocks", "~lib/rt/tlsf/allocateBlock"],
  ["bench_collections", "~lib/rt/tcms/__collect"],
];

export function countingModule(debugWasm: Uint8Array): Uint8Array {
  const m = binaryen.readBinary(debugWasm);
  m.setFeatures(binaryen.Features.All);
  for (const [global, fn] of COUNTERS) {
    const f = m.getFunction(fn);
    if (!f) throw new Error(`the debug build has no function ${fn}`);
    const info = binaryen.getFunctionInfo(f);
    m.addGlobal(global, binaryen.i32, true, m.i32.const(0));
    m.addGlobalExport(global, global);
    const bump = m.global.set(global, m.i32.add(m.global.get(global, binaryen.i32), m.i32.const(1)));
    const body = m.block(null, [bump, info.body], info.results);
    m.removeFunction(fn);
    m.addFunction(fn, info.params, info.results, info.vars, body);
  }
  if (!m.validate()) throw new Error("instrumented module does not validate");
  const out = m.emitBinary();
  m.dispose();
  return out;
}

// SPDX-License-Identifier: Apache-2.0
// as-pect runs the AssemblyScript unit tests of the pure modules (assembly/llm, telemetry,
// config). They import no host function, so no proxy-wasm imports are provided here.
export default {
  entries: ["assembly/__tests__/**/*.spec.ts"],
  include: ["assembly/__tests__/**/*.include.ts"],
  disclude: [/node_modules/],
  async instantiate(memory, createImports, instantiate, binary) {
    return instantiate(binary, createImports({ env: { memory } }));
  },
  outputBinary: false,
};

// SPDX-License-Identifier: Apache-2.0
// Lint for the TypeScript tests and tools, and for the AssemblyScript plugin. AssemblyScript is
// checked with the same parser but without rules that assume JavaScript semantics (its integer
// types, `unchecked`, `changetype` and decorators are AssemblyScript's own).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["build/**", "node_modules/**", "ratelimit/dist/**", "assembly/host/abi.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["tests/**/*.ts", "scripts/**/*.ts", "bench/*.ts", "ratelimit/**/*.ts", "*.js"],
    languageOptions: {
      globals: { process: "readonly", console: "readonly", setTimeout: "readonly", Buffer: "readonly" },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    files: ["assembly/**/*.ts", "bench/wasm/**/*.ts"],
    rules: {
      // AssemblyScript's types (i32, usize, ...) and builtins (load, store, unchecked, ...) are
      // ambient declarations the compiler provides.
      "no-undef": "off",
      "prefer-const": "error",
      "@typescript-eslint/no-unused-vars": ["error", { args: "none" }],
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/ban-ts-comment": "off",
      "no-empty": "off",
    },
  },
  {
    files: ["assembly/__tests__/**/*.ts"],
    rules: { "@typescript-eslint/triple-slash-reference": "off" },
  },
);

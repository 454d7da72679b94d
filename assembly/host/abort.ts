// SPDX-License-Identifier: Apache-2.0
// AssemblyScript calls `abort` on a failed bounds check or an explicit throw. The default imports
// `env.abort`, which Envoy does not provide (the module would not load), so asconfig.json points
// `--use abort=` here. The plugin's code is written so that this never runs; if it does, the
// message reaches the proxy log at critical level before the VM traps.

import { proxy_log, LogLevel } from "./abi";

export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const text =
    "asm-llm-proxy abort: " +
    (message !== null ? message : "") +
    " at " +
    (fileName !== null ? fileName : "?") +
    ":" +
    line.toString() +
    ":" +
    column.toString();
  const bytes = String.UTF8.encode(text);
  proxy_log(LogLevel.Critical, changetype<usize>(bytes), <usize>bytes.byteLength);
  unreachable();
}

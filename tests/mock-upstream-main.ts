// SPDX-License-Identifier: Apache-2.0
// Runs the mock OpenAI-compatible upstream on its own, for a local Envoy (npm run envoy):
//   node --import tsx tests/mock-upstream-main.ts --host 0.0.0.0 --port 18080

import { parseArgs } from "node:util";
import { startMockUpstream } from "./mock-upstream.ts";

const { values } = parseArgs({
  options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "18080" } },
});
const upstream = await startMockUpstream(values.host, Number(values.port));
console.log(`mock LLM upstream on ${values.host}:${upstream.port} (POST .../chat/completions)`);
const stop = () => void upstream.close().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

// SPDX-License-Identifier: Apache-2.0
// Runs the mock OpenAI-compatible upstream of the tests on its own, on a chosen address, for a
// local Envoy in Docker (npm run envoy), which reaches the host through the Docker bridge and so
// needs more than loopback:
//   node --import tsx tests/mock-upstream-main.ts --host 0.0.0.0 --port 18080

import { parseArgs } from "node:util";
import { startMockUpstream, MOCK_API_KEY, MOCK_PATH } from "./mock-upstream.ts";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "18080" },
    // The key it accepts; the plugin in front must send it (providers[].api_key_env).
    "api-key-env": { type: "string", default: "MOCK_API_KEY" },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be a TCP port (0 for any free one), not ${values.port}`);
  process.exit(2);
}
const upstream = await startMockUpstream(
  values.host,
  port,
  process.env[values["api-key-env"]!] || MOCK_API_KEY,
);
console.log(`mock LLM upstream on ${values.host}:${upstream.port} (POST ${MOCK_PATH}, Bearer key required)`);
const stop = () => void upstream.close().then(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# npm run envoy: the plugin in a real Envoy (Docker) in front of the mock LLM upstream, for
# trying it by hand:
#   curl localhost:10000/compatible-mode/v1/chat/completions -H 'Host: dashscope.aliyuncs.com' \
#     -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Please introduce yourself."}]}'
#   curl -s localhost:9901/stats/prometheus | grep llmproxy
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "npm run envoy needs a Docker engine, and none answers here (docker info failed)." >&2
  echo "Without Docker, 'npm start' runs the same scenario through the test host." >&2
  exit 1
fi
PORT="${UPSTREAM_PORT:-18080}"
npm run build:release
docker build -f Dockerfile.envoy -t asm-llm-proxy-envoy .
node --import tsx tests/mock-upstream-main.ts --host 0.0.0.0 --port "$PORT" &
UPSTREAM_PID=$!
trap 'kill $UPSTREAM_PID 2>/dev/null || true' EXIT
echo "Envoy on localhost:10000 (admin localhost:9901); Ctrl-C to stop."
docker run --rm -p 10000:10000 -p 9901:9901 --add-host host.docker.internal:host-gateway \
  -e UPSTREAM_HOST=host.docker.internal -e UPSTREAM_PORT="$PORT" asm-llm-proxy-envoy

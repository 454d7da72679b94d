#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# npm run envoy: the plugin in a real Envoy (Docker) in front of the mock LLM upstream, for trying
# it by hand as in the "Observe LLM traffic" scenario. In another terminal (POST /, no model, no
# key, as the seed's calls: the plugin's provider routing completes them):
#   curl localhost:10000/ -H 'Host: dashscope.aliyuncs.com' \
#     -H 'Content-Type: application/json' -d '{"messages":[{"role":"user","content":"Please introduce yourself."}]}'
#   curl localhost:10000/ -H 'Host: dashscope.aliyuncs.com' \
#     -H 'Content-Type: application/json' -H 'user-type: subscriber' \
#     -d '{"messages":[{"role":"user","content":"Please introduce yourself."}]}'
#   curl -s localhost:9901/stats/prometheus | grep llmproxy
# The access-log lines appear in this terminal. UPSTREAM_PORT (default 18080) moves the mock;
# ENVOY_IMAGE names the image.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "npm run envoy needs a Docker engine, and none answers here (docker info failed)." >&2
  echo "Without Docker, 'npm start' runs the same scenario through the test host." >&2
  exit 1
fi
PORT="${UPSTREAM_PORT:-18080}"
IMAGE="${ENVOY_IMAGE:-asm-llm-proxy-envoy}"
npm run build:release
# Only the inputs of the image go to the daemon, not the whole repository (node_modules alone is
# hundreds of megabytes).
tar -c Dockerfile.envoy build/asm-llm-proxy.wasm deploy/envoy | docker build -f Dockerfile.envoy -t "$IMAGE" -
# 0.0.0.0: the container reaches the host through the Docker bridge, not through loopback.
node --import tsx tests/mock-upstream-main.ts --host 0.0.0.0 --port "$PORT" &
UPSTREAM_PID=$!
trap 'kill "$UPSTREAM_PID" 2>/dev/null || true' EXIT
echo "Envoy on localhost:10000 (admin localhost:9901); Ctrl-C to stop."
# host-gateway makes host.docker.internal resolve on Linux too (Docker Desktop has it already).
docker run --rm -p 10000:10000 -p 9901:9901 --add-host host.docker.internal:host-gateway \
  -e UPSTREAM_HOST=host.docker.internal -e UPSTREAM_PORT="$PORT" "$IMAGE"

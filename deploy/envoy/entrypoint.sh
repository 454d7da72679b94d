#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entry point of Dockerfile.envoy: points the LLM cluster of envoy.yaml at
# $UPSTREAM_HOST:$UPSTREAM_PORT, then runs Envoy with the container's arguments
# (by default those of CMD in Dockerfile.envoy).
set -eu
host="${UPSTREAM_HOST:-host.docker.internal}"
port="${UPSTREAM_PORT:-18080}"
# Resolved here with the C library, which reads /etc/hosts, where `docker run --add-host` and
# testcontainers put their host aliases: Envoy's own DNS client has not always consulted it.
addr="$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)"
[ -n "$addr" ] || addr="$host"
sed -e "s/address: host.docker.internal,/address: $addr,/" -e "s/port_value: 18080 }/port_value: $port }/" \
  /etc/envoy/envoy.template.yaml >/tmp/envoy.yaml
echo "asm-llm-proxy-envoy: LLM upstream $host ($addr) port $port" >&2
exec envoy -c /tmp/envoy.yaml "$@"

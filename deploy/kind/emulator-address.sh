#!/usr/bin/env bash
# Prints the IPv4 address at which containers of the kind cluster reach the host, where the
# local AWS emulator listens. Usage: emulator-address.sh <kind-cluster-name>
#  1. Docker Desktop (macOS, Windows): host.docker.internal, resolved inside the node container.
#  2. Linux: the gateway of the "kind" Docker network (the host's address on that bridge).
# Override with KIND_HOST_ADDRESS=<ip> when neither fits (e.g. rootless or remote Docker).
set -euo pipefail

cluster="${1:?usage: emulator-address.sh <kind-cluster-name>}"

if [[ -n "${KIND_HOST_ADDRESS:-}" ]]; then
  echo "${KIND_HOST_ADDRESS}"
  exit 0
fi

node="${cluster}-control-plane"
address="$(docker exec "${node}" getent ahostsv4 host.docker.internal 2>/dev/null | awk 'NR == 1 { print $1 }' || true)"
if [[ -z "${address}" ]]; then
  address="$(docker network inspect kind --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}' \
    | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | head -n 1 || true)"
fi
if [[ -z "${address}" ]]; then
  echo "cannot find the host's address from kind; set KIND_HOST_ADDRESS=<ip>" >&2
  exit 1
fi
echo "${address}"

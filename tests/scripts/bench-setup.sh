#!/usr/bin/env bash
# Installs what the benchmarks compare against, skipping what is already
# there: wrk (the HTTP load generator), runc and busybox-static (the container
# baseline), and the upstream `wasmtime` CLI 48.0.8 (the `wasmtime serve`
# peer; about 10 minutes to build) under $SHOAL_TOOLS (default
# /var/tmp/shoal-tools). Safe to run any number of times; the test suite
# does not need it.
set -euo pipefail

WASMTIME_VERSION=48.0.8
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${SHOAL_TOOLS:-/var/tmp/shoal-tools}"

say() { printf '==> %s\n' "$*" >&2; }
sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

"$root/tests/scripts/setup.sh"

packages=(wrk runc busybox-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! "$tools/bin/wasmtime" --version 2>/dev/null | grep -q "wasmtime $WASMTIME_VERSION"; then
  say "building wasmtime-cli $WASMTIME_VERSION into $tools (about 10 minutes)"
  cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$tools"
fi
say "benchmark peers ready: $("$tools/bin/wasmtime" --version), $(runc --version | head -1), $(wrk --version 2>&1 | head -1)"

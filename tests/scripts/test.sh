#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints as errors,
# then every test with nextest. Tests start their own etcd, registry and
# Shoal processes on loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
export PATH="${SHOAL_VENV:-$root/.venv}/bin:$PATH"

echo "==> cargo fmt --check" >&2
cargo fmt --all --check
echo "==> cargo clippy (warnings are errors)" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo nextest run" >&2
cargo nextest run --workspace --locked --no-fail-fast "$@"

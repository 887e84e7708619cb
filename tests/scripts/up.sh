#!/usr/bin/env bash
# Builds Shoal (release) and starts a server with the embedded store in
# ${SHOAL_DATA_DIR:-~/.local/share/shoal}. Stop it with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
echo "==> building shoal (release; the first build takes about 10 minutes)" >&2
cargo build --release --locked --bin shoal
data_dir="${SHOAL_DATA_DIR:-$HOME/.local/share/shoal}"
echo "==> starting shoal server, data in $data_dir" >&2
exec "$CARGO_TARGET_DIR/release/shoal" server --data-dir "$data_dir" "$@"

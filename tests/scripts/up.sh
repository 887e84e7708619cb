#!/usr/bin/env bash
# Builds Shoal (release), starts `shoal server` with the embedded store in
# ${SHOAL_DATA_DIR:-~/.local/share/shoal}, applies samples/quickstart.yaml
# with the real kubectl and shows it. The server keeps running in the
# foreground; stop it with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
echo "==> building shoal (release; the first build takes about 10 minutes)" >&2
cargo build --release --locked --bin shoal
data_dir="${SHOAL_DATA_DIR:-$HOME/.local/share/shoal}"
port="${SHOAL_HTTPS_PORT:-6443}"
kubectl="${SHOAL_VENV:-$root/.venv}/bin/kubectl"
echo "==> starting shoal server on https://127.0.0.1:$port, data in $data_dir" >&2
"$CARGO_TARGET_DIR/release/shoal" server --data-dir "$data_dir" --https-port "$port" "$@" &
server=$!
trap 'kill $server 2>/dev/null || true' INT TERM
export KUBECONFIG="$data_dir/admin.kubeconfig"
for _ in $(seq 1 300); do
  if [ -f "$KUBECONFIG" ] && "$kubectl" get --raw /readyz >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then echo "shoal server exited; see the messages above" >&2; exit 1; fi
  sleep 0.1
done
echo "==> kubectl apply -f samples/quickstart.yaml" >&2
"$kubectl" apply -f samples/quickstart.yaml
"$kubectl" get namespaces
"$kubectl" get deployments,services,configmaps -n quickstart -o wide
cat >&2 <<MSG

Shoal is up. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get all -A
Stop it with Ctrl-C.
MSG
wait "$server"

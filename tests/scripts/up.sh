#!/usr/bin/env bash
# The quick start: builds Shoal (release; SHOAL_PROFILE=debug for a quicker
# debug build), imports the hello-http module into the data directory
# (${SHOAL_DATA_DIR:-~/.local/share/shoal}), starts `shoal up` (the whole
# cluster in one process), applies samples/hello-http.yaml with the real
# kubectl, waits for the pod to be Ready and asks it over its hostPort with
# curl. The cluster then keeps running in the foreground; stop it with
# Ctrl-C. Running it again on the same data directory picks the cluster up
# where it was.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/shoal-target}"
profile="${SHOAL_PROFILE:-release}"
case "$profile" in
  release) build=(--release) ;;
  debug) build=() ;;
  *) echo "SHOAL_PROFILE is release or debug, not $profile" >&2; exit 2 ;;
esac
echo "==> building shoal ($profile; a first release build takes about 10 minutes)" >&2
cargo build "${build[@]}" --locked --bin shoal --bin artifact-path
bin="$CARGO_TARGET_DIR/$profile"
data_dir="${SHOAL_DATA_DIR:-$HOME/.local/share/shoal}"
port="${SHOAL_HTTPS_PORT:-6443}"
kubectl="${SHOAL_VENV:-$root/.venv}/bin/kubectl"
image=localhost:5000/shoal/hello-http:v1

# The image store is on disk and shared: importing works while the node
# runs too; done first here so that the pod finds it at once.
echo "==> shoal image import hello-http.wasm $image --data-dir $data_dir" >&2
"$bin/shoal" image import "$("$bin/artifact-path" hello-http)" "$image" --data-dir "$data_dir"

echo "==> shoal up --data-dir $data_dir --https-port $port" >&2
"$bin/shoal" up --data-dir "$data_dir" --https-port "$port" "$@" &
up=$!
stop() { kill -TERM "$up" 2>/dev/null || true; wait "$up" || true; exit 0; }
trap stop INT TERM
export KUBECONFIG="$data_dir/admin.kubeconfig"
# The node registers within seconds; give up after a minute.
for _ in $(seq 1 600); do
  if [ -f "$KUBECONFIG" ] && [ -n "$("$kubectl" get nodes -o name 2>/dev/null)" ]; then break; fi
  if ! kill -0 "$up" 2>/dev/null; then echo "shoal up exited; see the messages above" >&2; exit 1; fi
  sleep 0.1
done
"$kubectl" wait --for=condition=Ready node --all --timeout=60s

echo "==> kubectl apply -f samples/hello-http.yaml" >&2
"$kubectl" apply -f samples/hello-http.yaml
"$kubectl" wait --for=condition=Ready pod/hello-http --timeout=120s
"$kubectl" get pods -o wide
echo "==> curl -s http://127.0.0.1:8080/" >&2
# Retried: after a restart the pod may show the Ready of its last run for a
# moment while its new sandbox starts.
curl -s --retry 30 --retry-all-errors --retry-delay 1 --max-time 5 http://127.0.0.1:8080/
echo
cat >&2 <<MSG

Shoal is up, hello-http answers on http://127.0.0.1:8080/. In another shell:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get pods -o wide
  curl http://127.0.0.1:8080/
Stop it with Ctrl-C.
MSG
wait "$up"

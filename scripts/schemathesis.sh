#!/usr/bin/env bash
# Fuzzes the node's HTTP API against its own OpenAPI document with
# schemathesis, every check on (`--checks all`), bounded in examples and in
# time: a node on its embedded defaults (`agora up`) in a temporary data
# directory on a free loopback port, stopped at the end.
#
#   scripts/schemathesis.sh [AGORA]     AGORA: the agora binary to run
#                                       (default target/debug/agora, as the
#                                       tests build it)
#
# SCHEMATHESIS_SEED picks another seed (the default is fixed, so that CI is
# repeatable); SCHEMATHESIS_EXAMPLES the examples per operation.
# scripts/schemathesis.toml says which check is left out where, and why;
# scripts/schemathesis_hooks.py how the binary bodies are sent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
agora="${1:-$root/target/debug/agora}"
seed="${SCHEMATHESIS_SEED:-20240615}"
examples="${SCHEMATHESIS_EXAMPLES:-50}"

if [ ! -x "$agora" ]; then
  echo "schemathesis.sh: no agora binary at $agora (build it with cargo build -p agora-cli)" >&2
  exit 2
fi
# Run as a module of the python3 that pip installed it into (no console
# script on the PATH needed).
schemathesis=(python3 -m schemathesis.cli)
"${schemathesis[@]}" --version >/dev/null 2>&1 || {
  echo "schemathesis.sh: schemathesis is not installed (python3 -m pip install schemathesis)" >&2
  exit 2
}

work="$(mktemp -d)"
node=""
stop() {
  if [ -n "$node" ] && kill -0 "$node" 2>/dev/null; then
    kill -TERM "$node" 2>/dev/null || true
    wait "$node" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
healthy() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1).read()' \
    "$1/healthz" >/dev/null 2>&1
}

# The port is free when chosen; should another process take it before the
# node binds it, the node exits and another port is tried.
url=""
for attempt in 1 2 3; do
  port="$(free_port)"
  AGORA_PASSPHRASE='schemathesis run passphrase' RUST_LOG=warn \
    "$agora" --data-dir "$work/data" up --port "$port" >"$work/node.log" 2>&1 &
  node=$!
  for _ in $(seq 600); do
    if healthy "http://127.0.0.1:$port"; then
      url="http://127.0.0.1:$port"
      break 2
    fi
    kill -0 "$node" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$node" 2>/dev/null || true
  wait "$node" 2>/dev/null || true
  node=""
done
if [ -z "$url" ]; then
  echo "schemathesis.sh: the node did not come up; its log:" >&2
  cat "$work/node.log" >&2
  exit 1
fi
echo "node up at $url (data in $work/data)"

# From the temporary directory: schemathesis keeps nothing in the tree.
cd "$work"
status=0
SCHEMATHESIS_HOOKS="$here/schemathesis_hooks.py" timeout --signal=INT --kill-after=10 240 \
  "${schemathesis[@]}" --config-file "$here/schemathesis.toml" run "$url/openapi.json" \
  --checks all \
  --max-examples "$examples" \
  --seed "$seed" \
  --workers 2 \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  || status=$?

if ! kill -0 "$node" 2>/dev/null; then
  echo "schemathesis.sh: the node died during the run; its log:" >&2
  cat "$work/node.log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: schemathesis failed ($status); the node's log:" >&2
  tail -n 50 "$work/node.log" >&2
fi
exit "$status"

#!/bin/bash
# One round of the node-over-loopback A/B of docs/BENCHMARKS.md: a fresh data
# directory, `agora up` on PORT, then `agora bench cpo-bind --concurrency 64
# --cpos 20000` and `agora bench speed-normal --concurrency 64 --duration 10`
# against it; the JSON reports land in OUT/LABEL-bind.json and
# OUT/LABEL-speed.json, a summary line each on stdout. Run it for each build
# in turn (A, B, A, B, ...) so that the host's drift falls on both.
#
#   scripts/bench-ab.sh before /tmp/agora-before 17910 /tmp/ab
#   scripts/bench-ab.sh after  target/release/agora 17911 /tmp/ab
set -euo pipefail
label=$1 bin=$2 port=$3 out=${4:-/tmp/agora-ab}
mkdir -p "$out"
export AGORA_PASSPHRASE=${AGORA_PASSPHRASE:-bench-pass}
d=$(mktemp -d "$out/data-$label-XXXX")
"$bin" --data-dir "$d" up --port "$port" > "$d/node.log" 2>&1 &
node=$!
trap 'kill $node 2>/dev/null; wait $node 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" > /dev/null && break
    sleep 0.3
done
echo "== $label $(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
summary() {
    python3 - "$1" "$2" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
c = r["crypto_bound"]
print(f"{label} {r['scenario']}: {r['throughput']:.0f} {r['throughput_unit']}, "
      f"bound {c['bound_per_sec']:.0f}/s, ratio {c['ratio']:.3f} "
      f"(server only {c['server_only']['ratio']:.3f}), errors {r['errors']}")
PY
}
"$bin" --data-dir "$d" --node "http://127.0.0.1:$port" --json bench cpo-bind \
    --concurrency 64 --cpos 20000 > "$out/$label-bind.json" 2> "$out/$label-bind.err"
summary "$label" "$out/$label-bind.json"
"$bin" --data-dir "$d" --node "http://127.0.0.1:$port" --json bench speed-normal \
    --concurrency 64 --duration 10 > "$out/$label-speed.json" 2> "$out/$label-speed.err"
summary "$label" "$out/$label-speed.json"

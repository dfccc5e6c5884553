#!/usr/bin/env bash
# bench/ab.sh: router builds side by side (e.g. before and after a change), in
# interleaved rounds, on the router-only throughput test (`loadgen throughput`,
# 198-byte messages, 1 sender + 1 receiver component, unbounded window, server CPU
# from /proc via --server-pid). Prints medians per build and the ratios of the
# second build to the first. Quicker than bench/compare.sh (no Prosody, no latency
# or many-components runs); use compare.sh with ROUTER_BASE for the full picture.
#
#   bench/ab.sh NAME=/path/to/router NAME2=/path/to/other-router [...]
#   ROUNDS=5 N=1500000 LOADGEN=target/release/loadgen bench/ab.sh ...
#
# Build an older commit's binary with e.g.
#   git worktree add /tmp/old COMMIT && cargo build --release --manifest-path /tmp/old/Cargo.toml
set -euo pipefail
ROUNDS=${ROUNDS:-5}; N=${N:-1500000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
[ -x "$LOADGEN" ] || cargo build --release -p loadgen --manifest-path "$ROOT/Cargo.toml"
[ $# -ge 2 ] || { echo "usage: bench/ab.sh NAME=BINARY NAME=BINARY [...]" >&2; exit 2; }
OUT=$(mktemp --suffix=.jsonl); TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

for r in $(seq 1 "$ROUNDS"); do
  for spec in "$@"; do
    name=${spec%%=*}; bin=${spec#*=}
    port=$(free_port)
    printf 'listen = ["127.0.0.1:%s"]\nlog_level = "warn"\n[components."a.bench.local"]\nsecret = "secret-a"\n[components."b.bench.local"]\nsecret = "secret-b"\n' \
      "$port" > "$TMP/config.toml"
    "$bin" --config "$TMP/config.toml" 2> "$TMP/$name.log" & PID=$!
    for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    res=$("$LOADGEN" throughput --n "$N" --timeout 120 --addr "127.0.0.1:$port" --server-pid "$PID" 2>/dev/null || echo '{}')
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    echo "{\"round\":$r,\"build\":\"$name\",\"res\":$res}" >> "$OUT"
    echo "round $r $name: $res" | cut -c1-160 >&2
  done
done

python3 - "$OUT" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["build"], []).append(r["res"])
med = {}
for name, v in by.items():
    rate = [x.get("rate") or 0 for x in v]
    cpu = [x.get("server_cpu_us_per_stanza") or 0 for x in v]
    lost = sum(x.get("lost") or 0 for x in v)
    med[name] = (st.median(rate), st.median(cpu))
    print(f"{name:12} rounds {len(v)}  median {med[name][0]:,.0f} stanzas/s [{min(rate):,.0f}..{max(rate):,.0f}]"
          f"  server CPU {med[name][1]:.3f} µs/stanza  lost {lost}")
names = list(by)
for other in names[1:]:
    a, b = med[names[0]], med[other]
    print(f"{other}/{names[0]}: throughput {b[0] / a[0]:.3f}, server CPU per stanza {b[1] / a[1]:.3f}")
PY
rm -f "$OUT"

#!/usr/bin/env bash
# bench/worst_case.sh: the router's CPU per KB on crafted worst-case inputs beside
# ordinary 198-byte stanzas, in one run, twice:
#   1. in process, on the framer alone: `cargo bench --bench worst_case`
#      (benches/worst_case.rs; thread CPU time, medians of 9 rounds, 64 KiB reads,
#      and the same input fed one byte per read);
#   2. against the release binary over TCP: `loadgen worst-case` (crates/loadgen,
#      worst.rs) with the router's CPU from /proc/PID/stat, medians of ROUNDS rounds
#      of BYTES per input, the handshake attack before authentication, and ordinary
#      stanzas dribbled one byte per write.
# Both use the same inputs (crates/loadgen/src/crafted.rs). The router runs with its
# default limits and two components, a/b.bench.local, on a free loopback port; it is
# stopped on exit. Results: printed, and the loadgen JSON line in RESULTS
# (default bench/results/worst_case-<date>.json, gitignored).
#
#   bench/worst_case.sh                  ROUNDS=3 BYTES=33554432
#   QUICK=1 bench/worst_case.sh          one short round (about a minute)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
ROUNDS=${ROUNDS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
BYTES=${BYTES:-$([ "$QUICK" = 1 ] && echo 4194304 || echo 33554432)}
DRIBBLE_BYTES=${DRIBBLE_BYTES:-$([ "$QUICK" = 1 ] && echo 20000 || echo 100000)}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$ROOT/bench/results"
RESULTS=${RESULTS:-$ROOT/bench/results/worst_case-$(date -u +%Y%m%dT%H%M%SZ).json}

say() { echo "== $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "building release (router, loadgen) and the in-process benchmark"
(cd "$ROOT" && cargo build --release -p xmpp-component-router -p loadgen >&2)

say "in process: cargo bench --bench worst_case"
(cd "$ROOT" && cargo bench --bench worst_case -- $([ "$QUICK" = 1 ] && echo --quick) ) || true

TMP=$(mktemp -d)
ROUTER_PID=
cleanup() {
  if [ -n "$ROUTER_PID" ]; then kill "$ROUTER_PID" 2>/dev/null || true; wait "$ROUTER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$(free_port)
cat > "$TMP/config.toml" <<CONF
listen = ["127.0.0.1:$PORT"]
log_level = "warn"
[components."a.bench.local"]
secret = "secret-a"
[components."b.bench.local"]
secret = "secret-b"
CONF
"$TARGET_DIR/release/xmpp-component-router" --config "$TMP/config.toml" > "$TMP/router.log" 2>&1 &
ROUTER_PID=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
  sleep 0.1
done

say "against the binary: loadgen worst-case (pid $ROUTER_PID, $ROUNDS rounds of $BYTES bytes)"
"$TARGET_DIR/release/loadgen" worst-case --addr "127.0.0.1:$PORT" --server-pid "$ROUTER_PID" \
  --rounds "$ROUNDS" --bytes "$BYTES" --dribble-bytes "$DRIBBLE_BYTES" | tee "$RESULTS" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
if not r.get("ok"):
    print("loadgen failed:", r.get("error")); sys.exit(1)
print(f"router CPU per KB (median of the rounds, /proc/PID/stat)")
print(f"{\"input\":<18} {\"KB/round\":>10} {\"us/KB\":>8} {\"ratio\":>6}  router answer")
for c in r["cases"]:
    ratio = "" if c["ratio"] is None else f"{c[\"ratio\"]:.2f}"
    print(f"{c[\"case\"]:<18} {c[\"kb\"]:>10.0f} {c[\"us_per_kb\"]:>8.2f} {ratio:>6}  {c.get(\"router_answer\", \"\")}")
print(f"worst ratio: {r[\"worst_ratio\"]:.2f} ({r[\"worst_case\"]}); bound 10")
d = r.get("dribbled")
if d:
    print(f"dribbled: {d[\"writes\"]} one-byte writes {d[\"gap_us\"]} us apart: router {d[\"us_per_write\"]:.2f} us CPU per write "
          f"({d[\"us_per_kb\"]:.0f} us/KB), {d[\"server_wakeups\"]} router thread wake-ups")
'
say "loadgen JSON: $RESULTS"

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
#   bench/worst_case.sh                  ROUNDS=3 BYTES=67108864
#   QUICK=1 bench/worst_case.sh          one short round (about a minute)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
ROUNDS=${ROUNDS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
BYTES=${BYTES:-$([ "$QUICK" = 1 ] && echo 4194304 || echo 67108864)}
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
  --rounds "$ROUNDS" --bytes "$BYTES" --dribble-bytes "$DRIBBLE_BYTES" > "$RESULTS"
python3 - "$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if not r.get("ok"):
    print("loadgen failed:", r.get("error"))
    sys.exit(1)
print("router CPU per KB sent (median of the rounds, /proc/PID/stat)")
print("%-18s %10s %8s %6s  %s" % ("input", "KB/round", "us/KB", "ratio", "router answer"))
for c in r["cases"]:
    ratio = "" if c["ratio"] is None else "%.2f" % c["ratio"]
    print("%-18s %10.0f %8.2f %6s  %s" % (c["case"], c["kb"], c["us_per_kb"], ratio, c.get("router_answer", "")))
print("worst ratio: %.2f (%s); bound 10" % (r["worst_ratio"], r["worst_case"]))
d = r.get("dribbled")
if d:
    print("dribbled: %d one-byte writes %d us apart: router %.2f us CPU per write (%.0f us/KB), "
          "%d router thread wake-ups" % (d["writes"], d["gap_us"], d["us_per_write"], d["us_per_kb"], d["server_wakeups"]))
PY
say "loadgen JSON: $RESULTS"

#!/usr/bin/env bash
# bench/profile.sh: profile the router's hot path under a bounded throughput load.
#
#   bench/profile.sh                 callgrind, 200,000 stanzas (about 2 min here)
#   TOOL=perf bench/profile.sh       perf record (cpu-clock samples, DWARF call graphs)
#   N=50000 bench/profile.sh         a shorter load
#
# It builds the `profiling` profile (router + loadgen: release code with debug = 1, so
# symbols and lines; target/profiling/, see Cargo.toml),
# starts the router on a free loopback port with components a/b.bench.local under the
# profiler, sends N 198-byte messages a.bench.local -> b.bench.local with the load
# generator (one pair, window 2000: see below), stops the router with
# SIGTERM and prints the top functions by inclusive and by self cost.
#
# callgrind counts instructions, so its numbers repeat for the same binary and load
# whatever else the machine is doing (perf stat has no hardware counters on this VM;
# `perf stat -e instructions true` says "not supported"). Everything the router does
# between start and stop is counted, start-up, handshakes and shutdown included; with
# N = 200,000 the stanza path is well over 90 % of it. Under valgrind the router runs
# its threads one at a time, about 50x slower.
#
# Output: bench/results/profile-<tool>-<stamp>/ (gitignored): callgrind.out or
# perf.data, inclusive.txt, self.txt, loadgen.json. With callgrind it also prints the
# instructions per stanza (all instructions / stanzas received).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL=${TOOL:-callgrind}
N=${N:-200000}
TOP=${TOP:-15}
NO_BUILD=${NO_BUILD:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$ROOT/bench/results/profile-$TOOL-$(date -u +%Y%m%dT%H%M%SZ)}
LOADGEN=$TARGET_DIR/profiling/loadgen
ROUTER=$TARGET_DIR/profiling/xmpp-component-router

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
PID=""
cleanup() { if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

case $TOOL in
  callgrind) command -v valgrind >/dev/null || { say "installing valgrind"; apt-get install -y -q valgrind >&2; } ;;
  perf) command -v perf >/dev/null || { say "installing linux-perf"; apt-get install -y -q linux-perf >&2; } ;;
  *) say "TOOL is callgrind or perf"; exit 2 ;;
esac
if [ "$NO_BUILD" != 1 ]; then
  (cd "$ROOT" && cargo build --profile profiling -p xmpp-component-router -p loadgen >&2)
fi
mkdir -p "$OUT"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/config.toml" <<EOF
listen = ["127.0.0.1:$PORT"]
log_level = "warn"
[components."a.bench.local"]
secret = "secret-a"
[components."b.bench.local"]
secret = "secret-b"
EOF

case $TOOL in
  callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
      "$ROUTER" --config "$OUT/config.toml" > "$OUT/router.log" 2>&1 &
    ;;
  perf)
    perf record -e cpu-clock -F 2000 --call-graph dwarf,16384 -o "$OUT/perf.data" -- \
      "$ROUTER" --config "$OUT/config.toml" > "$OUT/router.log" 2>&1 &
    ;;
esac
PID=$!
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { say "router did not start:"; cat "$OUT/router.log" >&2; exit 1; }
  sleep 0.1
done
# The router's own pid (perf forks it; valgrind runs it in place).
RPID=$(pgrep -n -f "xmpp-component-router --config $OUT/config.toml" | head -1)
say "router under $TOOL: pid $RPID, port $PORT; sending $N stanzas"
# Window 2000 (under the router's 4096-stanza queue bound): under valgrind the router
# runs one thread at a time, so with an unbounded window the reader would outrun the
# writer and bounce resource-constraint, profiling the bounce path instead.
"$LOADGEN" throughput --addr "127.0.0.1:$PORT" --n "$N" --window "${WINDOW:-2000}" --drain 10 \
  --server-pid "$RPID" --timeout 1200 \
  > "$OUT/loadgen.json" 2> "$OUT/loadgen.log" || true
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("loadgen: received %s of %s, %s/s under the profiler, lost %s, errors %s" % (r["received"], r["sent"], r["rate"], r["lost"], r["errors"]))' "$OUT/loadgen.json" >&2 || cat "$OUT/loadgen.log" >&2
kill -TERM "$RPID" 2>/dev/null || true
for _ in $(seq 1 1200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID" 2>/dev/null || true
PID=""

case $TOOL in
  callgrind)
    callgrind_annotate --auto=no --inclusive=yes "$OUT/callgrind.out" > "$OUT/inclusive.txt" 2>/dev/null
    callgrind_annotate --auto=no "$OUT/callgrind.out" > "$OUT/self.txt" 2>/dev/null
    ;;
  perf)
    perf report -i "$OUT/perf.data" --children --stdio --no-demangle -g none --percent-limit 0.5 2>/dev/null \
      | rustfilt 2>/dev/null > "$OUT/inclusive.txt" \
      || perf report -i "$OUT/perf.data" --children --stdio -g none --percent-limit 0.5 > "$OUT/inclusive.txt" 2>/dev/null
    perf report -i "$OUT/perf.data" --no-children --stdio -g none --percent-limit 0.2 > "$OUT/self.txt" 2>/dev/null
    ;;
esac
for f in inclusive self; do
  echo "== top $TOP by $f cost ($TOOL) =="
  if [ "$TOOL" = callgrind ]; then
    python3 "$ROOT/bench/callgrind_top.py" "$OUT/$f.txt" "$TOP" "$f"
  else
    grep -v '^#' "$OUT/$f.txt" | grep -v '^$' | head -"$TOP"
  fi
  echo
done
if [ "$TOOL" = callgrind ]; then
  python3 - "$OUT/self.txt" "$OUT/loadgen.json" <<'EOF'
import json, re, sys
total = next(int(m.group(1).replace(",", "")) for m in
             (re.match(r"^\s*([\d,]+)\s+\(.*PROGRAM TOTALS", l) for l in open(sys.argv[1])) if m)
r = json.load(open(sys.argv[2]))
print(f"{total:,} instructions for {r['received']:,} stanzas received: "
      f"{total / max(1, r['received']):,.0f} instructions per stanza (start-up and handshakes included)")
EOF
fi
say "full reports: $OUT/inclusive.txt $OUT/self.txt"

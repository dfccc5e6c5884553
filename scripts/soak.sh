#!/usr/bin/env bash
# Soak test (not part of the default test run; README "Tests").
#
#   scripts/soak.sh [SECONDS]        default 600 (10 minutes)
#
# Runs the release daemon on a free loopback port for SECONDS under mixed
# traffic from crates/loadgen, with SIGHUP reloads and reconnects, and samples
# the daemon's VmRSS every SOAK_SAMPLE seconds into a CSV:
#
# - latency: one pair paced at SOAK_RATE stanzas/s (default 500), in runs of
#   30 s, each a fresh connection pair (so also a reconnect every 30 s);
# - bursts: every SOAK_BURST_EVERY s (default 60) a throughput burst of 4 pairs
#   x SOAK_BURST_N stanzas (default 50000) as fast as they go;
# - reconnects: every SOAK_RECONNECT_EVERY s (default 30) 200 components connect,
#   authenticate, ping each other in a ring and disconnect (loadgen many);
# - reloads: every SOAK_RELOAD_EVERY s (default 20) the config is rewritten
#   (extra components added and removed, a secret changed) and SIGHUP sent; each
#   reload's outcome line is waited for.
#
# At the end it prints the RSS series and a verdict: "flat" when the largest
# sample of the last third is at most the largest of the first third plus 10 %
# and 1 MiB, else "growing". Exit 0 only when flat, the daemon survived and
# exited 0 on SIGTERM, every reload was applied and no stanza was lost.
# Output (CSV, loadgen JSON lines, daemon log) goes to SOAK_OUT (default
# target/soak/<timestamp>).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-${SOAK_DURATION:-600}}"
sample="${SOAK_SAMPLE:-10}"
rate="${SOAK_RATE:-500}"
burst_every="${SOAK_BURST_EVERY:-60}"
burst_n="${SOAK_BURST_N:-50000}"
reconnect_every="${SOAK_RECONNECT_EVERY:-30}"
reload_every="${SOAK_RELOAD_EVERY:-20}"
target="${CARGO_TARGET_DIR:-target}"
out="${SOAK_OUT:-$target/soak/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

echo "== building (release)"
cargo build --release -q -p xmpp-component-router -p loadgen
router="$target/release/xmpp-component-router"
loadgen="$target/release/loadgen"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
config="$out/config.toml"

# Generation g of the config: the fixed components (latency pair a/b, burst
# pairs s0-3/r0-3, reconnect set c0-199), plus extra components x0-11 of
# which a rotating two thirds are present, and x0's secret changing.
write_config() {
  local g="$1"
  {
    echo "listen = [\"$addr\"]"
    echo "handshake_timeout = 5"
    echo "max_connections = 2000"
    echo "keepalive_interval = 5"
    echo "log_level = \"info\""
    echo "[components.\"a.bench.local\"]"; echo 'secret = "secret-a"'
    echo "[components.\"b.bench.local\"]"; echo 'secret = "secret-b"'
    for i in 0 1 2 3; do
      echo "[components.\"s$i.bench.local\"]"; echo "secret = \"secret-s$i.bench.local\""
      echo "[components.\"r$i.bench.local\"]"; echo "secret = \"secret-r$i.bench.local\""
    done
    for i in $(seq 0 199); do
      echo "[components.\"c$i.bench.local\"]"; echo "secret = \"secret-$i\""
    done
    for i in $(seq 0 11); do
      if [ $(( (i + g) % 3 )) -ne 0 ]; then
        echo "[components.\"x$i.bench.local\"]"; echo "secret = \"x-$i-$(( i == 0 ? g : 0 ))\""
      fi
    done
  } > "$config.tmp"
  mv "$config.tmp" "$config"
}

write_config 0
"$router" --config "$config" 2> "$out/daemon.log" &
pid=$!
for _ in $(seq 100); do
  grep -q " ready" "$out/daemon.log" && break
  sleep 0.1
done
grep -q " ready" "$out/daemon.log" || { echo "daemon did not start"; cat "$out/daemon.log"; exit 1; }
echo "== daemon pid $pid on $addr; ${duration} s; output in $out"

start=$(date +%s)
end=$(( start + duration ))
now() { date +%s; }
alive() { kill -0 "$pid" 2>/dev/null; }
json="$out/loadgen.jsonl"
: > "$json"

run_loadgen() { # label args...
  local label="$1"; shift
  local line
  line="$("$loadgen" "$@" --addr "$addr" --server-pid "$pid" 2>>"$out/loadgen.err" || true)"
  [ -n "$line" ] && echo "{\"label\":\"$label\",\"t\":$(( $(now) - start )),\"r\":$line}" >> "$json"
  return 0
}

latency_loop() {
  while [ "$(now)" -lt $(( end - 31 )) ] && alive; do
    run_loadgen latency latency --rate "$rate" --duration 30 --warmup 1 --spin-us 0
  done
}

burst_loop() {
  while [ "$(now)" -lt $(( end - burst_every )) ] && alive; do
    sleep "$burst_every"
    run_loadgen burst throughput --pairs 4 --n "$burst_n" --timeout 60
  done
}

reconnect_loop() {
  while [ "$(now)" -lt $(( end - reconnect_every )) ] && alive; do
    sleep "$reconnect_every"
    run_loadgen reconnect many --count 200 --concurrency 50 --idle 1 \
      --domain-pattern 'c{i}.bench.local' --secret-pattern 'secret-{i}' --ring-timeout 10
  done
}

reload_loop() {
  local g=0 before
  while [ "$(now)" -lt $(( end - reload_every )) ] && alive; do
    sleep "$reload_every"
    g=$(( g + 1 ))
    write_config "$g"
    before=$(grep -c "reload: " "$out/daemon.log" || true)
    kill -HUP "$pid"
    local ok=0
    for _ in $(seq 100); do
      if [ "$(grep -c "reload: " "$out/daemon.log" || true)" -gt "$before" ]; then ok=1; break; fi
      sleep 0.1
    done
    if [ "$ok" = 1 ]; then echo reload-ok >> "$out/reloads"; else echo reload-missing >> "$out/reloads"; fi
  done
}

csv="$out/rss.csv"
echo "t_s,rss_kib,fds,threads" > "$csv"
sampler() {
  while [ "$(now)" -le "$end" ] && alive; do
    local t rss fds thr
    t=$(( $(now) - start ))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    echo "$t,$rss,$fds,$thr" >> "$csv"
    sleep "$sample"
  done
}

: > "$out/reloads"
sampler & s_pid=$!
latency_loop & l_pid=$!
burst_loop & b_pid=$!
reconnect_loop & c_pid=$!
reload_loop & r_pid=$!
wait "$l_pid" "$b_pid" "$c_pid" "$r_pid" || true
# Last samples up to the end.
while [ "$(now)" -le "$end" ] && alive; do sleep 1; done
wait "$s_pid" || true

survived=0
alive && survived=1
exit_status=none
if [ "$survived" = 1 ]; then
  kill -TERM "$pid"
  if wait "$pid"; then exit_status=0; else exit_status=$?; fi
fi

python3 - "$csv" "$json" "$out/reloads" "$survived" "$exit_status" <<'EOF'
import json, sys
csv, jsonl, reloads_file, survived, exit_status = sys.argv[1:6]
rows = [l.strip().split(",") for l in open(csv).read().splitlines()[1:] if l.strip()]
rows = [(int(t), int(r), int(f), int(th)) for t, r, f, th in rows if r.isdigit()]
print("== VmRSS every sample (t s: RSS MiB, open fds, threads)")
for t, r, f, th in rows:
    print(f"  {t:5d}  {r/1024:7.1f} MiB  {f:5d} fds  {th:3d} threads")
ok = True
verdict = "unknown"
if len(rows) >= 3:
    n = len(rows)
    first = [r for _, r, _, _ in rows[: n // 3]]
    last = [r for _, r, _, _ in rows[n - n // 3 :]]
    fmax, lmax = max(first), max(last)
    flat = lmax <= fmax * 1.10 + 1024
    verdict = "flat" if flat else "growing"
    ok &= flat
    print(f"== RSS: min {min(r for _, r, _, _ in rows)/1024:.1f} MiB, max {max(r for _, r, _, _ in rows)/1024:.1f} MiB; "
          f"first third max {fmax/1024:.1f} MiB, last third max {lmax/1024:.1f} MiB -> {verdict}")
else:
    ok = False
runs = [json.loads(l) for l in open(jsonl) if l.strip()]
def summary(label):
    rs = [x["r"] for x in runs if x["label"] == label]
    return rs
lat = summary("latency")
if lat:
    p99 = sorted(r.get("p99_ms", 0) for r in lat)
    p50 = sorted(r.get("p50_ms", 0) for r in lat)
    lost = sum(r.get("lost", 0) for r in lat)
    errs = sum(r.get("errors", 0) for r in lat)
    sent = sum(r.get("sent", 0) for r in lat)
    print(f"== latency: {len(lat)} runs, {sent} stanzas, lost {lost}, errors {errs}, "
          f"p50 median {p50[len(p50)//2]:.3f} ms, p99 median {p99[len(p99)//2]:.3f} ms, p99 max {p99[-1]:.3f} ms")
    ok &= lost == 0 and errs == 0
burst = summary("burst")
if burst:
    lost = sum(r.get("lost", 0) for r in burst)
    bounces = sum(r.get("bounces", 0) for r in burst)
    rates = [r.get("rate", 0) for r in burst]
    print(f"== bursts: {len(burst)}, {sum(r.get('received', 0) for r in burst)} stanzas received, lost {lost}, bounces {bounces}, "
          f"rate {min(rates):.0f}..{max(rates):.0f} stanzas/s")
    ok &= lost == 0
many = summary("reconnect")
if many:
    conn = sum(r.get("connected", 0) for r in many)
    fail = sum(r.get("failures", 0) for r in many)
    ring = sum(r.get("ring_delivered", 0) for r in many)
    ring_sent = sum(r.get("ring_sent", 0) for r in many)
    print(f"== reconnects: {len(many)} rounds, {conn} connections authenticated, {fail} failures, ring {ring}/{ring_sent} delivered")
    ok &= fail == 0 and ring == ring_sent
reloads = open(reloads_file).read().split()
print(f"== reloads: {reloads.count('reload-ok')} applied, {reloads.count('reload-missing')} not logged")
ok &= reloads.count("reload-missing") == 0 and len(reloads) > 0
print(f"== daemon survived: {'yes' if survived == '1' else 'NO'}; exit status on SIGTERM: {exit_status}")
ok &= survived == "1" and exit_status == "0"
print(f"== verdict: RSS {verdict}; {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF

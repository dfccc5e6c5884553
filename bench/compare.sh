#!/usr/bin/env bash
# bench/compare.sh: the router measured beside Prosody, ejabberd and a plain byte relay,
# in one run, in alternating rounds (method of shared/research/bench-anchors.md).
#
#   bench/compare.sh              full run: 5 rounds (about 25 min on 2 cores)
#   QUICK=1 bench/compare.sh      smoke run: 1 short round (about 3 min)
#   ROUNDS=3 bench/compare.sh     3 rounds
#
# On a fresh Debian machine it installs what is missing (prosody, ejabberd, python3; as
# root, with apt-get), builds `cargo build --release -p xmpp-component-router -p loadgen`,
# then starts on 127.0.0.1, each on free ports, with private configs in a temp dir:
#   router    target/release/xmpp-component-router, components a/b.bench.local, no upstream
#   prosody   Prosody 0.12 (epoll, defaults), same components, as the prosody user
#   ejabberd  ejabberd 23.01 (`erl ... -s ejabberd`, private spool), as the ejabberd user;
#             skipped with a note when it is not installable or not listening in
#             EJABBERD_START_TIMEOUT s
#   relay     `loadgen relay` (one-thread tokio copy_bidirectional) in front of the load
#             generator's own raw receiver ("plain relay" anchor, no XMPP)
#   base      with ROUTER_BASE=/path/to/xmpp-component-router: the same router tests with
#             another build (e.g. the previous commit's), side by side in the same rounds;
#             the summary gives router/base ratios round by round
#             With ROUTER_METRICS=1 the `router` system (never `base`) also serves
#             `[metrics] listen` and is scraped (GET /metrics) every SCRAPE_INTERVAL s
#             (default 1) for as long as it runs: ROUTER_BASE set to the same binary
#             gives metrics on (router) against metrics off (base) in the same rounds.
#   direct    (throughput only) the load generator's raw sender straight to its own
#             raw receiver: shows when the load generator, not the relay, is the limit
# Per round, for each test, each system in turn (router prosody ejabberd relay ...):
#   tput       N 198-byte messages, 1 sender + 1 receiver component, unbounded window
#              (TPUT_WINDOW=W caps stanzas in flight; the router bounces
#              resource-constraint when a receiver's queue of 4096 is full, so with
#              window 0 a momentarily slow receiver shows as bounced = lost stanzas)
#   lat5000    paced latency at 5k/s, LAT_DURATION s (first LAT_WARMUP s not recorded)
#   lat10000   the same at 10k/s
# and after all rounds, MANY_ROUNDS times, a fresh server per run:
#   many       MANY_COUNT_<SYS> components connect (MANY_CONCURRENCY in flight), idle
#              MANY_IDLE s, then RSS is read: KiB per idle component =
#              (RSS connected - RSS before) / connected; then a ring ping.
# Before each test it waits for QUIET_SECONDS quiet seconds (machine busy below
# QUIET_MAX_CORES), at most QUIET_TIMEOUT s (then the record says quiet:false).
# Server CPU comes from /proc/PID/stat (loadgen --server-pid). Every loadgen JSON line,
# plus round/system/test and machine-noise fields, goes to RESULTS (a .jsonl under
# bench/results/, gitignored); bench/summarize.py prints the medians and ratios from it
# (also written next to it as .md). Every process it started is stopped on exit.
#
# Knobs (environment): ROUNDS SYSTEMS DIRECT TPUT_WINDOW TPUT_N_ROUTER TPUT_N_PROSODY
# TPUT_N_EJABBERD TPUT_N_RELAY LAT_RATES LAT_DURATION LAT_WARMUP MANY_ROUNDS
# MANY_COUNT_ROUTER MANY_COUNT_PROSODY MANY_COUNT_EJABBERD MANY_CONCURRENCY MANY_IDLE
# QUIET_SECONDS QUIET_MAX_CORES QUIET_TIMEOUT EJABBERD_START_TIMEOUT NO_INSTALL NO_BUILD
# WARMUP RESULTS BENCH_COMMIT BENCH_TMPDIR KEEP_TMP ROUTER_BASE ROUTER_METRICS SCRAPE_INTERVAL;
# defaults just below. The servers'
# configs, logs and spools live in a temp dir under BENCH_TMPDIR (default /tmp).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}
  TPUT_N_ROUTER=${TPUT_N_ROUTER:-200000}
  TPUT_N_PROSODY=${TPUT_N_PROSODY:-30000}
  TPUT_N_EJABBERD=${TPUT_N_EJABBERD:-60000}
  TPUT_N_RELAY=${TPUT_N_RELAY:-2000000}
  LAT_DURATION=${LAT_DURATION:-4}
  MANY_ROUNDS=${MANY_ROUNDS:-1}
  QUIET_TIMEOUT=${QUIET_TIMEOUT:-5}
  WARMUP=${WARMUP:-0}
fi
ROUNDS=${ROUNDS:-5}
ROUTER_BASE=${ROUTER_BASE:-}
ROUTER_METRICS=${ROUTER_METRICS:-0}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-1}
if [ -n "$ROUTER_BASE" ]; then
  SYSTEMS=${SYSTEMS:-"router base prosody ejabberd relay"}
else
  SYSTEMS=${SYSTEMS:-"router prosody ejabberd relay"}
fi
DIRECT=${DIRECT:-1}
TPUT_WINDOW=${TPUT_WINDOW:-0}
TPUT_N_ROUTER=${TPUT_N_ROUTER:-1500000}
TPUT_N_PROSODY=${TPUT_N_PROSODY:-100000}
TPUT_N_EJABBERD=${TPUT_N_EJABBERD:-200000}
TPUT_N_RELAY=${TPUT_N_RELAY:-5000000}
LAT_RATES=${LAT_RATES:-"5000 10000"}
LAT_DURATION=${LAT_DURATION:-10}
LAT_WARMUP=${LAT_WARMUP:-1}
MANY_ROUNDS=${MANY_ROUNDS:-3}
MANY_COUNT_ROUTER=${MANY_COUNT_ROUTER:-10000}
MANY_COUNT_PROSODY=${MANY_COUNT_PROSODY:-1000}
MANY_COUNT_EJABBERD=${MANY_COUNT_EJABBERD:-1000}
MANY_CONCURRENCY=${MANY_CONCURRENCY:-100}
MANY_IDLE=${MANY_IDLE:-3}
QUIET_SECONDS=${QUIET_SECONDS:-2}
QUIET_MAX_CORES=${QUIET_MAX_CORES:-0.25}
QUIET_TIMEOUT=${QUIET_TIMEOUT:-10}
EJABBERD_START_TIMEOUT=${EJABBERD_START_TIMEOUT:-60}
NO_INSTALL=${NO_INSTALL:-0}
NO_BUILD=${NO_BUILD:-0}
WARMUP=${WARMUP:-1}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${RESULTS:-$ROOT/bench/results/compare-$STAMP.jsonl}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET_DIR/release/loadgen
ROUTER=$TARGET_DIR/release/xmpp-component-router
HZ=$(getconf CLK_TCK)

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------- cleanup
STARTED_PIDS=()
TMP=""
POLICY_RC_ADDED=0
cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$POLICY_RC_ADDED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "$TMP" ] && [ -d "$TMP" ] && [ "${KEEP_TMP:-0}" != 1 ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stop one process we started: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local pid=${1:-0} i
  [ "$pid" -gt 1 ] 2>/dev/null || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    # A child of this shell lingers as a zombie until waited for.
    if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then break; fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  # Reap it once it has exited, without ever blocking: a plain `wait PID` here once
  # hung until an unrelated child exited.
  local st
  for i in $(seq 1 50); do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || break
    [ -n "$st" ] || break
    if [ "$st" = Z ]; then wait "$pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- install and build
install_packages() {
  [ "$NO_INSTALL" = 1 ] && return 0
  local want=()
  command -v python3 >/dev/null || want+=(python3)
  command -v prosody >/dev/null || want+=(prosody)
  case " $SYSTEMS " in *" ejabberd "*) [ -x /usr/sbin/ejabberdctl ] || want+=(ejabberd) ;; esac
  [ ${#want[@]} = 0 ] && return 0
  is_root || die "missing ${want[*]}: run as root (apt-get install) or install them"
  # Keep the packages' own system services from starting (they would listen on the
  # standard XMPP ports); our instances are private ones started below.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_ADDED=1
  fi
  say "installing ${want[*]} (apt-get)"
  apt-get update -qq >&2 || say "apt-get update failed; trying the install anyway"
  local base=() p
  for p in "${want[@]}"; do [ "$p" = ejabberd ] || base+=("$p"); done
  if [ ${#base[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${base[@]}" >&2 \
      || die "apt-get install ${base[*]} failed"
  fi
  case " ${want[*]} " in *" ejabberd "*)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ejabberd >&2 \
      || say "NOTE: ejabberd is not installable here; it is skipped" ;;
  esac
  if [ "$POLICY_RC_ADDED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_RC_ADDED=0; fi
}

build() {
  [ "$NO_BUILD" = 1 ] && return 0
  say "building release (router and loadgen)"
  (cd "$ROOT" && cargo build --release -p xmpp-component-router -p loadgen >&2) \
    || die "cargo build failed"
}

# ---------------------------------------------------------------- small helpers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port timeout_s pid -> 0 when something accepts on 127.0.0.1:port
  local port=$1 timeout=$2 pid=$3 t=0
  while [ "$t" -lt $((timeout * 10)) ]; do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1; t=$((t + 1))
  done
  return 1
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Machine busy jiffies (user nice system irq softirq) and steal jiffies, all CPUs.
stat_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }

# Wait until the machine has been quiet (busy < QUIET_MAX_CORES) for QUIET_SECONDS,
# at most QUIET_TIMEOUT s. Sets QUIET_WAIT (s waited) and QUIET (true/false).
wait_quiet() {
  local need=$((QUIET_SECONDS * 4)) ok=0 t0 now b0 b1 _s limit
  limit=$(awk -v c="$QUIET_MAX_CORES" -v hz="$HZ" 'BEGIN { print int(c * hz / 4) }')
  t0=$(date +%s%N)
  QUIET=false
  read -r b0 _s < <(stat_busy)
  while :; do
    sleep 0.25
    read -r b1 _s < <(stat_busy)
    if [ $((b1 - b0)) -le "$limit" ]; then ok=$((ok + 1)); else ok=0; fi
    b0=$b1
    now=$(date +%s%N)
    if [ "$ok" -ge "$need" ]; then QUIET=true; break; fi
    if [ $(((now - t0) / 1000000)) -gt $((QUIET_TIMEOUT * 1000)) ]; then break; fi
  done
  QUIET_WAIT=$(awk -v d=$((now - t0)) 'BEGIN { printf "%.2f", d / 1e9 }')
}

# Wait until a freshly started server has settled (< 2 ticks of CPU per second), at
# most 60 s.
wait_settled() {
  local pid=$1 i a b
  a=$(proc_ticks "$pid")
  for i in $(seq 1 60); do
    sleep 1
    b=$(proc_ticks "$pid")
    [ $((b - a)) -lt 2 ] && return 0
    a=$b
  done
}

# Sets AS_USER to the command prefix that runs a program as that system user (when we
# are root and the user exists; the anchors ran Prosody and ejabberd as their users).
# setpriv execs, so the pid of `"${AS_USER[@]}" prog &` is the program's own.
as_user() {
  AS_USER=()
  if is_root && id "$1" >/dev/null 2>&1; then
    AS_USER=(setpriv --reuid="$1" --regid="$1" --init-groups --)
  fi
}

# ---------------------------------------------------------------- servers
# Each start_* sets SRV_PID and SRV_PORT (component port), or returns 1.
start_router() { # name extra_components [binary [metrics]]
  local name=$1 count=$2 bin=${3:-$ROUTER} metrics=${4:-0} d=$TMP/router-$1 i mport=""
  mkdir -p "$d"
  SRV_PORT=$(free_port)
  [ "$metrics" = 1 ] && mport=$(free_port)
  {
    echo "listen = [\"127.0.0.1:$SRV_PORT\"]"
    echo 'log_level = "warn"'
    echo '[components."a.bench.local"]'
    echo 'secret = "secret-a"'
    echo '[components."b.bench.local"]'
    echo 'secret = "secret-b"'
    for ((i = 0; i < count; i++)); do
      printf '[components."c%d.bench.local"]\nsecret = "secret-%d"\n' "$i" "$i"
    done
    if [ -n "$mport" ]; then printf '[metrics]\nlisten = "127.0.0.1:%s"\n' "$mport"; fi
  } > "$d/config.toml"
  "$bin" --config "$d/config.toml" > "$d/router.log" 2>&1 &
  SRV_PID=$!
  STARTED_PIDS+=("$SRV_PID")
  wait_port "$SRV_PORT" 60 "$SRV_PID" || { say "router $name did not start:"; tail -5 "$d/router.log" >&2; return 1; }
  if [ -n "$mport" ]; then start_scraper "$mport" "$SRV_PID" "$d"; fi
}

# Scrape http://127.0.0.1:PORT/metrics every SCRAPE_INTERVAL s while PID lives
# (the scraper's own pid is in STARTED_PIDS; the failed scrapes are counted in DIR).
start_scraper() { # port pid dir
  local port=$1 pid=$2 d=$3
  (
    n=0; failed=0
    while kill -0 "$pid" 2>/dev/null; do
      curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" || failed=$((failed + 1))
      n=$((n + 1)); echo "$n $failed" > "$d/scrapes"
      sleep "$SCRAPE_INTERVAL"
    done
  ) &
  STARTED_PIDS+=("$!")
}

start_base() { # name extra_components: the router built elsewhere (ROUTER_BASE)
  [ -x "$ROUTER_BASE" ] || { say "ROUTER_BASE=$ROUTER_BASE is not an executable"; return 1; }
  start_router "base-$1" "$2" "$ROUTER_BASE"
}

start_prosody() { # name extra_components
  local name=$1 count=$2 d=$TMP/prosody-$1 i c2s
  mkdir -p "$d/data"
  SRV_PORT=$(free_port); c2s=$(free_port)
  {
    cat <<EOF
pidfile = "$d/prosody.pid"
data_path = "$d/data"
daemonize = false
network_backend = "epoll"
log = { warn = "$d/prosody.log" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_interfaces = { "127.0.0.1" }
component_ports = { $SRV_PORT }
component_interfaces = { "127.0.0.1" }
s2s_ports = { }
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }
modules_enabled = { }
storage = "memory"
max_fds = 65536
network_settings = { tcp_backlog = 1024 }
VirtualHost "bench.local"
Component "a.bench.local"
	component_secret = "secret-a"
Component "b.bench.local"
	component_secret = "secret-b"
EOF
    for ((i = 0; i < count; i++)); do
      printf 'Component "c%d.bench.local"\n\tcomponent_secret = "secret-%d"\n' "$i" "$i"
    done
  } > "$d/prosody.cfg.lua"
  is_root && id prosody >/dev/null 2>&1 && chown -R prosody: "$d"
  as_user prosody
  "${AS_USER[@]}" env -C "$d" prosody --config "$d/prosody.cfg.lua" -F > "$d/stdout.log" 2>&1 &
  SRV_PID=$!
  STARTED_PIDS+=("$SRV_PID")
  wait_port "$SRV_PORT" 120 "$SRV_PID" || { say "prosody $name did not start:"; tail -5 "$d/stdout.log" "$d/prosody.log" >&2 2>/dev/null; return 1; }
}

start_ejabberd() { # name extra_components
  local name=$1 count=$2 d=$TMP/ejabberd-$1 i
  { [ -x /usr/sbin/ejabberdctl ] && [ -x /usr/bin/erl ]; } || return 1
  mkdir -p "$d/spool"
  SRV_PORT=$(free_port)
  {
    cat <<EOF
hosts: [bench.local]
loglevel: warning
certfiles: []
acl: {}
access_rules: {}
api_permissions: {}
modules: {}
listen:
  - port: $SRV_PORT
    ip: "127.0.0.1"
    module: ejabberd_service
    global_routes: false
    backlog: 1024
    hosts:
      a.bench.local: {password: "secret-a"}
      b.bench.local: {password: "secret-b"}
EOF
    for ((i = 0; i < count; i++)); do
      printf '      c%d.bench.local: {password: "secret-%d"}\n' "$i" "$i"
    done
  } > "$d/ejabberd.yml"
  is_root && id ejabberd >/dev/null 2>&1 && chown -R ejabberd: "$d"
  # A non-distributed node (no -sname: no epmd, nothing listens but the service
  # port), what `ejabberdctl foreground` runs minus the node name. setpriv, env, the
  # erl script and erlexec all exec, so $! is beam.smp itself.
  as_user ejabberd
  "${AS_USER[@]}" env -C "$d" HOME="$d" EJABBERD_CONFIG_PATH="$d/ejabberd.yml" \
      EJABBERD_LOG_PATH="$d/ejabberd.log" ERL_LIBS=/usr/lib/x86_64-linux-gnu \
      ERL_MAX_PORTS=65536 ERL_CRASH_DUMP="$d/erl_crash.dump" \
      /usr/bin/erl -noinput -noshell +K true +P 250000 -mnesia dir "\"$d/spool\"" -s ejabberd \
      > "$d/stdout.log" 2>&1 &
  SRV_PID=$!
  STARTED_PIDS+=("$SRV_PID")
  wait_port "$SRV_PORT" "$EJABBERD_START_TIMEOUT" "$SRV_PID" || {
    say "ejabberd $name did not listen within ${EJABBERD_START_TIMEOUT}s:"
    tail -5 "$d/stdout.log" "$d/ejabberd.log" >&2 2>/dev/null || true
    stop_pid "$SRV_PID"; return 1; }
}

start_relay() { # sets SRV_PID, SRV_PORT (relay listen), RAW_PORT (loadgen raw receiver)
  local d=$TMP/relay
  mkdir -p "$d"
  SRV_PORT=$(free_port); RAW_PORT=$(free_port)
  "$LOADGEN" relay --listen "127.0.0.1:$SRV_PORT" --to "127.0.0.1:$RAW_PORT" \
    > "$d/relay.json" 2> "$d/relay.log" &
  SRV_PID=$!
  STARTED_PIDS+=("$SRV_PID")
  local i
  for i in $(seq 1 100); do grep -q listening "$d/relay.log" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# ---------------------------------------------------------------- one measurement
# run_test ROUND SYSTEM TEST loadgen-args... : appends one JSON line to RESULTS.
run_test() {
  local round=$1 system=$2 test=$3; shift 3
  wait_quiet
  local b0 s0 b1 s1 t0 t1 out rc=0
  read -r b0 s0 < <(stat_busy)
  t0=$(date +%s.%N)
  out=$("$LOADGEN" "$@" 2>> "$TMP/loadgen.log") || rc=$?
  t1=$(date +%s.%N)
  read -r b1 s1 < <(stat_busy)
  local line
  line=$(LG_OUT="$out" python3 - "$round" "$system" "$test" "$rc" "$QUIET" "$QUIET_WAIT" \
      "$t0" "$t1" "$b0" "$b1" "$s0" "$s1" "$HZ" <<'EOF'
import json, os, sys
round_, system, test, rc, quiet, qwait, t0, t1, b0, b1, s0, s1, hz = sys.argv[1:]
hz = float(hz)
try:
    rec = json.loads(os.environ["LG_OUT"].strip().splitlines()[-1])
except Exception as e:
    rec = {"ok": False, "error": "no JSON from loadgen (exit %s): %s" % (rc, e)}
busy = (int(b1) - int(b0)) / hz
meta = {
    "round": int(round_), "system": system, "test": test, "exit": int(rc),
    "quiet": quiet == "true", "quiet_wait_s": float(qwait),
    "wall_s": round(float(t1) - float(t0), 3),
    "machine_busy_s": round(busy, 2),
    "steal_s": round((int(s1) - int(s0)) / hz, 2),
}
# CPU used by neither the server nor the load generator while the test ran (another
# job on the machine); approximate: the server figure covers the measurement window
# only.
srv = rec.get("server_cpu_s") or rec.get("server_cpu_s_handshakes") or 0
lg = rec.get("loadgen_cpu_s") or 0
meta["other_cpu_s"] = round(busy - srv - lg, 2) if "loadgen_cpu_s" in rec else None
print(json.dumps({**meta, **rec}, separators=(",", ":")))
EOF
)
  echo "$line" >> "$RESULTS"
  # One progress line.
  LINE="$line" python3 - <<'EOF' >&2
import json, os, time
r = json.loads(os.environ["LINE"])
t = r["test"]; s = "%s r%d %-8s %-8s" % (time.strftime("%H:%M:%S"), r["round"], r["system"], t)
if not r.get("ok"):
    s += " NOT OK: %s" % (r.get("error") or r.get("error_messages"))
if t in ("tput", "warmup"):
    s += " %12s/s  cpu %s us/stanza  lost %s  errors %s" % (
        format(int(r.get("rate") or 0), ","), r.get("server_cpu_us_per_stanza"),
        r.get("lost"), r.get("errors"))
elif t.startswith("lat"):
    s += " p50 %s p99 %s p999 %s ms  rate_ok %s  lost %s" % (
        r.get("p50_ms"), r.get("p99_ms"), r.get("p999_ms"), r.get("rate_ok"), r.get("lost"))
elif t == "many":
    s += " %s/%s connected  %s handshakes/s  %s KiB/component  ring %s/%s" % (
        r.get("connected"), r.get("count"), r.get("handshakes_per_s"),
        r.get("rss_per_conn_kib"), r.get("ring_delivered"), r.get("ring_sent"))
if not r.get("quiet"):
    s += "  (machine not quiet before: waited %ss)" % r.get("quiet_wait_s")
if (r.get("other_cpu_s") or 0) > 1.0:
    s += "  (other load: %ss CPU)" % r["other_cpu_s"]
print(s)
EOF
}

# Per-system load generator arguments for throughput and latency.
declare -A PID_OF PORT_OF
target_args() { # system -> args addressing it
  case $1 in
    relay) echo "--raw-listen 127.0.0.1:${RAW_PORT} --addr 127.0.0.1:${PORT_OF[relay]} --server-pid ${PID_OF[relay]}" ;;
    direct) echo "--raw-listen 127.0.0.1:${DIRECT_PORT}" ;;
    *) echo "--addr 127.0.0.1:${PORT_OF[$1]} --server-pid ${PID_OF[$1]}" ;;
  esac
}
tput_n() {
  case $1 in
    router|base) echo "$TPUT_N_ROUTER" ;; prosody) echo "$TPUT_N_PROSODY" ;;
    ejabberd) echo "$TPUT_N_EJABBERD" ;; *) echo "$TPUT_N_RELAY" ;;
  esac
}

# ---------------------------------------------------------------- main
main() {
  install_packages
  command -v python3 >/dev/null || die "python3 is needed"
  build
  [ -x "$LOADGEN" ] && [ -x "$ROUTER" ] || die "no release binaries in $TARGET_DIR/release"
  if is_root; then ulimit -Hn 65536 2>/dev/null || true; fi
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
  mkdir -p "${BENCH_TMPDIR:-/tmp}"
  TMP=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/xcr-compare.XXXXXX")
  chmod 755 "$TMP"
  mkdir -p "$(dirname "$RESULTS")"
  : > "$RESULTS"

  local sys active=() s_ok
  for sys in $SYSTEMS; do
    s_ok=1
    case $sys in
      router) start_router main 0 "$ROUTER" "$ROUTER_METRICS" || s_ok=0 ;;
      base) start_base main 0 || s_ok=0 ;;
      prosody) command -v prosody >/dev/null && start_prosody main 0 || s_ok=0 ;;
      ejabberd) start_ejabberd main 0 || { s_ok=0; say "NOTE: ejabberd skipped (not installed or did not start)"; } ;;
      relay) start_relay || s_ok=0 ;;
      *) die "unknown system $sys" ;;
    esac
    if [ "$s_ok" = 1 ]; then
      PID_OF[$sys]=$SRV_PID; PORT_OF[$sys]=$SRV_PORT; active+=("$sys")
      say "started $sys: pid $SRV_PID, port $SRV_PORT"
    else
      say "NOTE: $sys is not measured in this run"
    fi
  done
  DIRECT_PORT=$(free_port)
  local tput_systems=("${active[@]}")
  [ "$DIRECT" = 1 ] && tput_systems+=(direct)

  # What was measured, on what.
  local commit dirty versions
  commit=${BENCH_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
  dirty=$( (git -C "$ROOT" status --porcelain 2>/dev/null || true) | { grep -vc '^??' || true; })
  dirty=${dirty:-0}
  versions="prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '?'), ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo '?'), erlang $(dpkg-query -W -f='${Version}' erlang-base 2>/dev/null || echo '?')"
  META_SYSTEMS="${active[*]}" META_COMMIT="$commit" META_DIRTY="$dirty" META_VERSIONS="$versions" \
  META_CMD="QUICK=$QUICK ROUNDS=$ROUNDS${ROUTER_BASE:+ ROUTER_BASE=$ROUTER_BASE}$([ "$ROUTER_METRICS" = 1 ] && echo " ROUTER_METRICS=1 SCRAPE_INTERVAL=$SCRAPE_INTERVAL") bench/compare.sh" python3 - >> "$RESULTS" <<EOF
import json, os, platform
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"meta": True, "date": "$STAMP", "nproc": os.cpu_count(), "cpu": cpu,
  "kernel": platform.release(), "commit": os.environ["META_COMMIT"],
  "modified_tracked_files": int(os.environ["META_DIRTY"]), "versions": os.environ["META_VERSIONS"],
  "systems": os.environ["META_SYSTEMS"].split(), "command": os.environ["META_CMD"],
  "rounds": $ROUNDS, "tput_window": $TPUT_WINDOW, "tput_n": {"router": $TPUT_N_ROUTER, "prosody": $TPUT_N_PROSODY,
  "ejabberd": $TPUT_N_EJABBERD, "relay": $TPUT_N_RELAY}, "lat_rates": "$LAT_RATES".split(),
  "lat_duration_s": $LAT_DURATION, "lat_warmup_s": $LAT_WARMUP, "many_rounds": $MANY_ROUNDS,
  "many_count": {"router": $MANY_COUNT_ROUTER, "prosody": $MANY_COUNT_PROSODY,
  "ejabberd": $MANY_COUNT_EJABBERD}, "many_concurrency": $MANY_CONCURRENCY,
  "quiet": "${QUIET_SECONDS}s below $QUIET_MAX_CORES cores, at most ${QUIET_TIMEOUT}s"}))
EOF
  say "results: $RESULTS"

  local n r rate
  if [ "$WARMUP" = 1 ]; then
    for sys in "${tput_systems[@]}"; do
      n=$(tput_n "$sys"); n=$((n / 10))
      # shellcheck disable=SC2046
      run_test 0 "$sys" warmup throughput --n "$n" --timeout 120 $(target_args "$sys")
    done
  fi
  for ((r = 1; r <= ROUNDS; r++)); do
    say "round $r of $ROUNDS"
    for sys in "${tput_systems[@]}"; do
      # shellcheck disable=SC2046
      run_test "$r" "$sys" tput throughput --n "$(tput_n "$sys")" --window "$TPUT_WINDOW" \
        --timeout 120 $(target_args "$sys")
    done
    for rate in $LAT_RATES; do
      for sys in "${active[@]}"; do
        # shellcheck disable=SC2046
        run_test "$r" "$sys" "lat$rate" latency --rate "$rate" --duration "$LAT_DURATION" \
          --warmup "$LAT_WARMUP" --timeout $((LAT_DURATION + 60)) $(target_args "$sys")
      done
    done
  done

  # Many components: a fresh server per run, after the long-running ones are stopped.
  for sys in "${active[@]}"; do
    [ "$sys" = relay ] && continue
    stop_pid "${PID_OF[$sys]}"
  done
  local count base t0 startup
  for ((r = 1; r <= MANY_ROUNDS; r++)); do
    for sys in "${active[@]}"; do
      case $sys in
        router|base) count=$MANY_COUNT_ROUTER ;; prosody) count=$MANY_COUNT_PROSODY ;;
        ejabberd) count=$MANY_COUNT_EJABBERD ;; *) continue ;;
      esac
      t0=$(date +%s.%N)
      "start_$sys" "many$r" "$count" || { say "NOTE: $sys many-run $r could not start"; continue; }
      wait_settled "$SRV_PID"
      startup=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
      base=$(rss_kb "$SRV_PID")
      say "$sys with $count components: started and settled in ${startup}s, RSS ${base} kB"
      run_test "$r" "$sys" many many --addr "127.0.0.1:$SRV_PORT" --count "$count" \
        --concurrency "$MANY_CONCURRENCY" --idle "$MANY_IDLE" --server-pid "$SRV_PID" \
        --baseline-rss-kb "$base" --timeout 300
      stop_pid "$SRV_PID"
    done
  done
  if [ -n "${PID_OF[relay]:-}" ]; then
    stop_pid "${PID_OF[relay]}"
    # The relay's own report (connections, errors) at stop.
    python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(json.dumps({"round":0,"system":"relay","test":"relay_stop",**r}))' \
      "$TMP/relay/relay.json" >> "$RESULTS" 2>/dev/null || say "NOTE: no report from the relay at stop"
  fi

  local summary=${RESULTS%.jsonl}.md
  python3 "$ROOT/bench/summarize.py" "$RESULTS" | tee "$summary"
  say "raw results: $RESULTS"
  say "summary: $summary"
}

main "$@"

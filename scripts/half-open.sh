#!/usr/bin/env bash
# Half-open peer detection, for real (not part of the default test run; needs
# root and unshare, so it can drop packets without touching the host).
#
#   sudo scripts/half-open.sh
#
# In a private network namespace (its own loopback): the release daemon with
# keepalive_interval = 1 and dead_peer_timeout = 3, and a.example configured
# with on_conflict = "reject". A component logs in as a.example; a second
# login is refused with `conflict` (the policy is live). Then the namespace's
# loopback is taken down, so every packet is dropped and nobody is told: the
# component is now a half-open peer. The daemon's whitespace keepalive goes unacknowledged,
# TCP_USER_TIMEOUT ends the session, and the log says so; the script checks it
# happens within keepalive_interval + dead_peer_timeout + 3 s. With packets
# flowing again, a new login as a.example is accepted: the domain was freed
# although the old peer never closed its socket.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
  for t in unshare ip python3; do
    command -v "$t" >/dev/null || { echo "half-open.sh: needs $t"; exit 2; }
  done
  [ "$(id -u)" = 0 ] || { echo "half-open.sh: needs root (network namespace)"; exit 2; }
  target="${CARGO_TARGET_DIR:-target}"
  cargo build --release -q -p xmpp-component-router
  export ROUTER_BIN
  ROUTER_BIN="$(cd "$target/release" && pwd)/xmpp-component-router"
  exec unshare --net "$0" --inside
fi

ip link set lo up
dir="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/config.toml" <<'EOF'
listen = ["127.0.0.1:5347"]
keepalive_interval = 1
dead_peer_timeout = 3
[components."a.example"]
secret = "sa"
on_conflict = "reject"
EOF
"$ROUTER_BIN" --config "$dir/config.toml" 2> "$dir/daemon.log" &
for _ in $(seq 50); do grep -q " ready" "$dir/daemon.log" && break; sleep 0.1; done

# login NAME HOLD_SECONDS: authenticate as a.example, print the outcome, then
# hold the socket open (never closing it) for HOLD_SECONDS.
login() {
  python3 - "$1" "$2" <<'PY'
import hashlib, re, socket, sys, time
name, hold = sys.argv[1], float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", 5347), timeout=5)
s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='a.example'>")
buf = b""
while b"id=" not in buf or not re.search(rb"<stream:stream[^>]*>", buf):
    buf += s.recv(4096)
sid = re.search(rb"id='([^']*)'", buf).group(1).decode()
tok = hashlib.sha1((sid + "sa").encode()).hexdigest()
s.sendall(f"<handshake>{tok}</handshake>".encode())
buf = b""
deadline = time.time() + 5
while b"<handshake/>" not in buf and b"</stream:error>" not in buf and time.time() < deadline:
    b = s.recv(4096)
    if not b:
        break
    buf += b
if b"<handshake/>" in buf:
    print(f"{name}: authenticated", flush=True)
elif b"<conflict" in buf:
    print(f"{name}: conflict", flush=True)
else:
    print(f"{name}: other: {buf!r}", flush=True)
time.sleep(hold)
PY
}

login first 60 > "$dir/first.out" &
for _ in $(seq 50); do grep -q authenticated "$dir/first.out" 2>/dev/null && break; sleep 0.1; done
cat "$dir/first.out"
second="$(login second 0)"
echo "$second"
[ "$second" = "second: conflict" ] || { echo "FAIL: expected conflict while the first session is live"; exit 1; }

echo "taking the namespace's loopback down (the first peer is now half-open)"
ip link set lo down
t0=$(date +%s.%N)
ended=0
for _ in $(seq 150); do
  if grep -q "component session ended" "$dir/daemon.log"; then ended=1; break; fi
  sleep 0.1
done
t1=$(date +%s.%N)
ip link set lo up
elapsed=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
if [ "$ended" != 1 ]; then
  echo "FAIL: the half-open session was not ended within 15 s"; cat "$dir/daemon.log"; exit 1
fi
echo "the daemon ended the half-open session after ${elapsed} s (keepalive_interval 1 s + dead_peer_timeout 3 s)"
python3 -c "import sys; sys.exit(0 if $elapsed <= 7 else 1)" || { echo "FAIL: too late"; exit 1; }

third="$(login third 0)"
echo "$third"
[ "$third" = "third: authenticated" ] || { echo "FAIL: the domain was not freed"; exit 1; }
grep -E "session ended|authenticated|conflict" "$dir/daemon.log" | sed 's/^/  log: /'
echo "PASS"

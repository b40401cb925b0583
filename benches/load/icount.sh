#!/usr/bin/env bash
# Instructions per request of `pay402 proxy` binaries, counted by valgrind
# (cachegrind), which machine load does not move (docs/PERFORMANCE.md,
# "Instructions per proxied request"). For each binary: the proxy with
# run.sh's configuration (SQLite store holding the same TOKENS L402 tokens
# for every run, simnet-rest, one L402 service with a free path, upstream
# pay402-load-server bare) is started under cachegrind three times: idle
# (startup and 3 s, the baseline), then N requests of wrk on the free path,
# then N on the L402 path (one token on every request). Prints the counts;
# instructions per request = (run - idle) / requests. Under valgrind the
# CPU's SHA extensions are not used, so SHA-256 weighs more than natively.
#
#   benches/load/icount.sh OLD_PAY402 NEW_PAY402       # N=3000 TOKENS=2000
#
# Needs valgrind, wrk and the release pay402-load-server and
# pay402-load-prep (run.sh builds them); stops every process it started.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/pay402-target}/release"
N=${N:-3000} TOKENS=${TOKENS:-2000}
W=$(mktemp -d /tmp/icount.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$BIN/pay402-load-server" --listen 127.0.0.1:0 bare >"$W/bare.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do BARE=$(sed -n 's/^listening //p' "$W/bare.log"); [[ -n $BARE ]] && break; sleep 0.1; done
start() { # start BIN [valgrind]
    local wp; PP=$(port) wp=$(port)
    rm -f "$W"/p.sqlite*
    for f in "$W"/tokens.sqlite*; do [[ -e $f ]] && cp "$f" "$W/p.sqlite${f#"$W"/tokens.sqlite}"; done
    cat >"$W/p.toml" <<T
[server]
listen = "127.0.0.1:$PP"
shutdown_grace_secs = 1
[store]
url = "sqlite://$W/p.sqlite"
[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:$wp"
wallet_sats = 1000000000
[[services]]
name = "api"
upstream = "http://$BARE"
free_paths = ["/free"]
rails = ["l402"]
price = { sats = 10 }
T
    if [[ ${2:-} == vg ]]; then
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null --log-file="$W/vg.log" "$1" proxy --config "$W/p.toml" >"$W/proxy.log" 2>&1 &
    else
        "$1" proxy --config "$W/p.toml" >"$W/proxy.log" 2>&1 &
    fi
    PID=$!; PIDS+=("$PID"); WP=$wp
    for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$PP/healthz" && break; sleep 0.2; done
}
stop() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
start "$1"
"$BIN/pay402-load-prep" l402-tokens --url "http://127.0.0.1:$PP/resource" --wallet "http://127.0.0.1:$WP" --n "$TOKENS" --concurrency 50 --out "$W/token" 2>"$W/prep.log"
stop
for f in "$W"/p.sqlite*; do cp "$f" "$W/tokens.sqlite${f#"$W"/p.sqlite}"; done
for bin in "$@"; do
  for path in idle free resource; do
    start "$bin" vg
    n=0
    if [[ $path != idle ]]; then
        hdr=(); [[ $path == resource ]] && hdr=(-H "Authorization: $(cat "$W/token")")
        wrk -t1 -c10 -d120s "${hdr[@]}" -s "$ROOT/benches/load/load.lua" "http://127.0.0.1:$PP/$path" -- "$N" >"$W/wrk.out"
        n=$(sed -n 's/^RESULT requests=\([0-9]*\).*/\1/p' "$W/wrk.out")
        non=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' "$W/wrk.out"); [[ $non == 0 ]] || echo "warning: $non non-2xx" >&2
    else
        sleep 3
    fi
    stop
    ir=$(grep 'I *refs' "$W/vg.log" | tr -d , | awk '{print $NF}')
    per=""
    [[ $path == idle ]] && idle=$ir
    ((n > 0)) && per=$(awk -v a="$ir" -v b="$idle" -v n="$n" 'BEGIN { printf " (%.0f per request)", (a - b) / n }')
    echo "$(basename "$bin") $path requests=$n instructions=$ir$per"
  done
done

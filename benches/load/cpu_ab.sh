#!/usr/bin/env bash
# CPU per request of `pay402 proxy` binaries, A/B (docs/PERFORMANCE.md,
# "Forwarding on the request's own task"): for each binary in turn,
# PAIRS times, starts it with run.sh's proxy configuration (SQLite store
# holding the same LOAD_TOKENS L402 tokens for every run, simnet-rest, one
# L402 service with a free path, upstream pay402-load-server bare), then
# runs wrk -t1 -c50 for SECS seconds after 1 s of warm-up on the free path
# and on the L402 path, and prints req/s and the CPU time (utime + stime
# from /proc/PID/stat) per request of the proxy, the upstream and wrk.
# CPU per request moves much less with the machine's load than req/s.
#
#   benches/load/cpu_ab.sh OLD_PAY402 NEW_PAY402     # 3 pairs, 6 s per run
#   PAIRS=5 SECS=10 benches/load/cpu_ab.sh A B
#
# COUNT=N counts instructions instead, which machine load does not move:
# each binary runs under valgrind (cachegrind) three times, idle (startup
# and 3 s: the baseline), then N requests of wrk on the free path, then N
# on the L402 path, and the script prints (run - idle) / requests. Under
# valgrind the CPU's SHA extensions are not used, so SHA-256 weighs more
# than natively.
#
#   COUNT=3000 LOAD_TOKENS=2000 benches/load/cpu_ab.sh OLD_PAY402 NEW_PAY402
#
# Needs the release pay402-load-server and pay402-load-prep (run.sh builds
# them) and wrk (and valgrind for COUNT); stops every process it started by
# its PID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/pay402-target}/release"
PAIRS=${PAIRS:-3} SECS=${SECS:-6} TOKENS=${LOAD_TOKENS:-10000} COUNT=${COUNT:-}
[[ $# -ge 1 ]] || { echo "usage: $0 PAY402_BINARY..." >&2; exit 2; }
W=$(mktemp -d /tmp/pay402-cpu-ab.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

"$BIN/pay402-load-server" --listen 127.0.0.1:0 bare >"$W/bare.log" 2>&1 &
BPID=$!
PIDS+=("$BPID")
for _ in $(seq 100); do
    BARE=$(sed -n 's/^listening //p' "$W/bare.log")
    [[ -n $BARE ]] && break
    sleep 0.1
done

# start BINARY [WRAPPER...]: a proxy on a copy of the token store, run
# through WRAPPER (valgrind) if given; sets PID and PP.
start() {
    local wp
    PP=$(port) wp=$(port)
    rm -f "$W"/p.sqlite*
    # The database with its WAL, as the first proxy left it.
    for f in "$W"/tokens.sqlite*; do
        [[ -e $f ]] && cp "$f" "$W/p.sqlite${f#"$W"/tokens.sqlite}"
    done
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
    local bin=$1
    shift
    "$@" "$bin" proxy --config "$W/p.toml" >"$W/proxy.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:$PP/healthz" && break
        sleep 0.1
    done
    WP=$wp
}

# stop: SIGTERM to the proxy, wait, forget its PID.
stop() {
    local keep=() p
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$PID" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The tokens, bought once through the first binary.
start "$1"
"$BIN/pay402-load-prep" l402-tokens --url "http://127.0.0.1:$PP/resource" \
    --wallet "http://127.0.0.1:$WP" --n "$TOKENS" --concurrency 50 --out "$W/token" 2>"$W/prep.log"
stop
for f in "$W"/p.sqlite*; do cp "$f" "$W/tokens.sqlite${f#"$W"/p.sqlite}"; done

if [[ -n $COUNT ]]; then
    for bin in "$@"; do
        idle=0
        for path in idle free resource; do
            start "$bin" valgrind --tool=cachegrind --cache-sim=no \
                --cachegrind-out-file=/dev/null --log-file="$W/vg.log"
            n=0
            if [[ $path == idle ]]; then
                sleep 3
            else
                hdr=()
                [[ $path == resource ]] && hdr=(-H "Authorization: $(cat "$W/token")")
                wrk -t1 -c10 -d120s "${hdr[@]}" -s "$ROOT/benches/load/load.lua" \
                    "http://127.0.0.1:$PP/$path" -- "$COUNT" >"$W/wrk.out"
                n=$(sed -n 's/^RESULT requests=\([0-9]*\).*/\1/p' "$W/wrk.out")
                non=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' "$W/wrk.out")
                [[ $non == 0 ]] || echo "warning: $path: $non answers not 2xx" >&2
            fi
            stop
            ir=$(grep 'I *refs' "$W/vg.log" | tr -d , | awk '{ print $NF }')
            [[ $path == idle ]] && idle=$ir
            per=""
            ((n > 0)) && per=$(awk -v a="$ir" -v b="$idle" -v n="$n" 'BEGIN { printf " (%.0f per request)", (a - b) / n }')
            echo "$(basename "$bin") $path: requests=$n instructions=$ir$per"
        done
    done
    exit 0
fi

for ((pair = 0; pair < PAIRS; pair++)); do
    for bin in "$@"; do
        start "$bin"
        line="$(basename "$bin"):"
        for path in free resource; do
            hdr=()
            [[ $path == resource ]] && hdr=(-H "Authorization: $(cat "$W/token")")
            wrk -t1 -c50 -d1s "${hdr[@]}" "http://127.0.0.1:$PP/$path" >/dev/null
            c0=$(cpu "$PID") b0=$(cpu "$BPID")
            /usr/bin/env time -f "%U %S" -o "$W/wrk.time" wrk -t1 -c50 -d"${SECS}s" "${hdr[@]}" \
                -s "$ROOT/benches/load/load.lua" "http://127.0.0.1:$PP/$path" -- 5000000 >"$W/wrk.out"
            c1=$(cpu "$PID") b1=$(cpu "$BPID")
            res=$(sed -n 's/^RESULT //p' "$W/wrk.out")
            non=$(sed 's/.*non2xx=\([0-9]*\).*/\1/' <<<"$res")
            [[ $non == 0 ]] || echo "warning: $path: $non answers not 2xx" >&2
            req=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$res")
            rps=$(sed 's/.*rps=\([0-9.]*\).*/\1/' <<<"$res")
            line+=$(awk -v p="$path" -v r="$rps" -v c=$((c1 - c0)) -v b=$((b1 - b0)) -v n="$req" \
                -v hz="$HZ" -v w="$(awk '{ print $1 + $2 }' "$W/wrk.time")" \
                'BEGIN { printf " %s %6.0f req/s, CPU us/request proxy %5.1f upstream %4.1f wrk %4.1f |", p, r, c * 1e6 / hz / n, b * 1e6 / hz / n, w * 1e6 / n }')
        done
        echo "$line load $(cut -d' ' -f1 /proc/loadavg)"
        stop
    done
done

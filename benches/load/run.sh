#!/usr/bin/env bash
# End-to-end load benchmark of pay402 over loopback (docs/PERFORMANCE.md,
# "End-to-end load"). Builds the release binaries once, starts each server
# on 127.0.0.1, warms it up, drives it with wrk (bounded in time by -d and in
# requests by load.lua's cap; x402 runs also by their payload files), stops
# every process it started by its PID (also on failure or Ctrl-C), and
# prints markdown tables ready to paste.
#
#   benches/load/run.sh            # everything (about 5 minutes after the build)
#   LOAD_ONLY=13 benches/load/run.sh   # issue 13's table only
#   LOAD_ONLY=14 benches/load/run.sh   # the instances table only
#   LOAD_ONLY=14q benches/load/run.sh  # its CPU-quota rows only
#
# Needs wrk and nginx (Debian: apt-get install -y wrk nginx) and, for the
# instances table, PostgreSQL's server (the testkit starts a private
# cluster; see crates/pay402-testkit/src/postgres.rs).
#
# Knobs (environment): LOAD_DURATION (s per measured run, 10),
# LOAD_WARMUP (s, 2), LOAD_CONNECTIONS (50), LOAD_TOKENS (L402 tokens
# stored in the proxy before its runs, 10000), LOAD_X402_RATE (x402
# payloads signed per second of run, 15000: raise it if an x402 row reports
# refused requests; issue 13's x402 row uses it for a sizing warm-up and
# signs 1.5 x the rate that warm-up reached), LOAD_CAP (requests per wrk
# thread, 5000000), LOAD_INSTANCE_CPU (the CPU quota of each instance in
# the instances table's quota rows, in CPUs, 0.2; "none" skips those rows),
# LOAD_PAIRS and LOAD_PAIR_SECS (issue 13's ratio targets: after the rows,
# each pair of servers a target compares is measured again LOAD_PAIRS
# times, 5, alternating, LOAD_PAIR_SECS seconds each, 4; the target is the
# median of the pairs' ratios, which drifts of the machine between two
# rows minutes apart do not bias).
#
# The quota rows put each instance in a cgroup of its own under the cgroup
# v1 cpu controller (/sys/fs/cgroup/cpu, needs root) with
# cpu.cfs_quota_us = LOAD_INSTANCE_CPU x cpu.cfs_period_us (100 ms), the
# same quota per instance with one instance and with two, so that the
# instances, not the 2 cores shared with PostgreSQL and wrk, bound the
# rate. The cgroups are removed at the end (also on failure or Ctrl-C);
# if they cannot be created the quota rows are skipped with a message.
# Why 0.2: a paid request costs PostgreSQL and wrk together about 1.5 x
# what it costs the instance, so two instances at 0.2 make about 1 of the
# 2 cores busy in all and leave the rest idle (the "idle %" column), room
# for other users of the machine; at 0.3 two instances need about 1.5 cores
# and on a shared machine the cores bind first again. A row where the
# instances used less than 85 % of their quota is flagged as not
# instance-bound.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/benches/load"
DURATION=${LOAD_DURATION:-10}
WARMUP=${LOAD_WARMUP:-2}
CONNS=${LOAD_CONNECTIONS:-50}
TOKENS=${LOAD_TOKENS:-10000}
X402_RATE=${LOAD_X402_RATE:-15000}
CAP=${LOAD_CAP:-5000000}
ONLY=${LOAD_ONLY:-all}
INSTANCE_CPU=${LOAD_INSTANCE_CPU:-0.2}
PAIRS=${LOAD_PAIRS:-5}
PAIR_SECS=${LOAD_PAIR_SECS:-4}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pay402-target}

for tool in wrk nginx curl python3 cargo; do
    command -v "$tool" >/dev/null || {
        echo "run.sh: $tool is missing (Debian: apt-get install -y wrk nginx curl)" >&2
        exit 2
    }
done

echo "building release binaries..." >&2
# Two builds, not one: built together, the two packages would unify
# dependency features differently from their own builds and rebuild them.
(cd "$ROOT" && cargo build --release --quiet -p pay402-cli --bin pay402 &&
    cargo build --release --quiet -p pay402-benches --bin pay402-load-server --bin pay402-load-prep)
BIN="$CARGO_TARGET_DIR/release"

WORK=$(mktemp -d /tmp/pay402-load.XXXXXX)
PIDS=()
started_at=$(date -u +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

# The parent cgroup of the quota rows (created in the issue-14 section).
CG14=
cleanup() {
    local pid d
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n $CG14 && -d $CG14 ]]; then
        for d in "$CG14"/*/; do [[ -d $d ]] && rmdir "$d" 2>/dev/null; done
        rmdir "$CG14" 2>/dev/null || echo "run.sh: could not remove the cgroup $CG14 (processes left in it?)" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop PID: SIGTERM, wait, forget.
stop() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# start_server LOG ARGS...: a pay402-load-server; sets SERVER_PID and
# SERVER_ADDR once it prints "listening ADDR". With START_CG set (a cgroup
# directory), the server starts inside that cgroup: the subshell moves
# itself there before it execs the server, so every thread the server
# ever creates is born in it.
start_server() {
    local out=$1
    shift
    : >"$out"
    if [[ -n ${START_CG:-} ]]; then
        (
            echo "$BASHPID" >"$START_CG/cgroup.procs" || exit 97
            exec "$BIN/pay402-load-server" --listen 127.0.0.1:0 "$@"
        ) >"$out" 2>&1 &
    else
        "$BIN/pay402-load-server" --listen 127.0.0.1:0 "$@" >"$out" 2>&1 &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for ((i = 0; i < 600; i++)); do
        SERVER_ADDR=$(sed -n 's/^listening //p' "$out")
        [[ -n $SERVER_ADDR ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || die "server $* exited: $(tail -5 "$out")"
        sleep 0.1
    done
    die "server $* did not start: $(tail -5 "$out")"
}

# wait_http URL: until it answers at all (any status).
wait_http() {
    local i
    for ((i = 0; i < 600; i++)); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    die "$1 never answered"
}

# wrk_run OUT SECONDS CONNECTIONS URL [PAYLOADS] -- with the -H headers in
# the global array HDR.
wrk_run() {
    local out=$1 secs=$2 conns=$3 url=$4 payloads=${5:-}
    local args=(-t1 -c"$conns" -d"${secs}s" --timeout 5s -s "$HERE/load.lua")
    local h
    for h in "${HDR[@]}"; do args+=(-H "$h"); done
    if [[ -n $payloads ]]; then
        timeout $((secs + 60)) wrk "${args[@]}" "$url" -- "$CAP" "$payloads" >"$out" 2>&1
    else
        timeout $((secs + 60)) wrk "${args[@]}" "$url" -- "$CAP" >"$out" 2>&1
    fi
    grep -q '^RESULT ' "$out" || die "wrk on $url: $(tail -5 "$out")"
}

# result FILE...: over the wrk outputs given, sets R_RPS and R_REQ (sums),
# R_P50 and R_P99 (the largest, in µs), R_NON2XX and R_ERR (sums).
result() {
    local f line kv
    R_RPS=0 R_REQ=0 R_P50=0 R_P99=0 R_NON2XX=0 R_ERR=0
    for f in "$@"; do
        line=$(sed -n 's/^RESULT //p' "$f")
        local requests=0 duration_us=0 rps=0 p50_us=0 p99_us=0 non2xx=0 errors=0
        for kv in $line; do local "${kv%%=*}=${kv#*=}"; done
        R_RPS=$(awk -v a="$R_RPS" -v b="$rps" 'BEGIN { printf "%.1f", a + b }')
        R_REQ=$((R_REQ + requests))
        if ((p50_us > R_P50)); then R_P50=$p50_us; fi
        if ((p99_us > R_P99)); then R_P99=$p99_us; fi
        R_NON2XX=$((R_NON2XX + non2xx))
        R_ERR=$((R_ERR + errors))
    done
}

# bad EXPECT402: what the "refused" column shows: non-2xx answers plus
# socket errors; on a 402 row, socket errors and answers other than 402
# (wrk counts every 402 as non-2xx; a row whose answers are all 402 shows
# only its socket errors).
bad() {
    if [[ $1 == 402 ]]; then
        echo "$((R_ERR + R_REQ - R_NON2XX)) (all others 402)"
    else
        echo "$((R_NON2XX + R_ERR))"
    fi
}

ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
kilo() { awk -v r="$1" 'BEGIN { printf "%.0f", r }'; }

declare -A RPS
ROWS13="$WORK/rows13.md"
ROWS14="$WORK/rows14.md"
: >"$ROWS13"
: >"$ROWS14"

# pairs KEY URL_A HEADER_A URL_B HEADER_B: LOAD_PAIRS alternating runs of
# LOAD_PAIR_SECS on A then B (a header may be empty); PAIR[KEY] is the
# median of the ratios B / A, PAIR_ALL[KEY] every ratio in order.
declare -A PAIR PAIR_ALL
pairs() {
    local key=$1 url_a=$2 hdr_a=$3 url_b=$4 hdr_b=$5 i a b list=()
    log "pairs $key: $PAIRS x (${PAIR_SECS}s A, ${PAIR_SECS}s B)"
    for ((i = 0; i < PAIRS; i++)); do
        HDR=()
        [[ -n $hdr_a ]] && HDR=("$hdr_a")
        wrk_run "$WORK/pair.a.out" "$PAIR_SECS" "$CONNS" "$url_a"
        result "$WORK/pair.a.out"
        a=$R_RPS
        HDR=()
        [[ -n $hdr_b ]] && HDR=("$hdr_b")
        wrk_run "$WORK/pair.b.out" "$PAIR_SECS" "$CONNS" "$url_b"
        result "$WORK/pair.b.out"
        b=$R_RPS
        list+=("$(ratio "$b" "$a")")
    done
    HDR=()
    PAIR_ALL[$key]="${list[*]}"
    PAIR[$key]=$(printf '%s\n' "${list[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
}

# measure KEY LABEL NOTE URL [PAYLOADS WARM_PAYLOADS]: warm-up, then one
# measured run with $CONNS connections; appends a row to $ROWS13. A KEY
# ending in _challenge expects 402 answers.
measure() {
    local key=$1 label=$2 note=$3 url=$4 payloads=${5:-} warm=${6:-} expect=
    if [[ $key == *_challenge ]]; then expect=402; fi
    log "$label: warm-up ${WARMUP}s"
    wrk_run "$WORK/warm.out" "$WARMUP" "$CONNS" "$url" "$warm"
    log "$label: ${DURATION}s at $CONNS connections"
    wrk_run "$WORK/$key.out" "$DURATION" "$CONNS" "$url" "$payloads"
    result "$WORK/$key.out"
    RPS[$key]=$R_RPS
    if [[ -n $payloads ]] && ((R_NON2XX > 0)); then
        note="$note; **payloads ran out: rerun with a larger LOAD_X402_RATE**"
        log "WARNING: $label: payloads ran out; rerun with a larger LOAD_X402_RATE"
    fi
    log "$label: $R_RPS req/s, p50 $(ms "$R_P50") ms, p99 $(ms "$R_P99") ms, refused/errors $(bad "$expect")"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$(kilo "$R_RPS")" \
        "$(ms "$R_P50")" "$(ms "$R_P99")" "$(bad "$expect")" "$note" >>"$ROWS13"
}

# measure_pair KEY LABEL STORE INSTANCES URL_A URL_B [x402]: two wrk
# processes (-t1, $CONNS/2 connections each) at once, on URL_A and URL_B
# (the same URL for one instance); x402 runs sign fresh payloads first.
# While they run, the CPU time of the instances ($PIDS14), the PostgreSQL
# cluster ($PG_PID14, with its backends), the two wrk and the whole machine
# is sampled (benches/load/cpu.py) over the measured window, and reported
# per request. $CFG14 describes the instances (threads, pool, quota);
# with a CPU quota, $CGS14 holds their cgroups (their cpu.stat is sampled
# over the same window) and $QUOTA14 their quota in CPUs. $RATE14, when
# set, replaces LOAD_X402_RATE for the payloads of this row.
measure_pair() {
    local key=$1 label=$2 store=$3 n=$4 url_a=$5 url_b=$6 x402=${7:-}
    local half=$((CONNS / 2)) pa= pb= wa= wb= expect=402
    if [[ -n $x402 ]]; then expect=; fi
    if [[ -n $x402 ]]; then
        local rate=${RATE14:-$X402_RATE}
        local count=$((rate * DURATION / 2)) wcount=$((rate * WARMUP / 2))
        pa="$WORK/$key.a.pay" pb="$WORK/$key.b.pay" wa="$WORK/$key.wa.pay" wb="$WORK/$key.wb.pay"
        "$BIN/pay402-load-prep" x402 --url "$url_a" "$wa:$wcount" "$wb:$wcount" "$pa:$count" \
            "$pb:$count" 2>>"$WORK/prep.log" || die "signing payloads: $(tail -3 "$WORK/prep.log")"
    fi
    log "$label ($store, $n instance(s), $CFG14): warm-up ${WARMUP}s"
    wrk_run "$WORK/warm.a.out" "$WARMUP" "$half" "$url_a" "$wa" &
    local w1=$!
    wrk_run "$WORK/warm.b.out" "$WARMUP" "$half" "$url_b" "$wb" &
    local w2=$!
    wait "$w1" || die "warm-up wrk failed"
    wait "$w2" || die "warm-up wrk failed"
    log "$label ($store, $n instance(s), $CFG14): ${DURATION}s, 2 x $half connections"
    wrk_run "$WORK/$key.a.out" "$DURATION" "$half" "$url_a" "$pa" &
    w1=$!
    wrk_run "$WORK/$key.b.out" "$DURATION" "$half" "$url_b" "$pb" &
    w2=$!
    # The CPU window: from 0.5 s after the start to about 1.5 s before the
    # end (wrk must still be running at its end); its length is taken from
    # the machine's own tick count.
    local pg=${PG_PID14:-} window=$((DURATION - 2)) c0 c1
    local groups=("inst=$(IFS=,; echo "${PIDS14[*]}")" "pg=$pg" "wrk=$w1,$w2") t0 t1
    sleep 0.5
    c0=$(python3 "$HERE/cpu.py" "${groups[@]}")
    t0=$(cgstat14)
    sleep "$window"
    c1=$(python3 "$HERE/cpu.py" "${groups[@]}")
    t1=$(cgstat14)
    wait "$w1" || die "wrk failed"
    wait "$w2" || die "wrk failed"
    result "$WORK/$key.a.out" "$WORK/$key.b.out"
    RPS[$key]=$R_RPS
    if [[ -n $x402 ]] && ((R_NON2XX > 0)); then
        log "WARNING: $label: payloads ran out; rerun with a larger LOAD_X402_RATE"
    fi
    # µs of CPU per request for each group, the machine's idle share, the
    # CPU each instance used (CPUs: CPU seconds per second of the window)
    # and, under a quota, the share of its cgroups' scheduler periods
    # (with runnable threads) that ended throttled.
    local cpu
    cpu=$(awk -v a="$c0" -v b="$c1" -v rps="$R_RPS" -v cpus="$(nproc)" -v hz="$(getconf CLK_TCK)" \
        -v ninst="$n" -v t0="$t0" -v t1="$t1" '
        BEGIN {
            n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); A[kv[1]] = kv[2] }
            n = split(b, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); B[kv[1]] = kv[2] }
            secs = (B["all"] - A["all"]) / hz / cpus
            req = rps * secs; us = 1e6 / hz
            if (req <= 0) req = 1
            share = (B["inst"] - A["inst"]) / hz / secs / ninst
            split(t0, p, " "); split(t1, q, " ")
            thr = (t0 == "") ? "—" : ((q[1] > p[1]) ? sprintf("%.0f", 100 * (q[2] - p[2]) / (q[1] - p[1])) : "0")
            printf "%.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %s", (B["inst"] - A["inst"]) * us / req,
                (B["pg"] - A["pg"]) * us / req, (B["wrk"] - A["wrk"]) * us / req,
                (B["busy"] - A["busy"]) * us / req,
                100 - 100 * (B["busy"] - A["busy"]) / (B["all"] - A["all"]), share, thr
        }')
    log "$label ($store, $n): $R_RPS req/s, p50 $(ms "$R_P50") ms, p99 $(ms "$R_P99") ms, refused/errors $(bad "$expect"); CPU µs/req instances | PostgreSQL | wrk | machine | idle % | CPUs used per instance | periods throttled %: $cpu"
    if [[ -n ${QUOTA14:-} ]]; then
        # The quota bounds the instances only if they reach it.
        awk -v c="$cpu" -v q="$QUOTA14" 'BEGIN { n = split(c, f, " [|] "); exit !(f[6] >= 0.85 * q) }' ||
            log "WARNING: $label: the instances used less than 85 % of their quota of $QUOTA14 CPU: they were not the bottleneck"
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$store" "$n" "$CFG14" \
        "$(kilo "$R_RPS")" "$(ms "$R_P50")" "$(ms "$R_P99")" "$(bad "$expect")" "$cpu" >>"$ROWS14"
}

# cgstat14: "PERIODS THROTTLED" summed over the cgroups in CGS14 (nothing
# when there are none).
cgstat14() {
    ((${#CGS14[@]} > 0)) || return 0
    local d k v p=0 t=0
    for d in "${CGS14[@]}"; do
        while read -r k v; do
            case $k in
            nr_periods) p=$((p + v)) ;;
            nr_throttled) t=$((t + v)) ;;
            esac
        done <"$d/cpu.stat"
    done
    echo "$p $t"
}

HDR=()

# ---------------------------------------------------------------- issue 13
if [[ $ONLY == all || $ONLY == 13 ]]; then
    # The bare handler; it stays up as the upstream of the proxies below.
    start_server "$WORK/bare.log" bare
    BARE_PID=$SERVER_PID BARE=$SERVER_ADDR
    measure bare "bare axum handler" "same handler as every row, no layer" "http://$BARE/resource"

    start_server "$WORK/l402.log" paywall --rails l402 --token-out "$WORK/l402.token"
    HDR=("Authorization: $(cat "$WORK/l402.token")")
    measure paywall_l402 "Paywall, L402 cached token" "one token on every request, key cached" \
        "http://$SERVER_ADDR/resource"
    # The same request (its 330-byte Authorization header, which the bare
    # handler ignores) without the layer: what the layer itself costs,
    # as the criterion benches measure it.
    measure bare_l402req "bare axum handler, the L402 row's request" \
        "same handler and request as the L402 row (Authorization header sent, ignored), no layer" \
        "http://$BARE/resource"
    pairs paywall "http://$BARE/resource" "${HDR[0]}" "http://$SERVER_ADDR/resource" "${HDR[0]}"
    HDR=()
    stop "$SERVER_PID"

    start_server "$WORK/x402.log" paywall --rails x402
    # Payloads live 60 s (the offer's maxTimeoutSeconds) and signing takes
    # time, so the run's payloads are sized from a first warm-up at
    # LOAD_X402_RATE: 1.5 x its rate (all answers if it ran out).
    "$BIN/pay402-load-prep" x402 --url "http://$SERVER_ADDR/resource" \
        "$WORK/x402.probe:$((X402_RATE * WARMUP))" 2>>"$WORK/prep.log" ||
        die "signing payloads: $(tail -3 "$WORK/prep.log")"
    log "Paywall, x402: sizing warm-up ${WARMUP}s"
    wrk_run "$WORK/probe.out" "$WARMUP" "$CONNS" "http://$SERVER_ADDR/resource" "$WORK/x402.probe"
    result "$WORK/probe.out"
    rate=$(awk -v r="$R_RPS" -v q="$R_REQ" -v n="$R_NON2XX" -v d="$WARMUP" \
        'BEGIN { p = (n > 0) ? r : (q - n) / d; printf "%d", (p > 1000 ? p : 1000) * 1.5 }')
    count=$((rate * DURATION)) wcount=$((rate * WARMUP))
    log "Paywall, x402: signing $count + $wcount payloads ($rate per second)"
    "$BIN/pay402-load-prep" x402 --url "http://$SERVER_ADDR/resource" \
        "$WORK/x402.warm:$wcount" "$WORK/x402.pay:$count" 2>>"$WORK/prep.log" ||
        die "signing payloads: $(tail -3 "$WORK/prep.log")"
    measure paywall_x402 "Paywall, x402 (stub facilitator)" \
        "a distinct pre-signed payment per request; memory store" \
        "http://$SERVER_ADDR/resource" "$WORK/x402.pay" "$WORK/x402.warm"
    stop "$SERVER_PID"

    start_server "$WORK/402.log" paywall --rails l402
    measure paywall_challenge "Paywall, 402 challenge (L402)" \
        "fresh simnet invoice + macaroon per request; every answer is a 402" \
        "http://$SERVER_ADDR/resource"
    stop "$SERVER_PID"

    # pay402 proxy: the release binary, SQLite store, simnet-rest wallet.
    PPORT=$(free_port) WPORT=$(free_port)
    cat >"$WORK/pay402.toml" <<EOF
[server]
listen = "127.0.0.1:$PPORT"
shutdown_grace_secs = 1

[store]
url = "sqlite://$WORK/proxy.sqlite"

[lightning]
kind = "simnet-rest"
listen = "127.0.0.1:$WPORT"
wallet_sats = 1000000000

[[services]]
name = "api"
upstream = "http://$BARE"
free_paths = ["/free"]
rails = ["l402"]
price = { sats = 10 }
EOF
    "$BIN/pay402" proxy --config "$WORK/pay402.toml" >"$WORK/proxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_http "http://127.0.0.1:$PPORT/healthz"
    wait_http "http://127.0.0.1:$WPORT/v1/getinfo"
    log "pay402 proxy: buying and using $TOKENS L402 tokens (stored in its SQLite store)"
    "$BIN/pay402-load-prep" l402-tokens --url "http://127.0.0.1:$PPORT/resource" \
        --wallet "http://127.0.0.1:$WPORT" --n "$TOKENS" --concurrency 50 \
        --out "$WORK/proxy.token" 2>>"$WORK/prep.log" ||
        die "buying tokens: $(tail -3 "$WORK/prep.log")"
    tail -1 "$WORK/prep.log" >&2
    stored=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("select count(*) from pay402_l402_tokens").fetchone()[0])' "$WORK/proxy.sqlite" 2>/dev/null || echo "?")
    measure proxy_free "pay402 proxy, free path" "proxy → bare upstream, no payment" \
        "http://127.0.0.1:$PPORT/free"
    HDR=("Authorization: $(cat "$WORK/proxy.token")")
    measure proxy_l402 "pay402 proxy, L402 cached token" "$stored tokens in its store; one presented on every request" \
        "http://127.0.0.1:$PPORT/resource"
    PROXY_HDR=${HDR[0]}
    HDR=()
    PROXY_HWM=$(awk '/VmHWM/ { print $2 }' "/proc/$PROXY_PID/status")
    PROXY_RSS=$(awk '/VmRSS/ { print $2 }' "/proc/$PROXY_PID/status")
    pairs proxy "http://127.0.0.1:$PPORT/free" "" "http://127.0.0.1:$PPORT/resource" "$PROXY_HDR"

    for workers in 1 auto; do
        NPORT=$(free_port)
        mkdir -p "$WORK/nginx-$workers"
        cat >"$WORK/nginx-$workers/nginx.conf" <<EOF
worker_processes $workers;
pid $WORK/nginx-$workers/nginx.pid;
error_log $WORK/nginx-$workers/error.log warn;
events { worker_connections 1024; }
http {
    access_log $WORK/nginx-$workers/access.log;
    client_body_temp_path $WORK/nginx-$workers/body;
    proxy_temp_path $WORK/nginx-$workers/proxy;
    upstream bare { server $BARE; keepalive 64; }
    server {
        listen 127.0.0.1:$NPORT;
        location / {
            proxy_pass http://bare;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        nginx -p "$WORK/nginx-$workers" -c "$WORK/nginx-$workers/nginx.conf" -g 'daemon off;' \
            >"$WORK/nginx-$workers/out.log" 2>&1 &
        NGINX_PID=$!
        PIDS+=("$NGINX_PID")
        wait_http "http://127.0.0.1:$NPORT/resource"
        measure "nginx_$workers" "nginx proxy_pass, worker_processes $workers" \
            "Debian nginx $(nginx -v 2>&1 | sed 's|.*/||'), upstream keepalive, access log on" \
            "http://127.0.0.1:$NPORT/resource"
        pairs "nginx_$workers" "http://127.0.0.1:$NPORT/resource" "" \
            "http://127.0.0.1:$PPORT/resource" "$PROXY_HDR"
        stop "$NGINX_PID"
    done
    stop "$PROXY_PID"
    stop "$BARE_PID"
fi

# ---------------------------------------------------------------- issue 14
if [[ $ONLY == all || $ONLY == 14 || $ONLY == 14q ]]; then
    # Every server gets one tokio worker thread by default: the machine has
    # 2 cores for the servers, PostgreSQL and the load generator together.
    # One instance is also measured with what two instances have together
    # (2 threads, a pool of 20), so that the ratio is not read as the gain
    # of a second process when it is the gain of more threads or
    # connections.
    PIDS14=()
    CGS14=()
    CFG14=
    QUOTA14=
    RATE14=
    # start14 NAME THREADS POOL ARGS...: one instance; appends its PID to
    # PIDS14. With QUOTA14 set (CPUs), in a new cgroup $CG14/NAME with that
    # quota per period, appended to CGS14; checked to hold every thread.
    start14() {
        local name=$1 threads=$2 pool=$3 cg=
        shift 3
        if [[ -n $QUOTA14 ]]; then
            cg="$CG14/$name"
            mkdir "$cg" || die "cannot create the cgroup $cg"
            awk -v q="$QUOTA14" -v p="$(cat "$cg/cpu.cfs_period_us")" 'BEGIN { printf "%d\n", q * p }' \
                >"$cg/cpu.cfs_quota_us" || die "cannot set the CPU quota of $cg"
            CGS14+=("$cg")
        fi
        START_CG=$cg TOKIO_WORKER_THREADS=$threads start_server "$WORK/$name.log" paywall --pool "$pool" "$@"
        PIDS14+=("$SERVER_PID")
        if [[ -n $cg ]]; then
            local t want=${cg#"$CG_CPU"}
            for t in "/proc/$SERVER_PID/task"/*/cgroup; do
                [[ $(awk -F: '$2 ~ /(^|,)cpu(,|$)/ { print $3 }' "$t" 2>/dev/null) == "$want" ]] ||
                    [[ ! -e $t ]] || die "thread ${t%/cgroup} of instance $SERVER_PID is not in $cg"
            done
        fi
    }
    stop14() {
        local pid cg
        for pid in "${PIDS14[@]}"; do stop "$pid"; done
        for cg in "${CGS14[@]}"; do rmdir "$cg" || die "cannot remove the cgroup $cg"; done
        PIDS14=()
        CGS14=()
    }
    # The quota rows need the cgroup v1 cpu controller, writable (root).
    CG_SKIP=
    CG_CPU=/sys/fs/cgroup/cpu
    if [[ $INSTANCE_CPU == none ]]; then
        CG_SKIP="LOAD_INSTANCE_CPU=none"
    elif ! awk -v q="$INSTANCE_CPU" -v c="$(nproc)" 'BEGIN { exit !(q + 0 == q && q >= 0.01 && 2 * q <= c) }'; then
        die "LOAD_INSTANCE_CPU=$INSTANCE_CPU: give CPUs per instance between 0.01 and half of the $(nproc) cores (or none)"
    elif [[ ! -w $CG_CPU/cgroup.procs || ! -e $CG_CPU/cpu.cfs_quota_us ]]; then
        CG_SKIP="no writable cgroup v1 cpu controller at $CG_CPU (cgroup v2 or not root)"
    elif ! mkdir "$CG_CPU/pay402-load.$$" 2>/dev/null; then
        CG_SKIP="cannot create the cgroup $CG_CPU/pay402-load.$$"
    else
        CG14="$CG_CPU/pay402-load.$$"
        if ! mkdir "$CG14/probe" 2>/dev/null || ! echo 10000 >"$CG14/probe/cpu.cfs_quota_us" 2>/dev/null; then
            CG_SKIP="cannot set a CPU quota in $CG14"
        fi
        rmdir "$CG14/probe" 2>/dev/null || true
    fi
    if [[ -n $CG_SKIP && $ONLY == 14q ]]; then
        die "LOAD_ONLY=14q runs only the CPU-quota rows, and they cannot run: $CG_SKIP"
    elif [[ -n $CG_SKIP ]]; then
        log "SKIPPING the CPU-quota rows of the instances table: $CG_SKIP; the rows without a quota still run"
    fi
    # postgres14 MODE K: a cluster (test settings or durable) with K
    # databases in PG14; its launcher's PID in PG_PID14.
    postgres14() {
        local mode=$1 k=$2 i
        : >"$WORK/pg.$mode.urls"
        "$BIN/pay402-load-prep" postgres --databases "$k" --durable "$mode" \
            >"$WORK/pg.$mode.urls" 2>"$WORK/pg.$mode.log" &
        PG_PID14=$!
        PIDS+=("$PG_PID14")
        for ((i = 0; i < 600; i++)); do
            [[ $(wc -l <"$WORK/pg.$mode.urls") -ge $k ]] && break
            kill -0 "$PG_PID14" 2>/dev/null || die "PostgreSQL did not start: $(tail -5 "$WORK/pg.$mode.log")"
            sleep 0.1
        done
        mapfile -t PG14 <"$WORK/pg.$mode.urls"
    }
    # row14 KEY PATH STORE N THREADS POOL RAILS DB [x402]: N instances
    # (THREADS tokio threads and a pool of POOL each, and the quota QUOTA14
    # each when set) on DB, measured.
    row14() {
        local key=$1 path=$2 label=$3 n=$4 threads=$5 pool=$6 rails=$7 db=$8 x402=${9:-} i
        local urls=()
        CFG14="$threads thread, pool $pool"
        ((threads > 1)) && CFG14="$threads threads, pool $pool"
        [[ -n $QUOTA14 ]] && CFG14="$CFG14, quota $QUOTA14 CPU"
        ((n > 1)) && CFG14="$CFG14 each"
        for ((i = 0; i < n; i++)); do
            start14 "$key.$i" "$threads" "$pool" --rails "$rails" --db "$db"
            urls+=("http://$SERVER_ADDR/resource")
        done
        measure_pair "$key" "$path" "$label" "$n" "${urls[0]}" "${urls[$((n - 1))]}" $x402
        stop14
    }
    # three_rows KEY PATH STORE RAILS DB_1 DB_2 DB_3 [x402]: PATH on one
    # instance (1 thread, pool 10) on DB_1, two (1 thread, pool 10 each) on
    # DB_2, and one with both's resources (2 threads, pool 20) on DB_3;
    # their req/s in RPS[KEY_1], RPS[KEY_2], RPS[KEY_1w].
    three_rows() {
        [[ $ONLY != 14q ]] || return 0
        row14 "$1_1" "$2" "$3" 1 1 10 "$4" "$5" "${8:-}"
        row14 "$1_2" "$2" "$3" 2 1 10 "$4" "$6" "${8:-}"
        row14 "$1_1w" "$2" "$3" 1 2 20 "$4" "$7" "${8:-}"
    }
    # quota_rows KEY PATH STORE RAILS DB_1 DB_2 DB_3 [x402]: the same three
    # rows (keys KEY_q1, KEY_q2, KEY_q1w) with a CPU quota: LOAD_INSTANCE_CPU
    # for each instance of the first two, twice that for the one with two
    # threads and a pool of 20 (the resources of two, CPU included). The
    # x402 payloads are signed for at most 1 paid request per 50 µs of
    # quota (a paid request costs an instance more than twice that).
    quota_rows() {
        [[ -z $CG_SKIP ]] || return 0
        local single=$INSTANCE_CPU double
        double=$(awk -v q="$INSTANCE_CPU" 'BEGIN { print 2 * q }')
        RATE14=$(awk -v q="$double" -v r="$X402_RATE" 'BEGIN { x = q * 20000; printf "%d", (x < r ? x : r) }')
        QUOTA14=$single
        row14 "$1_q1" "$2" "$3" 1 1 10 "$4" "$5" "${8:-}"
        row14 "$1_q2" "$2" "$3" 2 1 10 "$4" "$6" "${8:-}"
        QUOTA14=$double
        row14 "$1_q1w" "$2" "$3" 1 2 20 "$4" "$7" "${8:-}"
        QUOTA14=
        RATE14=
    }

    PG_PID14=
    if [[ $ONLY != 14q ]]; then
        row14 x402_mem "x402 paid" memory 1 1 10 x402 memory: x402
        row14 x402_sqlite "x402 paid" "SQLite (synchronous FULL)" 1 1 4 x402 \
            "sqlite://$WORK/x402.sqlite" x402
    fi

    # PostgreSQL with test settings (fsync, synchronous_commit off)...
    postgres14 off 12
    three_rows x402_off "x402 paid" "PostgreSQL, fsync off" x402 "${PG14[@]:0:3}" x402
    # The 402 path (L402 invoice + macaroon, x402 offer): writes nothing.
    three_rows c_off "402 challenge" "PostgreSQL, fsync off" l402,x402 "${PG14[@]:3:3}"
    quota_rows x402_off "x402 paid" "PostgreSQL, fsync off" x402 "${PG14[@]:6:3}" x402
    quota_rows c_off "402 challenge" "PostgreSQL, fsync off" l402,x402 "${PG14[@]:9:3}"
    stop "$PG_PID14"

    # ...and with PostgreSQL's durable defaults (what production runs).
    postgres14 on 6
    three_rows x402_on "x402 paid" "PostgreSQL, durable" x402 "${PG14[@]:0:3}" x402
    quota_rows x402_on "x402 paid" "PostgreSQL, durable" x402 "${PG14[@]:3:3}" x402
    stop "$PG_PID14"
    PG_PID14=
fi

# ---------------------------------------------------------------- report
elapsed=$(($(date -u +%s) - started_at))
echo
echo "Measured $(date -u -d "@$started_at" '+%Y-%m-%d %H:%M')–$(date -u '+%H:%M UTC') on $(nproc) cores ($(uname -m)); load average (1, 5, 15 min) before the runs $load_at_start, after them $(cut -d' ' -f1-3 /proc/loadavg); ${elapsed} s of runs; wrk -t1, ${DURATION} s per run after ${WARMUP} s of warm-up."
if [[ -s $ROWS13 ]]; then
    echo
    echo "| row | req/s | p50 ms | p99 ms | refused/errors | what |"
    echo "|---|---:|---:|---:|---:|---|"
    cat "$ROWS13"
    echo
    echo "Peak resident memory of pay402 proxy (VmHWM) after its runs: $((PROXY_HWM / 1024)) MiB ($PROXY_HWM kB; VmRSS at the end $((PROXY_RSS / 1024)) MiB), with $stored L402 tokens stored."
    echo
    echo "Ratio targets: the median of $PAIRS alternating pairs of ${PAIR_SECS} s runs (each pair's ratio in order), and the ratio of the table's rows above (one run each, minutes apart)."
    echo
    echo "| target | measured: median of pairs | the pairs | the rows | limit | met (median) |"
    echo "|---|---:|---|---:|---:|---|"
    tp() { # label pair-key rows-ratio limit
        local met
        met=$(awk -v v="${PAIR[$2]}" -v l="$4" 'BEGIN { print (v >= l) ? "yes" : "**no**" }')
        echo "| $1 | ${PAIR[$2]} | ${PAIR_ALL[$2]} | $3 | >= $4 | $met |"
    }
    tp "Paywall L402 cached ÷ bare axum, same request" paywall "$(ratio "${RPS[paywall_l402]}" "${RPS[bare_l402req]}")" 0.8
    tp "proxy L402 cached ÷ proxy free path" proxy "$(ratio "${RPS[proxy_l402]}" "${RPS[proxy_free]}")" 0.8
    tp "proxy L402 cached ÷ nginx (auto)" nginx_auto "$(ratio "${RPS[proxy_l402]}" "${RPS[nginx_auto]}")" 0.5
    tp "proxy L402 cached ÷ nginx (1 worker)" nginx_1 "$(ratio "${RPS[proxy_l402]}" "${RPS[nginx_1]}")" 0.5
    echo
    echo "| target | measured | limit | met |"
    echo "|---|---:|---:|---|"
    t() { # label value limit op
        local met
        met=$(awk -v v="$2" -v l="$3" -v op="$4" 'BEGIN { print ((op == ">=" ? v >= l : v < l) ? "yes" : "**no**") }')
        echo "| $1 | $2 | $4 $3 | $met |"
    }
    t "Paywall L402 cached ÷ bare axum without the Authorization header (rows)" "$(ratio "${RPS[paywall_l402]}" "${RPS[bare]}")" 0.8 ">="
    t "proxy L402 cached ÷ ngx_l402's 186 paid req/s" "$(ratio "${RPS[proxy_l402]}" 186)" 50 ">="
    t "Paywall L402 cached ÷ 186" "$(ratio "${RPS[paywall_l402]}" 186)" 50 ">="
    t "Paywall x402 ÷ 186" "$(ratio "${RPS[paywall_x402]}" 186)" 50 ">="
    t "proxy peak resident MiB" "$(awk -v k="$PROXY_HWM" 'BEGIN { printf "%.1f", k / 1024 }')" 64 "<"
fi
if [[ -s $ROWS14 ]]; then
    echo
    echo "Two wrk processes (-t1, $((CONNS / 2)) connections each) at once, both on the one instance or one on each of the two; req/s summed, p50/p99 the larger of the two; 'refused' counts non-2xx other than the expected 402s plus socket errors. CPU: µs of CPU time per request over about $((DURATION - 2)) s inside each run (utime + stime from /proc: the instances; the PostgreSQL cluster with every backend; the two wrk; the whole machine, other users included), and the machine's idle share then."
    echo
    echo "| path | store | instances | each instance | req/s | p50 ms | p99 ms | refused/errors | CPU µs/req: instances | PostgreSQL | wrk | machine | idle % | CPUs used per instance | periods throttled % |"
    echo "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$ROWS14"
    echo
    if [[ -n $CG_SKIP ]]; then
        echo "No CPU-quota rows: $CG_SKIP."
    else
        echo "Quota rows: each instance in a cgroup of its own (cgroup v1 cpu controller) with cpu.cfs_quota_us = $INSTANCE_CPU x cpu.cfs_period_us ($(cat "$CG_CPU/cpu.cfs_period_us") µs), twice that for the one instance with 2 threads and a pool of 20; PostgreSQL and wrk unlimited. 'CPUs used per instance': CPU seconds per second of the window, per instance; 'periods throttled': the share of the cgroups' scheduler periods with runnable threads that ended with the quota spent (cpu.stat nr_throttled ÷ nr_periods)."
    fi
    echo
    echo "| target | measured | limit | met |"
    echo "|---|---:|---|---|"
    # r14 KEY_A KEY_B: RPS[KEY_A] ÷ RPS[KEY_B], nothing if a row did not run.
    r14() {
        [[ -n ${RPS[$1]:-} && -n ${RPS[$2]:-} ]] || return 0
        ratio "${RPS[$1]}" "${RPS[$2]}"
    }
    t14() { # label value [limit]; a row without a value is left out
        [[ -n $2 ]] || return 0
        if [[ -n ${3:-} ]]; then
            echo "| $1 | $2 | >= $3 | $(awk -v v="$2" -v l="$3" 'BEGIN { print (v >= l ? "yes" : "**no**") }') |"
        else
            echo "| $1 | $2 | — | — |"
        fi
    }
    # ratios14 Q LABEL WIDE: two instances ÷ one of the rows keyed
    # PATH_Q1, PATH_Q2, PATH_Q1w (Q empty: the rows without a quota).
    ratios14() {
        local q=$1 label=$2 wide=$3 mode name
        for mode in off on; do
            name="fsync off"
            [[ $mode == on ]] && name="durable"
            t14 "x402 paid, $label: two instances ÷ one, PostgreSQL $name" "$(r14 "x402_${mode}_${q}2" "x402_${mode}_${q}1")" 1.6
            t14 "x402 paid, $label: two instances ÷ one with $wide, PostgreSQL $name" "$(r14 "x402_${mode}_${q}2" "x402_${mode}_${q}1w")"
        done
        t14 "402 challenge, $label: two instances ÷ one, PostgreSQL" "$(r14 "c_off_${q}2" "c_off_${q}1")"
        t14 "402 challenge, $label: two instances ÷ one with $wide" "$(r14 "c_off_${q}2" "c_off_${q}1w")"
    }
    ratios14 "" "no quota" "2 threads and pool 20"
    ratios14 q "quota $INSTANCE_CPU CPU per instance" "2 threads, pool 20 and twice the quota"
    t14 "x402 paid, PostgreSQL fsync off ÷ SQLite (one instance)" "$(r14 "x402_off_1" "x402_sqlite")"
    t14 "x402 paid, PostgreSQL durable ÷ SQLite (one instance)" "$(r14 "x402_on_1" "x402_sqlite")"
    t14 "x402 paid, PostgreSQL fsync off ÷ memory (one instance)" "$(r14 "x402_off_1" "x402_mem")"
fi


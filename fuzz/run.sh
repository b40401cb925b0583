#!/usr/bin/env bash
# Runs pay402's fuzz targets (docs/fuzzing.md). Used by `.ci/run` and `just fuzz`.
#
#   fuzz/run.sh [--seconds N] [--merge] [TARGET...]
#
# Builds every target once (cargo-fuzz, libFuzzer + AddressSanitizer, debug
# assertions and overflow checks on), then fuzzes each TARGET (default: all)
# for N seconds (default 20) with the limits below. New inputs go to a
# temporary directory, never into the repository, unless --merge is given:
# then fuzz/corpus/<target> is rewritten as the fewest inputs, old and new,
# that keep its edge coverage (libFuzzer -set_cover_merge, hit counts ignored
# to keep it small). Exit status 1 if any target crashed, leaked, ran out of
# memory or timed out; the reproducer is in fuzz/artifacts/<target>/.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$self")/.."

seconds=20
merge=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    -h|--help) sed -n '2,14p' "$self"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

# The instrumented build has its own target dir: it shares nothing with the
# workspace's and would only evict it.
export CARGO_TARGET_DIR="${PAY402_FUZZ_TARGET_DIR:-$HOME/.cache/pay402-fuzz-target}"
# libFuzzer's flags (-Zsanitizer, -Cpasses=sancov-module, ...) are unstable;
# stable rustc accepts them with RUSTC_BOOTSTRAP=1 (no nightly needed).
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# Per-target -max_len: a little above the parser's own input bound, so the
# bound itself is exercised, and at most 20 000 bytes where the bound is
# larger (256 KiB bodies, 200 000-digit transactions) to keep runs fast.
declare -A max_len=(
  [auth_header]=16400            # auth_header::MAX_HEADER_VALUE = 16 KiB
  [l402_challenge]=16400         # one header line: 16 KiB
  [l402_credential]=16400        # MAX_HEADER_VALUE
  [l402_macaroon]=8200           # MAX_MACAROON_BYTES = 8 KiB
  [bolt11]=7100                  # MAX_INVOICE_LEN = 7089
  [x402_headers]=16400           # header::MAX_HEADER_LEN = 16 KiB of base64
  [x402_payment_signature]=12300 # the JSON of a 16 KiB base64 header
  [x402_json]=20000              # bodies: bounded by the HTTP layer
  [x402_facilitator_request]=20000 # router body limit 64 KiB
  [x402_mock]=4200               # mock::MAX_TOKEN_LEN = 4096
  [bitreq_headers]=20000         # MAX_TX_HEX_LEN = 200 000
  [bitreq_transfer]=8400         # MAX_TRANSFER_LEN 8192 + Authorization 128
  [bitreq_rest]=20000            # rest::MAX_BODY_BYTES = 256 KiB
  [bitreq_channel]=20000         # rest::MAX_BODY_BYTES = 256 KiB
  [bitreq_onchain]=20000         # MAX_TX_HEX_LEN = 200 000
  [mpp_challenge]=20000          # mpp::challenge::MAX_CHALLENGE_HEADER = 64 KiB a line
  [mpp_credential]=20000         # credential::MAX_AUTHORIZATION_LEN ~ 88 KiB
  [offers]=20000                 # offer::MAX_BODY_BYTES = 64 KiB body + headers
)
# Every target is listed above: a new one must say its bound.
all=$(cd fuzz && cargo fuzz list)
for t in $all; do
  [ -n "${max_len[$t]:-}" ] || { echo "fuzz/run.sh: no max_len for target $t" >&2; exit 2; }
done
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<< "$(echo $all)"

echo "== cargo fuzz build (all targets)"
(cd fuzz && cargo fuzz build --debug-assertions)

# No input may use more than this: a parser whose memory grows faster than
# its bounded input is a finding, not a tuning problem.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=()
for t in "${targets[@]}"; do
  [ -n "${max_len[$t]:-}" ] || { echo "unknown fuzz target $t" >&2; exit 2; }
  echo "== fuzz $t (${seconds}s, max_len ${max_len[$t]})"
  mkdir -p "$tmp/$t" "fuzz/corpus/$t" "fuzz/regressions/$t"
  # First directory receives new inputs; the committed ones are only read.
  if (cd fuzz && cargo fuzz run --debug-assertions "$t" "$tmp/$t" "corpus/$t" "regressions/$t" -- \
      "${limits[@]}" -max_len="${max_len[$t]}" -max_total_time="$seconds" \
      -print_final_stats=1 2>"$tmp/$t.log"); then
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)" "$tmp/$t.log" | tr '\n' ' '
    echo
  else
    tail -n 60 "$tmp/$t.log"
    failed+=("$t")
    continue
  fi
  if [ "$merge" = 1 ]; then
    mkdir -p "$tmp/$t.min"
    (cd fuzz && cargo fuzz run --debug-assertions "$t" "$tmp/$t.min" "corpus/$t" "$tmp/$t" -- \
      -set_cover_merge=1 -use_counters=0 "${limits[@]}" -max_len="${max_len[$t]}" 2>"$tmp/$t.merge.log")
    rm -rf "fuzz/corpus/$t"
    mv "$tmp/$t.min" "fuzz/corpus/$t"
    echo "   corpus/$t: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sk "fuzz/corpus/$t" | cut -f1) KB"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "== fuzz ok: ${targets[*]}"

# pay402 recipes. `just` lists them.

# Use one persistent target dir across sessions and worktrees.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/pay402-target")

default:
    @just --list

# The main demo on embedded defaults (simnet, in-memory SQLite).
demo:
    cargo run --example demo

# The whole test suite (the README's second command).
test:
    cargo test --workspace

# What CI runs: fmt, clippy, fuzz (bounded), tests.
ci:
    bash .ci/run

# Tests of one crate: `just test-crate core`.
test-crate crate:
    cargo test -p pay402-{{crate}}

test-core:
    cargo test -p pay402-core

test-server:
    cargo test -p pay402-server

test-client:
    cargo test -p pay402-client

test-backends:
    cargo test -p pay402-backends

# All criterion benches (numbers go to docs/PERFORMANCE.md).
bench:
    cargo bench -p pay402-benches

# One bench target: `just bench-one l402`.
bench-one name:
    cargo bench -p pay402-benches --bench {{name}}

# The end-to-end load benchmark over loopback (wrk, nginx, PostgreSQL; about
# 5 minutes after the build): paste its tables into docs/PERFORMANCE.md.
# `just load 13` or `just load 14` runs one table.
load only="all":
    LOAD_ONLY={{only}} benches/load/run.sh

fmt:
    cargo fmt --all
    cargo fmt --manifest-path fuzz/Cargo.toml --all
    cargo fmt --manifest-path fuzz/seed-gen/Cargo.toml --all

# Fuzz every parser (or the named targets) for `seconds` each and merge the
# new inputs into the committed, minimised corpus: `just fuzz 300 x402_json`.
# Review `git status fuzz/corpus` before committing (docs/fuzzing.md).
fuzz seconds="60" *targets="":
    fuzz/run.sh --seconds {{seconds}} --merge {{targets}}

# List the fuzz targets.
fuzz-list:
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# The standalone paywalled API (simnet + LND-compatible REST face).
l402-server:
    cargo run --example l402_server

# Pay a URL: `just l402-client http://127.0.0.1:8402/hello`.
l402-client url:
    cargo run --example l402_client -- {{url}}

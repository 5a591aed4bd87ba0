#!/usr/bin/env bash
# Every benchmark behind docs/BENCHMARKS.md, in one run on this machine.
# Builds the CLI and the peers crate, fetches SmolLM2, synthesizes TinyLlama Q4_0.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
tiny="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/tinyllama-1.1b-q4_0.synth.gguf"
cargo build --release --quiet -p gguf-loader-cli
cargo build --release --quiet --manifest-path bench/peers/Cargo.toml --benches --bins
bin=./target/release/gguf-loader
[ -f "$tiny" ] || "$bin" synth --preset tinyllama-1.1b --type q4_0 -o "$tiny"
echo "== machine"; nproc; grep -m1 "model name" /proc/cpuinfo || true; uptime
echo "== open (criterion)"
cargo bench --quiet --manifest-path bench/peers/Cargo.toml --bench open -- --warm-up-time 1 --measurement-time 3 2>&1 | grep -E "^open/|time:"
python3 scripts/bench_gguf_py_open.py "$model" 3
echo "== decode to f16 (gguf-loader, memcpy, candle), then gguf-py"
cargo bench --quiet --manifest-path bench/peers/Cargo.toml --bench decode 2>&1 | grep -v "^$"
python3 scripts/bench_gguf_py_decode.py bench/peers/target/bench-decode.gguf 3
echo "== bench CLI on SmolLM2"
"$bin" bench "$model" --dtype f16
echo "== whole-model load"
for i in 1 2 3 4 5; do "$bin" load "$tiny" --json; done
for i in 1 2 3; do "$bin" load "$model" --json; done
python3 scripts/bench_load_peers.py "$model" 5
echo "== lazy"
"$bin" load "$tiny" --lazy --work-ms 30 | tail -n 1
"$bin" load "$tiny" --lazy --no-prefetch --work-ms 30 | tail -n 1

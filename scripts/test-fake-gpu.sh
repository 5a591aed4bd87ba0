#!/usr/bin/env bash
# The GPU paths' host code run against crates/gguf-loader-fake-cuda, a
# stand-in for the NVIDIA driver library that runs the decode kernels' host
# build on the CPU, asynchronously (a thread per stream, random delays), and
# checks every pointer, size and alignment the host code hands it; the kernels
# are compiled by the real NVRTC (fetched from PyPI). No GPU needed. It covers
# the library's GPU loads (every type and output, the real models, every
# staging mode, registration refused, lazy, progress, cancel), the CLI's
# --device cuda, the cuBLAS example, the Python package's GPU loads, DLPack
# capsules and GPU model, and the GPU forward pass (the stand-in also answers for cuBLAS's
# GEMM, and runs the forward kernels as written again in Rust, which its unit
# tests in the workspace's hold equal to the CUDA text run as host C++).
# scripts/gpu-check.sh runs the tests on a GPU. Expects the models in
# GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA and the Python package installed
# (scripts/test.sh does both).
set -euo pipefail
cd "$(dirname "$0")/.."
nvrtc="$(scripts/fetch-nvrtc.sh)"
fake="$(scripts/fake-cuda.sh)"
# The kernels go to a cache of this run's own: the first load compiles them,
# the others read the cache, so both paths run.
cache="$(mktemp -d)" work="$(mktemp -d)"
trap 'rm -rf "$cache" "$work"' EXIT
export LD_LIBRARY_PATH="$fake:$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GGUF_LOADER_REQUIRE_GPU=1 GGUF_LOADER_CUDA_CACHE="$cache"
cargo test --release -p gguf-loader --features cuda --test cuda "$@"
# A driver that cannot register host memory: --staging register falls back.
GL_FAKE_CUDA_REGISTER=0 cargo test --release -p gguf-loader --features cuda --test cuda "$@" every_type
cargo test --release -p gguf-loader-cli --features cuda --test device "$@"
# The cuBLAS example: a loaded weight multiplied in place.
cargo run --release -q -p gguf-loader --features cuda,internals --example cuda_cublas -- "$GGUF_LOADER_MODEL"
python3 -m pytest -q crates/gguf-loader-py/tests/test_load.py crates/gguf-loader-py/tests/test_model.py -k gpu
# The Python GPU check, as gpu-check.sh runs it: on the real models, and on a
# synthetic one (no tokenizer), as gpu-check.sh hands it its own; 8 tokens a
# timed generation (the stand-in's speed means nothing).
cargo run --release -q -p gguf-loader-cli -- synth --preset tiny-test --type q4_0 \
    -o "$work/tiny-q4_0.gguf" >/dev/null
N_GEN=8 python3 scripts/gpu-python-check.py "$GGUF_LOADER_MODEL" "$GGUF_LOADER_GEMMA" "$work/tiny-q4_0.gguf"
# The GPU forward pass (its kernels and cuBLAS's GEMM written again in the
# stand-in) against llama.cpp's logits and the CPU's; not the 1.1B-parameter
# stability run, too slow here. Last, so that a cargo test summary closes the
# log, as .ci/run says.
cargo test --release -p gguf-loader-llm --features cuda --test forward_cuda "$@" -- --skip tinyllama

#!/usr/bin/env bash
# Writes tests/golden/logits/{smollm2,gemma3}.{json,logits.gz}: llama.cpp's
# logits at every position of a few prompts (as token ids) and its greedy
# 32-token continuation, on the F16 GGUF that our own
# `gguf-loader convert --dtype f16` makes of each real model, so that both
# sides start from the same f16 weights. The forward-pass test
# (crates/gguf-loader-llm/tests/forward.rs) compares against these files.
#
# llama.cpp is the one scripts/llama_cpp_golden.sh builds (from the pinned
# llama-cpp-python sdist, into a cache outside the repository); this script
# asks it to build if needed and then calls the library through the sdist's
# ctypes bindings (scripts/llama_cpp_logits.py). Never run in CI or tests.
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh),
# LLAMA_CPP_CACHE (as llama_cpp_golden.sh), THREADS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/llama_cpp_golden.sh" --build
eval "$("$ROOT/scripts/llama_cpp_golden.sh" --print-env)"

smollm2="${GGUF_LOADER_MODEL:-$("$ROOT/scripts/fetch-model.sh" smollm2)}"
gemma="${GGUF_LOADER_GEMMA:-$("$ROOT/scripts/fetch-model.sh" gemma3)}"
(cd "$ROOT" && cargo build --release -p gguf-loader-cli --quiet)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$ROOT/target/release/gguf-loader" convert "$smollm2" --dtype f16 -o "$work/smollm2.f16.gguf" >&2
"$ROOT/target/release/gguf-loader" convert "$gemma" --dtype f16 -o "$work/gemma3.f16.gguf" >&2

LLAMA_CPP_LIB_PATH="$LLAMA_CPP_BUILD/bin" \
    "$LLAMA_CPP_VENV/bin/python" "$ROOT/scripts/llama_cpp_logits.py" \
    --bindings "$LLAMA_CPP_SRC/llama_cpp" \
    --version "$LLAMA_CPP_VERSION" --sdist-sha256 "$LLAMA_CPP_SDIST_SHA256" \
    --threads "${THREADS:-2}" \
    --out-dir "$ROOT/tests/golden/logits" \
    "smollm2=$work/smollm2.f16.gguf" "gemma3=$work/gemma3.f16.gguf"

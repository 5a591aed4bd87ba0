#!/usr/bin/env bash
# llama.cpp's own tokenizer tests (test-tokenizer-0): the vocabulary-only
# `models/ggml-vocab-*.gguf` files with their `.inp` (texts) and `.out`
# (expected token ids), taken from the llama.cpp vendored in the pinned
# llama-cpp-python sdist (scripts/llama_cpp_sdist.sh; downloaded once, or
# reused from scripts/llama_cpp_golden.sh's cache). Extracts them into a
# cache folder and prints its path on stdout; idempotent. Never committed.
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/vocab-tests
# The test crates/gguf-loader-llm/tests/vocab.rs reads it (or
# GGUF_LOADER_VOCAB_TESTS).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/llama_cpp_sdist.sh"
extract_models_files vocab-tests 'ggml-vocab-*'

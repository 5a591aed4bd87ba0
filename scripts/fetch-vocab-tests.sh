#!/usr/bin/env bash
# llama.cpp's own tokenizer tests (test-tokenizer-0): the vocabulary-only
# `models/ggml-vocab-*.gguf` files with their `.inp` (texts) and `.out`
# (expected token ids), taken from the llama.cpp vendored in the pinned
# llama-cpp-python sdist (scripts/llama_cpp_sdist.sh; downloaded once, or
# reused from scripts/llama_cpp_golden.sh's cache). Extracts them into a
# cache folder and prints its path on stdout; idempotent. Never committed.
#
# Also extracts llama.cpp's src/llama-vocab.cpp and src/unicode-data.cpp.
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/vocab-tests
# The test crates/gguf-loader-llm/tests/vocab.rs reads it (or
# GGUF_LOADER_VOCAB_TESTS).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/llama_cpp_sdist.sh"
out="$(extract_models_files vocab-tests 'ggml-vocab-*')"
# With them, llama.cpp's pre-tokenizer table and character categories
# (crates/gguf-loader-llm/src/tokenizer/pre_oracle.rs checks ours against
# them).
if [ ! -e "$out/.src-complete-$VERSION" ]; then
    fetch_sdist
    src="llama_cpp_python-$VERSION/vendor/llama.cpp/src"
    tmp="$(mktemp -d "$out/.src.XXXXXX")"
    tar -xzf "$SDIST_TARBALL" -C "$tmp" --strip-components=4 \
        "$src/llama-vocab.cpp" "$src/unicode-data.cpp"
    mv -f "$tmp/llama-vocab.cpp" "$tmp/unicode-data.cpp" "$out/"
    rm -rf "$tmp"
    touch "$out/.src-complete-$VERSION"
fi
echo "$out"

#!/usr/bin/env bash
# Writes tests/golden/llama_cpp_tokens.json: llama.cpp's tokenization and
# detokenization of fixed prompts with both real models' vocabularies
# (scripts/llama_cpp_tokens.py), for crates/gguf-loader-llm/tests/
# tokenizer_golden.rs. Uses the llama.cpp that scripts/llama_cpp_golden.sh
# builds from the pinned sdist (built once into the cache, about 15 minutes
# on 2 cores; never in CI or tests).
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh),
# LLAMA_CPP_CACHE.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/llama_cpp_sdist.sh"
"$ROOT/scripts/llama_cpp_golden.sh" --build
SRC="$CACHE/llama_cpp_python-$VERSION"
smollm2="${GGUF_LOADER_MODEL:-$("$ROOT/scripts/fetch-model.sh" smollm2)}"
gemma="${GGUF_LOADER_GEMMA:-$("$ROOT/scripts/fetch-model.sh" gemma3)}"
LLAMA_CPP_LIB_PATH="$CACHE/build/bin" \
    "$CACHE/venv/bin/python" "$ROOT/scripts/llama_cpp_tokens.py" \
    --bindings "$SRC/llama_cpp" \
    --version "$VERSION" --sdist-sha256 "$SDIST_SHA256" \
    --out "$ROOT/tests/golden/llama_cpp_tokens.json" \
    "smollm2=$smollm2" "gemma3=$gemma"

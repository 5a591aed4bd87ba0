#!/usr/bin/env bash
# Writes tests/golden/llama_cpp_ugm_tokens.json: llama.cpp's tokenization
# and detokenization with the `t5` (Unigram) vocabulary that llama.cpp's
# own test vocabularies hold, `ggml-vocab-nomic-bert-moe.gguf` (XLM-R's
# 250 048 tokens with SentencePiece's NFKC charsmap), which comes without
# `.inp` / `.out` files. The texts: scripts/llama_cpp_tokens.py's prompts,
# the llama-spm test's `.inp` texts (every add_special / parse_special
# combination) and seeded random texts of words, whitespace, compatibility
# forms the charsmap rewrites, scripts, emoji and special-token text; three
# variants of that vocabulary (flags off, no charsmap, user-defined tokens);
# and the same texts with the small Unigram vocabulary and hand-made
# charsmap of the fuzz seed fuzz/corpus/llm/seed-llama-ugm.gguf (committed,
# so that test never skips; scripts/gen_llm_fuzz_seeds.py writes it).
# crates/gguf-loader-llm/tests/tokenizer_golden.rs compares our Tokenizer
# with it. Uses the llama.cpp that scripts/llama_cpp_golden.sh builds from
# the pinned sdist (built once into the cache, about 15 minutes on 2
# cores; never in CI or tests).
#
#   scripts/llama_cpp_ugm_tokens.sh                 the committed golden file
#   scripts/llama_cpp_ugm_tokens.sh OUT N SEED      N random texts into OUT (a
#       larger differential run: GGUF_LOADER_UGM_GOLDEN=OUT cargo test -p
#       gguf-loader-llm --test tokenizer_golden nomic)
#
# Environment: LLAMA_CPP_CACHE, GGUF_LOADER_VOCAB_TESTS.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/llama_cpp_sdist.sh"
"$ROOT/scripts/llama_cpp_golden.sh" --build
SRC="$CACHE/llama_cpp_python-$VERSION"
vocab="${GGUF_LOADER_VOCAB_TESTS:-$("$ROOT/scripts/fetch-vocab-tests.sh")}"
out="${1:-$ROOT/tests/golden/llama_cpp_ugm_tokens.json}"
n="${2:-100}"
seed="${3:-1}"
LLAMA_CPP_LIB_PATH="$CACHE/build/bin" \
    "$CACHE/venv/bin/python" "$ROOT/scripts/llama_cpp_tokens.py" \
    --bindings "$SRC/llama_cpp" \
    --version "$VERSION" --sdist-sha256 "$SDIST_SHA256" \
    --generator scripts/llama_cpp_ugm_tokens.sh \
    --inp "$vocab/ggml-vocab-llama-spm.gguf.inp" \
    --random "$n" --seed "$seed" \
    --gguf-py "$SRC/vendor/llama.cpp/gguf-py" \
    --variant plain=nomic --variant nomap=nomic --variant user=nomic \
    --out "$out" \
    "nomic=$vocab/ggml-vocab-nomic-bert-moe.gguf" \
    "seed=$ROOT/fuzz/corpus/llm/seed-llama-ugm.gguf"

#!/usr/bin/env bash
# llama.cpp's own `llama-perplexity --kl-divergence-base` file, and the two
# engines read each other's.
#
# 1. Writes tests/golden/kld-smollm2.logits.gz: llama-perplexity's
#    log-probabilities file (`--kl-divergence-base`) of the F16 GGUF that
#    `gguf-loader convert --dtype f16` makes of SmolLM2, over the
#    repository's LICENSE-APACHE, 2 chunks of 16 tokens (14 positions,
#    gzip: 0.4 MB). The test `kl_divergence_against_llama_cpps_base`
#    (crates/gguf-loader-cli/tests/perplexity.rs) reads it: our header and
#    tokens equal to its bytes, our log-probabilities near its, our model's
#    KL divergence from it near 0.
# 2. With --cross (not for the golden file): on both real models, over all of
#    LICENSE-APACHE in chunks of 128, each engine writes a base file and
#    the other compares its own forward pass with it; prints llama.cpp's
#    and our statistics side by side (docs/BENCHMARKS.md).
#
# llama.cpp is the one scripts/llama_cpp_golden.sh builds (from the pinned
# llama-cpp-python sdist, into a cache outside the repository). Never run in
# CI or tests.
#
#   scripts/llama_cpp_kld.sh [--cross]
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh),
# LLAMA_CPP_CACHE (as llama_cpp_golden.sh), THREADS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TEXT="$ROOT/LICENSE-APACHE"
ppl_bin="$("$ROOT/scripts/llama_cpp_golden.sh" --perplexity)"
eval "$("$ROOT/scripts/llama_cpp_golden.sh" --print-env)"
(cd "$ROOT" && cargo build --release -p gguf-loader-cli --quiet)
ours="$ROOT/target/release/gguf-loader"
llama() { LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" "$ppl_bin" -t "${THREADS:-2}" "$@"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
f16() {
    local src="${!1}"
    [ -e "$work/$1.f16.gguf" ] ||
        "$ours" convert "$src" --dtype f16 -o "$work/$1.f16.gguf" >&2
    echo "$work/$1.f16.gguf"
}
smollm2="${GGUF_LOADER_MODEL:-$("$ROOT/scripts/fetch-model.sh" smollm2)}"
gemma3="${GGUF_LOADER_GEMMA:-$("$ROOT/scripts/fetch-model.sh" gemma3)}"

if [ "${1:-}" != --cross ]; then
    out="$ROOT/tests/golden/kld-smollm2.logits.gz"
    llama -m "$(f16 smollm2)" -f "$TEXT" -c 16 -b 16 --chunks 2 \
        --kl-divergence-base "$work/base" >"$work/out" 2>"$work/log" || {
        cat "$work/log" >&2
        exit 1
    }
    gzip -9n <"$work/base" >"$out"
    echo "wrote $out ($(stat -c %s "$out") bytes; llama-cpp-python $LLAMA_CPP_VERSION)"
    exit 0
fi

for name in smollm2 gemma3; do
    m="$(f16 "$name")"
    llama -m "$m" -f "$TEXT" -c 128 -b 128 --kl-divergence-base "$work/$name.llama" \
        >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    "$ours" perplexity "$m" -f "$TEXT" --ctx 128 --kl-divergence-base "$work/$name.ours" \
        >/dev/null 2>"$work/log" || { cat "$work/log" >&2; exit 1; }
    cmp -s -n $((20 + 4 * 128 * 17)) "$work/$name.llama" "$work/$name.ours" &&
        echo "$name: header and tokens: the same bytes"
    echo "== $name: gguf-loader's forward pass against llama.cpp's base file"
    "$ours" perplexity "$m" --kl-divergence-base "$work/$name.llama" --kl-divergence 2>/dev/null |
        grep -E '^(Mean|Maximum KLD|99.9%   KLD|Median  KLD|RMS|Same)'
    echo "== $name: llama.cpp's forward pass against gguf-loader's base file"
    llama -m "$m" -c 128 -b 128 --kl-divergence-base "$work/$name.ours" --kl-divergence 2>&1 |
        grep -E '^(Mean|Maximum KLD|99.9%   KLD|Median  KLD|RMS|Same)'
done

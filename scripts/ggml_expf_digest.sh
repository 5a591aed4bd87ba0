#!/usr/bin/env bash
# Prints the SHA-256 digests of ggml's CPU `e^x`, softmax sums and SiLU
# (`ggml_vec_soft_max_f32` with a max of 0, sixteen values a call, and
# `ggml_vec_swiglu_f32` with a gate of 1) over the values the unit test
# `expf_softmax_and_silu_are_ggmls` (crates/gguf-loader-llm/src/forward/
# ops.rs) sweeps, from the llama.cpp that scripts/llama_cpp_golden.sh
# builds, which a native build on an AVX-512 CPU compiles with its
# AVX-512 `ggml_v_expf`, every NaN written as one: the test holds ours to
# these digests. Never run
# in CI or tests (it needs the llama.cpp build). With --dump DIR it also
# writes the three files there.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/llama_cpp_golden.sh" --build
eval "$("$ROOT/scripts/llama_cpp_golden.sh" --print-env)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/sweep.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <string.h>
double ggml_vec_soft_max_f32(int n, float *y, const float *x, float max);
void ggml_vec_swiglu_f32(int n, float *y, const float *x, const float *g);
/* The sweep: every f32 bit pattern 4093 apart (all exponents, both signs,
 * NaNs and infinities), then -110 to 95 by 1/1024. */
#define WIDE (1u << 20)
#define DENSE (205 * 1024)
static float sweep(uint32_t i) {
    if (i < WIDE) {
        uint32_t b = i * 4093u;
        float x;
        memcpy(&x, &b, 4);
        return x;
    }
    return -110.0f + (float)(i - WIDE) / 1024.0f;
}
/* NaNs written as one NaN: Rust promises no NaN's bits. */
static void put32(const float *v, FILE *f) {
    for (int k = 0; k < 16; k++) {
        float w = v[k] != v[k] ? __builtin_nanf("") : v[k];
        fwrite(&w, 4, 1, f);
    }
}
int main(int argc, char **argv) {
    FILE *e = fopen(argv[1], "wb"), *s = fopen(argv[2], "wb"), *l = fopen(argv[3], "wb");
    float x[16], y[16], one[16];
    for (int k = 0; k < 16; k++) one[k] = 1.0f;
    for (uint32_t i = 0; i < WIDE + DENSE; i += 16) {
        for (int k = 0; k < 16; k++) x[k] = sweep(i + k);
        double sum = ggml_vec_soft_max_f32(16, y, x, 0.0f);
        put32(y, e);
        if (sum != sum) sum = __builtin_nan("");
        fwrite(&sum, 8, 1, s);
        ggml_vec_swiglu_f32(16, y, x, one);
        put32(y, l);
    }
    return fclose(e) | fclose(s) | fclose(l);
}
C
lib="$LLAMA_CPP_BUILD/bin"
cc -O1 "$work/sweep.c" -o "$work/sweep" -L"$lib" -lggml-cpu -lggml-base -Wl,-rpath,"$lib"
"$work/sweep" "$work/exp.bin" "$work/sums.bin" "$work/silu.bin"
if [ "${1:-}" = "--dump" ]; then
    cp "$work/exp.bin" "$work/sums.bin" "$work/silu.bin" "$2"
fi
for f in exp sums silu; do
    echo "$f $(sha256sum "$work/$f.bin" | cut -d' ' -f1)"
done

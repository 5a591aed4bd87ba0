#!/usr/bin/env bash
# Prints sizeof and the field offsets of every ggml block struct, as a C
# compiler lays out the given ggml-common.h: the numbers that
# crates/gguf-loader/tests/block_layouts.rs holds the Rust block structs
# (src/format/blocks.rs) against. Usage:
#   scripts/ggml-block-layouts.sh path/to/ggml/src/ggml-common.h
set -euo pipefail
header="$(realpath "${1:?usage: $0 path/to/ggml-common.h}")"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cat > "$dir/layouts.c" <<C
#define GGML_COMMON_DECL_C
#include <stddef.h>
#include <stdio.h>
#include "$header"
#define S(t) printf("%-14s size %3zu:", #t, sizeof(t));
#define F(t, f) printf(" %s = %zu", #f, offsetof(t, f));
#define E printf("\n");
int main(void) {
    S(block_q4_0) F(block_q4_0, d) F(block_q4_0, qs) E
    S(block_q4_1) F(block_q4_1, d) F(block_q4_1, m) F(block_q4_1, qs) E
    S(block_q5_0) F(block_q5_0, d) F(block_q5_0, qh) F(block_q5_0, qs) E
    S(block_q5_1) F(block_q5_1, d) F(block_q5_1, m) F(block_q5_1, qh) F(block_q5_1, qs) E
    S(block_q8_0) F(block_q8_0, d) F(block_q8_0, qs) E
    S(block_q8_1) F(block_q8_1, d) F(block_q8_1, s) F(block_q8_1, qs) E
    S(block_q1_0) F(block_q1_0, d) F(block_q1_0, qs) E
    S(block_q2_0) F(block_q2_0, d) F(block_q2_0, qs) E
    S(block_mxfp4) F(block_mxfp4, e) F(block_mxfp4, qs) E
    S(block_nvfp4) F(block_nvfp4, d) F(block_nvfp4, qs) E
    S(block_tq1_0) F(block_tq1_0, qs) F(block_tq1_0, qh) F(block_tq1_0, d) E
    S(block_tq2_0) F(block_tq2_0, qs) F(block_tq2_0, d) E
    S(block_q2_K) F(block_q2_K, scales) F(block_q2_K, qs) F(block_q2_K, d) F(block_q2_K, dmin) E
    S(block_q3_K) F(block_q3_K, hmask) F(block_q3_K, qs) F(block_q3_K, scales) F(block_q3_K, d) E
    S(block_q4_K) F(block_q4_K, d) F(block_q4_K, dmin) F(block_q4_K, scales) F(block_q4_K, qs) E
    S(block_q5_K) F(block_q5_K, d) F(block_q5_K, dmin) F(block_q5_K, scales) F(block_q5_K, qh) F(block_q5_K, qs) E
    S(block_q6_K) F(block_q6_K, ql) F(block_q6_K, qh) F(block_q6_K, scales) F(block_q6_K, d) E
    S(block_q8_K) F(block_q8_K, d) F(block_q8_K, qs) F(block_q8_K, bsums) E
    S(block_iq2_xxs) F(block_iq2_xxs, d) F(block_iq2_xxs, qs) E
    S(block_iq2_xs) F(block_iq2_xs, d) F(block_iq2_xs, qs) F(block_iq2_xs, scales) E
    S(block_iq2_s) F(block_iq2_s, d) F(block_iq2_s, qs) F(block_iq2_s, qh) F(block_iq2_s, scales) E
    S(block_iq3_xxs) F(block_iq3_xxs, d) F(block_iq3_xxs, qs) E
    S(block_iq3_s) F(block_iq3_s, d) F(block_iq3_s, qs) F(block_iq3_s, qh) F(block_iq3_s, signs) F(block_iq3_s, scales) E
    S(block_iq1_s) F(block_iq1_s, d) F(block_iq1_s, qs) F(block_iq1_s, qh) E
    S(block_iq1_m) F(block_iq1_m, qs) F(block_iq1_m, qh) F(block_iq1_m, scales) E
    S(block_iq4_nl) F(block_iq4_nl, d) F(block_iq4_nl, qs) E
    S(block_iq4_xs) F(block_iq4_xs, d) F(block_iq4_xs, scales_h) F(block_iq4_xs, scales_l) F(block_iq4_xs, qs) E
    return 0;
}
C
"${CC:-cc}" -std=c11 -o "$dir/layouts" "$dir/layouts.c"
"$dir/layouts"

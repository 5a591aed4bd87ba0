#!/usr/bin/env bash
# One-thread (and all-thread) decode of every type to f16 against a memcpy
# of the same output bytes, in one run (issue #13's table): a SmolLM2-shaped
# model of each type is synthesized (random weights, real shapes) and
# `gguf-loader bench` prints its rows. Run with the machine otherwise idle.
#
#   scripts/bench-types.sh [DTYPE]        # f16 (default), bf16 or f32
set -euo pipefail
cd "$(dirname "$0")/.."
dtype=${1:-f16}
cargo build --release -q -p gguf-loader-cli
bin=target/release/gguf-loader
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %10s %10s %8s %10s %10s %8s\n' type 1t_GB/s memcpy1 1t/cpy all_GB/s memcpyN N/cpy
for ty in q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq1_s iq1_m iq2_xxs iq2_xs iq2_s \
    iq3_xxs iq3_s iq4_nl iq4_xs tq1_0 tq2_0 mxfp4 nvfp4 q1_0 q2_0 f32 f16 bf16; do
    m=$dir/$ty.gguf
    "$bin" synth --preset smollm2-135m --type "$ty" -o "$m" >/dev/null
    # The type's own row (norms stay F32 and have a row of their own).
    row=$("$bin" bench "$m" --dtype "$dtype" | awk -v t="$(echo "$ty" | tr a-z A-Z)" '$1 == t')
    [ -n "$row" ] || row=$("$bin" bench "$m" --dtype "$dtype" | awk '$1 == "F32"')
    echo "$row" | awk -v t="$ty" '{printf "%-8s %10s %10s %8.0f%% %10s %10s %7.0f%%\n", t, $4, $5, 100*$4/$5, $6, $7, 100*$6/$7}'
    rm -f "$m"
done

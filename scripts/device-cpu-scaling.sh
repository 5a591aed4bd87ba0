#!/usr/bin/env bash
# Decoder scaling on a many-core machine (the lent device host: 16 cores),
# where two threads are not already at the memory wall as on the 2-vCPU VM.
# Needs, built on the development machine and carried as gpu-carry/:
#   gpu-carry/decode-bench  bench/peers' `decode` bench binary (stripped)
#   gpu-carry/gguf-loader   the CLI (stripped)
# Run from the repository root: scripts/device-cpu-scaling.sh
set -uo pipefail
c=${CARRY:-gpu-carry}
d=${TMPDIR:-/tmp}/gguf-scaling
mkdir -p "$d"
echo "== machine"; nproc; lscpu | grep -E "Model name|Thread|Core|Socket|L3|NUMA node\(" ; free -g | head -2
for t in ${THREADS:-2 16}; do
  echo "== decode bench, 128 Mi elements per type (256 MiB of f16), RAYON_NUM_THREADS=$t"
  GGUF_BENCH_DIR="$d" GGUF_BENCH_NO_CANDLE=1 GGUF_BENCH_ELEMENTS=134217728 \
    RAYON_NUM_THREADS=$t "$c/decode-bench" | grep -v "^synthetic"
done
echo "== TinyLlama-1.1B Q4_0 (synthesized)"
"$c/gguf-loader" synth --preset tinyllama-1.1b --type q4_0 -o "$d/tinyllama-q4_0.gguf" >/dev/null
for s in cached streaming; do
  for t in 2 16; do "$c/gguf-loader" bench "$d/tinyllama-q4_0.gguf" --threads $t --stores $s | tail -n 1; done
done
for s in cached streaming; do
  for t in 1 2 16; do
    for i in 1 2 3; do
      echo "load stores=$s threads=$t: $("$c/gguf-loader" load "$d/tinyllama-q4_0.gguf" --threads $t --stores $s --json | tr -d '\n' | grep -oE '"load_ms":[^,]*')"
    done
  done
done

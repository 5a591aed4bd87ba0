#!/usr/bin/env bash
# A dry run of the GPU check (gpu-carry/gpu-check.sh, with REHEARSAL=1) on
# this machine, against the stand-in driver library (crates/gguf-loader-fake-
# cuda, as scripts/test-fake-gpu.sh builds it) and NVRTC from PyPI: every
# step of the script, the real-model step with the pieces in gpu-models/
# included, runs as it will on the GPU machine, but slowly and with no GPU
# figures. Run scripts/gpu-build.sh (and scripts/gpu-models.sh) first; the
# report goes to $OUT (default: a fresh temporary folder) and stdout.
#
#   scripts/gpu-rehearse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x gpu-carry/gguf-loader ] || { echo "gpu-carry/ is missing: run scripts/gpu-build.sh first" >&2; exit 1; }
nvrtc="$(scripts/fetch-nvrtc.sh)"
fake="$(scripts/fake-cuda.sh)"
# As on the GPU machine: the carried copy, run from the repository root.
chmod +x gpu-carry/* gpu-carry/python/*
OUT="${OUT:-$(mktemp -d)}" REHEARSAL=1 CUDA_LIB="$fake" LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    GL_FAKE_CUDA_DELAY_US=20 bash gpu-carry/gpu-check.sh

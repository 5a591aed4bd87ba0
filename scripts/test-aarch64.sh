#!/usr/bin/env bash
# The aarch64 (NEON) build and tests, on an x86-64 Debian machine: cross-builds
# gguf-loader for aarch64-unknown-linux-gnu and runs its decoding tests under
# qemu user emulation; on an aarch64 machine it runs them natively.
#
# rustup's toolchain has no aarch64 std here, so the cross build uses
# Debian's `rustc-web` (bookworm: rustc 1.96 with std for other targets in
# `libstd-rust-web-dev:<arch>`) driven by rustup's cargo through RUSTC,
# linked by `aarch64-linux-gnu-gcc`. Missing packages are installed first
# (as root, through apt; quiet and idempotent). Where that is impossible
# (no root, no apt, no such packages, no network) the script prints
# "SKIPPED: <why>" and exits 0; build, lint or test failures fail it.
#
# Runs: the lib unit tests and the simd_legacy, simd_kquants, simd_ternary,
# simd_iquants, simd_fp4, simd_float, golden_legacy, golden_kquants,
# golden_iquants and decode tests (release); gguf-loader-llm's lib tests
# (its NEON kernels give the x86 kernels' bits) and its forward test
# (the logits and greedy tokens of llama.cpp on the real models, where
# GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA name them); then the lib and SIMD
# tests again on an emulated Cortex-A53 (no FEAT_FP16, so `half` converts
# f16 in software: the NEON f16 conversions are checked against that too),
# then clippy -D warnings for the aarch64 target (both crates).
#
#   scripts/test-aarch64.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/skippable.sh
. scripts/lib/skippable.sh

target=aarch64-unknown-linux-gnu
tests=(--lib --test simd_legacy --test simd_kquants --test simd_ternary
    --test simd_iquants --test simd_fp4 --test simd_float --test golden_legacy
    --test golden_kquants --test golden_iquants --test decode)
llm_tests=(-p gguf-loader-llm --lib --test forward)

# Runs `cargo "$@"`, printing the test binaries and their summaries (the
# log's end on failure).
run_tests() { run_summarized "aarch64 tests" cargo "$@"; }

if [ "$(uname -m)" = aarch64 ]; then
    echo "== native aarch64: cargo test"
    run_tests test -p gguf-loader --release "${tests[@]}"
    run_tests test --release "${llm_tests[@]}"
    echo "== aarch64 tests passed in $(elapsed)"
    exit 0
fi

[ "$(uname -m)" = x86_64 ] || skip "host $(uname -m) is neither x86_64 nor aarch64"

# What each package provides, checked before installing anything.
have_all() {
    [ -x /usr/bin/rustc ] &&
        [ -d /usr/lib/rustlib/$target/lib ] &&
        [ -d /usr/lib/rustlib/x86_64-unknown-linux-gnu/lib ] &&
        [ -x /usr/bin/clippy-driver ] &&
        command -v aarch64-linux-gnu-gcc >/dev/null &&
        [ -e /usr/aarch64-linux-gnu/lib/crt1.o ] &&
        [ -e /lib/ld-linux-aarch64.so.1 ] &&
        command -v qemu-aarch64-static >/dev/null
}

if ! have_all; then
    echo "== installing the aarch64 cross toolchain (Debian packages)"
    command -v apt-get >/dev/null || skip "no apt-get to install the cross toolchain"
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        skip "not root (and no password-less sudo) to install the cross toolchain"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)"; then
        "${sudo[@]}" dpkg --add-architecture arm64 || skip "dpkg --add-architecture arm64 failed"
    fi
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
    # rustc-web: rustc 1.96 (+ host std); libstd-rust-web-dev:arm64: the
    # aarch64 std; libc6:arm64 (pulled in by it anyway): the loader and libc
    # the tests run with; libc6-dev-arm64-cross: what the cross gcc links
    # against; rust-web-clippy: clippy for that rustc.
    pkgs=(rustc-web libstd-rust-web-dev:arm64 libc6:arm64 rust-web-clippy
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
    for p in "${pkgs[@]}"; do
        # (no `| grep -q`: an early grep exit would fail the pipe.)
        policy=$(apt-cache policy "$p" 2>/dev/null || true)
        [[ $policy == *"Candidate: "[0-9]* ]] ||
            skip "package $p is not available from apt (Debian bookworm or later needed)"
    done
    log=$(mktemp)
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
        tail -n 20 "$log"
        rm -f "$log"
        skip "apt-get install of the cross toolchain failed"
    fi
    rm -f "$log"
    have_all || skip "the installed packages lack an expected file (see have_all)"
    echo "== installed in $(elapsed)"
fi

# scripts/test-python-aarch64.sh wants the toolchain only.
[ -z "${AARCH64_SETUP_ONLY:-}" ] || exit 0

export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# No `-L /usr/aarch64-linux-gnu`: with it, qemu loads the cross package's
# ld.so, which then finds the (newer) multiarch libc6:arm64 libc.so.6 through
# /etc/ld.so.cache, and the mismatched pair hangs in the first
# pthread_create. Without it the loader and libc both come from libc6:arm64.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
echo "== $($RUSTC --version) for $target, $(qemu-aarch64-static --version | head -n 1)"

t_build=$(date +%s)
log=$(mktemp)
if ! cargo test -p gguf-loader --release --target $target "${tests[@]}" --no-run >"$log" 2>&1 ||
    ! cargo test --release --target $target "${llm_tests[@]}" --no-run >>"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    echo "== aarch64 build FAILED after $(elapsed)"
    exit 1
fi
rm -f "$log"
echo "== built in $(($(date +%s) - t_build)) s"

echo "== tests under qemu (cpu max)"
run_tests test -p gguf-loader --release --target $target "${tests[@]}"
echo "== gguf-loader-llm tests under qemu (cpu max)"
run_tests test --release --target $target "${llm_tests[@]}"

echo "== lib and SIMD tests under qemu (cpu cortex-a53: no FEAT_FP16, software f16 in half)"
QEMU_CPU=cortex-a53 run_tests test -p gguf-loader --release --target $target \
    --lib --test simd_legacy --test simd_kquants --test simd_ternary --test simd_iquants --test simd_fp4 --test simd_float

echo "== clippy for $target"
t_clippy=$(date +%s)
if ! /usr/bin/cargo-clippy clippy -q -p gguf-loader -p gguf-loader-llm --target $target --all-targets -- -D warnings; then
    echo "== aarch64 clippy FAILED after $(elapsed)"
    exit 1
fi
echo "== clippy clean in $(($(date +%s) - t_clippy)) s"

echo "== aarch64 tests passed in $(elapsed)"

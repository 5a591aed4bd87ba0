#!/usr/bin/env bash
# Windows and macOS, from an x86-64 Debian machine:
# - macOS: `cargo check` of the library, the llm crate, the CLI and the
#   Python package, every target, for aarch64-apple-darwin (no Apple linker
#   here, so nothing runs);
# - Windows: clippy of those four crates for x86_64-pc-windows-gnu
#   (MinGW) and x86_64-pc-windows-msvc (not linked); the library, the llm
#   crate and the CLI built for MinGW and their whole test suites run under
#   Wine, on the real models (GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA, and the
#   vocab tests and chat templates in the cache). The tests that need a
#   Unix (FIFOs, signals, `ulimit`, file modes, Python's `wait4`) are
#   compiled out there; the ones that call gguf-py skip.
#
# Wine 8 (Debian bookworm) lacks `ProcessPrng` (bcryptprimitives.dll), which
# Rust's std calls for random numbers since 1.78: a three-line stand-in DLL
# over `RtlGenRandom` is built with MinGW into the Wine prefix (this script's
# own, in the cache). Real Windows has the DLL.
#
# Missing packages (MinGW's gcc, Wine) and Rust targets are installed first
# (as root, through apt; rustup). Where that is impossible the script prints
# "SKIPPED: <why>" and exits 0; build or test failures fail it.
#
#   scripts/test-windows.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/skippable.sh
. scripts/lib/skippable.sh
[ "$(uname -m)" = x86_64 ] || skip "host $(uname -m) is not x86_64"

if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null; then
    [ "$(id -u)" = 0 ] || skip "MinGW or Wine missing, and not root to install them"
    command -v apt-get >/dev/null || skip "MinGW or Wine missing, and no apt-get"
    echo "== installing MinGW's gcc and Wine (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends gcc-mingw-w64-x86-64 wine64 wine) >/dev/null 2>&1 ||
        skip "apt-get could not install gcc-mingw-w64-x86-64 and wine"
fi
rustup target add x86_64-pc-windows-gnu x86_64-pc-windows-msvc aarch64-apple-darwin >/dev/null 2>&1 ||
    skip "rustup could not add the Windows and macOS targets"

crates=(-p gguf-loader -p gguf-loader-llm -p gguf-loader-cli)
echo "== macOS (aarch64-apple-darwin): cargo check, every target"
cargo check --quiet --target aarch64-apple-darwin --all-targets "${crates[@]}" -p gguf-loader-py
cargo clippy --quiet --target aarch64-apple-darwin --all-targets "${crates[@]}" -- -D warnings

echo "== Windows (x86_64-pc-windows-gnu): clippy, with and without cuda (the Python package: without)"
cargo clippy --quiet --target x86_64-pc-windows-gnu --all-targets "${crates[@]}" -p gguf-loader-py -- -D warnings
cargo clippy --quiet --target x86_64-pc-windows-gnu --all-targets "${crates[@]}" \
    --features gguf-loader/cuda,gguf-loader-llm/cuda,gguf-loader-cli/cuda -- -D warnings

echo "== Windows (x86_64-pc-windows-msvc): clippy (no MSVC linker here: nothing links)"
cargo clippy --quiet --target x86_64-pc-windows-msvc --all-targets "${crates[@]}" -p gguf-loader-py -- -D warnings

cache="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}"
export GGUF_LOADER_CACHE="$cache" WINEPREFIX="$cache/wine" WINEDEBUG=-all
mkdir -p "$WINEPREFIX"
wineboot -i >/dev/null 2>&1 || true
system32="$WINEPREFIX/drive_c/windows/system32"
[ -d "$system32" ] || skip "no Wine prefix at $WINEPREFIX"
if [ ! -f "$system32/bcryptprimitives.dll" ]; then
    stub=$(mktemp -d)
    cat >"$stub/prng.c" <<'EOF'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len); /* RtlGenRandom */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
EOF
    x86_64-w64-mingw32-gcc -shared -O2 -o "$system32/bcryptprimitives.dll" "$stub/prng.c" -ladvapi32
    rm -rf "$stub"
fi

# One wineserver for the whole run, kept up (`-p`) until the script ends.
# Without it, Wine starts a server that leaves as soon as its last client
# does (Debian's `wineserver` wrapper passes `-p0`), so each test binary
# connects just as the previous one's server shuts down; one that connects in that moment dies with "wine client
# error:0: recvmsg: Connection reset by peer" before its first test (three
# CI runs failed so, in a different test binary each time). Kept up, the
# server also spares each binary Wine's start-up. Should the server die
# all the same (Wine's own failure, not a test's), the tests run once more
# under a new one, and the log says so.
new_wineserver() {
    wineserver -k >/dev/null 2>&1 || true
    wineserver -p
}
new_wineserver
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT

echo "== Windows: cargo test under Wine"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
# Wine once failed to start a test's child process with Windows' "Internal
# error" (ERROR_INTERNAL_ERROR, 1359; verify's truncated-file test, which
# had passed in every run before and passed again): that reruns too.
RERUN_WHEN="^wine client error" RERUN_FIRST=new_wineserver \
    RERUN_ANYWAY='Os \{ code: 1359, kind: Uncategorized, message: "Internal error\." \}' \
    run_summarized "Windows tests" cargo test --release --target x86_64-pc-windows-gnu "${crates[@]}"
echo "== Windows tests passed, macOS checked, in $(elapsed)"

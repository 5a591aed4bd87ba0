#!/usr/bin/env bash
# The Python package on aarch64 Linux, from this x86-64 machine: cross-builds
# the abi3 wheel for aarch64-unknown-linux-gnu (maturin driving Debian's
# rustc-web and the aarch64 cross gcc, the toolchain scripts/test-aarch64.sh
# installs and which this script installs the same way when missing), unpacks
# Debian bookworm's arm64 CPython 3.11 and numpy, with the libraries they
# load, into a root of their own (cached in ~/.cache/gguf-loader), and runs
# the package's pytest suite there under qemu user emulation with the wheel,
# gguf-py and pytest (pure Python, from the host's site-packages) on its path.
# The NEON decoders then answer the suite's `dequantize` calls (bit for bit
# against gguf-py and ggml's golden values), its loads (against the x86
# CLI's `convert`), the malformed corpus and the big-endian files.
#
# Left out under emulation: the tests that start a second Python (the
# emulated interpreter cannot be exec'd without binfmt), the GPU tests, and
# the forward pass's long runs (test_model.py's logits against llama.cpp's
# and its lazy pieces, and the README's example, which generates 64 tokens:
# under qemu they took 12 minutes with the NEON kernels;
# scripts/test-aarch64.sh runs the forward pass's own test against
# llama.cpp's logits under qemu instead). test_model.py's errors and its
# Ctrl-C during a long prompt run.
# Where the toolchain or packages cannot be had, prints "SKIPPED: <why>" and
# exits 0, as scripts/test-aarch64.sh does.
#
#   scripts/test-python-aarch64.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/skippable.sh
. scripts/lib/skippable.sh
[ "$(uname -m)" = x86_64 ] || skip "host $(uname -m) is not x86_64"

# The cross toolchain (and arm64 as a dpkg architecture): test-aarch64.sh's
# set-up, run alone.
AARCH64_SETUP_ONLY=1 scripts/test-aarch64.sh | sed 's/^/  /'
[ -x /usr/bin/rustc ] && command -v aarch64-linux-gnu-gcc >/dev/null &&
    command -v qemu-aarch64-static >/dev/null || skip "no aarch64 cross toolchain"

# Debian's arm64 interpreter, stdlib, numpy and the libraries they load.
pkgs=(libc6 gcc-12-base libgcc-s1 libstdc++6 zlib1g libbz2-1.0 liblzma5 libzstd1
    libexpat1 libffi8 libssl3 libcrypt1 libdb5.3 libncursesw6 libtinfo6
    libreadline8 libsqlite3-0 libuuid1 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3
    libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libgfortran5 libblas3
    liblapack3 libpython3.11-minimal libpython3.11-stdlib python3.11-minimal python3-numpy)
versions=""
for p in "${pkgs[@]}"; do
    v=$(apt-cache policy "$p:arm64" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    [ -n "$v" ] && [ "$v" != "(none)" ] || skip "package $p:arm64 is not available from apt"
    versions+="$p=$v "
done
cache="${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/aarch64-python"
key=$(echo "$versions" | sha256sum | cut -c1-16)
root="$cache/root-$key"
if [ ! -x "$root/usr/bin/python3.11" ]; then
    echo "== unpacking Debian's arm64 CPython 3.11 and numpy into $root"
    rm -rf "$cache" && mkdir -p "$cache/debs" "$root.tmp"
    (cd "$cache/debs" && apt-get download -qq "${pkgs[@]/%/:arm64}" >/dev/null 2>&1) ||
        skip "apt-get download of the arm64 packages failed"
    for deb in "$cache"/debs/*.deb; do dpkg-deb -x "$deb" "$root.tmp"; done
    # numpy finds its BLAS and LAPACK through the alternatives' links.
    lib="$root.tmp/usr/lib/aarch64-linux-gnu"
    ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
    ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
    rm -rf "$cache/debs"
    mv "$root.tmp" "$root"
fi
python=(qemu-aarch64-static -L "$root" "$root/usr/bin/python3.11")
"${python[@]}" -c "import numpy, platform; print('==', platform.machine(), 'CPython', platform.python_version(), 'numpy', numpy.__version__)"

# The x86-64 CLI, whose outputs the suite compares with (built before the
# cross-build settings below apply).
[ -x target/release/gguf-loader ] || cargo build --release -p gguf-loader-cli
export GGUF_LOADER_CLI="$PWD/target/release/gguf-loader"

echo "== building the aarch64 wheel"
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR=target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
rm -rf target/wheels-aarch64
python3 -m maturin build --release --quiet -m crates/gguf-loader-py/Cargo.toml \
    --target aarch64-unknown-linux-gnu -o target/wheels-aarch64
wheel=$(ls target/wheels-aarch64/gguf_loader-*.whl)
echo "== $(basename "$wheel") after $(elapsed)"

# The wheel unpacked, and the host's pure-Python test dependencies linked.
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
python3 -m zipfile -e "$wheel" "$site"
host_site=$(python3 -c "import gguf, os; print(os.path.dirname(os.path.dirname(gguf.__file__)))")
for m in gguf yaml tqdm certifi pytest _pytest pluggy iniconfig pygments py.py packaging jinja2 markupsafe; do
    [ -e "$host_site/$m" ] && ln -s "$host_site/$m" "$site/$m"
done

echo "== pytest under qemu"
cd crates/gguf-loader-py/tests
PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "${python[@]}" -m pytest -q -p no:cacheprovider \
    -k "not gpu and not logits_and_greedy_tokens and not lazy_pieces and not never_crashes_the_interpreter and not generated_types_match and not new_interpreter and not cannot_be_allocated and not forked_child and not rayon_num_threads and not readme_example" "$@" .
echo "== aarch64 Python tests passed in $(elapsed)"

#!/usr/bin/env bash
# The Python package's tests: builds the wheel of crates/gguf-loader-py with
# maturin (release, abi3), installs it into this Python, and runs pytest on
# crates/gguf-loader-py/tests. They compare against gguf-py and the CLI's
# `convert` (built here if missing) on the fixtures, the malformed corpus
# and the real models (scripts/test.sh exports their paths); mypy checks the
# type stubs against the installed module.
#
#   scripts/test-python.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
[ -x target/release/gguf-loader ] || cargo build --release -p gguf-loader-cli
rm -rf target/wheels
"$PYTHON" -m maturin build --release --quiet -m crates/gguf-loader-py/Cargo.toml -o target/wheels \
    --interpreter "$PYTHON"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/gguf_loader-*.whl
export GGUF_LOADER_CLI="${GGUF_LOADER_CLI:-$PWD/target/release/gguf-loader}"
# From the tests' folder, so that the installed wheel (not the source tree's
# python/ folder, which lacks the native module) is what gets imported.
cd crates/gguf-loader-py/tests
# The type stubs against the installed module, and the package's own types.
"$PYTHON" -m mypy.stubtest gguf_loader
"$PYTHON" -m mypy --no-incremental -p gguf_loader
"$PYTHON" -m mypy --no-incremental typing_use.py  # the hints against ordinary uses
"$PYTHON" -m pytest -q -p no:cacheprovider "$@" .

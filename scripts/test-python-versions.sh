#!/usr/bin/env bash
# The Python package's one abi3 wheel (built by scripts/test-python.sh into
# target/wheels) on the oldest CPython it claims, 3.9, with the oldest numpy
# and ml_dtypes it claims, and on the newest CPython here, 3.13, with the
# newest numpy: each in a venv of its own under target/, with the pins of
# scripts/requirements-py<version>.txt, runs the whole pytest suite. A
# version that is not installed is skipped, saying so (the main run,
# scripts/test-python.sh, covers the default python3).
#
#   scripts/test-python-versions.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
wheel=$(ls target/wheels/gguf_loader-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || { echo "no wheel in target/wheels: run scripts/test-python.sh first" >&2; exit 1; }
export GGUF_LOADER_CLI="${GGUF_LOADER_CLI:-$root/target/release/gguf-loader}"
# `pythonX.Y` on PATH, else pyenv's installation of it (whose shim runs only
# the version pyenv has selected).
find_python() {
    local version=$1 p
    for p in "python$version" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/"python$version"; do
        if "$p" -c 'import sys' >/dev/null 2>&1; then
            echo "$p"
            return
        fi
    done
}
for version in 3.9 3.13; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "== CPython $version: not installed here, skipped"
        continue
    fi
    venv=target/pyvenv-$version
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "scripts/requirements-py$version.txt"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
    echo "== CPython $version: $("$venv/bin/python" -c 'import numpy, gguf_loader; print("numpy", numpy.__version__)')"
    # From the tests' folder, so that the installed wheel is what is imported.
    (cd crates/gguf-loader-py/tests && "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .)
done

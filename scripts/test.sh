#!/usr/bin/env bash
# The test command: installs the Python oracle (gguf-py), fetches the two real
# models (SmolLM2-135M, Gemma-3-270M), llama.cpp's vocab tests and chat
# templates into the cache, then runs every test of
# the workspace, then the Python package's (pytest; also on CPython 3.9 and 3.13
# where installed), then the `cuda` build's tests (on a machine without a GPU
# they compile every kernel with NVRTC fetched from PyPI and check that a GPU
# load is one clear error; scripts/gpu-check.sh runs them on a GPU), and the
# GPU loads' host code against a stand-in for the driver library.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
model="$(scripts/fetch-model.sh smollm2)"
gemma="$(scripts/fetch-model.sh gemma3)"
# llama.cpp's tokenizer tests (crates/gguf-loader-llm/tests/vocab.rs).
scripts/fetch-vocab-tests.sh >/dev/null
# WordPiece's Unicode tables are llama.cpp's (from the sdist just fetched).
python3 scripts/gen_unicode_tables.py --check
# llama.cpp's chat templates (crates/gguf-loader-llm/tests/chat_templates.rs).
scripts/fetch-chat-templates.sh >/dev/null
export GGUF_LOADER_MODEL="$model" GGUF_LOADER_GEMMA="$gemma" GGUF_LOADER_REQUIRE_MODEL=1
cargo test --workspace --release "$@"
# The Python package (crates/gguf-loader-py): wheel, install, pytest.
scripts/test-python.sh
# The same wheel on the oldest (3.9) and newest (3.13) CPython, where present.
scripts/test-python-versions.sh
# NVRTC from PyPI (no GPU needed): the `cuda` tests compile every kernel with
# it, with the options a GPU load uses.
nvrtc="$(scripts/fetch-nvrtc.sh)"
export LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" GGUF_LOADER_REQUIRE_NVRTC=1
cargo test --release -p gguf-loader --features cuda --lib --test cuda "$@"
cargo test --release -p gguf-loader-cli --features cuda --test device "$@"
cargo test --release -p gguf-loader-llm --features cuda --lib --test forward_cuda "$@"
# The GPU loads' host code against a stand-in for the driver (no GPU needed).
scripts/test-fake-gpu.sh "$@"

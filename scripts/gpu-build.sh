#!/usr/bin/env bash
# Builds, on the CPU machine, everything scripts/gpu-check.sh runs on the GPU
# machine (which has no Rust toolchain), stripped, into gpu-carry/ (ignored
# by git through .git/info/exclude; name it in the device tool's `carry`):
#   gguf-loader     the CLI with the `cuda` feature
#   cuda-tests      tests/cuda.rs (every type x three outputs, GPU vs CPU)
#   forward-tests   gguf-loader-llm's tests/forward_cuda.rs (GPU forward vs CPU,
#                   the stability check on the GPU)
#   cuda-bench      examples/cuda_bench.rs (the report)
#   cuda-cublas     examples/cuda_cublas.rs (a loaded weight through cuBLAS)
#   gpu-check.sh    the script itself
#   python/         the Python package's wheel (with `cuda`) and
#                   gpu-python-check.py
#
#   scripts/gpu-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu-carry
mkdir -p "$out" .git/info
grep -qx "$out/" .git/info/exclude 2>/dev/null || echo "$out/" >>.git/info/exclude

cargo build --release -p gguf-loader-cli --features cuda
cargo build --release -p gguf-loader --features cuda,internals --example cuda_bench --example cuda_cublas
test_bin=$(cargo test --release -p gguf-loader --features cuda --test cuda --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])')
[ -n "$test_bin" ] || { echo "no cuda test binary" >&2; exit 1; }
fwd_bin=$(cargo test --release -p gguf-loader-llm --features cuda --test forward_cuda --no-run \
    --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "forward_cuda":
        print(m["executable"])')
[ -n "$fwd_bin" ] || { echo "no forward_cuda test binary" >&2; exit 1; }

copy() { objcopy --strip-debug "$1" "$out/$2"; }
copy target/release/gguf-loader gguf-loader
copy "$test_bin" cuda-tests
copy "$fwd_bin" forward-tests
copy target/release/examples/cuda_bench cuda-bench
copy target/release/examples/cuda_cublas cuda-cublas
cp scripts/gpu-check.sh "$out/"
rm -rf "$out/python" && mkdir -p "$out/python"
python3 -m maturin build --release --quiet -m crates/gguf-loader-py/Cargo.toml -o "$out/python"
cp scripts/gpu-python-check.py "$out/python/"
du -sh "$out"

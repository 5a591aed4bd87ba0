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
# The path of the release test binary of `--test NAME` in PACKAGE (with `cuda`).
test_binary() {
    local package=$1 name=$2 path
    path=$(cargo test --release -p "$package" --features cuda --test "$name" --no-run \
        --message-format=json-render-diagnostics |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$name")
    [ -n "$path" ] || { echo "no $name test binary" >&2; exit 1; }
    echo "$path"
}
test_bin=$(test_binary gguf-loader cuda)
fwd_bin=$(test_binary gguf-loader-llm forward_cuda)

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

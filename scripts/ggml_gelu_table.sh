#!/usr/bin/env bash
# Prints the SHA-256 of ggml's GELU table (`ggml_table_gelu_f16`, 65536
# f16 values, little-endian, as `ggml_cpu_init` fills it) from the
# llama.cpp that scripts/llama_cpp_golden.sh builds. The unit test
# `gelu_table_is_ggmls` (crates/gguf-loader-llm/src/forward/ops.rs) holds
# our table to this digest. With --dump FILE it also writes the table.
# Never run in CI or tests (it needs the llama.cpp build).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/llama_cpp_golden.sh" --build
eval "$("$ROOT/scripts/llama_cpp_golden.sh" --print-env)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/table.c" <<'C'
#include <stdint.h>
#include <stdio.h>
extern uint16_t ggml_table_gelu_f16[1 << 16];
void ggml_cpu_init(void);
int main(void) {
    ggml_cpu_init();
    return fwrite(ggml_table_gelu_f16, 2, 1 << 16, stdout) == 1 << 16 ? 0 : 1;
}
C
lib="$LLAMA_CPP_BUILD/bin"
cc "$work/table.c" -o "$work/table" -L"$lib" -lggml-cpu -lggml-base -Wl,-rpath,"$lib"
"$work/table" > "$work/table.bin"
if [ "${1:-}" = "--dump" ]; then
    cp "$work/table.bin" "$2"
fi
sha256sum "$work/table.bin" | cut -d' ' -f1

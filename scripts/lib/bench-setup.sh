# shellcheck shell=bash
# Sourced by bench-tokenize.sh and bench-perplexity.sh, which time one of
# llama.cpp's tools against ours, after they have built that tool
# (scripts/llama_cpp_golden.sh --TOOL): sets llama.cpp's build environment
# (LLAMA_CPP_BUILD), builds our CLI ($bin), makes a work folder removed on
# exit ($work) and names the real models ($smollm2, $gemma3: from
# GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA, else fetched and cached).
eval "$(scripts/llama_cpp_golden.sh --print-env)"
cargo build --release --quiet -p gguf-loader-cli
bin=./target/release/gguf-loader
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
smollm2="${GGUF_LOADER_MODEL:-$(scripts/fetch-model.sh smollm2)}"
gemma3="${GGUF_LOADER_GEMMA:-$(scripts/fetch-model.sh gemma3)}"

#!/usr/bin/env bash
# The chat templates llama.cpp vendors (`models/templates/*.jinja`: Llama 3,
# Qwen, Gemma, DeepSeek, Mistral, gpt-oss, …), taken from the llama.cpp in
# the pinned llama-cpp-python sdist (scripts/llama_cpp_sdist.sh; downloaded
# once, or reused from the other scripts' cache). Extracts them into a cache
# folder and prints its path on stdout; idempotent. Never committed.
#
# Cache dir: ${GGUF_LOADER_CACHE:-$HOME/.cache/gguf-loader}/chat-templates
# The test crates/gguf-loader-llm/tests/chat_templates.rs reads it (or
# GGUF_LOADER_CHAT_TEMPLATES); scripts/chat_templates_golden.py renders
# them with Jinja2 for that test's golden file.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/llama_cpp_sdist.sh"
extract_models_files chat-templates 'templates/*.jinja'

#!/usr/bin/env bash
# Writes tests/golden/perplexity.json: llama.cpp's own `llama-perplexity` on
# the F16 GGUFs that `gguf-loader convert --dtype f16` makes of the two real
# models (so both sides start from the same weights), over the repository's
# LICENSE-APACHE, in chunks of 128 tokens: every chunk's running
# perplexity and the final estimate with its error, as llama.cpp prints
# them. The test `perplexity_matches_llama_cpp`
# (crates/gguf-loader-cli/tests/perplexity.rs) holds `gguf-loader
# perplexity` to this file.
#
# llama.cpp is the one scripts/llama_cpp_golden.sh builds (from the pinned
# llama-cpp-python sdist, into a cache outside the repository). Never run in
# CI or tests.
#
#   scripts/llama_cpp_perplexity.sh
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh),
# LLAMA_CPP_CACHE (as llama_cpp_golden.sh), THREADS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CTX=128
TEXT="LICENSE-APACHE"
ppl_bin="$("$ROOT/scripts/llama_cpp_golden.sh" --perplexity)"
eval "$("$ROOT/scripts/llama_cpp_golden.sh" --print-env)"

smollm2="${GGUF_LOADER_MODEL:-$("$ROOT/scripts/fetch-model.sh" smollm2)}"
gemma3="${GGUF_LOADER_GEMMA:-$("$ROOT/scripts/fetch-model.sh" gemma3)}"
(cd "$ROOT" && cargo build --release -p gguf-loader-cli --quiet)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for name in smollm2 gemma3; do
    "$ROOT/target/release/gguf-loader" convert "${!name}" --dtype f16 -o "$work/$name.f16.gguf" >&2
    # llama.cpp's defaults otherwise (as a user runs it); one sequence a
    # batch (-b = -c).
    LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" "$ppl_bin" -m "$work/$name.f16.gguf" \
        -f "$ROOT/$TEXT" -c "$CTX" -b "$CTX" -t "${THREADS:-2}" \
        >"$work/$name.out" 2>"$work/$name.log" || {
        cat "$work/$name.log" >&2
        exit 1
    }
    sha256sum "${!name}" | cut -d' ' -f1 >"$work/$name.source"
done

python3 - "$work" "$ROOT/tests/golden/perplexity.json" "$ROOT/$TEXT" "$TEXT" "$CTX" \
    "$LLAMA_CPP_VERSION" "$LLAMA_CPP_SDIST_SHA256" <<'EOF'
import hashlib, json, re, sys
from pathlib import Path

work, out, text, text_name, ctx, version, sdist = sys.argv[1:]
golden = {
    "about": "llama.cpp's llama-perplexity on `gguf-loader convert --dtype f16` "
    "of each real model, written by scripts/llama_cpp_perplexity.sh",
    "llama_cpp_python": version,
    "sdist_sha256": sdist,
    "text": text_name,
    "text_sha256": hashlib.sha256(Path(text).read_bytes()).hexdigest(),
    "ctx": int(ctx),
    "models": {},
}
for name in ("smollm2", "gemma3"):
    both = (Path(work) / f"{name}.out").read_text() + (Path(work) / f"{name}.log").read_text()
    chunks = [float(v) for v in re.findall(r"\[\d+\](\d+\.\d+),", both)]
    final = re.search(r"Final estimate: PPL = (\d+\.\d+) \+/- (\d+\.\d+)", both)
    if not chunks or not final:
        sys.exit(f"no perplexity in llama-perplexity's output for {name}:\n{both[-2000:]}")
    golden["models"][name] = {
        "source_sha256": (Path(work) / f"{name}.source").read_text().strip(),
        "chunk_ppl": chunks,
        "ppl": float(final.group(1)),
        "ppl_error": float(final.group(2)),
    }
Path(out).write_text(json.dumps(golden, indent=1) + "\n")
print(f"wrote {out}")
EOF

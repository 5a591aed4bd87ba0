#!/usr/bin/env bash
# Speed of `gguf-loader tokenize` against llama.cpp's `llama-tokenize` on the
# two real models: the whole process (open, build the tokenizer, encode,
# print), on 1 MB of text (the README repeated) and on one byte (what
# building the tokenizer costs), alternating, medians of REPS runs. Both
# give the same ids first (checked here: no BOS, special-token text and
# backslash escapes left as text). Never in CI: it builds llama-tokenize
# (scripts/llama_cpp_golden.sh --tokenize).
#
#   scripts/bench-tokenize.sh [REPS]      (default 5)
#
# Environment: GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
echo "load average at the start: $(cut -d" " -f1-3 /proc/loadavg)"
tok_bin="$(scripts/llama_cpp_golden.sh --tokenize)"
# shellcheck source=lib/bench-setup.sh
. scripts/lib/bench-setup.sh
python3 - "$work/1mb.txt" <<'PYEOF'
import sys
text = open("README.md", encoding="utf-8").read()
open(sys.argv[1], "w", encoding="utf-8").write((text * (1_000_000 // len(text) + 1))[:1_000_000])
PYEOF
printf 'a' >"$work/1b.txt"

theirs() {
    LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" "$tok_bin" -m "$1" -f "$2" --ids --log-disable \
        --no-bos --no-parse-special --no-escape 2>/dev/null
}
# ms CMD...: the milliseconds CMD took, its output discarded.
ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
for name in smollm2 gemma3; do
    model="${!name}"
    # The same ids: llama-tokenize prints a Python list.
    theirs "$model" "$work/1mb.txt" | python3 -c 'import ast, sys; print(" ".join(map(str, ast.literal_eval(sys.stdin.read().strip()))))' >"$work/theirs"
    "$bin" tokenize "$model" <"$work/1mb.txt" >"$work/ours"
    cmp -s "$work/theirs" "$work/ours" || { echo "$name: the ids differ from llama-tokenize's" >&2; exit 1; }
    for text in 1mb 1b; do
        ours=() llama=()
        for _ in $(seq "$reps"); do
            ours+=("$(ms "$bin" tokenize "$model" <"$work/$text.txt")")
            llama+=("$(ms theirs "$model" "$work/$text.txt")")
        done
        python3 - "$name" "$text" "$(wc -w <"$work/ours")" "${ours[*]}" "${llama[*]}" <<'PYEOF'
import statistics, sys
name, text, ids, ours, llama = sys.argv[1:]
o = statistics.median(map(int, ours.split()))
l = statistics.median(map(int, llama.split()))
what = f"1 MB ({ids} ids, the same as llama-tokenize's)" if text == "1mb" else "1 byte"
print(f"{name}, {what}: gguf-loader tokenize {o} ms, llama-tokenize {l} ms, "
      f"ratio {l / o:.2f} (runs: {ours} / {llama})")
PYEOF
    done
done
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# CPU speed of `gguf-loader generate` against llama.cpp's `llama-bench` on
# the same F16 GGUFs (what `gguf-loader convert --dtype f16` makes of the two
# real models), with the same threads: prompt processing (pp) and generation
# (tg) tokens/s, ours with f16 and with f32 weights. The runs alternate
# (llama.cpp, ours f16, ours f32, again) so that a change of load on the
# machine falls on all three; medians are printed, with the load average.
# Never in CI: it builds llama-bench (scripts/llama_cpp_golden.sh --bench).
#
#   scripts/bench-generate.sh [REPS]      (default 3)
#
# Environment: THREADS (2), PP (64 prompt tokens), TG (64 generated tokens),
# DEPTH (0: with DEPTH=N, generation is measured after an N-token prompt,
# llama-bench's `tg@dN` against ours after `--tokens` of N, and prompt
# processing is of those N tokens), GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA
# (else fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
threads="${THREADS:-2}"
pp="${PP:-64}"
tg="${TG:-64}"
depth="${DEPTH:-0}"
if [ "$depth" -gt 0 ]; then
    pp="$depth"
fi

echo "load average at the start: $(cut -d" " -f1-3 /proc/loadavg)"
llama_bench="$(scripts/llama_cpp_golden.sh --bench)"
cargo build --release --quiet -p gguf-loader-cli
bin=./target/release/gguf-loader
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Any ids will do for speed: 100, 137, 174, … (below 32000, inside both
# vocabularies)
tokens="$(python3 -c "print(','.join(str((100 + 37 * i) % 32000) for i in range($pp)))")"
results="$work/results.tsv"

# ours NAME GGUF DTYPE PROMPT N TESTS: `generate` on GGUF with DTYPE weights
# after PROMPT's tokens, N more (-n tg + 1: generation tokens/s times the
# tokens after the first); the figures of TESTS (pp, tg or both) to the
# results.
ours() {
    local name="$1" gguf="$2" dtype="$3" prompt="$4" n="$5" tests="$6" out
    if ! out="$(RAYON_NUM_THREADS="$threads" "$bin" generate "$gguf" --tokens "$prompt" \
        -n "$n" --ctx $((pp + n)) --dtype "$dtype" 2>&1 >/dev/null)"; then
        echo "generate failed on $name ($dtype): $out" >&2
        exit 1
    fi
    echo "$out" |
        sed -nE "s/.*prompt: [0-9]+ tokens, ([0-9.]+) tokens\/s; generation: ([0-9]+) tokens, ([0-9.]+) tokens\/s.*/$name\tours-$dtype\tpp\t\1\n$name\tours-$dtype\ttg\t\3/p" |
        grep -E $'\t'"($tests)"$'\t' >>"$results"
}

smollm2="${GGUF_LOADER_MODEL:-$(scripts/fetch-model.sh smollm2)}"
gemma3="${GGUF_LOADER_GEMMA:-$(scripts/fetch-model.sh gemma3)}"
for name in smollm2 gemma3; do
    f16="$work/$name-f16.gguf"
    "$bin" convert --dtype f16 -o "$f16" "${!name}" >/dev/null
    for _ in $(seq "$reps"); do
        {
            if [ "$depth" -gt 0 ]; then
                "$llama_bench" -m "$f16" -t "$threads" -p "$pp" -n 0 -r 1 -o csv
                "$llama_bench" -m "$f16" -t "$threads" -p 0 -n "$tg" -d "$depth" -r 1 -o csv |
                    tail -n +2
            else
                "$llama_bench" -m "$f16" -t "$threads" -p "$pp" -n "$tg" -r 1 -o csv
            fi
        } 2>/dev/null |
            python3 -c '
import csv, sys
for row in csv.DictReader(sys.stdin):
    test = "pp" if int(row["n_prompt"]) > 0 else "tg"
    print(sys.argv[1], "llama.cpp", test, row["avg_ts"], sep="\t")' "$name" >>"$results"
        for dtype in f16 f32; do
            if [ "$depth" -gt 0 ]; then
                ours "$name" "$f16" "$dtype" "$tokens" $((tg + 1)) "pp|tg"
            else
                # llama-bench's tg starts from an empty context: ours from
                # a prompt of one token, not after the pp prompt.
                ours "$name" "$f16" "$dtype" "$tokens" 2 pp
                ours "$name" "$f16" "$dtype" "${tokens%%,*}" $((tg + 1)) tg
            fi
        done
    done
done

echo "threads $threads, pp$pp, tg$tg, depth $depth, $reps runs each (medians, tokens/s); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    model, engine, test, ts = line.split("\t")
    runs[model, engine, test].append(float(ts))
print("| model | test | llama.cpp | ours f16 | ratio | ours f32 | ratio |")
print("|---|---|--:|--:|--:|--:|--:|")
for model in ("smollm2", "gemma3"):
    for test in ("pp", "tg"):
        med = {e: statistics.median(runs[model, e, test]) for e in ("llama.cpp", "ours-f16", "ours-f32")
               if runs[model, e, test]}
        ref = med.get("llama.cpp")
        cells = [f"{ref:.1f}" if ref else "-"]
        for e in ("ours-f16", "ours-f32"):
            v = med.get(e)
            cells += [f"{v:.1f}" if v else "-", f"{v / ref:.2f}" if v and ref else "-"]
        print(f"| {model} | {test} | " + " | ".join(cells) + " |")
EOF

#!/usr/bin/env bash
# Speed of `gguf-loader perplexity` against llama.cpp's `llama-perplexity`
# on the same F16 GGUFs (`gguf-loader convert --dtype f16` of the two real
# models), the same text (LICENSE-APACHE) and threads: the whole process's
# wall time (load, tokenize, evaluate), alternating (llama.cpp, ours, again),
# medians printed with both tools' perplexities; ours also with
# --own-memory (the F16 matrices copied out of the file, not views of its
# mapping). Never in CI: it builds
# llama-perplexity (scripts/llama_cpp_golden.sh --perplexity).
#
#   scripts/bench-perplexity.sh [REPS]      (default 5)
#
# With KLD=1, the KL divergence instead: each tool writes the F16 model's
# log-probabilities (--kl-divergence-base), then compares the original
# quantized file with its own base file (--kl-divergence); medians of
# both steps, and both tools' mean KL divergence.
#
# Environment: THREADS (2), CTX (512: llama-perplexity's default), KLD,
# GGUF_LOADER_MODEL / GGUF_LOADER_GEMMA (else fetch-model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
threads="${THREADS:-2}"
ctx="${CTX:-512}"
text=LICENSE-APACHE

echo "load average at the start: $(cut -d" " -f1-3 /proc/loadavg)"
ppl_bin="$(scripts/llama_cpp_golden.sh --perplexity)"
# shellcheck source=lib/bench-setup.sh
. scripts/lib/bench-setup.sh

# wall CMD...: the seconds CMD took (its output to $work/out, $work/err).
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

# The F16 GGUF of each real model, once: $work/NAME-f16.gguf.
for name in smollm2 gemma3; do
    "$bin" convert --dtype f16 -o "$work/$name-f16.gguf" "${!name}" >/dev/null
done

if [ -n "${KLD:-}" ]; then
    for name in smollm2 gemma3; do
        f16="$work/$name-f16.gguf"
        tw=() ow=() tc=() oc=()
        for _ in $(seq "$reps"); do
            rm -f "$work/base.llama" "$work/base.ours"
            tw+=("$(LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" wall "$ppl_bin" -m "$f16" -f "$text" \
                -c "$ctx" -b "$ctx" -t "$threads" --kl-divergence-base "$work/base.llama")")
            ow+=("$(RAYON_NUM_THREADS="$threads" wall "$bin" perplexity "$f16" -f "$text" \
                --ctx "$ctx" --kl-divergence-base "$work/base.ours")")
            tc+=("$(LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" wall "$ppl_bin" -m "${!name}" \
                -c "$ctx" -b "$ctx" -t "$threads" --kl-divergence-base "$work/base.llama" --kl-divergence)")
            their_kld="$(cat "$work/out" "$work/err" | sed -nE 's/^Mean    KLD: +(.*)/\1/p')"
            oc+=("$(RAYON_NUM_THREADS="$threads" wall "$bin" perplexity "${!name}" \
                --kl-divergence-base "$work/base.ours" --kl-divergence)")
            our_kld="$(sed -nE 's/^Mean    KLD: +(.*)/\1/p' "$work/out")"
        done
        python3 - "$name" "$ctx" "${tw[*]}" "${ow[*]}" "${tc[*]}" "${oc[*]}" "$their_kld" "$our_kld" \
            "$(stat -c %s "$work/base.ours")" <<'EOF'
import statistics, sys
name, ctx, tw, ow, tc, oc, tk, ok, size = sys.argv[1:]
m = lambda v: statistics.median(map(float, v.split()))
print(f"{name} (ctx {ctx}, base file {int(size) / 2**20:.0f} MiB): writing the base: "
      f"llama.cpp {m(tw):.2f} s, ours {m(ow):.2f} s, ratio {m(tw) / m(ow):.2f}; "
      f"comparing the quantized file: llama.cpp {m(tc):.2f} s, ours {m(oc):.2f} s, "
      f"ratio {m(tc) / m(oc):.2f}; mean KLD llama.cpp {tk}, ours {ok} "
      f"(runs: {tw} / {ow} / {tc} / {oc})")
EOF
    done
    echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
    exit 0
fi

for name in smollm2 gemma3; do
    f16="$work/$name-f16.gguf"
    ours=() theirs=() copied=()
    for _ in $(seq "$reps"); do
        theirs+=("$(LD_LIBRARY_PATH="$LLAMA_CPP_BUILD/bin" wall "$ppl_bin" -m "$f16" -f "$text" \
            -c "$ctx" -b "$ctx" -t "$threads")")
        their_ppl="$(cat "$work/out" "$work/err" | sed -nE 's/.*Final estimate: PPL = ([0-9.]+ \+\/- [0-9.]+).*/\1/p')"
        ours+=("$(RAYON_NUM_THREADS="$threads" wall "$bin" perplexity "$f16" -f "$text" --ctx "$ctx")")
        our_ppl="$(sed -nE 's/Final estimate: PPL = (.*)/\1/p' "$work/out")"
        copied+=("$(RAYON_NUM_THREADS="$threads" wall "$bin" perplexity "$f16" -f "$text" --ctx "$ctx" \
            --own-memory)")
    done
    python3 - "$name" "$ctx" "$their_ppl" "$our_ppl" "${theirs[*]}" "${ours[*]}" "${copied[*]}" <<'EOF'
import statistics, sys
name, ctx, their_ppl, our_ppl, theirs, ours, copied = sys.argv[1:]
t = statistics.median(map(float, theirs.split()))
o = statistics.median(map(float, ours.split()))
c = statistics.median(map(float, copied.split()))
print(f"{name} (ctx {ctx}): llama-perplexity {t:.2f} s (PPL {their_ppl}), "
      f"gguf-loader perplexity {o:.2f} s (PPL {our_ppl}): ratio {t / o:.2f}; "
      f"ours with --own-memory {c:.2f} s "
      f"(runs: {theirs} / {ours} / {copied})")
EOF
done
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Fuzz smoke: runs every cargo-fuzz target in fuzz/ for a short while
# (FUZZ_SECONDS, default 30) from its committed seeds, one process each,
# installing cargo-fuzz first when it is missing. Fails on any crash, leak,
# timeout or out-of-memory report. Works on a stable toolchain through
# RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Z flags).
#
#   scripts/fuzz-smoke.sh            # all targets, 30 s each
#   FUZZ_SECONDS=10 scripts/fuzz-smoke.sh open decode
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    start=$(date +%s)
    if ! cargo install --locked cargo-fuzz; then
        # CI sets FUZZ_INSTALL_OPTIONAL: a registry hiccup skips the smoke
        # rather than failing the run; a crash found by the smoke still fails.
        if [ -n "${FUZZ_INSTALL_OPTIONAL:-}" ]; then
            echo "== cargo-fuzz could not be installed: fuzz smoke skipped"
            exit 0
        fi
        exit 1
    fi
    echo "== installed cargo-fuzz in $(( $(date +%s) - start )) s"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

cd fuzz
start=$(date +%s)
cargo fuzz build -O
echo "== built in $(( $(date +%s) - start )) s"

for t in "${targets[@]}"; do
    # A scratch corpus per run: new inputs do not pile up in the seeds.
    work=$(mktemp -d)
    # And a scratch TMPDIR: the lazy and llm targets write each input to a
    # file there, which libFuzzer's exit leaves behind.
    scratch=$(mktemp -d)
    # Seeds: the target's own (fuzz/corpus/$t), and for the targets that take
    # whole files the repository's malformed corpus and fixtures, read in
    # place rather than copied.
    seeds=()
    [ -d "corpus/$t" ] && seeds+=("corpus/$t")
    case "$t" in
    open | lazy | inspect | llm) seeds+=(../tests/corpus ../tests/fixtures) ;;
    esac
    echo "== $t for ${seconds} s"
    status=0
    TMPDIR="$scratch" cargo fuzz run -O "$t" "$work" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$work.log" 2>&1 || status=$?
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE" "$work.log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$work.log"
        echo "== $t FAILED (exit $status); reproducer under fuzz/artifacts/$t/"
        rm -rf "$work" "$work.log" "$scratch"
        exit 1
    fi
    rm -rf "$work" "$work.log" "$scratch"
done
echo "== fuzz smoke passed"

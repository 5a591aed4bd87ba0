# Sourced by the scripts that test another platform and skip where its
# toolchain cannot be had (test-aarch64.sh, test-python-aarch64.sh,
# test-windows.sh): a clock, `skip WHY`, and `run_summarized`.

t0=$(date +%s)

# Seconds since the script started.
elapsed() { echo "$(($(date +%s) - t0)) s"; }

# Prints "SKIPPED: WHY" and exits 0.
skip() {
    echo "SKIPPED: $*"
    exit 0
}

# `run_summarized LABEL CMD...`: runs CMD into a log and prints its test
# binaries and their summaries; on failure the log's last 100 lines, then
# exits with CMD's status.
#
# With RERUN_WHEN set (an extended regex for a failure of the platform's
# stand-in itself, such as Wine's server dying), a failed run whose log
# matches it and shows no failed test prints that line, runs RERUN_FIRST
# (shell code, if set) and runs CMD once more; only the second run counts.
# RERUN_ANYWAY (a regex too) does the same where a test did fail, but on
# an error only the stand-in gives (Wine failing to start a test's child
# process): the test runs again, and must pass the second time.
run_summarized() {
    local label=$1 log status=0 cause
    shift
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ] && { { [ -n "${RERUN_WHEN:-}" ] &&
        ! grep -qE "^test result: FAILED|panicked at" "$log" &&
        cause=$(grep -m1 -E "$RERUN_WHEN" "$log"); } ||
        { [ -n "${RERUN_ANYWAY:-}" ] && cause=$(grep -m1 -E "$RERUN_ANYWAY" "$log"); }; }; then
        grep -E "^ +Running |^test result:" "$log" || true
        echo "== $label: not a test's failure but \"$cause\" (exit $status): once more"
        [ -z "${RERUN_FIRST:-}" ] || eval "$RERUN_FIRST"
        status=0
        "$@" >"$log" 2>&1 || status=$?
    fi
    grep -E "^ +Running |^test result:|FAILED|panicked" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 100 "$log"
        rm -f "$log"
        echo "== $label FAILED (exit $status) after $(elapsed)"
        exit "$status"
    fi
    rm -f "$log"
}

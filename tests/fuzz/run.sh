#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a bounded time.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR is a clang build configured with -DAMXDIAG_FUZZ=ON -DAMXDIAG_SANITIZE=ON
# (target fuzz_all).  Each target starts from a scratch copy of its committed seed
# corpus (tests/fuzz/corpus/<target>) and its regressions, runs SECONDS seconds on one
# core, and prints one summary line: executions, coverage (edges, features), corpus size.
# A crash, leak, timeout or sanitizer report fails the run; the input that caused it is
# kept in BUILD_DIR/fuzz-out/<target>/ (copy it to tests/fuzz/regressions/<target>/ once
# fixed).  FUZZ_JOBS=N runs N targets at once; FUZZ_CORPUS_OUT=DIR keeps the grown
# corpora.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
secs=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
build=$(cd "$build" && pwd)
if [ $# -eq 0 ]; then
    set -- $(cd "$here" && ls fuzz_*.c | sed -e 's/^fuzz_//' -e 's/\.c$//' | grep -v '^util$')
fi
out="$build/fuzz-out"
mkdir -p "$out"
jobs=${FUZZ_JOBS:-1}

run_one() {
    local t=$1 exe="$build/tests/fuzz_$1"
    local dir="$out/$t" log="$out/$t.log"
    if [ ! -x "$exe" ]; then
        echo "fuzz $t: FAIL: $exe not built (cmake --build $build --target fuzz_all)"
        return 1
    fi
    rm -rf "$dir" && mkdir -p "$dir/corpus"
    cp "$here/corpus/$t"/* "$dir/corpus/" 2>/dev/null
    [ -d "$here/regressions/$t" ] && cp "$here/regressions/$t"/* "$dir/corpus/" 2>/dev/null
    # -rss_limit_mb/-malloc_limit_mb: a hostile size that makes a parser allocate
    # gigabytes is a bug too.  -timeout: one input taking > 10 s is a hang.
    ( cd "$dir" && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        nice "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=131072 -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$dir/" \
        "$dir/corpus" >"$log" 2>&1 )
    local rc=$?
    local execs cov ft units
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    units=$(ls "$dir/corpus" | wc -l)
    if [ -n "${FUZZ_CORPUS_OUT:-}" ]; then
        mkdir -p "$FUZZ_CORPUS_OUT/$t" && cp "$dir/corpus"/* "$FUZZ_CORPUS_OUT/$t/" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ]; then
        echo "fuzz $t: FAIL (exit $rc) after ${execs:-?} executions; inputs kept in $dir, log $log"
        grep -E 'ERROR: |SUMMARY: |runtime error' "$log" | head -5
        return 1
    fi
    echo "fuzz $t: ok, ${secs}s, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?}, corpus $units inputs"
}

fails=0
pids=()
for t in "$@"; do
    if [ "$jobs" -gt 1 ]; then
        run_one "$t" &
        pids+=($!)
        if [ "${#pids[@]}" -ge "$jobs" ]; then
            wait "${pids[0]}" || fails=$((fails + 1))
            pids=("${pids[@]:1}")
        fi
    else
        run_one "$t" || fails=$((fails + 1))
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || fails=$((fails + 1))
done
[ "$fails" -eq 0 ] || { echo "$fails fuzz target(s) failed"; exit 1; }

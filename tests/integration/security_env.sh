#!/usr/bin/env bash
# The injection variable (CUDA_INJECTION64_PATH, with AMXDIAG_INJECT_FD) reaches only the
# profiled command: it is in the command's environment when the GPU collector runs, it
# is never set in amxdiag's own environment (where amxdiag's own libcuda would load the
# tracer into amxdiag), and it is absent when GPU tracing was not asked for.  A shim
# preloaded into every process of the run reports each one's view at exit.
set -u
. "$(dirname "$0")/lib/adg.sh"
"$AMXDIAG" profile --help >/dev/null 2>&1 || skip "amxdiag profile is not in this build"
command -v cc >/dev/null || skip "a C compiler is needed for the preload shim"

stub=""
for s in "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" /usr/local/cuda/lib64/stubs/libcuda.so; do
    [ -f "$s" ] && stub=$s && break
done
[ -n "$stub" ] || skip "no CUDA toolkit stub libcuda.so to stand in for the driver (the GPU collector cannot start)"
[ -f "$BUILD_DIR/libamxdiag-inject.so" ] || skip "libamxdiag-inject.so is not built"

cat >"$TEST_TMP/shim.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* At exit, append "<comm> <pid> <CUDA_INJECTION64_PATH or ->" to $ADG_ENV_LOG. */
__attribute__((destructor)) static void report(void)
{
    const char *log = getenv("ADG_ENV_LOG");
    if (!log)
        return;
    char comm[64] = "?";
    FILE *c = fopen("/proc/self/comm", "r");
    if (c) {
        if (fgets(comm, sizeof comm, c))
            comm[strcspn(comm, "\n")] = 0;
        fclose(c);
    }
    const char *v = getenv("CUDA_INJECTION64_PATH");
    FILE *f = fopen(log, "a");
    if (f) {
        fprintf(f, "%s %d %s\n", comm, (int)getpid(), v && *v ? v : "-");
        fclose(f);
    }
}
C
cc -shared -fPIC -o "$TEST_TMP/shim.so" "$TEST_TMP/shim.c" || skip "cannot build the preload shim"

# run_shim LOG ARGS...: amxdiag with the shim preloaded (ASan must not insist on coming first)
run_shim() {
    local log=$1; shift
    rm -f "$log"
    ADG_ENV_LOG="$log" LD_PRELOAD="$TEST_TMP/shim.so" \
        ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" "$AMXDIAG" "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
}

# GPU tracing on: the command sees the variable, amxdiag does not
export AMXDIAG_LIBCUDA=$stub
run_shim "$TEST_TMP/gpu.log" profile -q -e gpu -o "$TEST_TMP/g.json" -- sleep 0.2
rc=$?
[ "$rc" -eq 0 ] || fail "profile -e gpu: exit $rc: $(head -c 300 "$TEST_TMP/err")"
grep -q '^sleep .*libamxdiag-inject\.so$' "$TEST_TMP/gpu.log" || fail "the command did not get CUDA_INJECTION64_PATH: $(cat "$TEST_TMP/gpu.log")"
grep -q '^amxdiag ' "$TEST_TMP/gpu.log" || fail "the shim did not report amxdiag itself: $(cat "$TEST_TMP/gpu.log")"
grep -q '^amxdiag .* -$' "$TEST_TMP/gpu.log" || fail "CUDA_INJECTION64_PATH is set in amxdiag's own environment: $(cat "$TEST_TMP/gpu.log")"

# GPU tracing not asked for: nobody sees it
run_shim "$TEST_TMP/nogpu.log" profile -q -e sampling -o "$TEST_TMP/s.json" -- sleep 0.2
if grep -v ' -$' "$TEST_TMP/nogpu.log" | grep -q .; then
    fail "CUDA_INJECTION64_PATH set without GPU tracing: $(cat "$TEST_TMP/nogpu.log")"
fi
unset AMXDIAG_LIBCUDA

# The variable is set nowhere else in the sources than the collector's child environment
hits=$(grep -RnE '(setenv|putenv)[[:space:]]*\([^)]*CUDA_INJECTION64_PATH' \
    "$SRC_DIR"/{cli,common,probe,kernels,profiler,tui,reports} --include='*.c' 2>/dev/null)
[ -z "$hits" ] || fail "CUDA_INJECTION64_PATH is set in a process environment: $hits"
finish

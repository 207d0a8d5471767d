#!/usr/bin/env bash
# valgrind memcheck over the CLI: zero errors (invalid reads/writes, uses of
# uninitialised values, invalid frees, definite leaks) in amxdiag itself.
#
# 1. a smoke set of every command on its hardware-independent paths (snapshots, records,
#    fixtures, a profiled short command and a crashing one, bad input);
# 2. the seed corpora and fuzz regressions through the fuzz targets' replay drivers;
# 3. the integration tests that do not depend on timing or on the CPU valgrind emulates
#    (cli_basics, probe_cpu, bench_kernels), with every amxdiag
#    they start run under valgrind (AMXDIAG_WRAPPER, tests/integration/lib/adg.sh).
#
# Left out: tests that send signals after fixed delays (profile_basic, top_live,
# top_cost, model_cli's interrupted 1 GB create: valgrind's 20-50x slowdown changes what
# they observe or takes minutes), GPU tests, and run_cli
# (valgrind emulates a CPU without AVX-512, so the kernels it asks for are refused).
# Only the RelWithDebInfo build runs it (valgrind cannot run ASan binaries).
# VALGRIND_TESTS="a b" overrides the list of part 3.
set -u
. "$(dirname "$0")/lib/adg.sh"

command -v valgrind >/dev/null || skip "valgrind is not installed (scripts/install-deps.sh installs it)"
if ldd "$AMXDIAG" 2>/dev/null | grep -Eq 'lib(a|ub)san'; then
    skip "this is the sanitizer build: valgrind runs on the RelWithDebInfo build"
fi

VGLOG="$TEST_TMP/vg"
mkdir -p "$VGLOG"
VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --log-file=$VGLOG/%p.log"

# vg WANT_RCS CMD...: runs CMD under valgrind; its exit status must be one of WANT_RCS
# ("0", "0|1|2"); 99 means valgrind found errors.
vg() {
    local want=$1; shift
    $VG "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    local rc=$?
    if ! [[ "$rc" =~ ^($want)$ ]]; then
        fail "valgrind $* exited $rc (expected $want); stderr: $(head -c 400 "$TEST_TMP/err")"
    fi
}

# --- 1. smoke set
vg 0 "$AMXDIAG" --help
vg 2 "$AMXDIAG" no-such-command
for s in "$FIXTURES"/snapshots/*.json; do
    vg '0|1' "$AMXDIAG" probe --snapshot "$s"
done
vg '0|1' "$AMXDIAG" probe --snapshot "$FIXTURES/snapshots/emr-kvm-h100.json" --json
vg 2 "$AMXDIAG" probe --snapshot "$FIXTURES/snapshots/spr-baremetal-pmu.json" --save-snapshot "$TEST_TMP/resaved.json"
vg 2 "$AMXDIAG" probe --snapshot "$FIXTURES/records/top_corrupt.json"
for f in "$FIXTURES"/fatbin/*.fatbin "$FIXTURES"/fatbin/*.cubin; do
    vg '0|1' "$AMXDIAG" probe --only gpu --binary "$f" --cc 9.0 --cc 12.0
done
vg 0 "$AMXDIAG" model inspect "$FIXTURES/gguf/ggufpy-mixed.gguf" --tensors
vg 0 "$AMXDIAG" model create --preset tiny --sparse "$TEST_TMP/tiny.gguf"
vg 0 "$AMXDIAG" model inspect "$TEST_TMP/tiny.gguf" --json
head -c 3000 "$TEST_TMP/tiny.gguf" >"$TEST_TMP/cut.gguf"
vg 2 "$AMXDIAG" model inspect "$TEST_TMP/cut.gguf"
for r in "$FIXTURES"/records/*.json; do
    vg '0|1|2' "$AMXDIAG" top --replay "$r" --dump --size 120x40
    vg '0|1|2' "$AMXDIAG" top --replay "$r" --json
done
vg '0|1' "$AMXDIAG" profile -q -o "$TEST_TMP/run.json" -- true
vg '0|1|2' "$AMXDIAG" report "$TEST_TMP/run.json"
vg '0|1|2' "$AMXDIAG" report --format json "$TEST_TMP/run.json"
if [ -x "$BUILD_DIR/tests/prof_spin" ]; then
    vg 139 "$AMXDIAG" profile -q -o "$TEST_TMP/crash.json" -- "$BUILD_DIR/tests/prof_spin" segv
    vg '0|1|2' "$AMXDIAG" top --replay "$TEST_TMP/crash.json" --dump
fi

# --- 2. fuzz corpora and regressions
for exe in "$BUILD_DIR"/tests/fuzz_*_replay; do
    [ -x "$exe" ] || continue
    t=$(basename "$exe" _replay)
    t=${t#fuzz_}
    vg 0 "$exe" "$SRC_DIR/tests/fuzz/corpus/$t" "$SRC_DIR/tests/fuzz/regressions/$t"
done

# --- 3. integration tests with every amxdiag under valgrind
for t in ${VALGRIND_TESTS:-cli_basics probe_cpu bench_kernels}; do
    script="$SRC_DIR/tests/integration/$t.sh"
    [ -f "$script" ] || continue
    AMXDIAG_WRAPPER="$VG" bash "$script" >"$TEST_TMP/it.out" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || fail "integration test $t under valgrind exited $rc: $(tail -c 600 "$TEST_TMP/it.out")"
done

# --- every valgrind log must be empty (-q: only errors are written)
nlogs=$(ls "$VGLOG" | wc -l)
bad=0
for l in "$VGLOG"/*.log; do
    [ -s "$l" ] || continue
    bad=$((bad + 1))
    echo "---- $l" >&2
    head -c 3000 "$l" >&2
done
[ "$bad" -eq 0 ] || fail "valgrind reported errors in $bad of $nlogs processes"
echo "valgrind: $nlogs processes checked, $bad with errors"
finish

#!/usr/bin/env bash
# The illegal-access report on a record the GPU collector really wrote: the stand-in CUDA
# program (tests/fixtures/cupti/fake_app.c) faults asynchronously with the toolkit's stub
# libcuda standing in for the driver; the report must name the earlier kernel, not GET_ROWS.
source "$(dirname "$0")/lib/adg.sh"
fake="$BUILD_DIR/tests/cupti_fake_app"
stub=""
for s in "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" /usr/local/cuda/lib64/stubs/libcuda.so; do
    [ -f "$s" ] && stub=$s && break
done
[ -x "$fake" ] || skip "no stand-in CUDA program (built only with the CUDA toolkit)"
[ -n "$stub" ] || skip "no CUDA toolkit stub libcuda.so to stand in for the driver"
[ -f "$BUILD_DIR/libamxdiag-inject.so" ] || skip "libamxdiag-inject.so was not built (no CUPTI headers)"
export AMXDIAG_LIBCUDA=$stub
cd "$TEST_TMP" || exit 1
"$AMXDIAG" profile -q -e gpu -o async.json -- "$fake" async-fault >/dev/null 2>&1
[ -s async.json ] || { fail "the profile of the async fault wrote no record"; finish; }
grep -q '"crash"' async.json || skip "this build's GPU collector wrote no crash section (built without CUPTI headers?)"

expect_rc 1 "$AMXDIAG" report --crash async.json
expect_out "^\| kernel that faulted \| launch #2 'oob_write_kernel\(float\\\\\*, int\)' \|" "$AMXDIAG" report --crash async.json
expect_out "^\| op that reported the error \| launch #3 'get_rows" "$AMXDIAG" report --crash async.json
expect_out '`reporter-not-faulting`' "$AMXDIAG" report --crash async.json
expect_out 'FAULTED' "$AMXDIAG" report --crash async.json
expect_out '"id": "reporter-not-faulting"' "$AMXDIAG" report --crash async.json --json
expect_rc 1 "$AMXDIAG" report --crash async.json --format html -o crash.html
grep -q '<tr class="hl">' crash.html || fail "the faulting launch is not highlighted in the HTML"
# the run report of the same record leads with the crash
expect_out 'Why: a CUDA error stopped the GPU' "$AMXDIAG" report async.json
# a clean GPU run has no crash section: --crash refuses it, exit 2, no file
"$AMXDIAG" profile -q -e gpu -o ok.json -- "$fake" sync-ok >/dev/null 2>&1
if [ -s ok.json ]; then
    expect_rc 2 "$AMXDIAG" report --crash ok.json -o none.md
    [ -e none.md ] && fail "--crash on a clean record wrote a file"
    expect_rc 0 "$AMXDIAG" report ok.json
    expect_out 'GPU kernel time \| [0-9.]+ (s|ms)' "$AMXDIAG" report ok.json
fi
finish

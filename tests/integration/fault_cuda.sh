#!/usr/bin/env bash
# CUDA errors from the injected faults (amxdiag run --inject-fault): the run stops with
# exit 2, names the error and the op that reported it, and never crashes.  Without a GPU
# only the refusals are checked (no driver: a clear message and exit 2); the GPU part
# runs where a GPU is present (tests/device/cuda.sh covers it on the device machine).
# The same kind of fault in an external program, seen through the injection library, is
# tests/integration/cupti_inject.sh.
set -u
. "$(dirname "$0")/lib/adg.sh"
"$AMXDIAG" run --help 2>/dev/null | grep -q -- '--inject-fault' || skip "amxdiag run --inject-fault is not in this build"

M="$TEST_TMP/tiny.gguf"
"$AMXDIAG" model create --preset tiny --sparse "$M" >/dev/null 2>&1 || fail "model create failed"
RUN=(run -m "$M" -p 4 -n 1 -r 1)

expect_rc 2 "$AMXDIAG" "${RUN[@]}" --inject-fault get_rows-oob
expect_err "add --ngl" "$AMXDIAG" "${RUN[@]}" --inject-fault get_rows-oob
expect_rc 2 "$AMXDIAG" "${RUN[@]}" --ngl 1 --inject-fault no-such-fault
expect_err "not one of" "$AMXDIAG" "${RUN[@]}" --ngl 1 --inject-fault no-such-fault

if ! "$AMXDIAG" probe --only gpu --json 2>/dev/null | grep -q '"gpu.0.device"'; then
    # no usable GPU: the request is refused with the reason, not a crash
    for f in get_rows-oob matvec-oob async-before-get_rows; do
        expect_rc 2 "$AMXDIAG" "${RUN[@]}" --ngl 99 --inject-fault "$f"
        grep -Eq "error: .*(driver|GPU|CUDA|libcuda)" "$TEST_TMP/err" || fail "--inject-fault $f without a GPU: unclear message: $(head -c 300 "$TEST_TMP/err")"
    done
    [ "$ADG_FAILS" -ne 0 ] && finish
    skip "no NVIDIA GPU here: the injected faults themselves run on the device machine (refusals checked)"
fi

for f in get_rows-oob matvec-oob async-before-get_rows; do
    "$AMXDIAG" "${RUN[@]}" --ngl 99 --inject-fault "$f" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    rc=$?
    [ "$rc" -eq 2 ] || fail "--inject-fault $f: exit $rc, expected 2: $(tail -c 400 "$TEST_TMP/err")"
    grep -Eqi "illegal|error 700|out of bounds|memory access" "$TEST_TMP/err" || fail "--inject-fault $f: the CUDA error is not named: $(tail -c 400 "$TEST_TMP/err")"
done
finish

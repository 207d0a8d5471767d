#!/usr/bin/env bash
# amxdiag run --inject-fault / --gpu-validate / --sync-each: option checks everywhere;
# where a GPU is present, each planted fault stops the run with exit 2, names the op that
# reported it and the kernel launched before, and --json carries the launch ring.  The
# host-side logic (which op reports, the ring, the copies per ubatch) is tested without a
# GPU by tests/unit/test_kern_engine_gpu.c.
set -u
. "$(dirname "$0")/lib/adg.sh"
export XDG_CACHE_HOME="$TEST_TMP/cache"

expect_rc 2 "$AMXDIAG" run --inject-fault nope --ngl 1 -p 8 -n 2 -r 1
expect_err "not one of get_rows-oob, matvec-oob, async-before-get_rows" "$AMXDIAG" run --inject-fault nope --ngl 1
expect_rc 2 "$AMXDIAG" run --inject-fault get_rows-oob -p 8 -n 2 -r 1
expect_err "--inject-fault acts on the GPU layers: add --ngl" "$AMXDIAG" run --inject-fault matvec-oob -p 8 -n 2
expect_err "--gpu-validate acts on the GPU layers" "$AMXDIAG" run --gpu-validate -p 8 -n 2
expect_err "--sync-each acts on the GPU layers" "$AMXDIAG" run --sync-each -p 8 -n 2
expect_out "--inject-fault F" "$AMXDIAG" run --help
expect_out "--gpu-validate" "$AMXDIAG" run --help

# Without a usable GPU the run stops with the driver's message, exit 2, and no JSON file.
"$AMXDIAG" run --ngl 1 --inject-fault get_rows-oob -p 8 -n 2 -r 1 -o "$TEST_TMP/f.json" >/dev/null 2>"$TEST_TMP/gpu.err"
rc=$?
if grep -Eq 'no NVIDIA driver|no CUDA device|NO_DEVICE|built without CUDA|STUB_LIBRARY' "$TEST_TMP/gpu.err"; then
    [ "$rc" -eq 2 ] || fail "--ngl without a GPU exited $rc, expected 2"
    [ -e "$TEST_TMP/f.json" ] && fail "a JSON file was written for a run that never started"
    grep -q "hint: run with --ngl 0" "$TEST_TMP/gpu.err" || fail "no hint: $(head -c 400 "$TEST_TMP/gpu.err")"
    echo "SKIP: GPU part: $(grep -m1 -E "no NVIDIA driver|no CUDA device|NO_DEVICE|built without CUDA|STUB_LIBRARY" "$TEST_TMP/gpu.err")"
    finish
fi

command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"
for f in get_rows-oob matvec-oob async-before-get_rows; do
    expect_rc 2 "$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault "$f"
    expect_err "reported by op '" "$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault "$f"
    expect_err "CUDA_ERROR_ILLEGAL_ADDRESS" "$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault "$f"
done
"$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault async-before-get_rows --json >"$TEST_TMP/f.json" 2>/dev/null
python3 - "$TEST_TMP/f.json" <<'PY' || fail "fault JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "amxdiag.run/1" and d["status"] == "error"
f = d["fault"]
assert f["name"] == "async-before-get_rows"
# Which call sees an asynchronous 700 first depends on timing (the GET_ROWS launch, or the
# next copy): only that some op reported it and that the ring holds the faulting kern_add.
assert f["reported_by"], f
assert any(l["kernel"] == "kern_add" for l in f["launches"]), f["launches"]
assert f["launched_before"], f
assert "700" in f["error"] or "ILLEGAL" in f["error"]
PY
expect_err "row index [0-9]+ at position" "$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault get_rows-oob --gpu-validate
expect_err "kern_add failed" "$AMXDIAG" run --ngl 99 -p 64 -n 4 -r 1 --inject-fault async-before-get_rows --sync-each
finish

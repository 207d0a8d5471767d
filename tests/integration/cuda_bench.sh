#!/usr/bin/env bash
# `bench kernels --gpu` (as amxdiag-gpu-bench): options, exit codes and messages
# everywhere; the checks and the planted faults where a GPU is present.
. "$(dirname "$0")/lib/adg.sh"
B="$BUILD_DIR/amxdiag-gpu-bench"
[ -x "$B" ] || skip "amxdiag-gpu-bench not built"

expect_rc 0 "$B" --help
expect_out 'inject-fault NAME' "$B" --help
expect_out 'get_rows-oob, matvec-oob, async-before-get_rows' "$B" --help
expect_rc 2 "$B" --no-such-option
expect_rc 2 "$B" --inject-fault nonsense
expect_err 'unknown fault .nonsense.' "$B" --inject-fault nonsense
expect_rc 2 "$B" --iters 0
expect_rc 2 "$B" --tokens abc
expect_rc 2 "$B" kernels extra-word
# the prompt GEMM's selection and --only
expect_out 'gemm-kernel K' "$B" --help
expect_rc 2 "$B" --gemm-kernel fast
expect_err 'takes auto, wmma, mma, f16mma or wgmma' "$B" --gemm-kernel fast
expect_rc 2 "$B" --gemm-tile 96
expect_rc 2 "$B" --gemm-tile v9
expect_err 'takes v0..v7' "$B" --gemm-tile 128x64
expect_rc 2 "$B" --gemm-tile f9
expect_err 'f0..f8' "$B" --gemm-tile f9
expect_rc 2 "$B" --gemm-tile w4
expect_err 'w0..w3' "$B" --gemm-tile w4
expect_out 'gemm-tile T' "$B" --help
expect_rc 2 "$B" --gemm-stages 5
expect_rc 2 "$B" --only gemm,nothing
expect_err "unknown group 'nothing'" "$B" --only gemm,nothing

# The same command through the dispatcher: `amxdiag bench kernels --gpu ...`
expect_rc 0 "$AMXDIAG" bench kernels --gpu --help
expect_out 'inject-fault NAME' "$AMXDIAG" bench kernels --gpu --help
expect_rc 2 "$AMXDIAG" bench kernels --gpu --no-such-option
expect_rc 2 "$AMXDIAG" bench kernels --gpu --inject-fault nonsense
AMXDIAG_LIBCUDA=/nonexistent/libcuda.so.1 expect_rc 2 "$AMXDIAG" bench kernels --gpu --quick
AMXDIAG_LIBCUDA=/nonexistent/libcuda.so.1 expect_err 'no NVIDIA driver' "$AMXDIAG" bench kernels --gpu --quick

# The embedded fatbin is where cuobjdump looks.
if command -v readelf >/dev/null && [ -n "$(readelf -S "$AMXDIAG" | grep nv_fatbin)" ]; then
    :
elif command -v readelf >/dev/null && grep -q 'AMXDIAG_CUDA_KERNELS' "$BUILD_DIR/kernels/CMakeFiles/adg_kernels.dir/flags.make" 2>/dev/null; then
    fail "built with CUDA kernels but $AMXDIAG has no .nv_fatbin section"
fi
CUOBJDUMP=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null)
if [ -n "$CUOBJDUMP" ] && readelf -S "$AMXDIAG" | grep -q nv_fatbin; then
    expect_out 'sm_90' "$CUOBJDUMP" --list-elf "$AMXDIAG"
    expect_out 'sm_120' "$CUOBJDUMP" --list-elf "$AMXDIAG"
fi

# A libcuda that is not a driver: the toolkit's stub.
STUB=$(ls /usr/local/cuda/lib64/stubs/libcuda.so /usr/local/cuda/lib/stubs/libcuda.so 2>/dev/null | head -1)
if [ -n "$STUB" ]; then
    AMXDIAG_LIBCUDA=$STUB expect_rc 2 "$B" --quick
    AMXDIAG_LIBCUDA=$STUB expect_err 'CUDA_ERROR_STUB_LIBRARY' "$B" --quick
fi
AMXDIAG_LIBCUDA=/nonexistent/libcuda.so.1 expect_err 'no NVIDIA driver' "$B" --quick
AMXDIAG_LIBCUDA=/nonexistent/libcuda.so.1 expect_rc 2 "$B" --json

if ! "$B" --check-only --quick --json >"$TEST_TMP/probe.json" 2>"$TEST_TMP/probe.err"; then
    if grep -Eq 'no NVIDIA driver|no CUDA device|NO_DEVICE|built without CUDA' "$TEST_TMP/probe.err"; then
        echo "SKIP: GPU part: $(head -1 "$TEST_TMP/probe.err")"
        finish
    fi
    fail "check-only failed: $(head -c 800 "$TEST_TMP/probe.err")"
    finish
fi
grep -q '"schema": "amxdiag.bench.gpu/1"' "$TEST_TMP/probe.json" || fail "no schema in --json output"
grep -q '"pass": false' "$TEST_TMP/probe.json" && fail "a kernel check failed"
# the int8 prompt GEMM (where the GPU has sm_80 code): checks, and both kernels' rows
expect_rc 0 "$B" --check-only --quick --gemm-kernel mma
"$B" --quick --only gemm --gemm-kernel mma --iters 3 --json >"$TEST_TMP/gemm.json" || fail "--only gemm failed"
grep -q '"kernel": "wmma"' "$TEST_TMP/gemm.json" || fail "no WMMA rows in --only gemm"
grep -q '"group": "gemv"' "$TEST_TMP/gemm.json" && fail "--only gemm timed the GEMVs"
for f in get_rows-oob matvec-oob async-before-get_rows; do
    expect_rc 1 "$B" --inject-fault "$f"
    expect_out 'CUDA_ERROR_ILLEGAL_ADDRESS' "$B" --inject-fault "$f"
done
expect_out 'row index' "$B" --inject-fault get_rows-oob --gpu-validate
expect_out 'add: kernel kern_add failed' "$B" --inject-fault async-before-get_rows --sync-each
expect_rc 0 "$B" --quick --iters 3 -o "$TEST_TMP/b.json"
[ -s "$TEST_TMP/b.json" ] || fail "-o wrote nothing"
finish

#!/usr/bin/env bash
# The CUDA kernels on a machine with a GPU, in one go (about 3 minutes on an H100):
# embedded fatbin vs cuobjdump, unit tests, every kernel against the CPU reference
# (SASS and forced PTX JIT), the three planted faults (plain, --gpu-validate,
# --sync-each), compute-sanitizer memcheck on the non-faulting kernels and on one fault,
# and the benchmark.  Usage: tests/device/cuda.sh BUILD_DIR [OUT_DIR]
# Outputs go to OUT_DIR (default $OUT, else ./cuda-device-out): summary.txt (every step's
# exit status), bench.json, bench-experimental.json, check-experimental.json, and every
# log and JSON packed in all-logs.tgz.
set -u
build=${1:?usage: tests/device/cuda.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./cuda-device-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
# cuBLAS (the GEMM comparison) lives with the toolkit
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/local/cuda/lib64"
bench="$build/amxdiag-gpu-bench"
summary="$out/summary.txt"
: >"$summary"

# step NAME EXPECTED_RC TIMEOUT CMD...: runs CMD with its output in NAME.log and records
# whether it exited as expected.
step() {
    local name=$1 want=$2 limit=$3; shift 3
    local t0=$(date +%s%N)
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local dt=$(( ($(date +%s%N) - t0) / 1000000 ))
    local verdict=ok
    [ "$rc" = "$want" ] || verdict=UNEXPECTED
    printf '%-34s rc=%-3s want=%-3s %7d ms %s\n' "$name" "$rc" "$want" "$dt" "$verdict" | tee -a "$summary"
}
# expect NAME REGEX: the step's log matches.
expect() {
    if grep -Eq -- "$2" "$out/$1.log"; then
        printf '%-34s matches /%s/\n' "  $1" "$2" | tee -a "$summary"
    else
        printf '%-34s DOES NOT MATCH /%s/\n' "  $1" "$2" | tee -a "$summary"
    fi
}

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm,clocks.max.mem --format=csv; nproc; } >"$out/machine.txt" 2>&1
step cuobjdump-elf 0 30 cuobjdump --list-elf "$build/amxdiag"
step cuobjdump-ptx 0 30 cuobjdump --list-ptx "$build/amxdiag"
step unit-host 0 60 "$build/tests/test_cuda_host"
step unit-kernels 0 120 "$build/tests/test_cuda_kernels"
expect unit-kernels 'PASSED'
step check-sass 0 120 "$bench" --check-only --json -o "$out/check-sass.json"
step check-ptx 0 120 "$bench" --check-only --force-ptx -o "$out/check-ptx.json"
expect check-ptx 'PTX JIT'
step check-experimental 0 120 "$bench" --check-only --gemv-rows 4 --gemm-bk 64 -o "$out/check-experimental.json"
step bench 0 150 "$bench" -o "$out/bench.json"
step bench-experimental 0 150 "$bench" --gemv-rows 4 --gemm-bk 64 -o "$out/bench-experimental.json"
step bench-quick-validate 0 60 "$bench" --quick --gpu-validate --iters 5 -o "$out/bench-validate.json"
# planted faults: plain (error 700 reported by the op's check), --gpu-validate (the first
# bad index instead of a fault), --sync-each (the faulting kernel itself)
for f in get_rows-oob matvec-oob async-before-get_rows; do
    step "fault-$f" 1 60 "$bench" --inject-fault "$f" --json -o "$out/fault-$f.json"
    expect "fault-$f" 'CUDA_ERROR_ILLEGAL_ADDRESS|700'
done
expect fault-async-before-get_rows 'get_rows.*ILLEGAL_ADDRESS'
step fault-async-sync-each 1 60 "$bench" --inject-fault async-before-get_rows --sync-each
expect fault-async-sync-each 'add: kernel kern_add failed'
step validate-get_rows-oob 1 60 "$bench" --inject-fault get_rows-oob --gpu-validate
expect validate-get_rows-oob 'row index [0-9]+ at position'
step validate-matvec-oob 1 60 "$bench" --inject-fault matvec-oob --gpu-validate
expect validate-matvec-oob 'weight row [0-9]+'
# compute-sanitizer: no errors on the non-faulting kernels (the unit test's small checks),
# and the planted write named by kernel
if command -v compute-sanitizer >/dev/null; then
    step sanitizer-clean 0 120 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$build/tests/test_cuda_kernels"
    expect sanitizer-clean 'ERROR SUMMARY: 0 errors'
    step sanitizer-fault 9 90 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 3 \
        "$bench" --inject-fault async-before-get_rows
    expect sanitizer-fault 'Invalid __global__ write .*|kern_add'
fi
grep -c UNEXPECTED "$summary" >/dev/null && echo "some steps exited unexpectedly" | tee -a "$summary"
# The device runner returns at most 8 files: keep the key ones, pack the rest.
tmp=$(mktemp /tmp/cuda-device-XXXXXX.tgz)
tar czf "$tmp" -C "$out" . &&
    find "$out" -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name bench.json ! -name bench-experimental.json \
        ! -name check-experimental.json -exec rm -rf {} + &&
    mv "$tmp" "$out/all-logs.tgz"
exit 0

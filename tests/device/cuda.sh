#!/usr/bin/env bash
# The CUDA kernels on a machine with a GPU, in one go (about 3 minutes on an H100):
# embedded fatbin vs cuobjdump, unit tests, every kernel against the CPU reference
# (SASS and forced PTX JIT), the three planted faults (plain, --gpu-validate,
# --sync-each), compute-sanitizer memcheck on the non-faulting kernels and on one fault,
# and the benchmark; then the engine's GPU layers (`amxdiag run --ngl` on the tiny default
# model): greedy tokens GPU vs CPU, a pp512/tg128 run, the faults planted in the real
# forward pass (`run --inject-fault`), and compute-sanitizer on a clean --ngl run.
# Usage: tests/device/cuda.sh BUILD_DIR [OUT_DIR]
# Outputs go to OUT_DIR (default $OUT, else ./cuda-device-out): summary.txt (every step's
# exit status), bench.json (default kernels), bench-gemv1.json (the single-row GEMV),
# bench-experimental.json, check-experimental.json, run-ngl99.json, run-fault-async.json,
# and every log and JSON packed in all-logs.tgz (8 files: the runner's limit).
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

. "$(dirname "$0")/lib.sh"

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm,clocks.max.mem --format=csv; nproc; } >"$out/machine.txt" 2>&1
step_want cuobjdump-elf 0 30 cuobjdump --list-elf "$build/amxdiag"
step_want cuobjdump-ptx 0 30 cuobjdump --list-ptx "$build/amxdiag"
step_want unit-host 0 60 "$build/tests/test_cuda_host"
step_want unit-kernels 0 120 "$build/tests/test_cuda_kernels"
expect unit-kernels 'PASSED'
step_want check-sass 0 120 "$bench" --check-only --json -o "$out/check-sass.json"
# The int8 tensor-core prompt GEMM (opt-in until it has passed here): bit-exact against
# the CPU formula, and every check with it selected (tests/device/cuda_gemm.sh times it).
if [ -x "$build/tests/test_kern_cuda_gemm" ]; then
    step_want unit-gemm-i8 0 150 "$build/tests/test_kern_cuda_gemm"
    expect unit-gemm-i8 'PASSED'
fi
step_want check-mma 0 120 "$bench" --check-only --gemm-kernel mma -o "$out/check-mma.json"
step_want check-ptx 0 120 "$bench" --check-only --force-ptx -o "$out/check-ptx.json"
expect check-ptx 'PTX JIT'
step_want check-experimental 0 120 "$bench" --check-only --gemv-rows 4 --gemm-bk 64 -o "$out/check-experimental.json"
# The default GEMV is auto (Q4_0: 4 rows per warp iteration, Q8_0: 1); --gemv-rows 1 is
# the single-row kernel measured in the first device run: check and time it too.
step_want check-gemv1 0 120 "$bench" --check-only --gemv-rows 1 -o "$out/check-gemv1.json"
step_want bench 0 150 "$bench" -o "$out/bench.json"
step_want bench-gemv1 0 150 "$bench" --gemv-rows 1 -o "$out/bench-gemv1.json"
step_want bench-experimental 0 150 "$bench" --gemv-rows 4 --gemm-bk 64 -o "$out/bench-experimental.json"
step_want bench-quick-validate 0 60 "$bench" --quick --gpu-validate --iters 5 -o "$out/bench-validate.json"
# planted faults: plain (error 700 reported by the op's check), --gpu-validate (the first
# bad index instead of a fault), --sync-each (the faulting kernel itself)
for f in get_rows-oob matvec-oob async-before-get_rows; do
    step_want "fault-$f" 1 60 "$bench" --inject-fault "$f" --json -o "$out/fault-$f.json"
    expect "fault-$f" 'CUDA_ERROR_ILLEGAL_ADDRESS|700'
done
expect fault-async-before-get_rows 'get_rows.*ILLEGAL_ADDRESS'
step_want fault-async-sync-each 1 60 "$bench" --inject-fault async-before-get_rows --sync-each
expect fault-async-sync-each 'add: kernel kern_add failed'
step_want validate-get_rows-oob 1 60 "$bench" --inject-fault get_rows-oob --gpu-validate
expect validate-get_rows-oob 'row index [0-9]+ at position'
step_want validate-matvec-oob 1 60 "$bench" --inject-fault matvec-oob --gpu-validate
expect validate-matvec-oob 'weight row [0-9]+'
# compute-sanitizer: no errors on the non-faulting kernels (the unit test's small checks),
# and the planted write named by kernel
if command -v compute-sanitizer >/dev/null; then
    step_want sanitizer-clean 0 120 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$build/tests/test_cuda_kernels"
    expect sanitizer-clean 'ERROR SUMMARY: 0 errors'
    step_want sanitizer-fault 9 90 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 3 \
        "$bench" --inject-fault async-before-get_rows
    expect sanitizer-fault 'Invalid __global__ write .*|kern_add'
fi

# ---- the engine's GPU layers: amxdiag run --ngl on the tiny default model (4 layers,
# q4_0, created once in a scratch cache).  Every op of a GPU layer is a kernel now
# (kv_store, causal prompt attention, grouped expert matmul, expert sum): the greedy
# tokens must match the CPU engine's, and the planted faults must be reported by an op
# of the real forward pass, with the launch ring.
amx="$build/amxdiag"
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-cuda-cache-XXXXXX)
step_want run-create-model 0 120 "$amx" run -p 8 -n 2 -r 1 -t 4  # creates the default model first: no message later
step_want run-greedy-cpu 0 120 "$amx" run --greedy -p 40 -n 24 -t 4
step_want run-greedy-ngl99 0 120 "$amx" run --greedy -p 40 -n 24 -t 4 --ngl 99
step_want run-greedy-ngl2 0 120 "$amx" run --greedy -p 40 -n 24 -t 4 --ngl 2
step_want run-greedy-ngl99-long 0 120 "$amx" run --greedy -p 700 -n 8 -t 4 --ngl 99  # two ubatches
step_want run-greedy-cpu-long 0 120 "$amx" run --greedy -p 700 -n 8 -t 4
for v in ngl99 ngl2; do
    if cmp -s <(sed -n 2p "$out/run-greedy-cpu.log") <(sed -n 2p "$out/run-greedy-$v.log"); then
        echo "  greedy tokens --$v == CPU" | tee -a "$summary"
    else
        echo "  greedy tokens --$v DIFFER from the CPU's (see the logs)" | tee -a "$summary"
    fi
done
if cmp -s <(sed -n 2p "$out/run-greedy-cpu-long.log") <(sed -n 2p "$out/run-greedy-ngl99-long.log"); then
    echo "  greedy tokens 700-token prompt --ngl99 == CPU" | tee -a "$summary"
else
    echo "  greedy tokens 700-token prompt --ngl99 DIFFER from the CPU's" | tee -a "$summary"
fi
grep -h "last logits" "$out"/run-greedy-*.log | sed 's/^/  /' | tee -a "$summary"
step_want run-ngl99 0 120 "$amx" run --ngl 99 -p 512 -n 128 -r 5 -t 4 --ops -o "$out/run-ngl99.json"
step_want run-ngl2 0 120 "$amx" run --ngl 2 -p 512 -n 128 -r 5 -t 4 --ops -o "$out/run-ngl2.json"
step_want run-cpu 0 120 "$amx" run -p 512 -n 128 -r 5 -t 4 -o "$out/run-cpu.json"
grep -h -E "^\| qwen3moe" "$out"/run-ngl99.log "$out"/run-ngl2.log "$out"/run-cpu.log | tee -a "$summary"
# Faults in the real forward pass: exit 2, the reporting op, the kernel launched before.
for f in get_rows-oob matvec-oob async-before-get_rows; do
    step_want "run-fault-$f" 2 60 "$amx" run --ngl 99 -p 64 -n 4 -r 1 -t 4 --inject-fault "$f"
    expect "run-fault-$f" 'CUDA_ERROR_ILLEGAL_ADDRESS'
    expect "run-fault-$f" 'reported by op'
    expect "run-fault-$f" 'last kernel launched before it'
done
expect run-fault-async-before-get_rows 'kern_add'
step_want run-fault-async-json 2 60 "$amx" run --ngl 99 -p 64 -n 4 -r 1 -t 4 --inject-fault async-before-get_rows \
    --json -o "$out/run-fault-async.json"
step_want run-fault-get_rows-partial 2 60 "$amx" run --ngl 2 -p 64 -n 4 -r 1 -t 4 --inject-fault get_rows-oob
expect run-fault-get_rows-partial 'get_rows \(token embedding\)'
step_want run-fault-async-sync-each 2 60 "$amx" run --ngl 99 -p 64 -n 4 -r 1 -t 4 --inject-fault async-before-get_rows \
    --sync-each
expect run-fault-async-sync-each 'kern_add failed'
step_want run-fault-get_rows-validate 2 60 "$amx" run --ngl 99 -p 64 -n 4 -r 1 -t 4 --inject-fault get_rows-oob \
    --gpu-validate
expect run-fault-get_rows-validate 'row index [0-9]+ at position'
step_want run-fault-matvec-validate 2 60 "$amx" run --ngl 99 -p 64 -n 4 -r 1 -t 4 --inject-fault matvec-oob --gpu-validate
expect run-fault-matvec-validate 'weight row [0-9]+ .* stacked expert weights'
step_want run-fault-matvec-decode 2 60 "$amx" run --ngl 99 -p 0 -n 4 -r 1 -t 4 --inject-fault matvec-oob
expect run-fault-matvec-decode 'CUDA_ERROR_ILLEGAL_ADDRESS'
for f in "$out"/run-fault-*.log; do
    echo "  $(basename "$f" .log): $(grep -h -E "reported by op" "$f" | head -1 | sed 's/^amxdiag run: //')"
    echo "    $(grep -h -E "last kernel launched" "$f" | head -1 | sed 's/^amxdiag run: //')"
done | tee -a "$summary"
if command -v compute-sanitizer >/dev/null; then
    step_want sanitizer-run-ngl99 0 180 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$amx" run --greedy -p 40 -n 8 -t 4 --ngl 99
    expect sanitizer-run-ngl99 'ERROR SUMMARY: 0 errors'
fi
rm -rf "$XDG_CACHE_HOME"

grep -c UNEXPECTED "$summary" >/dev/null && echo "some steps exited unexpectedly" | tee -a "$summary"
# The device runner returns at most 8 files: keep the key ones, pack the rest.
tmp=$(mktemp /tmp/cuda-device-XXXXXX.tgz)
tar czf "$tmp" -C "$out" . &&
    find "$out" -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name bench.json ! -name bench-experimental.json \
        ! -name check-experimental.json ! -name run-ngl99.json ! -name run-fault-async.json ! -name bench-gemv1.json -exec rm -rf {} + &&
    mv "$tmp" "$out/all-logs.tgz"
exit 0

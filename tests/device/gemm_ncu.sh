#!/usr/bin/env bash
# Nsight Compute on the prompt GEMMs (about 60 s): the int8 tensor-core kernels, the f16
# WMMA kernel and cuBLAS's f16 and int8 kernels at Qwen3-30B-A3B's shapes, 512 tokens,
# each launch profiled once with the sections that say where a GEMM's time goes (speed of
# light, compute and memory workload, occupancy, launch, scheduler and warp-state
# statistics, instruction mix).  The text report per kernel is what a kernel change is
# judged against; the .ncu-rep opens in the Nsight Compute GUI.
#   usage: tests/device/gemm_ncu.sh BUILD_DIR      (outputs in $OUT, else ./gemm-ncu-out)
# LIMIT (default 45) bounds the ncu step in seconds.
set -u
build=${1:?usage: tests/device/gemm_ncu.sh BUILD_DIR}
out=${OUT:-./gemm-ncu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm --format=csv >"$out/machine.txt" 2>&1
secs="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
--section Occupancy --section LaunchStats --section SchedulerStats --section WarpStateStats \
--section InstructionStats"
# --iters 1: one timed launch per kernel and shape after the bench's warm-up launch
# (ncu replays each profiled launch, so one of each is enough).
timeout -k 5 "${LIMIT:-45}" "$ncu" $secs -k 'regex:gemm|xmma|cutlass|sm90' --launch-skip 0 --launch-count 60 \
    -o "$out/gemm" -f "$PWD/$build/amxdiag-gpu-bench" --only gemm --iters 1 --gemm-kernel mma \
    >"$out/ncu.log" 2>&1
echo "ncu exit $?" >>"$out/ncu.log"
"$ncu" --import "$out/gemm.ncu-rep" --page details >"$out/details.txt" 2>&1
"$ncu" --import "$out/gemm.ncu-rep" --page raw --csv \
    --metrics gpu__time_duration.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_imma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed.sum,launch__grid_size,launch__registers_per_thread \
    >"$out/raw.csv" 2>&1
ls -la "$out"

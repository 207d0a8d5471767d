#!/usr/bin/env bash
# The hybrid path in about 30 s: qwen3-moe-small q4_0 (created here), `amxdiag run -p 512
# -n 64 -r 3` on the CPU (amx), with the last 2 of 4 layers on the GPU (--ngl 2), and with
# every layer there (--ngl 99), each GPU setting with the default prompt GEMM and with
# AMXDIAG_GPU_GEMM=mma; then `--greedy --compare ref` at --ngl 99.
#   usage: OUT=DIR tests/device/hybrid_quick.sh BUILD_DIR   (output: $OUT/summary.txt)
set -u
build=${1:?usage: hybrid_quick.sh BUILD_DIR}
out=${OUT:-./hybrid-quick-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
work=$(mktemp -d /tmp/amxdiag-hq-XXXX)
s="$out/summary.txt"
: >"$s"
m="$work/small-q4_0.gguf"
timeout 60 "$amx" model create --preset qwen3-moe-small --quant q4_0 --threads "$threads" "$m" >>"$s" 2>&1
run() {   # run LABEL [ENV=VALUE] -- ARGS...
    local label=$1; shift
    echo "== $label" >>"$s"
    timeout 40 env "$@" -p 512 -n 64 -r 3 -t "$threads" >"$work/o" 2>&1
    echo "exit $?" >>"$s"
    grep -E "^\| qwen3moe" "$work/o" >>"$s"
}
run "cpu amx" "$amx" run -m "$m" --cpu-kernels amx
run "--ngl 2" "$amx" run -m "$m" --ngl 2
run "--ngl 2, int8 mma GEMM" AMXDIAG_GPU_GEMM=mma "$amx" run -m "$m" --ngl 2
run "--ngl 99" "$amx" run -m "$m" --ngl 99
run "--ngl 99, int8 mma GEMM" AMXDIAG_GPU_GEMM=mma "$amx" run -m "$m" --ngl 99
for k in wmma mma; do
    echo "== compare --ngl 99 $k vs ref" >>"$s"
    timeout 40 env AMXDIAG_GPU_GEMM=$k "$amx" run -m "$m" --ngl 99 --greedy -p 64 -n 16 -t "$threads" --compare ref >>"$s" 2>&1
    echo "exit $?" >>"$s"
done
rm -rf "$work"
cat "$s"

#!/usr/bin/env bash
# CPU prompt evaluation on the AMX machine, in one call (about 90 s on 16 CPUs):
#  1. qwen3-moe-small q4_0 (created here), `amxdiag run -p 512 -n 128 -r 3 --ops` with
#     --cpu-kernels amx and avx512; the same with the binary BUILD_DIR/amxdiag-before when
#     present (the build before a change, for a same-machine before/after); amx with the
#     bf16 tile attention (AMXDIAG_ATTN_KERNEL=amx) and avx512 with the per-row attention
#     (AMXDIAG_ATTN_KERNEL=rows);
#  2. test_kern_ops, test_kern_matmul, test_kern_engine (real AMX tiles there);
#  3. greedy tokens of amx, avx512 and amx + tile attention on a 64-token prompt;
#  4. prompt-only runs with 128 / 256 query rows per attention block (AMXDIAG_ATTN_ROWS).
# Usage: tests/device/cpu_prompt.sh BUILD_DIR [OUT_DIR]   (BUILD_DIR relative to the
# repository root, RelWithDebInfo, with tests/device/bundle-libs.sh or slim-build.sh run)
# Output in OUT_DIR (default $OUT, else ./cpu-prompt-out): summary.txt (status of every
# step, the t/s tables and the attention/router/kv_store lines), cpu_prompt.log (all output).
set -u
build=${1:?usage: tests/device/cpu_prompt.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./cpu-prompt-out}}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
before="$PWD/$build/amxdiag-before"
work=$(mktemp -d /tmp/amxdiag-cpu-prompt-XXXXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
log="$out/cpu_prompt.log"
: >"$summary"
: >"$log"
threads=${THREADS:-$(nproc)}
layers_opt=${LAYERS:+--layers $LAYERS}   # LAYERS=N: a smaller model, to check this script elsewhere
prompt=${PROMPT:-512}
gen=${GEN:-128}

step() {
    local name=$1 limit=$2; shift 2
    local t0 t1 rc
    t0=$(date +%s%N)
    echo "===== $name: $*" >>"$log"
    timeout -k 5 "$limit" "$@" >"$work/step.out" 2>&1
    rc=$?
    t1=$(date +%s%N)
    cat "$work/step.out" >>"$log"
    printf '%-44s rc=%-3s %6d ms\n' "$name" "$rc" "$(( (t1 - t0) / 1000000 ))" | tee -a "$summary"
    return $rc
}

# the lines of a run worth keeping: the t/s rows and the ops that this follow-up changed
keep() {
    grep -E "^\| .*(pp|tg)[0-9]+ |in ops|attention|router|kv_store|moe_gate_up|moe_down" "$work/step.out" |
        sed 's/^/    /' | tee -a "$summary"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) CPUs)"
    echo "threads used: $threads"
} | tee -a "$summary"

model="$work/small.gguf"
step "model create qwen3-moe-small q4_0" 60 "$amx" model create --preset qwen3-moe-small $layers_opt --quant q4_0 \
    --threads "$threads" "$model"

bench() {   # bench NAME BINARY IMPL [ENV=VALUE]
    local name=$1 bin=$2 impl=$3; shift 3
    step "$name" 60 env "$@" "$bin" run -m "$model" -p "$prompt" -n "$gen" -r 3 -t "$threads" --cpu-kernels "$impl" --ops
    keep
}
bench "after  amx" "$amx" amx
bench "after  avx512" "$amx" avx512
if [ -x "$before" ]; then
    bench "before amx" "$before" amx
    bench "before avx512" "$before" avx512
fi
bench "after  amx, tile attention" "$amx" amx AMXDIAG_ATTN_KERNEL=amx

for t in test_kern_ops test_kern_matmul test_kern_engine; do
    step "unit $t" 120 "$build/tests/$t"
done
grep -E "vs ref: max|SKIP" "$log" | sed 's/^/  /' | tee -a "$summary"

for v in "amx" "avx512" "amx AMXDIAG_ATTN_KERNEL=amx"; do
    set -- $v
    impl=$1
    shift
    step "greedy $impl $*" 30 env "$@" "$amx" run -m "$model" -p 64 -n 32 -t "$threads" --cpu-kernels "$impl" --greedy
    grep -vE "^\s*$" "$work/step.out" | tail -2 | sed 's/^/    /' >>"$summary"
done
bench "after  avx512, per-row attention" "$amx" avx512 AMXDIAG_ATTN_KERNEL=rows
# query rows per attention block (default 64), prompt only
for v in "avx512 AMXDIAG_ATTN_ROWS=128" "amx AMXDIAG_ATTN_KERNEL=amx AMXDIAG_ATTN_ROWS=128" \
         "amx AMXDIAG_ATTN_KERNEL=amx AMXDIAG_ATTN_ROWS=256"; do
    set -- $v
    impl=$1
    shift
    step "pp $impl $*" 30 env "$@" "$amx" run -m "$model" -p "$prompt" -n 0 -r 3 -t "$threads" --cpu-kernels "$impl" --ops
    keep
done
rm -rf "$work"
echo "done: $(date -u +%H:%M:%S)" | tee -a "$summary"

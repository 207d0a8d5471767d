#!/usr/bin/env bash
# CPU prompt evaluation on the AMX machine, in one call (about 80 s on 16 CPUs):
#  1. qwen3-moe-small q4_0 (created here), `amxdiag run -p 512 -n 64 -r 3 --ops` with
#     --cpu-kernels amx (defaults: ring int8 kernel, bf16 tile attention) and avx512; amx
#     with the fp32 attention (AMXDIAG_ATTN_KERNEL=flash) and with the previous int8 kernel
#     (AMXDIAG_AMX_INT8_KERNEL=1x1); the same with BUILD_DIR/amxdiag-before when present
#     (the build before a change, for a same-machine before/after);
#  2. test_kern_ops, test_kern_matmul, test_kern_engine (real AMX tiles there);
#  3. `run --greedy --compare`: amx against ref and against avx512, teacher-forced;
#  4. `profile` of the built-in path with amx: ISA and spin-wait shares of the prompt phase.
# Usage: tests/device/cpu_prompt.sh BUILD_DIR [OUT_DIR]   (BUILD_DIR relative to the
# repository root, RelWithDebInfo, with tests/device/bundle-libs.sh or slim-build.sh run)
# Output in OUT_DIR (default $OUT, else ./cpu-prompt-out): summary.txt (status of every
# step, the t/s tables and the attention/router/kv_store lines), cpu_prompt.log (all
# output), profile-amx.json (the run record of step 4).
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
gen=${GEN:-64}

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
bench "amx (ring, tile attention)" "$amx" amx
bench "avx512" "$amx" avx512
bench "amx, fp32 attention" "$amx" amx AMXDIAG_ATTN_KERNEL=flash
bench "amx, int8 kernel 1x1" "$amx" amx AMXDIAG_AMX_INT8_KERNEL=1x1
[ -x "$before" ] && bench "before amx" "$before" amx

for t in test_kern_ops test_kern_matmul test_kern_engine; do
    step "unit $t" 120 "$build/tests/$t"
done
grep -E "vs ref|SKIP" "$log" | sed 's/^/  /' | tee -a "$summary"

cmp() {   # cmp NAME IMPL REF P N [ENV=VALUE]
    local name=$1 impl=$2 ref=$3 p=$4 n=$5; shift 5
    step "$name" 60 env "$@" "$amx" run -m "$model" --greedy -p "$p" -n "$n" -t "$threads" --cpu-kernels "$impl" \
        --compare "$ref"
    sed 's/^/    /' "$work/step.out" | tee -a "$summary"
}
cmp "compare amx vs ref" amx ref 64 16
cmp "compare amx vs avx512" amx avx512 256 32

step "profile amx built-in" 60 "$amx" profile -e sampling -o "$out/profile-amx.json" -m "$model" \
    --n-prompt "$prompt" -n 16 -r 2 -t "$threads" --cpu-kernels amx
grep -E "spin-wait|during|amx |avx512 " "$work/step.out" | sed 's/^/    /' | tee -a "$summary"
rm -rf "$work"
echo "done: $(date -u +%H:%M:%S)" | tee -a "$summary"

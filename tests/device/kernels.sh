#!/usr/bin/env bash
# The CPU kernels on the AMX machine, in one call: the kernel unit tests on real AMX tiles
# (plus the emulator), `amxdiag probe --bench` for the ceilings, and `amxdiag bench kernels`:
# M = 1 and M = 512 for q4_0/q8_0 at the attention, expert and LM-head shapes (amx vs
# avx512), the M sweep that sets the AMX/VNNI crossover, the earlier 1x1 schedule of the int8 tile kernel, bf16.
#   usage: tests/device/kernels.sh BUILD_DIR [quick|int8]   (outputs go to $OUT, default ./device-out)
# "int8": the unit tests and the int8 tile kernels' variants (AMXDIAG_AMX_INT8_KERNEL) at
# M = 512 against AVX-512 VNNI, 16 threads and 1 (about 2 minutes); bench-int8-<variant>.json.
# "quick": the unit tests, M=1/512 at every shape but the router, and the crossover
# sweep only (about 90 s).
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh);
# only BUILD_DIR/amxdiag and BUILD_DIR/tests/test_kern_* are used.  Steps are ordered by
# importance and each is bounded (about 3 minutes in all, 7 at worst).  The device tool
# returns at most 8 files: every text output goes into log.txt; JSON files are
# bench-{main,sweep,1x1,bf16}.json, crossover.json and ceilings.json.
set -u
build=${1:?usage: kernels.sh BUILD_DIR [quick]}
quick=${2:-}
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME=/tmp/amxdiag-kernels-cache AMXDIAG_CROSSOVER="$out/crossover.json"
bin="$build/amxdiag"
log="$out/log.txt"
: >"$log"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
# run LABEL TIMEOUT CMD...: output appended to the log
run() {
    local label=$1 t=$2; shift 2
    timeout "$t" "$@" >>"$log" 2>&1
    echo "$label exit $?" | tee -a "$log"
}
threads=$(nproc)
B=("$bin" bench kernels --threads "$threads")

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu MHz' /proc/cpuinfo;
  grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; free -g | head -2;
  lscpu | grep -Ei 'cache|numa'; cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; } >>"$log" 2>&1

step "unit test_kern_matmul (real AMX + emulator)"
run test_kern_matmul 40 "$build/tests/test_kern_matmul"

step "probe --bench (ceilings)"
run "probe --bench" 40 "$bin" probe --only cpu --bench
cp "$XDG_CACHE_HOME"/amxdiag/ceilings-*.json "$out/ceilings.json" 2>/dev/null

if [ "$quick" = int8 ]; then
    shapes=attn_q,attn_o,moe_gate_up,moe_down
    common=(--m 512 --min-time 0.1 --weights-mib 64 --mem-gbs 100)
    step "int8: AMX (default ring kernel) and AVX-512 VNNI at M=512, the four shapes"
    run "bench ring+avx512" 60 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0 --shape "$shapes" "${common[@]}" \
        -o "$out/bench-int8-main.json"
    for v in ring:3,1 1x1; do
        step "int8: AMX $v at M=512"
        AMXDIAG_AMX_INT8_KERNEL=$v run "bench $v" 25 "${B[@]}" --impl amx --type q4_0,q8_0 \
            --shape attn_q,moe_gate_up "${common[@]}" -o "$out/bench-int8-${v//[:,]/_}.json"
    done
    step "int8: 1 thread, attn_q q8_0 M=512"
    for v in ring 1x1; do
        AMXDIAG_AMX_INT8_KERNEL=$v run "bench 1-thread $v" 15 "$bin" bench kernels --threads 1 --impl amx \
            --type q8_0 --shape attn_q "${common[@]}"
    done
    run "bench 1-thread avx512" 15 "$bin" bench kernels --threads 1 --impl avx512 --type q8_0 --shape attn_q \
        "${common[@]}"
    step done
    exit 0
fi

if [ "$quick" = quick ]; then
    step "quick bench: M=1 and M=512, amx vs avx512"
    run "bench quick" 100 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0,bf16 \
        --shape attn_q,attn_kv,attn_o,moe_gate_up,moe_down,lm_head --m 1,512 --min-time 0.1 --weights-mib 1024 \
        -o "$out/bench-main.json"
    step "quick bench: crossover sweep (saved)"
    run "bench sweep" 50 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0,bf16 --shape attn_q,moe_gate_up \
        --m 1,4,8,16,32,64,128 --min-time 0.05 --weights-mib 512 \
        --save-crossover="$out/crossover.json" -o "$out/bench-sweep.json"
    AMXDIAG_AMX_INT8_KERNEL=1x1 run "bench 1x1" 30 "${B[@]}" --impl amx --type q4_0,q8_0 \
        --shape attn_q,moe_gate_up --m 512 --min-time 0.1 --weights-mib 256 -o "$out/bench-1x1.json"
    run "bench 1-thread" 30 "$bin" bench kernels --threads 1 --impl avx512,amx --type q4_0,q8_0,bf16 \
        --shape attn_q --m 1,512 --min-time 0.1 --weights-mib 512 -o "$out/bench-1thread.json"
    step done
    exit 0
fi

step "bench: M=1 and M=512, q4_0/q8_0, amx vs avx512"
run "bench main" 120 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0 \
    --shape attn_q,attn_kv,attn_o,moe_gate_up,moe_down,lm_head --m 1,512 \
    --min-time 0.1 --weights-mib 1024 -o "$out/bench-main.json"

step "bench: crossover sweep (saved)"
run "bench sweep" 70 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0,bf16 --shape attn_q,moe_gate_up \
    --m 1,2,4,8,16,32,64,128 --min-time 0.04 --weights-mib 512 \
    --save-crossover="$out/crossover.json" -o "$out/bench-sweep.json"

step "bench: the earlier 1x1 schedule of the AMX int8 kernel at M=128/512"
AMXDIAG_AMX_INT8_KERNEL=1x1 run "bench 1x1" 40 "${B[@]}" --impl amx --type q4_0,q8_0 \
    --shape attn_q,attn_o,moe_gate_up --m 128,512 --min-time 0.1 --weights-mib 256 -o "$out/bench-1x1.json"

step "bench: bf16 M=1/512"
run "bench bf16" 40 "${B[@]}" --impl amx,avx512 --type bf16 --shape attn_q,moe_gate_up --m 1,512 \
    --min-time 0.1 --weights-mib 1024 -o "$out/bench-bf16.json"

for t in test_kern_quant test_kern_ops; do
    step "unit $t"
    run "$t" 20 "$build/tests/$t"
done

step "bench: 1 thread, M=1"
run "bench 1-thread" 20 "$bin" bench kernels --threads 1 --impl avx512,amx --type q4_0,q8_0 --shape attn_q \
    --m 1,512 --min-time 0.1 --weights-mib 512
step done

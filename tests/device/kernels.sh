#!/usr/bin/env bash
# The CPU kernels on the AMX machine, in one call: the kernel unit tests on real AMX tiles
# (plus the emulator), `amxdiag probe --bench` for the ceilings, and `amxdiag bench kernels`:
# M = 1 and M = 512 for q4_0/q8_0 at the attention, expert and LM-head shapes (amx vs
# avx512), the M sweep that sets the AMX/VNNI crossover, the second AMX int8 kernel, bf16.
#   usage: tests/device/kernels.sh BUILD_DIR      (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh);
# only BUILD_DIR/amxdiag and BUILD_DIR/tests/test_kern_* are used.  Steps are ordered by
# importance and each is bounded (about 4 minutes in all, 7 at worst).
set -u
build=${1:?usage: kernels.sh BUILD_DIR}
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME="$out/cache" AMXDIAG_CROSSOVER="$out/crossover.json"
bin="$build/amxdiag"
log="$out/log.txt"
: >"$log"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
threads=$(nproc)
B=("$bin" bench kernels --threads "$threads")

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu MHz' /proc/cpuinfo;
  grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; free -g | head -2;
  lscpu | grep -Ei 'cache|numa'; cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; } >>"$log" 2>&1

step "unit test_kern_matmul (real AMX + emulator)"
timeout 40 "$build/tests/test_kern_matmul" >"$out/test_kern_matmul.txt" 2>&1
echo "test_kern_matmul exit $?" | tee -a "$log"

step "probe --bench (ceilings)"
timeout 40 "$bin" probe --only cpu --bench >"$out/probe-bench.txt" 2>&1
echo "probe --bench exit $?" | tee -a "$log"

step "bench: M=1 and M=512, q4_0/q8_0, amx vs avx512"
timeout 120 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0 \
    --shape attn_q,attn_kv,attn_o,moe_gate_up,moe_down,lm_head --m 1,512 \
    --min-time 0.1 --weights-mib 1024 -o "$out/bench-main.json" >"$out/bench-main.txt" 2>&1
echo "bench main exit $?" | tee -a "$log"

step "bench: crossover sweep (saved)"
timeout 70 "${B[@]}" --impl amx,avx512 --type q4_0,q8_0,bf16 --shape attn_q,moe_gate_up \
    --m 1,2,4,8,16,32,64,128 --min-time 0.04 --weights-mib 512 \
    --save-crossover="$out/crossover.json" -o "$out/bench-sweep.json" >"$out/bench-sweep.txt" 2>&1
echo "bench sweep exit $?" | tee -a "$log"

step "bench: the 2x2 AMX int8 kernel at M=512"
AMXDIAG_AMX_INT8_KERNEL=2x2 timeout 40 "${B[@]}" --impl amx --type q4_0,q8_0 --shape attn_q,attn_o,moe_gate_up \
    --m 128,512 --min-time 0.1 --weights-mib 256 -o "$out/bench-2x2.json" >"$out/bench-2x2.txt" 2>&1
echo "bench 2x2 exit $?" | tee -a "$log"
timeout 40 "${B[@]}" --impl amx --type q4_0,q8_0 --shape attn_q,attn_o,moe_gate_up \
    --m 128,512 --min-time 0.1 --weights-mib 256 -o "$out/bench-1x1.json" >"$out/bench-1x1.txt" 2>&1
echo "bench 1x1 exit $?" | tee -a "$log"

step "bench: bf16 M=1/512"
timeout 40 "${B[@]}" --impl amx,avx512 --type bf16 --shape attn_q,moe_gate_up --m 1,512 \
    --min-time 0.1 --weights-mib 1024 -o "$out/bench-bf16.json" >"$out/bench-bf16.txt" 2>&1
echo "bench bf16 exit $?" | tee -a "$log"

for t in test_kern_quant test_kern_ops; do
    step "unit $t"
    timeout 20 "$build/tests/$t" >"$out/$t.txt" 2>&1
    echo "$t exit $?" | tee -a "$log"
done

step "bench: 1 thread, M=1"
timeout 20 "$bin" bench kernels --threads 1 --impl avx512 --type q4_0,q8_0 --shape attn_q --m 1 \
    --min-time 0.1 --weights-mib 512 >"$out/bench-1thread.txt" 2>&1
echo "bench 1-thread exit $?" | tee -a "$log"
step done

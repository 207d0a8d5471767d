#!/usr/bin/env bash
# The CPU kernels on the AMX machine, in one call: the kernel unit tests on real AMX tiles
# (plus the emulator), `amxdiag probe --bench` for the ceilings, and `amxdiag bench kernels`:
# M = 1 and M = 512 for q4_0/q8_0 at the attention, expert and LM-head shapes (amx vs
# avx512), bf16 at two shapes, and the M sweep that sets the AMX/VNNI crossover.
#   usage: tests/device/kernels.sh BUILD_DIR      (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh);
# only BUILD_DIR/amxdiag and BUILD_DIR/tests/test_kern_* are used.  Bounded to ~4 minutes.
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

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu MHz' /proc/cpuinfo;
  grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; free -g | head -2;
  cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; } >>"$log" 2>&1

for t in test_kern_quant test_kern_matmul test_kern_ops; do
    step "unit $t"
    timeout 120 "$build/tests/$t" >"$out/$t.txt" 2>&1
    echo "$t exit $?" | tee -a "$log"
done

step "probe --bench (ceilings)"
timeout 60 "$bin" probe --only cpu --bench >"$out/probe-bench.txt" 2>&1
echo "probe --bench exit $?" | tee -a "$log"

step "bench: M=1 and M=512, q4_0/q8_0, amx vs avx512"
timeout 150 "$bin" bench kernels --impl amx,avx512 --type q4_0,q8_0 \
    --shape attn_q,attn_kv,attn_o,moe_gate_up,moe_down,lm_head --m 1,512 --threads "$threads" \
    --min-time 0.1 --weights-mib 1024 -o "$out/bench-main.json" >"$out/bench-main.txt" 2>&1
echo "bench main exit $?" | tee -a "$log"

step "bench: crossover sweep (saved)"
timeout 100 "$bin" bench kernels --impl amx,avx512 --type q4_0,q8_0,bf16 --shape attn_q,moe_gate_up \
    --m 1,2,4,8,16,32,64,128 --threads "$threads" --min-time 0.04 --weights-mib 512 \
    --save-crossover="$out/crossover.json" -o "$out/bench-sweep.json" >"$out/bench-sweep.txt" 2>&1
echo "bench sweep exit $?" | tee -a "$log"

step "bench: bf16 M=1/512 and 1-thread M=1"
timeout 60 "$bin" bench kernels --impl amx,avx512 --type bf16 --shape attn_q,moe_gate_up --m 1,512 \
    --threads "$threads" --min-time 0.1 --weights-mib 1024 -o "$out/bench-bf16.json" >"$out/bench-bf16.txt" 2>&1
echo "bench bf16 exit $?" | tee -a "$log"
timeout 40 "$bin" bench kernels --impl avx512 --type q4_0,q8_0 --shape attn_q --m 1 --threads 1 \
    --min-time 0.1 --weights-mib 512 >"$out/bench-1thread.txt" 2>&1
echo "bench 1-thread exit $?" | tee -a "$log"
step done

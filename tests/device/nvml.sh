#!/usr/bin/env bash
# The nvml collector and amxdiag top's GPU panel on a machine with an NVIDIA GPU, in one go
# (about a minute on an H100): the NVML unit tests against the real libnvidia-ml; a small
# CUDA program (tests/cupti_prog) under `profile -e nvml`, `profile -e gpu` (NVML beside the
# CUPTI trace), `top --json`/`--dump -e nvml` and `--pid` attach; the built-in path on the
# GPU; a planted CUDA fault under `top --json` (the blocking re-run that confirms its
# kernel); nvidia-smi's view of the same moments; the collector's CPU cost.
#   usage: tests/device/nvml.sh BUILD_DIR [OUT_DIR]
# BUILD_DIR is relative to the repository root (as carried to the device) and has devlibs
# (tests/device/bundle-libs.sh).  Outputs in OUT_DIR (default $OUT, else ./nvml-device-out):
# summary.txt (every step's exit status, the key figures and CHECK lines: PASS/FAIL) and
# nvml-all.tgz (records, views, logs).
set -u
build=${1:?usage: tests/device/nvml.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./nvml-device-out}}
mkdir -p "$out"
work=$(mktemp -d /tmp/amxdiag-nvml-XXXX)
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
export FIXTURES="$PWD/tests/fixtures" BUILD_DIR="$PWD/$build"
unset AMXDIAG_LIBNVML AMXDIAG_FAKE_NVML
A="$PWD/$build/amxdiag"
P="$PWD/$build/tests/cupti_prog"
summary="$out/summary.txt"
: >"$summary"
deadline=${NVML_DEADLINE:-170}
started=$(date +%s)

split=1
. "$(dirname "$0")/lib.sh"
# Python helpers for the expressions: the last / max value of a series.
PY_LAST="(lambda r, m, i='gpu0': ([s['value'][-1] for s in r['series'] if s['metric']==m and s['instance']==i] or [None])[0])"
PY_MAX="(lambda r, m, i='gpu0': max([v for s in r['series'] if s['metric']==m and s['instance']==i for v in s['value']] or [0]))"

{
    echo "== $(date -u +%FT%TZ) $(uname -n)"
    nvidia-smi --query-gpu=index,name,driver_version,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm --format=csv 2>&1
} >>"$summary"

step unit-test_nvml 30 "$PWD/$build/tests/test_nvml"
grep -E 'test_real_nvml|PASSED|FAILED' "$work/unit-test_nvml.out" >>"$summary"
step unit-test_tui_replay 30 "$PWD/$build/tests/test_tui_replay"

# 1. NVML alone on a command: the program's own memory must show as the workload's.
( sleep 1.5; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >"$work/smi-apps-1.txt" 2>&1 ) &
step profile-nvml 40 "$A" profile -q -e nvml -i 100 -o "$work/nvml-prog.json" -- "$P" --iters 20000
wait
echo "nvidia-smi apps during profile-nvml: $(tr '\n' ' ' <"$work/smi-apps-1.txt")" >>"$summary"
fact "nvml section" "$work/nvml-prog.json" "{k: v for k, v in r.get('nvml', {}).items() if k != 'library'}"
fact "nvml unavailable" "$work/nvml-prog.json" "[u for u in r['unavailable'] if u['collector']=='nvml']"
fact "gpu0 last: mem_used/total GiB, util max %, power max W, temp, sm MHz, workload MiB" "$work/nvml-prog.json" \
    "[round(${PY_LAST}(r,'gpu.mem_used')/2**30,2), round(${PY_LAST}(r,'gpu.mem_total')/2**30,2), ${PY_MAX}(r,'gpu.util'), ${PY_MAX}(r,'gpu.power'), ${PY_LAST}(r,'gpu.temp'), (${PY_LAST}(r,'gpu.sm_clock') or 0)/1e6, round(${PY_MAX}(r,'gpu.workload_mem')/2**20,1)]"
fact "gpu0 pcie rx/tx max MB/s" "$work/nvml-prog.json" "[round(${PY_MAX}(r,'gpu.pcie_rx_bw')/1e6,1), round(${PY_MAX}(r,'gpu.pcie_tx_bw')/1e6,1)]"
check "profile -e nvml: gpu.mem_used > 0" "$work/nvml-prog.json" "${PY_MAX}(r,'gpu.mem_used') > 0"
check "profile -e nvml: gpu.workload_mem > 0 (the program)" "$work/nvml-prog.json" "${PY_MAX}(r,'gpu.workload_mem') > 0"
check "profile -e nvml: gpu.util rose above 0" "$work/nvml-prog.json" "${PY_MAX}(r,'gpu.util') > 0"
check "profile -e nvml: the program's pid in workload_processes" "$work/nvml-prog.json" \
    "r['workload']['pid'] in [p['pid'] for p in r['nvml']['workload_processes']]"

# 2. NVML beside the CUPTI trace: one source for device memory, the trace still complete.
step profile-gpu 60 "$A" profile -q -e gpu -o "$work/gpu-prog.json" -- "$P" --iters 3000
check "profile -e gpu: gpu.mem_used is NVML's" "$work/gpu-prog.json" \
    "[m['collector'] for m in r['metrics'] if m['name']=='gpu.mem_used'] == ['nvml']"
check "profile -e gpu: kernels traced beside NVML" "$work/gpu-prog.json" \
    "any(k['name'].startswith('add_kernel') for k in r['gpu_kernels']['kernels'])"
fact "profile -e gpu: gpu.busy max / gpu.util max" "$work/gpu-prog.json" "[${PY_MAX}(r,'gpu.busy'), ${PY_MAX}(r,'gpu.util')]"

# 3. top: the GPU panel for a command that is not traced (-e nvml), as JSON and as text.
step top-json-nvml 40 "$A" top --json -e nvml -o "$work/top-nvml.json" -- "$P" --iters 20000
cp "$work/top-json-nvml.out" "$work/top-nvml-view.json"
check "top --json -e nvml: panel shows gpu.mem_used > 0" "$work/top-nvml-view.json" \
    "any(v['metric']=='gpu.mem_used' and v['value'] > 0 for v in r['values'])"
check "top --json -e nvml: panel shows gpu.workload_mem > 0" "$work/top-nvml-view.json" \
    "any(v['metric']=='gpu.workload_mem' and v['value'] > 0 for v in r['values'])"
step top-dump-nvml 40 env LANG=C.UTF-8 "$A" top --dump --size 120x40 -e nvml,cpu,numa -o "$work/top-dump.json" -- "$P" --iters 20000
cp "$work/top-dump-nvml.out" "$out/top-dump-nvml.txt"
grep -E 'GPU|gpu[0-9] |workload [0-9]|PCIe|fault:' "$work/top-dump-nvml.out" | cut -c1-120 | head -8 >>"$summary"

# 4. --pid: attached to a running CUDA process (no injection possible).
"$P" --iters 200000 >"$work/bg.log" 2>&1 &
bg=$!
sleep 2
step profile-pid 20 "$A" profile -q -e nvml --pid "$bg" --duration 2 -o "$work/pid.json"
kill "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
check "profile -e nvml --pid: gpu.workload_mem > 0" "$work/pid.json" "${PY_MAX}(r,'gpu.workload_mem') > 0"

# 5. The built-in path on the GPU (amxdiag's own process is the workload).
step top-builtin 90 "$A" top --json -e nvml,cpu --ngl 99 --n-prompt 64 -n 16 -r 1 -o "$work/builtin.json"
cp "$work/top-builtin.out" "$work/builtin-view.json"
check "top built-in --ngl 99: gpu.workload_mem > 0" "$work/builtin.json" "${PY_MAX}(r,'gpu.workload_mem') > 0"

# 6. A planted fault under top: the blocking re-run confirms the kernel (as profile does).
step top-confirm 90 "$A" top --json -e gpu -o "$work/confirm.json" -- "$A" bench kernels --gpu --inject-fault matvec-oob
cp "$work/top-confirm.out" "$work/confirm-view.json"
grep -E "amxdiag top: " "$work/top-confirm.log" >>"$summary"
fact "top confirm: faulting kernel" "$work/confirm.json" \
    "(r['crash']['faulting_kernel']['kernel'], r['crash']['faulting_kernel']['confidence'], r['crash']['faulting_kernel'].get('source'))"
check "top: matvec-oob confirmed kern_gemv_q4_0_* (mr: row kernel, sb: super-block)" "$work/confirm.json" \
    "r['crash']['faulting_kernel']['kernel'].startswith('kern_gemv_q4_0_') and r['crash']['faulting_kernel']['confidence']=='certain'"
check "top --json: crash_confirmation done" "$work/confirm-view.json" "(r.get('crash_confirmation') or {}).get('state')=='done'"

# 7. The collector's own cost: amxdiag's CPU time over 10 s of sleep, NVML alone vs nothing GPU.
for sets in cpu nvml; do
    c=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (r.ru_utime, r.ru_stime))' "$A" profile -q -e "$sets" -o "$work/cost-$sets.json" -- sleep 10 2>&1)
    echo "cost -e $sets (user sys CPU s over 10 s): $c" >>"$summary"
done

echo "== total $(( $(date +%s) - started )) s" >>"$summary"
tar -C "$work" -czf "$out/nvml-all.tgz" . 2>/dev/null
cat "$summary"

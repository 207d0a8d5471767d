#!/usr/bin/env bash
# --gpu-metrics on a machine with an NVIDIA GPU, in one go (bounded by GM_DEADLINE, default
# 170 s): the metric unit tests; the environment that decides whether counters may be
# read (RmProfilingAdminOnly, uid); tests/cupti_prog alone, traced, and traced with
# --gpu-metrics (the overhead of kernel replay, the per-kernel DRAM bytes); the built-in
# path with --ngl 99 in process with and without --gpu-metrics; amxdiag-gpu-bench alone
# (its own GB/s per op against the device-to-device copy rate) and under --gpu-metrics
# (the Range Profiler's DRAM bytes / profiled time of the same GEMV kernels); the run
# report of that record.
#   usage: tests/device/gpu_metrics.sh BUILD_DIR [OUT_DIR]
# BUILD_DIR needs amxdiag, amxdiag-gpu-bench, libamxdiag-inject.so, devlibs/ and
# tests/{cupti_prog,test_cupti_range,test_cupti_trace,test_cupti_proto}: a RelWithDebInfo
# build made small enough to carry (26 MB) by
#   tests/device/slim-build.sh build-x build-x-dev &&
#   find build-x-dev/tests -type f ! -name cupti_prog ! -name 'test_cupti_*' -delete
# then, on the device: GM_DEADLINE=170 bash tests/device/gpu_metrics.sh build-x-dev "$OUT"
# Outputs in OUT_DIR (default $OUT, else ./gpu-metrics-out): summary.txt (each step's exit
# status and wall time, the key figures) and gpu-metrics-all.tgz (records, logs, reports).
set -u
build=${1:?usage: tests/device/gpu_metrics.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./gpu-metrics-out}}
mkdir -p "$out"
work=$(mktemp -d /tmp/amxdiag-gm-XXXX)
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
A="$PWD/$build/amxdiag"
B="$PWD/$build/amxdiag-gpu-bench"
P="$PWD/$build/tests/cupti_prog"
summary="$out/summary.txt"
: >"$summary"
deadline=${GM_DEADLINE:-170}
started=$(date +%s)

. "$(dirname "$0")/lib.sh"
# The per-kernel metrics of a record, one line each (name, launches, profiled, GB/s, best GB/s, %peak, SM %, tensor %).
KM="[(k['name'][:34], k['count'], k.get('metrics',{}).get('ranges'), round(k.get('metrics',{}).get('dram_Bps',0)/1e9,1), round(k.get('metrics',{}).get('dram_Bps_max',0)/1e9,1), round(k.get('metrics',{}).get('dram_pct_of_peak_bytes',-1),1), round(k.get('metrics',{}).get('sm_throughput_pct',-1),1), max([k.get('metrics',{}).get(x,-1) for x in ('tensor_hmma_pct','tensor_imma_pct','tensor_gmma_pct')])) for k in r['gpu_kernels']['kernels']][:12]"
GM="r['gpu_kernels'].get('metrics'), [u['what']+': '+u['reason'][:300] for u in r['unavailable'] if u['collector']=='gpu']"

{
    echo "== $(date -u +%FT%TZ) $(uname -n) uid $(id -u)"
    nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.memory --format=csv,noheader 2>&1
    grep -E "RmProfilingAdminOnly" /proc/driver/nvidia/params 2>&1
} >>"$summary"

for t in test_cupti_range test_cupti_trace test_cupti_proto; do
    step "unit-$t" 20 "$PWD/$build/tests/$t"
done

# The small program: alone, traced, traced with counters (the cost of kernel replay).
step prog-alone 20 "$P" --iters 50
step prog-traced 30 "$A" profile -q -e gpu -o "$work/prog.json" -- "$P" --iters 50
step prog-metrics 60 "$A" profile -q -e gpu --gpu-metrics -o "$work/prog-m.json" -- "$P" --iters 50
grep -h "cudaEvent" "$work"/prog-*.log | sed 's/^/own figures: /' >>"$summary"
fact "prog metrics session" "$work/prog-m.json" "$GM"
fact "prog kernels (metrics)" "$work/prog-m.json" "$KM"
fact "prog DRAM bytes per launch (add: 48 MiB logical, scale: 32 MiB)" "$work/prog-m.json" \
    "[(k['name'][:20], round(k['metrics'].get('dram_read_bytes',0)/k['metrics']['ranges']/2**20,2), round(k['metrics'].get('dram_write_bytes',0)/k['metrics']['ranges']/2**20,2)) for k in r['gpu_kernels']['kernels'] if 'metrics' in k]"
fact "prog launches vs kernel records (replay duplicates?)" "$work/prog-m.json" \
    "r['gpu_kernels']['launches'], r['gpu_kernels']['kernel_count'], r['gpu_kernels'].get('metrics',{}).get('profiled_launches')"

# The built-in path on the GPU, in process: with and without counters.
step builtin-traced 60 "$A" profile -q -e gpu --ngl 99 --n-prompt 64 -n 16 -r 1 -o "$work/builtin.json"
step builtin-metrics 90 "$A" profile -q -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 16 -r 1 -o "$work/builtin-m.json"
fact "built-in metrics session" "$work/builtin-m.json" "$GM"
fact "built-in kernels (metrics)" "$work/builtin-m.json" "$KM"
fact "built-in tokens/s traced vs metrics" "$work/builtin.json" \
    "[(x.get('test'), round(x.get('tokens_per_s',0),1)) for x in r['workload'].get('results',[])], [(x.get('test'), round(x.get('tokens_per_s',0),1)) for x in json.load(open('$work/builtin-m.json'))['workload'].get('results',[])]"

# The GPU bench alone (its GB/s per op) and under --gpu-metrics (the counters' view).
step bench-alone 60 "$B" --iters 5 --no-cublas -o "$work/bench.json"
fact "bench copy GB/s, GEMV rows" "$work/bench.json" \
    "round(r.get('copy_gbps',0)), [(x['name'], x['type'], round(x['us'],1), round(x.get('gbps',0)), round(x.get('pct_copy',0),1)) for x in r.get('rows', []) if x.get('group')=='gemv'][:8]"
step bench-metrics 120 "$A" profile -q -e gpu --gpu-metrics -o "$work/bench-m.json" -- "$B" --iters 3 --no-cublas
fact "bench metrics session" "$work/bench-m.json" "$GM"
fact "bench kernels (metrics)" "$work/bench-m.json" "$KM"
fact "CHECK GEMV best launch GB/s vs copy GB/s (want ~0.9)" "$work/bench-m.json" \
    "[(k['name'][:30], round(k['metrics'].get('dram_Bps_max',0)/1e9), round(k['metrics'].get('dram_Bps_max',0)/1e9/json.load(open('$work/bench.json')).get('copy_gbps',1),3)) for k in r['gpu_kernels']['kernels'] if 'gemv' in k['name'] and 'metrics' in k]"
step report-bench 30 "$A" report "$work/bench-m.json" -o "$work/bench-m.md"
grep -A14 "hardware metrics" "$work/bench-m.md" >>"$summary" 2>/dev/null

cp "$summary" "$work/summary.txt"
tar czf "$out/gpu-metrics-all.tgz" -C "$work" .
cat "$summary"

#!/usr/bin/env bash
# --gpu-metrics on a real GPU with the CUPTI call trace on (AMXDIAG_CUPTI_DEBUG=1): where
# the Range Profiler's setup stops or dies, and what the record says.  At most ~26 s in
# all; every step runs under `timeout`.
#   usage: tests/device/gpu_metrics_debug.sh BUILD_DIR
# BUILD_DIR (relative to the repository root, or absolute) needs: amxdiag,
# libamxdiag-inject.so, devlibs/, tests/cupti_prog, tests/test_cupti_range,
# tests/libfake_range_cupti.so and tests/cupti_fake_app.
# Steps (unit and crash first: they take well under a second and need no GPU):
#   unit     tests/test_cupti_range against its stand-in libcupti
#   crash    amxdiag profile --gpu-metrics -- tests/cupti_fake_app metrics-crash: a process that
#            dies inside the setup gets a record naming the CUPTI call it died in
#   prog     amxdiag profile -e gpu --gpu-metrics -- tests/cupti_prog --iters 20 (injected)
#   builtin  amxdiag profile -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 (in process)
#   prog-min only when prog's record has no session: prog again with
#            AMXDIAG_GPU_METRICS_MINIMAL=1 (the three required metrics only)
# Output in $OUT (default ./gpu-metrics-debug-out): summary.txt (per step: exit status, wall
# time, the last CUPTI call that never returned if any, the debug lines, the record's
# session / reasons / per-kernel metrics) and the full logs and records.
set -u
build=${1:?usage: tests/device/gpu_metrics_debug.sh BUILD_DIR}
case $build in /*) ;; *) build=$PWD/$build ;; esac
out=${OUT:-./gpu-metrics-debug-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
ulimit -c 0
A=$build/amxdiag
S=$out/summary.txt
: >"$S"
deadline=${GMD_DEADLINE:-25}
started=$(date +%s)

# run NAME LIMIT CMD...: output in NAME.log; exit status and wall time in the summary.
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - ($(date +%s) - started)))
    if [ "$left" -lt 2 ]; then
        printf '%-10s skipped (deadline)\n' "$name" >>"$S"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0
    t0=$(date +%s.%N)
    timeout -k 2 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    printf '%-10s exit %3d  %6.2f s  (limit %d s)\n' "$name" "$rc" \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$limit" >>"$S"
}
# fact LABEL JSON PYTHON-EXPR (r = the record)
fact() {
    local v
    [ -f "$2" ] || { printf '  %s: (no record %s)\n' "$1" "${2##*/}" >>"$S"; return 0; }
    v=$(timeout 5 python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($3)" "$2" 2>&1 | head -c 3000)
    printf '  %s: %s\n' "$1" "$v" >>"$S"
}
# debug NAME: the CUPTI call that never returned (a "> call" line without its "< call"),
# then the debug lines (the first 60 and the last 30).
debug() {
    local log=$out/$1.log n
    n=$(grep -c 'amxdiag-cupti\[' "$log" 2>/dev/null)
    printf '  debug lines: %s\n' "${n:-0}" >>"$S"
    grep 'amxdiag-cupti\[' "$log" 2>/dev/null | awk '
        / > /  { open = $0; sub(/.* > /, "", open); next }
        / < /  { c = $0; sub(/.* < /, "", c); sub(/:.*/, "", c); if (c == open) open = ""; next }
        END    { if (NR == 0) print "  no CUPTI call was traced"
                 else if (open != "") print "  NEVER RETURNED (died or hung inside): " open
                 else print "  every traced call returned" }' >>"$S"
    if [ "${n:-0}" -gt 90 ]; then
        grep 'amxdiag-cupti\[' "$log" | head -60 | sed 's/^/    /' >>"$S"
        echo "    ... ($((n - 90)) lines left out; all in $1.log)" >>"$S"
        grep 'amxdiag-cupti\[' "$log" | tail -30 | sed 's/^/    /' >>"$S"
    else
        grep 'amxdiag-cupti\[' "$log" 2>/dev/null | sed 's/^/    /' >>"$S"
    fi
    grep -v 'amxdiag-cupti\[' "$log" 2>/dev/null | tail -8 | sed 's/^/    other: /' >>"$S"
}
G="(r.get('gpu_kernels') or {})"
SESSION="$G.get('metrics')"
REASONS="[u['what']+': '+u['reason'] for u in r.get('unavailable', []) if u['collector']=='gpu']"
TRACE="dict(status=r.get('status'), signal=r.get('workload', {}).get('signal_name'), launches=$G.get('launches'), kernel_records=$G.get('kernel_count'), notes=$G.get('notes'))"
KM="[(k['name'][:40], k['count'], m.get('ranges'), round(m.get('dram_read_bytes',0)/max(m.get('ranges',1),1)/2**20,2), round(m.get('dram_write_bytes',0)/max(m.get('ranges',1),1)/2**20,2), round(m.get('dram_Bps',0)/1e9,1), round(m.get('sm_throughput_pct',-1),1)) for k in $G.get('kernels', []) for m in [k.get('metrics') or {}] if m][:8]"

{
    echo "== $(date -u +%FT%TZ) uid $(id -u)"
    timeout 5 nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1
    grep -E "RmProfilingAdminOnly" /proc/driver/nvidia/params 2>&1
    echo "per kernel: (name, launches, profiled, DRAM read MiB/launch, write MiB/launch, DRAM GB/s, SM %)"
} >>"$S"

AMXDIAG_FAKE_RANGE_CUPTI=$build/tests/libfake_range_cupti.so run unit 3 "$build/tests/test_cupti_range"
grep -E '^\[  (PASSED|FAILED) ' "$out/unit.log" | sed 's/^/  /' >>"$S"

run crash 3 "$A" profile -q -e gpu --gpu-metrics -o "$out/crash.json" -- "$build/tests/cupti_fake_app" metrics-crash
fact "record (want: status workload-crashed, reason naming cuptiRangeProfilerEnable)" "$out/crash.json" \
    "r.get('status'), $REASONS"

export AMXDIAG_CUPTI_DEBUG=1
run prog 8 "$A" profile -q -e gpu --gpu-metrics -o "$out/prog.json" -- "$build/tests/cupti_prog" --iters 20
debug prog
fact session "$out/prog.json" "$SESSION"
fact "gpu unavailable" "$out/prog.json" "$REASONS"
fact trace "$out/prog.json" "$TRACE"
fact kernels "$out/prog.json" "$KM"

run builtin 8 "$A" profile -q -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 -o "$out/builtin.json"
debug builtin
fact session "$out/builtin.json" "$SESSION"
fact "gpu unavailable" "$out/builtin.json" "$REASONS"
fact trace "$out/builtin.json" "$TRACE"
fact kernels "$out/builtin.json" "$KM"

# No session in prog's record: is it one metric, or any configuration?
if ! timeout 5 python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if (r.get('gpu_kernels') or {}).get('metrics') else 1)" "$out/prog.json" 2>/dev/null; then
    AMXDIAG_GPU_METRICS_MINIMAL=1 run prog-min 5 "$A" profile -q -e gpu --gpu-metrics -o "$out/prog-min.json" -- \
        "$build/tests/cupti_prog" --iters 20
    debug prog-min
    fact session "$out/prog-min.json" "$SESSION"
    fact "gpu unavailable" "$out/prog-min.json" "$REASONS"
    fact kernels "$out/prog-min.json" "$KM"
fi
unset AMXDIAG_CUPTI_DEBUG

echo "== total $(($(date +%s) - started)) s" >>"$S"
cat "$S"

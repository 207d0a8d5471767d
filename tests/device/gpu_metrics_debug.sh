#!/usr/bin/env bash
# --gpu-metrics on a real GPU, with a verdict per step.  History (docs/cupti.md): on an
# H200 (driver 580.159.04, CUPTI 13.0.1) the built-in path (in process) passed from the
# third run on; in an injected program CUPTI's own activity thread crashed (SIGSEGV inside
# libcupti.so.13) at any cuptiActivityFlushAll once the Range Profiler was set up, unless
# kernel activity was CUPTI_ACTIVITY_KIND_KERNEL instead of CONCURRENT_KERNEL (the sixth
# run's variants: only `kernel` kept every record).  So the injected tracer now takes
# KERNEL records with --gpu-metrics, and the injected case is on by default
# (AMXDIAG_GPU_METRICS_INJECTED=0 turns it off).  This run checks the shipped defaults.
# At most 90 s of steps (each under `timeout`, cut to what is left of the deadline; a normal
# run takes about 35 s), plus at most ~4 s to take the stacks of a step that hangs.
#   usage: tests/device/gpu_metrics_debug.sh BUILD_DIR
# BUILD_DIR (relative to the repository root, or absolute) needs: amxdiag,
# libamxdiag-inject.so, amxdiag-gpu-bench, devlibs/, tests/cupti_prog,
# tests/test_cupti_range, tests/libfake_range_cupti.so and tests/cupti_fake_app.
# Steps (unit and crash first: they take well under a second and need no GPU):
#   unit      tests/test_cupti_range against its stand-in libcupti
#   crash     amxdiag profile --gpu-metrics -- tests/cupti_fake_app metrics-crash: a process
#             that dies inside the setup gets a record naming the CUPTI call it died in
#   refused   AMXDIAG_GPU_METRICS_INJECTED=0 amxdiag profile -e gpu --gpu-metrics --
#             tests/cupti_prog: metrics refused with the reason, trace complete, exit 0
#   builtin   amxdiag profile -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 (in
#             process, the default now: no switch set): finishes, ranges named, kernel
#             records kept
#   prog      cupti_prog --iters 20 injected, the defaults (KERNEL records): exit 0, ranges
#             decoded, every kernel record kept; a CRASH STACK section if it died
#   prog-all  the same with every launch profiled (AMXDIAG_GPU_METRICS_PER_KERNEL=0, MAX_LAUNCHES=0)
#   bench     amxdiag-gpu-bench --iters 3 --no-cublas --only gemv alone, then
#   bench-prof     under profile --gpu-metrics (the defaults): the Range Profiler's DRAM
#             bandwidth of the GEMV kernels against the bench's own GB/s
# Output in $OUT (default ./gpu-metrics-debug-out): summary.txt (per step: exit status, wall
# time, a VERDICT line, the crash stack if any, the last CUPTI call that never returned if
# any, the debug lines, the record's session / reasons / per-kernel metrics) and the full
# logs and records.
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
deadline=${GMD_DEADLINE:-90}
started=$(date +%s)
last_rc=0

# run NAME LIMIT CMD...: output in NAME.log; exit status and wall time in the summary.
run() {
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - ($(date +%s) - started)))
    if [ "$left" -lt 2 ]; then
        printf '%-10s skipped (deadline)\n' "$name" >>"$S"
        last_rc=-1
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0
    t0=$(date +%s.%N)
    timeout -k 2 "$limit" "$@" >"$out/$name.log" 2>&1 &
    local tpid=$! waited=0
    # Still running a second before its limit: it hangs.  Where every thread of it and of
    # its children waits (kernel stacks, and user stacks where gdb or eu-stack exist) goes
    # to NAME.stacks, before timeout ends it.
    while kill -0 "$tpid" 2>/dev/null && [ "$waited" -lt $(((limit - 1) * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$tpid" 2>/dev/null; then
        stacks "$tpid" >"$out/$name.stacks" 2>&1
    fi
    wait "$tpid"
    local rc=$?
    last_rc=$rc
    printf '%-10s exit %3d  %6.2f s  (limit %d s)\n' "$name" "$rc" \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$limit" >>"$S"
}
# stacks PID: the process tree under PID (timeout's child and its children), per thread
# its name, wait channel and kernel stack; user stacks by gdb or eu-stack if installed.
stacks() {
    local p pids
    pids=$(timeout 1 pgrep -P "$1"; for c in $(timeout 1 pgrep -P "$1"); do timeout 1 pgrep -P "$c"; done)
    for p in $pids; do
        echo "== pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | head -c 200)"
        for t in /proc/"$p"/task/*; do
            echo "-- tid ${t##*/} $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
            head -12 "$t/stack" 2>/dev/null
        done
        if command -v gdb >/dev/null; then
            timeout 2 gdb -q -batch -p "$p" -ex "thread apply all bt 25" 2>&1 | grep -E '^(Thread|#)' | head -150
        elif command -v eu-stack >/dev/null; then
            timeout 2 eu-stack -p "$p" 2>&1 | head -150
        fi
    done
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
        / >> / { ol = $0; sub(/.* >> /, "", ol); split(ol, w, " "); oapi = w[1]; nl++; next }
        / << / { c = $0; sub(/.* << /, "", c); split(c, w, " "); if (w[1] == oapi) ol = ""; next }
        / > /  { open = $0; sub(/.* > /, "", open); next }
        / < /  { c = $0; sub(/.* < /, "", c); sub(/:.*/, "", c); if (c == open) open = ""; next }
        END    { if (NR == 0) print "  no CUPTI call was traced"
                 else if (open != "") print "  NEVER RETURNED (died or hung inside): " open
                 else print "  every traced call returned"
                 print "  program launches/syncs traced: " nl+0 (ol != "" ? "; the last one never returned: " ol : "; the last one returned") }' >>"$S"
    if [ "${n:-0}" -gt 90 ]; then
        grep 'amxdiag-cupti\[' "$log" | head -60 | sed 's/^/    /' >>"$S"
        echo "    ... ($((n - 90)) lines left out; all in $1.log)" >>"$S"
        grep 'amxdiag-cupti\[' "$log" | tail -30 | sed 's/^/    /' >>"$S"
    else
        grep 'amxdiag-cupti\[' "$log" 2>/dev/null | sed 's/^/    /' >>"$S"
    fi
    grep -v 'amxdiag-cupti\[' "$log" 2>/dev/null | tail -8 | sed 's/^/    other: /' >>"$S"
    if [ -s "$out/$1.stacks" ]; then
        echo "  HUNG: stacks taken a second before the limit ($1.stacks); the user-space frames:" >>"$S"
        grep -E '^(== pid|Thread|#)' "$out/$1.stacks" | grep -vE 'poll|nanosleep|epoll_wait|__GI___clock' | head -40 |
            sed 's/^/    /' >>"$S"
        echo "  kernel wait channels: $(grep -o 'wchan=[a-z_0-9]*' "$out/$1.stacks" | sort | uniq -c | tr '\n' ' ')" >>"$S"
    fi
}
G="(r.get('gpu_kernels') or {})"
SESSION="$G.get('metrics')"
REASONS="[u['what']+': '+u['reason'] for u in r.get('unavailable', []) if u['collector']=='gpu']"
TRACE="dict(status=r.get('status'), signal=r.get('workload', {}).get('signal_name'), launches=$G.get('launches'), kernel_records=$G.get('kernel_count'), notes=$G.get('notes'))"
KM="[(k['name'][:40], k.get('launches', k['count']), m.get('ranges'), round(m.get('dram_read_bytes',0)/max(m.get('ranges',1),1)/2**20,2), round(m.get('dram_write_bytes',0)/max(m.get('ranges',1),1)/2**20,2), round(m.get('dram_Bps',0)/1e9,1), round(m.get('sm_throughput_pct',-1),1)) for k in $G.get('kernels', []) for m in [k.get('metrics') or {}] if m][:8]"

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

# verdict NAME FILE PYTHON-BOOL-EXPR [DETAIL-EXPR]: "VERDICT NAME: PASS|FAIL (detail)",
# with rc = the step's exit status and r = its record.
verdict() {
    local v
    v=$(timeout 5 python3 -c "
import json,sys
rc=int(sys.argv[2])
try: r=json.load(open(sys.argv[1]))
except Exception as e: r={}
ok=False
try: ok=bool($3)
except Exception as e: ok=False
try: d=$4
except Exception as e: d='?'
print(('PASS' if ok else 'FAIL')+' ('+str(d)+')')" "$2" "$last_rc" 2>&1 | tail -1)
    printf 'VERDICT %-14s %s\n' "$1:" "$v" >>"$S"
}
M="((r.get('gpu_kernels') or {}).get('metrics') or {})"
COST="dict(rc=rc, status=r.get('status'), seen=$M.get('launches_seen'), profiled=$M.get('launches_profiled'), ranges=$M.get('profiled_launches'), unnamed=$M.get('unnamed'), passes=$M.get('passes'), replay_s=$M.get('replay_s'), overhead_s=$M.get('overhead_s'), ms_per_profiled_launch=round(1000*($M.get('replay_s') or 0)/max($M.get('launches_profiled') or 1,1),2), kernel_records=$G.get('kernel_count'), untimed=$G.get('untimed_records'), launches=$G.get('launches'))"
OKRUN="rc == 0 and r.get('status') == 'complete' and ($M.get('launches_profiled') or 0) > 0"

# The injected path turned off: refused with the reason, the trace complete.
AMXDIAG_GPU_METRICS_INJECTED=0 run refused 4 "$A" profile -q -e gpu --gpu-metrics -o "$out/refused.json" -- "$build/tests/cupti_prog" --iters 20
verdict refused "$out/refused.json" "rc == 0 and r.get('status') == 'complete' and any('off for an external command' in u['reason'] and 'AMXDIAG_GPU_METRICS_INJECTED=0' in u['reason'] for u in r.get('unavailable', []) if u['what'] == 'gpu.metrics') and ($G.get('kernel_count') or 0) >= 60" "$TRACE"
fact "gpu unavailable" "$out/refused.json" "$REASONS"

# In process, the default now (no switch set): the shipped path.
unset AMXDIAG_GPU_METRICS_INJECTED AMXDIAG_GPU_METRICS_EXPERIMENTAL
AMXDIAG_CUPTI_DEBUG=1 run builtin 14 "$A" profile -q -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 \
    -o "$out/builtin.json"
verdict builtin "$out/builtin.json" "$OKRUN and $M.get('unnamed') == 0 and ($G.get('kernel_count') or 0) == $G.get('launches')" "$COST"
debug builtin
fact session "$out/builtin.json" "$SESSION"
fact "gpu unavailable" "$out/builtin.json" "$REASONS"
fact trace "$out/builtin.json" "$TRACE"
fact kernels "$out/builtin.json" "$KM"

export AMXDIAG_CUPTI_DEBUG=1

# crashstack NAME: the fatal signal's stack the debug build writes (libamxdiag-inject.so's
# handler, AMXDIAG_CUPTI_DEBUG): the faulting pc and every frame, module+offset and symbol.
crashstack() {
    local log=$out/$1.log
    if grep -q 'amxdiag-cupti\[[0-9]*\]: FATAL' "$log" 2>/dev/null; then
        echo "  CRASH STACK:" >>"$S"
        sed -n '/amxdiag-cupti\[[0-9]*\]: FATAL/,/amxdiag-cupti: end of stack/p' "$log" | grep -v 'backtrace_symbols_fd' |
            grep -E 'FATAL|faulting pc|frame #|end of stack' | head -40 | sed 's/^amxdiag-cupti\[[0-9]*\]: /    /' >>"$S"
        # Our own frames by function and line (the library's functions are hidden: dladdr
        # names none of them); where addr2line is missing, the module+offset stays.
        if command -v addr2line >/dev/null; then
            grep -oE '[^ ]*(libamxdiag-inject\.so|/amxdiag)\+0x[0-9a-f]+' "$log" | sort -u | head -40 | while read -r fo; do
                printf '    %s = %s\n' "$fo" "$(timeout 2 addr2line -f -C -i -e "${fo%%+0x*}" "${fo##*+}" 2>/dev/null | paste -sd' ' | head -c 300)"
            done >>"$S"
        fi
    fi
    printf '  activity buffers back: %s during the run or at exit (lines), %s strange; flushes during the run: %s\n' \
        "$(grep -c 'activity buffer [0-9]* back' "$log" 2>/dev/null)" \
        "$(grep -c 'that is not out' "$log" 2>/dev/null)" \
        "$(grep -o 'flushes during the run stopped after [0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$' | tail -1)" >>"$S"
    printf '  exit: %s\n' "$(grep -o 'inject: exit handler.*' "$log" | head -1)" >>"$S"
    grep -E 'activity buffer [0-9]+ back' "$log" 2>/dev/null | head -4 | sed 's/^amxdiag-cupti\[[0-9]*\]: /    /' >>"$S"
}

# One way around the crash per step (cupti_prog, 20 iterations, about 1.5 s each).  PASS =
# exit 0, status complete, launches profiled, and the kernel records the step can have
# (60 where every record is flushed; see each step).
# Ranges are asked for too: without kernel activity the third run decoded 0 ranges.
OKR="$OKRUN and ($M.get('profiled_launches') or 0) > 0"
PASSV="$OKR and ($G.get('kernel_count') or 0) >= 60"
passed=""
passed_env=""
# variant NAME DESCRIPTION PASS-EXPR ENV...: one run of cupti_prog under those variables.
variant() {
    local name=$1 what=$2 pass=$3
    shift 3
    run "$name" 6 env "$@" "$A" profile -q -e gpu --gpu-metrics -o "$out/$name.json" -- \
        "$build/tests/cupti_prog" --iters 20
    verdict "$name" "$out/$name.json" "$pass" "$COST"
    if grep -q "^VERDICT $name: *PASS" "$S"; then
        passed="$passed $name"
        [ -n "$passed_env" ] || passed_env="$*"
    fi
    echo "  variant: $what [$*]" >>"$S"
    crashstack "$name"
    debug "$name"
}

# The shipped injected defaults (KERNEL activity records with --gpu-metrics).
variant prog "the defaults: KERNEL activity records" "$PASSV"
variant prog-all "the defaults, every launch profiled" "$PASSV and ($M.get('launches_profiled') or 0) >= 30" \
    AMXDIAG_GPU_METRICS_PER_KERNEL=0 AMXDIAG_GPU_METRICS_MAX_LAUNCHES=0
echo "VERDICT variants passed:${passed:- none}" >>"$S"
unset AMXDIAG_CUPTI_DEBUG

# GEMV: the bench's own GB/s, then the Range Profiler's DRAM bandwidth of the same kernels
# (want dram_Bps_max near the bench's GB/s; the bench's own times under replay are not
# comparable, each kernel runs once per pass).
BENCH_GEMV="[(x.get('group'), x.get('name'), x.get('shape'), round(x.get('gbps', 0), 1), x.get('pct_copy') and round(x['pct_copy'], 1)) for x in r.get('rows', []) if 'gemv' in str(x.get('group', '')) + str(x.get('name', ''))][:12], 'copy_gbps', r.get('copy_gbps')"
run bench 4 "$build/amxdiag-gpu-bench" --iters 3 --no-cublas --only gemv --json -o "$out/bench.json"
fact "bench gemv (key, value)" "$out/bench.json" "$BENCH_GEMV"
AMXDIAG_CUPTI_DEBUG=1 run bench-prof 12 "$A" profile -q -e gpu --gpu-metrics -o "$out/bench-prof.json" -- \
    "$build/amxdiag-gpu-bench" --iters 3 --no-cublas --only gemv
verdict bench-prof "$out/bench-prof.json" "$OKRUN and $M.get('unnamed') == 0" "$COST"
crashstack bench-prof
debug bench-prof
fact kernels "$out/bench-prof.json" "$KM"
fact "gpu unavailable" "$out/bench-prof.json" "$REASONS"
fact "gemv kernels (name, launches, profiled, dram_Bps_max GB/s, dram_Bps GB/s, dram % of peak)" "$out/bench-prof.json" \
    "[(k['name'][:48], k.get('launches'), m.get('ranges'), round(m.get('dram_Bps_max', 0)/1e9, 1), round(m.get('dram_Bps', 0)/1e9, 1), m.get('dram_pct_of_peak')) for k in $G.get('kernels', []) for m in [k.get('metrics') or {}] if m and 'gemv' in k['name'].lower()][:8]"

echo "== total $(($(date +%s) - started)) s" >>"$S"
grep '^VERDICT' "$S"
cat "$S"

#!/usr/bin/env bash
# --gpu-metrics on a real GPU, with a verdict per step.  The fourth H200 run (CUDA 13.0.1)
# passed in process and died in every injected run inside the exit handler's
# cuptiActivityFlushAll (SIGSEGV; "double free" in the bench), with and without the exit
# handler registered again after the profiler's setup.  This run takes the crashing stack
# (AMXDIAG_CUPTI_DEBUG: the injection library's signal handler writes every frame, module
# +offset and symbol) and tries one variant of the program's end per step.
# At most 90 s of steps (each under `timeout`, cut to what is left of the deadline; a normal
# run takes about 40 s), plus at most ~4 s to take the stacks of a step that hangs.
#   usage: tests/device/gpu_metrics_debug.sh BUILD_DIR
# BUILD_DIR (relative to the repository root, or absolute) needs: amxdiag,
# libamxdiag-inject.so, amxdiag-gpu-bench, devlibs/, tests/cupti_prog,
# tests/test_cupti_range, tests/libfake_range_cupti.so and tests/cupti_fake_app.
# Steps (unit and crash first: they take well under a second and need no GPU):
#   unit      tests/test_cupti_range against its stand-in libcupti
#   crash     amxdiag profile --gpu-metrics -- tests/cupti_fake_app metrics-crash: a process
#             that dies inside the setup gets a record naming the CUPTI call it died in
#   refused   amxdiag profile -e gpu --gpu-metrics -- tests/cupti_prog (injected, default):
#             metrics are refused with a note, the trace is complete, exit 0
#   prog, prog-old, prog-calls, prog-during, prog-normal, prog-noflush, prog-quiesce
#             (AMXDIAG_GPU_METRICS_EXPERIMENTAL=1 from here on, debug lines on, at most 6 s
#             each): cupti_prog --iters 20 injected, one variant of its end each (see the
#             comments at each step; "VERDICT variants passed:" lists those that exited 0
#             with their 60 kernel records); a CRASH STACK section where one died
#   prog-all  every launch profiled (AMXDIAG_GPU_METRICS_PER_KERNEL=0, MAX_LAUNCHES=0),
#             --iters 10: exits 0, 30 launches profiled, all named, the replay's cost
#   builtin   amxdiag profile -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 (in
#             process, defaults): finishes, ranges named, kernel records kept
#   bench     amxdiag-gpu-bench --iters 3 --no-cublas --only gemv alone, then
#   bench-prof under profile --gpu-metrics (injected, debug lines on, defaults): exits 0, no
#             unnamed range, the Range Profiler's DRAM bandwidth of the GEMV kernels
#   bench-quiesce  the same with AMXDIAG_INJECT_EXIT=quiesce (no CUPTI call at exit)
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

# The injected path by default: refused with a note (it hung before its first kernel on an
# H200), the trace complete.
run refused 4 "$A" profile -q -e gpu --gpu-metrics -o "$out/refused.json" -- "$build/tests/cupti_prog" --iters 20
fact "want exit 0, a gpu.metrics reason 'not supported yet for an external command', launches > 0" \
    "$out/refused.json" "$REASONS"
fact trace "$out/refused.json" "$TRACE"

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

export AMXDIAG_CUPTI_DEBUG=1
# From here on the experimental switch is on (off, --gpu-metrics only notes why: "refused").
export AMXDIAG_GPU_METRICS_EXPERIMENTAL=1

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

# Variants of the injected program's end, one step each (cupti_prog, 20 iterations, about
# 1.5 s).  The fourth H200 run died in the exit handler's cuptiActivityFlushAll with the
# exit handler registered again after the profiler's setup (LATE_EXIT=1) and without
# (LATE_EXIT=0): each step below changes one thing.  PASS = exit 0, status complete,
# launches profiled and the 60 kernel records of the 20 iterations.
PASSV="$OKRUN and ($G.get('kernel_count') or 0) >= 60"
passed=""
# variant NAME DESCRIPTION ENV...: one run of cupti_prog under those variables.
variant() {
    local name=$1 what=$2
    shift 2
    run "$name" 6 env "$@" "$A" profile -q -e gpu --gpu-metrics -o "$out/$name.json" -- \
        "$build/tests/cupti_prog" --iters 20
    verdict "$name" "$out/$name.json" "$PASSV" "$COST"
    grep -q "^VERDICT $name: *PASS" "$S" && passed="$passed $name"
    echo "  variant: $what [$*]" >>"$S"
    crashstack "$name"
    debug "$name"
}

# The defaults now: a thread of ours flushes the completed buffers every 200 ms, and the
# exit handler is registered again at the return of the program's calls (LATE_EXIT=calls).
variant prog "defaults (flush during the run, exit handler re-registered at calls, full stop at exit)"
fact session "$out/prog.json" "$SESSION"
fact "gpu unavailable" "$out/prog.json" "$REASONS"
fact trace "$out/prog.json" "$TRACE"
fact kernels "$out/prog.json" "$KM"
# The fourth run's behaviour, for its stack: where exactly does the exit flush die?
variant prog-old "the fourth run: no flush during the run, exit handler re-registered at settle points only" \
    AMXDIAG_CUPTI_FLUSH_DURING=0 AMXDIAG_INJECT_LATE_EXIT=1
# Only the exit handler kept behind CUPTI's later exit work: PASS = CUPTI's exit work
# registered after the settle points was the cause.
variant prog-calls "exit handler re-registered at every call, no flush during the run" \
    AMXDIAG_CUPTI_FLUSH_DURING=0 AMXDIAG_INJECT_LATE_EXIT=calls
# Only the flushes during the run: PASS = the exit flush dies only with much left to deliver.
variant prog-during "flush during the run, exit handler at settle points only" \
    AMXDIAG_CUPTI_FLUSH_DURING=1 AMXDIAG_INJECT_LATE_EXIT=1
# The exit flush unforced, then none at all (does Disable/HostDeinit/DeInit at exit die too?).
variant prog-normal "exit flush cuptiActivityFlushAll(0)" \
    AMXDIAG_CUPTI_FLUSH_DURING=0 AMXDIAG_INJECT_LATE_EXIT=1 AMXDIAG_CUPTI_EXIT_FLUSH=normal
variant prog-noflush "no exit flush (records lost), the profiler still ended at exit" \
    AMXDIAG_CUPTI_FLUSH_DURING=0 AMXDIAG_INJECT_LATE_EXIT=1 AMXDIAG_CUPTI_EXIT_FLUSH=none
# No CUPTI call at exit: the records are the flushes' during the run.
variant prog-quiesce "flush during the run, no CUPTI call at exit" \
    AMXDIAG_CUPTI_FLUSH_DURING=1 AMXDIAG_INJECT_EXIT=quiesce
echo "VERDICT variants passed:${passed:- none}" >>"$S"
unset AMXDIAG_CUPTI_DEBUG

# Every launch: 30 kernels and a cudaMemset, each range named.
AMXDIAG_GPU_METRICS_PER_KERNEL=0 AMXDIAG_GPU_METRICS_MAX_LAUNCHES=0 run prog-all 10 "$A" profile -q -e gpu \
    --gpu-metrics -o "$out/prog-all.json" -- "$build/tests/cupti_prog" --iters 10
verdict prog-all "$out/prog-all.json" "$OKRUN and $M.get('launches_profiled') == 30 and $M.get('unnamed') == 0 and not $G.get('notes')" "$COST"
fact kernels "$out/prog-all.json" "$KM"

export AMXDIAG_CUPTI_DEBUG=1
run builtin 14 "$A" profile -q -e gpu --gpu-metrics --ngl 99 --n-prompt 64 -n 8 -r 1 -o "$out/builtin.json"
verdict builtin "$out/builtin.json" "$OKRUN and $M.get('unnamed') == 0 and ($G.get('kernel_count') or 0) == $G.get('launches')" "$COST"
debug builtin
fact session "$out/builtin.json" "$SESSION"
fact "gpu unavailable" "$out/builtin.json" "$REASONS"
fact trace "$out/builtin.json" "$TRACE"
fact kernels "$out/builtin.json" "$KM"
unset AMXDIAG_CUPTI_DEBUG

# GEMV: the bench's own GB/s, then the Range Profiler's DRAM bandwidth of the same kernels
# (want dram_Bps_max near the bench's GB/s; the bench's own times under replay are not
# comparable, each kernel runs once per pass).
BENCH_GEMV="[(x.get('group'), x.get('name'), x.get('shape'), round(x.get('gbps', 0), 1), x.get('pct_copy') and round(x['pct_copy'], 1)) for x in r.get('rows', []) if 'gemv' in str(x.get('group', '')) + str(x.get('name', ''))][:12], 'copy_gbps', r.get('copy_gbps')"
run bench 4 "$build/amxdiag-gpu-bench" --iters 3 --no-cublas --only gemv --json -o "$out/bench.json"
fact "bench gemv (key, value)" "$out/bench.json" "$BENCH_GEMV"
AMXDIAG_CUPTI_DEBUG=1 run bench-prof 12 "$A" profile -q -e gpu --gpu-metrics -o "$out/bench-prof.json" -- \
    "$build/amxdiag-gpu-bench" --iters 3 --no-cublas --only gemv
verdict bench-prof "$out/bench-prof.json" "$OKRUN and $M.get('unnamed') == 0 and ($G.get('kernel_count') or 0) > 0" "$COST"
crashstack bench-prof
debug bench-prof
fact kernels "$out/bench-prof.json" "$KM"
fact "gpu unavailable" "$out/bench-prof.json" "$REASONS"
fact "gemv kernels (name, launches, profiled, dram_Bps_max GB/s, dram_Bps GB/s, dram % of peak)" "$out/bench-prof.json" \
    "[(k['name'][:48], k.get('launches'), m.get('ranges'), round(m.get('dram_Bps_max', 0)/1e9, 1), round(m.get('dram_Bps', 0)/1e9, 1), m.get('dram_pct_of_peak')) for k in $G.get('kernels', []) for m in [k.get('metrics') or {}] if m and 'gemv' in k['name'].lower()][:8]"

# The bench's end without a CUPTI call (it destroys its context before exit).
AMXDIAG_CUPTI_DEBUG=1 AMXDIAG_INJECT_EXIT=quiesce run bench-quiesce 10 "$A" profile -q -e gpu --gpu-metrics \
    -o "$out/bench-quiesce.json" -- "$build/amxdiag-gpu-bench" --iters 3 --no-cublas --only gemv
verdict bench-quiesce "$out/bench-quiesce.json" "$OKRUN and ($G.get('kernel_count') or 0) > 0" "$COST"
crashstack bench-quiesce
debug bench-quiesce

echo "== total $(($(date +%s) - started)) s" >>"$S"
grep '^VERDICT' "$S"
cat "$S"

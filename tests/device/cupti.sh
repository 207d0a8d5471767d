#!/usr/bin/env bash
# GPU tracing on a machine with an NVIDIA GPU, in one go (about 2 minutes on an H100):
# the GPU-tracing unit tests; a small CUDA program (tests/cupti_prog, runtime API)
# profiled through libamxdiag-inject.so, its own cudaEvent figures beside the trace's, and
# its overhead; its planted faults (oob, async) under `amxdiag profile` and under
# `--sanitize`; compute-sanitizer's own XML and text for the same fault (real samples
# for tests/fixtures/sanitizer); the CUDA kernels' three --inject-fault faults under
# `amxdiag profile` (and async-before-get_rows under --sanitize); the built-in path on
# the GPU through injection and in process.  Each uncertain fault is re-run once with
# CUDA_LAUNCH_BLOCKING=1 (the confirmation); matvec-oob, whose ring guess is wrong, runs
# with --no-confirm too, to show the correction; gpu.mem_used/mem_total against nvidia-smi.
#   usage: tests/device/cupti.sh BUILD_DIR [OUT_DIR]
# Outputs in OUT_DIR (default $OUT, else ./cupti-device-out): summary.txt (every step's
# exit status and the key figures) and cupti-all.tgz (every record, log and report).
set -u
build=${1:?usage: tests/device/cupti.sh BUILD_DIR [OUT_DIR]}
out=${2:-${OUT:-./cupti-device-out}}
mkdir -p "$out"
work=$(mktemp -d /tmp/amxdiag-cupti-XXXX)
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"
export FIXTURES="$PWD/tests/fixtures"
A="$PWD/$build/amxdiag"
P="$PWD/$build/tests/cupti_prog"
summary="$out/summary.txt"
: >"$summary"
# Steps that would start after this many seconds are skipped (the device call's limit).
deadline=${CUPTI_DEADLINE:-130}
started=$(date +%s)

. "$(dirname "$0")/lib.sh"

{
    echo "== $(date -u +%FT%TZ) $(uname -n)"
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1
    compute-sanitizer --version 2>&1 | tail -1
    grep RmProfilingAdminOnly /proc/driver/nvidia/params 2>&1
} >>"$summary"

for t in test_cupti_proto test_cupti_activity test_cupti_trace test_crash_analyze test_crash_confirm test_sanitizer_parse; do
    step "unit-$t" 30 "$PWD/$build/tests/$t"
done

# The small program alone and profiled through injection (2 runs each).
for i in 1 2; do
    step "prog-alone-$i" 30 "$P" --iters 300
    step "prog-profiled-$i" 40 "$A" profile -q -e gpu -o "$work/prog-$i.json" -- "$P" --iters 300
done
grep -h "cudaEvent" "$work"/prog-alone-*.log "$work"/prog-profiled-*.log | sed 's/^/own figures: /' >>"$summary"
fact "trace kernels (run 1)" "$work/prog-1.json" \
    "[(k['name'][:40], k['count'], round(k['mean_us'],3), round(k['median_us'],3)) for k in r['gpu_kernels']['kernels']]"
fact "trace copies (run 1)" "$work/prog-1.json" "[(c['kind'], c['count'], round(c['bytes_per_s']/1e9,2)) for c in r['gpu_kernels']['memcpy']]"
fact "tracer (run 1)" "$work/prog-1.json" "r['gpu_kernels'].get('tracer'), r['gpu_kernels']['launches'], r['unavailable']"
# Device memory: the tracer's cuMemGetInfo samples (MiB: last, max, count) and nvidia-smi's view.
fact "gpu memory (run 1)" "$work/prog-1.json" \
    "[(s['metric'], s['instance'], round(s['value'][-1]/2**20), round(max(s['value'])/2**20), len(s['value'])) for s in r['series'] if s['metric'] in ('gpu.mem_used','gpu.mem_total','gpu.errors')]"
nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader 2>&1 | sed 's/^/nvidia-smi memory (idle): /' >>"$summary"

# The CUDA kernels' planted faults (amxdiag bench kernels --gpu --inject-fault NAME).
# Expected: get_rows-oob certain from the first run (no re-run); matvec-oob "likely
# kern_quantize_q8" with --no-confirm, then kern_gemv_q4_0_mr "certain" with
# confirmation.agrees false; async-before-get_rows confirmed (kern_add).
step "kern-fault-matvec-oob-noconfirm" 40 "$A" profile -q -e gpu --no-confirm -o "$work/kern-fault-matvec-noconfirm.json" -- "$A" bench kernels --gpu --inject-fault matvec-oob
fact "kern matvec-oob --no-confirm" "$work/kern-fault-matvec-noconfirm.json" \
    "(r.get('crash') or {}).get('faulting_kernel',{}) and (r['crash']['faulting_kernel'].get('kernel'), r['crash']['faulting_kernel'].get('confidence'))"
for f in get_rows-oob matvec-oob async-before-get_rows; do
    step "kern-fault-$f" 60 "$A" profile -q -e gpu -o "$work/kern-fault-$f.json" -- "$A" bench kernels --gpu --inject-fault "$f"
    fact "kern $f crash" "$work/kern-fault-$f.json" \
        "r['status'], (r.get('crash') or {}).get('faulting_kernel',{}) and (r['crash']['faulting_kernel'].get('kernel'), r['crash']['faulting_kernel'].get('confidence'), r['crash']['faulting_kernel'].get('source')), (r.get('crash') or {}).get('confirmation'), (r.get('crash') or {}).get('conclusion'), [u['reason'][:200] for u in r['unavailable'] if u['collector']=='gpu']"
done

fact "CHECK matvec-oob confirmed (want: kern_gemv_q4_0_sb (the super-block GEMV, H100 and H200; kern_gemv_q4_0_mr with AMXDIAG_GPU_GEMV=rows) certain blocking re-run, agrees False)" "$work/kern-fault-matvec-oob.json" \
    "(r['crash']['faulting_kernel'].get('kernel'), r['crash']['faulting_kernel'].get('confidence'), r['crash']['faulting_kernel'].get('source'), r['crash'].get('confirmation',{}).get('agrees'), 'confirmed by a blocking re-run' in r['crash']['conclusion'])"

# The built-in path on the GPU: as a command (injection) and in process.
step "builtin-injected" 60 "$A" profile -q -e gpu -o "$work/builtin-injected.json" -- "$A" run --ngl 99 -p 64 -n 16 -r 1
fact "built-in (injected) kernels" "$work/builtin-injected.json" \
    "[(k['name'][:40], k['count'], round(k['median_us'],2)) for k in r.get('gpu_kernels',{}).get('kernels',[])][:12], [u['reason'][:200] for u in r['unavailable'] if u['collector']=='gpu']"
fact "built-in (injected) gpu memory MiB" "$work/builtin-injected.json" \
    "[(s['metric'], s['instance'], round(min(s['value'])/2**20), round(max(s['value'])/2**20), len(s['value'])) for s in r['series'] if s['metric'] in ('gpu.mem_used','gpu.mem_total')]"
step "builtin-inprocess" 60 "$A" profile -q -e gpu --ngl 99 --n-prompt 64 -n 16 -r 1 -o "$work/builtin-inprocess.json"
fact "built-in (in process) kernels" "$work/builtin-inprocess.json" \
    "[(k['name'][:40], k['count'], round(k['median_us'],2)) for k in r.get('gpu_kernels',{}).get('kernels',[])][:12], [u['reason'][:200] for u in r['unavailable'] if u['collector']=='gpu']"

# The program's own faults under profile.
for f in oob async; do
    step "prog-fault-$f" 60 "$A" profile -q -e gpu -o "$work/prog-fault-$f.json" -- "$P" --iters 5 --fault "$f"
    fact "prog $f crash" "$work/prog-fault-$f.json" "r['status'], r.get('crash',{}).get('confirmation'), r.get('crash',{}).get('conclusion')"
done
step "sanitizer-xml" 60 compute-sanitizer --tool=memcheck --xml --save="$work/real-memcheck-async.xml" --print-limit=10 "$P" --iters 2 --fault async
cp "$work/sanitizer-xml.log" "$work/real-memcheck-async.txt"


# --sanitize on the kernels' asynchronous fault; compute-sanitizer by hand (a real report).
step "kern-fault-async-sanitize" 90 "$A" profile -q -e gpu --sanitize -o "$work/kern-san-async.json" -- "$A" bench kernels --gpu --inject-fault async-before-get_rows
fact "kern async --sanitize" "$work/kern-san-async.json" "(r.get('crash') or {}).get('faulting_kernel'), (r.get('crash') or {}).get('conclusion')"
step "prog-gpu-metrics" 40 "$A" profile -q -e gpu --gpu-metrics -o "$work/prog-metrics.json" -- "$P" --iters 50
fact "gpu-metrics" "$work/prog-metrics.json" "r['gpu_kernels'].get('metrics'), [(k['name'][:30], k.get('metrics')) for k in r['gpu_kernels']['kernels']][:4], [u for u in r['unavailable'] if u['collector']=='gpu']"

cp "$summary" "$work/summary.txt"
tar czf "$out/cupti-all.tgz" -C "$work" .
cat "$summary"

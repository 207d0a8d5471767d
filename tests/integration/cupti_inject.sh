# GPU collector end to end without a GPU: the injection library's exports, the
# "unavailable" reason, the pipe protocol through a stand-in CUDA program (crash section
# for an asynchronous fault, kernel summaries, a corrupt stream), the library loaded the
# way the driver loads it, and --sanitize with a stand-in compute-sanitizer.
source "$(dirname "$0")/lib/adg.sh"

lib="$BUILD_DIR/libamxdiag-inject.so"
fake="$BUILD_DIR/tests/cupti_fake_app"
[ -f "$lib" ] || fail "libamxdiag-inject.so was not built next to amxdiag"
if [ -f "$lib" ]; then
    syms=$(nm -D --defined-only "$lib" | awk '$2 == "T" {print $3}')
    [ "$syms" = "InitializeInjection" ] || fail "libamxdiag-inject.so should export InitializeInjection only, exports: $syms"
    if ldd "$lib" | grep -Eq 'jansson|asan|ubsan'; then
        fail "libamxdiag-inject.so depends on more than libc: $(ldd "$lib")"
    fi
fi

json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }

# Without a driver (or without CUDA in the command) the collector says why.
cd "$TEST_TMP" || exit 1
expect_rc 0 "$AMXDIAG" profile -q -e gpu -o plain.json -- true
reason=$(json plain.json "[u['reason'] for u in r['unavailable'] if u['collector']=='gpu'][0]")
[ -n "$reason" ] || fail "no unavailable entry for the gpu collector"

expect_rc 2 "$AMXDIAG" profile -q --sanitize -o x.json
grep -q -- "--sanitize reruns a command" "$TEST_TMP/err" || fail "--sanitize without a command: $(cat "$TEST_TMP/err")"

case "$reason" in
    *"built without CUPTI headers"*)
        [ "$ADG_FAILS" -ne 0 ] && finish
        skip "this amxdiag was built without the CUPTI headers: the collector reports itself unavailable (checked)" ;;
esac

stub=""
for s in "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" /usr/local/cuda/lib64/stubs/libcuda.so; do
    [ -f "$s" ] && stub=$s && break
done
if [ -z "$stub" ] || [ ! -x "$fake" ]; then
    [ "$ADG_FAILS" -ne 0 ] && finish
    skip "no CUDA toolkit stub libcuda.so (or no fake app) to stand in for the driver"
fi
# The toolkit's stub stands in for the driver, so that the collector starts.
export AMXDIAG_LIBCUDA=$stub
# No NVML, even where a driver is installed: the memory figures checked below are the
# stand-in program's (with NVML running, gpu.mem_used would be NVML's; see top_nvml.sh).
export AMXDIAG_LIBNVML=/nonexistent/libnvidia-ml.so.1

# An asynchronous fault: the record names the earlier kernel, not GET_ROWS.
expect_rc 134 "$AMXDIAG" profile -q -e gpu -o async.json -- "$fake" async-fault
[ "$(json async.json "r['status']")" = workload-crashed ] || fail "async-fault: status $(json async.json "r['status']")"
[ "$(json async.json "r['crash']['faulting_kernel']['kernel']")" = "oob_write_kernel(float*, int)" ] ||
    fail "async-fault: faulting kernel $(json async.json "r['crash']['faulting_kernel']")"
[ "$(json async.json "r['crash']['reporting_op']['kernel'].split('(')[0]")" = get_rows ] ||
    fail "async-fault: reporting op $(json async.json "r['crash']['reporting_op']")"
[ "$(json async.json "r['crash']['reporting_op_faulted']")" = False ] || fail "async-fault: reporting op marked as faulting"
json async.json "r['crash']['conclusion']" | grep -q "the reporting op was not the faulting one" ||
    fail "async-fault: conclusion $(json async.json "r['crash']['conclusion']")"
[ "$(json async.json "r['crash']['flushed_by']")" = cuda-error ] || fail "async-fault: flush reason"
json async.json "[e['kind'] for e in r['events']]" | grep -q "crash" || fail "async-fault: no crash event"
# The ring's guess was "likely", so a blocking re-run confirmed it (the stand-in's faulting
# launch returns 700 itself under CUDA_LAUNCH_BLOCKING=1, as the driver's does).
[ "$(json async.json "r['crash']['confirmation']['agrees']")" = True ] ||
    fail "async-fault: confirmation $(json async.json "r['crash'].get('confirmation')")"
[ "$(json async.json "r['crash']['faulting_kernel']['confidence']+'/'+r['crash']['faulting_kernel']['source']")" = "certain/blocking re-run" ] ||
    fail "async-fault: not confirmed: $(json async.json "r['crash']['faulting_kernel']")"
json async.json "r['crash']['conclusion']" | grep -q "confirmed the launch ring's first guess" ||
    fail "async-fault: conclusion after confirmation $(json async.json "r['crash']['conclusion']")"
[ "$(json async.json "[s['value'][-1] for s in r['series'] if s['metric']=='gpu.errors'][0]")" = 1.0 ] ||
    fail "async-fault: gpu.errors $(json async.json "[s for s in r['series'] if s['metric']=='gpu.errors']")"

# matvec-oob as the H100 showed it: the ring alone names the wrong kernel ("likely"
# kern_quantize_q8, the oldest launch without completion evidence) ...
expect_rc 134 "$AMXDIAG" profile -q -e gpu --no-confirm -o mv1.json -- "$fake" matvec-oob
[ "$(json mv1.json "r['crash']['faulting_kernel']['kernel']+'/'+r['crash']['faulting_kernel']['confidence']")" = kern_quantize_q8/likely ] ||
    fail "matvec-oob --no-confirm: $(json mv1.json "r['crash']['faulting_kernel']")"
[ "$(json mv1.json "'confirmation' in r['crash']")" = False ] || fail "--no-confirm still re-ran the command"
# ... and the blocking re-run corrects it, saying so.
expect_rc 134 "$AMXDIAG" profile -q -e gpu -o mv.json -- "$fake" matvec-oob
[ "$(json mv.json "r['crash']['faulting_kernel']['kernel']+'/'+r['crash']['faulting_kernel']['confidence']")" = kern_gemv_q4_0_mr/certain ] ||
    fail "matvec-oob: not corrected: $(json mv.json "r['crash']['faulting_kernel']")"
[ "$(json mv.json "r['crash']['faulting_kernel']['seq']")" = 3 ] || fail "matvec-oob: not matched to launch #3"
[ "$(json mv.json "(r['crash']['confirmation']['ran'], r['crash']['confirmation']['rc'], r['crash']['confirmation']['kernel'], r['crash']['confirmation']['agrees'])")" = "(True, 134, 'kern_gemv_q4_0_mr', False)" ] ||
    fail "matvec-oob: confirmation $(json mv.json "r['crash']['confirmation']")"
json mv.json "r['crash']['conclusion']" | grep -q "confirmed by a blocking re-run" || fail "matvec-oob: conclusion $(json mv.json "r['crash']['conclusion']")"
json mv.json "r['crash']['conclusion']" | grep -q "disagrees with the first guess from the launch ring, 'kern_quantize_q8'" ||
    fail "matvec-oob: the conclusion does not say the first guess was wrong: $(json mv.json "r['crash']['conclusion']")"
[ "$(json mv.json "r['status']")" = workload-crashed ] || fail "matvec-oob: status of the first run lost"
[ ! -e mv.confirm.json ] || fail "matvec-oob: the re-run's own record was left behind"
[ "$(json mv.json "[(e['name'], 'confirmed by a blocking re-run' in e['detail']['conclusion']) for e in r['events'] if e['kind']=='crash']")" = "[('kern_gemv_q4_0_mr', True)]" ] ||
    fail "matvec-oob: the crash event still tells the first guess: $(json mv.json "[e for e in r['events'] if e['kind']=='crash']")"
# Without -q it says so on stderr.
expect_rc 134 "$AMXDIAG" profile -e gpu -o mvv.json -- "$fake" matvec-oob
grep -q "running the command again with CUDA_LAUNCH_BLOCKING=1" "$TEST_TMP/err" || fail "matvec-oob: no re-run notice: $(cat "$TEST_TMP/err")"
grep -q "confirmed by a blocking re-run: the faulting kernel is 'kern_gemv_q4_0_mr' (not 'kern_quantize_q8'" "$TEST_TMP/err" ||
    fail "matvec-oob: no confirmation line: $(cat "$TEST_TMP/err")"
# --json: the summary on stdout stays JSON (the re-run's output went to stderr).
expect_rc 134 "$AMXDIAG" profile --json -e gpu -o mvj.json -- "$fake" matvec-oob
python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$TEST_TMP/out" || fail "matvec-oob --json: stdout is not JSON: $(head -c 300 "$TEST_TMP/out")"
# A user's own CUDA_LAUNCH_BLOCKING=1: the first run is certain, nothing to confirm.
CUDA_LAUNCH_BLOCKING=1 expect_rc 134 "$AMXDIAG" profile -q -e gpu -o mvb.json -- "$fake" matvec-oob
[ "$(json mvb.json "r['crash']['faulting_kernel']['kernel']+'/'+r['crash']['faulting_kernel']['source']+'/'+str('confirmation' in r['crash'])")" = "kern_gemv_q4_0_mr/launch ring/False" ] ||
    fail "matvec-oob with CUDA_LAUNCH_BLOCKING=1: $(json mvb.json "r['crash']['faulting_kernel']")"

# A clean run: kernel summaries with demangled names, copies, gpu.* series.
expect_rc 0 "$AMXDIAG" profile -q -e gpu -o ok.json -- "$fake" sync-ok
[ "$(json ok.json "len(r['gpu_kernels']['kernels'])")" = 2 ] || fail "sync-ok: kernels $(json ok.json "r['gpu_kernels']")"
[ "$(json ok.json "r['gpu_kernels']['kernels'][0]['name']")" = "add_kernel(float const*, float const*, float*, int)" ] ||
    fail "sync-ok: first kernel $(json ok.json "r['gpu_kernels']['kernels'][0]")"
[ "$(json ok.json "r['gpu_kernels']['kernels'][0]['median_us']")" = 80.0 ] || fail "sync-ok: median"
json ok.json "[s['metric'] for s in r['series']]" | grep -q "gpu.busy" || fail "sync-ok: no gpu.busy series"
[ "$(json ok.json "'crash' in r")" = False ] || fail "sync-ok: a crash section without an error"
# Device memory from the tracer's MEMINFO records: gpu.mem_used / gpu.mem_total per GPU.
[ "$(json ok.json "[(s['instance'], round(s['value'][-1] / 2**30, 3)) for s in r['series'] if s['metric'] in ('gpu.mem_used','gpu.mem_total')]")" = "[('gpu0', 3.0), ('gpu0', 82.0)]" ] ||
    fail "sync-ok: memory series $(json ok.json "[s for s in r['series'] if s['metric'].startswith('gpu.mem')]")"
[ "$(json ok.json "[m['unit']+'/'+m['scope'] for m in r['metrics'] if m['name']=='gpu.mem_used'][0]")" = B/gpu ] ||
    fail "sync-ok: gpu.mem_used registration"
[ "$(json ok.json "[s for s in r['series'] if s['metric']=='gpu.errors']")" = "[]" ] || fail "sync-ok: gpu.errors without an error"

# amxdiag top's GPU panel shows memory and the error count (the live --json snapshot).
snapval() { python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print([(v.get('instance'), v['value']) for v in s['values'] if v['metric']==sys.argv[2]])" "$TEST_TMP/out" "$1"; }
expect_rc 0 "$AMXDIAG" top --json -e gpu -o topok.json -- "$fake" sync-ok
[ "$(snapval gpu.mem_used)" = "[('gpu0', 3221225472.0)]" ] || fail "top: gpu.mem_used $(snapval gpu.mem_used)"
grep -q "3.00 GiB/82.00 GiB" "$TEST_TMP/out" || fail "top: the GPU panel does not show used/total memory"
expect_rc 134 "$AMXDIAG" top --json -e gpu -o topmv.json -- "$fake" matvec-oob
[ "$(snapval gpu.errors)" = "[(None, 1.0)]" ] || fail "top: gpu.errors $(snapval gpu.errors)"

# A corrupt stream: what came before is kept, the corruption is reported.
expect_rc 0 "$AMXDIAG" profile -q -e gpu -o garbage.json -- "$fake" garbage
json garbage.json "[u['reason'] for u in r['unavailable'] if u['what']=='gpu.trace']" | grep -q "corrupt at byte" ||
    fail "garbage: $(json garbage.json "r['unavailable']")"

# The library loaded as the driver loads it: without a working driver the tracer says
# why, over the pipe (not "never initialised CUDA").
expect_rc 0 "$AMXDIAG" profile -q -e gpu -o inject.json -- "$fake" inject
why=$(json inject.json "' | '.join(u['reason'] for u in r['unavailable'] if u['collector']=='gpu')")
case "$why" in
    *"never initialised CUDA"*|"") fail "inject: the tracer's own reason did not come over the pipe: $why" ;;
esac

# --sanitize with a stand-in compute-sanitizer that writes a recorded-layout report.
cat >"$TEST_TMP/compute-sanitizer" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do case "\$a" in --save=*) out=\${a#--save=} ;; esac; done
while [ \$# -gt 0 ] && [ "\${1#--}" != "\$1" ]; do shift; done
cp "\$REPORT" "\$out"
"\$@"
EOF
chmod +x "$TEST_TMP/compute-sanitizer"
export COMPUTE_SANITIZER="$TEST_TMP/compute-sanitizer"
REPORT="$FIXTURES/sanitizer/memcheck_oob.xml" expect_rc 134 "$AMXDIAG" profile -q -e gpu --sanitize -o san.json -- "$fake" async-fault
[ "$(json san.json "r['crash']['faulting_kernel']['source']")" = compute-sanitizer ] ||
    fail "--sanitize: faulting kernel $(json san.json "r['crash'].get('faulting_kernel')")"
[ "$(json san.json "r['crash']['faulting_kernel']['seq']")" = 2 ] || fail "--sanitize: not matched to launch #2"
[ -f san.sanitizer.xml ] || fail "--sanitize: the report was not kept next to the record"
# A truncated report: exit 2, a clear message, the first run's record intact.
REPORT="$FIXTURES/sanitizer/memcheck_truncated.xml" expect_rc 2 "$AMXDIAG" profile -q -e gpu --sanitize -o trunc.json -- "$fake" async-fault
grep -q "truncated compute-sanitizer XML" "$TEST_TMP/err" || fail "--sanitize truncated: $(cat "$TEST_TMP/err")"
[ "$(json trunc.json "r['crash']['faulting_kernel']['kernel']")" = "oob_write_kernel(float*, int)" ] ||
    fail "--sanitize truncated: the first record was not kept"
finish

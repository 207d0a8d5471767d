# --gpu-metrics end to end without a GPU: a stand-in CUDA program sends what
# libamxdiag-inject.so sends from an H100 (the Range Profiler session, per-launch
# counters); the record's per-kernel metrics and their aggregation, profile's summary
# (human and --json), the run report's per-kernel table with achieved bandwidth, and the
# admin-only case (the reason in the record, the report and the summary, the trace intact).
source "$(dirname "$0")/lib/adg.sh"

fake="$BUILD_DIR/tests/cupti_fake_app"
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
cd "$TEST_TMP" || exit 1

expect_rc 0 "$AMXDIAG" profile -q -e gpu -o plain.json -- true
case "$(json plain.json "[u['reason'] for u in r['unavailable'] if u['collector']=='gpu']")" in
    *"built without CUPTI headers"*) skip "built without the CUPTI headers (the gpu collector says so)" ;;
esac
stub=""
for s in "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" /usr/local/cuda/lib64/stubs/libcuda.so; do
    [ -f "$s" ] && stub=$s && break
done
[ -n "$stub" ] && [ -x "$fake" ] || skip "no CUDA toolkit stub libcuda.so (or no fake app) to stand in for the driver"
export AMXDIAG_LIBCUDA=$stub

# The counters of 12 launches (3 kernels x 4) as the injection library sends them.
expect_rc 0 "$AMXDIAG" profile -e gpu --gpu-metrics -o m.json -- "$fake" metrics
cp "$TEST_TMP/err" summary.txt
[ "$(json m.json "r['gpu_kernels']['metrics']['chip'], r['gpu_kernels']['metrics']['passes'], r['gpu_kernels']['metrics']['profiled_launches']")" = "GH100 2 12" ] ||
    fail "session: $(json m.json "r['gpu_kernels'].get('metrics')")"
[ "$(json m.json "r['gpu_kernels']['metrics']['collected']")" = "['duration_ns', 'dram_read_bytes', 'dram_write_bytes', 'dram_pct_of_peak', 'sm_throughput_pct', 'tensor_hmma_pct', 'tensor_gmma_pct', 'dram_peak_bytes_per_cycle', 'dram_cycles_per_s']" ] ||
    fail "collected: $(json m.json "r['gpu_kernels']['metrics']['collected']")"
# DRAM peak = 2094 B/cycle x 1.6 GHz.
[ "$(json m.json "round(r['gpu_kernels']['metrics']['dram_peak_Bps']/1e9, 1)")" = 3350.4 ] ||
    fail "peak: $(json m.json "r['gpu_kernels']['metrics'].get('dram_peak_Bps')")"
gemv="[k for k in r['gpu_kernels']['kernels'] if k['name'].startswith('kern_gemv_q4_0')][0]['metrics']"
[ "$(json m.json "$gemv['ranges'], $gemv['dram_read_bytes'], round($gemv['dram_Bps']/1e9, 1)")" = "4 9680000000.0 2720.2" ] ||
    fail "gemv metrics: $(json m.json "$gemv")"
[ "$(json m.json "round($gemv['dram_pct_of_peak_bytes'], 1), $gemv['dram_pct_of_peak'], $gemv['sm_throughput_pct']")" = "81.2 81.0 32.0" ] ||
    fail "gemv percentages: $(json m.json "$gemv")"
gemm="[k for k in r['gpu_kernels']['kernels'] if k['name'].startswith('kern_gemm_f16')][0]['metrics']"
[ "$(json m.json "$gemm['tensor_hmma_pct'], $gemm['tensor_gmma_pct'], 'tensor_imma_pct' in $gemm")" = "46.0 0.0 False" ] ||
    fail "gemm tensor pipes: $(json m.json "$gemm")"
[ "$(json m.json "[u for u in r['unavailable'] if u['what']=='gpu.metrics']")" = "[]" ] ||
    fail "metrics marked unavailable: $(json m.json "r['unavailable']")"
grep -q "DRAM GB/s" summary.txt || fail "summary: no metrics columns: $(cat summary.txt)"
grep -Eq "kern_gemv_q4_0 +[0-9.]+ [MG]i?B +2720.2 +81.2%" summary.txt || fail "summary: gemv row: $(grep kern_gemv summary.txt)"
grep -q "CUPTI Range Profiler on GH100, 12 launches profiled, kernel replay with 2 pass" summary.txt ||
    fail "summary: session line: $(tail -3 summary.txt)"

# profile --json carries the same per kernel.
expect_rc 0 "$AMXDIAG" profile --json -e gpu --gpu-metrics -o m2.json -- "$fake" metrics
python3 - "$TEST_TMP/out" <<'PY' || fail "profile --json: no gpu metrics: $(head -c 400 "$TEST_TMP/out")"
import json, sys
s = json.load(open(sys.argv[1]))
g = s["gpu"]
assert s["schema"] == "amxdiag.profile/1"
assert g["metrics"]["chip"] == "GH100", g
assert any(k["name"].startswith("kern_gemv_q4_0") and round(k["metrics"]["dram_Bps"] / 1e9, 1) == 2720.2 for k in g["kernels"]), g
PY

# The run report: a per-kernel table with achieved bandwidth; JSON keeps the same.
expect_rc 0 "$AMXDIAG" report m.json -o m.md
grep -q "hardware metrics (--gpu-metrics)" m.md || fail "report: no metrics table"
grep -Eq "kern_gemv_q4_0.*\| 4 \|.*2720.2 GB/s \| 81.2% \| 32.0%" m.md || fail "report: gemv row: $(grep -m2 kern_gemv m.md)"
grep -q "kernel replay with 2 pass" m.md || fail "report: no note on replay"
expect_rc 0 "$AMXDIAG" report --format json m.json -o m.rep.json
grep -q "2720.2 GB/s" m.rep.json || fail "report json: achieved bandwidth missing"
expect_rc 0 "$AMXDIAG" report --format html m.json -o m.html
grep -q "2720.2 GB/s" m.html || fail "report html: achieved bandwidth missing"

# Without --gpu-metrics nothing of it appears.
expect_rc 0 "$AMXDIAG" profile -q -e gpu -o nometrics.json -- "$fake" sync-ok
[ "$(json nometrics.json "'metrics' in r['gpu_kernels']")" = False ] || fail "metrics without --gpu-metrics"
expect_rc 0 "$AMXDIAG" report nometrics.json -o n.md
grep -q "hardware metrics" n.md && fail "report: metrics table without metrics"

# Counters restricted to administrators: the reason in the record, summary and report;
# the kernel trace complete.
expect_rc 0 "$AMXDIAG" profile -e gpu --gpu-metrics -o denied.json -- "$fake" metrics-denied
grep -q "gpu.metrics: --gpu-metrics: GPU performance counters are restricted to administrators" "$TEST_TMP/err" ||
    fail "summary: no reason: $(tail -5 "$TEST_TMP/err")"
[ "$(json denied.json "[u['what'] for u in r['unavailable'] if 'INSUFFICIENT_PRIVILEGES' in u['reason']]")" = "['gpu.metrics']" ] ||
    fail "denied: unavailable $(json denied.json "r['unavailable']")"
[ "$(json denied.json "r['gpu_kernels']['kernel_count'], 'metrics' in r['gpu_kernels']")" = "12 False" ] ||
    fail "denied: trace $(json denied.json "r['gpu_kernels']['kernel_count']")"
expect_rc 0 "$AMXDIAG" report denied.json -o d.md
grep -q "NVreg_RestrictProfilingToAdminUsers=0" d.md || fail "report: the reason is not shown"

# -e without gpu: counters cannot be read, and amxdiag says so.
expect_err "warning: --gpu-metrics reads counters through the gpu set" "$AMXDIAG" profile -q -e cpu --gpu-metrics -o nogpu.json -- true

# Asked for, but the program launched no kernel: the record says why there are none.
expect_rc 0 "$AMXDIAG" profile -q -e gpu --gpu-metrics -o nokern.json -- "$fake" garbage
[ "$(json nokern.json "[u['reason'][:40] for u in r['unavailable'] if u['what']=='gpu.metrics']")" = "['--gpu-metrics: no kernel was launched in']" ] ||
    fail "no kernels: $(json nokern.json "r['unavailable']")"
finish

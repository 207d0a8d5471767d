# The nvml collector end to end through the stand-in libnvidia-ml (tests/fixtures/nvml,
# scripted by $AMXDIAG_FAKE_NVML): profile -e nvml records every GPU metric and the nvml
# section, only the workload's own processes count for gpu.workload_mem (a child of the
# command too, and a --pid process), every failure has its reason, NVML's device memory
# wins over the CUPTI tracer's, and amxdiag top's GPU panel shows it all (--dump, --json and
# live in tmux, where the values follow the script while the run goes on).
. "$(dirname "$0")/lib/adg.sh"
cd "$TEST_TMP" || exit 1

FAKE="$BUILD_DIR/tests/libfake_nvml.so"
[ -f "$FAKE" ] || { fail "the stand-in $FAKE was not built"; finish; }
export AMXDIAG_LIBNVML="$FAKE" AMXDIAG_FAKE_NVML="$TEST_TMP/nvml.txt"
GiB=1073741824
script() {
    cat >"$TEST_TMP/nvml.txt" <<EOF
count=2
driver=580.65.06
gpu0.name=NVIDIA H100 80GB HBM3
gpu0.mem_total=$((80 * GiB))
gpu0.mem_used=$((12 * GiB))
gpu0.util=${1:-87}
gpu0.mem_util=41
gpu0.power_mw=312500
gpu0.power_limit_mw=700000
gpu0.temp=61
gpu0.sm_mhz=1980
gpu0.max_sm_mhz=1980
gpu0.rx_kbs=1000000
gpu0.tx_kbs=250000
gpu0.procs=@$TEST_TMP/procs
gpu1.name=Second GPU
gpu1.mem_total=$((24 * GiB))
gpu1.mem_used=$GiB
gpu1.util=3
gpu1.temp=err:15
EOF
}
script
# The workload writes its pid into the process list, next to pid 1's memory, which is
# not the workload's.
: >"$TEST_TMP/procs"
cat >wl.sh <<EOS
#!/bin/sh
echo "\$\$:$((10 * GiB)),1:$((5 * GiB))" >'$TEST_TMP/procs'
sleep \${1:-0.8}
EOS
chmod +x wl.sh
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
# last_is FILE METRIC INSTANCE VALUE: the series' last value (the record keeps 10 digits).
last_is() {
    python3 - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); want = float(sys.argv[4])
v = [s["value"][-1] for s in r["series"] if s["metric"] == sys.argv[2] and s["instance"] == sys.argv[3]]
sys.exit(0 if v and abs(v[0] - want) <= 1e-9 * max(1, want) else 1)
EOF
}

expect_rc 0 "$AMXDIAG" profile -q -e nvml -o n.json -- ./wl.sh
python3 - n.json <<EOF || fail "profile -e nvml: record wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["config"]["sets"] == ["nvml"], r["config"]["sets"]
last = {(s["metric"], s["instance"]): s["value"][-1] for s in r["series"] if s["value"]}
want = {("gpu.mem_used", "gpu0"): 12 * $GiB, ("gpu.mem_total", "gpu0"): 80 * $GiB, ("gpu.util", "gpu0"): 87,
        ("gpu.mem_util", "gpu0"): 41, ("gpu.power", "gpu0"): 312.5, ("gpu.temp", "gpu0"): 61,
        ("gpu.sm_clock", "gpu0"): 1.98e9, ("gpu.pcie_rx_bw", "gpu0"): 1000000 * 1024.0,
        ("gpu.pcie_tx_bw", "gpu0"): 250000 * 1024.0, ("gpu.workload_mem", "gpu0"): 10 * $GiB,
        ("gpu.mem_used", "gpu1"): $GiB, ("gpu.workload_mem", "gpu1"): 0}
for k, w in want.items():
    assert k in last, (k, sorted(last))
    assert abs(last[k] - w) <= 1e-6 * max(1, abs(w)), (k, last[k], w)
units = {m["name"]: (m["unit"], m["scope"], m["collector"]) for m in r["metrics"]}
assert units["gpu.power"] == ("W", "gpu", "nvml") and units["gpu.workload_mem"] == ("B", "gpu", "nvml"), units
reasons = {(u["collector"], u["what"]): u["reason"] for u in r["unavailable"]}
assert "gpu1: NVML_ERROR_GPU_IS_LOST" in reasons[("nvml", "gpu.temp")], reasons
assert "gpu1: not supported" in reasons[("nvml", "gpu.power")], reasons
nv = r["nvml"]
assert nv["driver_version"] == "580.65.06" and nv["process_api"] == 3, nv
assert [d["name"] for d in nv["devices"]] == ["NVIDIA H100 80GB HBM3", "Second GPU"], nv["devices"]
assert nv["devices"][0]["power_limit_w"] == 700.0
assert [p["mem_peak_bytes"] for p in nv["workload_processes"]] == [10 * $GiB], nv["workload_processes"]
assert nv["workload_processes"][0]["pid"] != 1
EOF

# profile's summaries: the GPUs block (human) and "nvml" (--json).
: >"$TEST_TMP/procs"
"$AMXDIAG" profile -e nvml -o s.json -- ./wl.sh >/dev/null 2>summary.txt || fail "profile summary run exited $?"
grep -q '^GPUs (NVML, every process)' summary.txt || fail "summary: no GPUs block: $(cat summary.txt)"
grep -Eq 'gpu0  NVIDIA H100 80GB HBM3: memory peak 12.00 GiB of 80.00 GiB \(the workload.s 10.00 GiB\)' summary.txt ||
    fail "summary: gpu0 line: $(cat summary.txt)"
grep -q 'util mean 87% max 87%, power max 312 W of 700 W, temperature max 61 C' summary.txt || fail "summary: figures: $(cat summary.txt)"
: >"$TEST_TMP/procs"
"$AMXDIAG" profile --json -e nvml -o sj.json -- ./wl.sh >sj-sum.json 2>/dev/null || fail "profile --json exited $?"
python3 - sj-sum.json <<EOF || fail "profile --json: nvml summary wrong: $(cat sj-sum.json)"
import json, sys
d = json.load(open(sys.argv[1]))["nvml"]["devices"]
assert [x["instance"] for x in d] == ["gpu0", "gpu1"], d
assert d[0]["workload_mem_peak_bytes"] == 10 * $GiB and d[0]["util_max_pct"] == 87 and d[0]["power_max_w"] == 312.5, d[0]
assert "temp_max_c" not in d[1], d[1]  # lost at open: no series, no figure
EOF

# A process the command started (not exec'ed) counts too, with no sampler in the run.
: >"$TEST_TMP/procs"
expect_rc 0 "$AMXDIAG" profile -q -e nvml -o child.json -- sh -c "./wl.sh; true"
last_is child.json gpu.workload_mem gpu0 $((10 * GiB)) ||
    fail "a child of the command: gpu.workload_mem $(json child.json "[s for s in r['series'] if s['metric']=='gpu.workload_mem']")"

# --pid: NVML needs nothing in the process (CUPTI cannot attach).
sleep 5 &
spid=$!
echo "$spid:$((2 * GiB))" >"$TEST_TMP/procs"
expect_rc 0 "$AMXDIAG" profile -q -e nvml --pid "$spid" --duration 0.5 -o pid.json
kill "$spid" 2>/dev/null
last_is pid.json gpu.workload_mem gpu0 $((2 * GiB)) ||
    fail "--pid: gpu.workload_mem $(json pid.json "[s for s in r['series'] if s['metric']=='gpu.workload_mem']")"

# The oldest NVML process list (v1 entry point only) gives the same answer.
: >"$TEST_TMP/procs"
AMXDIAG_LIBNVML="$BUILD_DIR/tests/libfake_nvml_v1.so" expect_rc 0 "$AMXDIAG" profile -q -e nvml -o v1.json -- ./wl.sh
[ "$(json v1.json "r['nvml']['process_api']")" = 1 ] && last_is v1.json gpu.workload_mem gpu0 $((10 * GiB)) ||
    fail "v1 process list: $(json v1.json "r['nvml']")"

# Why not, when it cannot run: no library, nvmlInit's error, no device.
AMXDIAG_LIBNVML=/nonexistent/libnvidia-ml.so.1 expect_rc 0 "$AMXDIAG" profile -q -e nvml -o nolib.json -- true
json nolib.json "[u['reason'] for u in r['unavailable'] if u['collector']=='nvml'][0]" | grep -q "cannot load NVML" ||
    fail "no library: $(json nolib.json "r['unavailable']")"
printf 'init=9\n' >"$TEST_TMP/nvml.txt"
expect_rc 0 "$AMXDIAG" profile -q -e nvml -o init.json -- true
json init.json "[u['reason'] for u in r['unavailable'] if u['collector']=='nvml'][0]" | grep -q "NVML_ERROR_DRIVER_NOT_LOADED (Driver Not Loaded) .*kernel module" ||
    fail "nvmlInit error: $(json init.json "r['unavailable']")"
# -e names it: the user hears why on stderr
grep -q "collector 'nvml' cannot run here: nvmlInit failed" "$TEST_TMP/err" || fail "-e nvml: no warning: $(cat "$TEST_TMP/err")"
printf 'count=0\n' >"$TEST_TMP/nvml.txt"
expect_rc 0 "$AMXDIAG" profile -q -e nvml -o nodev.json -- true
json nodev.json "[u['reason'] for u in r['unavailable'] if u['collector']=='nvml'][0]" | grep -q "NVML sees no GPU" ||
    fail "no device: $(json nodev.json "r['unavailable']")"
expect_rc 2 "$AMXDIAG" profile -q -e nvml,bogus -- true
grep -q "nvml, pmu, all" "$TEST_TMP/err" || fail "the -e hint does not list nvml: $(cat "$TEST_TMP/err")"
script

# top: the GPU panel from NVML alone (--dump and --json).
: >"$TEST_TMP/procs"
LANG=C.UTF-8 "$AMXDIAG" top --dump --size 100x30 -e nvml -o t.json -- ./wl.sh >dump.txt 2>"$TEST_TMP/err" ||
    fail "top --dump -e nvml exited $?: $(cat "$TEST_TMP/err")"
for want in 'GPU: 2x NVIDIA H100 80GB HBM3' 'gpu0 .* 87% 12.00 GiB/80.00 GiB' 'workload 10.00 GiB 61C 312W 1980MHz' \
    'gpu1 .*  3% 1.00 GiB/24.00 GiB' 'PCIe rx 1.0 GB/s tx 256.0 MB/s'; do
    grep -Eq -- "$want" dump.txt || fail "top --dump: no /$want/ in: $(cat dump.txt)"
done
: >"$TEST_TMP/procs"
"$AMXDIAG" top --json -e nvml -o tj.json -- ./wl.sh >view.json 2>"$TEST_TMP/err" || fail "top --json exited $?"
python3 - view.json tj.json <<'EOF' || fail "top --json: values differ from the record"
import json, sys
v = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
last = {(s["metric"], s["instance"]): s["value"][-1] for s in r["series"] if s["value"]}
shown = {(x["metric"], x["instance"]): x["value"] for x in v["values"] if x["panel"] == "gpu"}
for k in [("gpu.mem_used", "gpu0"), ("gpu.util", "gpu0"), ("gpu.workload_mem", "gpu0"), ("gpu.power", "gpu0"),
          ("gpu.temp", "gpu0"), ("gpu.pcie_rx_bw", "gpu0")]:
    assert k in shown, (k, sorted(shown))
    assert abs(shown[k] - last[k]) <= 1e-6 * max(1, abs(last[k])), (k, shown[k], last[k])
EOF

# With the CUPTI tracer too (its stand-in program reports 3 GiB used through cuMemGetInfo),
# gpu.mem_used is NVML's alone: one source per series.
stub=/usr/local/cuda/lib64/stubs/libcuda.so
fake_app="$BUILD_DIR/tests/cupti_fake_app"
if [ -f "$stub" ] && [ -x "$fake_app" ] && [ -f "$BUILD_DIR/libamxdiag-inject.so" ]; then
    AMXDIAG_LIBCUDA=$stub expect_rc 0 "$AMXDIAG" profile -q -e gpu -o both.json -- "$fake_app" sync-ok
    python3 - both.json <<EOF || fail "nvml + gpu: gpu.mem_used mixes sources"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["config"]["sets"] == ["gpu", "nvml"], r["config"]["sets"]
m = [x for x in r["metrics"] if x["name"] == "gpu.mem_used"][0]
assert m["collector"] == "nvml", m
vals = [v for s in r["series"] if s["metric"] == "gpu.mem_used" and s["instance"] == "gpu0" for v in s["value"]]
assert vals and all(abs(v - 12 * $GiB) < 100 for v in vals), vals
assert any(s["metric"] == "gpu.kernel_time" for s in r["series"])  # the trace ran beside it
EOF
else
    echo "SKIP (part): no CUDA stub libcuda or CUPTI stand-in program: NVML beside the tracer not checked"
fi

# Live in tmux: the panel follows NVML while the run goes on.
command -v tmux >/dev/null || { echo "SKIP: tmux not installed (scripts/install-deps.sh installs it)"; finish; }
. "$(dirname "$0")/lib/tmux.sh"
tmux_setup adgnvml
: >"$TEST_TMP/procs"
T new-session -d -s top -x 100 -y 30 \
    "cd '$TEST_TMP' && env LANG=C.UTF-8 AMXDIAG_LIBNVML='$FAKE' AMXDIAG_FAKE_NVML='$TEST_TMP/nvml.txt' '$AMXDIAG' top -e nvml -o live.json -- ./wl.sh 20; echo \$? >'$TEST_TMP/exit'; sleep 30"
wait_for 'gpu0 .* 87% 12.00 GiB/80.00 GiB' 5
wait_for 'workload 10.00 GiB' 5
script 42
sed -i "s/^gpu0.mem_used=.*/gpu0.mem_used=$((30 * GiB))/" "$TEST_TMP/nvml.txt"
wait_for 'gpu0 .* 42% 30.00 GiB/80.00 GiB' 5
T send-keys -t top q
for _ in $(seq 80); do [ -s "$TEST_TMP/exit" ] && break; sleep 0.1; done
[ "$(cat "$TEST_TMP/exit" 2>/dev/null)" = 0 ] || fail "q: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
[ "$(json live.json "r['status']")" = interrupted ] || fail "live.json status $(json live.json "r['status']")"
finish

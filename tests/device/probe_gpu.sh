#!/usr/bin/env bash
# The GPU half of `amxdiag probe` on the AMX + GPU machine, in one go: the GPU section
# (human and JSON), --binary verdicts on the fixtures (sm_120a-only must fail on the
# H100 with error 209), the functional test via SASS and forced PTX JIT, planted
# interference causes, the unit and integration tests, and timings.
#
# usage: tests/device/probe_gpu.sh BUILD_DIR   (run from the source root; outputs go to
# $OUT, or /tmp/amxdiag-probe-gpu when OUT is unset).  BUILD_DIR is a RelWithDebInfo build
# with tests/device/bundle-libs.sh applied.
set -u
b=${1:?usage: probe_gpu.sh BUILD_DIR}
out=${OUT:-/tmp/amxdiag-probe-gpu}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$b/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
A=$PWD/$b/amxdiag
FB=tests/fixtures/fatbin
BFB=$b/tests/fatbin

step() { printf '\n===== %s\n' "$*"; }
run() { # run CMD...: prints the command, its output, and its exit code
    echo "\$ $*"
    timeout 60 "$@"
    echo "[exit $?]"
}
ms() { date +%s%N | awk '{printf "%d", $1 / 1000000}'; }

{
    step "machine"
    date -u
    uname -r
    nvidia-smi --query-gpu=name,driver_version,compute_cap,pci.bus_id,persistence_mode,compute_mode --format=csv 2>&1
    grep -H . /sys/bus/pci/devices/*/numa_node 2>/dev/null | grep -i "$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader 2>/dev/null | tr 'A-Z' 'a-z' | sed 's/^0000//')" || true
    command -v numactl >/dev/null && numactl -H | head -4
    grep RmProfilingAdminOnly /proc/driver/nvidia/params
    ls -l /dev/nvidia*

    step "probe --only gpu (human)"
    t0=$(ms)
    run "$A" probe --only gpu -v
    t1=$(ms)
    echo "wall: $((t1 - t0)) ms"

    step "probe --only gpu --json"
    t0=$(ms)
    timeout 60 "$A" probe --only gpu --json >"$out/probe_gpu.json"
    echo "[exit $?]"
    t1=$(ms)
    echo "wall: $((t1 - t0)) ms"
    python3 - "$out/probe_gpu.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
for c in j["checks"]:
    if ".selftest." in c["id"]:
        load = (c.get("data") or {}).get("load", {})
        print("%-24s %-5s used_ptx_jit=%s image_arch=%s module_load_ms=%.1f jit_ms=%.1f" % (
            c["id"], c["status"], load.get("used_ptx_jit"), load.get("image_arch"),
            load.get("module_load_ms", 0), load.get("jit_ms", 0)))
EOF

    step "forced PTX JIT without the JIT cache (true first-run cost)"
    for i in 1 2; do
        CUDA_CACHE_DISABLE=1 timeout 60 "$A" probe --only gpu --json >"$out/nocache.json" 2>/dev/null
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join("%s=%.1fms" % (c["id"], c["data"]["load"]["module_load_ms"]) for c in j["checks"] if ".selftest." in c["id"] and c.get("data")))' "$out/nocache.json"
    done

    step "--binary verdicts on the fixtures (this GPU + --cc 12.0 --cc 12.1)"
    export AMXDIAG_PROBE_GPU_SELFTEST=0 # tested above; the verdicts are what matters here
    run "$A" probe --only gpu --binary "$FB/sm_120a.fatbin" --cc 12.0 --cc 12.1 -v
    run "$A" probe --only gpu --binary "$FB/sm_90_compute_90.fatbin" --cc 12.0
    run "$A" probe --only gpu --binary "$FB/compute_120.fatbin" --binary "$FB/compress_speed.fatbin" \
        --binary "$FB/compress_size.fatbin" --binary "$FB/sm_120f.cubin" --cc 12.0
    [ -d "$BFB" ] && run "$A" probe --only gpu --binary "$BFB/many_arch.fatbin" --binary "$BFB/fatbin_host_exe" --cc 12.0
    run "$A" probe --only gpu --binary "$A" --cc 12.0 --cc 12.1
    "$A" probe --only gpu --json --binary "$FB/sm_120a.fatbin" >"$out/binary_sm120a.json"

    step "the driver agrees: loading the sm_120a-only fatbin on this GPU"
    python3 - "$FB/sm_120a.fatbin" <<'EOF'
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev = ctypes.c_int(); ctx = ctypes.c_void_p(); mod = ctypes.c_void_p()
cu.cuDeviceGet(ctypes.byref(dev), 0)
cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
cu.cuCtxSetCurrent(ctx)
data = open(sys.argv[1], "rb").read()
r = cu.cuModuleLoadData(ctypes.byref(mod), data)
name = ctypes.c_char_p(); cu.cuGetErrorName(r, ctypes.byref(name))
s = ctypes.c_char_p(); cu.cuGetErrorString(r, ctypes.byref(s))
print("cuModuleLoadData(sm_120a.fatbin) ->", r, name.value.decode() if name.value else "", "-", s.value.decode() if s.value else "")
EOF

    unset AMXDIAG_PROBE_GPU_SELFTEST
    step "planted: CUDA_VISIBLE_DEVICES= (empty)"
    CUDA_VISIBLE_DEVICES= run "$A" probe --only gpu -v
    step "planted: CUDA_VISIBLE_DEVICES=7 (no such GPU)"
    CUDA_VISIBLE_DEVICES=7 run "$A" probe --only gpu -v
    step "planted: CUDA_VISIBLE_DEVICES=0,7 (valid then invalid)"
    CUDA_VISIBLE_DEVICES=0,7 "$A" probe --only gpu --json | python3 -c 'import json,sys; j=json.load(sys.stdin); [print(c["id"], c["status"], c["evidence"]) for c in j["checks"] if c["id"].startswith(("gpu.init","gpu.cause"))]'
    step "planted: CPU/memory binding"
    if command -v numactl >/dev/null; then
        run numactl --physcpubind=0 --membind=0 "$A" probe --only gpu
    else
        echo "numactl not installed here: taskset"
        run taskset -c 0 "$A" probe --only gpu
    fi

    step "unit tests"
    for t in test_fatbin test_probe_gpu_matrix test_probe_gpu_diag; do
        FIXTURES=$PWD/tests/fixtures BUILD_DIR=$PWD/$b timeout 60 "$b/tests/$t" 2>&1 | tail -3
    done

    step "integration test (includes cuobjdump agreement)"
    command -v cuobjdump || export PATH=$PATH:/usr/local/cuda/bin
    AMXDIAG=$A FIXTURES=$PWD/tests/fixtures BUILD_DIR=$PWD/$b SRC_DIR=$PWD timeout 90 bash tests/integration/probe_gpu.sh
    echo "[exit $?]"
} 2>&1 | tee "$out/probe_gpu.log"

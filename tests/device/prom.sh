#!/usr/bin/env bash
# Prometheus export on the AMX + GPU machine, in one call of about two minutes:
#  - the unit tests of the exposition format, bus and probe rendering, HTTP server;
#  - probe --format prometheus with the real GPU (gpu_info, gpu_verdict with CC 9.0) and
#    --textfile;
#  - amxdiag export on the built-in path (AMX kernels, layers on the GPU), scraped every
#    0.5 s: AMX share, GPU busy with gpu="0", tokens/s with series="prompt"/"generation";
#  - the load test (tests/integration/prom_load.sh) on 16 cores.
#   usage: tests/device/prom.sh BUILD_DIR        (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh).
# Outputs: log.txt, probe.prom, export-last.prom, export-series.txt, load.txt.
set -u
build=${1:?usage: prom.sh BUILD_DIR}
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME=/tmp/amxdiag-prom-cache FIXTURES="$PWD/tests/fixtures" SRC_DIR="$PWD"
bin="$PWD/$build/amxdiag"
log="$out/log.txt"
: >"$log"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
run() {
    local label=$1 t=$2; shift 2
    timeout "$t" "$@" >>"$log" 2>&1
    echo "$label exit $?" | tee -a "$log"
}
fetch() { # URL -> stdout (curl where present, else python3)
    if command -v curl >/dev/null; then curl -s --max-time 2 "$1"; else
        python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1"; fi
}

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; nvidia-smi -L; command -v curl taskset promtool; } >>"$log" 2>&1

step "unit tests"
for t in test_prom_format test_prom_bus test_prom_probe test_prom_http; do
    run "$t" 60 "$build/tests/$t"
done

step "probe --format prometheus (bench first: 0.2 s per step)"
AMXDIAG_BENCH_SECONDS=0.2 run "probe --bench" 90 "$bin" probe --only cpu,amx --bench
run "probe --format prometheus" 60 sh -c "'$bin' probe --format prometheus >'$out/probe.prom'"
grep -E '^amxdiag_probe_(gpu|amx_usable)|^amxdiag_ceiling_(ops|memory_read)|check="amx.selftest"' "$out/probe.prom" | tee -a "$log"
mkdir -p /tmp/amxdiag-textfile
run "probe --textfile" 60 "$bin" probe --textfile /tmp/amxdiag-textfile

step "export: built-in path, AMX kernels, 4 layers on the GPU, scraped every 0.5 s"
rm -f /tmp/amxdiag-prom-port
"$bin" export --listen 127.0.0.1:0 --port-file /tmp/amxdiag-prom-port --linger 1 --out /tmp/amxdiag-prom-run.json \
    --cpu-kernels amx --ngl 4 --n-prompt 256 -n 64 -r 2 >>"$log" 2>&1 &
exp=$!
for _ in $(seq 100); do [ -s /tmp/amxdiag-prom-port ] && break; sleep 0.1; done
addr=$(cat /tmp/amxdiag-prom-port 2>/dev/null)
: >"$out/export-series.txt"
while kill -0 "$exp" 2>/dev/null && [ -n "$addr" ]; do
    fetch "http://$addr/metrics" >/tmp/amxdiag-prom-last 2>/dev/null && cp /tmp/amxdiag-prom-last "$out/export-last.prom"
    { date -u +%T.%N | cut -c1-12; grep -E '^amxdiag_(isa_share_amx|amx_busy|gpu_busy|engine_tokens|mem_read_bw|workload_cpu)' /tmp/amxdiag-prom-last; } >>"$out/export-series.txt"
    sleep 0.5
done
wait "$exp"
echo "export exit $?" | tee -a "$log"
grep -E '^amxdiag_(gpu_busy_ratio|engine_tokens_per_second|isa_share_amx_ratio)' "$out/export-last.prom" | tee -a "$log"

step "load test (5 x 200 concurrent scrapes + slowloris)"
if command -v curl >/dev/null && command -v taskset >/dev/null; then
    AMXDIAG="$bin" timeout 120 bash tests/integration/prom_load.sh >"$out/load.txt" 2>&1
    echo "prom_load exit $?" | tee -a "$log"
else
    echo "prom_load: skipped (curl or taskset missing)" | tee -a "$log"
fi

#!/usr/bin/env bash
# The CPU side of `amxdiag probe` on the AMX machine, in one call: the probe (human and
# JSON), a recorded snapshot, --bench three times (median in docs/PERFORMANCE.md), and the
# probe's unit tests run for real on AMX hardware.
#   usage: tests/device/probe_cpu.sh BUILD_DIR      (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh).
set -u
build=${1:?usage: probe_cpu.sh BUILD_DIR}
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FIXTURES="$PWD/tests/fixtures" XDG_CACHE_HOME=/tmp/amxdiag-cache
bin="$build/amxdiag"
log="$out/log.txt"
: >"$log"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -m1 -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo;
  numactl -H 2>/dev/null | head -4; } >>"$log" 2>&1

step "probe -v (human, all sections)"
timeout 60 "$bin" probe -v >"$out/probe.txt" 2>&1
echo "exit $?" >>"$out/probe.txt"

step "probe --json"
timeout 60 "$bin" probe --json >"$out/probe.json" 2>>"$log"
echo "probe --json exit $?" >>"$log"

step "probe --save-snapshot"
timeout 60 "$bin" probe --only cpu,amx,numa,pmu --save-snapshot "$out/emr-kvm-h100.json" >/dev/null 2>>"$log"
echo "save-snapshot exit $?" >>"$log"
timeout 30 "$bin" probe --snapshot "$out/emr-kvm-h100.json" --only cpu,amx,numa,pmu >>"$log" 2>&1
echo "replay exit $?" >>"$log"

step "probe --bench (1, human)"
/usr/bin/time -f "bench wall %e s" timeout 60 "$bin" probe --only cpu --bench >>"$log" 2>&1
for i in 2 3; do
    step "probe --bench ($i, json)"
    /usr/bin/time -f "bench wall %e s" timeout 60 "$bin" probe --only cpu --bench --json >"$out/bench$i.json" 2>>"$log"
done
cp "$XDG_CACHE_HOME"/amxdiag/ceilings-*.json "$out/ceilings.json" 2>>"$log"

step "unit tests"
for t in test_probe_selftest test_probe_snapshots test_probe_source test_probe_ceilings; do
    echo "-- $t" >>"$log"
    timeout 120 "$build/tests/$t" >>"$log" 2>&1
    echo "$t exit $?" >>"$log"
done
step done

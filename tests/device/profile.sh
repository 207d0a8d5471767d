#!/usr/bin/env bash
# amxdiag profile on the AMX machine (no PMU), in one call of about a minute:
#  - the profiler's unit tests (sampling, classifier, sessions) on real hardware;
#  - an external program spinning in real TDPBSSD loops (XTILEDATA requested) must show most
#    CPU time in AMX-class code, and an AVX-512-only one zero AMX;
#  - the built-in path with --cpu-kernels amx and avx512 (prompt evaluation);
#  - overhead: a fixed amount of scalar work, and the built-in path's tokens/s, with and
#    without profiling, alternated.
#   usage: tests/device/profile.sh BUILD_DIR        (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh).
# The device tool returns at most 8 files: text goes to log.txt, records are amx.json,
# avx512.json, builtin-amx.json, builtin-avx512.json, and overhead.txt has the raw figures.
set -u
build=${1:?usage: profile.sh BUILD_DIR}
out=${OUT:-device-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME=/tmp/amxdiag-profile-cache
# the unit tests' fixtures, at this copy's paths
export PROF_SPIN="$PWD/$build/tests/prof_spin" PROF_ISA_FIXTURE="$PWD/$build/tests/libprof_isa_fixture.so"
export PROF_ISA_FIXTURE_STRIPPED="$PWD/$build/tests/libprof_isa_fixture_stripped.so"
bin="$build/amxdiag"
spin="$build/tests/prof_spin"
log="$out/log.txt"
ovh="$out/overhead.txt"
: >"$log"
: >"$ovh"
step() { echo "== $* ($(date -u +%T))" | tee -a "$log"; }
run() {
    local label=$1 t=$2; shift 2
    timeout "$t" "$@" >>"$log" 2>&1
    echo "$label exit $?" | tee -a "$log"
}
shares() { # shares RECORD: one line of ISA shares and the top functions
    python3 - "$1" <<'PY' 2>&1 | tee -a "$log"
import json, sys
r = json.load(open(sys.argv[1]))
i = r.get("isa_share", {})
f = i.get("by_function", {}); b = i.get("by_block", {})
print("%s: status %s, %d samples; by function: %s; by block: %s" % (sys.argv[1].split("/")[-1], r["status"],
      i.get("samples", 0), ", ".join("%s %.1f%%" % (k, v) for k, v in f.items() if v),
      ", ".join("%s %.1f%%" % (k, v) for k, v in b.items() if v)))
for h in r.get("hot_functions", [])[:5]:
    print("   %6.1f%%  %-7s %s" % (h["share"], h["class"], h["function"]))
for w in r.get("workload", {}).get("results", []):
    print("   %s %.2f t/s" % (w["test"], w["tokens_per_s"]))
PY
}

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' ';
  echo; cat /proc/sys/kernel/perf_event_paranoid; ls /sys/bus/event_source/devices; } >>"$log" 2>&1

step "unit tests"
for t in test_prof_isa test_prof_parse test_prof_session; do
    run "$t" 60 "$build/tests/$t"
done

step "external AMX program (TDPBSSD loops, 3 s)"
run "profile amx" 30 "$bin" profile -o "$out/amx.json" -- "$spin" amx 3
shares "$out/amx.json"
step "external AVX-512 program (3 s)"
run "profile avx512" 30 "$bin" profile -q -o "$out/avx512.json" -- "$spin" avx512 3
shares "$out/avx512.json"
step "fork + threads"
run "profile fork" 30 "$bin" profile -q -o "$out/fork.json" -- "$spin" fork 1
shares "$out/fork.json"

step "built-in path model (qwen3-moe-small, 4 layers, q4_0)"
model=/tmp/amxdiag-profile-small.gguf
run "model create" 60 "$bin" model create --preset qwen3-moe-small --layers 4 --quant q4_0 "$model"
for k in amx avx512; do
    step "built-in path --cpu-kernels $k"
    run "profile builtin $k" 60 "$bin" profile -q -o "$out/builtin-$k.json" -m "$model" --cpu-kernels "$k" \
        --n-prompt 512 -n 16 -r 3
    shares "$out/builtin-$k.json"
done

step "overhead: fixed scalar work (3 x 2 alternated)"
for i in 1 2 3; do
    echo "plain $("$spin" work 2000)" >>"$ovh"
    echo "profiled $("$bin" profile -q -o /tmp/ovh.json -- "$spin" work 2000 2>/dev/null)" >>"$ovh"
done
step "overhead: built-in path tokens/s, amx kernels (3 x 2 alternated)"
for i in 1 2 3; do
    "$bin" run -m "$model" --cpu-kernels amx -p 512 -n 32 -r 3 --json >/tmp/run.json 2>>"$log" &&
        python3 -c "import json;r=json.load(open('/tmp/run.json'));print('run', ' '.join('%s %.3f' % (t['test'], t['avg_ts']) for t in r['tests']))" >>"$ovh" 2>>"$log"
    "$bin" profile -q -o /tmp/p.json -m "$model" --cpu-kernels amx --n-prompt 512 -n 32 -r 3 2>>"$log" &&
        python3 -c "import json;r=json.load(open('/tmp/p.json'));print('profile', ' '.join('%s %.3f' % (t['test'], t['tokens_per_s']) for t in r['workload']['results']))" >>"$ovh" 2>>"$log"
done
cat "$ovh" | tee -a "$log"
step done

#!/usr/bin/env bash
# What `amxdiag profile` costs the built-in path it measures (about 70 s): qwen3-moe-small
# q4_0 (created here), pp512 and tg128 with `amxdiag run` and with `amxdiag profile` (the
# same options, in process, all collectors available), alternated for 3 rounds, at every
# CPU as threads and at one thread fewer (a core left to the profiler's own threads).
#   usage: OUT=DIR tests/device/profile_overhead.sh BUILD_DIR   (output: $OUT/summary.txt)
set -u
build=${1:?usage: profile_overhead.sh BUILD_DIR}
out=${OUT:-./profile-overhead-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
n=$(nproc)
work=$(mktemp -d /tmp/amxdiag-po-XXXX)
s="$out/summary.txt"
: >"$s"
m="$work/small-q4_0.gguf"
timeout 60 "$amx" model create --preset qwen3-moe-small --quant q4_0 --threads "$n" "$m" >/dev/null 2>&1
# t/s of one test: the run's JSON (tests[].avg_ts) or the record's engine metric
one() {   # one MODE THREADS TEST(pp|tg)
    local mode=$1 t=$2 test=$3 args
    if [ "$test" = pp ]; then args="-p 512 -n 0"; else args="-p 0 -n 128"; fi
    if [ "$mode" = run ]; then
        timeout 60 "$amx" run -m "$m" --cpu-kernels amx $args -r 2 -t "$t" --json 2>/dev/null |
            python3 -c "import json,sys; d=json.load(sys.stdin); print('%.1f' % d['tests'][0]['avg_ts'])" 2>/dev/null || echo nan
    else
        local pa="--n-prompt 512 -n 0"
        [ "$test" = tg ] && pa="--n-prompt 0 -n 128"
        timeout 60 "$amx" profile -q -o "$work/rec.json" -m "$m" --cpu-kernels amx $pa -r 2 -t "$t" --json 2>/dev/null |
            python3 -c "
import json,sys
d=json.load(sys.stdin)
def find(o):
    if isinstance(o,dict):
        for k,v in o.items():
            if 'tokens_per_s' in k and isinstance(v,(int,float)): return v
            r=find(v)
            if r is not None: return r
    if isinstance(o,list):
        for v in o:
            r=find(v)
            if r is not None: return r
print('%.1f' % find(d))" 2>/dev/null || echo nan
    fi
}
for test in tg pp; do
    for t in "$n" $((n - 1)); do
        r="" p=""
        for round in 1 2 3; do
            r="$r $(one run "$t" $test)"
            p="$p $(one profile "$t" $test)"
        done
        printf '%s t=%-3s run:%s | profile:%s\n' "$test" "$t" "$r" "$p" >>"$s"
    done
done
python3 - "$s" >>"$s" <<'PY'
import sys, statistics
for line in open(sys.argv[1]):
    if '|' not in line: continue
    head, rest = line.split(' run:')
    a, b = rest.split('| profile:')
    fa = [float(x) for x in a.split() if x != 'nan']; fb = [float(x) for x in b.split() if x != 'nan']
    if fa and fb:
        ma, mb = statistics.median(fa), statistics.median(fb)
        print('%s: median run %.1f, profile %.1f t/s, profile costs %.1f %%' % (head.strip(), ma, mb, 100 * (1 - mb / ma)))
PY
rm -rf "$work"
cat "$s"

#!/usr/bin/env bash
# The int8 tile kernel's K-chunked order (AMXDIAG_AMX_INT8_CHUNK=KC,G; docs/kernels.md)
# against its whole-K order and AVX-512 VNNI on the AMX machine, every setting once per
# round, ROUNDS (3) rounds in rotating order, medians (the device VM's figures move by
# 20-25 % between runs seconds apart).  About 6 min on 16 CPUs, bounded by DEADLINE (540 s):
#  0. `probe --only cpu --bench`: the clock and the bare TDPBSSD loop of this call;
#  1. test_kern_matmul on real tiles: every chunk setting bit-exact against the reference;
#  2. `bench kernels --m 512`, THREADS (16) threads, attn_q, attn_o, moe_gate_up, moe_down,
#     q4_0 and q8_0: each setting of CHUNKS ("0" = whole K) with --impl amx, and avx512;
#  3. one thread, attn_q q8_0: each setting of CHUNKS1, and avx512;
#  4. `run -p 512 -n 0 -r 3` of qwen3-moe-small q4_0 and q8_0: amx with each setting of
#     PP_CHUNKS, and avx512.
# Output: $OUT/chunk.txt (medians, all values in brackets, ratios to the whole-K order and
# to avx512), $OUT/chunk.jsonl, $OUT/probe.json, $OUT/summary.txt, $OUT/logs/.
#   usage: OUT=DIR tests/device/amx_chunk.sh BUILD_DIR   (BUILD_DIR relative to the
#   repository root, with amxdiag and tests/test_kern_matmul; slim-build.sh output)
set -u
build=${1:?usage: OUT=DIR tests/device/amx_chunk.sh BUILD_DIR}
out=${OUT:-./amx-chunk-out}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-16}
[ "$threads" -gt "$(nproc)" ] && threads=$(nproc)
rounds=${ROUNDS:-3}
chunks=${CHUNKS:-"0 8,2 16,2 32,2 16,1 16,4 64,2"}
chunks1=${CHUNKS1:-"0 16,2 32,2"}
pp_chunks=${PP_CHUNKS:-"0 16,2"}
work="$out/logs"
mkdir -p "$work"
tmp=$(mktemp -d /tmp/amxdiag-chunk-XXXX)
export XDG_CACHE_HOME="$tmp/cache"
export AMXDIAG_CROSSOVER="$tmp/none.json"   # the shipped crossover defaults, not a stale cache
summary="$out/summary.txt"
: >"$summary"
deadline=${DEADLINE:-540}
started=$(date +%s)
jl="$out/chunk.jsonl"
: >"$jl"
echo "amx_chunk: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(date -u +%FT%TZ)" >>"$summary"

step probe 60 "$amx" probe --only cpu --bench --json
cp "$work/probe.log" "$out/probe.json" 2>/dev/null
step test_kern_matmul 120 "$PWD/$build/tests/test_kern_matmul"
grep -E "PASSED|FAILED|SKIP" "$work/test_kern_matmul.log" | head -5 >>"$summary"

kb() {   # kb LABEL THREADS IMPL SHAPES TYPES [ENV=VALUE...]
    local label=$1 t=$2 impl=$3 shapes=$4 types=$5
    shift 5
    [ $(( $(date +%s) - started + 30 )) -gt "$deadline" ] && return 0
    timeout 60 env "$@" "$amx" bench kernels --threads "$t" --impl "$impl" --type "$types" --shape "$shapes" \
        --m 512 --min-time 0.1 --weights-mib 64 --mem-gbs 100 --json 2>>"$work/bench.log" |
        python3 -c "
import json,sys
d=json.load(sys.stdin)
for r in d.get('results',d.get('rows',[])):
    print(json.dumps({'kind':'kernel','label':sys.argv[1],'threads':int(sys.argv[2]),'shape':r.get('shape'),'type':r.get('type'),'ms':r.get('median_ms',r.get('ms'))}))
" "$label" "$t" >>"$jl" 2>>"$work/bench.log"
}
model() {   # model QUANT: the GGUF path (created once)
    local m="$tmp/small-$1.gguf"
    [ -f "$m" ] || timeout 90 "$amx" model create --preset qwen3-moe-small --quant "$1" --threads "$threads" "$m" \
        >/dev/null 2>>"$work/model.log"
    echo "$m"
}
pp() {   # pp LABEL QUANT IMPL [ENV=VALUE...]
    local label=$1 q=$2 impl=$3 m
    shift 3
    [ $(( $(date +%s) - started + 30 )) -gt "$deadline" ] && return 0
    m=$(model "$q")
    timeout 60 env "$@" "$amx" run -m "$m" -p 512 -n 0 -r 3 -t "$threads" --cpu-kernels "$impl" --json \
        2>>"$work/run.log" |
        python3 -c "
import json,sys
d=json.load(sys.stdin)
for t in d['tests']:
    print(json.dumps({'kind':'pp','label':sys.argv[1],'type':sys.argv[2],'test':t['test'],'ts':t.get('avg_ts',sum(t['samples_ts'])/len(t['samples_ts']))}))
" "$label" "$q" >>"$jl" 2>>"$work/run.log"
}
rotate() {   # rotate N WORDS...: the words starting at the N-th (mod their count)
    local n=$1
    shift
    local a=("$@") i
    for ((i = 0; i < ${#a[@]}; i++)); do echo "${a[$(( (i + n) % ${#a[@]} ))]}"; done
}

for r in $(seq "$rounds"); do
    for v in $(rotate "$r" $chunks avx512); do
        if [ "$v" = avx512 ]; then
            kb avx512 "$threads" avx512 attn_q,attn_o,moe_gate_up,moe_down q4_0,q8_0
        else
            kb "amx $v" "$threads" amx attn_q,attn_o,moe_gate_up,moe_down q4_0,q8_0 AMXDIAG_AMX_INT8_CHUNK=$v
        fi
    done
    for v in $(rotate "$r" $chunks1 avx512); do
        if [ "$v" = avx512 ]; then
            kb avx512 1 avx512 attn_q q8_0
        else
            kb "amx $v" 1 amx attn_q q8_0 AMXDIAG_AMX_INT8_CHUNK=$v
        fi
    done
    for q in q4_0 q8_0; do
        for v in $(rotate "$r" $pp_chunks avx512); do
            if [ "$v" = avx512 ]; then
                pp avx512 "$q" avx512
            else
                pp "amx $v" "$q" amx AMXDIAG_AMX_INT8_CHUNK=$v
            fi
        done
    done
done
echo "elapsed $(( $(date +%s) - started )) s" >>"$summary"

python3 - "$jl" >"$out/chunk.txt" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    v = r.get('ms') if r['kind'] == 'kernel' else r.get('ts')
    if v is None:
        continue
    key = (r['kind'], r.get('threads', 0), r.get('shape') or r.get('test'), r.get('type'))
    k.setdefault(key, {}).setdefault(r['label'], []).append(v)
print("medians over the rounds (all values in brackets); kernels in ms (lower is better), pp in t/s")
for key in sorted(k, key=lambda x: [str(i) for i in x]):
    kind, t, what, typ = key
    labels = k[key]
    med = {l: st.median(v) for l, v in labels.items()}
    base, vnni = med.get('amx 0'), med.get('avx512')
    print("\n%s %s %s, %s threads" % (kind, what, typ, t))
    for l in sorted(med, key=lambda l: med[l] if kind == 'kernel' else -med[l]):
        rel = []
        if base and l != 'amx 0':
            rel.append("%.2fx whole-K" % ((base / med[l]) if kind == 'kernel' else (med[l] / base)))
        if vnni and l != 'avx512':
            rel.append("%.2fx avx512" % ((vnni / med[l]) if kind == 'kernel' else (med[l] / vnni)))
        print("  %-12s %9.3f  %-28s [%s]" % (l, med[l], ", ".join(rel), " ".join("%.3f" % x for x in labels[l])))
PY

#!/usr/bin/env bash
# A/B of the CPU kernels' settings on a noisy machine: every setting once per round, three
# rounds, medians (the device VM's figures moved by 20-25 % between two runs of one
# kernel a few seconds apart).  About 70 s on 16 CPUs:
#  - bench kernels, 16 threads, M=512, attn_q and moe_gate_up, q4_0 and q8_0: the int8
#    tile kernel's schedules (ring 3,1 = default, ring 2,1, 1x1) and AVX-512 VNNI;
#  - the same, one thread, attn_q q8_0;
#  - pp512 and tg32 of qwen3-moe-small q4_0: amx (defaults), amx with the 1x1 schedule, amx
#    with the fp32 attention, amx with the pool's waiters sleeping after 2000 PAUSEs
#    instead of 20000, BUILD_DIR/amxdiag-before (an older build, when present), avx512;
#  - then one profile of the built-in path with each pool spin limit (spin-wait share).
#   usage: OUT=DIR tests/device/ab_cpu.sh BUILD_DIR   (output: $OUT/ab.txt, $OUT/ab.jsonl,
#   $OUT/profile.txt)
set -u
build=${1:?usage: ab_cpu.sh BUILD_DIR}
out=${OUT:-./ab-cpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
before="$PWD/$build/amxdiag-before"
threads=${THREADS:-$(nproc)}
work=$(mktemp -d /tmp/amxdiag-ab-XXXX)
export XDG_CACHE_HOME="$work/cache"
jl="$out/ab.jsonl"
: >"$jl"
rounds=${ROUNDS:-3}
m="$work/small.gguf"
timeout 60 "$amx" model create --preset qwen3-moe-small --quant q4_0 --threads "$threads" "$m" >/dev/null 2>&1

kb() {   # kb LABEL THREADS IMPL SHAPES TYPES [ENV=VALUE]
    local label=$1 t=$2 impl=$3 shapes=$4 types=$5; shift 5
    timeout 30 env "$@" "$amx" bench kernels --threads "$t" --impl "$impl" --type "$types" --shape "$shapes" \
        --m 512 --min-time 0.1 --weights-mib 64 --mem-gbs 100 --json 2>/dev/null |
        python3 -c "
import json,sys
d=json.load(sys.stdin)
for r in d.get('results',d.get('rows',[])):
    print(json.dumps({'kind':'kernel','label':sys.argv[1],'threads':int(sys.argv[2]),'shape':r.get('shape'),'type':r.get('type'),'ms':r.get('median_ms',r.get('ms'))}))
" "$label" "$t" >>"$jl" 2>/dev/null
}
pp() {   # pp LABEL BINARY IMPL [ENV=VALUE]
    local label=$1 bin=$2 impl=$3; shift 3
    timeout 40 env "$@" "$bin" run -m "$m" -p 512 -n 32 -r 3 -t "$threads" --cpu-kernels "$impl" --json 2>/dev/null |
        python3 -c "
import json,sys
d=json.load(sys.stdin)
for t in d['tests']:
    print(json.dumps({'kind':'pp','label':sys.argv[1],'test':t['test'],'ts':t.get('avg_ts',sum(t['samples_ts'])/len(t['samples_ts']))}))
" "$label" >>"$jl" 2>/dev/null
}
for r in $(seq "$rounds"); do
    for v in ring:3,1 ring:2,1 1x1; do
        kb "amx $v" "$threads" amx attn_q,moe_gate_up q4_0,q8_0 AMXDIAG_AMX_INT8_KERNEL=$v
    done
    kb "avx512" "$threads" avx512 attn_q,moe_gate_up q4_0,q8_0
    for v in ring:3,1 1x1; do
        kb "amx $v" 1 amx attn_q q8_0 AMXDIAG_AMX_INT8_KERNEL=$v
    done
    kb "avx512" 1 avx512 attn_q q8_0
    pp "amx (defaults)" "$amx" amx
    pp "amx, 1x1" "$amx" amx AMXDIAG_AMX_INT8_KERNEL=1x1
    pp "amx, fp32 attention" "$amx" amx AMXDIAG_ATTN_KERNEL=flash
    pp "amx, pool spin 2000" "$amx" amx AMXDIAG_POOL_SPIN=2000
    [ -x "$before" ] && pp "amx, build before" "$before" amx
    pp "avx512" "$amx" avx512
done
for sp in 20000 2000; do
    echo "== profile amx, AMXDIAG_POOL_SPIN=$sp" >>"$out/profile.txt"
    timeout 40 env AMXDIAG_POOL_SPIN=$sp "$amx" profile -e sampling -o "$work/p$sp.json" -m "$m" --n-prompt 512 -n 16 \
        -r 2 -t "$threads" --cpu-kernels amx 2>&1 | grep -E "spin-wait|during" >>"$out/profile.txt"
done
python3 - "$jl" >"$out/ab.txt" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    key = (r['kind'], r['label'], r.get('threads'), r.get('shape'), r.get('type'), r.get('test'))
    k.setdefault(key, []).append(r.get('ms') if r['kind'] == 'kernel' else r.get('ts'))
print("median of %s rounds (all values in brackets)" % max(len(v) for v in k.values()))
for key in sorted(k, key=lambda x: [str(i) for i in x]):
    v = [x for x in k[key] if x is not None]
    if not v:
        continue
    kind, label, t, shape, typ, test = key
    unit = 'ms' if kind == 'kernel' else 't/s'
    what = f"{shape} {typ} {t} thr" if kind == 'kernel' else test
    print(f"{kind:6} {label:22} {what:28} {st.median(v):10.3f} {unit}  {[round(x, 3) for x in v]}")
PY
cat "$out/profile.txt" >>"$out/ab.txt"
cat "$out/ab.txt"
rm -rf "$work"

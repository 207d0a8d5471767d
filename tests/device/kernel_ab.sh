#!/usr/bin/env bash
# A/B of CPU kernel settings on the AMX machine, every variant once per round in rotating
# order, ROUNDS (3) rounds, medians (the device VM's figures move by 20-25 % between runs
# seconds apart).  Bounded by DEADLINE (300 s):
#  - `bench kernels --m M --impl amx` per variant, and `--impl avx512` once per round, at
#    SHAPES (attn_q,attn_o,moe_gate_up,moe_down) x TYPES (q4_0,q8_0), THREADS (16) threads;
#  - with PP=1 (default), `run -p 512 -n 0 -r 3` of qwen3-moe-small per type, each variant
#    with --cpu-kernels amx, and avx512.
# VARIANTS="LABEL VAR=VALUE[ VAR=VALUE];LABEL ..." (environment of the same binary; the first
# is the ratios' base), e.g. VARIANTS="ring31 AMXDIAG_AMX_INT8_KERNEL=ring;ring21 AMXDIAG_AMX_INT8_KERNEL=ring:2,1".
# Output: $OUT/kernel_ab.txt (medians, ratios, all values in brackets), $OUT/kernel_ab.jsonl.
#   usage: OUT=DIR VARIANTS=... tests/device/kernel_ab.sh BUILD_DIR
set -u
build=${1:?usage: OUT=DIR VARIANTS=... tests/device/kernel_ab.sh BUILD_DIR}
out=${OUT:-./kernel-ab-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-16}
[ "$threads" -gt "$(nproc)" ] && threads=$(nproc)
rounds=${ROUNDS:-3}
shapes=${SHAPES:-attn_q,attn_o,moe_gate_up,moe_down}
types=${TYPES:-q4_0,q8_0}
m=${M:-512}
IFS=';' read -r -a variants <<<"${VARIANTS:?set VARIANTS=\"LABEL VAR=VALUE;...\"}"
tmp=$(mktemp -d /tmp/amxdiag-kab-XXXX)
export XDG_CACHE_HOME="$tmp/cache"
export AMXDIAG_CROSSOVER="$tmp/none.json"   # the shipped crossover defaults, not a stale cache
deadline=${DEADLINE:-300}
started=$(date +%s)
jl="$out/kernel_ab.jsonl"
: >"$jl"
left() { [ $(( $(date +%s) - started + 30 )) -lt "$deadline" ]; }

kb() {   # kb LABEL IMPL [VAR=VALUE...]
    local label=$1 impl=$2
    shift 2
    left || return 0
    # shellcheck disable=SC2068
    timeout 90 env "$@" "$amx" bench kernels --threads "$threads" --impl "$impl" --type "$types" --shape "$shapes" \
        --m "$m" --min-time 0.1 --weights-mib 64 --mem-gbs 100 --json 2>>"$out/bench.log" |
        python3 -c "
import json,sys
for r in json.load(sys.stdin)['rows']:
    print(json.dumps({'kind':'kernel','label':sys.argv[1],'what':r['shape'],'type':r['type'],'v':r['median_ms']}))
" "$label" >>"$jl" 2>>"$out/bench.log"
}
pp() {   # pp LABEL QUANT IMPL [VAR=VALUE...]
    local label=$1 q=$2 impl=$3 mf="$tmp/small-$2.gguf"
    shift 3
    left || return 0
    [ -f "$mf" ] || timeout 90 "$amx" model create --preset qwen3-moe-small --quant "$q" --threads "$threads" "$mf" \
        >/dev/null 2>>"$out/run.log"
    timeout 60 env "$@" "$amx" run -m "$mf" -p 512 -n 0 -r 3 -t "$threads" --cpu-kernels "$impl" --json 2>>"$out/run.log" |
        python3 -c "
import json,sys
for t in json.load(sys.stdin)['tests']:
    print(json.dumps({'kind':'pp','label':sys.argv[1],'what':t['test'],'type':sys.argv[2],'v':t.get('avg_ts') or sum(t['samples_ts'])/len(t['samples_ts'])}))
" "$label" "$q" >>"$jl" 2>>"$out/run.log"
}
for r in $(seq "$rounds"); do
    n=${#variants[@]}
    for i in $(seq 0 "$n"); do   # n + 1 slots: the variants and avx512, rotating
        k=$(( (i + r) % (n + 1) ))
        if [ "$k" = "$n" ]; then
            kb avx512 avx512
        else
            v=${variants[$k]}
            # shellcheck disable=SC2086
            kb "${v%% *}" amx ${v#* }
        fi
    done
    if [ "${PP:-1}" = 1 ]; then
        for q in ${types//,/ }; do
            for i in $(seq 0 "$n"); do
                k=$(( (i + r) % (n + 1) ))
                if [ "$k" = "$n" ]; then
                    pp avx512 "$q" avx512
                else
                    v=${variants[$k]}
                    # shellcheck disable=SC2086
                    pp "${v%% *}" "$q" amx ${v#* }
                fi
            done
        done
    fi
done
base=${variants[0]%% *}
python3 - "$jl" "$base" >"$out/kernel_ab.txt" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = sys.argv[2]
k = {}
for r in rows:
    k.setdefault((r['kind'], r['what'], r['type']), {}).setdefault(r['label'], []).append(r['v'])
print("medians over the rounds (all values in brackets); kernel rows in ms (lower is better), pp in t/s")
for key in sorted(k):
    kind, what, typ = key
    med = {l: st.median(v) for l, v in k[key].items()}
    print(f"\n{kind} {what} {typ}")
    for l in sorted(med, key=lambda l: med[l] if kind == 'kernel' else -med[l]):
        rel = []
        for ref in (base, 'avx512'):
            if ref in med and ref != l:
                x = med[ref] / med[l] if kind == 'kernel' else med[l] / med[ref]
                rel.append(f"{x:.2f}x {ref}")
        print(f"  {l:10} {med[l]:9.3f}  {', '.join(rel):28} {[round(x, 3) for x in k[key][l]]}")
PY
cat "$out/kernel_ab.txt"
rm -rf "$tmp"

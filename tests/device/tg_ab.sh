#!/usr/bin/env bash
# Token generation, fused vs per-op schedule (AMXDIAG_ENGINE_FUSE=1 / 0, and the fused one
# without its weight prefetch) in the same binary, alternated: bounded by 120 s (about
# 90 s on 16 CPUs).
#  - creates qwen3-moe-small q4_0 and q8_0;
#  - ROUNDS (3) rounds; in each, for each quant: `run -p 0 -n 128 -r 3 -t THREADS` with
#    --cpu-kernels amx, each variant (the order rotates every round), t/s from --json;
#  - one `run --ops` of each schedule on q4_0 (where the time goes per op kind);
#  - one `run --greedy --compare ref` per quant with the fused schedule (teacher forced
#    against the reference kernels, which run the per-op schedule's code for their
#    prompt and the fused one for generation: exit 0 = every decisive step agrees);
#  - medians into $OUT/tg_ab.txt (all values in brackets), the rows in $OUT/tg_ab.jsonl.
#   usage: OUT=DIR tests/device/tg_ab.sh BUILD_DIR
set -u
build=${1:?usage: tg_ab.sh BUILD_DIR}
out=${OUT:-./tg-ab-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
impl=${IMPL:-amx}
ngen=${NGEN:-128}
layers=${LAYERS:+--layers $LAYERS}   # LAYERS/NGEN/IMPL/THREADS: smaller runs for a check elsewhere
work=$(mktemp -d /tmp/amxdiag-tgab-XXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-115}
split=0
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
jl="$out/tg_ab.jsonl"
: >"$jl"
: >"$summary"
lscpu | grep -E "Model name|^CPU\(s\)" >>"$summary"

for q in q4_0 q8_0; do
    step "create-$q" 40 "$amx" model create --preset qwen3-moe-small --quant $q $layers --threads "$threads" "$work/small-$q.gguf"
done

# variants: per-op (AMXDIAG_ENGINE_FUSE=0), fused (default), fused without the waiting
# workers' weight prefetch (AMXDIAG_ENGINE_PREFETCH=0)
variants=("perop AMXDIAG_ENGINE_FUSE=0" "fused AMXDIAG_ENGINE_FUSE=1" "fused-nopf AMXDIAG_ENGINE_PREFETCH=0")
tg() {   # tg ROUND QUANT LABEL ENV
    local r=$1 q=$2 label=$3 env=$4 name="tg-$1-$2-$3"
    step "$name" 25 env "$env" "$amx" run -m "$work/small-$q.gguf" -p 0 -n "$ngen" -r 3 \
        -t "$threads" --cpu-kernels "$impl" --json
    python3 - "$work/$name.log" "$r" "$q" "$label" >>"$jl" 2>/dev/null <<'PY'
import json, sys
txt = open(sys.argv[1]).read()
d = json.loads(txt[txt.index('{'):])
for t in d['tests']:
    ts = t.get('avg_ts') or sum(t['samples_ts']) / len(t['samples_ts'])
    print(json.dumps({'round': int(sys.argv[2]), 'quant': sys.argv[3], 'label': sys.argv[4], 'test': t['test'], 'ts': ts}))
PY
}
for r in $(seq "$rounds"); do
    for q in q4_0 q8_0; do
        n=${#variants[@]}
        for i in $(seq 0 $((n - 1))); do   # the order rotates every round
            v=${variants[$(( (i + r) % n ))]}
            tg "$r" $q ${v%% *} "${v#* }"
        done
    done
done
for f in 0 1; do
    step "ops-q4_0-fuse$f" 20 env AMXDIAG_ENGINE_FUSE=$f "$amx" run -m "$work/small-q4_0.gguf" -p 0 -n "$ngen" -r 2 \
        -t "$threads" --cpu-kernels "$impl" --ops
    cp "$work/ops-q4_0-fuse$f.log" "$out/" 2>/dev/null
done
for q in q4_0 q8_0; do
    step "compare-$q" 30 "$amx" run -m "$work/small-$q.gguf" -p 32 -n 16 -t "$threads" --cpu-kernels "$impl" \
        --greedy --compare ref
    tail -n 25 "$work/compare-$q.log" >"$out/compare-$q.log" 2>/dev/null
done

python3 - "$jl" >"$out/tg_ab.txt" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    k.setdefault((r['quant'], r['test'], r['label']), []).append(r['ts'])
print("tg t/s, median of the rounds (each a mean of -r 3), values in brackets")
for key in sorted(k):
    q, test, label = key
    print(f"{q:5} {test:6} {label:11} {st.median(k[key]):9.2f}  {[round(x, 2) for x in k[key]]}")
for q, test in sorted({(r['quant'], r['test']) for r in rows}):
    base = k.get((q, test, 'perop'))
    for label in ('fused', 'fused-nopf'):
        v = k.get((q, test, label))
        if base and v:
            print(f"{q} {test}: {label} / perop = {st.median(v) / st.median(base):.3f}")
PY
cat "$out/tg_ab.txt" >>"$summary"
cat "$summary"
rm -rf "$work"

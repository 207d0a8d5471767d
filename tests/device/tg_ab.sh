#!/usr/bin/env bash
# Token generation A/B in the same binary, alternated: bounded by 85 s (about 75 s on 16
# CPUs).
#  - creates qwen3-moe-small q4_0 and q8_0, and the 30B shapes at 12 layers in q4_0 (the
#    model of peers.sh's table; BIG=0 skips it);
#  - ROUNDS (3) rounds; in each, for each model: `run -p 0 -n 128 -r 3 -t THREADS` with
#    --cpu-kernels amx, each variant (the order rotates every round), t/s from --json.
#    Variants (environment of the same binary):
#      perop  AMXDIAG_ENGINE_FUSE=0: the per-op schedule
#      new    the defaults (d51ea99's, measured at 02:50: small q4_0 516 t/s)
#      tail   AMXDIAG_GEMV_TAIL=1: V's and Wo's last panels (per-op: every GEMV's) in
#             items of a quarter chunk
#      l2     AMXDIAG_GEMV_PREFETCH=l2: the GEMV's prefetches into L2 only
#    (the 30B model: new, tail and l2); VARIANTS="LABEL VAR=VALUE;LABEL VAR=VALUE..." sets
#    the variants of every model instead (one of them labelled new: the ratios' base);
#  - `run --ops` of new on q4_0 (where the time goes per op kind);
#  - one `run --greedy --compare ref` per quant with the defaults, and one with tail on
#    q4_0 (teacher forced against the reference kernels: exit 0 = every decisive step
#    agrees);
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
deadline=${DEADLINE:-85}
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
models="small-q4_0 small-q8_0"
if [ "${BIG:-1}" = 1 ]; then
    step "create-big-q4_0" 40 "$amx" model create --preset qwen3-30b-a3b --layers 12 --quant q4_0 --threads "$threads" \
        "$work/big-q4_0.gguf"
    [ -s "$work/big-q4_0.gguf" ] && models="$models big-q4_0"
fi

variants=("perop AMXDIAG_ENGINE_FUSE=0" "new AMXDIAG_ENGINE_FUSE=1" "tail AMXDIAG_GEMV_TAIL=1"
    "l2 AMXDIAG_GEMV_PREFETCH=l2")
big_variants=("new AMXDIAG_ENGINE_FUSE=1" "tail AMXDIAG_GEMV_TAIL=1" "l2 AMXDIAG_GEMV_PREFETCH=l2")
if [ -n "${VARIANTS:-}" ]; then
    IFS=';' read -r -a variants <<<"$VARIANTS"
    big_variants=("${variants[@]}")
fi
tg() {   # tg ROUND MODEL LABEL ENV (ENV: VAR=VALUE words)
    local r=$1 q=$2 label=$3 env=$4 name="tg-$1-$2-$3"
    # shellcheck disable=SC2086
    step "$name" 25 env $env "$amx" run -m "$work/$q.gguf" -p 0 -n "$ngen" -r 3 \
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
    for q in $models; do
        if [ "$q" = big-q4_0 ]; then vs=("${big_variants[@]}"); else vs=("${variants[@]}"); fi
        n=${#vs[@]}
        for i in $(seq 0 $((n - 1))); do   # the order rotates every round
            v=${vs[$(( (i + r) % n ))]}
            tg "$r" "$q" "${v%% *}" "${v#* }"
        done
    done
done
for v in "new AMXDIAG_ENGINE_FUSE=1"; do
    # shellcheck disable=SC2086
    step "ops-q4_0-${v%% *}" 20 env ${v#* } "$amx" run -m "$work/small-q4_0.gguf" -p 0 -n "$ngen" -r 2 \
        -t "$threads" --cpu-kernels "$impl" --ops
    cp "$work/ops-q4_0-${v%% *}.log" "$out/" 2>/dev/null
done
for c in "q4_0 AMXDIAG_ENGINE_FUSE=1" "q8_0 AMXDIAG_ENGINE_FUSE=1" "q4_0-tail AMXDIAG_GEMV_TAIL=1"; do
    q=${c%% *} m=${c%% *}
    # shellcheck disable=SC2086
    step "compare-$q" 20 env ${c#* } "$amx" run -m "$work/small-${m%-tail}.gguf" -p 32 -n 16 -t "$threads" \
        --cpu-kernels "$impl" --greedy --compare ref
    tail -n 25 "$work/compare-$q.log" >"$out/compare-$q.log" 2>/dev/null
done

python3 "$(dirname "$0")/ab_table.py" "$jl" quant "tg t/s (each a mean of -r 3)" perop,new >"$out/tg_ab.txt"
cat "$out/tg_ab.txt" >>"$summary"
cat "$summary"
rm -rf "$work"

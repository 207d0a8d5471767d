#!/usr/bin/env bash
# Prompt evaluation with `run --amx-scales row` against the block-scaled AMX kernels and the
# AVX-512 VNNI kernels, same binary, alternated: bounded by DEADLINE (160 s).
#  - creates qwen3-moe-small q4_0 and q8_0, and the 30B shapes at 12 layers in q4_0
#    (BIG=0 skips it);
#  - ROUNDS (3) rounds; in each, for each model: `run -p 512 -n 0 -r 2 -t THREADS` with
#    avx512, amx and amx --amx-scales row (the order rotates every round), t/s from --json;
#  - `run --ops` of amx row and amx block on the small q4_0 model (where the prompt's time
#    goes per op kind);
#  - `run --greedy --compare avx512 -p 96 -n 16` of amx row on each small model (teacher
#    forced; exit 0 = every decisive step agrees), and the same of amx block for scale;
#  - test_kern_engine (its test_row_scales runs on the real tiles here);
#  - medians into $OUT/rowq_run.txt (all values in brackets), the rows in $OUT/rowq_run.jsonl.
#   usage: OUT=DIR tests/device/rowq_run.sh BUILD_DIR
set -u
build=${1:?usage: rowq_run.sh BUILD_DIR}
out=${OUT:-./rowq-run-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/amxdiag-rowq-XXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-160}
split=0
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
jl="$out/rowq_run.jsonl"
: >"$jl"
: >"$summary"
lscpu | grep -E "Model name|^CPU\(s\)" >>"$summary"

if [ -x "$build/tests/test_kern_engine" ]; then
    step test_kern_engine 60 "$build/tests/test_kern_engine"
    grep -E "row|OK|FAIL|PASSED|SKIP" "$work/test_kern_engine.log" >>"$summary"
fi
for q in q4_0 q8_0; do
    step "create-$q" 40 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$threads" "$work/small-$q.gguf"
done
models="small-q4_0 small-q8_0"
if [ "${BIG:-1}" = 1 ]; then
    step "create-big-q4_0" 40 "$amx" model create --preset qwen3-30b-a3b --layers 12 --quant q4_0 --threads "$threads" \
        "$work/big-q4_0.gguf"
    [ -s "$work/big-q4_0.gguf" ] && models="$models big-q4_0"
fi

variants=("avx512 --cpu-kernels avx512" "amx --cpu-kernels amx" "row --cpu-kernels amx --amx-scales row")
pp() {   # pp ROUND MODEL LABEL ARGS
    local r=$1 q=$2 label=$3 args=$4 name="pp-$1-$2-$3"
    # shellcheck disable=SC2086
    step "$name" 40 "$amx" run -m "$work/$q.gguf" -p 512 -n 0 -r 2 -t "$threads" $args --json
    python3 - "$work/$name.log" "$r" "$q" "$label" >>"$jl" 2>/dev/null <<'PY'
import json, sys
txt = open(sys.argv[1]).read()
d = json.loads(txt[txt.index('{'):])
for t in d['tests']:
    print(json.dumps({'round': int(sys.argv[2]), 'model': sys.argv[3], 'label': sys.argv[4], 'test': t['test'],
                      'ts': t['avg_ts']}))
PY
}
for r in $(seq "$rounds"); do
    for q in $models; do
        n=${#variants[@]}
        for i in $(seq 0 $((n - 1))); do
            v=${variants[$(( (i + r) % n ))]}
            pp "$r" "$q" "${v%% *}" "${v#* }"
        done
    done
done
for v in "row --amx-scales row" "amx --amx-scales block"; do
    # shellcheck disable=SC2086
    step "ops-${v%% *}" 30 "$amx" run -m "$work/small-q4_0.gguf" -p 512 -n 0 -r 2 -t "$threads" --cpu-kernels amx \
        ${v#* } --ops
    cp "$work/ops-${v%% *}.log" "$out/" 2>/dev/null
done
for q in q4_0 q8_0; do
    for v in "row --amx-scales row" "amx --amx-scales block"; do
        # shellcheck disable=SC2086
        step "compare-$q-${v%% *}" 30 "$amx" run -m "$work/small-$q.gguf" --greedy -p 96 -n 16 -t "$threads" \
            --cpu-kernels amx ${v#* } --compare avx512
        tail -n 6 "$work/compare-$q-${v%% *}.log" >"$out/compare-$q-${v%% *}.log" 2>/dev/null
    done
done

python3 "$(dirname "$0")/ab_table.py" "$jl" model "prompt t/s (each a mean of -r 2)" avx512,amx >"$out/rowq_run.txt"
cat "$out/rowq_run.txt" >>"$summary"
for f in "$out"/compare-*.log; do
    [ -f "$f" ] && { echo "== $(basename "$f")"; cat "$f"; } >>"$summary"
done
cat "$summary"
rm -rf "$work"

#!/usr/bin/env bash
# The AVX-512 VNNI prompt GEMM's settings on the AMX machine, in one call (at most 115 s on
# 16 CPUs; each step has its own limit and none starts past the deadline):
#  1. qwen3-moe-small q8_0 and q4_0 created here;
#  2. ROUNDS (3) rounds, the variants in a rotated order each round: `bench kernels --impl
#     avx512` at M = 16, 64, 512 on attn_q, attn_o, moe_gate_up, moe_down, q4_0 and q8_0;
#     a variant is ROWS/PF: AMXDIAG_AVX512_Q8_MR = AMXDIAG_AVX512_Q4_MR = ROWS (4|6) and
#     AMXDIAG_AVX512_GEMM_PF = PF (block|line); VARIANTS overrides the list;
#  3. two rounds of `run -p 512 -n 0 -r 3 --cpu-kernels avx512` per variant on the q8_0
#     model and on the q4_0 model;
#  4. `run --greedy --compare ref -p 32 -n 8 --cpu-kernels avx512` on the q8_0 model with
#     the defaults and with 4/line (exit 0 wanted).
# Medians per (variant, shape, type, M) and per (variant, model) in summary.txt.
# (Session 4's first run of this script, 05:46 UTC, compared the loop kernel, 4x2, 6x2 and
# 8x1 with the one-line prefetch: docs/kernels.md.)
# Usage: OUT=DIR tests/device/q8_prompt.sh BUILD_DIR   (BUILD_DIR relative to the repository
# root, RelWithDebInfo, with tests/device/bundle-libs.sh or slim-build.sh run).  Output:
# $OUT/summary.txt (steps, medians, checks), $OUT/q8_prompt.jsonl (every sample), logs.
set -u
build=${1:?usage: OUT=DIR tests/device/q8_prompt.sh BUILD_DIR}
out=${OUT:-./q8-prompt-out}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
prompt=${PROMPT:-512}   # PROMPT, ROUNDS, DEADLINE: smaller runs to check this script elsewhere
work="$out/logs"
mkdir -p "$work"
tmp=$(mktemp -d /tmp/amxdiag-q8-XXXX)
export XDG_CACHE_HOME="$tmp/cache"
summary="$out/summary.txt"
jl="$out/q8_prompt.jsonl"
: >"$summary"
: >"$jl"
deadline=${DEADLINE:-115}
started=$(date +%s)
read -r -a blocks <<<"${VARIANTS:-6/block 6/line 4/block 4/line}"
nb=${#blocks[@]}
echo "q8_prompt: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)" >>"$summary"

step create_q8 40 "$amx" model create --preset qwen3-moe-small --quant q8_0 --threads "$threads" "$tmp/q8.gguf"
step create_q4 40 "$amx" model create --preset qwen3-moe-small --quant q4_0 --threads "$threads" "$tmp/q4.gguf"

venv() {   # the environment of variant ROWS/PF
    echo "AMXDIAG_AVX512_Q8_MR=${1%/*} AMXDIAG_AVX512_Q4_MR=${1%/*} AMXDIAG_AVX512_GEMM_PF=${1#*/}"
}
kb() {   # kb ROUND VARIANT
    local r=$1 b=$2
    # shellcheck disable=SC2046
    step "bench_r${r}_${b/\//-}" 20 env $(venv "$b") "$amx" bench kernels \
        --threads "$threads" --impl avx512 --type q4_0,q8_0 --shape attn_q,attn_o,moe_gate_up,moe_down \
        --m 16,64,512 --min-time 0.05 --weights-mib 64 --mem-gbs 100 -o "$tmp/b.json"
    python3 - "$tmp/b.json" "$b" "$r" >>"$jl" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for x in d['rows']:
    print(json.dumps({'kind': 'kernel', 'block': sys.argv[2], 'round': int(sys.argv[3]), 'shape': x['shape'],
                      'type': x['type'], 'm': x['m'], 'ms': x['median_ms'], 'gflops': x['gflops']}))
PY
    rm -f "$tmp/b.json"
}
pp() {   # pp ROUND VARIANT MODEL
    local r=$1 b=$2 m=$3
    # shellcheck disable=SC2046
    step "pp_${m}_r${r}_${b/\//-}" 25 env $(venv "$b") "$amx" run -m "$tmp/$m.gguf" \
        -p "$prompt" -n 0 -r 3 -t "$threads" --cpu-kernels avx512 -o "$tmp/p.json"
    python3 - "$tmp/p.json" "$b" "$r" "$m" >>"$jl" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for t in d['tests']:
    print(json.dumps({'kind': 'pp', 'block': sys.argv[2], 'round': int(sys.argv[3]), 'model': sys.argv[4],
                      'test': t['test'], 'ts': t.get('avg_ts', sum(t['samples_ts']) / len(t['samples_ts']))}))
PY
    rm -f "$tmp/p.json"
}

for r in $(seq "$rounds"); do
    for i in $(seq 0 $((nb - 1))); do
        kb "$r" "${blocks[$(( (i + r) % nb ))]}"
    done
done
for r in 1 2; do
    for m in q8 q4; do
        for i in $(seq 0 $((nb - 1))); do
            pp "$r" "${blocks[$(( (i + r) % nb ))]}" "$m"
        done
    done
done
step greedy_q8_default 25 "$amx" run -m "$tmp/q8.gguf" --greedy --compare ref -p 32 -n 8 -t "$threads" \
    --cpu-kernels avx512
step greedy_q8_4_line 25 env AMXDIAG_AVX512_Q8_MR=4 AMXDIAG_AVX512_GEMM_PF=line "$amx" run -m "$tmp/q8.gguf" --greedy --compare ref -p 32 -n 8 \
    -t "$threads" --cpu-kernels avx512

python3 - "$jl" >>"$summary" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    if r['kind'] == 'kernel':
        key = ('kernel', r['shape'], r['type'], r['m'], r['block'])
        k.setdefault(key, []).append(r['ms'])
    else:
        key = ('pp', r['model'], r['test'], 0, r['block'])
        k.setdefault(key, []).append(r['ts'])
print("\nmedians (all samples in brackets); kernel rows in ms, pp in t/s")
for key in sorted(k, key=lambda x: (x[0], x[1], x[2], x[3], x[4])):
    v = k[key]
    kind, a, b, m, blk = key
    if kind == 'kernel':
        print(f"kernel {a:12} {b:5} M={m:<4} {blk:8} {st.median(v):9.3f} ms  {[round(x, 3) for x in v]}")
    else:
        print(f"pp     {a:12} {b:5}        {blk:8} {st.median(v):9.1f} t/s {[round(x, 1) for x in v]}")
PY
for g in greedy_q8_default greedy_q8_4_line; do
    if grep -Eq "^$g +exit +0 " "$summary"; then
        printf 'CHECK %-44s PASS\n' "$g exit 0" >>"$summary"
    else
        printf 'CHECK %-44s FAIL\n' "$g exit 0" >>"$summary"
    fi
done
echo "total $(( $(date +%s) - started )) s" >>"$summary"
cat "$summary"
rm -rf "$tmp"

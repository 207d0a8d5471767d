#!/usr/bin/env bash
# GPU generation replayed as one CUDA graph per token, against launching its kernels one
# by one, in the same binary, alternated; bounded by 215 s (about 150 s with a GPU).
#  - creates qwen3-moe-small q4_0 and q8_0 and the 30B shapes at 12 layers in q4_0 (the
#    models of the peers tables);
#  - ROUNDS (2) rounds; in each, per model and --ngl (99 everywhere, 8 on small q4_0):
#    `run -p 0 -n 128 -r 3 --ngl N --json`, graphs on and --no-gpu-graphs (the order
#    alternates by round);
#  - correctness: `run --greedy -p 32 -n 32 --ngl 99 --json` with and without graphs must
#    give the same tokens (CHECK lines), and `run --greedy --compare ref` with graphs
#    (teacher forced against the CPU reference; exit 0 = every decisive step agrees), for
#    --ngl 99 and --ngl 8;
#  - test_kern_engine (its GPU tests run the default: graphs) when the build has it;
#  - `run --ops -v` of small q4_0 --ngl 99 with graphs (the per-layer GPU times from the
#    marks replayed in the graph, and the capture's debug line);
#  - pp512 at --ngl 99 per model (the prompt path; no graph there);
#  - with PEERS=peers.tar.xz (see peers.sh): llama.cpp's CUDA build, pp512 and tg128 at
#    -ngl 99 on the same files;
#  - `profile` of small q4_0 tg64 and of the 30B shapes' pp512 at --ngl 99 (GPU kernel
#    tables in prof-graph.md / prof-pp.md);
#  - medians into $OUT/gpu_graphs.txt (all values in brackets), rows in $OUT/gpu_graphs.jsonl.
#   usage: OUT=DIR tests/device/gpu_graphs.sh BUILD_DIR
set -u
build=${1:?usage: gpu_graphs.sh BUILD_DIR}
out=${OUT:-./gpu-graphs-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
work=$(mktemp -d /tmp/amxdiag-graphs-XXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-210}
split=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
jl="$out/gpu_graphs.jsonl"
: >"$jl"
: >"$summary"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >>"$summary" 2>&1

for q in q4_0 q8_0; do
    step "create-$q" 40 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$threads" "$work/small-$q.gguf"
done
step "create-big-q4_0" 40 "$amx" model create --preset qwen3-30b-a3b --layers 12 --quant q4_0 --threads "$threads" \
    "$work/big-q4_0.gguf"

tg() {   # tg ROUND MODEL NGL LABEL [OPTION]
    local r=$1 m=$2 ngl=$3 label=$4 name="tg-$1-$2-$3-$4"
    shift 4
    step "$name" 25 "$amx" run -m "$work/$m.gguf" -p 0 -n 128 -r 3 -t "$threads" --ngl "$ngl" --json "$@"
    python3 - "$work/$name.out" "$r" "$m" "$ngl" "$label" >>"$jl" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for t in d['tests']:
    ts = t.get('avg_ts') or sum(t['samples_ts']) / len(t['samples_ts'])
    print(json.dumps({'round': int(sys.argv[2]), 'model': sys.argv[3], 'ngl': int(sys.argv[4]),
                      'label': sys.argv[5], 'test': t['test'], 'ts': ts}))
PY
}
# pp512 at --ngl 99 (graphs do not apply to a prompt: this is the prompt path's own speed)
for m in small-q4_0 small-q8_0 big-q4_0; do
    [ -s "$work/$m.gguf" ] || continue
    name="pp-$m"
    step "$name" 30 "$amx" run -m "$work/$m.gguf" -p 512 -n 0 -r 3 -t "$threads" --ngl 99 --json
    python3 - "$work/$name.out" "$m" >>"$jl" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for t in d['tests']:
    ts = t.get('avg_ts') or sum(t['samples_ts']) / len(t['samples_ts'])
    print(json.dumps({'round': 1, 'model': sys.argv[2], 'ngl': 99, 'label': 'graph', 'test': t['test'], 'ts': ts}))
PY
done
cases="small-q4_0:99 small-q8_0:99 big-q4_0:99 small-q4_0:8"
for r in $(seq "$rounds"); do
    for c in $cases; do
        m=${c%%:*} ngl=${c#*:}
        [ -s "$work/$m.gguf" ] || continue
        if [ $((r % 2)) = 1 ]; then
            tg "$r" "$m" "$ngl" graph; tg "$r" "$m" "$ngl" launches --no-gpu-graphs
        else
            tg "$r" "$m" "$ngl" launches --no-gpu-graphs; tg "$r" "$m" "$ngl" graph
        fi
    done
done

# The peer in the same call: llama.cpp's CUDA build (CUDA graphs on, its default) on the
# same files, pp512 and tg128 at -ngl 99 ($PEERS: the archive of peers.sh, optional).
if [ -f "${PEERS:-}" ] && mkdir -p "$work/peers" && tar -xJf "$PEERS" -C "$work/peers" llama-bench-cuda 2>/dev/null; then
    for m in small-q4_0 small-q8_0 big-q4_0; do
        [ -s "$work/$m.gguf" ] || continue
        step "llama-cuda-$m" 40 env LD_LIBRARY_PATH="$work/peers:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" \
            "$work/peers/llama-bench-cuda" -m "$work/$m.gguf" -p 512 -n 128 -r 3 -t "$threads" -ngl 99 -o json
        python3 - "$work/llama-cuda-$m.out" "$m" >>"$jl" 2>/dev/null <<'PY'
import json, sys
for t in json.load(open(sys.argv[1])):
    test = 'pp%d' % t['n_prompt'] if t['n_prompt'] else 'tg%d' % t['n_gen']
    print(json.dumps({'round': 1, 'model': sys.argv[2], 'ngl': 99, 'label': 'llama.cpp', 'test': test,
                      'ts': t['avg_ts']}))
PY
    done
fi

for q in q4_0 q8_0; do
    step "greedy-graph-$q" 20 "$amx" run -m "$work/small-$q.gguf" -p 32 -n 32 --ngl 99 --greedy --json
    step "greedy-launch-$q" 20 "$amx" run -m "$work/small-$q.gguf" -p 32 -n 32 --ngl 99 --greedy --json --no-gpu-graphs
    python3 - "$work/greedy-graph-$q.out" "$work/greedy-launch-$q.out" >"$work/tokens-$q.json" 2>&1 <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({'graph': a.get('tokens'), 'launches': b.get('tokens')}))
PY
    check "greedy $q: graph tokens == launched tokens" "$work/tokens-$q.json" \
        "r['graph'] and r['graph'] == r['launches']"
done
for ngl in 99 8; do
    step "compare-ngl$ngl" 30 "$amx" run -m "$work/small-q4_0.gguf" -p 32 -n 24 -t "$threads" --ngl "$ngl" \
        --greedy --compare ref
    tail -n 20 "$work/compare-ngl$ngl.out" >"$out/compare-ngl$ngl.txt" 2>/dev/null
done
if [ -x "$build/tests/test_kern_engine" ]; then
    step "unit-kern_engine" 60 "$build/tests/test_kern_engine"
    cp "$work/unit-kern_engine.out" "$out/" 2>/dev/null
fi
step "ops-graph" 20 "$amx" run -m "$work/small-q4_0.gguf" -p 0 -n 64 -r 1 -t "$threads" --ngl 99 --ops --verbose
cp "$work/ops-graph.out" "$out/" 2>/dev/null
grep -i "graph" "$work/ops-graph.log" >"$out/ops-graph-debug.txt" 2>/dev/null
# Where a graphed token's GPU time goes: CUPTI's kernel records of the replays (the
# in-process tracer; the graph launches one cuGraphLaunch a token) and the report.
step "profile-graph" 60 "$amx" profile -q -e gpu,cpu -o "$out/prof-graph.json" -m "$work/small-q4_0.gguf" \
    --ngl 99 --n-prompt 0 -n 64 -r 1 -t "$threads"
step "report-graph" 20 "$amx" report "$out/prof-graph.json" --format md -o "$out/prof-graph.md"
# Where the prompt's GPU time goes at --ngl 99 (the 30B shapes, one pp512): the kernel table.
if [ -s "$work/big-q4_0.gguf" ]; then
    step "profile-pp" 60 "$amx" profile -q -e gpu,cpu -o "$out/prof-pp.json" -m "$work/big-q4_0.gguf" \
        --ngl 99 --n-prompt 512 -n 0 -r 2 -t "$threads"
    step "report-pp" 20 "$amx" report "$out/prof-pp.json" --format md -o "$out/prof-pp.md"
fi
if [ -x "$build/tests/test_cuda_kernels" ]; then
    step "unit-cuda_kernels" 60 "$build/tests/test_cuda_kernels"
    cp "$work/unit-cuda_kernels.out" "$out/" 2>/dev/null
fi

python3 - "$jl" >"$out/gpu_graphs.txt" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    k.setdefault((r['model'], r['ngl'], r['test'], r['label']), []).append(r['ts'])
print("tg t/s, median of the rounds (each a mean of -r 3), values in brackets")
for key in sorted(k):
    m, ngl, test, label = key
    print(f"{m:11} ngl {ngl:2} {test:6} {label:9} {st.median(k[key]):9.2f}  {[round(x, 2) for x in k[key]]}")
for m, ngl, test in sorted({(r['model'], r['ngl'], r['test']) for r in rows}):
    g, l = k.get((m, ngl, test, 'graph')), k.get((m, ngl, test, 'launches'))
    if g and l:
        print(f"{m} ngl {ngl} {test}: graph / launches = {st.median(g) / st.median(l):.3f}")
    p = k.get((m, ngl, test, 'llama.cpp'))
    if g and p:
        print(f"{m} ngl {ngl} {test}: graph / llama.cpp CUDA = {st.median(g) / st.median(p):.3f}")
PY
cat "$out/gpu_graphs.txt" >>"$summary"
grep -h "exit\|CHECK\|agree\|decisive" "$summary" "$out"/compare-*.txt 2>/dev/null | head -40
cp "$work"/*.log "$out/" 2>/dev/null
rm -rf "$work"

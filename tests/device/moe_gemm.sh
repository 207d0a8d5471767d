#!/usr/bin/env bash
# The grouped expert GEMM of a prompt (kern_cuda_moe_gemm, int8 tensor cores): the old tile
# (AMXDIAG_GPU_MOE_TILE=old: a CTA per (expert, 64 rows) over all of that expert's tokens,
# 64 at a time) against the token-tile ones (g0..g5, GI8M_VARIANTS in kern_gemm_i8_map.h:
# a CTA per (token tile of an expert, row tile), warps over rows only).  Step limits add up
# to 170 s (typically 60-90 s); NCU=1 adds <= 50 s.
#   1. unit-moe: test_kern_cuda_gemm's grouped cases (AMXDIAG_TEST_FILTER=*moe*): every tile
#      bit for bit against the CPU reference at the 30B shapes (uneven routings of 64 / 40
#      tokens, uniform ones of 256 tokens), k % 128 != 0 and partial tiles;
#   2. bench / bench-s4: `amxdiag-gpu-bench --only moe --gemm-tile all` at 3 and 4 stages
#      (AMXDIAG_GPU_MOE_STAGES): gate/up 128 x (768x2048) and down 128 x (2048x768), 512
#      tokens x top-8 drawn uniformly, q4_0 and q8_0, every tile
#      (the op: quantising X, kern_moe_sort and the GEMM; weights of the experts hit, X and Y
#      counted as bytes);
#   3. compare: `run --greedy --compare ref --ngl 99 -p 64 -n 8` of qwen3-moe-small with the
#      default tile (q4_0) and with g1 (q8_0) (exit 0 = every decisive step agrees);
#   4. pp512 of qwen3-moe-small at --ngl 99 (`run -p 512 -n 0 -r 3`) per tile and with the
#      default (auto), q4_0 and q8_0, each in both orders;
#   4b. the 30B shapes (12 layers, q4_0): `profile -e gpu` of pp512 at --ngl 99, old and auto
#      (prof-big-*.md: the GPU kernel table);
#   5. NCU=1: Nsight Compute of the q4_0 gate GEMM with old, g0 and g1 (duration, DRAM
#      throughput, achieved occupancy, registers, issue slots, top stall reasons).
#   usage: tests/device/moe_gemm.sh BUILD_DIR      (outputs in $OUT, else ./moe-gemm-out)
# Needs under BUILD_DIR (-DAMXDIAG_CUDA_ARCHS=90 is enough): amxdiag, amxdiag-gpu-bench,
# tests/test_kern_cuda_gemm, devlibs/ (bundle-libs.sh).
# Outputs: summary.txt (tables included), bench.json, bench-s4.json, pp.jsonl, one .log per step.
set -u
build=${1:?usage: tests/device/moe_gemm.sh BUILD_DIR}
out=${OUT:-./moe-gemm-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
amx="$PWD/$build/amxdiag"
bench="$PWD/$build/amxdiag-gpu-bench"
threads=${THREADS:-$(nproc)}
summary="$out/summary.txt"
: >"$summary"
work=$(mktemp -d /tmp/amxdiag-moe-XXXX)
export XDG_CACHE_HOME="$work/cache"
started=$(date +%s)
deadline=${DEADLINE:-170}
split=0
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
tiles="old g0 g1 g2 g3 g4 g5"

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader >>"$summary" 2>&1

# 1. every tile bit for bit
step unit-moe 40 env AMXDIAG_TEST_FILTER='*moe*' "$build/tests/test_kern_cuda_gemm"
grep -h "PASSED\|FAILED\|SKIP\|ERROR\|element\|token .* row" "$work/unit-moe.log" | head -12 >>"$summary"
grep -c "gpu moe .*bit-exact" "$work/unit-moe.log" | sed 's/^/  grouped cases bit-exact (of 70): /' >>"$summary"

# 2. every tile at the 30B shapes, 3 stages (the default) and 4
cat >"$work/table.py" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))['rows'] if r['group'] == 'moe_gemm']
print(f"grouped GEMM op (quantise X + sort + GEMM), 512 tokens x top-8, {sys.argv[2]}: us / GB/s / TFLOP/s")
best = {}
for r in rows:
    shape, tile = r['name'].split(' ')
    print(f"  {r['type']:5} {shape:10} {tile:4} {r['us']:8.1f} us {r.get('gbps', 0):7.0f} GB/s "
          f"{r.get('tflops', 0):6.1f} TFLOP/s")
    k = (r['type'], shape)
    if tile != 'old' and (k not in best or r['us'] < best[k][1]):
        best[k] = (tile, r['us'])
for k, (tile, us) in sorted(best.items()):
    old = next((r['us'] for r in rows if r['type'] == k[0] and r['name'] == k[1] + ' old'), None)
    print(f"  best {k[0]} {k[1]}: {tile} {us:.1f} us" + (f", old / best = {old / us:.2f}x" if old else ""))
PY
step bench 30 "$bench" --only moe --gemm-tile all --iters 10 --no-cublas -o "$out/bench.json"
python3 "$work/table.py" "$out/bench.json" "3 stages" >>"$summary" 2>&1
step bench-s4 30 env AMXDIAG_GPU_MOE_STAGES=4 "$bench" --only moe --gemm-tile all --iters 10 --no-cublas \
    -o "$out/bench-s4.json"
python3 "$work/table.py" "$out/bench-s4.json" "4 stages" >>"$summary" 2>&1

# 3. pp512 at --ngl 99 per tile (a model per quant type)
for q in q4_0 q8_0; do
    step "create-$q" 30 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$threads" "$work/small-$q.gguf"
done
# 3b. the forward pass against the CPU reference (default tile, and g1)
step compare-default 25 "$amx" run -m "$work/small-q4_0.gguf" -p 64 -n 8 -t "$threads" --ngl 99 --greedy --compare ref
step compare-g1-q8_0 25 env AMXDIAG_GPU_MOE_TILE=g1 "$amx" run -m "$work/small-q8_0.gguf" -p 64 -n 8 -t "$threads" \
    --ngl 99 --greedy --compare ref
for n in compare-default compare-g1-q8_0; do
    grep -h "agree\|decisive\|differ\|error" "$work/$n.log" | tail -3 | sed "s/^/  $n: /" >>"$summary"
done

: >"$out/pp.jsonl"
pp() { # pp QUANT TILE [ROUND]
    local name="pp-$1-$2${3:+-$3}"
    [ -s "$work/small-$1.gguf" ] || return 0
    step "$name" 12 env AMXDIAG_GPU_MOE_TILE="$2" "$amx" run -m "$work/small-$1.gguf" -p 512 -n 0 -r 3 \
        -t "$threads" --ngl 99 --json
    python3 - "$work/$name.log" "$1" "$2" >>"$out/pp.jsonl" 2>/dev/null <<'PY'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index('{'):])
for t in d['tests']:
    ts = t.get('avg_ts') or sum(t['samples_ts']) / len(t['samples_ts'])
    print(json.dumps({'quant': sys.argv[2], 'tile': sys.argv[3], 'test': t['test'], 'ts': ts}))
PY
}
# q4_0 and q8_0 both ways round (about 1 s a run); auto: the default pick (gi8m_auto)
for q in q4_0 q8_0; do
    for t in auto $tiles; do pp $q "$t"; done
    for t in $(echo auto $tiles | tr ' ' '\n' | tac); do pp $q "$t" 2; done
done
python3 - "$out/pp.jsonl" >>"$summary" 2>&1 <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
k = {}
for r in rows:
    k.setdefault((r['quant'], r['tile']), []).append(r['ts'])
print("qwen3-moe-small pp512 --ngl 99, t/s (median of the runs, each -r 3)")
for (q, t), v in sorted(k.items()):
    old = k.get((q, 'old'))
    print(f"  {q} {t:4} {st.median(v):9.1f}  {[round(x) for x in v]}" +
          (f"  x{st.median(v) / st.median(old):.3f} of old" if old and t != 'old' else ""))
PY

# 4b. the 30B shapes at 12 layers in q4_0: pp512 at --ngl 99 under `profile -e gpu`, old and
# auto (the kernel table of each report: kern_moe_gemm_i8_q4_0 vs _g1, median per call)
step create-big 45 "$amx" model create --preset qwen3-30b-a3b --layers 12 --quant q4_0 --threads "$threads" \
    "$work/big-q4_0.gguf"
for t in old auto; do
    [ -s "$work/big-q4_0.gguf" ] || break
    step "profile-big-$t" 30 env AMXDIAG_GPU_MOE_TILE=$t "$amx" profile -q -e gpu -o "$out/prof-big-$t.json" \
        -m "$work/big-q4_0.gguf" --ngl 99 --n-prompt 512 -n 0 -r 2 -t "$threads"
    step "report-big-$t" 15 "$amx" report "$out/prof-big-$t.json" --format md -o "$out/prof-big-$t.md"
    grep -E "^\| (kern_moe|kern_attention|kern_gemm|kern_moe_sort)" "$out/prof-big-$t.md" 2>/dev/null | head -8 |
        sed "s/^/  30B pp512 $t: /" >>"$summary"
    grep -E "^\| prompt \|" "$out/prof-big-$t.md" 2>/dev/null | head -2 | sed "s/^/  30B pp512 $t: /" >>"$summary"
done

# 5. where the kernel's time goes (optional)
if [ "${NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
    for t in old g0 g1; do
        step "ncu-$t" 16 env AMXDIAG_GPU_MOE_TILE=$t ncu --kernel-name regex:moe_gemm_i8_q4_0 --launch-count 1 \
            --launch-skip 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
            --section WarpStateStats --section SchedulerStats --csv --page details \
            "$bench" --only moe --iters 2 --no-cublas --json
        grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|Stall|Grid Size|Waves Per SM|Block Limit" \
            "$work/ncu-$t.log" | head -40 | sed "s/^/  ncu $t: /" >>"$summary"
    done
fi

cp "$work"/*.log "$out/" 2>/dev/null
rm -rf "$work"
cat "$summary"

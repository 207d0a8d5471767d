#!/usr/bin/env bash
# Token generation's GEMV (M = 1) at the per-layer shapes of Qwen3-30B-A3B against the
# probe's read bandwidth (issue 4's goal: >= 90 % for Q4_0 and Q8_0), for each software
# prefetch scheme of the VNNI GEMV (AMXDIAG_GEMV_PREFETCH=panel, the default; ahead, the
# scheme before; none) in the same binary, alternated.  Bounded by 240 s (about 100 s on
# 16 CPUs).
#  - `amxdiag probe --only cpu --bench`: the read bandwidth the bench compares with (cached);
#  - ROUNDS (2) rounds; in each, every scheme (the order rotates):
#    `bench kernels --impl avx512 --type q4_0,q8_0 --m 1 --threads N --min-time 0.1
#    --weights-mib 1024 --json` (weights replicated beyond the L3, so each call reads DRAM;
#    MoE shapes: 8 distinct experts of 128 per call).  The bench times kern_matmul /
#    kern_moe_matmul at m = 1: the same GEMV kernel (gemv_q_range) as the fused generation
#    schedule's kern_gemv_panels, plus one pool dispatch and the activation's quantization;
#  - $OUT/gemv_m1.txt: per shape and type, the median GB/s over the rounds of each scheme
#    and its fraction of the read bandwidth (the probe's figure, or the bench's own read if
#    larger: what `bench kernels` divides by), all values in brackets; JSON per call.
#   usage: OUT=DIR tests/device/gemv_m1.sh BUILD_DIR
set -u
build=${1:?usage: gemv_m1.sh BUILD_DIR}
out=${OUT:-./gemv-m1-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
mib=${WEIGHTS_MIB:-1024}
types=${TYPES:-q4_0,q8_0}
work=$(mktemp -d /tmp/amxdiag-gemvm1-XXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-235}
split=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: >"$summary"
lscpu | grep -E "Model name|^CPU\(s\)|L3" >>"$summary"

step probe-bench 60 "$amx" probe --only cpu --bench
grep -iE "read|bandwidth" "$work/probe-bench.out" | head -5 >>"$summary"
schemes=(panel ahead none)
for r in $(seq "$rounds"); do
    n=${#schemes[@]}
    for i in $(seq 0 $((n - 1))); do
        s=${schemes[$(( (i + r) % n ))]}
        step "m1-$s-$r" 60 env AMXDIAG_GEMV_PREFETCH="$s" "$amx" bench kernels --impl avx512 --type "$types" --m 1 \
            --threads "$threads" --min-time 0.1 --weights-mib "$mib" --json -o "$out/m1-$s-$r.json"
    done
done

python3 - "$out" >"$out/gemv_m1.txt" <<'PY'
import glob, json, os, statistics as st, sys
k, bw = {}, []
for f in sorted(glob.glob(os.path.join(sys.argv[1], 'm1-*.json'))):
    scheme = os.path.basename(f).split('-')[1]
    try:
        d = json.load(open(f))
    except Exception as e:
        print(f"{f}: {e}")
        continue
    bw.append(d['ceilings'].get('mem_read_gbs') or 0)
    for r in d['rows']:
        if r['m'] == 1:
            k.setdefault((r['shape'], r['type'], scheme), []).append((r['gbs'], r['fraction_of_read_bw'] or 0))
print(f"read bandwidth the bench divides by: {[round(x, 1) for x in bw]} GB/s (per call)")
print("M = 1 GEMV, avx512 VNNI: median GB/s of the rounds (fraction of read bandwidth), values in brackets")
shapes = sorted({(s, t) for s, t, _ in k})
for s, t in shapes:
    cells = []
    for scheme in ('panel', 'ahead', 'none'):
        v = k.get((s, t, scheme))
        if v:
            g = st.median([x[0] for x in v]); fr = st.median([x[1] for x in v])
            cells.append(f"{scheme} {g:6.1f} ({fr * 100:4.0f} %) {[round(x[0], 1) for x in v]}")
    print(f"{s:12} {t:5} " + " | ".join(cells))
PY
cat "$out/gemv_m1.txt" >>"$summary"
cat "$summary"
rm -rf "$work"

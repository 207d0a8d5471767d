#!/usr/bin/env bash
# Token generation's GEMV (M = 1) at the per-layer shapes of Qwen3-30B-A3B against the
# read bandwidth (issue 4's goal: >= 90 % for Q4_0 and Q8_0), per variant of the same
# binary, alternated.  Bounded by 115 s (about 80 s on 16 CPUs).
#  - `amxdiag probe --only cpu --bench`: the probe's read bandwidth (cached);
#  - ROUNDS (2) rounds; in each, every variant (the order rotates):
#      panel  the defaults (AMXDIAG_GEMV_PREFETCH=panel)
#      l2     AMXDIAG_GEMV_PREFETCH=l2: panel's prefetches into L2 only (PREFETCHT1)
#      tail   AMXDIAG_GEMV_TAIL=1: a call's last panels in items of a quarter chunk
#    `bench kernels --impl avx512 --type q4_0,q8_0 --m 1 --threads N --min-time 0.1
#    --weights-mib 3072 --json`: copies of each matrix of 3 GiB in all (10x the 300 MiB
#    L3 of the device's VM; the round before used 1 GiB, and the LM head and MoE shapes
#    then read more than the measured read bandwidth: either part came from the L3 or
#    the bandwidth figure is low.  To tell which, one more call, p1g: panel at 1 GiB).
#    Each row has two figures:
#      per call  kern_matmul / kern_moe_matmul, one pool region and one quantization
#                of x per product (what a caller of the per-op schedule pays);
#      batched   kern_gemv_batch: B distinct copies (>= 16 MiB, B <= 64) back to back in
#                ONE region, x quantized once, as the fused generation schedule runs a
#                phase's products.  Issue 4's goal is judged on this one.
#    Each batched line also against the read measured just before and after it
#    (`beside`, the larger of the two; docs/bench.md): the goal's figure on a VM whose
#    bandwidth moves between calls.  DEFAULT_ONLY=1: the defaults only;
#    THREAD_LIST="16 12 8": the defaults at each thread count instead (variants t16, t12, t8),
#    with `lscpu -e` in the summary (whether fewer threads read closer to the bandwidth);
#    DIST_LIST="8 16 24": the prefetch distance in blocks instead (variants d8 ..., the
#    AMXDIAG_GEMV_PF_DIST of each);
#  - $OUT/gemv_m1.txt: per shape and type, for each variant the median GB/s over the
#    rounds and its fraction of the read bandwidth the bench divides by (the larger of
#    the probe's figure and the bench's own AVX-512 read of 4x the L3, both printed),
#    all values in brackets; the JSON of every call.
#   usage: OUT=DIR tests/device/gemv_m1.sh BUILD_DIR
set -u
build=${1:?usage: gemv_m1.sh BUILD_DIR}
out=${OUT:-./gemv-m1-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
mib=${WEIGHTS_MIB:-3072}
types=${TYPES:-q4_0,q8_0}
work=$(mktemp -d /tmp/amxdiag-gemvm1-XXXX)
export XDG_CACHE_HOME="$work/cache"
summary="$out/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-113}
split=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
: >"$summary"
lscpu | grep -E "Model name|^CPU\(s\)|L3" >>"$summary"

step probe-bench 60 "$amx" probe --only cpu --bench
grep -iE "read|bandwidth" "$work/probe-bench.out" | head -5 >>"$summary"
variants=("panel AMXDIAG_GEMV_PREFETCH=panel" "l2 AMXDIAG_GEMV_PREFETCH=l2" "tail AMXDIAG_GEMV_TAIL=1")
# DEFAULT_ONLY=1: the defaults only (the goal's figure, more rounds in the same time)
[ "${DEFAULT_ONLY:-0}" = 1 ] && variants=("panel AMXDIAG_GEMV_PREFETCH=panel")
# VARIANTS="panel AMXDIAG_GEMV_PREFETCH=panel;two AMXDIAG_GEMV_PREFETCH=two": these instead
# (labels of letters only)
[ -n "${VARIANTS:-}" ] && IFS=";" read -r -a variants <<<"$VARIANTS"
# THREAD_LIST="16 12 8": instead, the defaults at each of these thread counts (variants tN)
if [ -n "${THREAD_LIST:-}" ]; then
    variants=()
    for t in $THREAD_LIST; do variants+=("t$t GEMV_THREADS=$t"); done
    lscpu -e >>"$summary" 2>&1
fi
# DIST_LIST="8 16 24": instead, the software prefetch this many blocks ahead (variants dN,
# AMXDIAG_GEMV_PF_DIST)
if [ -n "${DIST_LIST:-}" ]; then
    variants=()
    for d in $DIST_LIST; do variants+=("d$d AMXDIAG_GEMV_PF_DIST=$d"); done
fi
for r in $(seq "$rounds"); do
    n=${#variants[@]}
    for i in $(seq 0 $((n - 1))); do
        v=${variants[$(( (i + r) % n ))]}
        s=${v%% *}
        nt=$threads
        case ${v#* } in GEMV_THREADS=*) nt=${v#*GEMV_THREADS=} ;; esac
        # shellcheck disable=SC2086
        step "m1-$s-$r" 40 env ${v#* } "$amx" bench kernels --impl avx512 --type "$types" --m 1 \
            --threads "$nt" --min-time 0.1 --weights-mib "$mib" --json -o "$out/m1-$s-$r.json"
    done
done
step "m1-p1g-1" 30 "$amx" bench kernels --impl avx512 --type "$types" --m 1 --threads "$threads" --min-time 0.1 \
    --weights-mib 1024 --json -o "$out/m1-p1g-1.json"

python3 - "$out" >"$out/gemv_m1.txt" <<'PY'
import glob, json, os, statistics as st, sys
k, den = {}, []
for f in sorted(glob.glob(os.path.join(sys.argv[1], 'm1-*.json'))):
    var = os.path.basename(f).split('-')[1]
    try:
        d = json.load(open(f))
    except Exception as e:
        print(f"{f}: {e}")
        continue
    c = d['ceilings']
    den.append((c.get('mem_read_gbs') or 0, c.get('probe_mem_read_gbs') or 0, c.get('bench_mem_read_gbs') or 0))
    for r in d['rows']:
        if r['m'] == 1:
            k.setdefault((r['shape'], r['type'], var), []).append(r)
print("read bandwidth per call, GB/s: divided by (larger of) / probe --bench / bench's own read:")
print("  " + ", ".join(f"{a:.1f}/{b:.1f}/{c:.1f}" for a, b, c in den))
print("M = 1 GEMV, avx512 VNNI, median over the rounds: GB/s (fraction of the bandwidth divided by)")
print("  per = one region and one quantization per product; bat = B products in one region (the goal's figure)")
fmt = lambda g, f: f"{g:6.1f} ({f * 100:4.0f} %)"
for s, t in sorted({(s, t) for s, t, _ in k}):
    cells = []
    for var in ['panel', 'l2', 'tail', 'two', 'p1g'] + sorted({v for _, _, v in k if v.isalpha() and v not in ('panel', 'l2', 'tail', 'two', 'p1g')}) + sorted({v for _, _, v in k if v[0] in 'td' and v[1:].isdigit()}, key=lambda v: (v[0], int(v[1:]))):
        v = k.get((s, t, var))
        if not v:
            continue
        per = fmt(st.median(x['gbs'] for x in v), st.median(x['fraction_of_read_bw'] or 0 for x in v))
        b = [x for x in v if x.get('batched_gbs')]
        bat = fmt(st.median(x['batched_gbs'] for x in b), st.median(x['batched_fraction_of_read_bw'] or 0 for x in b)) \
            + f" B={b[0]['batch']} {[round(x['batched_gbs'], 1) for x in b]}" if b else "-"
        pr = [x for x in b if x.get('paired_read_gbs')]
        if pr:   # against the read measured beside each batched line (docs/bench.md)
            bat += " beside %4.0f %% %s (reads %s)" % (100 * st.median(x['batched_fraction_of_paired_read'] for x in pr),
                   [round(100 * x['batched_fraction_of_paired_read']) for x in pr], [round(x['paired_read_gbs'], 1) for x in pr])
        cells.append(f"{var}: per {per} {[round(x['gbs'], 1) for x in v]} bat {bat}")
    print(f"{s:12} {t:5} " + " | ".join(cells))
PY
cat "$out/gemv_m1.txt" >>"$summary"
cat "$summary"
rm -rf "$work"

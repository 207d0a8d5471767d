#!/usr/bin/env bash
# The row-scaled int8 experiment (kernels/amx/amx_rowq.h, docs/kernels.md) on the AMX
# machine, in one call of at most 120 s (DEADLINE; every step has its own limit and none
# starts past the deadline), 16 threads (THREADS):
#  0. tests/rowq_steps (one core, pinned): the kernel's 2x2 step taken apart (resident
#     operands, tile loads from L1 / from L2, L1 prefetch distances, K blocks);
#  1. `probe --only cpu --bench`: the measured clock behind "% of the int8 peak";
#  2. test_kern_amx_rowq: the tile kernel on REAL tiles and on the emulator, bit for bit
#     against the contract's model, plus its accuracy bounds;
#  3. `bench kernels --amx-scales row --impl amx,avx512` at M = 512 on attn_q, attn_o,
#     moe_gate_up, moe_down, q4_0 and q8_0: the shipped amx row, the avx512 row and the
#     row-scaled row of each point timed in the same process, one after the other;
#  4. one thread, attn_q q8_0 M = 512, with each setting of KNOBS1 (default: none, PF 1 /
#     2 / 4, KB 8 + PF 2): cycles per TDPBSSD against the fixture's;
#  5. 16 threads, attn_q and moe_gate_up q8_0 M = 512, each setting of KNOBS (default: PF
#     1 / 2 / 4, KB 8 + PF 2, L2KB 256 + PF 2, none), two rounds in opposite orders, each
#     against the shipped amx row of the same call (session 5's first run swept KB 4 / 8 /
#     16, L2KB 256 / 1024 / 2048, CHUNK 1: KNOBS="KB=8 KB=16 L2KB=256 L2KB=1024 L2KB=2048
#     CHUNK=1 KB=4");
#  6. M = 1, 16, 64, 256 on attn_q and moe_gate_up, both types, briefly (skipped past the
#     deadline);
#  7. step 3 again (a second round: the ratios' spread).
# A setting is VAR=VALUE[+VAR=VALUE] with VAR one of AMXDIAG_AMX_ROWQ_{PF,KB,L2KB,CHUNK}
# without the prefix; "none" = the defaults.
# Usage: OUT=DIR tests/device/amx_rowq.sh BUILD_DIR  (BUILD_DIR relative to the repository
# root: RelWithDebInfo with targets amxdiag, test_kern_amx_rowq and rowq_steps, then
# tests/device/bundle-libs.sh or slim-build.sh).  Output: $OUT/summary.txt (steps, the
# table per shape and type, CHECK lines), $OUT/*.json (every bench run), $OUT/logs/.
set -u
build=${1:?usage: OUT=DIR tests/device/amx_rowq.sh BUILD_DIR}
out=${OUT:-./amx-rowq-out}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-16}
[ "$threads" -gt "$(nproc)" ] && threads=$(nproc)
work="$out/logs"
mkdir -p "$work"
tmp=$(mktemp -d /tmp/amxdiag-rowq-XXXX)
export XDG_CACHE_HOME="$tmp/cache"
export AMXDIAG_CROSSOVER="$tmp/none.json"   # the shipped defaults, not a stale cache
summary="$out/summary.txt"
: >"$summary"
deadline=${DEADLINE:-120}
started=$(date +%s)
echo "amx_rowq: $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null)" >>"$summary"

bench() {   # bench NAME LIMIT [env...] -- bench args...
    local name=$1 limit=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    step "$name" "$limit" env "${envs[@]}" "$amx" bench kernels --amx-scales row -o "$out/$name.json" "$@"
}
dense="--shape attn_q,attn_o,moe_gate_up,moe_down --type q4_0,q8_0"

knob_env() {   # knob_env SETTING: the env assignments of a setting ("none": a harmless one)
    [ "$1" = none ] && { echo "AMXDIAG_AMX_ROWQ_NONE=1"; return; }
    local IFS=+
    for kv in $1; do echo "AMXDIAG_AMX_ROWQ_$kv"; done
}

[ -x "$build/tests/rowq_steps" ] && step rowq_steps 20 taskset -c 2 "$build/tests/rowq_steps" 500000
step probe 25 "$amx" probe --only cpu --bench
step unit_rowq 30 "$build/tests/test_kern_amx_rowq"
# shellcheck disable=SC2086
bench m512_r1 35 -- --threads "$threads" --impl amx,avx512 $dense --m 512 --min-time 0.1 --weights-mib 512
read -r -a knobs1 <<<"${KNOBS1:-none PF=1 PF=2 PF=4 KB=8+PF=2}"
for v in "${knobs1[@]}"; do
    # shellcheck disable=SC2046
    bench "one_thread_${v//[=+]/_}" 8 $(knob_env "$v") -- --threads 1 --impl amx --shape attn_q --type q8_0 \
        --m 512 --min-time 0.1 --weights-mib 64
done
read -r -a knobs <<<"${KNOBS:-PF=1 PF=2 PF=4 KB=8+PF=2 L2KB=256+PF=2 none}"
for r in 1 2; do
    for i in $(seq 0 $(( ${#knobs[@]} - 1 ))); do
        [ "$r" = 2 ] && v=${knobs[$(( ${#knobs[@]} - 1 - i ))]} || v=${knobs[$i]}
        # shellcheck disable=SC2046
        bench "knob_r${r}_${v//[=+]/_}" 10 $(knob_env "$v") -- --threads "$threads" --impl amx \
            --shape attn_q,moe_gate_up --type q8_0 --m 512 --min-time 0.05 --weights-mib 256
    done
done
bench small_m 25 -- --threads "$threads" --impl amx,avx512 --shape attn_q,moe_gate_up --type q4_0,q8_0 \
    --m 1,16,64,256 --min-time 0.03 --weights-mib 256
# shellcheck disable=SC2086
bench m512_r2 35 -- --threads "$threads" --impl amx,avx512 $dense --m 512 --min-time 0.1 --weights-mib 512

python3 - "$out" >>"$summary" 2>&1 <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def load(n):
    p = os.path.join(out, n + '.json')
    return json.load(open(p)) if os.path.exists(p) else None
for name in ['m512_r1', 'm512_r2', 'small_m'] + sorted(os.path.basename(p)[:-5] for p in glob.glob(out + '/one_thread*.json') + glob.glob(out + '/knob_*.json')):
    d = load(name)
    if not d:
        print(f"\n{name}: no result")
        continue
    c = d['ceilings']
    print(f"\n{name}: {d['threads']} threads, clock {c['clock_ghz']} GHz, int8 peak {c['amx_int8_theoretical_ops'] and c['amx_int8_theoretical_ops'] / 1e12:.1f} TOPS"
          f" (probe {'yes' if c['from_probe'] else 'no'}), TDPBSSD loop {c['amx_int8_ops'] and c['amx_int8_ops'] / 1e12} TOPS")
    print(f"  {'shape':12} {'type':5} {'M':>4} {'amx ms':>8} {'avx ms':>8} {'rowq ms':>8} {'rowq TOPS':>9} {'%peak':>6} {'/avx':>6} {'/amx':>6}  amx%peak cyc/TDP  err rms/max vs block (rowq|block vs exact)")
    print("  (cyc/TDP: cycles per core per 16x16x64 TDPBSSD of useful work = 16 / fraction of the peak; 16 at the peak)")
    rows = d['rows']
    for r in rows:
        if r['variant'] != 'rowq':
            continue
        k = lambda impl: next((x for x in rows if x['variant'] != 'rowq' and x['impl'] == impl and x['shape'] == r['shape'] and x['type'] == r['type'] and x['m'] == r['m']), None)
        a, v, q = k('amx'), k('avx512'), r['rowq']
        peak = c['amx_int8_theoretical_ops']
        acc = q.get('accuracy') or {}
        fmt = lambda x, f='8.3f': format(x, f) if x is not None else '-'
        print(f"  {r['shape']:12} {r['type']:5} {r['m']:4} {fmt(a and a['median_ms']):>8} {fmt(v and v['median_ms']):>8} {r['median_ms']:8.3f}"
              f" {q['tops']:9.2f} {fmt(q['fraction_of_amx_int8_theoretical'] and 100 * q['fraction_of_amx_int8_theoretical'], '6.1f'):>6}"
              f" {fmt(q['speedup_vs_avx512'], '6.2f'):>6} {fmt(q['speedup_vs_amx_block'], '6.2f'):>6}"
              f"  {fmt(a and peak and 100 * a['gflops'] * 1e9 / peak, '6.1f'):>6}"
              f" {fmt(q['fraction_of_amx_int8_theoretical'] and 16 / q['fraction_of_amx_int8_theoretical'], '7.1f'):>7}"
              f"  {100 * acc.get('rel_rms_vs_block', 0):.2f}/{100 * acc.get('rel_max_vs_block', 0):.2f} % ({100 * acc.get('rowq_rel_rms_vs_exact', 0):.2f}|{100 * acc.get('block_rel_rms_vs_exact', 0):.2f})")
PY
if grep -Eq "^unit_rowq +exit +0 " "$summary"; then
    printf 'CHECK %-44s PASS\n' "test_kern_amx_rowq exit 0 (real tiles)" >>"$summary"
else
    printf 'CHECK %-44s FAIL\n' "test_kern_amx_rowq exit 0 (real tiles)" >>"$summary"
fi
grep -q "SKIP part: amx" "$work/unit_rowq.log" 2>/dev/null && echo "NOTE: the unit test skipped real tiles (see logs/unit_rowq.log)" >>"$summary"
[ -f "$out/m512_r1.json" ] && check "rowq rows at M=512 (8 wanted)" "$out/m512_r1.json" \
    "sum(1 for x in r['rows'] if x['variant'] == 'rowq' and x['m'] == 512) == 8"
echo "total $(( $(date +%s) - started )) s" >>"$summary"
[ -f "$work/rowq_steps.log" ] && { echo; echo "rowq_steps (one core):"; cat "$work/rowq_steps.log"; } >>"$summary"
cat "$summary"
rm -rf "$tmp"

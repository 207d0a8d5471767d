#!/usr/bin/env bash
# The decode GEMV on the device: the row kernels against the super-block kernel's
# variants, bounded by 150 s (about 100 s on an H200).
#  - checks: test_cuda_kernels' GEMV tests (AMXDIAG_TEST_FILTER=*gemv*: the row kernels,
#    every super-block configuration, odd shapes, a persistent grid, validation) and
#    `amxdiag-gpu-bench --check-only` with the device's default configuration;
#  - sweep: `amxdiag-gpu-bench --only gemv --gemv sweep` (auto, rows and ten super-block
#    variants: registers / cp.async ring of 2 or 3 stages, 4 or 8 warps, persistent grid or
#    not; the copy rate in the same run) at the decode shapes and the large
#    2,097,152 x 2048 shape, Q4_0 and Q8_0, twice: the GEMVs quantising their input in the
#    timed call (the goal's accounting; a decode shape's figure there is mostly the
#    bench's fixed per-op cost) and --gemv-q8 (as a generated token runs them: input
#    quantised beforehand, calls back to back over 192 MiB of weight copies, per call);
#  - generation: qwen3-moe-small q4_0 and q8_0, `run -p 0 -n 128 -r 3 --ngl 99 --json`
#    with AMXDIAG_GPU_GEMV=rows (the old kernels), the default, sb,load=cs (the register
#    path everywhere) and sb,load=async (the cp.async ring everywhere), ROUNDS (2) rounds
#    in rotating order, after `run --greedy --compare ref` at --ngl 99 with the default
#    (exit 0 = every decisive step agrees with the CPU reference) and with rows (first, so
#    that the deadline skips timings, not the correctness check); free-running greedy
#    tokens of both side by side (how many agree: informative only, a changed summation
#    order parts them at near-ties);
#  - a table in $OUT/gemv_sweep.txt (sweep rows: us and % of copy per configuration and
#    shape; tg medians per configuration), summary.txt, and everything else (JSON, logs)
#    in $OUT/gemv_sweep.tgz (the runner returns at most 8 files).
#   usage: OUT=DIR tests/device/gemv_sweep.sh BUILD_DIR
#   build: -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMXDIAG_CUDA_ARCHS=90, targets amxdiag
#   amxdiag-gpu-bench test_cuda_kernels
set -u
build=${1:?usage: gemv_sweep.sh BUILD_DIR}
final=${OUT:-./gemv-sweep-out}
mkdir -p "$final"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
bench="$PWD/$build/amxdiag-gpu-bench"
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
work=$(mktemp -d /tmp/amxdiag-gemv-XXXX)
export XDG_CACHE_HOME="$work/cache"
out="$work/keep"   # packed into $final/gemv_sweep.tgz at the end
mkdir -p "$out"
summary="$final/summary.txt"
started=$(date +%s)
deadline=${DEADLINE:-145}
split=1
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
jl="$out/tg.jsonl"
: >"$jl"
: >"$summary"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv,noheader \
    >>"$summary" 2>&1

if [ -x "$build/tests/test_cuda_kernels" ]; then
    step unit-gemv 60 env AMXDIAG_TEST_FILTER='*gemv*' "$build/tests/test_cuda_kernels"
    cp "$work/unit-gemv.out" "$work/unit-gemv.log" "$out/" 2>/dev/null
    grep -E "PASSED|FAILED|SKIPPED" "$work/unit-gemv.out" "$work/unit-gemv.log" 2>/dev/null | head -5 >>"$summary"
fi
step check 60 "$bench" --check-only -o "$out/check.json"
cp "$work/check.out" "$out/check.txt" 2>/dev/null
step sweep 40 "$bench" --only gemv --gemv sweep --no-cublas --iters 10 -o "$out/sweep.json"
cp "$work/sweep.out" "$out/sweep.txt" 2>/dev/null
step sweep-q8 40 "$bench" --only gemv --gemv sweep --gemv-q8 --no-cublas --iters 10 -o "$out/sweep-q8.json"
cp "$work/sweep-q8.out" "$out/sweep-q8.txt" 2>/dev/null

for q in q4_0 q8_0; do
    step "create-$q" 30 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$threads" "$work/small-$q.gguf"
done
# correctness before the timings: the deadline skips the last steps first, and these are
# the only check that the default agrees with the CPU reference
for q in q4_0 q8_0; do
    for label in default rows; do
        spec=auto; [ $label = rows ] && spec=rows
        step "compare-$q-$label" 30 env AMXDIAG_GPU_GEMV=$spec "$amx" run -m "$work/small-$q.gguf" -p 32 -n 24 \
            -t "$threads" --ngl 99 --greedy --compare ref
        tail -n 4 "$work/compare-$q-$label.out" 2>/dev/null | sed "s/^/  compare-$q-$label: /" >>"$summary"
    done
done
tg() {   # tg ROUND QUANT LABEL SPEC (SPEC: AMXDIAG_GPU_GEMV)
    local r=$1 q=$2 label=$3 spec=$4 name="tg-$1-$2-$3"
    step "$name" 20 env AMXDIAG_GPU_GEMV="$spec" "$amx" run -m "$work/small-$q.gguf" -p 0 -n 128 -r 3 -t "$threads" \
        --ngl 99 --json
    python3 - "$work/$name.out" "$r" "$q" "$label" >>"$jl" 2>/dev/null <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for t in d['tests']:
    ts = t.get('avg_ts') or sum(t['samples_ts']) / len(t['samples_ts'])
    print(json.dumps({'round': int(sys.argv[2]), 'quant': sys.argv[3], 'label': sys.argv[4], 'test': t['test'],
                      'ts': ts}))
PY
}
for r in $(seq "$rounds"); do
    for q in q4_0 q8_0; do
        [ -s "$work/small-$q.gguf" ] || continue
        case $((r % 4)) in
        1) tg "$r" $q rows rows; tg "$r" $q default auto; tg "$r" $q sbreg sb,load=cs; tg "$r" $q ring sb,load=async ;;
        2) tg "$r" $q ring sb,load=async; tg "$r" $q sbreg sb,load=cs; tg "$r" $q default auto; tg "$r" $q rows rows ;;
        3) tg "$r" $q default auto; tg "$r" $q rows rows; tg "$r" $q ring sb,load=async; tg "$r" $q sbreg sb,load=cs ;;
        0) tg "$r" $q sbreg sb,load=cs; tg "$r" $q ring sb,load=async; tg "$r" $q rows rows; tg "$r" $q default auto ;;
        esac
    done
done
for q in q4_0 q8_0; do
    for label in default rows; do
        spec=auto; [ $label = rows ] && spec=rows
        step "greedy-$q-$label" 20 env AMXDIAG_GPU_GEMV=$spec "$amx" run -m "$work/small-$q.gguf" -p 32 -n 32 \
            --ngl 99 --greedy --json
    done
    python3 - "$work/greedy-$q-default.out" "$work/greedy-$q-rows.out" >"$work/tokens-$q.json" 2>&1 <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({'default': a.get('tokens'), 'rows': b.get('tokens')}))
PY
    fact "greedy $q default vs rows (informative: tokens before the first difference, of)" "$work/tokens-$q.json" \
        "(next((i for i, (x, y) in enumerate(zip(r['default'], r['rows'])) if x != y), len(r['default'])), len(r['default']))"
done

python3 - "$out" >"$final/gemv_sweep.txt" 2>&1 <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
for f, title in (('sweep.json', 'GEMV quantising its input (bench accounting)'),
                 ('sweep-q8.json', 'GEMV as generation runs it (--gemv-q8: _q8, back to back over 192 MiB of weight copies; per call)')):
    p = os.path.join(out, f)
    if not os.path.exists(p):
        print(f'{f}: missing'); continue
    d = json.load(open(p))
    print(f"== {title}: {d['load'].get('name', '?')}, copy {d.get('copy_gbps', 0):.0f} GB/s, "
          f"default {d.get('gemv', {}).get('config')}, peak {d.get('gemv', {}).get('peak_dram_gbps', 0):.0f} GB/s, "
          f"sb registers {d.get('gemv', {}).get('sb_registers')}")
    rows = [r for r in d['rows'] if r['group'] in ('gemv', 'moe_gemv')]
    cfgs = []
    for r in rows:
        if r['gemv_index'] not in cfgs:
            cfgs.append(r['gemv_index'])
    names = []
    for r in rows:
        if r['name'] not in names:
            names.append(r['name'])
    for t in ('q4_0', 'q8_0'):
        print(f'\n{t}: us per call (large: % of copy)')
        print('%-40s' % 'config (as run)' + ''.join('%14s' % n[:13] for n in names) + '%10s' % 'sum-dec')
        for c in cfgs:
            cells, dec = [], 0.0
            label = next(r['gemv'] for r in rows if r['gemv_index'] == c and r['type'] == t)
            if next(r.get('gemv_spec', '') for r in rows if r['gemv_index'] == c).startswith('auto'):
                label = 'auto=' + label
            for n in names:
                m = [r for r in rows if r['gemv_index'] == c and r['name'] == n and r['type'] == t]
                if not m:
                    cells.append('%14s' % '-'); continue
                r = m[0]
                if n == 'large':
                    cells.append('%8.0f %4.1f%%' % (r['us'], r['pct_copy']))
                else:
                    cells.append('%14.2f' % r['us'])
                    if n != 'router':
                        dec += r['us']
            print('%-40s' % label[:40] + ''.join(cells) + '%10.2f' % dec)
        print('auto ran: ' + ', '.join('%s %s' % (r['name'], r.get('gemv_kernel', '?')) for r in rows
                                       if r['gemv_index'] == cfgs[0] and r['type'] == t))
    print()
p = os.path.join(out, 'tg.jsonl')
rows = [json.loads(l) for l in open(p)] if os.path.exists(p) else []
print('== tg128 at --ngl 99, qwen3-moe-small (t/s, median of rounds [values])')
for q in ('q4_0', 'q8_0'):
    for label in ('rows', 'default', 'sbreg', 'ring'):
        v = [r['ts'] for r in rows if r['quant'] == q and r['label'] == label]
        if v:
            print('%-5s %-8s %8.1f  [%s]' % (q, label, statistics.median(v), ', '.join('%.1f' % x for x in v)))
PY
cat "$final/gemv_sweep.txt" >>"$summary"
# everything else in one archive (the runner returns at most 8 files): JSON, logs
tar -czf "$final/gemv_sweep.tgz" -C "$work" --exclude='*.gguf' --exclude=cache . 2>/dev/null
rm -rf "$work"

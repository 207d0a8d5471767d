#!/usr/bin/env bash
# The prompt GEMMs on a GPU: the Hopper wgmma kernel (sm_90a module: weights dequantised to
# f16 in shared memory, wgmma.mma_async from shared-memory descriptors; compute capability
# 9.0 only) beside the f16-MMA (mma.sync) and int8 kernels and cuBLAS f16; f16 weights
# (session 5) through the wgmma and f16-MMA kernels (pieces straight to shared memory) and
# the old WMMA kernel.  Step limits add up to <= 200 s (typically 60-90 s); NCU=1 adds
# <= 90 s, STAGED=1 the f16-MMA staged-epilogue sweeps (<= 40 s), PERSIST=1 the wgmma
# persistent-grid sweeps (<= 16 s; +2 % at the LM head on 05:48, nothing elsewhere),
# RACECHECK=1 compute-sanitizer racecheck (<= 10 s).
#   1. unit-gemm: test_kern_cuda_gemm: every int8 variant bit for bit against the CPU
#      formula, every f16-MMA and wgmma variant within 1.1 * 2^-10 sum |w x| (the largest
#      error printed): partial tiles, the 2-byte weight path, split-K, one token; f16
#      weights (both kernels, every tile, part stages, split-K) within 2^-14 sum |w x| of
#      the exact sum;
#   2. check-wgmma / check-f16mma: the bench's checks with that kernel (the GEMMs within
#      their bounds, f16 weights included); auto: `amxdiag-gpu-bench --only gemm` as a user
#      runs it (the default per shape, the wgmma row beside it; goals "worst shape, % of
#      cuBLAS f16" for f16, q4_0 and q8_0);
#   3. sweep-s3 / sweep-s3k2 (AMXDIAG_GPU_GEMM_SPLITK=2): every int8 (v0..v7), f16-MMA
#      (f0..f8) and wgmma (w0..w3) tile at every shape (the wgmma ring: as many slots as fit,
#      <= 8; AMXDIAG_GPU_GEMM_WGMMA_SLOTS caps it);
#      sweep-x1..x3 / sweep-x1k2..x3k2: the experimental wgmma variants (AMXDIAG_GPU_GEMM_WGMMA_X:
#      padded raw W rows, fixed ring slots, both), one k slice and two;
#      sweep-p2 / sweep-p2k2 (DEEP=1): the wgmma tiles with the deep pipeline (AMXDIAG_GPU_GEMM_WGMMA_PIPE=2);
#      sweep-ps / sweep-p2ps (PERSIST=1): with the persistent grid (AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1);
#   4. engine-wgmma: test_kern_engine's GPU layers teacher-forced against the CPU
#      reference; compare-wgmma: `amxdiag run --ngl 99 --greedy --compare ref`;
#   5. compute-sanitizer memcheck (RACECHECK=1: and racecheck) on the wgmma and f16-MMA
#      kernels (the f16-weight ones included);
#   6. the table: per shape and type (f16, q4_0, q8_0), us / TOP/s / % of cuBLAS f16 of
#      every tile, the best per kernel over the runs, the goal per shape, and where wgmma
#      beats the f16-MMA kernel (the rows of auto_wgmma in kern_cuda_gemm_plan.c to turn on;
#      f16: its third column), and the variants x1..x3 against x0 per shape and tile;
#   7. NCU=1: Nsight Compute of wgmma w0 at the LM head (Q4_0, Q8_0) and w1 at attn_q
#      (Q4_0): instructions per warp, tensor pipe %, stall reasons, bank conflicts, DRAM MB.
#   usage: tests/device/gemm_sweep.sh BUILD_DIR      (outputs in $OUT, else ./gemm-sweep-out)
# Needs under BUILD_DIR (the default archs or -DAMXDIAG_CUDA_ARCHS=90: the sm_90a module is
# built whenever the SASS list has 90): amxdiag, amxdiag-gpu-bench,
# tests/test_kern_cuda_gemm, tests/test_kern_engine, devlibs/.
# Outputs: summary.txt (the table included), sweep-*.json, auto.json, one .log per step,
# and with NCU=1 ncu-details.txt, ncu-wgmma.csv.
set -u
build=${1:?usage: tests/device/gemm_sweep.sh BUILD_DIR}
out=${OUT:-./gemm-sweep-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
export PATH="$PATH:/usr/local/cuda/bin"
bench="$build/amxdiag-gpu-bench"
summary="$out/summary.txt"
: >"$summary"
t_start=$(date +%s)
. "$(dirname "$0")/lib.sh"

nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,clocks.max.mem --format=csv >>"$summary" 2>&1

# 1. int8 bit for bit, f16-MMA and wgmma within their bound: every variant, both weight paths
step_want unit-gemm 0 45 "$build/tests/test_kern_cuda_gemm"
expect unit-gemm 'PASSED'
grep -h "FAILED\|element\|SKIP\|ERROR\|LINE\|token .* row\|sm_90a" "$out/unit-gemm.log" | head -20 >>"$summary"
grep -c "bit-exact" "$out/unit-gemm.log" | sed 's/^/  int8 bit-exact cases: /' >>"$summary"
grep -c "gpu f16mma.*within" "$out/unit-gemm.log" | sed 's/^/  f16mma cases within the bound: /' >>"$summary"
grep -c "gpu wgmma.*within" "$out/unit-gemm.log" | sed 's/^/  wgmma cases within the bound: /' >>"$summary"
grep -c "f16 weights.*within" "$out/unit-gemm.log" | sed 's/^/  f16-weight cases within the bound: /' >>"$summary"
grep -h "gpu wgmma\|f16 weights" "$out/unit-gemm.log" | sed 's/^/  /' >>"$summary"

# 2. the bench's own checks with the wgmma kernel (every kernel against the CPU reference,
# the GEMM within 1.1 * 2^-10 sum |w x|), then the default as a user gets it
step_want check-wgmma 0 8 "$bench" --check-only --gemm-kernel wgmma
grep -h -E "wgmma GEMM|FAIL|gemm" "$out/check-wgmma.log" | head -12 | sed 's/^/  /' >>"$summary"
step_want check-f16mma 0 8 "$bench" --check-only --gemm-kernel f16mma
grep -h -E "FAIL|gemm" "$out/check-f16mma.log" | head -12 | sed 's/^/  /' >>"$summary"
step_want auto 0 8 "$bench" --only gemm --iters 10 -o "$out/auto.json"
grep -h "wgmma GEMM" "$out/auto.log" | sed 's/^/  /' >>"$summary"
sed -n '/^goals/,$p' "$out/auto.log" | sed "s/^/  auto /" >>"$summary"
grep -h -E "(f16mma|wgmma|mma) [fvw][0-9].*\(selected\)" "$out/auto.log" | head -20 | sed "s/^ */  auto /" >>"$summary"

# 3. every tile at every shape, 3 stages for the mma.sync kernels (2 and 4 were within 1 %
# at 02:59), the wgmma ring as many slots as fit; one k slice and two (SPLITK=2: where k
# has enough stages, i.e. every shape but ffn_down); then the wgmma variants of the pipeline
runs="s3 s3k2"
[ -n "${STAGED:-}" ] && runs="$runs s3st s3k2st"
for run in $runs; do
    envs=()
    case $run in *k2*) envs+=(AMXDIAG_GPU_GEMM_SPLITK=2) ;; esac
    case $run in *st) envs+=(AMXDIAG_GPU_GEMM_STORE=staged) ;; esac
    step_want "sweep-$run" 0 20 env "${envs[@]}" "$bench" --only gemm --gemm-tile all --gemm-stages 3 --iters 10 \
        -o "$out/sweep-$run.json"
    sed -n '/^goals/,$p' "$out/sweep-$run.log" | sed "s/^/  $run /" >>"$summary"
done
# the experimental wgmma variants (session 5, AMXDIAG_GPU_GEMM_WGMMA_X; q4_0/q8_0 tiles w0..w2,
# the rest as in s3): x1 raw W rows 52 / 84 bytes apart (fewer bank conflicts in the
# conversion's loads), x2 the ring's slots fixed at compile time (no runtime cp.async
# wait_group switch, constant ring wrap-around), x3 both; one k slice and two
for xv in 1 2 3; do
    step_want "sweep-x$xv" 0 8 env AMXDIAG_GPU_GEMM_WGMMA_X=$xv "$bench" --only gemm --gemm-kernel wgmma \
        --gemm-tile all --iters 10 -o "$out/sweep-x$xv.json"
    step_want "sweep-x${xv}k2" 0 8 env AMXDIAG_GPU_GEMM_WGMMA_X=$xv AMXDIAG_GPU_GEMM_SPLITK=2 "$bench" --only gemm \
        --gemm-kernel wgmma --gemm-tile all --iters 10 -o "$out/sweep-x${xv}k2.json"
done
# the deep pipeline (DEEP=1; AMXDIAG_GPU_GEMM_WGMMA_PIPE=2: one stage of MMAs in flight across
# the barrier; no better at 05:03), the wgmma tiles only, one k slice and two
if [ -n "${DEEP:-}" ]; then
    step_want sweep-p2 0 8 env AMXDIAG_GPU_GEMM_WGMMA_PIPE=2 "$bench" --only gemm --gemm-kernel wgmma \
        --gemm-tile all --iters 10 -o "$out/sweep-p2.json"
    step_want sweep-p2k2 0 8 env AMXDIAG_GPU_GEMM_WGMMA_PIPE=2 AMXDIAG_GPU_GEMM_SPLITK=2 "$bench" --only gemm \
        --gemm-kernel wgmma --gemm-tile all --iters 10 -o "$out/sweep-p2k2.json"
fi
# the persistent grid (PERSIST=1; AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1: the CTAs resident at
# once, each running its tiles as one stream of k stages), with either pipeline
if [ -n "${PERSIST:-}" ]; then
    step_want sweep-ps 0 8 env AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1 "$bench" --only gemm --gemm-kernel wgmma \
        --gemm-tile all --iters 10 -o "$out/sweep-ps.json"
    step_want sweep-p2ps 0 8 env AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1 AMXDIAG_GPU_GEMM_WGMMA_PIPE=2 "$bench" \
        --only gemm --gemm-kernel wgmma --gemm-tile all --iters 10 -o "$out/sweep-p2ps.json"
fi

# 4. the engine with the wgmma prompt GEMM against the CPU reference
step_want engine-wgmma 0 6 env AMXDIAG_GPU_GEMM=wgmma "$build/tests/test_kern_engine"
grep -h -E "teacher-forced|SKIP|FAILED|ERROR|LINE" "$out/engine-wgmma.log" | head -12 | sed 's/^/  /' >>"$summary"
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-wgmma-cache-XXXXXX)
step_want compare-wgmma 0 6 env AMXDIAG_GPU_GEMM=wgmma "$build/amxdiag" run --ngl 99 --greedy -p 64 -n 16 \
    --compare ref
grep -h -E "max \|logit|same arg-max|agrees|differs|decisive|error" "$out/compare-wgmma.log" | head -6 |
    sed 's/^/  /' >>"$summary"
rm -rf "$XDG_CACHE_HOME"
unset XDG_CACHE_HOME

# 5. compute-sanitizer on the wgmma kernels only (the bench's small checks: 256 x 512 x 64
# and 131 x 96 x 37): no out-of-bounds access; with RACECHECK=1 (<= 10 s more) also
# racecheck (whether it follows wgmma's asynchronous operand reads is not known here)
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    tools=memcheck
    [ -n "${RACECHECK:-}" ] && tools="memcheck racecheck"
    for tool in $tools; do
        step_want "sanitizer-$tool" 0 10 "$cs" --tool $tool --kernel-name kns=gemm_wgmma --error-exitcode 9 \
            --print-limit 10 "$bench" --check-only --quick --gemm-kernel wgmma
        expect "sanitizer-$tool" 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards'
        grep -h -E "SUMMARY|Invalid|hazard" "$out/sanitizer-$tool.log" | head -6 | sed 's/^/  /' >>"$summary"
    done
    # the f16-MMA kernels (f16 weights: the pieces straight to shared memory, part stages)
    step_want sanitizer-f16mma 0 10 "$cs" --tool memcheck --kernel-name kns=gemm_f16mma --error-exitcode 9 \
        --print-limit 10 "$bench" --check-only --quick --gemm-kernel f16mma
    expect sanitizer-f16mma 'ERROR SUMMARY: 0 errors'
    grep -h -E "SUMMARY|Invalid" "$out/sanitizer-f16mma.log" | head -6 | sed 's/^/  /' >>"$summary"
fi

# 6. the table: per shape and type, cuBLAS f16 and each variant (us, TOP/s, % of cuBLAS)
python3 - "$out" >>"$summary" 2>&1 <<'PYEOF'
import json, os, sys
out = sys.argv[1]
labels = [("s3", "3 stages (wgmma: slots as fit)"), ("s3k2", "3 stages, split-K 2"),
          ("x1", "wgmma x1: raw W rows 52/84 B"), ("x1k2", "wgmma x1, split-K 2"),
          ("x2", "wgmma x2: fixed ring slots"), ("x2k2", "wgmma x2, split-K 2"),
          ("x3", "wgmma x3: both"), ("x3k2", "wgmma x3, split-K 2"),
          ("p2", "wgmma deep pipeline (PIPE=2)"), ("p2k2", "wgmma deep pipeline, split-K 2"),
          ("ps", "wgmma persistent grid (PERSIST=1)"), ("p2ps", "wgmma deep pipeline, persistent grid"),
          ("s3st", "3 stages, f16mma staged stores"), ("s3k2st", "3 stages, split-K 2, f16mma staged stores")]
runs = {}
for tag, _ in labels:
    p = os.path.join(out, "sweep-%s.json" % tag)
    if os.path.exists(p):
        try:
            runs[tag] = json.load(open(p))
        except ValueError as e:
            print("sweep-%s.json: %s" % (tag, e))
if not runs:
    print("no sweep results")
    sys.exit(0)
best = {}  # (shape, type, kernel) -> (pct, us, label)
cub = {}
kerns = (("mma", "v"), ("f16mma", "f"), ("wgmma", "w"), ("wmma", "m"))
for tag, desc in labels:
    if tag not in runs:
        continue
    rows = [x for x in runs[tag].get("rows", []) if x.get("group") == "gemm"]
    if tag.startswith("p") or tag.startswith("x"):
        rows = [x for x in rows if x.get("kernel") in ("wgmma", None) or x.get("type", "").startswith("cublas")]
    shapes = []
    for x in rows:
        if x["name"] not in shapes:
            shapes.append(x["name"])
    print("\n== %s (us / TOP/s / %% of cuBLAS f16; * = the default, ^ = best of the kernel)" % desc)
    for nm in shapes:
        cb = [x for x in rows if x["name"] == nm and x["type"] == "cublas"]
        head = "%-14s %s" % (nm, cb[0]["shape"] if cb else "")
        if cb:
            head += "  cuBLAS f16 %.1f us %.0f TFLOP/s" % (cb[0]["us"], cb[0]["tflops"])
            cub.setdefault(nm, (cb[0]["us"], cb[0]["tflops"], cb[0]["shape"]))
        print(head)
        for ty in ("f16", "q4_0", "q8_0"):
            for kern, t in kerns:
                v = [x for x in rows if x["name"] == nm and x["type"] == ty and x.get("kernel") == kern]
                if not v:
                    continue
                b = max(v, key=lambda x: x.get("pct_cublas", 0))
                cells = []
                for x in sorted(v, key=lambda x: x.get("variant", 0)):
                    mark = ("*" if x.get("selected") else "") + ("^" if x is b else "")
                    extra = "/%ds%s%s" % (x.get("stages", 0), "p2" if x.get("pipe") == 2 else "",
                                          "x%d" % x["xv"] if x.get("xv") else "") if kern == "wgmma" else ""
                    cells.append("%s%d%s%s %.1f/%.0f/%.0f%%" % (t, x.get("variant", -1), extra, mark, x["us"],
                                                              x["tflops"], x.get("pct_cublas", 0)))
                print("  %s %-6s %s" % (ty, kern, "  ".join(cells)))
                key = (nm, ty, kern)
                lab = "%s%d %s" % (t, b.get("variant", -1), tag)
                if b.get("pipe") == 2:
                    lab += " pipe 2"
                if b.get("xv") and not tag.startswith("x"):
                    lab += " x%d" % b["xv"]
                if b.get("grid"):
                    lab += " persistent"
                if b.get("ksplit", 1) > 1:
                    lab += " k%d" % b.get("ksplit")
                if key not in best or b.get("pct_cublas", 0) > best[key][0]:
                    best[key] = (b.get("pct_cublas", 0), b["us"], lab)
print("\n== best per shape over the runs (% of cuBLAS f16; goal >= 50 %)")
worst = {}
wins = []
for nm in cub:
    for ty in ("f16", "q4_0", "q8_0"):
        got = {kern: best.get((nm, ty, kern)) for kern, _ in kerns}
        cells = ["%s %s %.1f us %.0f%%" % (kern, b[2], b[1], b[0]) for kern, b in got.items() if b]
        top = max([b[0] for b in got.values() if b] or [0])
        worst[ty] = min(worst.get(ty, 1e9), top)
        print("%-14s %s  cuBLAS %.1f us | %s | %s" % (nm, ty, cub[nm][0], " | ".join(cells),
                                                    "MET" if top >= 50 else "MISS"))
        if got["wgmma"] and got["f16mma"] and got["wgmma"][0] > got["f16mma"][0]:
            wins.append("%s %s: wgmma %s %.1f us beats f16mma %s %.1f us" % (nm, ty, got["wgmma"][2], got["wgmma"][1],
                                                                           got["f16mma"][2], got["f16mma"][1]))
for ty, w in sorted(worst.items()):
    print("worst shape, best kernel and tile, %s: %.1f%% (%s)" % (ty, w, "MET" if w >= 50 else "MISS"))
# the experimental variants against the measured kernel, same tile and k slices, per shape
print("\n== wgmma variants x1..x3 against x0 (same tile, same k slices; us, + = slower)")
base = {}
for tag in ("s3", "s3k2", "x1", "x1k2", "x2", "x2k2", "x3", "x3k2"):
    for x in (runs.get(tag, {}).get("rows", []) if tag in runs else []):
        if x.get("group") != "gemm" or x.get("kernel") != "wgmma" or x.get("type") not in ("q4_0", "q8_0"):
            continue
        key = (x["name"], x["type"], x.get("variant"), x.get("ksplit", 1))
        base.setdefault(key, {})[x.get("xv", 0)] = x["us"]
for key in sorted(base, key=lambda k: (k[1], k[0], k[2], k[3])):
    d = base[key]
    if 0 not in d or len(d) < 2 or key[2] == 3:
        continue
    cells = " ".join("x%d %.1f (%+.1f%%)" % (v, d[v], 100.0 * (d[v] / d[0] - 1)) for v in sorted(d) if v)
    print("  %-10s %-5s w%d k%d  x0 %.1f  %s" % (key[0], key[1], key[2], key[3], d[0], cells))
print("\n== where wgmma wins (kern_cuda_gemm_plan.c auto_wgmma: {variant, k slices} of that shape class)")
for w in wins or ["none"]:
    print("  " + w)
PYEOF

# 7. Nsight Compute (NCU=1) of the wgmma kernel, Q4_0: w0 at the LM head (151936 x 2048 x
# 512) and w1 at attn_q (4096 x 2048 x 512).  The bench in its default mode with
# --gemm-tile wN launches wN Q4_0 twice per shape (warm-up, timed) in the order attn_q,
# attn_o, attn_k, ffn_up, ffn_down, lm_head: the LM head's are launches 11 and 12, attn_q's
# 1 and 2.
if [ -n "${NCU:-}" ]; then
    ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    secs="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section LaunchStats \
--section SchedulerStats --section WarpStateStats --section InstructionStats --section MemoryWorkloadAnalysis \
--section MemoryWorkloadAnalysis_Tables"
    mets=gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread
    mets=$mets,sm__inst_executed.sum,smsp__inst_executed.avg.per_cycle_active,smsp__issue_active.avg.pct_of_peak_sustained_active
    mets=$mets,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
    mets=$mets,sm__warps_active.avg.pct_of_peak_sustained_active
    mets=$mets,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
    mets=$mets,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
    mets=$mets,lts__t_bytes.sum,dram__bytes_read.sum,dram__bytes_write.sum
    for st in barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle not_selected \
        dispatch_stall no_instruction selected membar branch_resolving sleeping; do
        mets=$mets,smsp__average_warps_issue_stalled_${st}_per_issue_active.ratio
    done
    : >"$out/ncu-details.txt"
    : >"$out/ncu-wgmma.csv"
    # (sm__inst_executed: collected explicitly, the sections alone did not give it at 05:03)
    for run in q4_0:0:10:lm q8_0:0:10:lm q4_0:1:0:attn_q; do
        ty=${run%%:*} rest=${run#*:}
        v=${rest%%:*} rest=${rest#*:}
        skip=${rest%%:*} tag=$ty-w$v-${rest#*:}
        step_want "ncu-$tag" 0 30 "$ncu" $secs --metrics sm__inst_executed.sum,smsp__inst_executed.avg.per_cycle_active \
            -k "regex:kern_gemm_wgmma_${ty}_w$v\$" --launch-skip $skip \
            --launch-count 2 -o "$out/gemm-$tag" -f "$PWD/$bench" --only gemm --iters 1 --gemm-tile w$v --no-cublas
        if [ -f "$out/gemm-$tag.ncu-rep" ]; then
            echo "==== $tag" >>"$out/ncu-details.txt"
            "$ncu" --import "$out/gemm-$tag.ncu-rep" --page details >>"$out/ncu-details.txt" 2>&1
            "$ncu" --import "$out/gemm-$tag.ncu-rep" --page raw --csv --metrics "$mets" >>"$out/ncu-wgmma.csv" 2>&1
            rm -f "$out/gemm-$tag.ncu-rep"
        fi
    done
    # per launch: kernel, grid, us, instructions per warp, issue %, tensor pipe % (gmma and
    # hmma), the largest stall reasons, shared-memory bank conflicts per wavefront (ld / st)
    python3 - "$out/ncu-wgmma.csv" >>"$summary" 2>&1 <<'PYEOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
hdr = units = None
print("\n== ncu, wgmma (warm-up, timed): w0 q4_0 and q8_0 at the LM head, w1 q4_0 at attn_q")
def num(s):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return float("nan")
for r in rows:
    if r and r[0] == "ID":
        hdr, units = r, None
        continue
    if hdr and units is None and len(r) == len(hdr) and not r[0]:
        units = dict(zip(hdr, r))
        continue
    if not hdr or len(r) != len(hdr) or not r[0].isdigit():
        continue
    d = dict(zip(hdr, r))
    f = lambda k: num(d.get(k, "nan"))
    warps = f("launch__grid_size") * f("launch__block_size") / 32
    stalls = sorted(((f("smsp__average_warps_issue_stalled_%s_per_issue_active.ratio" % s), s) for s in
                     ("barrier", "long_scoreboard", "short_scoreboard", "wait", "math_pipe_throttle", "mio_throttle",
                      "lg_throttle", "not_selected", "dispatch_stall", "no_instruction", "membar", "branch_resolving",
                      "sleeping")), reverse=True)
    stalls = [x for x in stalls if x[0] == x[0]][:5]  # (nan: not collected)
    ldc = f("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum") / max(1, f("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"))
    stc = f("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum") / max(1, f("l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"))
    print("  %-26s grid %5.0f regs %3.0f %9.1f %-3s inst/warp %7.0f issue %4.1f%% tensor %4.1f%% stalls %s; bank conflicts/wavefront ld %.2f st %.2f; dram rd %.0f MB"
          % (d.get("Kernel Name", "?"), f("launch__grid_size"), f("launch__registers_per_thread"),
             f("gpu__time_duration.sum"), (units or {}).get("gpu__time_duration.sum", ""),
             f("sm__inst_executed.sum") / max(1, warps), f("smsp__issue_active.avg.pct_of_peak_sustained_active"),
             f("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"),
             " ".join("%s %.2f" % (s, v) for v, s in stalls), ldc, stc, f("dram__bytes_read.sum")))
PYEOF
fi

grep -q UNEXPECTED "$summary" && echo "some steps exited unexpectedly" | tee -a "$summary"
echo "total $(( $(date +%s) - t_start )) s" >>"$summary"
cat "$summary"
exit 0

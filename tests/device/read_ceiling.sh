#!/usr/bin/env bash
# The memory read ceiling (`probe --bench`) with and without software prefetch in its read
# loop, against the M = 1 GEMV's own streaming rate, in one call (<= 240 s on 16 CPUs):
#  1. ROUNDS (2) rounds of `amxdiag probe --only cpu --bench --json` for each prefetch
#     distance in PF_LIST ("0 1024 2048 4096 8192"; AMXDIAG_BENCH_READ_PF, 0 = the plain
#     loop only), with a MIB (4096) MiB read buffer (AMXDIAG_BENCH_MEM_MIB: well above 4x
#     the device's 300 MiB L3), the order rotating per round; the default distance last, so
#     that the cached ceilings the bench divides by are the default's;
#  2. `bench kernels --impl avx512 --type q4_0,q8_0 --m 1 --weights-mib 3072` (the goal's
#     batched GEMV figure against that ceiling).
# Output: $OUT/summary.txt (per distance: read GB/s all threads / one core, median and
# values; the GEMV's GB/s and fractions), the JSON of every call.
#   usage: OUT=DIR tests/device/read_ceiling.sh BUILD_DIR
set -u
build=${1:?usage: OUT=DIR tests/device/read_ceiling.sh BUILD_DIR}
out=${OUT:-./read-ceiling-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
rounds=${ROUNDS:-2}
mib=${MIB:-4096}
pfs=(${PF_LIST:-0 1024 2048 4096 8192})
export XDG_CACHE_HOME=$(mktemp -d /tmp/amxdiag-readceil-XXXX)
summary="$out/summary.txt"
: >"$summary"
. "$(dirname "$0")/lib.sh"
lscpu | grep -E "Model name|^CPU\(s\)|L3|NUMA" >>"$summary"
for r in $(seq "$rounds"); do
    n=${#pfs[@]}
    for i in $(seq 0 $((n - 1))); do
        pf=${pfs[$(( (i + r) % n ))]}
        step_want "probe-pf$pf-$r" 0 60 sh -c "AMXDIAG_BENCH_READ_PF=$pf AMXDIAG_BENCH_MEM_MIB=$mib '$amx' probe \
            --only cpu --bench --json >'$out/probe-pf$pf-$r.json'"
    done
done
step_want probe-default 0 60 sh -c "AMXDIAG_BENCH_MEM_MIB=$mib '$amx' probe --only cpu --bench --json \
    >'$out/probe-default.json'"
step_want gemv-m1 0 90 "$amx" bench kernels --impl avx512 --type q4_0,q8_0 --m 1 --min-time 0.1 --weights-mib 3072 \
    --json -o "$out/gemv-m1.json"
python3 - "$out" >>"$summary" 2>&1 <<'PY'
import glob, json, os, re, statistics as st, sys
out = sys.argv[1]
def mem(path):
    try:
        d = json.load(open(path))
    except Exception as e:
        return None, str(e)
    def find(o):
        if isinstance(o, dict):
            if "read_gbs" in o and "read_core_gbs" in o:
                return o
            for v in o.values():
                r = find(v)
                if r:
                    return r
        if isinstance(o, list):
            for v in o:
                r = find(v)
                if r:
                    return r
        return None
    return find(d), None
by = {}
for f in sorted(glob.glob(os.path.join(out, "probe-pf*.json"))):
    pf = int(re.search(r"probe-pf(\d+)-", f).group(1))
    m, err = mem(f)
    if m:
        by.setdefault(pf, []).append(m)
print("read ceiling per prefetch distance: all threads GB/s (plain loop / prefetching loop), one core GB/s")
for pf in sorted(by):
    v = by[pf]
    allv = [x.get("read_pf_gbs") or x.get("read_plain_gbs") or x["read_gbs"] for x in v] if pf else [x["read_plain_gbs"] or x["read_gbs"] for x in v]
    print("  pf %5d: all %6.1f %s, one core %5.1f %s" % (pf, st.median(allv), [round(a, 1) for a in allv],
          st.median(x["read_core_gbs"] for x in v), [round(x["read_core_gbs"], 1) for x in v]))
m, err = mem(os.path.join(out, "probe-default.json"))
print("default:", m if m else err)
try:
    d = json.load(open(os.path.join(out, "gemv-m1.json")))
    print("gemv M = 1 (avx512, 16 threads), ceilings:", {k: round(v, 1) for k, v in d["ceilings"].items() if isinstance(v, (int, float)) and "read" in k})
    for r in d["rows"]:
        if r.get("m") == 1:
            print("  %-12s %-5s per %6.1f GB/s (%3.0f %%)  batched %6.1f GB/s (%3.0f %%)" % (r["shape"], r["type"], r["gbs"],
                  100 * (r.get("fraction_of_read_bw") or 0), r.get("batched_gbs") or 0, 100 * (r.get("batched_fraction_of_read_bw") or 0)))
except Exception as e:
    print("gemv-m1.json:", e)
PY
rm -rf "$XDG_CACHE_HOME"
cat "$summary"

#!/usr/bin/env bash
# amxdiag probe, CPU side: live run on this machine (exit code consistent with the verdicts),
# JSON schema, --only, every shipped snapshot's exit code, save/replay, bad snapshots,
# option conflicts, and a shortened --bench that writes the ceilings cache.
set -u
. "$(dirname "$0")/lib/adg.sh"
SNAP="$FIXTURES/snapshots"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"

# Live: exit 1 exactly when a check failed, 0 otherwise.
"$AMXDIAG" probe --only cpu,amx,numa,pmu --json >"$TEST_TMP/live.json" 2>"$TEST_TMP/live.err"
rc=$?
python3 - "$TEST_TMP/live.json" "$rc" <<'PY' || fail "live --json output inconsistent"
import json, sys
d = json.load(open(sys.argv[1])); rc = int(sys.argv[2])
assert d["schema"] == "amxdiag.probe/1", d["schema"]
ids = [c["id"] for c in d["checks"]]
for want in ("cpu.identity", "cpu.selftest", "amx.cpuid", "amx.xcr0", "amx.kernel", "amx.permission",
             "amx.palette", "amx.selftest", "numa.topology", "numa.binding", "pmu.paranoid", "pmu.hardware",
             "pmu.software", "pmu.libpfm", "pmu.model"):
    assert want in ids, want
assert {c["section"] for c in d["checks"]} <= {"cpu", "amx", "numa", "pmu"}
fails = sum(c["status"] == "fail" for c in d["checks"])
assert d["summary"]["fail"] == fails
assert rc == (1 if fails else 0), (rc, fails)
for c in d["checks"]:
    assert c["status"] in ("pass", "info", "warn", "fail", "skip")
    assert c["evidence"] and c["explanation"], c["id"]
    if c["status"] == "fail":
        assert c["remedy"], c["id"] + " fails without a remedy"
isa = d["facts"]["cpu"]["isa"]
st = {c["id"]: c["status"] for c in d["checks"]}
if "amx_tile" not in isa:
    # This machine has no AMX: the CPU layer says so, the rest skips, the exit code is 1.
    assert st["amx.cpuid"] == "fail" and st["amx.selftest"] == "skip" and rc == 1
else:
    assert st["amx.selftest"] in ("pass", "fail")
if "avx512_vnni" in isa and st["cpu.xsave"] == "pass":
    assert st["cpu.selftest"] == "pass", st["cpu.selftest"]
PY

# Human output: grouped sections, summary line, no colour when not a terminal.
expect_out "^AMX$" "$AMXDIAG" probe --only amx
expect_out "^summary: [0-9]+ pass" "$AMXDIAG" probe --only cpu
"$AMXDIAG" probe --only cpu >"$TEST_TMP/plain" 2>&1
grep -q $'\033' "$TEST_TMP/plain" && fail "colour escape codes in non-terminal output"
expect_out $'\033\\[' "$AMXDIAG" probe --only cpu --color always

# Every shipped snapshot: exit codes as documented.
for f in "$SNAP"/*.json; do
    case "$(basename "$f")" in
        emr-kvm-h100.json|spr-baremetal-pmu.json|spr-numactl-bound.json) want=0 ;;
        *) want=1 ;;
    esac
    expect_rc "$want" "$AMXDIAG" probe --snapshot "$f" --only cpu,amx,numa,pmu
done
expect_out "palette 1: 8 tiles x 1024 bytes \(16 rows x 64 bytes\)" "$AMXDIAG" probe --snapshot "$SNAP/emr-kvm-h100.json" --only amx
expect_out "not run from a snapshot" "$AMXDIAG" probe --snapshot "$SNAP/emr-kvm-h100.json" --only amx -v
# A snapshot never runs the GPU section of the machine it is replayed on.
"$AMXDIAG" probe --snapshot "$SNAP/emr-kvm-h100.json" --json >"$TEST_TMP/snap.json"
python3 -c "
import json,sys; d=json.load(open('$TEST_TMP/snap.json'))
assert not [c for c in d['checks'] if c['section']=='gpu'], 'gpu checks from a snapshot'
assert d['facts']['probe']['source'].startswith('snapshot ')" || fail "snapshot replay ran live sections"

# Save, then replay: same verdicts for every check that does not execute code.
expect_rc 0 test ! -e "$TEST_TMP/me.json"
"$AMXDIAG" probe --only cpu --save-snapshot "$TEST_TMP/me.json" >/dev/null 2>&1
[ -s "$TEST_TMP/me.json" ] || fail "--save-snapshot wrote nothing"
"$AMXDIAG" probe --only cpu,amx,numa,pmu --json >"$TEST_TMP/a.json" 2>/dev/null
"$AMXDIAG" probe --snapshot "$TEST_TMP/me.json" --only cpu,amx,numa,pmu --json >"$TEST_TMP/b.json" 2>/dev/null
python3 - "$TEST_TMP/a.json" "$TEST_TMP/b.json" <<'PY' || fail "replayed verdicts differ from live ones"
import json, sys
a = {c["id"]: c for c in json.load(open(sys.argv[1]))["checks"]}
b = {c["id"]: c for c in json.load(open(sys.argv[2]))["checks"]}
assert a.keys() == b.keys(), set(a) ^ set(b)
for k in a:
    if k in ("cpu.selftest", "amx.selftest", "amx.usable"):
        continue
    assert a[k]["status"] == b[k]["status"], (k, a[k]["status"], b[k]["status"])
PY

# Bad snapshots: exit 2, a message naming the problem, and a hint.
printf '{"schema": "amxdiag.snapshot/1", "cpuid": {' >"$TEST_TMP/trunc.json"
expect_rc 2 "$AMXDIAG" probe --snapshot "$TEST_TMP/trunc.json"
expect_err "not valid JSON: line 1" "$AMXDIAG" probe --snapshot "$TEST_TMP/trunc.json"
printf '{"schema": "amxdiag.record/1"}' >"$TEST_TMP/foreign.json"
expect_rc 2 "$AMXDIAG" probe --snapshot "$TEST_TMP/foreign.json"
expect_err "expected \"amxdiag.snapshot/1\"" "$AMXDIAG" probe --snapshot "$TEST_TMP/foreign.json"
expect_err "hint:" "$AMXDIAG" probe --snapshot "$TEST_TMP/foreign.json"
head -c 300 /dev/urandom >"$TEST_TMP/random.json"
expect_rc 2 "$AMXDIAG" probe --snapshot "$TEST_TMP/random.json"
expect_rc 2 "$AMXDIAG" probe --snapshot "$TEST_TMP/does-not-exist.json"
expect_err "No such file" "$AMXDIAG" probe --snapshot "$TEST_TMP/does-not-exist.json"
# Saving to an unwritable place fails cleanly and leaves nothing behind.
expect_rc 2 "$AMXDIAG" probe --only cpu --save-snapshot "$TEST_TMP/no/such/dir/s.json"
# Conflicting options.
expect_rc 2 "$AMXDIAG" probe --snapshot "$SNAP/emr-kvm-h100.json" --save-snapshot "$TEST_TMP/x.json"
expect_rc 2 "$AMXDIAG" probe --snapshot "$SNAP/emr-kvm-h100.json" --bench

# --bench, shortened: rates, memory bandwidth, and the cache file.
export XDG_CACHE_HOME="$TEST_TMP/cache" AMXDIAG_BENCH_SECONDS=0.01 AMXDIAG_BENCH_MEM_MIB=32
"$AMXDIAG" probe --only cpu --bench --json >"$TEST_TMP/bench.json" 2>"$TEST_TMP/bench.err"
python3 - "$TEST_TMP/bench.json" <<'PY' || fail "--bench output: $(head -c 400 "$TEST_TMP/bench.err")"
import json, sys
d = json.load(open(sys.argv[1]))
st = {c["id"]: c for c in d["checks"]}
assert st["bench.clock"]["status"] == "info"
assert st["bench.memory.node0"]["status"] in ("info", "warn"), st.get("bench.memory.node0")
assert d["facts"]["bench"]["memory"][0]["read_gbs"] > 0
assert st["bench.cache"]["status"] == "info", st["bench.cache"]
PY
ls "$XDG_CACHE_HOME"/amxdiag/ceilings-*cpu.json >/dev/null 2>&1 || fail "no ceilings cache file written"

# A disturbed clock (a fifth of the measured one, as when the host takes the vCPU away while
# the multiply chain runs): where a compute loop ran, it would beat its theoretical peak, so
# the clock is dropped with a note (WARN, a remedy, no fraction of peak), in the cache too,
# and bench kernels says where its clock then comes from.
AMXDIAG_BENCH_CLOCK_SCALE=0.2 "$AMXDIAG" probe --only cpu --bench --json >"$TEST_TMP/bench2.json" 2>"$TEST_TMP/bench2.err"
python3 - "$TEST_TMP/bench2.json" "$XDG_CACHE_HOME"/amxdiag/ceilings-*cpu.json <<'PY' || fail "--bench, disturbed clock: $(head -c 400 "$TEST_TMP/bench2.err")"
import json, sys
d = json.load(open(sys.argv[1]))
st = {c["id"]: c for c in d["checks"]}
b = d["facts"]["bench"]
ran = [k for k in ("amx_int8_core", "vnni_core") if b[k]["ops_per_s"] > 0]
if ran:   # something to compare the clock with
    ck = st["bench.clock"]
    assert ck["status"] == "warn" and "theoretical" in ck["evidence"] and ck.get("remedy"), ck
    assert b["clock_ghz"] == 0, b["clock_ghz"]
    assert all(b[k]["per_cycle_per_core"] == 0 for k in ran), b
    assert "%" not in st["bench.vnni"]["evidence"] or b["vnni_core"]["ops_per_s"] == 0, st["bench.vnni"]
    cache = json.load(open(sys.argv[2]))
    assert cache["clock_ghz"] == 0 and "theoretical" in cache["clock_note"], cache
else:
    print("SKIP: no compute loop ran here; the clock cannot be checked against a peak")
PY
if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["clock_ghz"] == 0 else 1)' \
       "$XDG_CACHE_HOME"/amxdiag/ceilings-*cpu.json 2>/dev/null; then
    expect_out "probe --bench's clock was rejected" "$AMXDIAG" bench kernels --impl ref --shape router --type q8_0 \
        --m 1 --threads 1 --min-time 0.001 --weights-mib 0 --mem-gbs 10
fi
finish

#!/usr/bin/env bash
# amxdiag probe --format prometheus / --textfile: the exposition passes promtool's checks,
# every check's status number matches --json, a snapshot replay renders without this
# machine's ceilings, cached ceilings appear after --bench, the textfile is written
# atomically into the directory (and nothing else is), bad options and directories exit 2.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to compare with the JSON output"
PROMTOOL=$(command -v promtool || true)
[ -n "$PROMTOOL" ] || echo "note: promtool not found (Debian package prometheus): exposition not linted"
export XDG_CACHE_HOME="$TEST_TMP/cache"   # no ceilings cached unless this test makes some

lint() { # FILE: promtool check metrics (exit 0 = valid and lint-clean)
    [ -n "$PROMTOOL" ] || return 0
    "$PROMTOOL" check metrics <"$1" >"$TEST_TMP/lint" 2>&1 || fail "promtool check metrics $1: $(head -c 600 "$TEST_TMP/lint")"
}

# The bus rendering that tests/unit/test_prom_bus.c compares against is valid too.
lint "$FIXTURES/prometheus/bus-record.prom"

# Live: statuses as numbers, the same as --json's (0 pass, 1 info, 2 warn, 3 fail, 4 skip).
"$AMXDIAG" probe --only cpu,amx,numa,pmu --format prometheus >"$TEST_TMP/live.prom" 2>"$TEST_TMP/live.err"
rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || fail "probe --format prometheus exited $rc: $(head -c 400 "$TEST_TMP/live.err")"
lint "$TEST_TMP/live.prom"
"$AMXDIAG" probe --only cpu,amx,numa,pmu --json >"$TEST_TMP/live.json" 2>/dev/null
python3 - "$TEST_TMP/live.prom" "$TEST_TMP/live.json" "$rc" <<'PY' || fail "prometheus output disagrees with --json"
import json, re, sys
prom = open(sys.argv[1]).read(); d = json.load(open(sys.argv[2])); rc = int(sys.argv[3])
num = {"pass": 0, "info": 1, "warn": 2, "fail": 3, "skip": 4}
got = {}
for m in re.finditer(r'^amxdiag_probe_check_status\{section="([^"]*)",check="([^"]*)"\} (\d+)$', prom, re.M):
    got[m.group(2)] = (m.group(1), int(m.group(3)))
want = {}
for c in d["checks"]:
    s = num[c["status"]]
    if c["id"] in want:
        rank = {0: 0, 1: 1, 4: 2, 2: 3, 3: 4}  # a repeated id keeps its worst status
        s = max(want[c["id"]][1], s, key=rank.get)
    want[c["id"]] = (c["section"], s)
assert set(got) == set(want), (set(got) ^ set(want))
for k, v in want.items():
    assert got[k][0] == v[0], k
    # the timing-dependent checks may change between the two runs; the rest must agree
    if not k.startswith(("cpu.selftest", "amx.selftest")):
        assert got[k][1] == v[1], (k, got[k], v)
for s in num:
    m = re.search(r'^amxdiag_probe_checks\{status="%s"\} (\d+)$' % s, prom, re.M)
    assert m and int(m.group(1)) == d["summary"][s], s
assert (rc == 1) == (d["summary"]["fail"] > 0)
for fam in ("amxdiag_build_info", "amxdiag_probe_cpu_info", "amxdiag_probe_duration_seconds",
            "amxdiag_probe_last_run_timestamp_seconds"):
    assert re.search(r"^# TYPE %s gauge$" % fam, prom, re.M), fam
assert "amxdiag_ceiling_" not in prom, "no ceilings are cached in this test's cache directory"
PY

# A snapshot of the AMX + H100 machine: its checks, none of this machine's ceilings.
SNAP="$FIXTURES/snapshots/emr-kvm-h100.json"
if [ -f "$SNAP" ]; then
    "$AMXDIAG" probe --snapshot "$SNAP" --format prometheus >"$TEST_TMP/snap.prom" 2>"$TEST_TMP/snap.err"
    lint "$TEST_TMP/snap.prom"
    grep -q '^amxdiag_probe_check_status{section="amx",check="amx.xcr0"} 0$' "$TEST_TMP/snap.prom" ||
        fail "snapshot: amx.xcr0 should pass (0)"
    grep -q '^amxdiag_probe_cpu_info{.*family_model="6/207"' "$TEST_TMP/snap.prom" ||
        fail "snapshot: cpu_info should name family 6 model 207"
fi

# --textfile: one line on stdout, the file in the directory, promtool-clean, nothing else there.
mkdir -p "$TEST_TMP/textfile"
"$AMXDIAG" probe --only cpu,amx --textfile "$TEST_TMP/textfile" >"$TEST_TMP/tf.out" 2>"$TEST_TMP/tf.err"
rc=$?
[ "$rc" -le 1 ] || fail "--textfile exited $rc: $(cat "$TEST_TMP/tf.err")"
grep -Eq "^wrote .*/amxdiag_probe\.prom: [0-9]+ checks, [0-9]+ failed$" "$TEST_TMP/tf.out" ||
    fail "--textfile stdout: $(cat "$TEST_TMP/tf.out")"
[ -f "$TEST_TMP/textfile/amxdiag_probe.prom" ] || fail "no amxdiag_probe.prom written"
lint "$TEST_TMP/textfile/amxdiag_probe.prom"
[ "$(ls -A "$TEST_TMP/textfile" | wc -l)" -eq 1 ] || fail "textfile directory holds more than the .prom: $(ls -A "$TEST_TMP/textfile")"
# With --format given too, stdout carries that format and the file is still written.
"$AMXDIAG" probe --only cpu --textfile "$TEST_TMP/textfile" --format json >"$TEST_TMP/tf2.out" 2>/dev/null
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["schema"] == "amxdiag.probe/1"' "$TEST_TMP/tf2.out" ||
    fail "--textfile --format json: stdout is not the JSON report"
grep -q 'check="cpu.identity"' "$TEST_TMP/textfile/amxdiag_probe.prom" || fail "textfile not rewritten"
grep -q 'check="amx.cpuid"' "$TEST_TMP/textfile/amxdiag_probe.prom" && fail "textfile kept old content (--only cpu)"

# Bad directory / option: exit 2, a message, nothing written; the probe does not even run.
expect_rc 2 "$AMXDIAG" probe --textfile "$TEST_TMP/missing-dir"
grep -q "hint:" "$TEST_TMP/err" || fail "missing textfile dir: no hint: $(cat "$TEST_TMP/err")"
[ -e "$TEST_TMP/missing-dir" ] && fail "a missing --textfile directory was created"
expect_rc 2 "$AMXDIAG" probe --textfile "$TEST_TMP/textfile/amxdiag_probe.prom"
expect_rc 2 "$AMXDIAG" probe --format xml
expect_out "--format FMT" "$AMXDIAG" probe --help
expect_out "--textfile DIR" "$AMXDIAG" probe --help

# Ceilings: a shortened --bench caches them; the next exposition carries them.
AMXDIAG_BENCH_SECONDS=0.05 AMXDIAG_BENCH_MEM_MIB=16 "$AMXDIAG" probe --only cpu --bench >/dev/null 2>&1
"$AMXDIAG" probe --only cpu --format prometheus >"$TEST_TMP/ceil.prom" 2>/dev/null
lint "$TEST_TMP/ceil.prom"
grep -Eq '^amxdiag_ceiling_memory_read_bytes_per_second\{node="[0-9]+",cores="all"\} [0-9.e+]+$' "$TEST_TMP/ceil.prom" ||
    fail "no memory ceiling after --bench: $(grep ceiling "$TEST_TMP/ceil.prom" | head -5)"
grep -q '^amxdiag_ceiling_measured_timestamp_seconds ' "$TEST_TMP/ceil.prom" || fail "no ceilings timestamp"
if grep -q 'avx512_vnni' /proc/cpuinfo; then
    grep -q '^amxdiag_ceiling_ops_per_second{op="vnni",cores="one"} ' "$TEST_TMP/ceil.prom" || fail "no VNNI ceiling"
fi
finish

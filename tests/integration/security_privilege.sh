#!/usr/bin/env bash
# amxdiag runs unprivileged where it can.  As an ordinary user (root drops to 'nobody'
# with setpriv for this test): the probe runs and names the checks that need privileges
# (perf_event_paranoid, CAP_PERFMON, ...) with their remedy, a profile of the user's own
# command works and lists what it could not measure with the reason, and attaching to
# another user's process says "permission" instead of failing obscurely.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"

if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null || skip "running as root without setpriv: cannot drop to an unprivileged user"
    id nobody >/dev/null 2>&1 || skip "no user 'nobody' to drop to"
    AS=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --inh-caps=-all)
    # nobody must reach the binary and the directories it writes
    "${AS[@]}" test -x "$AMXDIAG" || skip "user nobody cannot execute $AMXDIAG (a parent directory is not searchable)"
    W="$TEST_TMP/nobody"
    mkdir -p "$W" && chmod 0777 "$W" && chmod 0755 "$TEST_TMP"
    OTHER_PID=1
else
    AS=()
    W="$TEST_TMP/user"
    mkdir -p "$W"
    OTHER_PID=1
fi
UID_RUN=$("${AS[@]}" id -u)
[ "$UID_RUN" -ne 0 ] || skip "could not become an unprivileged user"
cd "$W" || exit 1

# --- probe: runs, exit 0 (all fine) or 1 (a check failed), never 2; says who it ran as
# and what would need privileges
"${AS[@]}" "$AMXDIAG" probe --json >"$W/probe.json" 2>"$W/probe.err"
rc=$?
[ "$rc" -le 1 ] || fail "probe as uid $UID_RUN: exit $rc: $(head -c 400 "$W/probe.err")"
python3 - "$W/probe.json" "$UID_RUN" <<'PY' || fail "probe as an unprivileged user: privileged checks not explained"
import json, sys
d = json.load(open(sys.argv[1])); uid = sys.argv[2]
checks = {c["id"]: c for c in d["checks"]}
p = checks.get("pmu.paranoid")
assert p, "no pmu.paranoid check"
text = json.dumps(p)
assert "euid " + uid in text, "pmu.paranoid does not say which user it ran as: " + text
paranoid = int(open("/proc/sys/kernel/perf_event_paranoid").read())
if paranoid >= 1:
    assert "CAP_PERFMON" in text or "perf_event_paranoid" in text, "no remedy naming the privilege: " + text
# every skipped or failed check says why
for c in d["checks"]:
    if c["status"] in ("skip", "fail", "warn"):
        assert any(c.get(k) for k in ("why", "fix", "evidence", "remedy")), "no reason: " + json.dumps(c)
PY
"${AS[@]}" "$AMXDIAG" probe >"$W/probe.txt" 2>&1
grep -q "paranoid" "$W/probe.txt" || fail "probe text output does not mention perf_event_paranoid"

# --- profile of the user's own command: works; what could not run is listed with reasons
"${AS[@]}" "$AMXDIAG" profile -q -o "$W/run.json" -- sleep 0.3 >/dev/null 2>"$W/prof.err"
rc=$?
[ "$rc" -eq 0 ] || fail "profile as uid $UID_RUN: exit $rc: $(head -c 400 "$W/prof.err")"
python3 - "$W/run.json" <<'PY' || fail "profile as an unprivileged user: record incomplete"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "complete", r["status"]
for u in r["unavailable"]:
    assert u.get("reason"), "no reason for " + json.dumps(u)
PY

# --- attaching to another user's process: a clear permission message, no crash
if [ "$(id -u)" -eq 0 ]; then
    "${AS[@]}" "$AMXDIAG" profile -q --pid "$OTHER_PID" --duration 0.5 -o "$W/other.json" >/dev/null 2>"$W/other.err"
    rc=$?
    [ "$rc" -le 2 ] || fail "profile --pid $OTHER_PID as uid $UID_RUN: exit $rc (crash?)"
    if ! grep -qiE 'permission|not permitted|privilege' "$W/other.err" "$W/other.json" 2>/dev/null; then
        fail "profile --pid of another user's process does not say it lacks permission: $(head -c 400 "$W/other.err")"
    fi
fi
finish

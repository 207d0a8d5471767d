#!/usr/bin/env bash
# The profiled command dies (SIGSEGV, SIGILL, SIGABRT, SIGBUS, SIGKILL from outside) or
# amxdiag itself is stopped (SIGINT, SIGTERM) during `profile` and `top`: the exit status
# is passed through as documented (128 + signal), the run record is written and says
# what happened (workload-crashed with the signal, or interrupted), no temporary is left,
# no process of the workload outlives amxdiag, and top gives the terminal back.
set -u
. "$(dirname "$0")/lib/adg.sh"
"$AMXDIAG" profile --help >/dev/null 2>&1 || skip "amxdiag profile is not in this build"
command -v python3 >/dev/null || skip "python3 is needed to read the records"
SPIN="$BUILD_DIR/tests/prof_spin"
[ -x "$SPIN" ] || skip "test workload $SPIN not built"

D="$TEST_TMP/runs"
mkdir -p "$D"
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1" 2>&1; }
no_temporaries() {
    local left
    left=$(ls -A "$D" | grep -Ev '\.json(\.log)?$')
    [ -z "$left" ] || fail "$1: temporaries left in the output directory: $left"
}

# crash NAME WANT_RC SIGNAME CMD...
crash() {
    local name=$1 want=$2 sig=$3; shift 3
    local r="$D/$name.json"
    "$AMXDIAG" profile -q -o "$r" -- "$@" >/dev/null 2>"$TEST_TMP/err"
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "$name: exit $rc, expected $want: $(head -c 300 "$TEST_TMP/err")"
    [ -s "$r" ] || { fail "$name: no record"; return; }
    [ "$(field "$r" 'r["status"]')" = workload-crashed ] || fail "$name: status $(field "$r" 'r["status"]')"
    [ "$(field "$r" 'r["workload"]["signal_name"]')" = "$sig" ] || fail "$name: signal $(field "$r" 'r["workload"].get("signal_name")')"
    no_temporaries "$name"
}
crash segv 139 SIGSEGV "$SPIN" segv
crash ill 132 SIGILL "$SPIN" ill
crash abrt 134 SIGABRT sh -c 'kill -ABRT $$'
crash bus 135 SIGBUS sh -c 'kill -BUS $$'

# exit codes pass through, including the highest
for code in 1 3 255; do
    "$AMXDIAG" profile -q -o "$D/exit$code.json" -- sh -c "exit $code" >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq "$code" ] || fail "exit $code: amxdiag exited $rc"
    [ "$(field "$D/exit$code.json" 'r["status"]')" = workload-failed ] || fail "exit $code: status not workload-failed"
done

# wait_child PID: the first child of PID (the workload), within 5 s
wait_child() {
    local c=""
    for _ in $(seq 50); do
        c=$(pgrep -P "$1" 2>/dev/null | head -1)
        [ -n "$c" ] && break
        sleep 0.1
    done
    echo "$c"
}

# SIGKILL to the workload from outside
"$AMXDIAG" profile -q -o "$D/killed.json" -- "$SPIN" sleep 20 >/dev/null 2>&1 &
prof=$!
child=$(wait_child "$prof")
sleep 0.3
[ -n "$child" ] && kill -KILL "$child"
wait "$prof"
rc=$?
[ "$rc" -eq 137 ] || fail "SIGKILLed workload: exit $rc, expected 137"
[ "$(field "$D/killed.json" 'r["workload"]["signal_name"]')" = SIGKILL ] || fail "SIGKILLed workload: signal not recorded"

# SIGINT / SIGTERM to amxdiag profile: interrupted record, exit 130 / 143, workload gone
for s in INT TERM; do
    r="$D/sig$s.json"
    "$AMXDIAG" profile -q -o "$r" -- "$SPIN" sleep 30 >/dev/null 2>&1 &
    prof=$!
    child=$(wait_child "$prof")
    sleep 0.5
    kill -"$s" "$prof"
    wait "$prof"
    rc=$?
    want=130
    [ "$s" = TERM ] && want=143
    [ "$rc" -eq "$want" ] || fail "SIG$s to profile: exit $rc, expected $want"
    [ "$(field "$r" 'r["status"]')" = interrupted ] || fail "SIG$s to profile: status $(field "$r" 'r["status"]')"
    [ "$(field "$r" 'r["workload"]["interrupted_by"]')" = "SIG$s" ] || fail "SIG$s to profile: interrupted_by not recorded"
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        fail "SIG$s to profile: the workload (pid $child) outlived amxdiag"
        kill -KILL "$child" 2>/dev/null
    fi
    no_temporaries "SIG$s"
done

# SIGINT / SIGTERM to amxdiag top (in tmux): interrupted record, terminal restored
if command -v tmux >/dev/null && "$AMXDIAG" top --help >/dev/null 2>&1; then
    SOCK="adgfault$$"
    T() { tmux -L "$SOCK" "$@"; }
    trap 'T kill-server 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
    T new-session -d -s keep "sleep 120"
    for s in INT TERM; do
        rm -f "$TEST_TMP/pid" "$TEST_TMP/exit" "$TEST_TMP/stty"
        T new-session -d -s "top$s" -x 80 -y 24 \
            "cd '$D' && sh -c 'echo \$\$ >\"$TEST_TMP/pid\"; exec env LANG=C.UTF-8 \"$AMXDIAG\" top -o top$s.json -- \"$SPIN\" sleep 30'; rc=\$?; stty -a >'$TEST_TMP/stty'; echo \$rc >'$TEST_TMP/exit'; sleep 30"
        for _ in $(seq 50); do [ -s "$TEST_TMP/pid" ] && break; sleep 0.1; done
        # signal only once the screen is up (the handlers are installed by then)
        for _ in $(seq 100); do T capture-pane -p -t "top$s" | grep -q 'live:' && break; sleep 0.1; done
        sleep 0.5
        kill -"$s" "$(cat "$TEST_TMP/pid")"
        for _ in $(seq 80); do [ -s "$TEST_TMP/stty" ] && break; sleep 0.1; done
        want=130
        [ "$s" = TERM ] && want=143
        [ "$(cat "$TEST_TMP/exit" 2>/dev/null)" = "$want" ] || fail "SIG$s to top: exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected $want"
        [ "$(field "$D/top$s.json" 'r["status"]')" = interrupted ] || fail "SIG$s to top: record status $(field "$D/top$s.json" 'r["status"]')"
        grep -q ' icanon' "$TEST_TMP/stty" && grep -q ' echo ' "$TEST_TMP/stty" || fail "SIG$s to top: terminal not restored: $(head -c 300 "$TEST_TMP/stty")"
        T kill-session -t "top$s" 2>/dev/null
    done
    no_temporaries top
else
    echo "note: tmux or amxdiag top missing: the top cases are not run"
fi
finish

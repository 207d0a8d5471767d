# amxdiag top on a live run (the profiler's session, the same collectors and record as
# amxdiag profile): --json without a screen, and the screen in tmux — the workload's
# output goes to the log instead of the screen, its exit status passes through, q stops
# it and the record is written (status interrupted, exit 0), Ctrl-C exits 130.
. "$(dirname "$0")/lib/adg.sh"
cd "$TEST_TMP" || exit 1

# The workloads spin a little first, so that the sampler has something to attribute.
SPIN='i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'

"$AMXDIAG" top --json -o "$TEST_TMP/batch.json" -- sh -c "$SPIN" >"$TEST_TMP/view.json" 2>"$TEST_TMP/err" \
    || fail "live --json exited $?: $(head -c 600 "$TEST_TMP/err")"
python3 - "$TEST_TMP/view.json" "$TEST_TMP/batch.json" <<'EOF' || fail "live --json: view or record wrong"
import json, sys
v = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
assert v["schema"] == "amxdiag.top-snapshot/1" and v["live"] is True
assert r["schema"] == "amxdiag.run/1" and r["status"] == "complete", r["status"]
# Every metric the record has a sample for, and the panels show, has the record's last value.
last = {}
for s in r["series"]:
    if s["value"]:
        last[(s["metric"], s["instance"])] = s["value"][-1]
for x in v["values"]:
    k = (x["metric"], x["instance"])
    assert k in last, k
    assert abs(last[k] - x["value"]) <= 1e-9 * max(1, abs(x["value"])), (k, last[k], x["value"])
# Whatever could not run here is listed with a reason, and the screen says so.
assert all(u["reason"] for u in r["unavailable"])
EOF
# amxdiag profile --tui is amxdiag top (a --tui after the command's name is the command's).
"$AMXDIAG" profile --tui --json -o "$TEST_TMP/tui.json" -- sh -c "$SPIN" >"$TEST_TMP/tui-view.json" 2>"$TEST_TMP/err" \
    || fail "profile --tui --json exited $?: $(head -c 600 "$TEST_TMP/err")"
grep -q '"amxdiag.top-snapshot/1"' "$TEST_TMP/tui-view.json" || fail "profile --tui is not amxdiag top"
[ -s "$TEST_TMP/tui.json" ] || fail "profile --tui wrote no record"
expect_out '^--tui$' "$AMXDIAG" profile -q -o "$TEST_TMP/p.json" -- sh -c 'echo --tui'
# ... also after built-in path options that take a value (their values are skipped, not
# taken for the command's name)
expect_out 'amxdiag top --replay' "$AMXDIAG" profile -m x.gguf --n-prompt 3 --cpu-kernels ref --tui --help
expect_rc 2 "$AMXDIAG" top --json -o "$TEST_TMP/x.json" --replay x.json
expect_rc 2 "$AMXDIAG" top --json --pid 1 -- true
expect_rc 3 "$AMXDIAG" top --json -o "$TEST_TMP/three.json" -- sh -c "$SPIN; exit 3"

# The session options are profile's own parser (profiler/prof_options.c): new ones reach
# top. --sanitize reruns the command under (a stand-in) compute-sanitizer after the view and
# merges its report into the record; bad values are refused as profile refuses them.
expect_rc 2 "$AMXDIAG" top --json -e cpu,bogus -- true
grep -q "unknown event set 'bogus'" "$TEST_TMP/err" || fail "top -e: $(cat "$TEST_TMP/err")"
expect_rc 2 "$AMXDIAG" top --json --sanitize
grep -q -- "--sanitize reruns a command" "$TEST_TMP/err" || fail "top --sanitize without a command: $(cat "$TEST_TMP/err")"
expect_rc 2 "$AMXDIAG" top --replay x.json --sanitize
cat >"$TEST_TMP/compute-sanitizer" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do case "\$a" in --save=*) out=\${a#--save=} ;; esac; done
while [ \$# -gt 0 ] && [ "\${1#--}" != "\$1" ]; do shift; done
cp "$FIXTURES/sanitizer/memcheck_oob.xml" "\$out"
echo ran-under-sanitizer >&2
"\$@"
EOF
chmod +x "$TEST_TMP/compute-sanitizer"
COMPUTE_SANITIZER="$TEST_TMP/compute-sanitizer" "$AMXDIAG" top --json --sanitize --gpu-metrics -e sampling,cpu \
    -o "$TEST_TMP/san.json" -- sh -c "$SPIN" >"$TEST_TMP/san-view.json" 2>"$TEST_TMP/err"
rc=$?
[ "$rc" -eq 0 ] || fail "top --sanitize exited $rc: $(head -c 600 "$TEST_TMP/err")"
grep -q ran-under-sanitizer "$TEST_TMP/err" || fail "top --sanitize did not rerun the command"
[ -f "$TEST_TMP/san.sanitizer.xml" ] || fail "top --sanitize: no report next to the record"
python3 - "$TEST_TMP/san.json" "$TEST_TMP/san-view.json" <<'EOF' || fail "top --sanitize: record or view wrong"
import json, sys
r = json.load(open(sys.argv[1])); v = json.load(open(sys.argv[2]))
assert v["schema"] == "amxdiag.top-snapshot/1"
assert r["config"]["sets"] == ["sampling", "cpu"], r["config"]["sets"]
assert "crash" in r, sorted(r)
# the live view shows per-CPU load from the cpu collector
assert any(x["metric"] == "cpu.util" for x in v["values"]), v["values"]
EOF

command -v tmux >/dev/null || { echo "SKIP: tmux not installed (scripts/install-deps.sh installs it)"; finish; }
. "$(dirname "$0")/lib/tmux.sh"
tmux_setup adglive
start() {
    T kill-session -t top 2>/dev/null
    rm -f "$TEST_TMP/exit" "$TEST_TMP/stty"
    T new-session -d -s top -x 80 -y 24 \
        "cd '$TEST_TMP' && env LANG=C.UTF-8 '$AMXDIAG' top $*; rc=\$?; stty -a >'$TEST_TMP/stty'; echo \$rc >'$TEST_TMP/exit'; sleep 30"
}
status_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" "$1" 2>/dev/null; }

# The workload ends by itself: --exit-on-end leaves, its output went to the log, not the screen.
start -o run1.json --exit-on-end -- sh -c "'echo HELLO-\$((6*7)); $SPIN; sleep 1'"
wait_for 'live: sh -c' 5
wait_for 'ISA share|workload' 5
screen | grep -q HELLO-42 && fail "the workload's output reached the screen"
wait_exit 10 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected 0"
[ "$(status_of run1.json)" = complete ] || fail "run1.json status '$(status_of run1.json)', expected complete"
grep -q HELLO-42 run1.json.log || fail "the workload's output is not in run1.json.log"
grep -q ' icanon' "$TEST_TMP/stty" || fail "terminal not restored"

# Exit status passes through.
start -o run3.json --exit-on-end -- sh -c "'$SPIN; exit 3'"
wait_exit 10 && [ "$(cat "$TEST_TMP/exit")" = 3 ] || fail "exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected 3"
[ "$(status_of run3.json)" = workload-failed ] || fail "run3.json status '$(status_of run3.json)'"

# q stops a long workload; the record is written (interrupted) and top exits 0 at once.
start -o run2.json -- sh -c "'$SPIN; sleep 60'"
wait_for 'live: sh -c' 5
sleep 1
T send-keys -t top q
wait_exit 8 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "q: exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected 0"
[ "$(status_of run2.json)" = interrupted ] || fail "run2.json status '$(status_of run2.json)', expected interrupted"

# The workload finished but the screen stays (DONE) until q; the end is announced.
start -o run4.json -- sh -c "'$SPIN'"
wait_for 'workload ended \(complete, exit 0\); run record written to run4.json' 8
screen | grep -q '^DONE' || fail "header does not say DONE"
T send-keys -t top q
wait_exit 5 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "q after the end: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"

# Hot functions and per-CPU load while the workload still runs: the sampler refreshes its
# hot list on the bus about once a second, the cpu collector publishes cpu.util.
PROF_SPIN="$BUILD_DIR/tests/prof_spin"
if [ -x "$PROF_SPIN" ]; then
    start -o run7.json -e sampling,cpu -- "$PROF_SPIN" scalar 6
    wait_for 'live: .*prof_spin' 5
    if wait_for 'spin_scalar' 4; then
        screen | grep -q '^DONE' && fail "live hot functions: the run had already ended"
    fi
    wait_for 'cpu0 .*[0-9]+%' 3   # live per-CPU bars
    T send-keys -t top q
    wait_exit 8 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "live hot: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
else
    echo "SKIP (part): $PROF_SPIN not built; live hot functions not checked"
fi

# The built-in path (amxdiag's own engine, in process): engine tokens/s and phase on the
# header, hot functions once it ends.  A 256-token prompt: with 32 the whole run took
# about a dozen samples, most of them in loading (repack_worker) and the pool's wait, and
# the kernels sometimes fell below the panel's five rows (CI, 2026-11-26).
start -o run6.json -n 16 --n-prompt 256 -r 2
wait_for 'live: built-in path' 5
wait_for 'workload ended \(complete, exit 0\)' 60
wait_for '[0-9.]+ t/s \((prompt|generation)\)' 3   # engine tokens/s on the header
wait_for 'kern_' 3                                 # a kernel function among the hot functions
T send-keys -t top q
wait_exit 5 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "built-in run: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
python3 - run6.json <<'EOF' || fail "built-in run: record wrong"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "complete", r["status"]
assert any(m["name"] == "engine.tokens_per_s" for m in r["metrics"])
assert any(e["kind"] == "phase" and e["name"] in ("prompt", "generation") for e in r["events"])
EOF

# Ctrl-C (a key: the terminal is raw): the session stops the workload and writes the
# record; top leaves with 130.
start -o run5.json -- sh -c "'$SPIN; sleep 60'"
wait_for 'live: sh -c' 5
sleep 0.5
T send-keys -t top C-c
wait_exit 8 && [ "$(cat "$TEST_TMP/exit")" = 130 ] || fail "Ctrl-C: exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected 130"
[ "$(status_of run5.json)" = interrupted ] || fail "run5.json status '$(status_of run5.json)'"
grep -q ' icanon' "$TEST_TMP/stty" || fail "terminal not restored after Ctrl-C"
finish

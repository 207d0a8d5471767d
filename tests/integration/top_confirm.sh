# amxdiag top after a CUDA fault whose kernel the launch ring cannot name for certain: like
# profile, it runs the command once more with CUDA_LAUNCH_BLOCKING=1 (profiler/crash_confirm,
# the same code) and shows what the re-run found.  Through the CUPTI stand-in program
# (tests/fixtures/cupti/fake_app.c, "matvec-oob": the ring's first guess is the wrong
# kernel, the blocking re-run names kern_gemv_q4_0_mr) and the toolkit's stub libcuda:
# --json/--dump, --no-confirm, and in tmux the status line while it runs, the confirmed
# kernel after, and q in the middle (nothing merged, nothing left behind).
. "$(dirname "$0")/lib/adg.sh"
cd "$TEST_TMP" || exit 1

fake="$BUILD_DIR/tests/cupti_fake_app"
stub=""
for s in "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" /usr/local/cuda/lib64/stubs/libcuda.so; do
    [ -f "$s" ] && stub=$s && break
done
[ -x "$fake" ] && [ -n "$stub" ] && [ -f "$BUILD_DIR/libamxdiag-inject.so" ] ||
    skip "no CUPTI stand-in program or CUDA stub libcuda.so (the GPU tracer cannot be exercised here)"
"$AMXDIAG" profile -q -e gpu -o probe.json -- true 2>/dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(any('built without CUPTI' in u['reason'] for u in r['unavailable']))" probe.json ||
    skip "this amxdiag was built without the CUPTI headers"
export AMXDIAG_LIBCUDA=$stub
# No NVML here, whatever the machine has: the panel under test is the tracer's.
export AMXDIAG_LIBNVML=/nonexistent/libnvidia-ml.so.1
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
fk() { json "$1" "(r['crash']['faulting_kernel']['kernel'], r['crash']['faulting_kernel']['confidence'], r['crash']['faulting_kernel'].get('source'))"; }

# --json: the notice and the finding on stderr, the view's crash_confirmation, the merged record.
"$AMXDIAG" top --json -e gpu -o mv.json -- "$fake" matvec-oob >view.json 2>err.txt
rc=$?
[ "$rc" = 134 ] || fail "--json: exit $rc, expected the workload's 134: $(cat err.txt)"
grep -q "running the command again with CUDA_LAUNCH_BLOCKING=1" err.txt || fail "--json: no re-run notice: $(cat err.txt)"
grep -q "amxdiag top: confirmed by a blocking re-run: the faulting kernel is 'kern_gemv_q4_0_mr' (not 'kern_quantize_q8'" err.txt ||
    fail "--json: no finding on stderr: $(cat err.txt)"
python3 - view.json <<'EOF' || fail "--json: the view does not carry the confirmation"
import json, sys
v = json.load(open(sys.argv[1]))
c = v["crash_confirmation"]
assert c["state"] == "done", c
assert c["note"] == "fault: kern_gemv_q4_0_mr (confirmed; ring guessed kern_quantize_q8)", c
assert "confirmed by a blocking re-run" in c["summary"], c
assert any("fault: kern_gemv_q4_0_mr (confirmed" in l for l in v["screen"]), v["screen"]
EOF
[ "$(fk mv.json)" = "('kern_gemv_q4_0_mr', 'certain', 'blocking re-run')" ] || fail "--json: record not merged: $(fk mv.json)"
[ "$(json mv.json "r['status']")" = workload-crashed ] || fail "--json: the first run's status was lost"
[ ! -e mv.confirm.json ] || fail "--json: the re-run's own record was left behind"

# --no-confirm: the ring's guess stays, nothing runs again.
"$AMXDIAG" top --json --no-confirm -e gpu -o nc.json -- "$fake" matvec-oob >nc-view.json 2>err.txt
[ "$(fk nc.json)" = "('kern_quantize_q8', 'likely', 'launch ring')" ] || fail "--no-confirm: $(fk nc.json)"
grep -q "CUDA_LAUNCH_BLOCKING" err.txt && fail "--no-confirm: it ran again: $(cat err.txt)"
[ "$(json nc-view.json "r['crash_confirmation']")" = None ] || fail "--no-confirm: view has a confirmation"
# A clean run has nothing to confirm.
"$AMXDIAG" top --json -e gpu -o ok.json -- "$fake" sync-ok >ok-view.json 2>err.txt || fail "sync-ok: exit $?"
[ "$(json ok-view.json "r['crash_confirmation']")" = None ] || fail "sync-ok: a confirmation without a fault"

# --dump: the GPU panel says what was confirmed.
LANG=C.UTF-8 "$AMXDIAG" top --dump -e gpu -o d.json -- "$fake" matvec-oob >dump.txt 2>/dev/null
grep -q "fault: kern_gemv_q4_0_mr (confirmed" dump.txt || fail "--dump: $(cat dump.txt)"

command -v tmux >/dev/null || { echo "SKIP: tmux not installed (scripts/install-deps.sh installs it)"; finish; }
# The blocking re-run takes a few seconds here (the wrapper waits before the program
# starts), long enough to watch the status line and to press q in the middle.
cat >slow.sh <<EOF
#!/bin/sh
[ "\$CUDA_LAUNCH_BLOCKING" = 1 ] && sleep \${SLOW:-3}
exec '$fake' matvec-oob
EOF
chmod +x slow.sh
. "$(dirname "$0")/lib/tmux.sh"
tmux_setup adgconf
start() {
    T kill-session -t top 2>/dev/null
    rm -f "$TEST_TMP/exit"
    T new-session -d -s top -x 100 -y 30 \
        "cd '$TEST_TMP' && env LANG=C.UTF-8 AMXDIAG_LIBCUDA='$stub' AMXDIAG_LIBNVML=/nonexistent SLOW=$1 '$AMXDIAG' top -e gpu -o $2 -- ./slow.sh; echo \$? >'$TEST_TMP/exit'; sleep 30"
}

# While it runs: the footer and the GPU panel say so; then the confirmed kernel.
start 3 live.json
wait_for 'confirming the faulting kernel: the command runs again with CUDA_LAUNCH_BLOCKING=1' 8
screen | grep -q "confirming the fault's kernel" || fail "the GPU panel does not say it is confirming"
screen | grep -q '^DONE' && fail "DONE before the confirmation ended"
wait_for "fault: kern_gemv_q4_0_mr \(confirmed" 10
wait_for "^confirmed by a blocking re-run: the faulting kernel is 'kern_gemv_q4_0_mr'" 2
screen | grep -q '^DONE' || fail "not DONE after the confirmation"
T send-keys -t top q
wait_exit 5 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "q after the end: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
[ "$(fk live.json)" = "('kern_gemv_q4_0_mr', 'certain', 'blocking re-run')" ] || fail "live: record not merged: $(fk live.json)"

# q during the re-run stops it: the first analysis stands, nothing is left behind.
start 20 stop.json
wait_for "confirming the fault's kernel" 8
T send-keys -t top q
wait_exit 8 && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "q while confirming: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
[ "$(fk stop.json)" = "('kern_quantize_q8', 'likely', 'launch ring')" ] || fail "q while confirming: record changed: $(fk stop.json)"
[ "$(json stop.json "'confirmation' in r['crash']")" = False ] || fail "q while confirming: a confirmation was merged"
[ ! -e stop.confirm.json ] || fail "q while confirming: the re-run's record was left behind"
finish

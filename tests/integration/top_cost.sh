# The screen's cost: CPU time (getrusage of the child) of `amxdiag top --replay` at the
# default 4 Hz refresh, in a tmux terminal at 80x24 and 200x60, as a share of one core.
# The goal is <= 1% of a core; the test fails above TOP_COST_MAX (default 5%, leaving room
# for sanitizer builds and busy CI machines).  TOP_COST_SPEED=1 replays the whole 30 s
# record at its own pace (the figure in docs/PERFORMANCE.md); the default 6 takes 5 s.
. "$(dirname "$0")/lib/adg.sh"
command -v tmux >/dev/null || skip "tmux not installed (scripts/install-deps.sh installs it)"
command -v python3 >/dev/null || skip "python3 not installed"
SPEED=${TOP_COST_SPEED:-6}
MAX=${TOP_COST_MAX:-5}
SOCK="adgcost$$"
T() { tmux -L "$SOCK" "$@"; }
trap 'T kill-server 2>/dev/null; rm -rf "$TEST_TMP"' EXIT
T new-session -d -s keep "sleep 600"

cat >"$TEST_TMP/rusage.py" <<'EOF'
import resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.call(sys.argv[2:])
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write("%d %.6f %.6f %.6f\n" % (rc, r.ru_utime, r.ru_stime, wall))
EOF

for size in 80x24 200x60; do
    w=${size%x*} h=${size#*x}
    out="$TEST_TMP/cost-$size"
    T new-session -d -s "c$size" -x "$w" -y "$h" \
        "env LANG=C.UTF-8 python3 '$TEST_TMP/rusage.py' '$out' '$AMXDIAG' top --replay '$FIXTURES/records/top_basic.json' --speed $SPEED --exit-on-end"
    for _ in $(seq $(( 300 / SPEED + 100 ))); do [ -s "$out" ] && break; sleep 0.1; done
    [ -s "$out" ] || { fail "$size: the replay did not finish"; continue; }
    read -r rc user sys wall <"$out"
    [ "$rc" = 0 ] || fail "$size: amxdiag top exited $rc"
    pct=$(python3 -c "print('%.3f' % (100 * ($user + $sys) / $wall))")
    echo "amxdiag top --replay (x$SPEED, 4 Hz) at $size: $pct% of one core (user ${user} s + sys ${sys} s over ${wall} s)"
    python3 -c "import sys; sys.exit(0 if $pct <= $MAX else 1)" || fail "$size: $pct% of a core, more than $MAX%"
done
finish

# amxdiag top --replay: options and bad records (exit 2, clear message), --json/--dump views
# whose values match the record, and the interactive screen driven in tmux: panels,
# keys (p, Tab, sort, h, s, q), resize 80x24 -> 200x60 -> 80x24, SIGTERM restores the
# terminal.
. "$(dirname "$0")/lib/adg.sh"
R="$FIXTURES/records"

# ---- non-interactive ----
expect_rc 0 "$AMXDIAG" top --help
expect_out 'replay' "$AMXDIAG" top --help
expect_rc 2 "$AMXDIAG" top --bogus
expect_rc 2 "$AMXDIAG" top --replay "$R/top_basic.json" --speed 0
expect_rc 2 "$AMXDIAG" top --replay "$R/top_basic.json" -- sleep 1
expect_rc 2 "$AMXDIAG" top --replay "$R/top_basic.json" --json --dump
expect_rc 2 "$AMXDIAG" top --replay "$R/top_basic.json" --dump --size 10x2
expect_rc 2 "$AMXDIAG" top --replay "$TEST_TMP/missing.json" --json
expect_err 'missing.json' "$AMXDIAG" top --replay "$TEST_TMP/missing.json" --json
expect_rc 2 "$AMXDIAG" top --replay "$R/top_corrupt.json" --json
expect_err 'top_corrupt.json.*line' "$AMXDIAG" top --replay "$R/top_corrupt.json" --json
expect_rc 2 "$AMXDIAG" top --replay "$R/top_badseries.json" --dump
expect_err 'series\[0\]' "$AMXDIAG" top --replay "$R/top_badseries.json" --dump
# Not a terminal: a clear error, not a garbled screen.
expect_rc 2 "$AMXDIAG" top --replay "$R/top_basic.json" </dev/null
expect_err 'needs a terminal' "$AMXDIAG" top --replay "$R/top_basic.json" </dev/null

"$AMXDIAG" top --replay "$R/top_basic.json" --json >"$TEST_TMP/view.json" 2>"$TEST_TMP/err" || fail "--json exited $?"
python3 - "$TEST_TMP/view.json" <<'EOF' || fail "--json view does not match the record"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["schema"] == "amxdiag.top-snapshot/1", v["schema"]
vals = {(x["metric"], x["instance"]): x["value"] for x in v["values"]}
want = {("isa.share.amx", None): 62.5, ("isa.share.avx512", None): 30.0, ("mem.read_bw", "socket0"): 45.6e9,
        ("mem.write_bw", "socket0"): 12.3e9, ("numa.resident", "node0"): 3 * 2**30, ("gpu.busy", "gpu0"): 87.0,
        ("workload.tokens_per_s", "tg64"): 95.2, ("cpu.util", "cpu15"): 95.0}
for k, w in want.items():
    assert k in vals, k
    assert abs(vals[k] - w) <= 1e-6 * abs(w), (k, vals[k], w)
assert v["phase"] == "generation"
assert any(u["collector"] == "pmu" for u in v["unavailable"])
assert v["hot_functions"][0]["function"] == "ggml_backend_amx_mul_mat"
EOF
LANG=C.UTF-8 "$AMXDIAG" top --replay "$R/top_minimal.json" --dump --size 120x30 >"$TEST_TMP/min.txt" || fail "--dump exited $?"
grep -q 'n/a - sampler: perf_event_paranoid is 3' "$TEST_TMP/min.txt" || fail "reasons missing: $(cat "$TEST_TMP/min.txt")"
"$AMXDIAG" top --replay "$R/top_basic.json" --dump --ascii --size 80x24 >"$TEST_TMP/ascii.txt"
LC_ALL=C grep -q '[^ -~]' "$TEST_TMP/ascii.txt" && fail "--ascii printed non-ASCII: $(head -5 "$TEST_TMP/ascii.txt")"
grep -q 'AMX 62%' "$TEST_TMP/ascii.txt" || fail "ascii dump lacks the AMX share"

# CPU bars by real NUMA node (machine.cpu_node): 8 CPUs, even ones on node 0 (mean 75%),
# odd ones on node 1 (25%); each CPU under its own node, not in number order.
LANG=C.UTF-8 "$AMXDIAG" top --replay "$R/top_numa.json" --dump --size 100x30 >"$TEST_TMP/numa.txt" || fail "numa --dump exited $?"
python3 - "$TEST_TMP/numa.txt" <<'EOF' || fail "numa --dump: CPUs not grouped by node: $(cat "$TEST_TMP/numa.txt")"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
cpu = [l.split("┃")[1] for l in lines if l.startswith("┃") and re.search(r"node\d|cpu\d", l.split("┃")[1])]
heads = [i for i, l in enumerate(cpu) if re.match(r"node\d", l)]
assert len(heads) == 2, cpu
assert re.search(r"node0 .* 75% 4 CPUs", cpu[heads[0]]) and re.search(r"node1 .* 25% 4 CPUs", cpu[heads[1]]), cpu
def cpus(rows):
    return sorted(int(n) for r in rows for n in re.findall(r"cpu(\d+) ", r))
assert cpus(cpu[heads[0] + 1:heads[1]]) == [0, 2, 4, 6], cpu
assert cpus(cpu[heads[1] + 1:]) == [1, 3, 5, 7], cpu
assert re.search(r"cpu0 .* 90%", cpu[heads[0] + 1]), cpu
EOF
# Too many CPUs for 80x24 (96 on 4 nodes): one line per node with its mean.
LANG=C.UTF-8 "$AMXDIAG" top --replay "$R/top_numa_big.json" --dump --size 80x24 >"$TEST_TMP/big.txt" || fail "big --dump exited $?"
for want in 'node0 .* 20%' 'node1 .* 40%' 'node2 .* 60%' 'node3 .* 80%'; do
    grep -Eq -- "$want" "$TEST_TMP/big.txt" || fail "96 CPUs at 80x24: no /$want/: $(cat "$TEST_TMP/big.txt")"
done
# A record without the map (top_basic) keeps consecutive groups.
grep -Eq 'cpu[0-9]+-[0-9]+ ' "$TEST_TMP/ascii.txt" || fail "no consecutive CPU groups without a node map"
grep -Eq 'node0 .* [0-9]+ CPUs' "$TEST_TMP/ascii.txt" && fail "node headers without a node map"

# ---- interactive, in tmux ----
command -v tmux >/dev/null || { echo "SKIP: tmux not installed (scripts/install-deps.sh installs it)"; finish; }
. "$(dirname "$0")/lib/tmux.sh"
tmux_setup adgtop
start() { # start COLS ROWS ARGS...: amxdiag top in a fresh tmux window
    local w=$1 h=$2; shift 2
    T kill-session -t top 2>/dev/null
    rm -f "$TEST_TMP/exit" "$TEST_TMP/stty"
    T new-session -d -s top -x "$w" -y "$h" \
        "cd '$TEST_TMP' && env LANG=C.UTF-8 '$AMXDIAG' top $*; rc=\$?; stty -a >'$TEST_TMP/stty'; echo \$rc >'$TEST_TMP/exit'; sleep 30"
}

mkdir -p "$TEST_TMP/snaps"
start 80 24 --replay "$R/top_basic.json" --speed 8 --snapshot-dir "$TEST_TMP/snaps"
wait_for 'replay finished' 8
S=$(screen)
for want in 'CPU' 'Memory' 'GPU' 'History' 'Hot functions' 'AMX 62%' '95.2 t/s \(tg64\)' 'R 45.6 GB/s W 12.3 GB/s' \
            'ggml_backend_amx_mul_mat' 'AMX busy \(PMU\) n/a - pmu' 'q quit'; do
    echo "$S" | grep -Eq -- "$want" || fail "80x24 screen lacks /$want/"
done
[ "$(echo "$S" | wc -l)" -le 24 ] || fail "screen taller than 24 lines"
T send-keys -t top p;   wait_for '^PAUSED'
T send-keys -t top p;   sleep 0.3; screen | grep -q '^PAUSED' && fail "p did not resume"
T send-keys -t top Tab; wait_for '┏━ Memory'
T send-keys -t top Tab Tab Tab  # GPU, History, Hot functions (screen order)
wait_for '┏━ Hot functions'
T send-keys -t top '>' '>' '>'  # sort by function name
wait_for 'function▼'
screen | grep -A1 'function▼' | tail -1 | grep -q '\[unknown\]' || fail "sorting by function did not put [unknown] first"
T send-keys -t top r;   wait_for 'function▲'
T send-keys -t top h;   wait_for 'Help \(h or Esc closes\)'
screen | grep -q 'isa.share.amx' || fail "help lacks the registry"
T send-keys -t top h;   sleep 0.3; screen | grep -q 'Help (h' && fail "h did not close help"
T send-keys -t top s;   wait_for 'snapshot written to'
ls "$TEST_TMP"/snaps/amxdiag-top-*.md >/dev/null 2>&1 || fail "s wrote no Markdown snapshot"
J=$(ls "$TEST_TMP"/snaps/amxdiag-top-*.json 2>/dev/null | head -1)
[ -n "$J" ] && python3 -c "import json,sys; v=json.load(open(sys.argv[1])); assert v['schema']=='amxdiag.top-snapshot/1'; assert v['size']=={'columns':80,'rows':24}" "$J" \
    || fail "snapshot JSON missing or wrong"
T resize-window -t top -x 200 -y 60
wait_for 'cpu15 '
# Panels fill in over a frame or two after a resize (slowly under ASan): wait, do not sample once.
wait_for 'rope_neox_f32' 3   # every kernel fits at 200x60
for _ in $(seq 30); do [ "$(screen | wc -l)" -ge 59 ] && break; sleep 0.1; done
[ "$(screen | wc -l)" -ge 59 ] || fail "200x60 not used"
T resize-window -t top -x 80 -y 24
wait_for 'cpu15 |cpu1[2-5]'
screen | grep -q 'terminal too small' && fail "80x24 said too small"
T resize-window -t top -x 50 -y 12
wait_for 'terminal too small: 50x12'
T resize-window -t top -x 80 -y 24
wait_for 'Hot functions'
T send-keys -t top q
wait_exit && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "q: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
grep -q ' icanon' "$TEST_TMP/stty" && grep -q ' echo' "$TEST_TMP/stty" || fail "terminal not restored after q"

# NUMA grouping live in the terminal, and across a resize (at 80x24 only the node lines fit).
start 100 30 --replay "$R/top_numa.json" --speed 16
wait_for 'replay finished' 8
wait_for 'node0 .* 75% 4 CPUs' 2
wait_for 'node1 .* 25% 4 CPUs' 2
wait_for '^┃  cpu0 .* 90% cpu4 ' 3          # node0's CPUs under it
wait_for 'workload 18.00 GiB 58C 412W' 3   # NVML values in the GPU panel
T resize-window -t top -x 200 -y 60
wait_for 'cpu6 .* 60%'
wait_for '┃node1 .* 25% 4 CPUs' 3   # node1's header survives the resize
T resize-window -t top -x 80 -y 24
wait_for '^┃node1 .* 25%'
T send-keys -t top q
wait_exit && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "numa replay q: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"

# SIGTERM: terminal restored, exit 128+15.
start 80 24 --replay "$R/top_basic.json" --speed 0.0625
wait_for 'Hot functions'
# The pane's shell runs amxdiag (through env, which execs it) as its only child.
PID=$(pgrep -P "$(T list-panes -t top -F '#{pane_pid}')" | head -1)
[ -n "$PID" ] && kill -TERM "$PID" || fail "cannot find amxdiag's pid in the tmux pane"
wait_exit && [ "$(cat "$TEST_TMP/exit")" = 143 ] || fail "SIGTERM: exit $(cat "$TEST_TMP/exit" 2>/dev/null), expected 143"
grep -q ' icanon' "$TEST_TMP/stty" || fail "terminal not restored after SIGTERM"

# A corrupt record under a terminal: the message, exit 2, nothing left in raw mode.
start 80 24 --replay "$R/top_corrupt.json"
wait_exit && [ "$(cat "$TEST_TMP/exit")" = 2 ] || fail "corrupt record in a terminal: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
# The message wraps at 80 columns wherever the path is long (capture-pane -J joins the
# wrapped lines), and tmux reads the pane's output asynchronously: wait, do not sample once.
for _ in $(seq 30); do
    T capture-pane -p -J -t top | grep -q 'top_corrupt.json' && break
    sleep 0.1
done
T capture-pane -p -J -t top | grep -q 'top_corrupt.json' || fail "corrupt record: no message on the terminal"
grep -q ' icanon' "$TEST_TMP/stty" || fail "terminal not restored after a corrupt record"

# No colour (NO_COLOR) and the ASCII fallback still draw every panel.
T kill-session -t top 2>/dev/null
T new-session -d -s top -x 80 -y 24 "cd '$TEST_TMP' && env NO_COLOR=1 LANG=C '$AMXDIAG' top --replay '$R/top_basic.json' --speed 16 --exit-on-end; echo \$? >'$TEST_TMP/exit'; sleep 30"
rm -f "$TEST_TMP/exit"
wait_for '\+= CPU =' 5
wait_for '#AMX [0-9]+% =AVX-512 [0-9]+% -other' 5
LC_ALL=C screen | grep -q '[^ -~]' && fail "non-UTF-8 locale drew non-ASCII: $(screen | head -5)"
wait_exit && [ "$(cat "$TEST_TMP/exit")" = 0 ] || fail "--exit-on-end: exit $(cat "$TEST_TMP/exit" 2>/dev/null)"
finish

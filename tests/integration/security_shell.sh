#!/usr/bin/env bash
# No shell ever interprets a user's command line: the command after `--` is executed
# with its arguments as given (execvp), so ';', '$(...)', backquotes, pipes and '&&' in
# an argument are just bytes; a command name holding them is not found (127).  The
# sources call no system(), popen() or "sh -c".  Text from the command line that reaches
# an HTML report is escaped.
set -u
. "$(dirname "$0")/lib/adg.sh"
"$AMXDIAG" profile --help >/dev/null 2>&1 || skip "amxdiag profile is not in this build"

W="$TEST_TMP/work"
mkdir -p "$W"
cd "$W" || exit 1
ARGS=('a; touch pwned1' '$(touch pwned2)' '`touch pwned3`' '| touch pwned4' '&& touch pwned5' "'; touch pwned6; '" '>pwned7')
want=$(printf '%s ' "${ARGS[@]}")

check_clean() {
    local left
    left=$(ls -A "$W" | grep pwned)
    [ -z "$left" ] || fail "$1: a shell ran: $left"
    rm -f "$W"/pwned*
}

out=$("$AMXDIAG" profile -q -o "$TEST_TMP/r.json" -- /bin/echo "${ARGS[@]}" 2>"$TEST_TMP/err")
rc=$?
[ "$rc" -eq 0 ] || fail "profile -- echo ARGS: exit $rc: $(head -c 300 "$TEST_TMP/err")"
[ "$out " = "$want" ] || fail "profile -- echo: arguments changed: '$out'"
check_clean "profile -- echo ARGS"

if "$AMXDIAG" top --help >/dev/null 2>&1; then
    "$AMXDIAG" top --json -o "$TEST_TMP/t.json" -- /bin/echo "${ARGS[@]}" >/dev/null 2>"$TEST_TMP/err"
    rc=$?
    [ "$rc" -eq 0 ] || fail "top --json -- echo ARGS: exit $rc: $(head -c 300 "$TEST_TMP/err")"
    grep -qF 'a; touch pwned1' "$TEST_TMP/t.json.log" 2>/dev/null || grep -qF 'a; touch pwned1' "$TEST_TMP/err" ||
        echo "note: top's workload output not found in its log (not an error)"
    check_clean "top -- echo ARGS"
fi

# a command *name* with shell syntax is a file name that does not exist
expect_rc 127 "$AMXDIAG" profile -q -o "$TEST_TMP/n.json" -- 'true; touch pwned8'
expect_rc 127 "$AMXDIAG" profile -q -o "$TEST_TMP/n.json" -- '$(touch pwned9)'
check_clean "command names"

# the record keeps the argv verbatim
if command -v python3 >/dev/null; then
    python3 - "$TEST_TMP/r.json" "${ARGS[@]}" <<'PY' || fail "the record does not keep the command line verbatim"
import json, sys
r = json.load(open(sys.argv[1]))
text = json.dumps(r)
assert all(json.dumps(a)[1:-1] in text for a in sys.argv[2:]), "argv not found"
PY
fi

# an HTML report escapes what came from the command line
"$AMXDIAG" profile -q -o "$TEST_TMP/x.json" -- /bin/echo '<script>alert(1)</script>' >/dev/null 2>&1
if "$AMXDIAG" report --format html "$TEST_TMP/x.json" >"$TEST_TMP/x.html" 2>"$TEST_TMP/err" || [ -s "$TEST_TMP/x.html" ]; then
    grep -q '<script>alert(1)' "$TEST_TMP/x.html" && fail "report --format html does not escape the command line"
else
    echo "note: report --format html did not run: $(head -c 200 "$TEST_TMP/err")"
fi

# no shell in the sources
if [ -d "$SRC_DIR/cli" ]; then
    hits=$(grep -RnE '\b(system|popen)[[:space:]]*\(|"/bin/sh"|"sh",[[:space:]]*"-c"' \
        "$SRC_DIR"/{cli,common,probe,kernels,profiler,tui,reports} --include='*.c' --include='*.h' 2>/dev/null |
        grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)')
    [ -z "$hits" ] || fail "a shell is started from the sources: $hits"
fi
finish

# Helpers for the integration tests (sourced). Each helper records a failure and goes on;
# finish exits 1 if any failed.
: "${AMXDIAG:?AMXDIAG must name the amxdiag binary}"
ADG_FAILS=0
TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/amxdiag-it-XXXXXX")
trap 'rm -rf "$TEST_TMP"' EXIT

# AMXDIAG_WRAPPER="valgrind --error-exitcode=99 ..." runs every amxdiag of the test under
# that command (tests/integration/valgrind_cli.sh): AMXDIAG becomes a small script, so
# tests keep calling "$AMXDIAG" as one word.
if [ -n "${AMXDIAG_WRAPPER:-}" ]; then
    ADG_REAL_AMXDIAG=$AMXDIAG
    AMXDIAG="$TEST_TMP/amxdiag-wrapped"
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$AMXDIAG_WRAPPER" "'$ADG_REAL_AMXDIAG'" >"$AMXDIAG"
    chmod +x "$AMXDIAG"
fi

fail() { echo "FAIL: $*" >&2; ADG_FAILS=$((ADG_FAILS + 1)); }
skip() { echo "SKIP: $*"; exit 77; }

# expect_rc CODE CMD...: the command exits with CODE.
expect_rc() {
    local want=$1; shift
    "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want; stderr: $(head -c 600 "$TEST_TMP/err")"
}
# expect_out REGEX CMD...: stdout matches the extended regex.
expect_out() {
    local re=$1; shift
    "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    grep -Eq -- "$re" "$TEST_TMP/out" || fail "'$*' stdout does not match /$re/: $(head -c 600 "$TEST_TMP/out")"
}
# expect_err REGEX CMD...: stderr matches.
expect_err() {
    local re=$1; shift
    "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    grep -Eq -- "$re" "$TEST_TMP/err" || fail "'$*' stderr does not match /$re/: $(head -c 600 "$TEST_TMP/err")"
}
finish() {
    if [ "$ADG_FAILS" -ne 0 ]; then
        echo "$ADG_FAILS check(s) failed" >&2
        exit 1
    fi
    exit 0
}

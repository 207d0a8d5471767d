#!/usr/bin/env bash
# The HTML reports in a real headless browser: they render, the charts (svg) are there,
# no console errors, no request leaves the file, and hostile names stay text.
source "$(dirname "$0")/lib/adg.sh"
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROME" ] || skip "no chromium (Debian package 'chromium', see scripts/install-deps.sh)"
R="$FIXTURES/records"

render() { # NAME ARGS...: writes NAME.html, then the DOM and the browser log
    local name=$1; shift
    "$AMXDIAG" report "$@" --format html -o "$TEST_TMP/$name.html" --exit-zero ||
        { fail "report $* --format html failed"; return; }
    timeout 90 "$CHROME" --headless --disable-gpu --no-sandbox --no-first-run --user-data-dir="$TEST_TMP/profile-$name" \
        --enable-logging=stderr --v=0 --dump-dom "file://$TEST_TMP/$name.html" \
        >"$TEST_TMP/$name.dom" 2>"$TEST_TMP/$name.log"
    local rc=$?
    [ "$rc" -eq 0 ] || { fail "chromium exited $rc on $name.html: $(tail -c 400 "$TEST_TMP/$name.log")"; return; }
    grep -q '</html>' "$TEST_TMP/$name.dom" || fail "$name: the browser rendered no document"
    if grep -E 'CONSOLE|Uncaught|Refused to' "$TEST_TMP/$name.log" >"$TEST_TMP/$name.console"; then
        fail "$name: console errors: $(head -c 600 "$TEST_TMP/$name.console")"
    fi
}
svgs() { grep -o '<svg' "$TEST_TMP/$1.dom" | wc -l; }

render compare --compare "$R/report_base_avx512.json" "$R/report_new_amx.json"
[ "$(svgs compare)" -ge 7 ] || fail "compare: $(svgs compare) svg charts in the rendered DOM, expected >= 7"
grep -q '<polyline' "$TEST_TMP/compare.dom" || fail "compare: no time series drawn"
grep -q '16.3% slower in token generation' "$TEST_TMP/compare.dom" || fail "compare: conclusion missing"

render run "$R/report_hybrid_gpu.json"
[ "$(svgs run)" -ge 2 ] || fail "run: $(svgs run) svg charts, expected >= 2 (ISA shares, GPU busy)"

render crash --crash "$R/report_crash_getrows.json"
grep -q 'FAULTED' "$TEST_TMP/crash.dom" || fail "crash: the faulting launch is not marked"

# hostile kernel/function names: no element may come out of them
render hostile --crash "$R/report_hostile.json"
render hostile_run "$R/report_hostile.json"
for n in hostile hostile_run; do
    grep -Eq '<(script|img|iframe)[ >]' "$TEST_TMP/$n.dom" && fail "$n: an injected element made it into the DOM"
    grep -q '&lt;script&gt;' "$TEST_TMP/$n.dom" || fail "$n: the hostile name is not shown as text"
done
finish

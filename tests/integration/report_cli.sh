#!/usr/bin/env bash
# amxdiag report: options, formats, exit codes, bad input without partial output, and a
# report on a real record made by amxdiag profile.
source "$(dirname "$0")/lib/adg.sh"
R="$FIXTURES/records"
BASE="$R/report_base_avx512.json"
NEW="$R/report_new_amx.json"

expect_rc 0 "$AMXDIAG" report --help
expect_out 'amxdiag report --compare BASE.json NEW.json' "$AMXDIAG" report --help
expect_out 'amxdiag.report/1' "$AMXDIAG" report --help
expect_rc 0 "$AMXDIAG" help report

# the rules table, in text and JSON
expect_out '^tiles-small-m' "$AMXDIAG" report --rules
expect_out '"schema": "amxdiag.report.rules/1"' "$AMXDIAG" report --rules --json

# formats and exit codes: the regression pair has a critical finding (-16.3% generation)
expect_rc 1 "$AMXDIAG" report --compare "$BASE" "$NEW"
expect_out '16\.3% slower in token generation' "$AMXDIAG" report --compare "$BASE" "$NEW"
expect_out '^\| tokens/s, generation \| 63\.28 t/s \| 52\.99 t/s \| -10\.29 t/s \| -16\.3% \|' \
    "$AMXDIAG" report --compare "$BASE" "$NEW"
expect_rc 0 "$AMXDIAG" report --compare "$BASE" "$NEW" --exit-zero
expect_out '"schema": "amxdiag.report/1"' "$AMXDIAG" report --compare "$BASE" "$NEW" --json
expect_out '"kind": "compare"' "$AMXDIAG" report --compare "$BASE" "$NEW" --format json
expect_rc 0 "$AMXDIAG" report "$NEW"
expect_out '^# amxdiag run report' "$AMXDIAG" report "$NEW"
expect_out '^<!DOCTYPE html>' "$AMXDIAG" report "$NEW" --format html
expect_rc 1 "$AMXDIAG" report --crash "$R/report_crash_getrows.json"
expect_out "kernel that faulted \| launch #41 'kern_add'" "$AMXDIAG" report --crash "$R/report_crash_getrows.json"
expect_out 'no-code-for-cc' "$AMXDIAG" report --crash "$R/report_crash_nobinary.json"

# -o: written atomically, nothing on stdout
out="$TEST_TMP/r.md"
"$AMXDIAG" report "$NEW" -o "$out" >"$TEST_TMP/stdout" 2>"$TEST_TMP/stderr" || fail "report -o failed: $(cat "$TEST_TMP/stderr")"
[ -s "$out" ] || fail "report -o wrote nothing"
[ -s "$TEST_TMP/stdout" ] && fail "report -o also wrote to stdout"
grep -q '^## Findings' "$out" || fail "report -o: no findings section"
ls "$TEST_TMP" | grep -q '\.tmp' && fail "report -o left a temporary file"

# bad input: exit 2, a message, no output file
for bad in report_truncated.json report_foreign.json report_runjson.json; do
    o="$TEST_TMP/bad-$bad.md"
    expect_rc 2 "$AMXDIAG" report "$R/$bad" -o "$o"
    expect_err '^amxdiag: error: ' "$AMXDIAG" report "$R/$bad" -o "$o"
    [ -e "$o" ] && fail "report on $bad left $o"
done
expect_err 'schema' "$AMXDIAG" report "$R/report_foreign.json"
expect_err 'hint: .*amxdiag profile --out' "$AMXDIAG" report "$R/report_runjson.json"
expect_rc 2 "$AMXDIAG" report --crash "$BASE" -o "$TEST_TMP/nocrash.md"
expect_err 'no crash section' "$AMXDIAG" report --crash "$BASE"
[ -e "$TEST_TMP/nocrash.md" ] && fail "--crash without a crash section wrote a file"
expect_rc 2 "$AMXDIAG" report --compare "$BASE" "$R/report_truncated.json" -o "$TEST_TMP/cmp.md"
[ -e "$TEST_TMP/cmp.md" ] && fail "--compare with a bad record wrote a file"
expect_rc 2 "$AMXDIAG" report /nonexistent/run.json
expect_rc 2 "$AMXDIAG" report
expect_rc 2 "$AMXDIAG" report --compare "$BASE"
expect_rc 2 "$AMXDIAG" report "$BASE" "$NEW"
expect_rc 2 "$AMXDIAG" report --compare --crash "$BASE" "$NEW"
expect_rc 2 "$AMXDIAG" report --format pdf "$BASE"
expect_rc 2 "$AMXDIAG" report --bogus "$BASE"
expect_rc 2 "$AMXDIAG" report "$BASE" -o /nonexistent-dir/r.md

# a real record: amxdiag profile of the built-in path as a command
rec="$TEST_TMP/real.json"
if "$AMXDIAG" profile --quiet --out "$rec" -- "$AMXDIAG" run --cpu-kernels avx512 -p 16 -n 4 -r 1 \
        >"$TEST_TMP/prof.out" 2>"$TEST_TMP/prof.err" && [ -s "$rec" ]; then
    expect_rc 0 "$AMXDIAG" report "$rec"
    expect_out '^\| generation \| [0-9.]+ t/s \| the workload' "$AMXDIAG" report "$rec"
    expect_out 'CPU time in AVX-512 functions \| [0-9.]+%' "$AMXDIAG" report "$rec"
    # what the profiler could not measure here says why
    expect_out 'not measured: ' "$AMXDIAG" report "$rec"
    expect_rc 0 "$AMXDIAG" report --compare "$rec" "$rec" --format html -o "$TEST_TMP/real.html"
    grep -q '<svg' "$TEST_TMP/real.html" || fail "the real-record HTML has no chart"
    expect_rc 2 "$AMXDIAG" report --crash "$rec"
else
    echo "note: amxdiag profile could not record here ($(head -c 300 "$TEST_TMP/prof.err")); real-record checks skipped"
fi
finish

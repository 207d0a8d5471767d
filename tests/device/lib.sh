# Helpers for the device scripts (sourced).  The script sets, before its first step:
#   summary   the summary file        work      a directory for the step logs
#   deadline  seconds for all steps   started   $(date +%s) at the start
#   split     1: a step's stdout goes to NAME.out and its stderr to NAME.log (else both to NAME.log)

# step NAME LIMIT CMD...: runs CMD under timeout, its limit cut to what is left before the
# deadline (skipped when less than 5 s are left); "NAME exit RC WALL s" in the summary.
step() {
    local name=$1 limit=$2
    shift 2
    if [ $(( $(date +%s) - started + 5 )) -gt "$deadline" ]; then
        printf '%-34s skipped (deadline)\n' "$name" >>"$summary"
        return 0
    fi
    local left=$(( deadline - ($(date +%s) - started) ))
    [ "$limit" -gt "$left" ] && limit=$left
    local t0 rc
    t0=$(date +%s.%N)
    if [ "${split:-0}" = 1 ]; then
        timeout --kill-after=5 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.log"
    else
        timeout --kill-after=5 "$limit" "$@" >"$work/$name.log" 2>&1
    fi
    rc=$?
    printf "%-34s exit %3d  %7.2f s\n" "$name" "$rc" "$(awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN{print b-a}")" >>"$summary"
    return 0
}
# fact NAME FILE PYTHON-EXPR: the value of the expression on the JSON file (r) into the summary.
fact() {
    local v
    v=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($3)" "$2" 2>&1 | head -c 2500)
    printf '%s: %s\n' "$1" "$v" >>"$summary"
}
# check NAME FILE PYTHON-BOOL-EXPR: a CHECK line, PASS or FAIL (r = the JSON file).
check() {
    local v
    v=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('PASS' if ($3) else 'FAIL')" "$2" 2>&1 | tail -1)
    [ "$v" = PASS ] || v="FAIL ($v)"
    printf 'CHECK %-44s %s\n' "$1" "$v" >>"$summary"
}
# step_want NAME EXPECTED_RC LIMIT CMD...: runs CMD under timeout (no deadline), its output in
# $out/NAME.log; "NAME rc=RC want=EXPECTED WALL ms ok|UNEXPECTED" in the summary and on stdout.
step_want() {
    local name=$1 want=$2 limit=$3; shift 3
    local t0 rc dt verdict=ok
    t0=$(date +%s%N)
    timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    dt=$(( ($(date +%s%N) - t0) / 1000000 ))
    [ "$rc" = "$want" ] || verdict=UNEXPECTED
    printf '%-34s rc=%-3s want=%-3s %7d ms %s\n' "$name" "$rc" "$want" "$dt" "$verdict" | tee -a "$summary"
}
# expect NAME REGEX: whether step NAME's log matches, in the summary.
expect() {
    if grep -Eq -- "$2" "$out/$1.log"; then
        printf '%-34s matches /%s/\n' "  $1" "$2" | tee -a "$summary"
    else
        printf '%-34s DOES NOT MATCH /%s/\n' "  $1" "$2" | tee -a "$summary"
    fi
}

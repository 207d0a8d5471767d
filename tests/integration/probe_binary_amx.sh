#!/usr/bin/env bash
# `amxdiag probe --binary`'s AMX checks on binaries assembled at build time
# (tests/fixtures/amxbin, tests/amxbin.cmake): complete and incomplete tile configurations,
# undecidable ones, no AMX at all, many sites, an object file, what this machine's C
# compiler makes of _tile_loadconfig, amxdiag itself, and bad input.  Nothing is run.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"
AB=$BUILD_DIR/tests/amxbin
[ -x "$AB/good" ] || skip "the AMX fixtures were not built ($AB/good missing)"

json_get() {
    python3 - "$1" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c = {k["id"]: k for k in j.get("checks", [])}
try:
    print(eval(sys.argv[2]))
except Exception as e:
    print("ERROR:%s" % e)
PY
}
expect_json() {
    local got
    got=$(json_get "$1" "$2")
    [ "$got" = "$3" ] || fail "$1: $2 = '$got', expected '$3'"
}
# probe_json OUT PATH...: probe's JSON for the binaries (the cpu section only: quick);
# sets RC.  The exit code must be 1 exactly when a check failed.
probe_json() {
    local out=$1; shift
    local args=()
    for p in "$@"; do args+=(--binary "$p"); done
    "$AMXDIAG" probe --only cpu --json "${args[@]}" >"$out" 2>"$TEST_TMP/err"
    RC=$?
    [ "$RC" -lt 2 ] || fail "probe --binary $* exited $RC: $(head -c 600 "$TEST_TMP/err")"
    local fails
    fails=$(json_get "$out" 'j["summary"]["fail"]')
    if [ "$fails" = 0 ]; then [ "$RC" -eq 0 ] || fail "exit $RC with no failed check ($*)"
    else [ "$RC" -eq 1 ] || fail "exit $RC with $fails failed checks ($*)"; fi
}

# Complete configurations: every site passes, the permission request is seen.
probe_json "$TEST_TMP/good.json" "$AB/good"
expect_json "$TEST_TMP/good.json" 'j["schema"]' "amxdiag.probe/1"
expect_json "$TEST_TMP/good.json" 'sorted(set(v["status"] for k, v in c.items() if k.startswith("binary.0.amx.cfg.")))' "['pass']"
expect_json "$TEST_TMP/good.json" 'len([k for k in c if k.startswith("binary.0.amx.cfg.")])' "8"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx.permission"]["status"]' "pass"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx"]["data"]["ldtilecfg"]' "8"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx"]["data"]["tdp"]' "1"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx.cfg.1"]["data"]["data_section"]' ".rodata"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx.cfg.0"]["data"]["function"]' "good_stack"
expect_json "$TEST_TMP/good.json" 'c["binary.0.amx.cfg.0"]["data"]["bytes"][16:22]' "wwwwww"

# GCC 12's pattern, three ways: FAIL with evidence and the remedy; exit 1.
probe_json "$TEST_TMP/bad.json" "$AB/bad"
[ "$RC" -eq 1 ] || fail "probe --binary bad exited $RC, expected 1"
for i in 0 1 2; do
    expect_json "$TEST_TMP/bad.json" "c['binary.0.amx.cfg.$i']['status']" "fail"
done
expect_json "$TEST_TMP/bad.json" 'c["binary.0.amx.cfg.0"]["data"]["function"]' "bad_avx512"
expect_json "$TEST_TMP/bad.json" 'c["binary.0.amx.cfg.0"]["data"]["verdict"]' "unwritten"
expect_json "$TEST_TMP/bad.json" 'c["binary.0.amx.cfg.0"]["data"]["palette"]' "1"
expect_json "$TEST_TMP/bad.json" 'c["binary.0.amx.cfg.0"]["data"]["bytes"]' "w$(printf '0%.0s' $(seq 63))"
expect_json "$TEST_TMP/bad.json" '"GCC 12" in c["binary.0.amx.cfg.0"]["remedy"] and "SIGILL" in c["binary.0.amx.cfg.0"]["remedy"]' "True"
expect_json "$TEST_TMP/bad.json" '[s["instruction"] for s in c["binary.0.amx.cfg.0"]["data"]["stores"]]' \
    "['vmovdqa64 zmmword ptr [rsp+0xc0], zmm0', 'mov byte ptr [rsp+0xc0], 0x01']"
expect_json "$TEST_TMP/bad.json" 'c["binary.0.amx.permission"]["status"]' "info"
expect_out "FAIL +binary.0.amx.cfg.0" "$AMXDIAG" probe --only cpu --color never --binary "$AB/bad"
grep -q "bad_avx512" "$TEST_TMP/out" || fail "the text output does not name the function"
grep -q "_tile_loadconfig" "$TEST_TMP/out" || fail "the text output does not give the remedy"

# The same code as a relocatable object.
probe_json "$TEST_TMP/bado.json" "$AB/bad.o"
expect_json "$TEST_TMP/bado.json" '[c["binary.0.amx.cfg.%d" % i]["status"] for i in range(3)]' "['fail', 'fail', 'fail']"
expect_json "$TEST_TMP/bado.json" 'c["binary.0.amx.cfg.2"]["data"]["function"]' "bad_gpr"

# A constant configuration with the palette only.
probe_json "$TEST_TMP/ro.json" "$AB/bad_rodata"
expect_json "$TEST_TMP/ro.json" 'c["binary.0.amx.cfg.0"]["status"]' "fail"
expect_json "$TEST_TMP/ro.json" 'c["binary.0.amx.cfg.0"]["data"]["data_section"]' ".rodata"

# What clang makes of _tile_loadconfig: it keeps the stores.
if command -v clang >/dev/null && clang -O2 -mamx-tile -c -o "$TEST_TMP/tc_clang.o" "$FIXTURES/amxbin/tileconfig.c" 2>/dev/null; then
    probe_json "$TEST_TMP/tcc.json" "$TEST_TMP/tc_clang.o"
    expect_json "$TEST_TMP/tcc.json" 'c["binary.0.amx.cfg.0"]["status"]' "pass"
    expect_json "$TEST_TMP/tcc.json" 'c["binary.0.amx.cfg.0"]["data"]["function"]' "tileconfig_load"
fi

# Undecidable (a pointer argument, .bss, zero .data, a computed base, after a call, palette 0
# and 2, after rep stos): INFO with the reason, never FAIL.
probe_json "$TEST_TMP/und.json" "$AB/undecided"
expect_json "$TEST_TMP/und.json" 'sorted(set(v["status"] for k, v in c.items() if k.startswith("binary.0.amx.cfg.")))' "['info']"
expect_json "$TEST_TMP/und.json" '"writable" in c["binary.0.amx.cfg.1"]["evidence"]' "True"
expect_json "$TEST_TMP/und.json" 'len([k for k in c if k.startswith("binary.0.amx.cfg.")])' "8"

# No AMX: one INFO, nothing else.
probe_json "$TEST_TMP/no.json" "$AB/noamx"
expect_json "$TEST_TMP/no.json" 'c["binary.0.amx"]["status"]' "info"
expect_json "$TEST_TMP/no.json" 'c["binary.0.amx"]["data"]["instructions"]' "0"
expect_json "$TEST_TMP/no.json" 'len([k for k in c if k.startswith("binary.0.amx.")])' "0"

# Several binaries: each its own ids.
probe_json "$TEST_TMP/two.json" "$AB/good" "$AB/bad"
expect_json "$TEST_TMP/two.json" 'c["binary.0.amx.cfg.0"]["status"] + " " + c["binary.1.amx.cfg.0"]["status"]' "pass fail"

# What this machine's compiler makes of _tile_loadconfig: GCC 12 drops the stores.
if [ -f "$AB/tileconfig.o" ]; then
    read -r cc_id cc_ver <"$AB/compiler.txt"
    probe_json "$TEST_TMP/tc.json" "$AB/tileconfig.o"
    st=$(json_get "$TEST_TMP/tc.json" 'c["binary.0.amx.cfg.0"]["status"]')
    echo "_tile_loadconfig built by $cc_id $cc_ver: $st"
    if [ "$cc_id" = GNU ] && [ "${cc_ver%%.*}" = 12 ]; then
        [ "$st" = fail ] || fail "GCC $cc_ver's _tile_loadconfig code should FAIL, got $st"
    fi
fi

# Past 32 sites, one summary check (generated here: 40 incomplete configurations).
CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
if [ -n "$CC" ] && command -v "$CC" >/dev/null; then
    {
        printf '\t.text\n\t.globl _start\n_start:\n'
        for i in $(seq 40); do
            printf '\tpxor %%xmm0, %%xmm0\n\tmovaps %%xmm0, (%%rsp)\n\tmovaps %%xmm0, 16(%%rsp)\n'
            printf '\tmovaps %%xmm0, 32(%%rsp)\n\tmovaps %%xmm0, 48(%%rsp)\n\tmovb $1, (%%rsp)\n\tldtilecfg (%%rsp)\n'
        done
        printf '\tret\n'
    } >"$TEST_TMP/many.S"
    if "$CC" -nostdlib -static -o "$TEST_TMP/many" "$TEST_TMP/many.S" 2>"$TEST_TMP/cc.err"; then
        probe_json "$TEST_TMP/many.json" "$TEST_TMP/many"
        expect_json "$TEST_TMP/many.json" '"binary.0.amx.cfg.31" in c and "binary.0.amx.cfg.32" not in c' "True"
        expect_json "$TEST_TMP/many.json" 'c["binary.0.amx.cfg.more"]["status"]' "fail"
        expect_json "$TEST_TMP/many.json" 'c["binary.0.amx.cfg.more"]["data"]["unwritten"]' "8"
    else
        fail "could not assemble the many-sites file: $(head -c 400 "$TEST_TMP/cc.err")"
    fi
fi

# amxdiag's own kernels load complete configurations (their ldtilecfg asm covers 64 bytes).
probe_json "$TEST_TMP/self.json" "$AMXDIAG"
if [ "$(json_get "$TEST_TMP/self.json" '"binary.0.amx" in c')" = True ] &&
   [ "$(json_get "$TEST_TMP/self.json" 'c["binary.0.amx"]["data"]["ldtilecfg"]')" != 0 ]; then
    expect_json "$TEST_TMP/self.json" '[k for k, v in c.items() if k.startswith("binary.0.amx") and v["status"] == "fail"]' "[]"
    echo "amxdiag itself: $(json_get "$TEST_TMP/self.json" 'c["binary.0.amx"]["evidence"]'), scanned in $(json_get "$TEST_TMP/self.json" 'c["binary.0.amx"]["data"]["seconds"]') s"
fi

# Bad input: a cut file gives a clear error (exit 2) or a scan of what is there; never a crash.
for cut in 100 1000 5000; do
    head -c "$cut" "$AB/good" >"$TEST_TMP/cut"
    "$AMXDIAG" probe --only cpu --binary "$TEST_TMP/cut" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    rc=$?
    [ "$rc" -le 2 ] || fail "a file cut at $cut bytes: exit $rc: $(head -c 400 "$TEST_TMP/err")"
    grep -q "Sanitizer" "$TEST_TMP/err" && fail "a file cut at $cut bytes: sanitizer report"
done
expect_rc 2 "$AMXDIAG" probe --only cpu --binary "$TEST_TMP/does-not-exist"
expect_out "AMX code" "$AMXDIAG" probe --help
finish

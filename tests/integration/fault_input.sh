#!/usr/bin/env bash
# Truncated and corrupt inputs for every command that reads a file: GGUF models (model
# inspect, run -m), run records (report, report --crash, report --compare, top --replay),
# probe snapshots (probe --snapshot) and CUDA binaries (probe --binary).  Empty,
# truncated and garbage files must give exit 2 and a message; byte-flipped files may
# still be valid (exit 0 or 1) but must never crash amxdiag or trip a sanitizer.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to make the corrupt files"

C="$TEST_TMP/corrupt"
mkdir -p "$C"
"$AMXDIAG" model create --preset tiny --sparse "$TEST_TMP/tiny.gguf" >/dev/null 2>&1 || fail "model create failed"

# mutate BASE PREFIX: writes PREFIX-{empty,cut1,cut2,cut3,last,garbage,flipN} (seeded).
mutate() {
    python3 - "$1" "$2" <<'PY'
import random, sys
base, prefix = sys.argv[1], sys.argv[2]
data = open(base, "rb").read()
rng = random.Random(11)
out = {"empty": b"", "cut1": data[:len(data) // 3], "cut2": data[:2 * len(data) // 3],
       "cut3": data[:97], "last": data[:-1],
       "garbage": bytes(rng.randrange(256) for _ in range(4096))}
for i in range(8):
    d = bytearray(data)
    for _ in range(1 + i * 3):
        # flip bytes in the first 64 KiB: headers, metadata, JSON structure
        p = rng.randrange(min(len(d), 65536))
        d[p] ^= 1 << rng.randrange(8)
    out["flip%d" % i] = bytes(d)
for k, v in out.items():
    open("%s-%s" % (prefix, k), "wb").write(v)
PY
}

# run_bad MUST_FAIL CMD...: never a crash, never a sanitizer report; MUST_FAIL=1: exit 2.
run_bad() {
    local must=$1; shift
    "$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err"
    local rc=$?
    if [ "$rc" -gt 2 ]; then
        fail "'$*' exited $rc (crash?): $(tail -c 400 "$TEST_TMP/err")"
    elif grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' "$TEST_TMP/err"; then
        fail "'$*': sanitizer report: $(grep -E -m3 'Sanitizer|runtime error' "$TEST_TMP/err")"
    elif [ "$must" = 1 ] && [ "$rc" -ne 2 ]; then
        fail "'$*' exited $rc on a broken file, expected 2"
    elif [ "$rc" -eq 2 ] && ! grep -q "error" "$TEST_TMP/err"; then
        fail "'$*' exited 2 without an error message"
    fi
}

# for_variants BASE PREFIX CMD... (the file goes where @ is)
for_variants() {
    local base=$1 prefix=$2; shift 2
    mutate "$base" "$C/$prefix"
    local f must
    for f in "$C/$prefix"-*; do
        # flipped bytes and a dropped last byte (a newline, padding) may leave a valid file
        case "$f" in *-flip*|*-last) must=0 ;; *) must=1 ;; esac
        local args=()
        for a in "$@"; do [ "$a" = @ ] && args+=("$f") || args+=("$a"); done
        run_bad "$must" "${args[@]}"
    done
}

# --- GGUF
for_variants "$FIXTURES/gguf/ggufpy-mixed.gguf" mixed "$AMXDIAG" model inspect @ --tensors
for_variants "$TEST_TMP/tiny.gguf" tiny "$AMXDIAG" model inspect @ --json
for_variants "$TEST_TMP/tiny.gguf" tinyrun "$AMXDIAG" run -m @ -p 4 -n 1 -r 1 --cpu-kernels ref
run_bad 1 "$AMXDIAG" model inspect "$TEST_TMP"
run_bad 1 "$AMXDIAG" model inspect "$TEST_TMP/does-not-exist.gguf"

# --- run records
REC="$TEST_TMP/rec.json"
"$AMXDIAG" profile -q -o "$REC" -- true >/dev/null 2>&1 || cp "$FIXTURES/records/top_minimal.json" "$REC"
for_variants "$REC" rec "$AMXDIAG" report @
for_variants "$REC" recjson "$AMXDIAG" report --format json @
for_variants "$REC" cmp "$AMXDIAG" report --compare "$REC" @
for_variants "$REC" top "$AMXDIAG" top --replay @ --dump
if [ -f "$FIXTURES/records/report_crash_getrows.json" ]; then
    for_variants "$FIXTURES/records/report_crash_getrows.json" crash "$AMXDIAG" report --crash @
fi
run_bad 1 "$AMXDIAG" report "$TEST_TMP"
run_bad 1 "$AMXDIAG" top --replay "$TEST_TMP/does-not-exist.json" --dump
# a JSON file that is not a record, and a record of an unknown major version
echo '[1, 2, 3]' >"$C/array.json"
run_bad 1 "$AMXDIAG" report "$C/array.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); r['schema']='amxdiag.run/9'; json.dump(r, open(sys.argv[2],'w'))" \
    "$REC" "$C/v9.json"
run_bad 1 "$AMXDIAG" report "$C/v9.json"
run_bad 1 "$AMXDIAG" top --replay "$C/v9.json" --dump
grep -q "version 9" "$TEST_TMP/err" || fail "an unknown record version is not named: $(head -c 300 "$TEST_TMP/err")"

# --- probe snapshots
for_variants "$FIXTURES/snapshots/emr-kvm-h100.json" snap "$AMXDIAG" probe --snapshot @
for_variants "$FIXTURES/snapshots/spr-baremetal-pmu.json" snapjson "$AMXDIAG" probe --snapshot @ --json
run_bad 1 "$AMXDIAG" probe --snapshot "$REC"

# --- CUDA binaries
for_variants "$FIXTURES/fatbin/compress_speed.fatbin" fb "$AMXDIAG" probe --only gpu --binary @ --cc 9.0
for_variants "$FIXTURES/fatbin/compress_size.fatbin" fbz "$AMXDIAG" probe --only gpu --binary @ --cc 9.0
for_variants "$FIXTURES/fatbin/sm_120f.cubin" cubin "$AMXDIAG" probe --only gpu --binary @ --cc 12.0
finish

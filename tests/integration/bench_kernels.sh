#!/usr/bin/env bash
# `amxdiag bench kernels` (CPU): help, bad input, a tiny real run with JSON, the crossover
# file it stores, and the ref/emulator paths on small shapes.
. "$(dirname "$0")/lib/adg.sh"
export XDG_CACHE_HOME="$TEST_TMP/cache" AMXDIAG_CROSSOVER="$TEST_TMP/xo.json"

expect_rc 0 "$AMXDIAG" bench kernels --help
expect_out 'usage: amxdiag bench kernels' "$AMXDIAG" bench kernels --help
expect_rc 2 "$AMXDIAG" bench kernels --impl sse
expect_err "unknown implementation 'sse'" "$AMXDIAG" bench kernels --impl sse
expect_rc 2 "$AMXDIAG" bench kernels --type q4_k
expect_rc 2 "$AMXDIAG" bench kernels --m 0
expect_rc 2 "$AMXDIAG" bench kernels --shape nope
expect_rc 2 "$AMXDIAG" bench kernels --threads x
expect_rc 2 "$AMXDIAG" bench kernels --mem-gbs -3
expect_rc 2 "$AMXDIAG" bench kernels --bogus
expect_rc 2 "$AMXDIAG" bench kernels extra-word

# The reference runs everywhere: a small real run, JSON checked.
tiny=(--shape router,attn_kv --type q8_0,q4_0 --m 1,2 --threads 2 --min-time 0.001 --weights-mib 0 --mem-gbs 10)
expect_rc 0 "$AMXDIAG" bench kernels --impl ref "${tiny[@]}" --json -o "$TEST_TMP/b.json"
python3 - "$TEST_TMP/b.json" <<'PY' || fail "bench JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "amxdiag.bench.kernels/1", d["schema"]
rows = d["rows"]
assert len(rows) == 8, len(rows)
for r in rows:
    assert r["impl"] == "ref" and r["median_ms"] > 0 and r["gflops"] > 0, r
    assert r["variant"].startswith("ref-"), r
assert d["ceilings"]["mem_read_gbs"] == 10 and d["ceilings"]["mem_source"] == "given with --mem-gbs"
for r in rows:
    assert abs(r["fraction_of_read_bw"] - r["gbs"] / 10) < 1e-6, r
PY

# M = 1 on VNNI: the batched line (several copies in one region) beside the per-call one,
# in the table, the JSON and the goal's name.
if "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q8_0 --m 1 --threads 1 --min-time 0.001 \
       --weights-mib 0 --mem-gbs 10 >/dev/null 2>&1; then
    expect_out 'in one region' "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q8_0 --m 1 \
        --threads 2 --min-time 0.001 --weights-mib 4 --mem-gbs 10
    expect_rc 0 "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv,router --type q4_0 --m 1,2 --threads 2 \
        --min-time 0.001 --weights-mib 4 --mem-gbs 10 --json -o "$TEST_TMP/m1.json"
    python3 - "$TEST_TMP/m1.json" <<'PY' || fail "bench M = 1 batched JSON"
import json, sys
d = json.load(open(sys.argv[1]))
for r in d["rows"]:
    if r["m"] == 1:
        assert 2 <= r["batch"] <= 64 and r["batched_ms"] > 0, r
        assert abs(r["batched_fraction_of_read_bw"] - r["batched_gbs"] / 10) < 1e-6, r
    else:
        assert "batch" not in r, r
assert any("attn_kv q4_0 M=1 batched" in g["goal"] for g in d["goals"]), d["goals"]
PY
    # without --mem-gbs: the read measured beside each batched line is its divisor, in the
    # table, the JSON and the goal (--mem-gbs above: none)
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert all(r.get("paired_read_gbs", None) is None for r in d["rows"])' \
        "$TEST_TMP/m1.json" || fail "paired read with --mem-gbs"
    expect_out 'of the read beside it' "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q8_0 --m 1 \
        --threads 2 --min-time 0.001 --weights-mib 4
    expect_rc 0 "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q4_0 --m 1 --threads 2 \
        --min-time 0.001 --weights-mib 4 --json -o "$TEST_TMP/m1p.json"
    python3 - "$TEST_TMP/m1p.json" <<'PY' || fail "bench M = 1 paired read JSON"
import json, sys
d = json.load(open(sys.argv[1]))
r = [r for r in d["rows"] if r["m"] == 1][0]
assert r["paired_read_gbs"] > 0, r
assert abs(r["batched_fraction_of_paired_read"] - r["batched_gbs"] / r["paired_read_gbs"]) < 1e-6, r
g = [g for g in d["goals"] if "attn_kv q4_0 M=1 batched" in g["goal"]][0]
assert "(read beside it)" in g["goal"] and abs(g["measured"] - r["batched_fraction_of_paired_read"]) < 1e-6, g
assert d["ceilings"]["mem_source"].startswith("measured by bench"), d["ceilings"]
PY
    # one copy (--weights-mib 0): no batch, which would read it from the cache
    expect_rc 0 "$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q8_0 --m 1 --threads 1 \
        --min-time 0.001 --weights-mib 0 --mem-gbs 10 --json -o "$TEST_TMP/m1b.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert all("batch" not in r for r in d["rows"])' \
        "$TEST_TMP/m1b.json" || fail "a batch with one copy"
fi

if "$AMXDIAG" bench kernels --impl avx512 --shape router --type q8_0 --m 1 --threads 1 --min-time 0.001 \
       --weights-mib 0 --mem-gbs 10 >/dev/null 2>&1; then
    # amx-emu vs avx512 gives crossover pairs: the stored file is what the kernels read.
    expect_rc 0 "$AMXDIAG" bench kernels --impl amx-emu,avx512 --shape router --type q8_0 --m 1,2 \
        --threads 2 --min-time 0.001 --weights-mib 0 --mem-gbs 10
    expect_out 'AMX/VNNI crossover' "$AMXDIAG" bench kernels --impl avx512 --shape router --type q8_0 --m 1 \
        --threads 1 --min-time 0.001 --weights-mib 0 --mem-gbs 10
    expect_rc 2 "$AMXDIAG" bench kernels --impl avx512 --shape router --type q8_0 --m 1 --threads 1 \
        --min-time 0.001 --weights-mib 0 --mem-gbs 10 --save-crossover="$TEST_TMP/none.json"
    [ ! -e "$TEST_TMP/none.json" ] || fail "a crossover file was written without amx+avx512 pairs"
else
    echo "SKIP (part): AVX-512 kernels not usable here"
fi
if "$AMXDIAG" bench kernels --impl amx --shape router --type q8_0 --m 1 --threads 1 --min-time 0.001 \
       --weights-mib 0 --mem-gbs 10 >/dev/null 2>&1; then
    expect_rc 0 "$AMXDIAG" bench kernels --impl amx,avx512 --shape router --type q8_0 --m 1,32 --threads 2 \
        --min-time 0.001 --weights-mib 0 --mem-gbs 10 --save-crossover="$TEST_TMP/xo2.json"
    grep -q '"amxdiag.crossover/1"' "$TEST_TMP/xo2.json" || fail "crossover file not written"
else
    expect_rc 2 "$AMXDIAG" bench kernels --impl amx --m 1
    expect_err 'amx' "$AMXDIAG" bench kernels --impl amx --m 1
fi
finish

#!/usr/bin/env bash
# `amxdiag bench kernels --amx-scales row` (the row-scaled int8 experiment): bad input, and
# a tiny run on the tile emulator (AVX-512 machines) whose JSON carries the extra rows with
# their comparisons and accuracy, while the shipped rows, goals and crossover ignore them.
. "$(dirname "$0")/lib/adg.sh"
export XDG_CACHE_HOME="$TEST_TMP/cache" AMXDIAG_CROSSOVER="$TEST_TMP/xo.json"

expect_out 'amx-scales row' "$AMXDIAG" bench kernels --help
expect_rc 2 "$AMXDIAG" bench kernels --amx-scales col
expect_err "must be block" "$AMXDIAG" bench kernels --amx-scales col
expect_rc 2 "$AMXDIAG" bench kernels --impl ref --amx-scales row
expect_err "no tile implementation" "$AMXDIAG" bench kernels --impl ref --amx-scales row

"$AMXDIAG" bench kernels --impl avx512 --shape attn_kv --type q8_0 --m 1 --threads 1 --min-time 0.001 \
    --weights-mib 0 --mem-gbs 10 >/dev/null 2>&1 || { [ "$ADG_FAILS" -ne 0 ] && finish; skip "no AVX-512 here: the tile emulator build cannot run"; }

tiny=(--impl amx-emu,avx512 --shape router --type q8_0,q4_0,bf16 --m 1 --threads 2 --min-time 0.001
      --weights-mib 0 --mem-gbs 10)
expect_rc 0 "$AMXDIAG" bench kernels "${tiny[@]}" --amx-scales row --json -o "$TEST_TMP/r.json"
expect_out 'row-scaled: .* TOPS' "$AMXDIAG" bench kernels "${tiny[@]}" --type q8_0 --amx-scales row
python3 - "$TEST_TMP/r.json" <<'PY' || fail "row-scaled JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
rows = d["rows"]
rq = [r for r in rows if r["variant"] == "rowq"]
# one per (shape, int8 type); none for bf16
assert sorted((r["shape"], r["type"]) for r in rq) == [("router", "q4_0"), ("router", "q8_0")], rq
for r in rq:
    assert r["impl"] == "amx-emu" and r["median_ms"] > 0, r
    q = r["rowq"]
    assert q["speedup_vs_avx512"] > 0 and q["speedup_vs_amx_block"] > 0, q
    assert "fraction_of_tdpbssd_loop" in q and "fraction_of_amx_int8_theoretical" in q, q
    a = q["accuracy"]
    # random data: the documented bound of the unit test (rowq vs block-scaled)
    assert 0 < a["rel_rms_vs_block"] < 0.012 and a["block_rel_rms_vs_exact"] < a["rowq_rel_rms_vs_exact"], a
# the shipped rows are all there, unchanged in form
assert len([r for r in rows if r["variant"] != "rowq"]) == 6, len(rows)
assert all("rowq" not in r for r in rows if r["variant"] != "rowq")
PY
finish

#!/usr/bin/env bash
# amxdiag run: llama-bench-style table and JSON, the cached default model, greedy
# decoding identical on every CPU path, and clear errors.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"
export XDG_CACHE_HOME="$TEST_TMP/cache"
unset AMXDIAG_CROSSOVER   # the shipped crossover: which products take tiles is asserted below

expect_rc 0 "$AMXDIAG" run -p 32 -n 8 -r 2
ls "$XDG_CACHE_HOME"/amxdiag/models/*.gguf >/dev/null 2>&1 || fail "default model not cached"
expect_out "^\| qwen3moe [0-9.]+M Q4_0 .* \| +pp32 \| +[0-9.]+ ± [0-9.]+ \|" "$AMXDIAG" run -p 32 -n 8 -r 2
expect_out "^\| qwen3moe .* \| +tg8 \|" "$AMXDIAG" run -p 32 -n 8 -r 2
expect_out "^  moe_gate_up " "$AMXDIAG" run -p 16 -n 4 -r 1 --ops
"$AMXDIAG" run -p 16 -n 4 -r 2 --json >"$TEST_TMP/r.json" || fail "run --json failed"
python3 - "$TEST_TMP/r.json" <<'PY' || fail "run JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "amxdiag.run-result/1"
tests = {t["test"]: t for t in d["tests"]}
assert set(tests) == {"pp16", "tg4"}, tests.keys()
for t in tests.values():
    assert len(t["samples_ts"]) == 2 and t["avg_ts"] > 0 and t["ops"]
assert d["model"]["architecture"] == "qwen3moe"
PY

# -o writes the JSON beside the table.
expect_out "pp16" "$AMXDIAG" run -p 16 -n 2 -r 1 -o "$TEST_TMP/o.json"
grep -q '"schema": "amxdiag.run-result/1"' "$TEST_TMP/o.json" || fail "-o did not write the JSON result"

# Greedy decoding gives the same tokens on every CPU implementation available here.
ref=$("$AMXDIAG" run --greedy -p 12 -n 10 --cpu-kernels ref | sed -n 2p)
[ -n "$ref" ] || fail "no greedy tokens from ref"
for impl in avx512 amx amx-emu; do
    out=$("$AMXDIAG" run --greedy -p 12 -n 10 --cpu-kernels "$impl" 2>"$TEST_TMP/err") || {
        grep -q "hint:" "$TEST_TMP/err" || fail "--cpu-kernels $impl failed without a hint"
        echo "note: $impl not available here: $(head -1 "$TEST_TMP/err")"
        continue
    }
    [ "$(echo "$out" | sed -n 2p)" = "$ref" ] || fail "$impl greedy tokens differ from ref"
done
M="$TEST_TMP/llama.gguf"
expect_rc 0 "$AMXDIAG" model create --preset llama-tiny --layers 2 "$M"
expect_out "^\| llama .* \| +pp8 \|" "$AMXDIAG" run -m "$M" -p 8 -n 2 -r 1

# --ngl: runs where a GPU is usable, else exit 2 with a hint (never a crash).
"$AMXDIAG" run --ngl 2 -p 8 -n 2 -r 1 >"$TEST_TMP/out" 2>"$TEST_TMP/err"
rc=$?
if [ "$rc" -eq 0 ]; then
    grep -q "CPU+CUDA" "$TEST_TMP/out" || fail "--ngl 2 ran but the table does not say CPU+CUDA"
else
    [ "$rc" -eq 2 ] || fail "--ngl 2 without a GPU exited $rc, expected 2"
    grep -q "hint:" "$TEST_TMP/err" || fail "--ngl 2 failed without a hint: $(cat "$TEST_TMP/err")"
fi
expect_rc 2 "$AMXDIAG" run -m "$TEST_TMP/llama.gguf" --ngl 1 -p 8 -n 2
expect_rc 2 "$AMXDIAG" run -m "$TEST_TMP/missing.gguf"
expect_rc 2 "$AMXDIAG" run -p abc
expect_rc 2 "$AMXDIAG" run -r 0
expect_rc 2 "$AMXDIAG" run --cpu-kernels fast
expect_rc 2 "$AMXDIAG" run --numa sideways
expect_rc 2 "$AMXDIAG" run stray-argument
"$AMXDIAG" model create --preset qwen3-moe-small --sparse "$TEST_TMP/sparse.gguf" >/dev/null || fail "sparse create"
expect_rc 2 "$AMXDIAG" run -m "$TEST_TMP/sparse.gguf" -p 8 -n 2
expect_err "sparse layout file without weights" "$AMXDIAG" run -m "$TEST_TMP/sparse.gguf" -p 8 -n 2
# --greedy --compare: teacher-forced logits against a second engine (docs/run.md).
T="$TEST_TMP/tiny-cmp.gguf"
"$AMXDIAG" model create --preset tiny --quant q4_0 "$T" >/dev/null || fail "tiny create"
"$AMXDIAG" run -m "$T" --greedy -p 24 -n 4 --cpu-kernels avx512 --compare ref --json >"$TEST_TMP/cmp.json" 2>"$TEST_TMP/err" ||
    fail "--compare avx512 vs ref exited $?: $(cat "$TEST_TMP/err")"
python3 - "$TEST_TMP/cmp.json" <<'PY' || fail "--compare JSON wrong: $(head -c 400 "$TEST_TMP/cmp.json")"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["schema"] == "amxdiag.run-result/1" and v["mode"] == "compare", v
assert v["engine"] == "avx512" and v["reference"] == "ref" and v["steps"] == 5 and len(v["per_step"]) == 5
assert v["agrees"] is True and v["decisive_same"] == v["decisive"] and 0 <= v["max_abs_diff"] <= 0.1
PY
expect_out "agrees: every decisive step" "$AMXDIAG" run -m "$T" --greedy -p 24 -n 2 --cpu-kernels ref --compare ref
expect_out "max \|logit diff\| 0.00000" "$AMXDIAG" run -m "$T" --greedy -p 24 -n 2 --cpu-kernels ref --compare ref
expect_rc 2 "$AMXDIAG" run -m "$T" --compare ref
expect_err "add --greedy" "$AMXDIAG" run -m "$T" --compare ref
expect_rc 2 "$AMXDIAG" run -m "$T" --greedy --compare fastest
# --amx-scales row (docs/run.md): the prompt's tile products with one scale per row, in the
# tile emulator here (and on real tiles where AMX is usable); refused without tiles.
"$AMXDIAG" run -m "$T" -p 32 -n 2 -r 1 --cpu-kernels amx-emu --amx-scales row --ops --json >"$TEST_TMP/rq.json" \
    2>"$TEST_TMP/err" || fail "--amx-scales row on amx-emu exited $?: $(cat "$TEST_TMP/err")"
python3 - "$TEST_TMP/rq.json" <<'PY' || fail "--amx-scales row JSON wrong: $(head -c 400 "$TEST_TMP/rq.json")"
import json, sys
v = json.load(open(sys.argv[1]))
assert v["amx_scales"] == "row" and v["cpu_kernels"] == "amx-emu", v
t = {x["test"]: x for x in v["tests"]}
assert any("rowq" in o["variant"] for o in t["pp32"]["ops"] if o["op"] == "matmul_qkv"), t["pp32"]["ops"]
assert not any("rowq" in o["variant"] for o in t["tg2"]["ops"]), t["tg2"]["ops"]
PY
expect_out "CPU amx-emu row" "$AMXDIAG" run -m "$T" -p 16 -n 1 -r 1 --cpu-kernels amx-emu --amx-scales row
expect_out "amx-emu \(row scales\) vs ref" "$AMXDIAG" run -m "$T" --greedy -p 24 -n 2 --cpu-kernels amx-emu \
    --amx-scales row --compare ref
grep -q '"amx_scales": "block"' "$TEST_TMP/o.json" || fail "the JSON result does not say amx_scales block by default"
expect_rc 2 "$AMXDIAG" run -m "$T" -p 8 -n 1 --cpu-kernels avx512 --amx-scales row
expect_err "use no tiles" "$AMXDIAG" run -m "$T" -p 8 -n 1 --cpu-kernels ref --amx-scales row
"$AMXDIAG" model create --preset tiny --quant bf16 "$TEST_TMP/bf16.gguf" >/dev/null || fail "bf16 create"
expect_rc 2 "$AMXDIAG" run -m "$TEST_TMP/bf16.gguf" -p 8 -n 1 --cpu-kernels amx-emu --amx-scales row
expect_err "Q4_0/Q8_0 weights only" "$AMXDIAG" run -m "$TEST_TMP/bf16.gguf" -p 8 -n 1 --cpu-kernels amx-emu --amx-scales row
expect_rc 2 "$AMXDIAG" run -m "$T" --amx-scales column
expect_err "not block or row" "$AMXDIAG" run -m "$T" --amx-scales column
expect_rc 0 "$AMXDIAG" run --help
finish

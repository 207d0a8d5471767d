#!/usr/bin/env bash
# amxdiag model create | inspect | presets: the AMX numbers of the sparse Qwen3-30B-A3B
# layout, determinism, JSON schemas, and clear errors for bad input.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"

M="$TEST_TMP/30b.gguf"
expect_rc 0 "$AMXDIAG" model create --preset qwen3-30b-a3b --quant q4_0 --sparse "$M"
expect_out "486\.00 MiB eligible.*all of it attention projections" "$AMXDIAG" model inspect "$M"
expect_out "15\.19 GiB of experts are not eligible: they are consumed by MUL_MAT_ID" "$AMXDIAG" model inspect "$M"
expect_out "^experts .*q4_0 +MUL_MAT_ID +15\.19 GiB" "$AMXDIAG" model inspect "$M"
expect_out "^attention projections +192 .*MUL_MAT +486\.00 MiB" "$AMXDIAG" model inspect "$M"
expect_out "384\.75 MiB eligible" "$AMXDIAG" model inspect "$M" --ngl 10
expect_out "layers 38-47 and the output on the GPU" "$AMXDIAG" model inspect "$M" --ngl 10
"$AMXDIAG" model inspect "$M" --json --ngl 10 >"$TEST_TMP/i.json" || fail "inspect --json failed"
python3 - "$TEST_TMP/i.json" <<'PY' || fail "inspect JSON content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "amxdiag.model.inspect/1", d["schema"]
assert d["totals"]["amx_llamacpp_bytes"] == 403439616, d["totals"]
roles = {r["role"]: r for r in d["roles"]}
assert roles["experts"]["op"] == "MUL_MAT_ID" and roles["experts"]["bytes"] == 16307453952
assert roles["attention"]["amx_llamacpp_bytes"] == 403439616
assert d["model"]["hparams"]["n_expert"] == 128
PY
expect_out "blk\.0\.ffn_gate_exps\.weight .*MUL_MAT_ID +no: MUL_MAT_ID" "$AMXDIAG" model inspect "$M" --tensors
rm -f "$M"

# Deterministic whatever the thread count; the model loads in the engine's checks.
expect_rc 0 "$AMXDIAG" model create --preset tiny --seed 5 --threads 1 "$TEST_TMP/a.gguf"
expect_rc 0 "$AMXDIAG" model create --preset tiny --seed 5 --threads 2 "$TEST_TMP/b.gguf"
cmp -s "$TEST_TMP/a.gguf" "$TEST_TMP/b.gguf" || fail "same seed, different bytes"
"$AMXDIAG" model create --preset tiny --quant q8_0 --json "$TEST_TMP/c.gguf" >"$TEST_TMP/c.json" || fail "create --json"
grep -q '"schema": "amxdiag.model.create/1"' "$TEST_TMP/c.json" || fail "create JSON schema"
expect_out "^tiny " "$AMXDIAG" model presets
expect_out '"schema": "amxdiag.model.presets/1"' "$AMXDIAG" model presets --json

# Bad input: exit 2, a message naming the problem, no file left behind.
expect_rc 2 "$AMXDIAG" model
expect_rc 2 "$AMXDIAG" model frobnicate
expect_rc 2 "$AMXDIAG" model create --preset nope "$TEST_TMP/x.gguf"
expect_err "unknown preset 'nope'" "$AMXDIAG" model create --preset nope "$TEST_TMP/x.gguf"
expect_rc 2 "$AMXDIAG" model create --preset tiny --quant q4_K "$TEST_TMP/x.gguf"
expect_rc 2 "$AMXDIAG" model create "$TEST_TMP/x.gguf"
expect_rc 2 "$AMXDIAG" model create --preset tiny --layers 0 "$TEST_TMP/x.gguf"
[ -e "$TEST_TMP/x.gguf" ] && fail "a failed create left a file"
expect_rc 2 "$AMXDIAG" model create --preset tiny "$TEST_TMP/no/such/dir/x.gguf"
expect_rc 2 "$AMXDIAG" model inspect "$TEST_TMP/missing.gguf"
expect_err "cannot open model" "$AMXDIAG" model inspect "$TEST_TMP/missing.gguf"
head -c 3000 "$TEST_TMP/a.gguf" >"$TEST_TMP/trunc.gguf"
expect_rc 2 "$AMXDIAG" model inspect "$TEST_TMP/trunc.gguf"
expect_err "truncated (or corrupt )?GGUF" "$AMXDIAG" model inspect "$TEST_TMP/trunc.gguf"
printf 'not a gguf file at all, really' >"$TEST_TMP/junk.gguf"
expect_err "not a GGUF file" "$AMXDIAG" model inspect "$TEST_TMP/junk.gguf"
expect_rc 2 "$AMXDIAG" model inspect "$TEST_TMP/a.gguf" --ngl x
# Ctrl-C during a create: exit 2, and neither the model nor a temporary file is left.
mkdir "$TEST_TMP/int"
"$AMXDIAG" model create --preset qwen3-moe-small --threads 1 "$TEST_TMP/int/m.gguf" 2>"$TEST_TMP/int.err" &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 2 ] || fail "interrupted create exited $rc, expected 2"
grep -q "interrupted" "$TEST_TMP/int.err" || fail "interrupted create: $(cat "$TEST_TMP/int.err")"
[ -z "$(ls -A "$TEST_TMP/int")" ] && true || fail "interrupted create left files: $(ls -A "$TEST_TMP/int")"
expect_rc 0 "$AMXDIAG" model --help
expect_out "usage: amxdiag model create" "$AMXDIAG" model --help
finish

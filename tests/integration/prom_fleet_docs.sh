#!/usr/bin/env bash
# docs/fleet.md: the Grafana dashboard JSON parses (python3 -m json.tool) and is a
# dashboard with the promised panels; the Prometheus configuration and alert rules pass
# promtool check config / check rules; every amxdiag_* metric they query is one amxdiag
# produces (a name in the renderers' sources or in the rendered bus fixture).
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed"
DOC="$SRC_DIR/docs/fleet.md"
[ -f "$DOC" ] || { fail "missing $DOC"; finish; }

python3 - "$DOC" "$TEST_TMP" <<'PY' || fail "could not extract the code blocks"
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"^```(\w+)\n(.*?)^```$", text, re.S | re.M)
js = [b for lang, b in blocks if lang == "json"]
ys = [b for lang, b in blocks if lang == "yaml"]
assert len(js) == 1, "expected one json block, found %d" % len(js)
assert len(ys) == 2, "expected two yaml blocks (prometheus.yml, rules), found %d" % len(ys)
open(sys.argv[2] + "/dashboard.json", "w").write(js[0])
open(sys.argv[2] + "/prometheus.yml", "w").write(ys[0])
open(sys.argv[2] + "/amxdiag-rules.yml", "w").write(ys[1])
PY
python3 -m json.tool "$TEST_TMP/dashboard.json" >/dev/null 2>"$TEST_TMP/json.err" ||
    fail "the dashboard JSON does not parse: $(cat "$TEST_TMP/json.err")"
python3 - "$TEST_TMP/dashboard.json" <<'PY' || fail "dashboard content"
import json, sys
d = json.load(open(sys.argv[1]))
titles = [p["title"] for p in d["panels"]]
for want in ("AMX share", "Memory bandwidth vs measured peak", "GPU busy", "Tokens per second"):
    assert any(t.startswith(want) for t in titles), (want, titles)
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
for p in d["panels"]:
    assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
    g = p["gridPos"]
    assert g["x"] + g["w"] <= 24, p["title"]
assert d["templating"]["list"][0]["name"] == "host"
PY

if command -v promtool >/dev/null; then
    (cd "$TEST_TMP" && promtool check config prometheus.yml) >"$TEST_TMP/cfg.out" 2>&1 ||
        fail "promtool check config: $(cat "$TEST_TMP/cfg.out")"
    promtool check rules "$TEST_TMP/amxdiag-rules.yml" >"$TEST_TMP/rules.out" 2>&1 ||
        fail "promtool check rules: $(cat "$TEST_TMP/rules.out")"
else
    echo "note: promtool not found (Debian package prometheus): configuration and rules not checked"
fi

# Every queried amxdiag_* name must be produced by amxdiag.
python3 - "$TEST_TMP" "$SRC_DIR" <<'PY' || fail "the dashboard or the rules query metrics amxdiag does not produce"
import glob, re, sys
tmp, src = sys.argv[1:3]
known = set()
for f in ("probe/probe_prom.c", "profiler/export_cmd.c", "reports/prom_bus.c"):
    known |= set(re.findall(r'"(amxdiag_[a-z0-9_]+)"', open("%s/%s" % (src, f)).read()))
known |= set(re.findall(r"^(amxdiag_[a-z0-9_]+)", open(src + "/tests/fixtures/prometheus/bus-record.prom").read(), re.M))
used = set()
for f in ("dashboard.json", "amxdiag-rules.yml"):
    used |= set(re.findall(r"\b(amxdiag_[a-z0-9_]+)", open(tmp + "/" + f).read()))
missing = sorted(used - known)
assert not missing, missing
print("dashboard and rules query %d amxdiag metrics, all produced" % len(used))
PY
finish

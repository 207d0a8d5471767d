#!/usr/bin/env bash
# amxdiag export end to end: a real Prometheus server (Debian's prometheus package) on a
# loopback port scrapes `amxdiag export` every second; its HTTP API must then hold the
# exporter's metrics with the expected names and labels, and the target must be up.
# Also: /metrics passes promtool, /healthz is 200 while the session runs and 503 during
# --linger, SIGTERM ends the session with 128+15, a non-loopback --listen and a port in
# use are refused (exit 2) before the command runs, --json summarises the HTTP traffic;
# the session options are the shared parser's (-e cpu, --no-confirm; --sanitize refused).
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v curl >/dev/null || skip "curl is needed"
command -v python3 >/dev/null || skip "python3 is needed"
PROM=$(command -v prometheus || true)
PROMTOOL=$(command -v promtool || true)

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TEST_TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

# The workload: half-busy for up to 60 s (SIGTERM ends it sooner).
cat >"$TEST_TMP/work.py" <<'PY'
import time
end = time.time() + 60
while time.time() < end:
    t = time.time()
    while time.time() - t < 0.05:
        pass
    time.sleep(0.05)
PY

"$AMXDIAG" export --listen 127.0.0.1:0 --port-file "$TEST_TMP/port" --out "$TEST_TMP/run.json" -i 200 \
    -- python3 "$TEST_TMP/work.py" >"$TEST_TMP/export.out" 2>"$TEST_TMP/export.err" &
EXP=$!
PIDS+=("$EXP")
wait_file "$TEST_TMP/port" || { cat "$TEST_TMP/export.err"; fail "export did not write --port-file"; finish; }
ADDR=$(cat "$TEST_TMP/port")
grep -q "serving http://$ADDR/metrics" "$TEST_TMP/export.err" || fail "no 'serving' line: $(cat "$TEST_TMP/export.err")"
sleep 0.6   # a few sampling intervals

code=$(curl -s -o "$TEST_TMP/scrape.prom" -w '%{http_code} %{content_type}' "http://$ADDR/metrics")
[ "$code" = "200 text/plain; version=0.0.4; charset=utf-8" ] || fail "/metrics: $code"
if [ -n "$PROMTOOL" ]; then
    "$PROMTOOL" check metrics <"$TEST_TMP/scrape.prom" >"$TEST_TMP/lint" 2>&1 || fail "promtool: $(head -c 800 "$TEST_TMP/lint")"
fi
grep -q '^amxdiag_export_session_running 1$' "$TEST_TMP/scrape.prom" || fail "session_running is not 1"
grep -q '^amxdiag_build_info{version="' "$TEST_TMP/scrape.prom" || fail "no build_info"
grep -Eq '^amxdiag_workload_cpu_ratio [0-9.e+-]+$' "$TEST_TMP/scrape.prom" || fail "no workload CPU from the sampler"
grep -Eq '^amxdiag_numa_resident_bytes\{node="[0-9]+"\} [0-9]+$' "$TEST_TMP/scrape.prom" || fail "no per-node resident bytes"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/healthz")" = 200 ] || fail "/healthz is not 200 while running"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDR/nope")" = 404 ] || fail "unknown path is not 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x "http://$ADDR/metrics")" = 405 ] || fail "POST is not 405"

if [ -z "$PROM" ]; then
    echo "SKIP: prometheus is not installed (Debian package prometheus): no end-to-end scrape"
    kill -TERM "$EXP"; wait "$EXP"; PIDS=()
    finish
fi

PPORT=$(free_port)
cat >"$TEST_TMP/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: amxdiag
    static_configs:
      - targets: ["$ADDR"]
        labels: {host: "test-node"}
YML
"$PROM" --config.file="$TEST_TMP/prometheus.yml" --storage.tsdb.path="$TEST_TMP/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" --log.level=warn >"$TEST_TMP/prom.log" 2>&1 &
PIDS+=("$!")

query() { # PROMQL -> JSON result array on stdout
    curl -s --max-time 2 -G "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"]=="success"; print(json.dumps(d["data"]["result"]))' 2>/dev/null
}
ok=0
for _ in $(seq 60); do   # Prometheus starts in ~2 s and scrapes within 1 s
    r=$(query 'amxdiag_export_session_running{job="amxdiag"}')
    if [ -n "$r" ] && [ "$r" != "[]" ]; then ok=1; break; fi
    sleep 0.25
done
[ "$ok" = 1 ] || { fail "Prometheus never stored amxdiag_export_session_running: $(tail -5 "$TEST_TMP/prom.log")"; }
sleep 1.2   # one more scrape, so that series sampled after the first scrape are there too
python3 - "$PPORT" <<'PY' || fail "Prometheus query results"
import json, sys, urllib.request, urllib.parse
base = "http://127.0.0.1:%s/api/v1/" % sys.argv[1]
def q(expr):
    d = json.load(urllib.request.urlopen(base + "query?" + urllib.parse.urlencode({"query": expr}), timeout=3))
    assert d["status"] == "success", d
    return d["data"]["result"]
up = q('up{job="amxdiag"}')
assert up and up[0]["value"][1] == "1", up
assert up[0]["metric"]["host"] == "test-node"
r = q("amxdiag_export_session_running")
assert r[0]["value"][1] == "1", r
assert q("amxdiag_workload_cpu_ratio"), "no amxdiag_workload_cpu_ratio"
nodes = q("amxdiag_numa_resident_bytes")
assert nodes and all("node" in s["metric"] for s in nodes), nodes
assert float(nodes[0]["value"][1]) > 0
assert q("amxdiag_export_scrapes_total")
assert q('amxdiag_build_info{version=~".+"}')
# metadata: HELP and TYPE arrived
md = json.load(urllib.request.urlopen(base + "metadata?metric=amxdiag_workload_cpu_ratio", timeout=3))["data"]
assert md["amxdiag_workload_cpu_ratio"][0]["type"] == "gauge", md
t = json.load(urllib.request.urlopen(base + "targets", timeout=3))["data"]["activeTargets"]
assert t and t[0]["health"] == "up" and not t[0]["lastError"], t
print("prometheus: up=1, %d node series, scrape duration %.4f s" % (len(nodes), t[0]["lastScrapeDuration"]))
PY

kill -TERM "$EXP"
wait "$EXP"
rc=$?
PIDS=("${PIDS[@]:1}")
[ "$rc" -eq 143 ] || fail "SIGTERM: export exited $rc, expected 143 (128+15): $(tail -3 "$TEST_TMP/export.err")"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"]=="interrupted", r["status"]' "$TEST_TMP/run.json" ||
    fail "run record after SIGTERM: not written or status not 'interrupted'"

# --linger: the final values stay; /healthz says 503; --json summarises the traffic.
"$AMXDIAG" export --listen 127.0.0.1:0 --port-file "$TEST_TMP/port2" --out "$TEST_TMP/run2.json" --linger 3 --json \
    -- sleep 0.3 >"$TEST_TMP/sum.json" 2>"$TEST_TMP/e2.err" &
E2=$!
PIDS+=("$E2")
wait_file "$TEST_TMP/port2" || fail "no port file (linger run)"
A2=$(cat "$TEST_TMP/port2")
sleep 1.2
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$A2/healthz")" = 503 ] || fail "/healthz is not 503 during --linger"
curl -s "http://$A2/metrics" | grep -q '^amxdiag_export_session_running 0$' || fail "session_running is not 0 during --linger"
wait "$E2"
rc=$?
PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")
[ "$rc" -eq 0 ] || fail "linger run exited $rc"
python3 - "$TEST_TMP/sum.json" <<'PY' || fail "--json summary: $(cat "$TEST_TMP/sum.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "amxdiag.export/1" and d["exit_code"] == 0
assert d["http"]["scrapes"] >= 1 and d["http"]["requests"] >= 2, d["http"]
PY

# Refusals come before the command runs.
expect_rc 2 "$AMXDIAG" export --listen 0.0.0.0:0 -- touch "$TEST_TMP/ran"
grep -q -- "--listen-any" "$TEST_TMP/err" || fail "non-loopback refusal does not name --listen-any: $(cat "$TEST_TMP/err")"
[ -e "$TEST_TMP/ran" ] && fail "the command ran although the address was refused"
"$AMXDIAG" export --listen 127.0.0.1:0 --port-file "$TEST_TMP/port3" --out "$TEST_TMP/run3.json" -- sleep 3 \
    >/dev/null 2>&1 &
E3=$!
PIDS+=("$E3")
wait_file "$TEST_TMP/port3" || fail "no port file (port-in-use run)"
expect_rc 2 "$AMXDIAG" export --listen "$(cat "$TEST_TMP/port3")" -- touch "$TEST_TMP/ran"
grep -q "Address already in use" "$TEST_TMP/err" || fail "port in use: $(cat "$TEST_TMP/err")"
[ -e "$TEST_TMP/ran" ] && fail "the command ran although the port was in use"
expect_rc 2 "$AMXDIAG" export --listen 127.0.0.1:notaport -- true
expect_rc 2 "$AMXDIAG" export --http-threads 0 -- true
expect_rc 2 "$AMXDIAG" export --bogus
expect_out "--listen ADDR:PORT" "$AMXDIAG" export --help
# The session options are the shared parser's (those of profile and top).
for o in "--events SETS" "--no-confirm" "--cpu-kernels K" "--n-prompt N" "--http-nice N" "--json"; do
    grep -q -- "$o" "$TEST_TMP/out" || fail "export --help lacks $o"
done
expect_rc 0 "$AMXDIAG" export --listen 127.0.0.1:0 -e cpu --no-confirm --out "$TEST_TMP/run4.json" -- true
[ -s "$TEST_TMP/run4.json" ] || fail "export -e cpu wrote no record"
expect_rc 2 "$AMXDIAG" export --sanitize -- touch "$TEST_TMP/ran"
grep -q "profile --sanitize" "$TEST_TMP/err" || fail "--sanitize refusal gives no hint: $(cat "$TEST_TMP/err")"
[ -e "$TEST_TMP/ran" ] && fail "the command ran although --sanitize was refused"
expect_rc 2 "$AMXDIAG" export --pid 1 -- true
expect_rc 2 "$AMXDIAG" export --duration 1 -- true
expect_rc 2 "$AMXDIAG" export --cpu-kernels ref -- true
expect_rc 2 "$AMXDIAG" export -e nosuchset -- true
grep -q "unknown event set" "$TEST_TMP/err" || fail "bad -e: $(cat "$TEST_TMP/err")"
expect_out "export" "$AMXDIAG" --help
finish

#!/usr/bin/env bash
# amxdiag profile without a command: the built-in path in process, with its phases, ops and
# per-phase ISA shares in the record.
set -u
. "$(dirname "$0")/lib/adg.sh"

command -v python3 >/dev/null || skip "python3 is needed to read the records"
grep -qw avx512f /proc/cpuinfo || skip "the built-in path's avx512 kernels need AVX-512F"
if [ "$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 3)" -gt 2 ] && [ "$(id -u)" -ne 0 ]; then
    skip "perf_event_paranoid > 2: perf_event_open is not allowed for this user"
fi
export XDG_CACHE_HOME="$TEST_TMP/cache" # the default model is created there
R="$TEST_TMP/run.json"
py() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($1)" "$2"; }
want() {
    local got
    got=$(py "$1" "$3" 2>&1) || { fail "cannot evaluate $1 on $3: $got"; return; }
    [ "$got" = "$2" ] || fail "$1 = '$got', expected '$2'"
}

expect_rc 2 "$AMXDIAG" profile --cpu-kernels bogus
expect_rc 2 "$AMXDIAG" profile --cpu-kernels avx512 -- true   # engine options with a command
expect_rc 2 "$AMXDIAG" profile --amx-scales diagonal
expect_rc 2 "$AMXDIAG" profile --amx-scales row -- true
expect_rc 0 "$AMXDIAG" profile -q -e sampling,numa -o "$R" --cpu-kernels avx512 --n-prompt 64 -n 16 -r 2 -t 2
want 'r["status"]' complete "$R"
if python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(any(u['collector']=='sampler' for u in r['unavailable']))" "$R"; then
    :
else
    skip "cpu-clock sampling is not possible here (see the record's unavailable list)"
fi
want 'r["workload"]["builtin"]' True "$R"
want 'r["workload"]["amx_scales"]' block "$R"
want 'sorted(t["test"] for t in r["workload"]["results"])' "['pp64', 'tg16']" "$R"
want 'r["workload"]["recognised"]' "amxdiag engine" "$R"
want 'sorted(r["isa_share"]["phases"])' "['generation', 'prompt']" "$R"
want 'r["isa_share"]["by_function"]["amx"]' 0.0 "$R"
want 'any(f["class"] == "avx512" for f in r["hot_functions"])' True "$R"
want 'len(r["ops"]) == 2 and len(r["ops"][0]["ops"]) > 0' True "$R"
want 'len(r["memory"]["estimated"])' 2 "$R"
want 'any(e["kind"] == "phase" and e["name"] == "prompt" for e in r["events"])' True "$R"
# the sampling thread is not the workload: no profiler function among the hot ones
want 'any(f["function"].startswith("prof_") or f["function"] == "sampler_main" for f in r["hot_functions"] if f["share"] > 5)' False "$R"

# --amx-scales row where no tiles run: the workload fails with the reason, exit 2
expect_rc 2 "$AMXDIAG" profile -q -e sampling -o "$R" --cpu-kernels avx512 --amx-scales row --n-prompt 16 -n 2 -r 1 -t 2
want 'r["status"]' workload-failed "$R"
want 'r["workload"]["amx_scales"]' row "$R"

# a model that does not exist: the record says workload-failed, exit 2
expect_rc 2 "$AMXDIAG" profile -q -o "$R" -m "$TEST_TMP/none.gguf"
want 'r["status"]' workload-failed "$R"
expect_err "cannot open model" "$AMXDIAG" profile -q -o "$R" -m "$TEST_TMP/none.gguf"
finish

#!/usr/bin/env bash
# amxdiag report on the AMX + GPU machine, in one call (issue 10's "done when"):
#  1. the probe's ceilings (probe --bench), so that reports can judge bandwidth;
#  2. two profiled built-in runs of the same synthetic model (qwen3-moe-small, q4_0),
#     --cpu-kernels avx512 and --cpu-kernels amx, and their regression report in
#     Markdown, HTML and JSON;
#  3. each planted CUDA fault (amxdiag bench kernels --gpu --inject-fault NAME) under
#     amxdiag profile, and the illegal-access report of each record; the async fault once
#     more with --sanitize (compute-sanitizer records) when compute-sanitizer is there.
#   usage: tests/device/report.sh BUILD_DIR [quick]   (outputs go to $OUT, default ./device-out)
# BUILD_DIR is a RelWithDebInfo build with BUILD_DIR/devlibs (tests/device/bundle-libs.sh).
# "quick" uses the tiny model (seconds) instead of qwen3-moe-small.  Every step is bounded
# (about 4 minutes in all, 8 at worst).  The device tool returns at most 8 files: summary.txt,
# compare.md, compare.html, compare.json, crash-async-before-get_rows.md, crash-matvec-oob.md,
# crash-get_rows-oob.md and all.tgz (the records, every report and the logs).
set -u
build=${1:?usage: report.sh BUILD_DIR [quick]}
quick=${2:-}
out=${OUT:-device-out}
mkdir -p "$out"
work=$(mktemp -d /tmp/amxdiag-report-XXXXXX)
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_CACHE_HOME=/tmp/amxdiag-report-cache
bin="$PWD/$build/amxdiag"
sum="$out/summary.txt"
log="$work/log.txt"
: >"$sum"
: >"$log"
step() { echo "== $* ($(date -u +%T))" | tee -a "$sum" >>"$log"; }
# run LABEL WANT_RC TIMEOUT CMD...: output to the log, the exit code to the summary
run() {
    local label=$1 want=$2 t=$3; shift 3
    timeout "$t" "$@" >>"$log" 2>&1
    local rc=$?
    echo "$label exit $rc$([ "$rc" = "$want" ] || echo " UNEXPECTED (wanted $want)")" | tee -a "$sum" >>"$log"
    return 0
}
# expect LABEL FILE REGEX: whether a report says what it must
expect() {
    if grep -Eq -- "$3" "$2" 2>/dev/null; then echo "$1: ok ($3)" >>"$sum"; else echo "$1: MISSING /$3/" >>"$sum"; fi
}

step machine
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo; grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '
  echo; nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>&1; } >>"$sum" 2>&1

step "probe --bench (ceilings for the reports)"
run "probe --bench" 0 90 "$bin" probe --only cpu --bench

step "model"
if [ "$quick" = quick ]; then
    model=()   # the built-in default (tiny)
    args=(--n-prompt 128 -n 32 -r 2)
else
    run "model create" 0 120 "$bin" model create --preset qwen3-moe-small --quant q4_0 --threads "$(nproc)" \
        "$work/small.gguf"
    model=(-m "$work/small.gguf")
    args=(--n-prompt 512 -n 64 -r 2)
    run "model inspect" 0 30 "$bin" model inspect "$work/small.gguf"
fi

# The built-in path profiled in process: the record then holds the engine's phase markers
# and per-op records, which the findings need (an external `amxdiag run` shows none).
for k in avx512 amx; do
    step "profile of the built-in path --cpu-kernels $k"
    run "profile $k" 0 180 "$bin" profile --quiet --out "$work/run-$k.json" \
        "${model[@]}" --cpu-kernels "$k" -t "$(nproc)" "${args[@]}"
done

step "regression report avx512 (base) vs amx (new)"
for f in md html json; do
    run "report --compare --format $f" 1 60 "$bin" report --compare "$work/run-avx512.json" "$work/run-amx.json" \
        --format "$f" -o "$out/compare.$f"
done
for k in avx512 amx; do
    run "report run-$k" 0 30 "$bin" report "$work/run-$k.json" -o "$work/report-$k.md"
done
expect compare "$out/compare.md" '`phase-speed`'
expect compare "$out/compare.md" 'Faster setting: prompt → .*generation → '
expect compare "$out/compare.md" '^\| tokens/s, generation \| [0-9.]+ t/s \| [0-9.]+ t/s'
expect compare "$out/compare.md" 'CPU time in AMX functions \| [0-9.]+% \| [0-9.]+%'
expect compare "$out/compare.md" '`amx-prompt-only`|`tiles-small-m`|`generation-memory-bound`|`op-delta`'
sed -n '3p' "$out/compare.md" >>"$sum"

for f in async-before-get_rows matvec-oob get_rows-oob; do
    step "profile of the planted fault $f"
    run "profile fault $f" 1 120 "$bin" profile --quiet --out "$work/crash-$f.json" -- \
        "$bin" bench kernels --gpu --inject-fault "$f"
    run "report --crash $f" 1 30 "$bin" report --crash "$work/crash-$f.json" -o "$out/crash-$f.md"
    run "report --crash $f html" 1 30 "$bin" report --crash "$work/crash-$f.json" --format html \
        -o "$work/crash-$f.html"
    expect "crash $f" "$out/crash-$f.md" "\| kernel that faulted \| (launch #[0-9]+ )?'kern_"
    sed -n '3p' "$out/crash-$f.md" >>"$sum"
done
expect "crash async-before-get_rows" "$out/crash-async-before-get_rows.md" "kernel that faulted \| .*'kern_add'"
expect "crash async-before-get_rows" "$out/crash-async-before-get_rows.md" '`reporter-not-faulting`'

if command -v compute-sanitizer >/dev/null; then
    step "the async fault again with --sanitize"
    run "profile --sanitize async" 1 240 "$bin" profile --quiet --sanitize --out "$work/crash-san.json" -- \
        "$bin" bench kernels --gpu --inject-fault async-before-get_rows
    run "report --crash sanitized" 1 30 "$bin" report --crash "$work/crash-san.json" -o "$work/crash-san.md"
    expect "crash sanitized" "$work/crash-san.md" 'compute-sanitizer'
fi

grep -q UNEXPECTED "$sum" && echo "some steps exited unexpectedly" >>"$sum"
cp "$sum" "$work/"
tar czf "$out/all.tgz" -C "$work" . 2>>"$sum"
rm -rf "$work"
exit 0

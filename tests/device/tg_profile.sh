#!/usr/bin/env bash
# Where token generation's CPU time goes (about 40 s): qwen3-moe-small q4_0 and q8_0
# (created here), `amxdiag run -p 0 -n 128 -r 3` per kernel set for the t/s, then the
# same generation under `amxdiag profile` (cpu-clock sampling, spin-wait share, per-op
# records) with its Markdown report.
#   usage: OUT=DIR tests/device/tg_profile.sh BUILD_DIR   (outputs: $OUT/summary.txt,
#   tg-<quant>.json records, tg-<quant>.md reports)
set -u
build=${1:?usage: tg_profile.sh BUILD_DIR}
out=${OUT:-./tg-profile-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
amx="$PWD/$build/amxdiag"
threads=${THREADS:-$(nproc)}
work=$(mktemp -d /tmp/amxdiag-tg-XXXX)
s="$out/summary.txt"
: >"$s"
lscpu | grep -E "Model name|^CPU\(s\)|MHz" >>"$s"
for q in q4_0 q8_0; do
    m="$work/small-$q.gguf"
    timeout 60 "$amx" model create --preset qwen3-moe-small --quant $q --threads "$threads" "$m" >/dev/null 2>&1
    for k in amx avx512; do
        echo "== $q $k: run -p 0 -n 128 -r 3" >>"$s"
        timeout 40 "$amx" run -m "$m" --cpu-kernels $k -p 0 -n 128 -r 3 -t "$threads" >"$work/o" 2>&1
        echo "exit $?" >>"$s"
        grep -E "^\| qwen3moe" "$work/o" >>"$s"
    done
    echo "== $q amx: profile -n 128 -r 2" >>"$s"
    timeout 60 "$amx" profile -q -o "$out/tg-$q.json" -m "$m" --cpu-kernels amx --n-prompt 0 -n 128 -r 2 \
        -t "$threads" >>"$s" 2>&1
    echo "exit $?" >>"$s"
    timeout 30 "$amx" report "$out/tg-$q.json" --format md -o "$out/tg-$q.md" >>"$s" 2>&1
done
rm -rf "$work"
cat "$s"

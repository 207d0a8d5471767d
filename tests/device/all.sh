#!/usr/bin/env bash
# Runs several device scripts in one call of the device machine and packs each one's
# outputs into $OUT/<name>.tgz (the device tool brings back at most 8 files).
#   usage: tests/device/all.sh BUILD_DIR SECONDS:SCRIPT[:ARG] [SECONDS:SCRIPT[:ARG] ...]
# e.g.   tests/device/all.sh build-dev 90:probe_cpu 60:probe_gpu 120:report:quick
set -u
build=${1:?usage: all.sh BUILD_DIR SECONDS:SCRIPT ...}
shift
final=${OUT:?OUT must be set}
here=$(cd "$(dirname "$0")" && pwd)
for spec in "$@"; do
    secs=${spec%%:*}
    rest=${spec#*:}
    name=${rest%%:*}
    arg=""
    [ "$rest" != "$name" ] && arg=${rest#*:}
    work=$(mktemp -d "/tmp/amxdiag-dev-$name-XXXX")
    start=$(date +%s)
    OUT=$work timeout --kill-after=10 "$secs" bash "$here/$name.sh" "$build" $arg >"$work/stdout.txt" 2>&1
    rc=$?
    echo "$name: exit $rc after $(( $(date +%s) - start )) s (limit $secs s)" | tee -a "$final/summary.txt"
    # The tool brings back files of at most 16 MiB: leave out what would not fit.
    find "$work" -type f -size +6M -printf '%P %s bytes: left on the device\n' -delete >>"$final/summary.txt"
    tar czf "$final/$name.tgz" -C "$work" .
done

#!/usr/bin/env bash
# Makes a copy of a build directory small enough to carry to the device machine (64 MiB
# for the whole tree): every file except CMake's own (CMakeFiles/, *.cmake, Makefiles,
# objects and static libraries), ELF files stripped of debug info (symbols stay, so the
# profiler can still name functions), plus the bundled shared libraries.
#   usage: tests/device/slim-build.sh BUILD_DIR DEST_DIR
set -euo pipefail
src=${1:?usage: slim-build.sh BUILD_DIR DEST_DIR}
dst=${2:?usage: slim-build.sh BUILD_DIR DEST_DIR}
here=$(cd "$(dirname "$0")" && pwd)
"$here/bundle-libs.sh" "$src" >/dev/null
rm -rf "$dst"
mkdir -p "$dst"
(cd "$src" && find . -type f \
    -not -path '*/CMakeFiles/*' -not -path './Testing/*' \
    -not -name '*.o' -not -name '*.a' -not -name '*.cmake' -not -name 'Makefile' \
    -not -name 'CMakeCache.txt' -not -name 'fuzz_*' -not -name 'kern_kernels.fatbin' -not -name '*.log' -not -name '*.d' -print0) |
while IFS= read -r -d '' f; do
    mkdir -p "$dst/$(dirname "$f")"
    cp -p "$src/$f" "$dst/$f"
    if file -b "$dst/$f" | grep -q '^ELF'; then
        strip --strip-debug "$dst/$f" 2>/dev/null || true
    fi
done
du -sh "$dst"

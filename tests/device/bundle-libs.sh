#!/usr/bin/env bash
# Copies the non-system shared libraries amxdiag and the test binaries of BUILD_DIR need
# (jansson, libpfm4, Zydis, libnuma, cmocka, ...) into BUILD_DIR/devlibs, so that a build
# made on Debian 12 runs on a machine where those packages are not installed. On that
# machine: export LD_LIBRARY_PATH=BUILD_DIR/devlibs.
set -euo pipefail
build=${1:?usage: bundle-libs.sh BUILD_DIR}
mkdir -p "$build/devlibs"
find "$build" -type f -perm -u+x -not -path '*/devlibs/*' -not -path '*/CMakeFiles/*' | while read -r exe; do
    file -b "$exe" 2>/dev/null | grep -q ELF || continue
    ldd "$exe" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' | while read -r lib; do
    cp -L "$lib" "$build/devlibs/"
done
ls "$build/devlibs"

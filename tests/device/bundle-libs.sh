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
    ldd "$exe" 2>/dev/null | awk '/=> \//{print $3}' || true   # not every ELF is dynamic (test fixtures)
# GnuTLS and its dependencies (pulled in by libmicrohttpd) are part of every Ubuntu/Debian
# base system: bundling Debian 12's copies would shadow the target's for every program run
# under LD_LIBRARY_PATH (curl, python's ctypes); libmicrohttpd uses the target's.
done | sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
    grep -Ev '/(libgnutls|libp11-kit|libidn2|libunistring|libtasn1|libnettle|libhogweed|libgmp|libffi)\.so' | while read -r lib; do
    cp -L "$lib" "$build/devlibs/"
done
ls "$build/devlibs"

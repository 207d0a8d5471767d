#!/usr/bin/env bash
# Installs the Debian 12 packages amxdiag builds and tests with. Idempotent: does nothing
# when everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libexpat1-dev   # compute-sanitizer --xml reports (profiler/sanitizer_parse.c)
    libpfm4-dev libnuma-dev libncurses-dev libzydis-dev libelf-dev libjansson-dev
    libzstd-dev libcmocka-dev libmicrohttpd-dev
    numactl tmux python3 clang valgrind
    prometheus curl   # tests of amxdiag export / probe --format prometheus (prometheus, promtool)
    chromium          # amxdiag report --format html is checked in a headless browser
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

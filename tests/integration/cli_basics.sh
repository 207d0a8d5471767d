#!/usr/bin/env bash
# The dispatcher: --help, --version, unknown commands and options, exit codes.
set -u
. "$(dirname "$0")/lib/adg.sh"

expect_rc 0 "$AMXDIAG" --help
expect_out "usage: amxdiag" "$AMXDIAG" --help
expect_rc 0 "$AMXDIAG" --version
expect_out "^amxdiag [0-9]+\.[0-9]+\.[0-9]+" "$AMXDIAG" --version
expect_rc 2 "$AMXDIAG"
expect_rc 2 "$AMXDIAG" no-such-command
expect_err "unknown command 'no-such-command'" "$AMXDIAG" no-such-command
expect_rc 2 "$AMXDIAG" probe --no-such-option
expect_rc 2 "$AMXDIAG" probe --only cpu,bogus
expect_err "unknown section 'bogus'" "$AMXDIAG" probe --only cpu,bogus
expect_rc 0 "$AMXDIAG" probe --help
for cmd in probe bench model run profile top report; do
    expect_rc 0 "$AMXDIAG" help "$cmd"
done
# The binary has no link-time dependency on NVIDIA libraries.
if ldd "$AMXDIAG" | grep -Ei 'libcuda|libcudart|libcupti|libnvidia'; then
    fail "amxdiag links an NVIDIA library"
fi
finish

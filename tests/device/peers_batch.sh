#!/usr/bin/env bash
# tests/device/peers.sh inside a tests/device/all.sh batch: all.sh passes the build dir (the
# amxdiag to compare) first; the peers' binaries come from $PEERS (default
# peers-carry/peers.tar.xz, built elsewhere: see peers.sh).
#   usage: OUT=DIR tests/device/peers_batch.sh BUILD_DIR
exec bash "$(dirname "$0")/peers.sh" "${PEERS:-peers-carry/peers.tar.xz}" "${1:?usage: peers_batch.sh BUILD_DIR}" "${OUT:?OUT must be set}"

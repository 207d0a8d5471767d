#!/usr/bin/env bash
# Why a peer dies: runs llama.cpp's llama-bench (AMX build, from $PEERS, default
# peers-carry/peers.tar.xz; built elsewhere, see peers.sh) on a tiny amxdiag model, plain and
# under `amxdiag profile`, and keeps the kernel's trap lines (dmesg) with the faulting
# instruction's address, to decode against the same binary where it was built.  ~10 s.
#   usage: OUT=DIR tests/device/peer_crash.sh BUILD_DIR   (output: $OUT/peer_crash.txt)
set -u
build=${1:?usage: peer_crash.sh BUILD_DIR}
out=${OUT:-./peer-crash-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=$(mktemp -d /tmp/amxdiag-peer-crash-XXXX)
exec >"$out/peer_crash.txt" 2>&1
tar -xJf "${PEERS:-peers-carry/peers.tar.xz}" -C "$work" || { echo "cannot unpack the peers"; exit 0; }
lb=$(find "$work" -name llama-bench -type f | head -1)
echo "llama-bench: $lb"
"$build/amxdiag" model create --preset tiny --quant q4_0 "$work/tiny.gguf" >/dev/null
dmesg -c >/dev/null 2>&1
timeout 30 "$lb" -m "$work/tiny.gguf" -p 64 -n 8 -r 1 -t 4
echo "plain: exit $?"
echo "--- dmesg"
dmesg 2>&1 | tail -5
echo "--- amxdiag profile"
timeout 30 "$build/amxdiag" profile -e sampling,cpu -o "$work/rec.json" -- "$lb" -m "$work/tiny.gguf" -p 64 -n 8 -r 1 -t 4
echo "profile: exit $?"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get('status'), r.get('workload',{}).get('signal_name'), json.dumps(r.get('hot_functions',[])[:5]))" "$work/rec.json" 2>&1
echo "--- dmesg"
dmesg 2>&1 | tail -5
echo "--- xtile permission of a fresh process (the probe's view)"
timeout 30 "$build/amxdiag" probe --only cpu 2>&1 | grep -E "amx\.(permission|usable|selftest)" -A2
rm -rf "$work"

#!/usr/bin/env bash
# `amxdiag probe --only gpu` and `--binary`: no NVIDIA link dependency, the GPU section on
# this machine (skip without a driver, real checks with one), fatbin verdicts on the
# committed and nvcc-built fixtures, bad input, and agreement with cuobjdump.
set -u
. "$(dirname "$0")/lib/adg.sh"
command -v python3 >/dev/null || skip "python3 is needed to read the JSON output"

FB=$FIXTURES/fatbin
BFB=$BUILD_DIR/tests/fatbin

# json_get FILE EXPR: evaluates a Python expression over j = the parsed JSON, c = checks by id.
json_get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
c = {k["id"]: k for k in j.get("checks", [])}
try:
    print(eval(sys.argv[2]))
except Exception as e:
    print("ERROR:%s" % e)
EOF
}
# expect_json FILE EXPR WANT
expect_json() {
    local got
    got=$(json_get "$1" "$2")
    [ "$got" = "$3" ] || fail "$2 = '$got', expected '$3'"
}

# No link-time dependency on NVIDIA libraries.
if readelf -d "$AMXDIAG" | grep -Ei 'NEEDED.*(libcuda|libcudart|libcupti|libnvidia)'; then
    fail "amxdiag has a NEEDED entry for an NVIDIA library"
fi
ldd "$AMXDIAG" | grep -Eiq 'libcuda|libcudart|libcupti' && fail "ldd shows an NVIDIA library"

# The GPU section on this machine.
"$AMXDIAG" probe --only gpu --json >"$TEST_TMP/gpu.json" 2>"$TEST_TMP/gpu.err"
rc=$?
expect_json "$TEST_TMP/gpu.json" 'j["schema"]' "amxdiag.probe/1"
if [ ! -e /proc/driver/nvidia ] && ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1'; then
    [ "$rc" -eq 0 ] || fail "probe --only gpu exited $rc without a driver (expected 0: skip, not fail)"
    expect_json "$TEST_TMP/gpu.json" 'c["gpu.driver"]["status"]' "skip"
    expect_out "no NVIDIA driver" "$AMXDIAG" probe --only gpu
else
    # With a driver: every present GPU gets identity, support and both functional tests.
    n=$(json_get "$TEST_TMP/gpu.json" 'len(j["facts"]["gpu"]["devices"])')
    echo "GPUs seen by CUDA: $n (probe exit $rc)"
    for ((i = 0; i < n; i++)); do
        expect_json "$TEST_TMP/gpu.json" "'gpu.$i.device' in c and 'gpu.$i.support' in c" "True"
        expect_json "$TEST_TMP/gpu.json" "c['gpu.$i.selftest.sass']['status'] in ('pass','skip')" "True"
        expect_json "$TEST_TMP/gpu.json" "c['gpu.$i.selftest.ptx']['status'] in ('pass','skip')" "True"
    done
fi

# From here on the GPU section's functional test is not what is tested: skip it (it loads
# the kernels onto every GPU, seconds per run on a machine with GPUs).
export AMXDIAG_PROBE_GPU_SELFTEST=0

# Verdicts: sm_120a-only code fails on CC 9.0 with 209, runs on 12.0, is an arch-specific
# mismatch on 12.1.
expect_rc 1 "$AMXDIAG" probe --only gpu --binary "$FB/sm_120a.fatbin" --cc 9.0 --cc 12.0 --cc 12.1
"$AMXDIAG" probe --only gpu --json --binary "$FB/sm_120a.fatbin" --cc 9.0 --cc 12.0 --cc 12.1 >"$TEST_TMP/a.json"
expect_json "$TEST_TMP/a.json" 'c["binary.0.entries"]["data"]["entries"][0]["name"]' "sm_120a"
expect_json "$TEST_TMP/a.json" 'c["binary.0.cc90"]["status"]' "fail"
expect_json "$TEST_TMP/a.json" 'c["binary.0.cc90"]["data"]["cuda_error"]' "209"
expect_json "$TEST_TMP/a.json" '"no kernel image is available" in c["binary.0.cc90"]["evidence"]' "True"
expect_json "$TEST_TMP/a.json" 'c["binary.0.cc120"]["status"]' "pass"
expect_json "$TEST_TMP/a.json" 'c["binary.0.cc121"]["data"]["outcome"]' "arch_specific_mismatch"
expect_out "will fail: no kernel image for this GPU \(error 209\)" \
    "$AMXDIAG" probe --only gpu -v --binary "$FB/sm_120a.fatbin" --cc 9.0

# SASS + PTX for 9.0: native on 9.0, JIT on 12.0 (a warning, exit 0).
"$AMXDIAG" probe --only gpu --json --binary "$FB/sm_90_compute_90.fatbin" --cc 9.0 --cc 12.0 >"$TEST_TMP/b.json"
expect_json "$TEST_TMP/b.json" 'c["binary.0.cc90"]["data"]["outcome"]' "native"
expect_json "$TEST_TMP/b.json" 'c["binary.0.cc90"]["data"]["chosen"]' "sm_90"
expect_json "$TEST_TMP/b.json" 'c["binary.0.cc120"]["data"]["outcome"]' "ptx_jit"
expect_json "$TEST_TMP/b.json" 'c["binary.0.cc120"]["status"]' "warn"
if [ ! -e /proc/driver/nvidia ]; then
    expect_rc 0 "$AMXDIAG" probe --only gpu --binary "$FB/sm_90_compute_90.fatbin" --cc 9.0 --cc 12.0
fi

# PTX only (zstd) and the compressed variants: PTX versions read from decoded payloads.
"$AMXDIAG" probe --only gpu --json --binary "$FB/compute_120.fatbin" --binary "$FB/compress_speed.fatbin" \
    --binary "$FB/compress_size.fatbin" --binary "$FB/sm_120f.cubin" --cc 12.0 --cc 9.0 >"$TEST_TMP/c.json"
expect_json "$TEST_TMP/c.json" 'c["binary.0.entries"]["data"]["entries"][0]["ptx_version"]' "9.0"
expect_json "$TEST_TMP/c.json" 'c["binary.0.cc120"]["data"]["outcome"]' "ptx_jit"
expect_json "$TEST_TMP/c.json" 'c["binary.0.cc90"]["data"]["outcome"]' "no_binary_for_gpu"
expect_json "$TEST_TMP/c.json" '[e["compression"] for e in c["binary.1.entries"]["data"]["entries"]]' "['nvidia-lz', 'none']"
expect_json "$TEST_TMP/c.json" 'all(e["decoded"] for k in ("binary.1.entries","binary.2.entries") for e in c[k]["data"]["entries"])' "True"
# A standalone CUDA 13 cubin: its ELF header (what cuobjdump and the loader read) says sm_120;
# ptxas's note says it was built as sm_120f.
expect_json "$TEST_TMP/c.json" 'c["binary.3.entries"]["data"]["entries"][0]["name"]' "sm_120"
expect_json "$TEST_TMP/c.json" 'c["binary.3.entries"]["data"]["entries"][0]["cubin"]["ptxas_arch"]' "sm_120f"

# Two containers back to back (two compiled files): each is loaded on its own, so one
# without code for the GPU makes the verdict partial (warn), both without make it fail.
cat "$FB/sm_120a.fatbin" "$FB/sm_90_compute_90.fatbin" >"$TEST_TMP/two.fatbin"
"$AMXDIAG" probe --only gpu --json --binary "$TEST_TMP/two.fatbin" --cc 9.0 --cc 8.9 >"$TEST_TMP/two.json"
expect_json "$TEST_TMP/two.json" 'c["binary.0.entries"]["data"]["containers"]' "2"
expect_json "$TEST_TMP/two.json" 'c["binary.0.cc90"]["status"]' "warn"
expect_json "$TEST_TMP/two.json" 'c["binary.0.cc90"]["data"]["partial"]' "True"
expect_json "$TEST_TMP/two.json" 'c["binary.0.cc90"]["data"]["containers"]["native"]' "1"
expect_json "$TEST_TMP/two.json" 'c["binary.0.cc89"]["status"]' "fail"

# Bad input: exit 2 with a message, never a crash.
head -c 700 "$FB/sm_90_compute_90.fatbin" >"$TEST_TMP/truncated.fatbin"
expect_rc 2 "$AMXDIAG" probe --only gpu --binary "$TEST_TMP/truncated.fatbin" --cc 9.0
expect_err "truncated" "$AMXDIAG" probe --only gpu --binary "$TEST_TMP/truncated.fatbin" --cc 9.0
expect_rc 2 "$AMXDIAG" probe --only gpu --binary "$FB/fixture.cu"
expect_err "neither an ELF file nor a CUDA fatbin" "$AMXDIAG" probe --only gpu --binary "$FB/fixture.cu"
expect_rc 2 "$AMXDIAG" probe --only gpu --binary "$TEST_TMP/does-not-exist"
expect_rc 2 "$AMXDIAG" probe --only gpu --binary "$FB/sm_120a.fatbin" --cc twelve
expect_err "hint: write it as MAJOR.MINOR" "$AMXDIAG" probe --only gpu --binary "$FB/sm_120a.fatbin" --cc twelve
expect_rc 2 "$AMXDIAG" probe --only gpu --cc 12.0
printf '\x7fELF\x02\x01\x01\x00garbage-after-the-ident' >"$TEST_TMP/bad.elf"
expect_rc 2 "$AMXDIAG" probe --only gpu --binary "$TEST_TMP/bad.elf"
# A host binary without device code: a warning, not an error.
"$AMXDIAG" probe --only gpu --json --binary /bin/sh --cc 9.0 >"$TEST_TMP/sh.json"
expect_json "$TEST_TMP/sh.json" 'c["binary.0.entries"]["status"]' "warn"
expect_json "$TEST_TMP/sh.json" '"binary.0.cc90" in c' "False"
[ -e /proc/driver/nvidia ] || expect_rc 0 "$AMXDIAG" probe --only gpu --binary /bin/sh --cc 9.0
expect_out "no CUDA device code" "$AMXDIAG" probe --only gpu -v --binary /bin/sh --cc 9.0

# amxdiag's own embedded kernels (when it was built with nvcc): SASS from sm_75 to sm_121.
if readelf -S "$AMXDIAG" | grep -q '\.nv_fatbin'; then
    "$AMXDIAG" probe --only gpu --json --binary "$AMXDIAG" --cc 9.0 --cc 12.0 --cc 12.1 >"$TEST_TMP/self.json"
    expect_json "$TEST_TMP/self.json" 'c["binary.0.cc90"]["data"]["outcome"]' "native"
    expect_json "$TEST_TMP/self.json" 'c["binary.0.cc120"]["data"]["chosen"]' "sm_120"
    expect_json "$TEST_TMP/self.json" 'c["binary.0.cc121"]["data"]["chosen"]' "sm_121"
fi

# nvcc-built fixtures: the many-arch fatbin and a host executable.
if [ -f "$BFB/many_arch.fatbin" ]; then
    "$AMXDIAG" probe --only gpu --json --binary "$BFB/many_arch.fatbin" --binary "$BFB/fatbin_host_exe" \
        --binary "$BFB/sm_120a.cubin" --cc 8.9 --cc 9.0 --cc 12.1 >"$TEST_TMP/m.json"
    expect_json "$TEST_TMP/m.json" 'len([e for e in c["binary.0.entries"]["data"]["entries"] if e["kind"]=="sass"])' "12"
    expect_json "$TEST_TMP/m.json" 'c["binary.0.cc89"]["data"]["chosen"]' "sm_89"
    expect_json "$TEST_TMP/m.json" 'c["binary.1.cc90"]["data"]["outcome"]' "native"
    expect_json "$TEST_TMP/m.json" 'c["binary.1.cc89"]["data"]["outcome"]' "no_binary_for_gpu"
    expect_json "$TEST_TMP/m.json" 'c["binary.2.entries"]["data"]["entries"][0]["name"]' "sm_120a"
    expect_json "$TEST_TMP/m.json" 'c["binary.2.entries"]["data"]["entries"][0]["cubin"]["ptxas_arch"]' "sm_120a"
    expect_json "$TEST_TMP/m.json" 'c["binary.2.cc121"]["data"]["outcome"]' "arch_specific_mismatch"
fi

# The entry listing agrees with cuobjdump --list-elf --list-ptx, fixture by fixture.
if command -v cuobjdump >/dev/null; then
    files=("$FB"/*.fatbin "$FB"/*.cubin)
    [ -d "$BFB" ] && files+=("$BFB"/*.fatbin "$BFB"/*.cubin "$BFB"/fatbin_host_exe)
    readelf -S "$AMXDIAG" | grep -q '\.nv_fatbin' && files+=("$AMXDIAG")
    for f in "${files[@]}"; do
        theirs=$( { cuobjdump --list-elf "$f" 2>/dev/null | sed -n 's/^ELF file *[0-9]*: .*\.\(sm_[0-9]*[af]\{0,1\}\)\.cubin$/sass \1/p'
                    cuobjdump --list-ptx "$f" 2>/dev/null | sed -n 's/^PTX file *[0-9]*: .*\.\(sm_[0-9]*[af]\{0,1\}\)\.ptx$/ptx \1/p'; } | sort)
        "$AMXDIAG" probe --only gpu --json --binary "$f" >"$TEST_TMP/l.json" 2>/dev/null
        ours=$(json_get "$TEST_TMP/l.json" '"\n".join(sorted("%s sm_%d%s" % (e["kind"], e["arch"], e["variant"] or "") for e in c["binary.0.entries"]["data"]["entries"]))')
        if [ "$theirs" != "$ours" ]; then
            fail "$(basename "$f"): cuobjdump lists [$(echo $theirs)], amxdiag lists [$(echo $ours)]"
        else
            echo "agrees with cuobjdump: $(basename "$f"): $(echo $ours)"
        fi
    done
else
    echo "note: cuobjdump not found; listing agreement not checked here"
fi
finish

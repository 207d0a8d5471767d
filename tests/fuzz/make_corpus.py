#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/<target>/ from the test fixtures.

Usage: make_corpus.py [BUILD_DIR]   (BUILD_DIR: an amxdiag build, for the optional
nvcc-made fatbins in BUILD_DIR/tests/fatbin; the committed fixtures are enough)

Each target's input format is described at the top of tests/fuzz/fuzz_<target>.c; the
byte prefixes below select a target's route (parser, mode, command)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def gguf(build):
    put("gguf", "ggufpy-mixed.gguf", read(FIX, "gguf", "ggufpy-mixed.gguf"))
    # A tiny qwen3moe model cut to its header: every metadata key and tensor info of a
    # real model file, without the megabytes of weights.
    amx = os.path.join(build, "amxdiag") if build else None
    if amx and os.access(amx, os.X_OK):
        with tempfile.TemporaryDirectory() as t:
            for preset in ("tiny", "llama-tiny"):
                p = os.path.join(t, preset + ".gguf")
                subprocess.run([amx, "model", "create", "--preset", preset, "--sparse", p],
                               check=True, stdout=subprocess.DEVNULL)
                data = read(p)
                # The data section starts after the last tensor info, aligned to 32;
                # keep 64 KiB at most.
                put("gguf", preset + "-header.gguf", data[:65536])


def fatbin(build):
    names = ["compress_size.fatbin", "compress_speed.fatbin", "compute_120.fatbin",
             "sm_90_compute_90.fatbin"]
    for n in names:
        put("fatbin", "parse-" + n, b"\x00" + read(FIX, "fatbin", n))
    cubin = read(FIX, "fatbin", "sm_120f.cubin")
    put("fatbin", "cubin-sm_120f", b"\x01" + cubin)
    put("fatbin", "file-sm_120f.cubin", b"\x03" + cubin)
    # LZ streams: the payloads of the speed-compressed fixture's entries.
    data = read(FIX, "fatbin", "compress_speed.fatbin")
    off, k = 0, 0
    while off + 16 <= len(data):
        magic, _ver, hsz, size = struct.unpack_from("<IHHQ", data, off)
        if magic != 0xBA55ED50:
            break
        e, end = off + hsz, off + hsz + size
        while e + 64 <= end:
            kind, _v, ehs, psize, csize = struct.unpack_from("<HHIQI", data, e)
            flags, = struct.unpack_from("<Q", data, e + 40)
            usize, = struct.unpack_from("<Q", data, e + 56)
            if flags & 0x3000 and usize < 65536:
                payload = data[e + ehs:e + ehs + (csize or psize)]
                put("fatbin", "lz-%d" % k, b"\x02" + struct.pack("<H", usize) + payload)
                k += 1
            if kind == 0 or ehs == 0:
                break
            e += ehs + psize
        off = end
    # A host ELF whose .nv_fatbin section holds a fatbin (fatbin_read_file's libelf route).
    with tempfile.TemporaryDirectory() as t:
        c, o = os.path.join(t, "h.c"), os.path.join(t, "h.o")
        open(c, "w").write("int host_stub(void) { return 0; }\n")
        if subprocess.run(["cc", "-c", "-o", o, c]).returncode == 0 and subprocess.run(
                ["objcopy", "--add-section", ".nv_fatbin=" + os.path.join(FIX, "fatbin", "compute_120.fatbin"),
                 o]).returncode == 0:
            put("fatbin", "file-host-elf", b"\x03" + read(o))


def records():
    # every small record fixture (top's and the reports'), the hostile ones included
    d = os.path.join(FIX, "records")
    for n in sorted(os.listdir(d)):
        if n.endswith(".json") and os.path.getsize(os.path.join(d, n)) <= 65536:
            put("record", n, read(d, n))
    extra = os.path.join(HERE, "seeds", "record")
    if os.path.isdir(extra):
        for n in sorted(os.listdir(extra)):
            put("record", n, read(extra, n))


def snapshots():
    d = os.path.join(FIX, "snapshots")
    for n in sorted(os.listdir(d)):
        if n.endswith(".json"):
            put("snapshot", n, read(d, n))


def sanitizer():
    d = os.path.join(FIX, "sanitizer")
    for n in sorted(os.listdir(d)):
        data = read(d, n)
        put("sanitizer", n, (b"\x00" if n.endswith(".xml") else b"\x01") + data)
    put("sanitizer", "nearest", b"\x02" + b"Address 0x7f3a40001000 is out of bounds and is 4096 bytes "
        b"after the nearest allocation at 0x7f3900000000 of size 16777216 bytes")


def frame(rtype, fixed, name=b""):
    payload = fixed + name
    return struct.pack("<IHHI", 0x49474441, 1, rtype, len(payload)) + payload


def inject():
    hello = frame(1, struct.pack("<IIIIQ", 4242, 130001, 13000, 3, 1000))
    name = b"_Z16oob_write_kernelPfi"
    kernel = frame(2, struct.pack("<QQIIII3i3iIIIIII", 10, 30, 7, 1, 0, 1, 128, 1, 1, 256, 1, 1,
                                  32, 0, 0, 0, 0, len(name)), name)
    memcpy = frame(3, struct.pack("<QQQIIII", 40, 50, 4096, 8, 1, 0, 1))
    launch = frame(6, struct.pack("<QQQ8QII3I3IIIII", 1, 5, 0, 0x7f0000000000, 4096, 0, 0, 0, 0, 0, 0,
                                  7, 1, 128, 1, 1, 256, 1, 1, 0, 2, 1234, len(name)), name)
    api = b"cudaStreamSynchronize"
    err = frame(7, struct.pack("<QQIiIIII", 60, 1, 8, 700, 2, 131, 1234, len(api)), api)
    note = b"another CUPTI client holds the subscriber"
    notef = frame(10, struct.pack("<II", 2, len(note)), note)
    flush = frame(11, struct.pack("<QII", 70, 4, 0))
    put("inject", "stream-whole", b"\xff" + hello + launch + kernel + memcpy + err + notef + flush)
    put("inject", "stream-bytewise", b"\x00" + hello + launch + kernel + flush)
    put("inject", "stream-truncated", b"\x03" + hello + launch[:40])


def cli(build):
    def entry(cmd, args, data):
        return bytes([cmd, len(args)]) + b"".join(a.encode() + b"\x00" for a in args) + data
    snap = read(FIX, "snapshots", "emr-kvm-h100.json")
    put("cli", "probe-json", entry(0, ["--json"], snap))
    put("cli", "probe-only-amx-verbose", entry(0, ["--only", "amx,numa", "-v"], snap))
    put("cli", "probe-cc", entry(0, ["--only", "gpu", "--cc", "12.0", "--color", "always"],
                                 read(FIX, "snapshots", "spr-baremetal-pmu.json")))
    gg = read(FIX, "gguf", "ggufpy-mixed.gguf")
    put("cli", "model-inspect-json", entry(1, ["--json", "--ngl", "1"], gg))
    put("cli", "model-inspect-tensors", entry(1, ["--tensors"], gg))
    rec = read(FIX, "records", "top_minimal.json")
    put("cli", "top-replay", entry(2, ["--size", "60x20", "--ascii"], rec))
    put("cli", "top-replay-json", entry(2, ["--json"], rec))
    crash = read(FIX, "records", "report_crash_getrows.json")
    put("cli", "report-md", entry(3, ["@"], rec))
    put("cli", "report-crash-html", entry(3, ["--crash", "@", "--format", "html"], crash))
    put("cli", "report-compare-json", entry(3, ["--compare", "@", "@", "--json", "--exit-zero"], crash))
    put("cli", "report-rules", entry(3, ["--rules", "--json"], b""))


def options():
    def argv(*a):
        return b"\x00".join(x.encode() for x in a)
    put("options", "command", argv("-q", "-o", "r.json", "-e", "amx,sampling", "-F", "499", "--", "sleep", "1"))
    put("options", "pid", argv("--pid", "1234", "--duration", "2", "-i", "50", "--json"))
    put("options", "builtin", argv("-m", "model.gguf", "--n-prompt", "32", "-n", "16", "-r", "2", "--ngl", "4", "-t", "2"))
    put("options", "sanitize", argv("--sanitize", "--gpu-metrics", "--top", "10", "--no-tee", "--", "./app", "--tui"))
    put("options", "bad", argv("--freq", "nope", "--interval=5", "-e", "bogus", "--listen", ":9000"))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else None
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    gguf(build)
    fatbin(build)
    records()
    snapshots()
    sanitizer()
    inject()
    cli(build)
    options()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generates the known-answer vectors of test_kern_quant.c from an independent model of
ggml's reference quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref,
ggml_compute_fp32_to_fp16/bf16): every float32 operation is rounded to float32, fp16 by
struct's round-to-nearest-even binary16 packing.  Run it and paste its output between the
KAT markers of test_kern_quant.c when the vectors change."""
import math
import struct


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def bits(x):
    return struct.unpack('<I', struct.pack('<f', x))[0]


def fp16(x):
    if math.isinf(x) or abs(x) >= 65520.0:       # rounds to infinity
        return 0xfc00 if x < 0 else 0x7c00
    return struct.unpack('<H', struct.pack('<e', x))[0]


def bf16(x):
    u = bits(x)
    if (u & 0x7fffffff) > 0x7f800000:
        return ((u >> 16) | 64) & 0xffff
    return ((u + (0x7fff + ((u >> 16) & 1))) >> 16) & 0xffff


def roundf(x):  # C roundf: half away from zero
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def q8_0(xs):
    out = []
    for b in range(0, len(xs), 32):
        blk = xs[b:b + 32]
        amax = 0.0
        for v in blk:
            amax = max(amax, abs(v))
        d = f32(amax / 127)
        idv = f32(1.0 / d) if d else 0.0
        out += list(struct.pack('<H', fp16(d)))
        out += [roundf(f32(v * idv)) & 0xff for v in blk]
    return out


def q4_0(xs):
    out = []
    for b in range(0, len(xs), 32):
        blk = xs[b:b + 32]
        amax, mx = 0.0, 0.0
        for v in blk:
            if amax < abs(v):
                amax, mx = abs(v), v
        d = f32(mx / -8)
        idv = f32(1.0 / d) if d else 0.0
        out += list(struct.pack('<H', fp16(d)))
        for j in range(16):
            t0 = int(f32(f32(blk[j] * idv) + 8.5))      # C cast truncates toward zero
            t1 = int(f32(f32(blk[j + 16] * idv) + 8.5))
            out.append(min(15, t0) | (min(15, t1) << 4))
    return out


def lcg_floats(n, seed):
    s, r = seed, []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        u = (s >> 40) / float(1 << 24)            # [0,1), 24 bits: exact in float32
        r.append(f32((u - 0.5) * 4.0))
    return r


def row(name, xs):
    print('static const uint32_t %s_in[%d] = {' % (name, len(xs)))
    for i in range(0, len(xs), 8):
        print('    ' + ', '.join('0x%08x' % bits(v) for v in xs[i:i + 8]) + ',')
    print('};')


def bytes_(name, bs):
    print('static const uint8_t %s[%d] = {' % (name, len(bs)))
    for i in range(0, len(bs), 16):
        print('    ' + ', '.join('0x%02x' % b for b in bs[i:i + 16]) + ',')
    print('};')


rand = lcg_floats(128, 42)
edge = [2.5, -2.5, 0.5, -0.5, 1.5, 126.5, -127.0, 3.25] + [0.0] * 8 + [1e-3, -1e-3] + [63.5] * 14
edge4 = [-8.0, 0.5, 1.5, -0.5, 7.5, 8.0, 3.0, -3.5] + [0.25 * i for i in range(24)]
tiny = [1e-9 * (i - 16) for i in range(32)]
zero = [0.0] * 32
allv = rand + edge + edge4 + tiny + zero
row('kat', allv)
bytes_('kat_q8_0', q8_0(allv))
bytes_('kat_q4_0', q4_0(allv))
fv = [0.0, -0.0, 1.0, 65504.0, 65520.0, 1e-8, 6e-8, 3.0e-5, -2.0 / 3.0, 1e30, float('inf'),
      f32(1.0 + 2**-11), f32(1.0 + 3 * 2**-11), f32(1.0 + 2**-8), f32(1.0 + 3 * 2**-8)]
row('conv', fv)
print('static const uint16_t conv_f16[%d] = {%s};' % (len(fv), ', '.join('0x%04x' % fp16(v) for v in fv)))
print('static const uint16_t conv_bf16[%d] = {%s};' % (len(fv), ', '.join('0x%04x' % bf16(v) for v in fv)))

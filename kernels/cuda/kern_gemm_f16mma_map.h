/* Layout of the dequantise-to-f16 tensor-core prompt GEMM (kern_gemm_f16mma_* in
 * kern_kernels.cu, device code kern_gemm_f16mma.cuh): tile variants, shared-memory
 * layout, the f16 conversion's magic numbers and the ldmatrix / mma.m16n8k16 maps.  Plain
 * C, included by the CUDA source, the host plan (kern_cuda_gemm_plan.c) and the host
 * emulator (tests/unit/kern_cuda_gemm_simt.cc).
 *
 * Y[tok, r] = sum_k f16(qW d) f16(X) with f32 sums: the weights are dequantised to f16
 * once per CTA and k stage in shared memory, the activations (q8_0-rounded, as the WMMA
 * kernel takes them) were converted to f16 once per GEMM, and the inner loop is plain
 * ldmatrix + mma.sync.m16n8k16 with no per-block work.  Not bit-exact with the CPU
 * reference (the int8 kernel is): each product carries two f16 roundings (relative
 * 2^-11 each) and the sums are f32, so |y - ref| <= 1.1 * 2^-10 sum |w x|, the tolerance
 * of --check's GEMM (docs/cuda-kernels.md).
 *
 * One k stage is KB = 4 quant blocks (128 values; 2 blocks for the "k64" variants).  Per
 * ring slot (R >= 3 slots, cp.async):
 *   raw W  BM rows of the KB raw ggml blocks, rows padded to 144 (Q8_0) / 80 (Q4_0)
 *          bytes: the int8 kernel's layout and copy scheme (kern_gemm_i8_map.h); for
 *          KB = 2, 80 / 48 bytes, copied in 4-byte pieces;
 *   X      BN tokens x 32 KB f16 (64 KB bytes, chunks of 16 bytes, XOR-swizzled).
 * Plus two f16 W buffers, BM rows x 32 KB f16, swizzled the same way: stage st + 1 is
 * converted into one while the warps multiply stage st from the other. */
#ifndef KERN_GEMM_F16MMA_MAP_H
#define KERN_GEMM_F16MMA_MAP_H

#include "kern_gemm_i8_map.h"

enum {
    GF_ROW = 256, /* bytes per row of an f16 tile (128 halves) */
};
/* f16 bits 0x6400 | b is 1024 + b: a byte's value in the low mantissa bits.  Q8_0:
 * (q ^ 0x80) = q + 128, so subtract 1152; Q4_0: the nibble is q + 8, subtract 1032. */
#define GF_MAGIC_Q8 0x64806480u /* half2 (1152, 1152) */
#define GF_MAGIC_Q4 0x64086408u /* half2 (1032, 1032) */

/* Variants: index, MT, NT, WM, WN, CPS, KB (warp tile 16 MT x 8 NT, CTA tile 16 MT WM rows x
 * 8 NT WN tokens; CPS CTAs per SM the launch bounds aim at; KB quant blocks per k stage:
 * 4 (128 values) or 2 (64 values: half the shared memory per slot, so that a 256-row tile
 * or 4 slots fit; raw W then by 4-byte copies, rows padded to 48 / 80 bytes). */
#define GF_VARIANTS(X)                                                                    \
    X(0, 4, 4, 2, 4, 1, 4) /* 128 x 128, 8 warps of 64 x 32 */                            \
    X(1, 2, 8, 4, 2, 1, 4) /* 128 x 128, 8 warps of 32 x 64 */                            \
    X(2, 2, 4, 4, 2, 1, 4) /* 128 x 64, 8 warps of 32 x 32 */                             \
    X(3, 2, 4, 2, 2, 2, 4) /* 64 x 64, 4 warps of 32 x 32 */                              \
    X(4, 2, 2, 2, 2, 2, 4) /* 64 x 32, 4 warps of 32 x 16 */                              \
    X(5, 4, 8, 4, 2, 1, 2) /* 256 x 128, 8 warps of 64 x 64, k stages of 64 */            \
    X(6, 4, 4, 2, 4, 1, 2) /* 128 x 128, 8 warps of 64 x 32, k stages of 64 */            \
    X(7, 4, 4, 2, 2, 2, 2) /* 128 x 64, 4 warps of 64 x 32, k stages of 64 */            \
    X(8, 4, 8, 2, 4, 1, 2) /* 128 x 256, 8 warps of 64 x 64, k stages of 64 */
#define GF_NVAR 9

GI8_FN gi8_variant gf_var(int v)
{
    gi8_variant r = {0, 0, 0, 0, 0};
#define GF_VAR_CASE(I, MT_, NT_, WM_, WN_, CPS_, KB_) \
    if (v == (I)) {                                   \
        r.mt = MT_;                                   \
        r.nt = NT_;                                   \
        r.wm = WM_;                                   \
        r.wn = WN_;                                   \
        r.cps = CPS_;                                 \
    }
    GF_VARIANTS(GF_VAR_CASE)
#undef GF_VAR_CASE
    return r;
}
GI8_FN int gf_var_kb(int v)
{
    int kb = 4;
#define GF_KB_CASE(I, MT_, NT_, WM_, WN_, CPS_, KB_) \
    if (v == (I))                                    \
        kb = KB_;
    GF_VARIANTS(GF_KB_CASE)
#undef GF_KB_CASE
    return kb;
}
GI8_FN int gf_var_bm(int v) { return 16 * gf_var(v).mt * gf_var(v).wm; }
GI8_FN int gf_var_bn(int v) { return 8 * gf_var(v).nt * gf_var(v).wn; }
GI8_FN int gf_var_threads(int v) { return 32 * gf_var(v).wm * gf_var(v).wn; }

/* The kernel's flags argument: raw W by cp.async (gf_aligned); the result tile through
 * shared memory, out as 16-byte row pieces (AMXDIAG_GPU_GEMM_STORE=staged). */
#define GF_FLAG_ALIGNED 1
#define GF_FLAG_STAGED 2

/* Bytes per row of an f16 tile (kb blocks of 32 halves) and per raw W row of a slot (kb
 * blocks, padded to a multiple of 16). */
GI8_FN int gf_row(int kb) { return kb * 64; }
GI8_FN int gf_wstr(int wt, int kb) { return kb == 4 ? gi8_wstr(wt) : (wt == 4 ? 48 : 80); }
/* Whether the raw W can come by cp.async: whole stages (k a multiple of 32 kb) and pieces
 * aligned (8 bytes for kb 4, whose rows are 9 / 17 pieces of 8; 4 bytes for kb 2). */
GI8_FN int gf_aligned(int kb, long long nb, unsigned long long w_addr)
{
    return nb % kb == 0 && (w_addr & (kb == 4 ? 7u : 3u)) == 0;
}

/* Whether f16 weights (wt 16) can take the f16-MMA and wgmma kernels, tiles of bm rows:
 * their 16-byte pieces by cp.async need k % 8 == 0 and a 16-byte aligned buffer (rows of
 * 2 k bytes then stay aligned); offsets within a tile (bm rows of 2 k bytes) below 2^31.
 * Where k is not a multiple of the k stage, the last stage's pieces past k are zeros. */
GI8_FN int gf_f16_ok(int bm, long long k, unsigned long long w_addr)
{
    return k > 0 && k % 8 == 0 && (w_addr & 15u) == 0 && (long long)bm * 2 * k < 0x7fffffffLL;
}

/* Byte offset of 16-byte chunk c (8 halves, k = 8 c .. 8 c + 7) of row r in an f16 tile
 * of rb-byte rows: chunk c ^ (r & 7), so that the 8 rows of an ldmatrix matrix (same c)
 * and a warp's chunk stores fall on distinct bank quads. */
GI8_FN int gf_offr(int r, int c, int rb) { return r * rb + ((c ^ (r & 7)) << 4); }
GI8_FN int gf_off(int r, int c) { return gf_offr(r, c, GF_ROW); }

/* Shared memory of one ring slot (raw W + X) and of the two f16 W buffers; wt 16 (f16
 * weights): W in the slot as f16 rows, no buffers. */
GI8_FN int gf_slot_bytes(int wt, int bm, int bn, int kb)
{
    return bm * (wt == 16 ? gf_row(kb) : gf_wstr(wt, kb)) + bn * gf_row(kb);
}
GI8_FN int gf_smem_bytes(int wt, int bm, int bn, int slots, int kb)
{
    return slots * gf_slot_bytes(wt, bm, bn, kb) + (wt == 16 ? 0 : 2 * bm * gf_row(kb));
}

/* ldmatrix.x4 lane addresses (PTX ISA m16n8k16 f16 fragments, lane = 4 g + t):
 * A 16 x 16 (rows row0.., k 16 kk..): lane L gives row L & 15, chunk 2 kk + (L >> 4), so
 *   that registers 0..3 are a0 (g, 2t), a1 (g + 8, 2t), a2 (g, 2t + 8), a3 (g + 8, 2t + 8);
 * B for two 8-token tiles (tokens tok0 .. +15): lane L gives token tok0 + (L & 7) +
 *   8 (L >> 4), chunk 2 kk + ((L >> 3) & 1): registers b0, b1 of the first tile, then of
 *   the second. */
GI8_FN int gf_a_ldsm(int row0, int kk, int lane, int rb)
{
    return gf_offr(row0 + (lane & 15), 2 * kk + (lane >> 4), rb);
}
GI8_FN int gf_b_ldsm(int tok0, int kk, int lane, int rb)
{
    return gf_offr(tok0 + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1), rb);
}

#endif

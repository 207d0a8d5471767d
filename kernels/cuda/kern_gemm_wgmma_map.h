/* Layout of the Hopper warpgroup-MMA prompt GEMM (kern_gemm_wgmma_* in the sm_90a module
 * kern_gemm_wgmma.cu, device code kern_gemm_wgmma.cuh): tile variants, shared memory, the
 * wgmma shared-memory matrix descriptors and the accumulator map.  Plain C, included by
 * the CUDA source, the host plan (kern_cuda_gemm_plan.c) and the host tests.
 *
 * Same arithmetic and contract as the f16-MMA kernel (kern_gemm_f16mma_map.h): the raw
 * Q4_0 / Q8_0 blocks arrive by cp.async, are dequantised once per CTA and k stage to f16
 * q d in shared memory, X is f16 (kern_f32_to_f16_q8's), f32 sums; within 1.1 * 2^-10
 * sum |w x| of the CPU reference.  What differs is the multiply: one warpgroup (4 warps)
 * per 64 weight rows issues wgmma.mma_async.m64nBNk16.f32.f16.f16 with both operands read
 * by the tensor cores from shared memory, asynchronously, while its threads convert the
 * next stage.  k stages are 64 values (2 quant blocks): an f16 row of a stage is 128
 * bytes, the width of the 128-byte swizzle, so that the f16-MMA kernel's k64 layout
 * (16-byte chunk c of row r at r * 128 + ((c ^ (r & 7)) << 4)) IS the wgmma K-major
 * 128-byte-swizzle layout once each tile starts on a 1024-byte boundary (the swizzle XORs
 * address bits 4..6 with bits 7..9).
 *
 * Shared memory (dynamic, rounded up to 1024 bytes in the kernel):
 *   slots x [ X: BN tokens x 128 bytes | raw W: BM rows x 48 (Q4_0) / 80 (Q8_0) bytes ]
 *   2 f16 W buffers of BM rows x 128 bytes (3 with the deep pipeline, GW_FLAG_DEEP)
 * F16 weights: slots x [ X | W: BM rows x 128 bytes, swizzled as X ], no f16 W buffers.
 * every part a multiple of 1024 bytes (BM a multiple of 64, BN of 8). */
#ifndef KERN_GEMM_WGMMA_MAP_H
#define KERN_GEMM_WGMMA_MAP_H

#include "kern_gemm_f16mma_map.h"

/* Variants: index, WG (warpgroups, each 64 weight rows), BN (tokens: the wgmma's N), CPS
 * (CTAs per SM the launch bounds aim at).  CTA tile 64 WG rows x BN tokens, 128 WG
 * threads; each thread holds BN / 2 f32 accumulators. */
#define GW_VARIANTS(X)                                              \
    X(0, 2, 256, 1) /* 128 x 256: m64n256 per warpgroup */          \
    X(1, 2, 128, 1) /* 128 x 128: m64n128 per warpgroup */          \
    X(2, 1, 128, 2) /* 64 x 128, one warpgroup */                   \
    X(3, 1, 64, 3)  /* 64 x 64, one warpgroup (small shapes) */
#define GW_NVAR 4

/* Column f (0 WG, 1 BN, 2 CPS) of variant v's row; 0 for an unknown variant. */
GI8_FN int gw_var_col(int v, int f)
{
    int r = 0;
#define GW_COL_CASE(I, WG_, BN_, CPS_) \
    if (v == (I))                      \
        r = f == 0 ? WG_ : f == 1 ? BN_ : CPS_;
    GW_VARIANTS(GW_COL_CASE)
#undef GW_COL_CASE
    return r;
}
GI8_FN int gw_var_wg(int v) { return gw_var_col(v, 0); }
GI8_FN int gw_var_bn(int v) { return gw_var_col(v, 1); }
GI8_FN int gw_var_cps(int v) { return gw_var_col(v, 2) > 0 ? gw_var_col(v, 2) : 1; }
GI8_FN int gw_var_bm(int v) { return 64 * gw_var_wg(v); }
GI8_FN int gw_var_threads(int v) { return 128 * gw_var_wg(v); }

enum {
    GW_KB = 2,       /* quant blocks per k stage (64 values) */
    GW_ROW = 128,    /* bytes of an f16 row of a stage: the 128-byte swizzle's width */
    GW_ALIGN = 1024, /* the swizzle pattern repeats every 8 rows of 128 bytes */
    GW_MAX_SLOTS = 8, /* ring slots at most (the kernel's cp.async waits go to 7 pending groups) */
};

/* The kernel's flags: GF_FLAG_ALIGNED (kern_gemm_f16mma_map.h), and the deep pipeline:
 * one stage of MMAs left in flight across the barrier (wgmma.wait_group 1, 3 f16 W
 * buffers, slots >= 4; AMXDIAG_GPU_GEMM_WGMMA_PIPE=2). */
#define GW_FLAG_DEEP 4

/* The experimental kernel variants (session 5, AMXDIAG_GPU_GEMM_WGMMA_X=1..3, tiles w0..w2,
 * q4_0 / q8_0): GW_XV_PAD, raw W rows 52 / 84 bytes apart (odd word counts: the
 * conversion's loads of 16 rows per warp on distinct banks; the raw part of a slot rounded
 * up to 1024 bytes); GW_XV_FIX, the ring's slot count a compile-time constant (the flat
 * pipeline only): the slots gw_fit gives on a 227 KiB sm_90 part, GW_FIX_SLOTS below. */
#define GW_XV_PAD 1
#define GW_XV_FIX 2
#define GW_NXV 3       /* xv 1..3 */
#define GW_XV_TILES 3  /* w0..w2 */
#define GW_NXK (GW_XV_TILES * 2 * GW_NXV) /* their kernels: (tile, q4_0 / q8_0, xv) */
/* X(variant, wt, pad, slots): the fixed slot count of each variant and weight type with and
 * without the padded stride (test_kern_cuda_gemm checks it equals the plan's fit). */
#define GW_FIX_SLOTS(X) \
    X(0, 4, 0, 5) X(0, 4, 1, 4) X(0, 8, 0, 4) X(0, 8, 1, 4) \
    X(1, 4, 0, 8) X(1, 4, 1, 8) X(1, 8, 0, 7) X(1, 8, 1, 7) \
    X(2, 4, 0, 5) X(2, 4, 1, 4) X(2, 8, 0, 4) X(2, 8, 1, 4)
GI8_FN int gw_fix_slots(int v, int wt, int pad)
{
    int r = 0;
#define GW_FIX_CASE(V_, WT_, PAD_, S_) \
    if (v == (V_) && wt == (WT_) && pad == (PAD_)) \
        r = S_;
    GW_FIX_SLOTS(GW_FIX_CASE)
#undef GW_FIX_CASE
    return r;
}
/* Index of (variant v, wt, xv) among the GW_NXK variant kernels. */
GI8_FN int gw_xk_index(int v, int wt, int xv) { return (2 * v + (wt == 8)) * GW_NXV + xv - 1; }

/* Bytes of a raw W row of a slot: 48 / 80 (52 / 84 padded, GW_XV_PAD); f16 weights 128. */
GI8_FN int gw_wstr(int wt, int pad)
{
    return wt == 16 ? GW_ROW : pad ? (wt == 4 ? 52 : 84) : gf_wstr(wt, GW_KB);
}
/* One ring slot (X then raw W, that part rounded up to 1024 bytes) and the whole dynamic
 * shared memory (plus the 1024 bytes the kernel may skip to align its base) with `deep`
 * 0 (2 f16 W buffers) or 1 (3).  wt 16 (f16 weights): W in the slot as f16 rows of 128
 * bytes, swizzled as X, and no f16 W buffers (nothing to convert). */
GI8_FN int gw_slot_bytes_x(int wt, int bm, int bn, int pad)
{
    return bn * GW_ROW + (bm * gw_wstr(wt, pad) + GW_ALIGN - 1) / GW_ALIGN * GW_ALIGN;
}
GI8_FN int gw_slot_bytes(int wt, int bm, int bn) { return gw_slot_bytes_x(wt, bm, bn, 0); }
GI8_FN int gw_smem_bytes_x(int wt, int bm, int bn, int slots, int deep, int pad)
{
    return GW_ALIGN + slots * gw_slot_bytes_x(wt, bm, bn, pad) + (wt == 16 ? 0 : (2 + deep) * bm * GW_ROW);
}
GI8_FN int gw_smem_bytes_p(int wt, int bm, int bn, int slots, int deep)
{
    return gw_smem_bytes_x(wt, bm, bn, slots, deep, 0);
}
GI8_FN int gw_smem_bytes(int wt, int bm, int bn, int slots) { return gw_smem_bytes_p(wt, bm, bn, slots, 0); }
/* Ring slots: at least 3 (4 for the deep pipeline: the copies of a stage must be issued a
 * stage before its conversion), more where they fit (a stage's copies then have
 * slots - 2 - deep stages of MMAs to land); the most that fit `limit` bytes, capped at
 * `want_max`; 0 if the minimum does not fit. */
GI8_FN int gw_slots_fit_x(int wt, int v, int want_max, int limit, int deep, int pad)
{
    const int lo = 3 + deep;
    int s = want_max < lo ? lo : want_max > GW_MAX_SLOTS ? GW_MAX_SLOTS : want_max;
    while (s > lo && gw_smem_bytes_x(wt, gw_var_bm(v), gw_var_bn(v), s, deep, pad) > limit)
        s--;
    return gw_smem_bytes_x(wt, gw_var_bm(v), gw_var_bn(v), s, deep, pad) <= limit ? s : 0;
}
GI8_FN int gw_slots_fit_p(int wt, int v, int want_max, int limit, int deep)
{
    return gw_slots_fit_x(wt, v, want_max, limit, deep, 0);
}
GI8_FN int gw_slots_fit(int wt, int v, int want_max, int limit) { return gw_slots_fit_p(wt, v, want_max, limit, 0); }

/* The wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format") of a
 * K-major operand in the 128-byte swizzle: bits 0-13 start address >> 4, 16-29 leading
 * dimension byte offset >> 4 (unused for a swizzled K-major operand whose k16 slice lies
 * inside one 128-byte row: 1 by convention), 32-45 stride dimension byte offset >> 4 (from
 * one group of 8 rows to the next: 1024 bytes), 49-51 base offset (0: tiles start on
 * 1024-byte boundaries), 62-63 layout (1 = 128-byte swizzle).  The k16 step kk of a stage
 * starts 32 kk bytes further: the hardware swizzles the address it forms, so chunk
 * 2 kk + c of row r is read from r * 128 + (((2 kk + c) ^ (r & 7)) << 4), where the
 * conversion and the X copies put it. */
#define GW_DESC_SW128 (1ull << 62)
GI8_FN unsigned long long gw_desc(unsigned smem_addr)
{
    return (unsigned long long)((smem_addr & 0x3FFFFu) >> 4) | (1ull << 16) | ((unsigned long long)(1024 >> 4) << 32) |
           GW_DESC_SW128;
}

/* Accumulator register i (0 .. BN / 2 - 1) of lane `lane` of warp `w` (0..3) within its
 * warpgroup (PTX ISA, wgmma .m64nNk16 D fragment): row 16 w + (lane >> 2) + 8 ((i >> 1) & 1),
 * token 8 (i >> 2) + 2 (lane & 3) + (i & 1): per 8 tokens the mma.m16n8 C layout. */
GI8_FN int gw_d_row(int w, int lane, int i) { return 16 * w + gi8_c_row(lane, i & 3); }
GI8_FN int gw_d_tok(int lane, int i) { return 8 * (i >> 2) + gi8_c_tok(lane, i & 3); }

#endif

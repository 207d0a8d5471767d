/* Layout of the int8 tensor-core prompt GEMM (kern_gemm_i8_* and kern_moe_gemm_i8_* in
 * kern_kernels.cu): the tile variants, the shared-memory stage, the cp.async chunking and
 * the mma.m16n8k32 fragment maps.  Plain C, included by the CUDA source, by the host plan
 * (kern_cuda_gemm_plan.c) and by the host emulators in tests/unit, so that the same index
 * arithmetic is tested on machines without a GPU.
 *
 * A CTA tile is BM weight rows x BN tokens, computed by WM x WN warps whose own tile is
 * MT 16-row x NT 8-token MMA tiles (GI8_VARIANTS).  One k stage is 4 quant blocks (128
 * values):
 *   W  BM rows of the 4 raw ggml blocks (136 bytes Q8_0, 72 Q4_0), copied as they are
 *      stored (8-byte pieces), rows padded to 144 / 80 bytes: those strides put the
 *      8 rows g = 0..7 of a fragment load on distinct bank quads (4g + t);
 *   X  BN tokens x 128 int8, rows padded to 144 bytes (ldmatrix: 8 rows of 16 bytes on
 *      8 distinct 16-byte bank groups);
 *   D  the X steps, [block][token] floats (a thread's two tokens 2t, 2t+1 are adjacent).
 */
#ifndef KERN_GEMM_I8_MAP_H
#define KERN_GEMM_I8_MAP_H

#ifdef __CUDACC__
#define GI8_FN __host__ __device__ __forceinline__
#else
#define GI8_FN static inline
#endif

enum {
    GI8_BN = 64,     /* tokens per CTA tile of the session-2 variants (0, 1) */
    GI8_KBS = 4,     /* quant blocks per k stage */
    GI8_XSTR = 144,  /* bytes per token row of the X stage */
};
/* __byte_perm selector that takes bytes 2..5 of the 8 bytes y:x: the 4 bytes at a
 * shared-memory address that is 2 mod 4, from the two aligned words around it. */
#define GI8_PERM_2MOD4 0x5432u
/* The MMA accumulators start at the bits of 1.5 * 2^23 (0x4B400000), not 0: a block's dot
 * product d (|d| <= 32 * 128 * 128 < 2^22) then ends as the float f = 1.5 * 2^23 + d
 * (no quarter-rate int-to-float conversion).  The step dx of the activations is an f16
 * value (11 significant bits), so 1.5 * 2^23 * dx (13 bits) is an exact float, and
 * fmaf(f, dx, -1.5 * 2^23 * dx) is d * dx rounded once: the CPU's (float)d * dx, bit for
 * bit, in one instruction (test_kern_cuda_gemm proves it over every finite f16 step). */
#define GI8_ACC_BIAS_BITS 0x4B400000
#define GI8_ACC_BIAS 12582912.0f

/* The tile variants: index, MT, NT, WM, WN, CPS (warp tile 16 MT x 8 NT, CTA tile
 * 16 MT WM x 8 NT WN, 32 WM WN threads; registers bounded so that CPS CTAs fit an SM:
 * 128 per thread for the 32 x 32 warps, 168 for the 32 x 64 ones, whose 64 accumulators
 * spill at 128).  0 and 1 are session 2's 64- and 128-row kernels; the others trade the
 * A fragments' cost (loaded and unpacked per warp, shared by NT MMAs) against CTAs in
 * flight for small shapes. */
#define GI8_VARIANTS(X)                                                                                          \
    X(0, 2, 4, 2, 2, 4)  /* 64 x 64, 4 warps of 32 x 32 */                                                     \
    X(1, 2, 4, 4, 2, 2)  /* 128 x 64, 8 warps of 32 x 32 */                                                    \
    X(2, 2, 8, 4, 1, 3)  /* 128 x 64, 4 warps of 32 x 64 */                                                    \
    X(3, 2, 8, 2, 1, 6)  /* 64 x 64, 2 warps of 32 x 64 */                                                     \
    X(4, 2, 8, 2, 2, 3)  /* 64 x 128, 4 warps of 32 x 64 */                                                    \
    X(5, 2, 4, 2, 1, 8)  /* 64 x 32, 2 warps of 32 x 32 */                                                     \
    X(6, 2, 4, 1, 1, 16) /* 32 x 32, 1 warp */                                                                 \
    X(7, 1, 4, 4, 1, 4)  /* 64 x 32, 4 warps of 16 x 32 */
#define GI8_NVAR 8

typedef struct gi8_variant {
    int mt, nt, wm, wn, cps;
} gi8_variant;

GI8_FN gi8_variant gi8_var(int v)
{
    gi8_variant r = {0, 0, 0, 0, 0};
#define GI8_VAR_CASE(I, MT_, NT_, WM_, WN_, CPS_) \
    if (v == (I)) {                               \
        r.mt = MT_;                               \
        r.nt = NT_;                               \
        r.wm = WM_;                               \
        r.wn = WN_;                               \
        r.cps = CPS_;                             \
    }
    GI8_VARIANTS(GI8_VAR_CASE)
#undef GI8_VAR_CASE
    return r;
}
GI8_FN int gi8_var_bm(int v) { return 16 * gi8_var(v).mt * gi8_var(v).wm; }
GI8_FN int gi8_var_bn(int v) { return 8 * gi8_var(v).nt * gi8_var(v).wn; }
GI8_FN int gi8_var_threads(int v) { return 32 * gi8_var(v).wm * gi8_var(v).wn; }

/* The grouped expert matmul's tiles (kern_moe_gemm_i8_{q4_0,q8_0}_g<N>; gemm_i8 with MOE = 2):
 * index, MT, NT, WM, CPS.  Warps over rows only (WN = 1), so a warp's A fragments (their
 * loads and Q4_0's unpacking) serve every token MMA of its tile and no warp holds only
 * padding; the 8-token MMA groups past the tile's tokens are skipped.  A work item is
 * (token tile of one expert, row tile): an expert of c tokens has ceil(c / BN) token
 * tiles, side by side in the grid, so an expert with many tokens is spread over CTAs
 * instead of looping in one.  At Qwen3-30B-A3B's prompt of 512 tokens (4096 slots over
 * 128 experts: ~32 tokens an expert) the 64-token tiles run one token tile per expert. */
#define GI8M_VARIANTS(X)                                                                                         \
    X(0, 1, 8, 4, 4) /* 64 x 64, 4 warps of 16 x 64 */                                                         \
    X(1, 2, 8, 4, 3) /* 128 x 64, 4 warps of 32 x 64 */                                                        \
    X(2, 2, 4, 4, 4) /* 128 x 32, 4 warps of 32 x 32 */                                                        \
    X(3, 1, 4, 4, 4) /* 64 x 32, 4 warps of 16 x 32 */                                                         \
    X(4, 2, 8, 2, 6) /* 64 x 64, 2 warps of 32 x 64 */                                                         \
    X(5, 1, 8, 8, 2) /* 128 x 64, 8 warps of 16 x 64 */
#define GI8M_NVAR 6
/* AMXDIAG_GPU_MOE_TILE unset or "auto": the tile gi8m_auto picks for the shape. */
#define GI8M_AUTO (-3)

GI8_FN gi8_variant gi8m_var(int v)
{
    gi8_variant r = {0, 0, 0, 0, 0};
#define GI8M_VAR_CASE(I, MT_, NT_, WM_, CPS_) \
    if (v == (I)) {                          \
        r.mt = MT_;                          \
        r.nt = NT_;                          \
        r.wm = WM_;                          \
        r.wn = 1;                            \
        r.cps = CPS_;                        \
    }
    GI8M_VARIANTS(GI8M_VAR_CASE)
#undef GI8M_VAR_CASE
    return r;
}
GI8_FN int gi8m_var_bm(int v) { return 16 * gi8m_var(v).mt * gi8m_var(v).wm; }
GI8_FN int gi8m_var_bn(int v) { return 8 * gi8m_var(v).nt; }
GI8_FN int gi8m_var_threads(int v) { return 32 * gi8m_var(v).wm; }
/* The grouped tile for a shape (wt 4 or 8; m rows, k columns of each expert; n_slots
 * (token, expert) pairs over n_expert experts): g1 for Q4_0, g5 for Q8_0, measured on an
 * H200 (2026-11-26 05:46 UTC, tests/device/moe_gemm.sh; the op with its X quantisation
 * and kern_moe_sort, 512 tokens x top-8 of 128 experts, 3 stages; us):
 *            old    g0    g1    g2    g3    g4    g5
 *   q4 gate  190.4 178.7 152.3 164.4 193.6 190.4 166.7   (768 x 2048)
 *   q4 down  209.2 192.7 169.1 165.9 203.5 211.2 184.3   (2048 x 768)
 *   q8 gate  199.6 207.3 186.4 241.4 210.5 233.6 182.7
 *   q8 down  218.3 227.3 210.4 250.6 219.4 264.5 198.8
 * pp512 of qwen3-moe-small at --ngl 99 (t/s): q4_0 old 47869, g1 56459 (x1.18); q8_0 old
 * 45570, g5 50663 (x1.11), g1 50292.  4 stages were slower everywhere.  06:03 UTC, with the
 * ring slots counted: q4 gate g1 146.3, down 160.7 (g2 158.3); q8 g5 174.4 / 188.7; the 30B
 * shapes' own routing (pp512, profile -e gpu): 172.9 us a call old, 123.8 with g1. */
GI8_FN int gi8m_auto(int wt, long long m, long long k, long long n_slots, int n_expert)
{
    (void)m;
    (void)k;
    (void)n_slots;
    (void)n_expert;
    return wt == 4 ? 1 : 5;
}
/* Work items the grid of a grouped launch must cover: every expert's token tiles (at most
 * n_slots / bn rounded up, plus one partial tile per expert that has tokens) times the row
 * tiles.  The kernel counts the real token tiles itself; CTAs past them do nothing. */
GI8_FN long long gi8m_items(long long n_slots, int n_expert, long long m, int bm, int bn)
{
    const long long partial = n_expert < n_slots ? n_expert : n_slots;
    return ((n_slots + bn - 1) / bn + partial) * ((m + bm - 1) / bm);
}
/* AMXDIAG_GPU_MOE_TILE's value: "old" (-1: v0's tile, a CTA per (expert, 64 rows) over
 * all of that expert's tokens, MOE = 1), "g0".."g5" or a GI8M index, NULL / "" / "auto"
 * GI8M_AUTO; -2 for anything else. */
GI8_FN int gi8m_parse(const char *s)
{
    if (!s || !s[0] || (s[0] == 'a' && s[1] == 'u' && s[2] == 't' && s[3] == 'o' && !s[4]))
        return GI8M_AUTO;
    if (s[0] == 'o' && s[1] == 'l' && s[2] == 'd' && !s[3])
        return -1;
    const char *d = s[0] == 'g' ? s + 1 : s;
    if (d[0] >= '0' && d[0] < '0' + GI8M_NVAR && !d[1])
        return d[0] - '0';
    return -2;
}

/* Q4_0 nibbles (0..15 in each byte of x) to the CPU's signed values q - 8, 4 at a time:
 * + 0x78 cannot carry out of a byte (at most 0x87), and flipping bit 7 then gives
 * q - 8 in two's complement (0x78 + q < 0x80 exactly when q < 8). */
GI8_FN unsigned gi8_nib_s8(unsigned x) { return (x + 0x78787878u) ^ 0x80808080u; }

GI8_FN int gi8_bsz(int wt) { return wt == 4 ? 18 : 34; }
/* Padded bytes per weight row of the W stage. */
GI8_FN int gi8_wstr(int wt) { return wt == 4 ? 80 : 144; }
/* 8-byte pieces of one row's 4 raw blocks (136 / 72 bytes). */
GI8_FN int gi8_wchunks(int wt) { return gi8_bsz(wt) * GI8_KBS / 8; }
GI8_FN int gi8_x_off(int wt, int bm) { return bm * gi8_wstr(wt); }
GI8_FN int gi8_d_off(int wt, int bm) { return gi8_x_off(wt, bm) + GI8_BN * GI8_XSTR; }
GI8_FN int gi8_stage_bytes(int wt, int bm) { return gi8_d_off(wt, bm) + GI8_KBS * GI8_BN * 4; }
/* The same for a CTA tile of bn tokens. */
GI8_FN int gi8_d_off_n(int wt, int bm, int bn) { return gi8_x_off(wt, bm) + bn * GI8_XSTR; }
GI8_FN int gi8_stage_bytes_n(int wt, int bm, int bn) { return gi8_d_off_n(wt, bm, bn) + GI8_KBS * bn * 4; }

/* mma.m16n8k32 .s8 fragments (PTX ISA), lane = 4 g + t:
 *   A (16 x 32, row): reg r holds row g + 8 (r & 1), k = 4 t + 16 (r >> 1) .. +3;
 *   B (32 x 8, col):  reg r holds token g, k = 4 t + 16 r .. +3;
 *   C (16 x 8):       element i is row g + 8 (i >> 1), token 2 t + (i & 1). */
GI8_FN int gi8_a_row(int lane, int reg) { return (lane >> 2) + ((reg & 1) << 3); }
GI8_FN int gi8_a_k(int lane, int reg) { return ((lane & 3) << 2) + ((reg >> 1) << 4); }
GI8_FN int gi8_c_row(int lane, int i) { return (lane >> 2) + ((i >> 1) << 3); }
GI8_FN int gi8_c_tok(int lane, int i) { return ((lane & 3) << 1) + (i & 1); }

/* Byte offset in the W stage of the 4 bytes that A register `reg` of lane `lane` is made
 * of, for the 16-row tile at row0 and block bl.  Q8_0: the int8 values themselves (k
 * bytes of the block's qs).  Q4_0: registers 0 and 2 (1 and 3) both come from the 4
 * packed bytes at k & 15 (low nibbles: k < 16, high nibbles: k >= 16).  The address is
 * 2-byte aligned only: 2 mod 4 when (bl * bsz + 2) % 4 != 0. */
GI8_FN int gi8_a_off(int wt, int row0, int bl, int lane, int reg)
{
    return (row0 + gi8_a_row(lane, reg)) * gi8_wstr(wt) + bl * gi8_bsz(wt) + 2 +
           (wt == 4 ? (gi8_a_k(lane, reg) & 15) : gi8_a_k(lane, reg));
}
/* The block's f16 scale for row row0 + r. */
GI8_FN int gi8_w_scale_off(int wt, int row0, int bl, int r) { return (row0 + r) * gi8_wstr(wt) + bl * gi8_bsz(wt); }

/* ldmatrix.x4 of the B fragments of two 8-token tiles (tok0 .. tok0 + 15) for block bl:
 * lane L gives the address of row L & 7 of matrix L >> 3; matrices 0, 1 are tokens
 * tok0 .. +7 at k 0..15 and 16..31 (B regs 0, 1 of the first tile), 2, 3 the same for
 * tokens tok0 + 8 .. +15. */
GI8_FN int gi8_ldsm_off(int tok0, int bl, int lane)
{
    return (tok0 + (lane & 7) + ((lane >> 4) << 3)) * GI8_XSTR + bl * 32 + (((lane >> 3) & 1) << 4);
}

#endif

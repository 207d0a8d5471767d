/* Layout of the int8 tensor-core prompt GEMM (kern_gemm_i8_* and kern_moe_gemm_i8_* in
 * kern_kernels.cu): the shared-memory stage, the cp.async chunking and the mma.m16n8k32
 * fragment maps.  Plain C, included by the CUDA source and by the host emulator in
 * tests/unit/test_kern_cuda_gemm.c, so that the same index arithmetic is tested on
 * machines without a GPU.
 *
 * One k stage is 4 quant blocks (128 values) of a CTA tile of BM weight rows x 64 tokens:
 *   W  BM rows of the 4 raw ggml blocks (136 bytes Q8_0, 72 Q4_0), copied as they are
 *      stored (8-byte pieces), rows padded to 144 / 80 bytes: those strides put the
 *      8 rows g = 0..7 of a fragment load on distinct bank quads (4g + t);
 *   X  64 tokens x 128 int8, rows padded to 144 bytes (ldmatrix: 8 rows of 16 bytes on
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
    GI8_BN = 64,     /* tokens per CTA tile */
    GI8_KBS = 4,     /* quant blocks per k stage */
    GI8_XSTR = 144,  /* bytes per token row of the X stage */
};
/* __byte_perm selector that takes bytes 2..5 of the 8 bytes y:x: the 4 bytes at a
 * shared-memory address that is 2 mod 4, from the two aligned words around it. */
#define GI8_PERM_2MOD4 0x5432u
/* The MMA accumulators start at the bits of 1.5 * 2^23 (0x4B400000), not 0: a block's dot
 * product d (|d| <= 32 * 128 * 128 < 2^22) then ends as the float 1.5 * 2^23 + d, and
 * f - 1.5 * 2^23 is (float)d exactly: one full-rate subtraction instead of a
 * quarter-rate int-to-float conversion per result. */
#define GI8_ACC_BIAS_BITS 0x4B400000
#define GI8_ACC_BIAS 12582912.0f

GI8_FN int gi8_bsz(int wt) { return wt == 4 ? 18 : 34; }
/* Padded bytes per weight row of the W stage. */
GI8_FN int gi8_wstr(int wt) { return wt == 4 ? 80 : 144; }
/* 8-byte pieces of one row's 4 raw blocks (136 / 72 bytes). */
GI8_FN int gi8_wchunks(int wt) { return gi8_bsz(wt) * GI8_KBS / 8; }
GI8_FN int gi8_x_off(int wt, int bm) { return bm * gi8_wstr(wt); }
GI8_FN int gi8_d_off(int wt, int bm) { return gi8_x_off(wt, bm) + GI8_BN * GI8_XSTR; }
GI8_FN int gi8_stage_bytes(int wt, int bm) { return gi8_d_off(wt, bm) + GI8_KBS * GI8_BN * 4; }

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

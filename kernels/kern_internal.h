/* Internal to kernels/: weight layouts, activation buffers and the micro-kernel entry
 * points each implementation provides.  Not a public interface. */
#ifndef KERN_INTERNAL_H
#define KERN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kern_cpu.h"
#include "kernels/kern_pool.h"

/* Weight layouts.
 * RAW : ggml rows as loaded (F16 already rounded to BF16, so RAW types are F32, BF16,
 *       Q4_0, Q8_0).  Used by ref, and by avx512 for F32.
 * I8  : Q8_0 as panels of 16 rows.  Per panel and K block of 32: 512 bytes of u8 = q + 128
 *       in [k/4][n][k%4] order (the VNNI order, which is also an AMX B tile of 8 rows x 64
 *       bytes), then 16 fp16 scales.  544 bytes = 16 ggml blocks.
 * I4  : Q4_0 as panels of 16 rows.  Per panel and block: 256 bytes where byte (g, n, i)
 *       holds u4 = q (0..15) of k = 4g + i in its low nibble and of k = 16 + 4g + i in its
 *       high nibble, then 16 fp16 scales.  288 bytes = 16 ggml blocks.
 * BF16: panels of 16 rows, K padded with zeros to a multiple of 32.  Per panel and chunk of
 *       32 k: 1 KiB of bf16 in [k/2][n][k%2] order (VNNI pairs = AMX B tile 16 x 64 bytes).
 * Rows n .. n_pad-1 of the last panel are zero (scale 0). */
typedef enum kern_wfmt { KERN_WFMT_RAW, KERN_WFMT_I8, KERN_WFMT_I4, KERN_WFMT_BF16 } kern_wfmt;

#define KERN_PANEL 16
#define KERN_KB 32

struct kern_weight {
    kern_type type;        /* as loaded */
    kern_type ctype;       /* computed as (F16 -> BF16) */
    kern_wfmt fmt;
    kern_impl impl;        /* implementation of the context that packed it */
    int64_t n_mat, n, k;
    int64_t n_pad, n_panels;
    int64_t nb;            /* K blocks (int8) or K chunks of 32 (bf16) */
    int64_t k_pad;
    size_t blk_bytes;      /* per panel per block/chunk */
    size_t panel_bytes;    /* nb * blk_bytes */
    size_t row_bytes;      /* RAW: bytes of one row */
    size_t mat_bytes;      /* bytes of one matrix */
    uint8_t *data;
    size_t bytes;          /* mapped size */
};

static inline const uint8_t *kern_weight_mat(const kern_weight *w, int64_t e)
{
    return w->data + (size_t)e * w->mat_bytes;
}

/* Grow-only per-context buffers for activations.  Allocating them per call cost a page
 * fault per 4 KiB on every call (glibc returns large blocks to the OS), which in a VM
 * was several ms per MoE call at 512 tokens.  Slot numbers are fixed per use. */
#define KERN_WS_SLOTS 16
typedef struct kern_ws {
    void *p[KERN_WS_SLOTS];
    size_t n[KERN_WS_SLOTS];
} kern_ws;
enum { KERN_WS_QA = 0, KERN_WS_QG = 5, KERN_WS_BA = 10, KERN_WS_BG = 12, KERN_WS_XG = 14 };
void *kern_ws_get(kern_ws *ws, int slot, size_t bytes);   /* 64-byte aligned; NULL: out of memory */
void kern_ws_free(kern_ws *ws);

/* Activations quantized for the integer paths.  Rows m .. m_pad-1 are zero. */
typedef struct kern_qact {
    int64_t m, m_pad, k, nb;
    int8_t *q;         /* [m_pad][k] */
    float *d;          /* [m_pad][nb]  activation scale (fp16 value) */
    float *negoff;     /* [m_pad][nb]  (float)(-o * s) * d */
    int32_t *s;        /* [m_pad][nb]  sum of the block's q */
    int off;           /* 128 for Q8_0 weights, 8 for Q4_0 */
    int8_t *qt;        /* AMX only: q as A tiles, [m_pad/16][nb][16 rows][32], NULL until packed */
    kern_ws *ws;       /* buffers borrowed from this workspace (not freed), or NULL */
    int slot;
} kern_qact;

/* Activations rounded to BF16 for the BF16 paths, [m_pad][k_pad] (zero padded). */
typedef struct kern_bact {
    int64_t m, m_pad, k, k_pad;
    uint16_t *x;
    uint16_t *xt;      /* AMX only: x as A tiles, [m_pad/16][k_pad/32][16 rows][32], NULL until packed */
    kern_ws *ws;
    int slot;
} kern_bact;

/* The work of one worker in a matmul: panels [p0, p1) of matrix `mat`, every row of the
 * activations, results written to y + yrow[i] * ldy (yrow NULL: row i). */
typedef struct kern_gemm_job {
    const kern_weight *w;
    const uint8_t *wmat;
    int64_t p0, p1;
    float *y;
    int64_t ldy;
    const int64_t *yrow;
    void *scratch;          /* KERN_SCRATCH_BYTES for this worker */
    size_t scratch_bytes;
    int gemv_pf;            /* M = 1 software prefetch: KERN_GEMV_PF_* (AMXDIAG_GEMV_PREFETCH) */
    int gemv_pf_dist;       /* its distance in blocks (AMXDIAG_GEMV_PF_DIST; 0: KERN_GEMV_PF_DIST) */
} kern_gemm_job;

/* The VNNI GEMV's software prefetch (kern_ops_avx512.c): PANEL (default) stays inside the
 * call's panels and continues into its next group; AHEAD is session 3's first scheme (every
 * line 8 blocks ahead, past the panel's end); NONE leaves it to the hardware. */
enum { KERN_GEMV_PF_PANEL = 0, KERN_GEMV_PF_AHEAD = 1, KERN_GEMV_PF_NONE = 2, KERN_GEMV_PF_L2 = 3 };
/* Blocks the VNNI GEMV prefetches ahead of its loads (AMXDIAG_GEMV_PF_DIST overrides it). */
#define KERN_GEMV_PF_DIST 8

/* Per-worker scratch: C tiles (4 KiB), fp32 accumulators (32 x 32 x 4), Q4_0 unpacked
 * panels (2 x nb x 512 bytes), rounded up. */
size_t kern_scratch_need(const kern_weight *w);

static inline float *kern_yrow(const kern_gemm_job *j, int64_t i)
{
    return j->y + (j->yrow ? j->yrow[i] : i) * j->ldy;
}

/* Quantizes m rows of k floats (k % 32 == 0) into a (m_pad = round up to 32) buffer,
 * bit-identical to kern_quantize_row_q8_0; `off` as in kern_qact.  AVX-512 when
 * use_avx512, else scalar. */
/* Allocation zeroes only the padding rows [m, m_pad); rows below m are the writers'. */
adg_error *kern_qact_alloc(kern_qact *a, int64_t m, int64_t k);
/* The same on workspace slots slot .. slot+4 (q, d, negoff, s, qt). */
adg_error *kern_qact_alloc_ws(kern_qact *a, int64_t m, int64_t k, kern_ws *ws, int slot);
void kern_qact_zero_rows(kern_qact *a, int64_t r0, int64_t r1);
void kern_bact_zero_rows(kern_bact *a, int64_t r0, int64_t r1);
void kern_qact_free(kern_qact *a);
void kern_qact_rows(kern_qact *a, const float *x, int64_t r0, int64_t r1, int off, bool use_avx512);
adg_error *kern_bact_alloc(kern_bact *a, int64_t m, int64_t k, int64_t k_pad);
/* On workspace slots slot, slot+1 (x, xt). */
adg_error *kern_bact_alloc_ws(kern_bact *a, int64_t m, int64_t k, int64_t k_pad, kern_ws *ws, int slot);
void kern_bact_free(kern_bact *a);
void kern_bact_rows(kern_bact *a, const float *x, int64_t r0, int64_t r1);
/* Copies the activations into A-tile order, so each tile load reads 512 B (int8) or
 * 1 KiB (bf16) of contiguous memory instead of 16 rows one K-stride apart (a 2-4 KiB
 * stride puts all 16 rows in one L1 set).  Row tiles [t0, t1). */
adg_error *kern_qact_alloc_tiles(kern_qact *a);
void kern_qact_pack_tiles(kern_qact *a, int64_t t0, int64_t t1);
adg_error *kern_bact_alloc_tiles(kern_bact *a);
void kern_bact_pack_tiles(kern_bact *a, int64_t t0, int64_t t1);
/* The AVX-512 row quantizer (kern_ops_avx512.c), exposed for its own test. */
void kern_avx512_quantize_row_q8_0(const float *x, int8_t *q, float *d, int32_t *s, int64_t k);

/* Reference micro-kernels (kern_ops_ref.c). */
void kern_ref_gemm_q(const kern_gemm_job *j, const kern_qact *a);
void kern_ref_gemm_f(const kern_gemm_job *j, const float *x, int64_t m);   /* BF16 / F32 RAW */

/* AVX-512 micro-kernels (kern_ops_avx512.c). */
void kern_avx512_gemm_q(const kern_gemm_job *j, const kern_qact *a);
/* The prompt GEMM's settings are read once from AMXDIAG_AVX512_Q8_MR / _Q4_MR (4|6) and
 * AMXDIAG_AVX512_GEMM_PF (block|line) (docs/kernels.md); this makes the next call read
 * them again (tests). */
void kern_avx512_gemm_q_env_reset(void);
void kern_avx512_gemm_bf16(const kern_gemm_job *j, const kern_bact *a);
void kern_avx512_gemm_f32(const kern_gemm_job *j, const float *x, int64_t m);

/* AMX micro-kernels: the same source compiled against the real tile instructions
 * (amx_gemm_hw.c) and against the emulator (amx_gemm_emu.c). */
typedef struct kern_amx_kernels {
    const char *name;
    /* 1 tile, fp32 sums in zmm, tile work `ahead` K blocks before the scaling (docs/kernels.md) */
    void (*gemm_q_ring)(const kern_gemm_job *j, const kern_qact *a, int ahead, int store_ahead);
    void (*gemm_bf16)(const kern_gemm_job *j, const kern_bact *a);
    /* prompt attention on bf16 tiles (amx/amx_attn.inc.c), as kern_avx512_attn_block */
    void (*attn_block)(const kern_attn_args *a, int64_t kvh, int64_t t0, int64_t t1, void *scratch);
    size_t (*attn_scratch)(int64_t rows, int64_t hd);
} kern_amx_kernels;
extern const kern_amx_kernels kern_amx_hw;
extern const kern_amx_kernels kern_amx_emu;

struct kern_cpu {
    kern_impl impl;                  /* resolved: never AUTO */
    kern_pool *pool;
    kern_crossover xo;
    const kern_amx_kernels *amx;     /* NULL unless amx / amx-emu */
    /* the int8 ring kernel's distances: AMXDIAG_AMX_INT8_KERNEL=ring[:AHEAD,STORE_AHEAD]|1x1
     * (kern_cpu.c; "1x1" = 1, 0, the earlier default's schedule) */
    int ring_ahead, ring_store_ahead;
    int gemv_pf;                 /* KERN_GEMV_PF_* (AMXDIAG_GEMV_PREFETCH) */
    int gemv_pf_dist;            /* blocks ahead (AMXDIAG_GEMV_PF_DIST, 1..64; 0: KERN_GEMV_PF_DIST) */
    int gemv_tail;               /* M = 1: last panels in smaller items (AMXDIAG_GEMV_TAIL) */
    kern_ws ws;                      /* activation buffers reused between calls */
    void **scratch;                  /* one per worker */
    size_t scratch_bytes;
    char desc[200];
};

/* Grows every worker's scratch to at least `bytes`. */
adg_error *kern_cpu_ensure_scratch(kern_cpu *c, size_t bytes);

/* Elementwise / attention ops, per implementation, on rows [r0, r1). */
void kern_ref_rmsnorm(const float *x, const float *w, int64_t r0, int64_t r1, int64_t k, float eps, float *y);
void kern_avx512_rmsnorm(const float *x, const float *w, int64_t r0, int64_t r1, int64_t k, float eps, float *y);
void kern_ref_softmax(float *x, int64_t r0, int64_t r1, int64_t n, float scale);
void kern_avx512_softmax(float *x, int64_t r0, int64_t r1, int64_t n, float scale);
void kern_ref_silu_mul(const float *g, const float *u, int64_t i0, int64_t i1, float *out);
void kern_avx512_silu_mul(const float *g, const float *u, int64_t i0, int64_t i1, float *out);
void kern_ref_rope_neox(float *x, int64_t t0, int64_t t1, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                        const int32_t *pos, float base);
/* NeoX RoPE in two steps: the angles of one position (cs: rot_dim/2 cosines, then as many
 * sines, the values kern_ref_rope_neox uses), and the rotation of n_heads heads with them
 * (the same bits in both implementations). */
void kern_ref_rope_neox_angles(int32_t pos, int64_t rot_dim, float base, float *cs);
void kern_ref_rope_neox_rotate(float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float *cs);
void kern_avx512_rope_neox_rotate(float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float *cs);
/* One (token, head) of attention; scores is n_ctx floats of scratch. */
void kern_ref_attn_row(const kern_attn_args *a, int64_t t, int64_t h, float *scores);
void kern_avx512_attn_row(const kern_attn_args *a, int64_t t, int64_t h, float *scores);
/* y[i] = fp16(x[i]) for i in [i0, i1): VCVTPS2PH (round to nearest even), NaN lanes through
 * kern_fp32_to_fp16, so the bits equal kern_fp32_to_fp16_row's. */
void kern_avx512_fp32_to_fp16(const float *x, uint16_t *y, int64_t i0, int64_t i1);
/* Prompt evaluation: query tokens [t0, t1) of every query head of KV head kvh, keys in
 * blocks of KERN_FA_BK with an online softmax (kern_ops_avx512.c).  scratch holds
 * kern_avx512_attn_block_scratch(rows = (t1 - t0) * heads per KV head, head_dim) bytes. */
#define KERN_FA_BK 64
size_t kern_avx512_attn_block_scratch(int64_t rows, int64_t hd);
void kern_avx512_attn_block(const kern_attn_args *a, int64_t kvh, int64_t t0, int64_t t1, void *scratch);

#endif

/* The row-scaled int8 experiment ("rowq"): what AMX reaches on the same shapes when the
 * numeric contract has ONE scale per weight row and ONE per activation row instead of
 * one per 32 values (docs/kernels.md, "The row-scaled contract").  Opt-in only: the
 * engine's prompt products under `run --amx-scales row` (kernels/engine.c), `amxdiag bench
 * kernels --amx-scales row` and the tests call it; no default depends on it.
 *
 * Contract (every implementation computes exactly this, so they agree bit for bit):
 *  - weights (Q8_0 or Q4_0 in ggml layout) are dequantised once at load, v = d·q
 *    (Q4_0: d·(q − 8)); per output row n: d_w[n] = amax_n / 127 (fp32) and
 *    q_w = RNE(v / d_w[n]) in [−127, 127] (0 where d_w is 0);
 *  - activations: per token row m, d_a[m] = amax_m / 127, q_a = RNE(x / d_a[m]);
 *  - C[m][n] = Σ_k q_a·q_w exactly in int32 over the whole K (K ≤ 131072 keeps it exact);
 *  - y[m][n] = ((float)C · d_a[m]) · d_w[n], two fp32 roundings in this order.
 * RNE: round to nearest even (the CPU's default rounding, as VCVTPS2DQ and lrintf do).
 *
 * Layout: panels of 16 rows; per panel and K chunk of 64: a 16 × 64-byte TDPBSSD B tile in
 * VNNI order (byte (k/4)·64 + n·4 + k%4), K padded with zeros to a multiple of 64 (a K of
 * 32·odd costs one half-empty step).  Activations go into A-tile order, 32-row padded. */
#ifndef KERN_AMX_ROWQ_H
#define KERN_AMX_ROWQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"
#include "kernels/kern_cpu.h"

#define KERN_ROWQ_KC 64          /* K per TDPBSSD step */
#define KERN_ROWQ_TILE 1024      /* bytes of one 16 x 64 tile */
#define KERN_ROWQ_MAX_K 131072   /* 127 * 127 * K < 2^31: the int32 sums cannot wrap */

typedef struct kern_rowq_weight kern_rowq_weight;

/* Repacks n_mat matrices of n rows x k in ggml layout (Q8_0 or Q4_0 only, k % 32 == 0,
 * k <= KERN_ROWQ_MAX_K) into the row-scaled layout, on the context's pool. */
adg_error *kern_rowq_weight_new(kern_cpu *c, kern_type type, int64_t n_mat, int64_t n, int64_t k, const void *data,
                                kern_rowq_weight **out);
void kern_rowq_weight_free(kern_rowq_weight *w);
size_t kern_rowq_weight_bytes(const kern_rowq_weight *w);

/* y[m][n] as kern_matmul, under the row-scaled contract.  Tiles in amx / amx-emu
 * contexts ("amx-int8-rowq-*"), the scalar reference elsewhere ("ref-rowq-*"). */
adg_error *kern_rowq_matmul(kern_cpu *c, const kern_rowq_weight *w, const float *x, int64_t m, float *y,
                            kern_op_info *info);
/* The grouped expert product, arguments as kern_moe_matmul. */
adg_error *kern_rowq_moe_matmul(kern_cpu *c, const kern_rowq_weight *w, const float *x, bool x_per_slot,
                                const int32_t *ids, int64_t n_tokens, int64_t top_k, float *y, kern_op_info *info);

/* The scalar activation quantiser of the contract: d = amax/127, q[i] = RNE(x[i]/d) for
 * i < k, q[i] = 0 for k <= i < k_pad. */
void kern_rowq_quant_row_ref(const float *x, int64_t k, int64_t k_pad, int8_t *q, float *d);
/* The dequantised value of weight row n of matrix e as the kernels use it (d_w·q_w), and
 * the row's scale; for tests and accuracy figures. */
float kern_rowq_weight_scale(const kern_rowq_weight *w, int64_t e, int64_t n);
void kern_rowq_weight_row(const kern_rowq_weight *w, int64_t e, int64_t n, float *out);

/* ---- internal to kernels/amx (the tile units and the driver) ---- */

struct kern_rowq_weight {
    kern_type type;                 /* source format */
    int64_t n_mat, n, k, k_pad;     /* k_pad: multiple of 64 */
    int64_t n_panels, n_pad, nc;    /* nc = k_pad / 64 */
    size_t panel_bytes, mat_bytes;  /* nc * 1024; n_panels * panel_bytes */
    uint8_t *q;                     /* [n_mat][n_panels][nc][1024] */
    float *d;                       /* [n_mat][n_pad], 0 for padding rows */
    size_t q_bytes;
};

/* One worker's share: panels [p0, p1) of one matrix times m rows of A tiles. */
typedef struct kern_rowq_job {
    const kern_rowq_weight *w;
    const uint8_t *wmat;            /* the matrix's panels */
    const float *dw;                /* the matrix's row scales */
    int64_t p0, p1;
    const int8_t *at;               /* A tiles: [m_pad/16][nc][16][64] */
    const float *da;                /* [m] */
    int64_t m;
    float *y;
    int64_t ldy;
    const int64_t *yrow;            /* NULL: row i of y is output row i */
    int64_t mblock;                 /* rows of A per L2 block, a multiple of 32 */
    int64_t kblock;                 /* K steps of 64 per block; 0 or >= nc: the whole K */
    int64_t pf_l1;                  /* > 0: PREFETCHT0 the tiles of step + pf_l1 (64 lines) */
    void *scratch;                  /* kern_rowq_scratch(mblock) bytes, 64-byte aligned */
} kern_rowq_job;

typedef struct kern_rowq_kernels {
    const char *name;
    void (*gemm)(const kern_rowq_job *j);
    /* the AVX-512 quantiser: row x[k] into A-tile order at dst (row r of its tile:
     * dst + c * 1024 + r * 64 for chunk c), d as kern_rowq_quant_row_ref's bits */
    void (*quant_row)(const float *x, int64_t k, int64_t k_pad, int8_t *dst, float *d);
} kern_rowq_kernels;
extern const kern_rowq_kernels kern_rowq_hw;
extern const kern_rowq_kernels kern_rowq_emu;

/* Scratch a job needs: the C tiles, and 4 KiB per 32-row strip of an L2 block. */
static inline size_t kern_rowq_scratch(int64_t mblock)
{
    return 4096 + (size_t)((mblock + 31) / 32) * 4096;
}

/* The scalar reference of the GEMM, same job. */
void kern_rowq_ref_gemm(const kern_rowq_job *j);

#endif

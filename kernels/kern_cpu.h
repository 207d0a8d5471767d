/* CPU kernels of the built-in inference path: one context (thread pool + implementation),
 * weights repacked once at load, and the operations a transformer layer needs.
 *
 * Implementations: "ref" (scalar ground truth), "avx512" (F/BW/VL/VNNI/BF16), "amx"
 * (TDPBSUD / TDPBF16PS tiles; AVX-512 for everything that is not a matmul and for the
 * small-M matmuls below the measured crossover), "amx-emu" (the AMX kernels compiled
 * against a C emulation of the tile instructions: for tests on machines without AMX; slow).
 * "auto" picks amx where AMX is usable, else avx512 where AVX-512 VNNI/BF16 is present,
 * else ref.
 *
 * Numerics (identical in every implementation, so results can be compared bit for bit):
 *  - Q8_0/Q4_0 weights: activations are quantized per row to Q8_0 blocks exactly like
 *    ggml's quantize_row_q8_0 (d_a = fp16(amax/127), q_a = roundf(x/d_a)); for each
 *    output y[m][n] and K block b (32 values), with the integer sum S_b = sum q_a*q_w
 *    (exact) and the offset o (128 for Q8_0, 8 for Q4_0; the kernels store weights
 *    as unsigned q_w + o) and s_b = sum q_a:
 *        t   = fmaf((float)(S_b + o*s_b), d_a, (float)(-o*s_b) * d_a)
 *        acc = fmaf(t, d_w, acc)            for b = 0, 1, ... in order, acc = 0.
 *    So the int8 paths agree bit for bit across ref, avx512, amx and amx-emu.
 *  - BF16/F16 weights: F16 weights are rounded to BF16 when loaded (every implementation),
 *    activations are rounded to BF16, products accumulate in fp32.  The order of the
 *    additions differs between implementations: documented tolerance
 *    |y - y_ref| <= 1e-5 * sum_k |x_k w_k| + 1e-6 (see docs/kernels.md).
 *  - F32 weights: fp32 FMA; same tolerance.
 *  - Attention: fp32 in ref and avx512/amx, within 1e-5 relative + 2e-6 absolute of the
 *    reference per output (the avx512 prompt kernel, n_tokens >= 8, walks keys in
 *    blocks with an online softmax and pre-scales q, so its rounding differs from the
 *    per-row kernel's).  In amx contexts prompt attention (the default; =flash opts out) rounds q*scale,
 *    K, V and the probabilities to bf16 for the tile products: outputs within 2e-2 of
 *    the reference (values in [-1, 1]); =rows forces the per-row kernel.
 *
 * Threads: every operation runs on the context's pool (the calling thread is worker 0).
 * A context must not be used by two threads at once.  Rows of a weight are split
 * statically between workers, and each worker writes (first touches) its own rows when
 * the weight is repacked, so on a multi-node machine a worker reads weights local to its
 * node. */
#ifndef KERN_CPU_H
#define KERN_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"
#include "kernels/kern_quant.h"

typedef enum kern_impl {
    KERN_IMPL_AUTO = 0,
    KERN_IMPL_REF,
    KERN_IMPL_AVX512,
    KERN_IMPL_AMX,
    KERN_IMPL_AMX_EMU,
} kern_impl;

const char *kern_impl_name(kern_impl impl);           /* "auto", "ref", "avx512", "amx", "amx-emu" */
bool kern_impl_parse(const char *s, kern_impl *out);
/* --amx-scales: "block" (the formats' per-32 scales) or "row" (amx_rowq.h); *row says which */
bool kern_amx_scales_parse(const char *s, bool *row);

/* What this CPU and OS offer (CPUID, XCR0, and the AMX permission request). */
typedef struct kern_cpu_features {
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16, f16c, fma;
    bool amx_tile, amx_int8, amx_bf16;   /* CPUID */
    bool os_avx512, os_amx;              /* XCR0 enables the state */
    int amx_palettes;                    /* CPUID 0x1D max palette (0 = none) */
} kern_cpu_features;

const kern_cpu_features *kern_cpu_features_get(void);
/* Can this implementation run here?  The error says what is missing and what to do. */
adg_error *kern_impl_check(kern_impl impl);
/* Asks the kernel for AMX tile data permission (once per process; later calls return
 * the first result). */
adg_error *kern_amx_request_permission(void);

/* Where the dispatcher switches from AVX-512 VNNI to AMX tiles, per weight type: AMX for
 * m >= crossover.  Defaults (docs/kernels.md) until `amxdiag bench kernels --save-crossover`
 * has stored measured values in a JSON file. */
typedef struct kern_crossover {
    int q8_0, q4_0, bf16;
    bool measured;                 /* loaded from a file written by the benchmark */
} kern_crossover;

void kern_crossover_defaults(kern_crossover *c);
/* Default file: $AMXDIAG_CROSSOVER, else $XDG_CACHE_HOME/amxdiag/crossover.json, else
 * ~/.cache/amxdiag/crossover.json.  Returns NULL when none can be named. */
char *kern_crossover_default_path(void);
adg_error *kern_crossover_load(const char *path, kern_crossover *c);
adg_error *kern_crossover_save(const char *path, const kern_crossover *c);

typedef struct kern_cpu_opts {
    kern_impl impl;          /* KERN_IMPL_AUTO by default */
    int threads;             /* 0 = one per CPU this process may run on */
    bool pin;                /* pin workers to CPUs (default off) */
    const char *crossover;   /* crossover file; NULL = default path if it exists, else defaults */
} kern_cpu_opts;

typedef struct kern_cpu kern_cpu;

adg_error *kern_cpu_new(const kern_cpu_opts *opts, kern_cpu **out);
void kern_cpu_free(kern_cpu *ctx);
kern_impl kern_cpu_impl(const kern_cpu *ctx);
int kern_cpu_threads(const kern_cpu *ctx);
const kern_crossover *kern_cpu_crossover(const kern_cpu *ctx);
void kern_cpu_set_crossover(kern_cpu *ctx, const kern_crossover *c);
/* One line for logs: "amx (AMX tiles for m >= 16 q8_0 / 16 q4_0 / 8 bf16, measured), 16 threads, 1 NUMA node". */
const char *kern_cpu_describe(const kern_cpu *ctx);

/* Runs fn(arg, lo, hi) over [0, n) split into contiguous ranges across the context's
 * workers, for the caller's own loops (the engine's bookkeeping).  Runs on the calling
 * thread alone when n * work_per_item is small (< 32768) or the pool has one thread.
 * Like every operation, not to be called from inside another one. */
typedef void (*kern_range_fn)(void *arg, int64_t lo, int64_t hi);
void kern_cpu_parallel(kern_cpu *ctx, int64_t n, int64_t work_per_item, kern_range_fn fn, void *arg);

/* What an operation did; the engine publishes it on the metrics bus. */
typedef struct kern_op_info {
    const char *op;          /* "matmul", "moe_matmul", "rmsnorm", ... (static string) */
    kern_impl impl;          /* implementation that ran (amx ops below crossover say avx512) */
    char variant[48];        /* "amx-int8-q4_0", "avx512-vnni-q4_0", "ref", ... */
    uint64_t flops;          /* 2 per multiply-add */
    uint64_t bytes;          /* weights + activations read and results written */
    uint64_t ns;             /* wall time of the operation */
} kern_op_info;

/* ---- weights ---------------------------------------------------------------------
 * n_mat matrices (experts; 1 for a plain weight), each n rows (outputs) of k elements
 * (inputs) in ggml's layout: row r of matrix e starts at
 * data + (e*n + r) * kern_row_size(type, k).  The data is copied and repacked; the
 * caller may free it afterwards.  Q8_0/Q4_0 need k % 32 == 0; float types take any k. */
typedef struct kern_weight kern_weight;

adg_error *kern_weight_new(kern_cpu *ctx, kern_type type, int64_t n_mat, int64_t n, int64_t k,
                           const void *data, kern_weight **out);
void kern_weight_free(kern_weight *w);
kern_type kern_weight_type(const kern_weight *w);
size_t kern_weight_bytes(const kern_weight *w);     /* resident bytes after repacking */

/* ---- matrix products ------------------------------------------------------------
 * y[m][n] = sum_k x[m][k] * W[n][k], x is m rows of k floats, y is m rows of n floats. */
adg_error *kern_matmul(kern_cpu *ctx, const kern_weight *w, const float *x, int64_t m, float *y,
                       kern_op_info *info);

/* Whether kern_matmul of m rows times w runs on AMX tiles here (the measured crossover,
 * kern_crossover); kern_moe_matmul decides the same per expert group of m rows. */
bool kern_matmul_on_tiles(const kern_cpu *ctx, const kern_weight *w, int64_t m);

/* Grouped expert matmul (MoE).  For token t in [0, n_tokens) and slot j in [0, top_k):
 *   y[t*top_k + j][n] = sum_k x[r][k] * W_e[n][k],  e = ids[t*top_k + j],
 *   r = t when x_per_slot is false (gate/up: one input row per token),
 *   r = t*top_k + j when true (down: one input row per token and slot).
 * ids must lie in [0, n_mat); an id of -1 leaves that output row untouched (skipped). */
adg_error *kern_moe_matmul(kern_cpu *ctx, const kern_weight *w, const float *x, bool x_per_slot,
                           const int32_t *ids, int64_t n_tokens, int64_t top_k, float *y,
                           kern_op_info *info);

/* ---- other operations (all float32 unless said) -------------------------------- */

/* out[i][:] = dequantized row ids[i] of a (rows x k) tensor of `type` in ggml layout. */
adg_error *kern_get_rows(kern_cpu *ctx, kern_type type, const void *data, int64_t rows, int64_t k,
                         const int32_t *ids, int64_t n, float *out, kern_op_info *info);
/* y[i] = x[i] / sqrt(mean(x[i]^2) + eps) * w   (w may be NULL: no weight); y may be x. */
adg_error *kern_rmsnorm(kern_cpu *ctx, const float *x, const float *w, int64_t m, int64_t k, float eps,
                        float *y, kern_op_info *info);
/* NeoX-style rotary embedding in place on x[n_tokens][n_heads][head_dim]: pairs
 * (i, i + rot_dim/2) for i < rot_dim/2 rotate by pos[t] * base^(-2i/rot_dim);
 * dims >= rot_dim are left as they are.  rot_dim even, <= head_dim. */
adg_error *kern_rope_neox(kern_cpu *ctx, float *x, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                          int64_t rot_dim, const int32_t *pos, float base, kern_op_info *info);
/* The same rotation in two steps, for a caller that reuses the angles of a position
 * (every layer of a token): cs gets rot_dim/2 cosines then rot_dim/2 sines; the rotation
 * of n_heads heads of one token in place gives kern_rope_neox's bits. */
void kern_rope_neox_angles(int32_t pos, int64_t rot_dim, float base, float *cs);
void kern_rope_neox_rotate(const kern_cpu *ctx, float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                           const float *cs);
/* Row-wise softmax in place over m rows of n: x = exp(x*scale - max) / sum. */
adg_error *kern_softmax(kern_cpu *ctx, float *x, int64_t m, int64_t n, float scale, kern_op_info *info);
/* out[i] = silu(gate[i]) * up[i] over m rows of n; out may alias gate or up. */
adg_error *kern_silu_mul(kern_cpu *ctx, const float *gate, const float *up, int64_t m, int64_t n,
                         float *out, kern_op_info *info);

/* Causal GQA attention over a KV cache.
 * q:   [n_tokens][n_head][head_dim]; token t sits at position pos0 + t.
 * k,v: the cache, [n_ctx][n_head_kv][head_dim] of kv_type (F32 or F16); positions
 *      0 .. pos0 + n_tokens - 1 must be filled (the new tokens' keys/values included).
 * out: [n_tokens][n_head][head_dim].  Query head h reads KV head h / (n_head/n_head_kv).
 * scale = 1/sqrt(head_dim) when 0.  info->variant names the kernel that ran:
 * "avx512-attention" (per row: decode), "avx512-flash-attention" (prompts),
 * "amx-bf16-flash-attention" (opt-in, see Numerics). */
typedef struct kern_attn_args {
    const float *q;
    const void *k, *v;
    kern_type kv_type;
    int64_t n_tokens, n_head, n_head_kv, head_dim, n_ctx, pos0;
    float scale;
    float *out;
} kern_attn_args;
adg_error *kern_attention(kern_cpu *ctx, const kern_attn_args *a, kern_op_info *info);

/* y[i] = fp16(x[i]) for i < n (new keys and values into an f16 cache), on the pool.  The
 * bits equal kern_fp32_to_fp16_row's in every implementation (round to nearest even,
 * overflow to infinity, subnormals, NaN as there); avx512 and amx use F16C. */
adg_error *kern_store_f16(kern_cpu *ctx, const float *x, uint16_t *y, int64_t n, kern_op_info *info);

/* ---- one-row pieces for a caller's own schedule -------------------------------------
 * The engine's fused generation schedule (engine_fused.c) runs a token's operations in
 * one pool region per layer and hands out panel ranges itself.  These run the same
 * kernels as kern_matmul / kern_moe_matmul at m = 1, so the results are the same bits. */
struct kern_qact;
/* Whether one activation row times w can run here: int8 weights on the VNNI or reference
 * path, float weights in row layout (f32; every float type under ref).  Not bf16 panels,
 * and not when the crossover sends m = 1 to AMX tiles. */
bool kern_gemv_ok(const kern_cpu *ctx, const kern_weight *w);
/* Activation offset of w's integer path (8 for Q4_0, 128 for Q8_0); 0 for float weights,
 * whose kernels read the float row itself. */
int kern_gemv_act_off(const kern_weight *w);
int64_t kern_weight_panels(const kern_weight *w);      /* 16-row output panels */
int64_t kern_weight_n(const kern_weight *w);           /* output rows */
int64_t kern_weight_k(const kern_weight *w);           /* inputs */
int64_t kern_weight_n_mat(const kern_weight *w);
const char *kern_gemv_variant(const kern_cpu *ctx, const kern_weight *w);   /* "avx512-vnni-q4_0", ... */
/* y[n] for the rows of panels [p0, p1) of matrix mat, on worker ith's scratch:
 * qa (its row 0, quantized with kern_gemv_act_off) for int weights, x for float ones.
 * The caller has grown the scratch (kern_cpu_ensure_scratch, kern_scratch_need). */
void kern_gemv_panels(kern_cpu *ctx, int ith, const kern_weight *w, int64_t mat, const struct kern_qact *qa,
                      const float *x, int64_t p0, int64_t p1, float *y);
/* Items of a one-row product of n_panels in chunks of `chunk` (at 4 or more): with
 * AMXDIAG_GEMV_TAIL=1 the last panels (two items per worker of nth) in items of a quarter
 * chunk, so the last worker to finish is not a whole chunk late.  Returns the item count;
 * kern_gemv_item gives item i's panels [p0, p1).  small 0: every item a chunk. */
int64_t kern_gemv_split(const kern_cpu *ctx, int64_t n_panels, int64_t chunk, int nth, int64_t *small, int64_t *nbig);
void kern_gemv_item(int64_t n_panels, int64_t chunk, int64_t small, int64_t nbig, int64_t i, int64_t *p0, int64_t *p1);
/* One activation row x times nw int8 weights of the same k (matrix mats[i] of ws[i], 0 if
 * mats is NULL) into ys[i], in ONE pool region with x quantized once: (product, panel
 * chunk) items from one counter, as the fused generation schedule runs its Q/K/V list
 * (and a run of products of one weight, a token's experts, with chunks sized for the run,
 * as it runs its expert phases).
 * The same kernels and bits as kern_matmul at m = 1.  The bench times small matrices
 * (attn_kv, router) this way, where a region per product measures the dispatch. */
adg_error *kern_gemv_batch(kern_cpu *ctx, const kern_weight *const *ws, const int64_t *mats, int nw, const float *x,
                           float *const *ys, kern_op_info *info);

#endif

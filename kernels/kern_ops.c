/* Dispatch of the non-matmul operations: rows split over the pool when there is enough
 * work, AVX-512 unless the context runs the reference kernels. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/kern_internal.h"

/* Below this many elements an op runs on the calling thread: waking workers costs more. */
#define PAR_MIN 32768

static bool vec(const kern_cpu *c) { return c->impl != KERN_IMPL_REF; }

static void info_set(kern_op_info *info, const char *op, const kern_cpu *c, uint64_t flops, uint64_t bytes, uint64_t t0)
{
    if (!info)
        return;
    info->op = op;
    info->impl = vec(c) ? KERN_IMPL_AVX512 : KERN_IMPL_REF;
    snprintf(info->variant, sizeof info->variant, "%s-%s", vec(c) ? "avx512" : "ref", op);
    info->flops = flops;
    info->bytes = bytes;
    info->ns = adg_now_ns() - t0;
}

static void run_rows(kern_cpu *c, int64_t rows, int64_t work, kern_pool_fn fn, void *arg)
{
    if (work < PAR_MIN || rows < 2)
        fn(arg, 0, 1);
    else
        kern_pool_run(c->pool, fn, arg);
}

/* ---- get_rows ---- */
typedef struct gr_args {
    kern_type type;
    const uint8_t *data;
    size_t rs;
    int64_t k;
    const int32_t *ids;
    int64_t n;
    float *out;
} gr_args;

static void gr_worker(void *arg, int ith, int nth)
{
    gr_args *a = arg;
    long lo, hi;
    kern_split((long)a->n, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        adg_error *e = kern_dequantize_row(a->type, a->data + (size_t)a->ids[i] * a->rs, a->out + i * a->k, a->k);
        adg_error_free(e);   /* checked before the run */
    }
}

adg_error *kern_get_rows(kern_cpu *c, kern_type type, const void *data, int64_t rows, int64_t k, const int32_t *ids,
                         int64_t n, float *out, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    adg_error *e = kern_row_check(type, k);
    if (e)
        return adg_error_prefix(e, "get_rows");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= rows)
            return adg_error_new(ADG_E_USAGE, "get_rows: id %d at %lld is outside 0..%lld", ids[i], (long long)i,
                                 (long long)rows - 1);
    gr_args a = {type, data, kern_row_size(type, k), k, ids, n, out};
    run_rows(c, n, n * k, gr_worker, &a);
    info_set(info, "get_rows", c, 0, (uint64_t)n * (a.rs + (uint64_t)k * 4), t0);
    if (info)
        snprintf(info->variant, sizeof info->variant, "dequant-%s", kern_type_name(type));
    return NULL;
}

/* ---- rmsnorm ---- */
typedef struct rn_args {
    const float *x, *w;
    int64_t m, k;
    float eps;
    float *y;
    bool vec;
} rn_args;

static void rn_worker(void *arg, int ith, int nth)
{
    rn_args *a = arg;
    long lo, hi;
    kern_split((long)a->m, ith, nth, &lo, &hi);
    if (a->vec)
        kern_avx512_rmsnorm(a->x, a->w, lo, hi, a->k, a->eps, a->y);
    else
        kern_ref_rmsnorm(a->x, a->w, lo, hi, a->k, a->eps, a->y);
}

adg_error *kern_rmsnorm(kern_cpu *c, const float *x, const float *w, int64_t m, int64_t k, float eps, float *y,
                        kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    if (m < 1 || k < 1)
        return adg_error_new(ADG_E_USAGE, "rmsnorm: %lld rows of %lld: both must be >= 1", (long long)m, (long long)k);
    if (!(eps >= 0))
        return adg_error_new(ADG_E_USAGE, "rmsnorm: eps must be >= 0");
    rn_args a = {x, w, m, k, eps, y, vec(c)};
    run_rows(c, m, m * k, rn_worker, &a);
    info_set(info, "rmsnorm", c, 4ull * (uint64_t)(m * k), 8ull * (uint64_t)(m * k), t0);
    return NULL;
}

/* ---- softmax ---- */
typedef struct sm_args {
    float *x;
    int64_t m, n;
    float scale;
    bool vec;
} sm_args;

static void sm_worker(void *arg, int ith, int nth)
{
    sm_args *a = arg;
    long lo, hi;
    kern_split((long)a->m, ith, nth, &lo, &hi);
    if (a->vec)
        kern_avx512_softmax(a->x, lo, hi, a->n, a->scale);
    else
        kern_ref_softmax(a->x, lo, hi, a->n, a->scale);
}

adg_error *kern_softmax(kern_cpu *c, float *x, int64_t m, int64_t n, float scale, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    if (m < 1 || n < 1)
        return adg_error_new(ADG_E_USAGE, "softmax: %lld rows of %lld: both must be >= 1", (long long)m, (long long)n);
    sm_args a = {x, m, n, scale, vec(c)};
    run_rows(c, m, m * n, sm_worker, &a);
    info_set(info, "softmax", c, 5ull * (uint64_t)(m * n), 8ull * (uint64_t)(m * n), t0);
    return NULL;
}

/* ---- silu * mul ---- */
typedef struct sl_args {
    const float *g, *u;
    int64_t total;
    float *out;
    bool vec;
} sl_args;

static void sl_worker(void *arg, int ith, int nth)
{
    sl_args *a = arg;
    long lo, hi;
    kern_split((long)((a->total + 15) / 16), ith, nth, &lo, &hi);   /* whole vectors per worker */
    int64_t i0 = lo * 16, i1 = hi * 16 < a->total ? hi * 16 : a->total;
    if (i0 >= i1)
        return;
    if (a->vec)
        kern_avx512_silu_mul(a->g, a->u, i0, i1, a->out);
    else
        kern_ref_silu_mul(a->g, a->u, i0, i1, a->out);
}

adg_error *kern_silu_mul(kern_cpu *c, const float *gate, const float *up, int64_t m, int64_t n, float *out,
                         kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    if (m < 1 || n < 1)
        return adg_error_new(ADG_E_USAGE, "silu_mul: %lld rows of %lld: both must be >= 1", (long long)m, (long long)n);
    sl_args a = {gate, up, m * n, out, vec(c)};
    run_rows(c, m * n, m * n, sl_worker, &a);
    info_set(info, "silu_mul", c, 6ull * (uint64_t)(m * n), 12ull * (uint64_t)(m * n), t0);
    return NULL;
}

/* ---- rope ---- */
typedef struct rp_args {
    float *x;
    int64_t n_tokens, n_heads, head_dim, rot_dim;
    const int32_t *pos;
    float base;
    bool vec;
} rp_args;

#define ROPE_MAX_ROT 1024

static void rp_worker(void *arg, int ith, int nth)
{
    rp_args *a = arg;
    long lo, hi;
    kern_split((long)a->n_tokens, ith, nth, &lo, &hi);
    if (a->rot_dim > ROPE_MAX_ROT || !a->vec) {
        kern_ref_rope_neox(a->x, lo, hi, a->n_heads, a->head_dim, a->rot_dim, a->pos, a->base);
        return;
    }
    /* the angles once per token for every head, the rotation in vectors: same bits */
    float cs[ROPE_MAX_ROT];
    for (long t = lo; t < hi; t++) {
        kern_ref_rope_neox_angles(a->pos[t], a->rot_dim, a->base, cs);
        kern_avx512_rope_neox_rotate(a->x + t * a->n_heads * a->head_dim, a->n_heads, a->head_dim, a->rot_dim, cs);
    }
}

void kern_rope_neox_angles(int32_t pos, int64_t rot_dim, float base, float *cs)
{
    kern_ref_rope_neox_angles(pos, rot_dim, base, cs);
}

void kern_rope_neox_rotate(const kern_cpu *c, float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                           const float *cs)
{
    if (vec(c))
        kern_avx512_rope_neox_rotate(x, n_heads, head_dim, rot_dim, cs);
    else
        kern_ref_rope_neox_rotate(x, n_heads, head_dim, rot_dim, cs);
}

adg_error *kern_rope_neox(kern_cpu *c, float *x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                          const int32_t *pos, float base, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    if (n_tokens < 1 || n_heads < 1 || head_dim < 2)
        return adg_error_new(ADG_E_USAGE, "rope: %lld tokens, %lld heads of %lld: need >= 1, >= 1, >= 2",
                             (long long)n_tokens, (long long)n_heads, (long long)head_dim);
    if (rot_dim < 2 || rot_dim > head_dim || rot_dim % 2)
        return adg_error_new(ADG_E_USAGE, "rope: rotary dimension %lld must be even and in 2..head_dim (%lld)",
                             (long long)rot_dim, (long long)head_dim);
    if (!(base > 0))
        return adg_error_new(ADG_E_USAGE, "rope: frequency base must be > 0");
    rp_args a = {x, n_tokens, n_heads, head_dim, rot_dim, pos, base, vec(c)};
    run_rows(c, n_tokens, n_tokens * n_heads * head_dim, rp_worker, &a);
    info_set(info, "rope", c, 6ull * (uint64_t)(n_tokens * n_heads * rot_dim / 2),
             8ull * (uint64_t)(n_tokens * n_heads * head_dim), t0);
    if (info)   /* the angles are scalar (double) in every implementation: most of the cost */
        snprintf(info->variant, sizeof info->variant, "%s", vec(c) && rot_dim <= ROPE_MAX_ROT ? "avx512-rope-neox" : "scalar-rope-neox");
    return NULL;
}

/* ---- attention ---- */
typedef struct at_args {
    kern_cpu *c;
    const kern_attn_args *a;
    bool vec;
} at_args;

static void at_worker(void *arg, int ith, int nth)
{
    at_args *x = arg;
    const kern_attn_args *a = x->a;
    long lo, hi;
    kern_split((long)(a->n_tokens * a->n_head), ith, nth, &lo, &hi);
    float *scores = x->c->scratch[ith];
    for (long i = lo; i < hi; i++) {
        if (x->vec)
            kern_avx512_attn_row(a, i / a->n_head, i % a->n_head, scores);
        else
            kern_ref_attn_row(a, i / a->n_head, i % a->n_head, scores);
    }
}

/* Prompt evaluation: items are (KV head, block of query tokens), taken from one counter
 * last block first, since causal blocks grow with their position and the longest ones
 * should not start last. */
typedef struct fa_args {
    const kern_attn_args *a;
    kern_cpu *c;
    int64_t bq, n_qb, items;
    bool amx;
    _Atomic int64_t next;
} fa_args;

static void fa_worker(void *arg, int ith, int nth)
{
    (void)nth;
    fa_args *x = arg;
    const kern_attn_args *a = x->a;
    for (;;) {
        const int64_t item = atomic_fetch_add_explicit(&x->next, 1, memory_order_relaxed);
        if (item >= x->items)
            return;
        const int64_t qb = x->n_qb - 1 - item / a->n_head_kv, kvh = item % a->n_head_kv;
        const int64_t t0 = qb * x->bq, t1 = t0 + x->bq < a->n_tokens ? t0 + x->bq : a->n_tokens;
        if (x->amx)
            x->c->amx->attn_block(a, kvh, t0, t1, x->c->scratch[ith]);
        else
            kern_avx512_attn_block(a, kvh, t0, t1, x->c->scratch[ith]);
    }
}

/* Below this many query tokens the per-row kernel runs: a decode step has one token and
 * only n_head_kv blocks, too few for the pool. */
#define FA_MIN_TOKENS 8
/* Query rows per block (tokens x heads per KV head): 64 rows of Q^T and O stay in L2 and
 * each converted key feeds 64 rows. */
#define FA_ROWS 64

adg_error *kern_attention(kern_cpu *c, const kern_attn_args *in, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    kern_attn_args a = *in;
    if (a.kv_type != KERN_TYPE_F32 && a.kv_type != KERN_TYPE_F16)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "attention: KV cache type %s is not supported",
                                            kern_type_name(a.kv_type)),
                              "use an f32 or f16 KV cache");
    if (a.n_tokens < 1 || a.n_head < 1 || a.n_head_kv < 1 || a.head_dim < 1 || a.pos0 < 0)
        return adg_error_new(ADG_E_USAGE, "attention: tokens, heads, KV heads and head_dim must be >= 1, pos0 >= 0");
    if (a.n_head % a.n_head_kv)
        return adg_error_new(ADG_E_USAGE, "attention: %lld query heads are not a multiple of %lld KV heads (GQA groups)",
                             (long long)a.n_head, (long long)a.n_head_kv);
    if (a.pos0 + a.n_tokens > a.n_ctx)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "attention: positions up to %lld do not fit the KV cache of %lld",
                                            (long long)(a.pos0 + a.n_tokens), (long long)a.n_ctx),
                              "use a larger context (n_ctx)");
    if (a.scale == 0)
        a.scale = 1.0f / sqrtf((float)a.head_dim);
    const int64_t n_kv = a.pos0 + a.n_tokens, G = a.n_head / a.n_head_kv;
    /* Prompt attention: on bf16 tiles in amx contexts, the AVX-512 block kernel otherwise
     * (docs/kernels.md).  AMXDIAG_ATTN_KERNEL=flash keeps the fp32 block kernel in amx
     * contexts too, =rows the per-row kernel for prompts (A/B runs). */
    const char *ak = getenv("AMXDIAG_ATTN_KERNEL");
    const bool flash = vec(c) && a.n_tokens >= FA_MIN_TOKENS && !(ak && strcmp(ak, "rows") == 0);
    const bool tiles = flash && c->amx && !(ak && strcmp(ak, "flash") == 0);
    adg_error *e;
    if (flash) {
        /* AMXDIAG_ATTN_ROWS=N (16..512) overrides the query rows per block, for tuning runs */
        const char *ar = getenv("AMXDIAG_ATTN_ROWS");
        long rows = ar ? strtol(ar, NULL, 10) : FA_ROWS;
        rows = rows < 16 || rows > 512 ? FA_ROWS : rows;
        fa_args x = {&a, c, G >= rows ? 1 : rows / G, 0, 0, tiles, 0};
        x.n_qb = (a.n_tokens + x.bq - 1) / x.bq;
        x.items = x.n_qb * a.n_head_kv;
        atomic_store(&x.next, 0);
        if ((e = kern_cpu_ensure_scratch(c, tiles ? c->amx->attn_scratch(x.bq * G, a.head_dim)
                                                  : kern_avx512_attn_block_scratch(x.bq * G, a.head_dim))))
            return e;
        if (x.items == 1 || kern_pool_size(c->pool) == 1)
            fa_worker(&x, 0, 1);
        else
            kern_pool_run(c->pool, fa_worker, &x);
    } else {
        if ((e = kern_cpu_ensure_scratch(c, (size_t)(a.pos0 + a.n_tokens + 16) * sizeof(float))))
            return e;
        at_args x = {c, &a, vec(c)};
        run_rows(c, a.n_tokens * a.n_head, a.n_tokens * a.n_head * n_kv * a.head_dim / 4, at_worker, &x);
    }
    const uint64_t es = a.kv_type == KERN_TYPE_F16 ? 2 : 4;
    info_set(info, "attention", c, 4ull * (uint64_t)(a.n_tokens * a.n_head) * (uint64_t)n_kv * (uint64_t)a.head_dim,
             2ull * es * (uint64_t)n_kv * (uint64_t)(a.n_head_kv * a.head_dim) +
                 8ull * (uint64_t)(a.n_tokens * a.n_head * a.head_dim),
             t0);
    if (info && flash)
        snprintf(info->variant, sizeof info->variant, "%s", tiles ? "amx-bf16-flash-attention" : "avx512-flash-attention");
    if (info && tiles)
        info->impl = c->impl;
    return NULL;
}

/* ---- f32 -> f16 stores (the KV cache) ---- */
typedef struct h_args {
    const float *x;
    uint16_t *y;
    int64_t n;
    bool vec;
} h_args;

static void h_worker(void *arg, int ith, int nth)
{
    h_args *a = arg;
    long lo, hi;
    /* whole 16-element vectors per worker */
    kern_split((long)((a->n + 15) / 16), ith, nth, &lo, &hi);
    const int64_t i0 = lo * 16, i1 = hi * 16 < a->n ? hi * 16 : a->n;
    if (i0 >= i1)
        return;
    if (a->vec)
        kern_avx512_fp32_to_fp16(a->x, a->y, i0, i1);
    else
        kern_fp32_to_fp16_row(a->x + i0, a->y + i0, i1 - i0);
}

adg_error *kern_store_f16(kern_cpu *c, const float *x, uint16_t *y, int64_t n, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    if (n < 0)
        return adg_error_new(ADG_E_USAGE, "store_f16: negative length %lld", (long long)n);
    h_args a = {x, y, n, vec(c)};
    run_rows(c, (n + 15) / 16, n, h_worker, &a);
    info_set(info, "store_f16", c, 0, (uint64_t)n * 6, t0);
    if (info)
        snprintf(info->variant, sizeof info->variant, "%s", vec(c) ? "avx512-f16c" : "ref-f16");
    return NULL;
}

/* ---- kern_cpu_parallel ---- */
typedef struct par_args {
    kern_range_fn fn;
    void *arg;
    int64_t n;
} par_args;

static void par_worker(void *arg, int ith, int nth)
{
    par_args *p = arg;
    long lo, hi;
    kern_split((long)p->n, ith, nth, &lo, &hi);
    if (hi > lo)
        p->fn(p->arg, lo, hi);
}

void kern_cpu_parallel(kern_cpu *c, int64_t n, int64_t work_per_item, kern_range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (n == 1 || n * work_per_item < PAR_MIN || kern_pool_size(c->pool) == 1) {
        fn(arg, 0, n);
        return;
    }
    par_args p = {fn, arg, n};
    kern_pool_run(c->pool, par_worker, &p);
}

/* The row-scaled int8 experiment (amx_rowq.h): weight repacking, the scalar reference,
 * and the threaded dense and grouped-expert drivers.  The tile code is amx_rowq.inc.c. */
#include "kernels/amx/amx_rowq.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/adg_util.h"
#include "kernels/kern_internal.h"

/* The context workspace slot the experiment borrows (the shipped paths use 0..14). */
#define ROWQ_WS_SLOT 15

/* ---- the contract's quantiser ---- */

static float row_amax(const float *x, int64_t k)
{
    float mx = 0.0f;
    for (int64_t i = 0; i < k; i++) {
        const float a = fabsf(x[i]);
        mx = a > mx ? a : mx;
    }
    return mx;
}

static int8_t q_of(float x, float d)
{
    long v = lrintf(x / d);
    return (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
}

/* byte i at dst + (i / 64) * stride + i % 64 */
static void quant_row_strided(const float *x, int64_t k, int64_t k_pad, int8_t *dst, size_t stride, float *d)
{
    const float dd = row_amax(x, k) / 127.0f;
    *d = dd;
    for (int64_t i = 0; i < k_pad; i++)
        dst[(size_t)(i / KERN_ROWQ_KC) * stride + (size_t)(i % KERN_ROWQ_KC)] = i < k && dd != 0.0f ? q_of(x[i], dd) : 0;
}

void kern_rowq_quant_row_ref(const float *x, int64_t k, int64_t k_pad, int8_t *q, float *d)
{
    quant_row_strided(x, k, k_pad, q, KERN_ROWQ_KC, d);
}

static void quant_tile_row_ref(const float *x, int64_t k, int64_t k_pad, int8_t *dst, float *d)
{
    quant_row_strided(x, k, k_pad, dst, KERN_ROWQ_TILE, d);
}

/* ---- weights ---- */

size_t kern_rowq_weight_bytes(const kern_rowq_weight *w)
{
    return w->mat_bytes * (size_t)w->n_mat + (size_t)(w->n_mat * w->n_pad) * sizeof(float);
}

float kern_rowq_weight_scale(const kern_rowq_weight *w, int64_t e, int64_t n)
{
    return w->d[e * w->n_pad + n];
}

void kern_rowq_weight_row(const kern_rowq_weight *w, int64_t e, int64_t n, float *out)
{
    const uint8_t *pan = w->q + (size_t)e * w->mat_bytes + (size_t)(n / 16) * w->panel_bytes;
    const float d = kern_rowq_weight_scale(w, e, n);
    for (int64_t k = 0; k < w->k; k++) {
        const int64_t kk = k % KERN_ROWQ_KC;
        const int8_t q = (int8_t)pan[(size_t)(k / KERN_ROWQ_KC) * KERN_ROWQ_TILE + (size_t)((kk / 4) * 64 + (n % 16) * 4 + kk % 4)];
        out[k] = d * (float)q;
    }
}

typedef struct repack_args {
    kern_rowq_weight *w;
    const uint8_t *src;
    float *fbuf;        /* per worker: k floats */
    int8_t *qbuf;       /* per worker: k_pad bytes */
} repack_args;

static void repack_worker(void *arg, int ith, int nth)
{
    repack_args *a = arg;
    kern_rowq_weight *w = a->w;
    float *f = a->fbuf + (size_t)ith * (size_t)w->k;
    int8_t *q = a->qbuf + (size_t)ith * (size_t)w->k_pad;
    const size_t rs = kern_row_size(w->type, w->k);
    long lo, hi;
    /* the static split of the shipped repacking: each worker first-touches panels it may read */
    kern_split((long)(w->n_mat * w->n_panels), ith, nth, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        const int64_t e = it / w->n_panels, p = it % w->n_panels;
        uint8_t *pan = w->q + (size_t)e * w->mat_bytes + (size_t)p * w->panel_bytes;
        for (int nn = 0; nn < 16; nn++) {
            const int64_t r = p * 16 + nn;
            float *d = &w->d[e * w->n_pad + r];
            if (r < w->n) {
                const uint8_t *row = a->src + ((size_t)e * (size_t)w->n + (size_t)r) * rs;
                if (w->type == KERN_TYPE_Q8_0)
                    kern_dequantize_row_q8_0((const kern_block_q8_0 *)row, f, w->k);
                else
                    kern_dequantize_row_q4_0((const kern_block_q4_0 *)row, f, w->k);
                kern_rowq_quant_row_ref(f, w->k, w->k_pad, q, d);
            } else {
                memset(q, 0, (size_t)w->k_pad);
                *d = 0.0f;
            }
            for (int64_t k = 0; k < w->k_pad; k++) {
                const int64_t kk = k % KERN_ROWQ_KC;
                pan[(size_t)(k / KERN_ROWQ_KC) * KERN_ROWQ_TILE + (size_t)((kk / 4) * 64 + nn * 4 + kk % 4)] = (uint8_t)q[k];
            }
        }
    }
}

adg_error *kern_rowq_weight_new(kern_cpu *c, kern_type type, int64_t n_mat, int64_t n, int64_t k, const void *data,
                                kern_rowq_weight **out)
{
    *out = NULL;
    if (type != KERN_TYPE_Q8_0 && type != KERN_TYPE_Q4_0)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "the row-scaled experiment takes q8_0 or q4_0 weights, "
                                                               "not %s", kern_type_name(type)),
                              "bf16 tiles already accumulate over the whole K; use the shipped path for them");
    if (n_mat < 1 || n < 1 || k < 1)
        return adg_error_new(ADG_E_USAGE, "weight shape %lld x %lld x %lld: every dimension must be >= 1",
                             (long long)n_mat, (long long)n, (long long)k);
    adg_error *e = kern_row_check(type, k);
    if (e)
        return adg_error_prefix(e, "row-scaled weight");
    if (k > KERN_ROWQ_MAX_K)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "k = %lld exceeds %d: the row-scaled int32 sums of "
                                                               "127 x 127 products could wrap", (long long)k, KERN_ROWQ_MAX_K),
                              "split K into pieces of at most %d", KERN_ROWQ_MAX_K);
    if (n > (1ll << 31))
        return adg_error_new(ADG_E_UNSUPPORTED, "weight shape %lld rows exceeds 2^31", (long long)n);
    kern_rowq_weight *w = calloc(1, sizeof *w);
    if (!w)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->type = type;
    w->n_mat = n_mat;
    w->n = n;
    w->k = k;
    w->k_pad = (k + KERN_ROWQ_KC - 1) / KERN_ROWQ_KC * KERN_ROWQ_KC;
    w->nc = w->k_pad / KERN_ROWQ_KC;
    w->n_panels = (n + 15) / 16;
    w->n_pad = w->n_panels * 16;
    w->panel_bytes = (size_t)w->nc * KERN_ROWQ_TILE;
    w->mat_bytes = w->panel_bytes * (size_t)w->n_panels;
    w->q_bytes = (w->mat_bytes * (size_t)n_mat + 4095) & ~(size_t)4095;
    /* as the shipped weights: anonymous pages first touched by the worker that repacks them */
    w->q = mmap(NULL, w->q_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->q == MAP_FAILED) {
        int err = errno;
        free(w);
        return adg_error_hint(adg_error_errno(ADG_E_NOMEM, err, "cannot map %zu bytes for a row-scaled weight",
                                              (size_t)(n_mat * n) * (size_t)k),
                              "free memory or benchmark fewer shapes");
    }
    if (w->q_bytes >= (4u << 20))
        madvise(w->q, w->q_bytes, MADV_HUGEPAGE);
    const int nth = kern_cpu_threads(c);
    w->d = calloc((size_t)(n_mat * w->n_pad), sizeof *w->d);
    repack_args ra = {w, data, malloc((size_t)nth * (size_t)k * sizeof(float)), malloc((size_t)nth * (size_t)w->k_pad)};
    if (!w->d || !ra.fbuf || !ra.qbuf) {
        free(ra.fbuf);
        free(ra.qbuf);
        kern_rowq_weight_free(w);
        return adg_error_new(ADG_E_NOMEM, "out of memory repacking a row-scaled weight");
    }
    kern_pool_run(c->pool, repack_worker, &ra);
    free(ra.fbuf);
    free(ra.qbuf);
    *out = w;
    return NULL;
}

void kern_rowq_weight_free(kern_rowq_weight *w)
{
    if (!w)
        return;
    if (w->q && w->q != MAP_FAILED)
        munmap(w->q, w->q_bytes);
    free(w->d);
    free(w);
}

/* ---- the scalar reference GEMM (same job, same packed operands) ---- */

void kern_rowq_ref_gemm(const kern_rowq_job *j)
{
    const kern_rowq_weight *w = j->w;
    const int64_t n1 = j->p1 * 16 < w->n ? j->p1 * 16 : w->n;
    for (int64_t n = j->p0 * 16; n < n1; n++) {
        const uint8_t *pan = j->wmat + (size_t)(n / 16) * w->panel_bytes;
        for (int64_t i = 0; i < j->m; i++) {
            const int8_t *ar = j->at + (size_t)(i / 16) * (size_t)w->nc * KERN_ROWQ_TILE + (size_t)(i % 16) * 64;
            int32_t sum = 0;
            for (int64_t c = 0; c < w->nc; c++)
                for (int kk = 0; kk < KERN_ROWQ_KC; kk++)
                    sum += ar[c * KERN_ROWQ_TILE + kk] *
                           (int8_t)pan[(size_t)c * KERN_ROWQ_TILE + (size_t)((kk / 4) * 64 + (n % 16) * 4 + kk % 4)];
            const float t = (float)sum * j->da[i];
            j->y[(j->yrow ? j->yrow[i] : i) * j->ldy + n] = t * j->dw[n];
        }
    }
}

/* ---- drivers ---- */

/* Tuning knobs for the device's sweep (docs/kernels.md): A rows per L2 block as KiB of A
 * (AMXDIAG_AMX_ROWQ_L2KB, default 512), panel pairs per work item (AMXDIAG_AMX_ROWQ_CHUNK,
 * default 0 = an even share per worker for a dense product), K steps of 64 per K block
 * (AMXDIAG_AMX_ROWQ_KB, default 0 = the whole K), and how many K steps ahead every tile
 * line is prefetched into L1 (AMXDIAG_AMX_ROWQ_PF, default 0 = only the first strip's B
 * from memory). */
static int64_t env_i64(const char *name, int64_t def, int64_t lo, int64_t hi)
{
    const char *v = getenv(name);
    uint64_t u;
    if (!v || !*v || !adg_parse_u64(v, &u) || (int64_t)u < lo || (int64_t)u > hi)
        return def;
    return (int64_t)u;
}

static int64_t mblock_rows(int64_t k_pad)
{
    const int64_t kib = env_i64("AMXDIAG_AMX_ROWQ_L2KB", 512, 16, 1 << 20);
    const int64_t r = kib * 1024 / k_pad / 32 * 32;
    return r < 32 ? 32 : r;
}

typedef void (*rowq_gemm_fn)(const kern_rowq_job *);
typedef void (*rowq_quant_fn)(const float *, int64_t, int64_t, int8_t *, float *);

static rowq_gemm_fn gemm_of(const kern_cpu *c)
{
    return c->impl == KERN_IMPL_AMX ? kern_rowq_hw.gemm : c->impl == KERN_IMPL_AMX_EMU ? kern_rowq_emu.gemm : kern_rowq_ref_gemm;
}

/* The AVX-512 quantiser needs no tiles: the emulator unit's copy serves avx512 contexts. */
static rowq_quant_fn quant_of(const kern_cpu *c)
{
    return c->impl == KERN_IMPL_AMX ? kern_rowq_hw.quant_row
         : c->impl == KERN_IMPL_AMX_EMU || c->impl == KERN_IMPL_AVX512 ? kern_rowq_emu.quant_row : quant_tile_row_ref;
}

static const char *variant_of(const kern_cpu *c, const kern_rowq_weight *w)
{
    const bool tiles = c->impl == KERN_IMPL_AMX || c->impl == KERN_IMPL_AMX_EMU;
    return w->type == KERN_TYPE_Q8_0 ? (tiles ? "amx-int8-rowq-q8_0" : "ref-rowq-q8_0")
                                     : (tiles ? "amx-int8-rowq-q4_0" : "ref-rowq-q4_0");
}

static int8_t *tile_row(int8_t *at, int64_t nc, int64_t r)
{
    return at + (size_t)(r / 16) * (size_t)nc * KERN_ROWQ_TILE + (size_t)(r % 16) * 64;
}

typedef struct quant_args {
    rowq_quant_fn fn;
    const float *x;
    int64_t rows, rows_pad, k, k_pad, nc;
    int8_t *at;
    float *da;
} quant_args;

static void quant_worker(void *arg, int ith, int nth)
{
    quant_args *a = arg;
    long lo, hi;
    kern_split((long)a->rows_pad, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++) {
        int8_t *dst = tile_row(a->at, a->nc, r);
        if (r < a->rows) {
            a->fn(a->x + r * a->k, a->k, a->k_pad, dst, &a->da[r]);
        } else {   /* padding rows: zero, scale 0 */
            for (int64_t c = 0; c < a->nc; c++)
                memset(dst + c * KERN_ROWQ_TILE, 0, 64);
            a->da[r] = 0.0f;
        }
    }
}

static void run_quant(kern_cpu *c, quant_args *qa)
{
    if (qa->rows * qa->k < 65536)
        quant_worker(qa, 0, 1);
    else
        kern_pool_run(c->pool, quant_worker, qa);
}

/* One group of rows (a dense product, or one expert's tokens) and its place in y. */
typedef struct rowq_group {
    int64_t mat, m;
    const int8_t *at;
    const float *da;
    const int64_t *yrow;
} rowq_group;

typedef struct gemm_args {
    kern_cpu *c;
    const kern_rowq_weight *w;
    const rowq_group *g;
    int64_t ng, chunk, per_group;   /* items: (group, chunk of panel pairs) */
    float *y;
    rowq_gemm_fn fn;
    int64_t mblock, kblock, pf_l1;
    _Atomic int64_t next;
} gemm_args;

static void gemm_worker(void *arg, int ith, int nth)
{
    (void)nth;
    gemm_args *a = arg;
    const kern_rowq_weight *w = a->w;
    for (;;) {
        const int64_t item = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        if (item >= a->ng * a->per_group)
            return;
        const rowq_group *g = &a->g[item / a->per_group];
        const int64_t p0 = item % a->per_group * a->chunk * 2;
        const int64_t p1 = p0 + a->chunk * 2 < w->n_panels ? p0 + a->chunk * 2 : w->n_panels;
        kern_rowq_job j = {w, w->q + (size_t)g->mat * w->mat_bytes, w->d + g->mat * w->n_pad, p0, p1, g->at, g->da,
                           g->m, a->y, w->n, g->yrow, a->mblock, a->kblock, a->pf_l1,
                           a->c->scratch[ith]};
        a->fn(&j);
    }
}

static adg_error *run_gemm(kern_cpu *c, const kern_rowq_weight *w, const rowq_group *g, int64_t ng, int64_t def_chunk,
                           float *y)
{
    const int64_t pairs = (w->n_panels + 1) / 2;
    int64_t chunk = env_i64("AMXDIAG_AMX_ROWQ_CHUNK", 0, 0, 1 << 30);
    if (chunk == 0)
        chunk = def_chunk;
    chunk = chunk < 1 ? 1 : chunk > pairs ? pairs : chunk;
    int64_t max_m = 32;   /* a block need not be taller than the tallest group (scratch per strip) */
    for (int64_t i = 0; i < ng; i++)
        max_m = g[i].m > max_m ? g[i].m : max_m;
    int64_t mblock = mblock_rows(w->k_pad);
    if (mblock > (max_m + 31) / 32 * 32)
        mblock = (max_m + 31) / 32 * 32;
    gemm_args a = {c, w, g, ng, chunk, (pairs + chunk - 1) / chunk, y, gemm_of(c), mblock,
                   env_i64("AMXDIAG_AMX_ROWQ_KB", 0, 0, 1 << 20), env_i64("AMXDIAG_AMX_ROWQ_PF", 0, 0, 64), 0};
    adg_error *e = kern_cpu_ensure_scratch(c, kern_rowq_scratch(a.mblock));
    if (e)
        return e;
    atomic_store(&a.next, 0);
    if (ng * a.per_group == 1)
        gemm_worker(&a, 0, 1);
    else
        kern_pool_run(c->pool, gemm_worker, &a);
    return NULL;
}

static adg_error *check_common(const kern_cpu *c, const kern_rowq_weight *w, const float *x, const float *y)
{
    if (!c || !w || !x || !y)
        return adg_error_new(ADG_E_USAGE, "row-scaled matmul: no context, weight, input or output given");
    return NULL;
}

static void fill_info(kern_op_info *info, const char *op, const kern_cpu *c, const kern_rowq_weight *w, uint64_t flops,
                      uint64_t bytes, uint64_t t0)
{
    if (!info)
        return;
    info->op = op;
    info->impl = c->impl == KERN_IMPL_AMX || c->impl == KERN_IMPL_AMX_EMU ? c->impl : KERN_IMPL_REF;
    snprintf(info->variant, sizeof info->variant, "%s", variant_of(c, w));
    info->flops = flops;
    info->bytes = bytes;
    info->ns = adg_now_ns() - t0;
}

adg_error *kern_rowq_matmul(kern_cpu *c, const kern_rowq_weight *w, const float *x, int64_t m, float *y,
                            kern_op_info *info)
{
    const uint64_t t0 = adg_now_ns();
    adg_error *e = check_common(c, w, x, y);
    if (e)
        return e;
    if (w->n_mat != 1)
        return adg_error_new(ADG_E_USAGE, "row-scaled matmul takes a single matrix; this weight holds %lld "
                                          "(use kern_rowq_moe_matmul)", (long long)w->n_mat);
    if (m < 1)
        return adg_error_new(ADG_E_USAGE, "row-scaled matmul needs m >= 1 rows (got %lld)", (long long)m);
    const int64_t m_pad = (m + 31) / 32 * 32;
    uint8_t *buf = kern_ws_get(&c->ws, ROWQ_WS_SLOT, (size_t)m_pad * (size_t)w->k_pad + (size_t)m_pad * sizeof(float));
    if (!buf)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %lld quantised rows", (long long)m);
    quant_args qa = {quant_of(c), x, m, m_pad, w->k, w->k_pad, w->nc, (int8_t *)buf,
                     (float *)(buf + (size_t)m_pad * (size_t)w->k_pad)};
    run_quant(c, &qa);
    const rowq_group g = {0, m, qa.at, qa.da, NULL};
    const int nth = kern_cpu_threads(c);
    const int64_t pairs = (w->n_panels + 1) / 2;
    if ((e = run_gemm(c, w, &g, 1, (pairs + nth - 1) / nth, y)))
        return e;
    fill_info(info, "matmul", c, w, 2ull * (uint64_t)m * (uint64_t)w->n * (uint64_t)w->k,
              w->mat_bytes + (uint64_t)m * (uint64_t)(w->k + w->n) * 4, t0);
    return NULL;
}

/* ---- grouped experts ---- */

typedef struct gather_args {
    const rowq_group *g;
    int64_t ng, nc;
    const int64_t *in_row;     /* every group's source rows, back to back */
    const int64_t *first;      /* index of group gi's first row in in_row */
    const int8_t *src_at;
    const float *src_da;
} gather_args;

static void gather_worker(void *arg, int ith, int nth)
{
    gather_args *a = arg;
    long lo, hi;
    kern_split((long)a->ng, ith, nth, &lo, &hi);
    for (long gi = lo; gi < hi; gi++) {
        const rowq_group *g = &a->g[gi];
        int8_t *at = (int8_t *)g->at;
        float *da = (float *)g->da;
        const int64_t m_pad = (g->m + 31) / 32 * 32;
        for (int64_t i = 0; i < m_pad; i++) {
            int8_t *dst = tile_row(at, a->nc, i);
            if (i < g->m) {
                const int64_t r = a->in_row[a->first[gi] + i];
                const int8_t *src = tile_row((int8_t *)a->src_at, a->nc, r);
                for (int64_t c = 0; c < a->nc; c++)
                    memcpy(dst + c * KERN_ROWQ_TILE, src + c * KERN_ROWQ_TILE, 64);
                da[i] = a->src_da[r];
            } else {
                for (int64_t c = 0; c < a->nc; c++)
                    memset(dst + c * KERN_ROWQ_TILE, 0, 64);
                da[i] = 0.0f;
            }
        }
    }
}

adg_error *kern_rowq_moe_matmul(kern_cpu *c, const kern_rowq_weight *w, const float *x, bool x_per_slot,
                                const int32_t *ids, int64_t n_tokens, int64_t top_k, float *y, kern_op_info *info)
{
    const uint64_t t0 = adg_now_ns();
    adg_error *e = check_common(c, w, x, y);
    if (e)
        return e;
    if (!ids || n_tokens < 1 || top_k < 1 || top_k > w->n_mat)
        return adg_error_new(ADG_E_USAGE, "row-scaled moe matmul: %lld tokens, top-k %lld with %lld experts: need "
                                          "tokens >= 1 and 1 <= top-k <= experts", (long long)n_tokens,
                             (long long)top_k, (long long)w->n_mat);
    const int64_t slots = n_tokens * top_k;
    for (int64_t i = 0; i < slots; i++)
        if (ids[i] < -1 || ids[i] >= w->n_mat)
            return adg_error_new(ADG_E_USAGE, "row-scaled moe matmul: expert id %d of token %lld slot %lld is outside "
                                              "0..%lld", ids[i], (long long)(i / top_k), (long long)(i % top_k),
                                 (long long)w->n_mat - 1);
    const int64_t xrows = x_per_slot ? slots : n_tokens;
    int64_t *count = calloc((size_t)w->n_mat, sizeof *count);
    int64_t *fill = calloc((size_t)w->n_mat, sizeof *fill);
    int64_t *in_row = malloc((size_t)slots * sizeof *in_row);
    int64_t *out_row = malloc((size_t)slots * sizeof *out_row);
    int64_t *first = malloc((size_t)w->n_mat * sizeof *first);
    rowq_group *g = calloc((size_t)w->n_mat, sizeof *g);
    if (!count || !fill || !in_row || !out_row || !first || !g) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory routing %lld tokens", (long long)n_tokens);
        goto out;
    }
    for (int64_t i = 0; i < slots; i++)
        if (ids[i] >= 0)
            count[ids[i]]++;
    int64_t listed = 0, padded = 0;
    for (int64_t ex = 0; ex < w->n_mat; ex++) {
        fill[ex] = listed;
        listed += count[ex];
        padded += (count[ex] + 31) / 32 * 32;
    }
    for (int64_t i = 0; i < slots; i++) {
        if (ids[i] < 0)
            continue;
        const int64_t pos = fill[ids[i]]++;
        in_row[pos] = x_per_slot ? i : i / top_k;
        out_row[pos] = i;
    }
    /* one buffer: the quantised input rows, then every expert's gathered rows (32-row
     * padded, so its A tiles start on a strip), then the two scale arrays */
    const int64_t xpad = (xrows + 31) / 32 * 32;
    const size_t abytes = (size_t)w->k_pad * (size_t)(xpad + padded);
    uint8_t *buf = kern_ws_get(&c->ws, ROWQ_WS_SLOT, abytes + (size_t)(xpad + padded) * sizeof(float));
    if (!buf) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory for %lld quantised rows", (long long)(xrows + padded));
        goto out;
    }
    int8_t *xat = (int8_t *)buf, *gat = xat + (size_t)xpad * (size_t)w->k_pad;
    float *xda = (float *)(buf + abytes), *gda = xda + xpad;
    quant_args qa = {quant_of(c), x, xrows, xpad, w->k, w->k_pad, w->nc, xat, xda};
    run_quant(c, &qa);
    int64_t ng = 0, rowpos = 0, listpos = 0;
    for (int64_t ex = 0; ex < w->n_mat; ex++) {
        if (!count[ex])
            continue;
        g[ng] = (rowq_group){ex, count[ex], gat + (size_t)rowpos * (size_t)w->k_pad, gda + rowpos, out_row + listpos};
        first[ng++] = listpos;
        listpos += count[ex];
        rowpos += (count[ex] + 31) / 32 * 32;
    }
    gather_args ga = {g, ng, w->nc, in_row, first, xat, xda};
    if (listed * w->k < 65536)
        gather_worker(&ga, 0, 1);
    else
        kern_pool_run(c->pool, gather_worker, &ga);
    /* about eight items per worker over every expert's panel pairs */
    const int nth = kern_cpu_threads(c);
    const int64_t pairs = (w->n_panels + 1) / 2;
    if ((e = run_gemm(c, w, g, ng, (ng * pairs + 8 * nth - 1) / (8 * nth), y)))
        goto out;
    fill_info(info, "moe_matmul", c, w, 2ull * (uint64_t)listed * (uint64_t)w->n * (uint64_t)w->k,
              (uint64_t)ng * w->mat_bytes + (uint64_t)xrows * (uint64_t)w->k * 4 + (uint64_t)listed * (uint64_t)w->n * 4,
              t0);
out:
    free(count);
    free(fill);
    free(in_row);
    free(out_row);
    free(first);
    free(g);
    return e;
}

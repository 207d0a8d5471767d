/* Kernels vs CPU references on random data. */
#include "kernels/cuda/kern_cuda_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kern_cuda_internal.h"

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct scope {
    kern_cuda_ctx *c;
    kern_cu_deviceptr dev[10];
    void *host[10];
    int nd, nh;
    kern_cu_event ev[2];
} scope;

static adg_error *dalloc(scope *s, size_t bytes, kern_cu_deviceptr *p)
{
    adg_error *e = kern_cuda_alloc(s->c, bytes, p);
    if (!e)
        s->dev[s->nd++] = *p;
    return e;
}

static void *halloc(scope *s, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (p)
        s->host[s->nh++] = p;
    return p;
}

static void scope_end(scope *s)
{
    for (int i = 0; i < s->nd; i++)
        kern_cuda_free(s->c, s->dev[i]);
    for (int i = 0; i < s->nh; i++)
        free(s->host[i]);
    for (int i = 0; i < 2; i++)
        if (s->ev[i])
            s->c->d->cuEventDestroy(s->ev[i]);
}

static adg_error *t_begin(scope *s)
{
    const kern_cuda_driver *d = s->c->d;
    for (int i = 0; i < 2; i++)
        if (!s->ev[i] && d->cuEventCreate(&s->ev[i], KERN_CU_EVENT_DEFAULT) != KERN_CU_SUCCESS)
            return adg_error_new(ADG_E_CUDA, "creating CUDA events failed");
    kern_cu_result r = d->cuEventRecord(s->ev[0], s->c->stream);
    return r ? kern_cuda_errf(r, "recording an event") : NULL;
}

static adg_error *t_end(scope *s, double *ms)
{
    const kern_cuda_driver *d = s->c->d;
    kern_cu_result r = d->cuEventRecord(s->ev[1], s->c->stream);
    if (!r)
        r = d->cuEventSynchronize(s->ev[1]);
    float f = 0;
    if (!r)
        r = d->cuEventElapsedTime(&f, s->ev[0], s->ev[1]);
    *ms = f;
    return r ? kern_cuda_errf(r, "waiting for the kernel") : NULL;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1). */
static float rng_f(uint64_t *s) { return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static void fill(float *x, int64_t n, uint64_t *s, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_f(s) * scale;
}

static void res_init(kern_cuda_check_result *r, double rtol, double atol, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void res_init(kern_cuda_check_result *r, double rtol, double atol, const char *fmt, ...)
{
    memset(r, 0, sizeof *r);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->name, sizeof r->name, fmt, ap);
    va_end(ap);
    r->rtol = rtol;
    r->atol = atol;
    r->pass = true;
}

/* allowed_i = atol + rtol * mag_i (mag NULL: |ref_i|). */
static void compare(kern_cuda_check_result *r, const float *gpu, const float *ref, const double *mag, int64_t n)
{
    r->n = n;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)gpu[i] - (double)ref[i]);
        double allowed = r->atol + r->rtol * (mag ? mag[i] : fabs((double)ref[i]));
        double ratio = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0);
        if (!(gpu[i] == gpu[i]))
            ratio = INFINITY; /* NaN */
        if (err > r->max_abs_err)
            r->max_abs_err = err;
        if (ratio > r->worst_ratio || (i == 0 && ratio != ratio)) {
            r->worst_ratio = ratio;
            snprintf(r->worst, sizeof r->worst, "element %lld: gpu %.7g ref %.7g allowed %.3g", (long long)i,
                     gpu[i], ref[i], allowed);
        }
    }
    r->pass = r->worst_ratio <= 1.0;
}

#define TRY(x)                      \
    do {                            \
        if ((e = (x)) != NULL)      \
            goto out;               \
    } while (0)
#define NOMEM(p)                                                      \
    do {                                                              \
        if (!(p)) {                                                   \
            e = adg_error_new(ADG_E_NOMEM, "out of memory");          \
            goto out;                                                 \
        }                                                             \
    } while (0)

/* Random weights of type t (m rows of k), their bytes, and their dequantized values. */
static adg_error *make_weights(scope *s, kern_type t, int64_t m, int64_t k, uint64_t *seed, void **bytes,
                               float **deq)
{
    size_t rs = kern_row_size(t, k);
    float *src = halloc(s, (size_t)(m * k) * sizeof(float));
    *bytes = halloc(s, rs * (size_t)m);
    *deq = halloc(s, (size_t)(m * k) * sizeof(float));
    if (!src || !*bytes || !*deq)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    fill(src, m * k, seed, 1.0f);
    for (int64_t r = 0; r < m; r++) {
        adg_error *e = kern_quantize_row(t, src + r * k, (char *)*bytes + rs * (size_t)r, k);
        if (!e)
            e = kern_dequantize_row(t, (char *)*bytes + rs * (size_t)r, *deq + r * k, k);
        if (e)
            return e;
    }
    return NULL;
}

/* ---- checks ------------------------------------------------------------------------- */

adg_error *kern_cuda_check_get_rows(kern_cuda_ctx *c, kern_type t, int64_t nrows, int64_t ncols, int64_t n_ids,
                                    uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 0, 0, "get_rows %s %lldx%lld, %lld ids", kern_type_name(t), (long long)nrows, (long long)ncols,
             (long long)n_ids);
    uint64_t st = seed | 1;
    void *w;
    float *deq;
    TRY(make_weights(&s, t, nrows, ncols, &st, &w, &deq));
    int32_t *ids = halloc(&s, (size_t)n_ids * 4);
    float *ref = halloc(&s, (size_t)(n_ids * ncols) * 4), *got = halloc(&s, (size_t)(n_ids * ncols) * 4);
    NOMEM(ids && ref && got);
    for (int64_t i = 0; i < n_ids; i++) {
        ids[i] = (int32_t)(rng_next(&st) % (uint64_t)nrows);
        memcpy(ref + i * ncols, deq + (int64_t)ids[i] * ncols, (size_t)ncols * 4);
    }
    kern_cu_deviceptr dw, di, dd;
    size_t wb = kern_row_size(t, ncols) * (size_t)nrows;
    TRY(dalloc(&s, wb, &dw));
    TRY(dalloc(&s, (size_t)n_ids * 4, &di));
    TRY(dalloc(&s, (size_t)(n_ids * ncols) * 4, &dd));
    TRY(kern_cuda_upload(c, dw, w, wb));
    TRY(kern_cuda_upload(c, di, ids, (size_t)n_ids * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_get_rows(c, t, dw, nrows, ncols, di, n_ids, dd));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "get_rows"));
    TRY(kern_cuda_download(c, got, dd, (size_t)(n_ids * ncols) * 4));
    compare(r, got, ref, NULL, n_ids * ncols);
out:
    scope_end(&s);
    return e;
}

/* Reference for y = W x with x quantized per block of 32: mag_i bounds the quantization
 * error of x: sum_j |w_ij| * amax(block of j) / 254, plus the f16 step (as in q8_0):
 * |q| <= 127 times 2^-11 of amax/127. */
#define Q8_RTOL ((1.0 / 254 + 1.0 / 2048) * 1.05)
static void gemv_ref(const float *w, const float *x, int64_t m, int64_t k, float *y, double *mag)
{
    for (int64_t i = 0; i < m; i++) {
        double acc = 0, mg = 0;
        for (int64_t b = 0; b < k / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            for (int j = 0; j < 32; j++) {
                acc += (double)w[i * k + b * 32 + j] * x[b * 32 + j];
                mg += fabs((double)w[i * k + b * 32 + j]) * amax;
            }
        }
        y[i] = (float)acc;
        mag[i] = mg;
    }
}

adg_error *kern_cuda_check_gemv(kern_cuda_ctx *c, kern_type t, int64_t m, int64_t k, uint64_t seed,
                                kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* x is rounded to int8 with step amax/127 (kept in f16, as in q8_0): error <=
     * amax/254 + amax/2048 per element, plus f32 accumulation slack. */
    res_init(r, Q8_RTOL, 1e-5, "gemv %s %lldx%lld", kern_type_name(t), (long long)m, (long long)k);
    uint64_t st = seed | 1;
    void *w;
    float *deq;
    TRY(make_weights(&s, t, m, k, &st, &w, &deq));
    float *x = halloc(&s, (size_t)k * 4), *ref = halloc(&s, (size_t)m * 4), *got = halloc(&s, (size_t)m * 4);
    double *mag = halloc(&s, (size_t)m * 8);
    NOMEM(x && ref && got && mag);
    fill(x, k, &st, 1.0f);
    gemv_ref(deq, x, m, k, ref, mag);
    kern_cu_deviceptr dw, dx, dy, ds;
    size_t wb = kern_row_size(t, k) * (size_t)m;
    TRY(dalloc(&s, wb, &dw));
    TRY(dalloc(&s, (size_t)k * 4, &dx));
    TRY(dalloc(&s, (size_t)m * 4, &dy));
    TRY(dalloc(&s, kern_cuda_gemv_scratch(k), &ds));
    TRY(kern_cuda_upload(c, dw, w, wb));
    TRY(kern_cuda_upload(c, dx, x, (size_t)k * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_gemv(c, t, dw, m, k, dx, dy, ds));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "gemv"));
    TRY(kern_cuda_download(c, got, dy, (size_t)m * 4));
    compare(r, got, ref, mag, m);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_moe(kern_cuda_ctx *c, kern_type t, int n_expert, int64_t m, int64_t k, int n_used, int n_x,
                               uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, Q8_RTOL, 1e-5, "moe_gemv %s %d experts of %lldx%lld, %d used, %d input row%s",
             kern_type_name(t), n_expert, (long long)m, (long long)k, n_used, n_x, n_x == 1 ? "" : "s");
    uint64_t st = seed | 1;
    void *w;
    float *deq;
    TRY(make_weights(&s, t, (int64_t)n_expert * m, k, &st, &w, &deq));
    float *x = halloc(&s, (size_t)(n_x * k) * 4), *ref = halloc(&s, (size_t)(n_used * m) * 4),
          *got = halloc(&s, (size_t)(n_used * m) * 4);
    double *mag = halloc(&s, (size_t)(n_used * m) * 8);
    int32_t *ids = halloc(&s, (size_t)n_used * 4);
    NOMEM(x && ref && got && mag && ids);
    fill(x, n_x * k, &st, 1.0f);
    for (int j = 0; j < n_used; j++) {
        ids[j] = (int32_t)(rng_next(&st) % (uint64_t)n_expert);
        gemv_ref(deq + (int64_t)ids[j] * m * k, x + (n_x > 1 ? j * k : 0), m, k, ref + j * m, mag + j * m);
    }
    kern_cu_deviceptr dw, dx, dy, ds, di;
    size_t wb = kern_row_size(t, k) * (size_t)(m * n_expert);
    TRY(dalloc(&s, wb, &dw));
    TRY(dalloc(&s, (size_t)(n_x * k) * 4, &dx));
    TRY(dalloc(&s, (size_t)(n_used * m) * 4, &dy));
    TRY(dalloc(&s, kern_cuda_gemv_scratch(k * n_x), &ds));
    TRY(dalloc(&s, (size_t)n_used * 4, &di));
    TRY(kern_cuda_upload(c, dw, w, wb));
    TRY(kern_cuda_upload(c, dx, x, (size_t)(n_x * k) * 4));
    TRY(kern_cuda_upload(c, di, ids, (size_t)n_used * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_moe_gemv(c, t, dw, n_expert, m, k, di, n_used, dx, n_x, dy, ds));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "moe_gemv"));
    TRY(kern_cuda_download(c, got, dy, (size_t)(n_used * m) * 4));
    compare(r, got, ref, mag, n_used * m);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_gemm(kern_cuda_ctx *c, kern_type t, int64_t m, int64_t k, int64_t n, uint64_t seed,
                                kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* For quantized W the device takes X as the CPU's q8_0 values (modelled here), then
     * W and X are rounded to f16 (2^-11 relative each); f32 accumulation. */
    /* f32 weights (the router): f32 throughout, only the order of the sums differs. */
    res_init(r, t == KERN_TYPE_F32 ? 1e-5 : 2.0 / 2048 * 1.1, 1e-5, "gemm %s %lldx%lld x %lld tokens",
             kern_type_name(t), (long long)m, (long long)k, (long long)n);
    uint64_t st = seed | 1;
    void *w;
    float *deq;
    TRY(make_weights(&s, t, m, k, &st, &w, &deq));
    float *x = halloc(&s, (size_t)(n * k) * 4), *ref = halloc(&s, (size_t)(n * m) * 4),
          *got = halloc(&s, (size_t)(n * m) * 4);
    double *mag = halloc(&s, (size_t)(n * m) * 8);
    NOMEM(x && ref && got && mag);
    fill(x, n * k, &st, 1.0f);
    const float *xr = x;
    if (t != KERN_TYPE_F16 && t != KERN_TYPE_F32) {
        float *xq = halloc(&s, (size_t)(n * k) * 4);
        kern_block_q8_0 *qb = halloc(&s, (size_t)(k / 32) * sizeof *qb);
        NOMEM(xq && qb);
        for (int64_t i = 0; i < n; i++) {
            kern_quantize_row_q8_0(x + i * k, qb, k);
            kern_dequantize_row_q8_0(qb, xq + i * k, k);
        }
        xr = xq;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            double acc = 0, mg = 0;
            for (int64_t q = 0; q < k; q++) {
                acc += (double)deq[j * k + q] * xr[i * k + q];
                mg += fabs((double)deq[j * k + q] * xr[i * k + q]);
            }
            ref[i * m + j] = (float)acc;
            mag[i * m + j] = mg;
        }
    kern_cu_deviceptr dw, dx, dy, ds;
    size_t wb = kern_row_size(t, k) * (size_t)m;
    TRY(dalloc(&s, wb, &dw));
    TRY(dalloc(&s, (size_t)(n * k) * 4, &dx));
    TRY(dalloc(&s, (size_t)(n * m) * 4, &dy));
    TRY(dalloc(&s, kern_cuda_gemm_scratch(n, k), &ds));
    TRY(kern_cuda_upload(c, dw, w, wb));
    TRY(kern_cuda_upload(c, dx, x, (size_t)(n * k) * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_gemm(c, t, dw, m, k, dx, n, dy, ds));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "gemm"));
    TRY(kern_cuda_download(c, got, dy, (size_t)(n * m) * 4));
    compare(r, got, ref, mag, n * m);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_moe_route(kern_cuda_ctx *c, int64_t n, int n_expert, int k, uint64_t seed,
                                     kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 1e-4, 1e-7, "moe_route %lld tokens, %d experts, top %d", (long long)n, n_expert, k);
    uint64_t st = seed | 1;
    float *l = halloc(&s, (size_t)(n * n_expert) * 4), *ref = halloc(&s, (size_t)(n * k) * 4),
          *got = halloc(&s, (size_t)(n * k) * 4), *p = halloc(&s, (size_t)n_expert * 4);
    int32_t *rid = halloc(&s, (size_t)(n * k) * 4), *gid = halloc(&s, (size_t)(n * k) * 4);
    NOMEM(l && ref && got && p && rid && gid);
    fill(l, n * n_expert, &st, 4.0f);
    for (int64_t t = 0; t < n; t++) {
        float mx = -INFINITY;
        for (int i = 0; i < n_expert; i++)
            mx = fmaxf(mx, l[t * n_expert + i]);
        double sum = 0;
        for (int i = 0; i < n_expert; i++)
            sum += p[i] = expf(l[t * n_expert + i] - mx);
        double wsum = 0;
        for (int j = 0; j < k; j++) {
            int bi = 0;
            for (int i = 1; i < n_expert; i++)
                if (p[i] > p[bi])
                    bi = i;
            rid[t * k + j] = bi;
            ref[t * k + j] = (float)(p[bi] / sum);
            wsum += p[bi] / sum;
            p[bi] = -1;
        }
        for (int j = 0; j < k; j++)
            ref[t * k + j] = (float)(ref[t * k + j] / wsum);
    }
    kern_cu_deviceptr dl, di, dwt;
    TRY(dalloc(&s, (size_t)(n * n_expert) * 4, &dl));
    TRY(dalloc(&s, (size_t)(n * k) * 4, &di));
    TRY(dalloc(&s, (size_t)(n * k) * 4, &dwt));
    TRY(kern_cuda_upload(c, dl, l, (size_t)(n * n_expert) * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_moe_route(c, dl, n, n_expert, k, true, di, dwt));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "moe_route"));
    TRY(kern_cuda_download(c, got, dwt, (size_t)(n * k) * 4));
    TRY(kern_cuda_download(c, gid, di, (size_t)(n * k) * 4));
    compare(r, got, ref, NULL, n * k);
    for (int64_t i = 0; i < n * k; i++)
        if (gid[i] != rid[i]) {
            r->pass = false;
            snprintf(r->worst, sizeof r->worst, "token %lld slot %lld: gpu expert %d, ref expert %d",
                     (long long)(i / k), (long long)(i % k), gid[i], rid[i]);
            break;
        }
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_rmsnorm(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 1e-5, 1e-6, "rmsnorm %lldx%lld", (long long)n, (long long)d);
    uint64_t st = seed | 1;
    float *x = halloc(&s, (size_t)(n * d) * 4), *w = halloc(&s, (size_t)d * 4), *ref = halloc(&s, (size_t)(n * d) * 4),
          *got = halloc(&s, (size_t)(n * d) * 4);
    NOMEM(x && w && ref && got);
    fill(x, n * d, &st, 2.0f);
    fill(w, d, &st, 1.0f);
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += (double)x[i * d + j] * x[i * d + j];
        double sc = 1.0 / sqrt(ss / (double)d + 1e-6);
        for (int64_t j = 0; j < d; j++)
            ref[i * d + j] = (float)(x[i * d + j] * sc * w[j]);
    }
    kern_cu_deviceptr dx, dw, dy;
    TRY(dalloc(&s, (size_t)(n * d) * 4, &dx));
    TRY(dalloc(&s, (size_t)d * 4, &dw));
    TRY(dalloc(&s, (size_t)(n * d) * 4, &dy));
    TRY(kern_cuda_upload(c, dx, x, (size_t)(n * d) * 4));
    TRY(kern_cuda_upload(c, dw, w, (size_t)d * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_rmsnorm(c, dx, dw, dy, n, d, 1e-6f));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "rmsnorm"));
    TRY(kern_cuda_download(c, got, dy, (size_t)(n * d) * 4));
    compare(r, got, ref, NULL, n * d);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_rope(kern_cuda_ctx *c, int64_t n_tok, int n_head, int hd, uint64_t seed,
                                kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* theta = pos * base^(-2i/hd) in f32 on both sides; powf/sincosf differ by a few ulp,
     * which at positions of a few thousand is ~1e-4 of the pair's magnitude. */
    res_init(r, 1e-3, 1e-6, "rope_neox %lld tokens x %d heads x %d", (long long)n_tok, n_head, hd);
    uint64_t st = seed | 1;
    int64_t ne = n_tok * n_head * hd;
    float *x = halloc(&s, (size_t)ne * 4), *ref = halloc(&s, (size_t)ne * 4), *got = halloc(&s, (size_t)ne * 4);
    double *mag = halloc(&s, (size_t)ne * 8);
    int32_t *pos = halloc(&s, (size_t)n_tok * 4);
    NOMEM(x && ref && got && mag && pos);
    fill(x, ne, &st, 1.0f);
    for (int64_t t = 0; t < n_tok; t++)
        pos[t] = (int32_t)(rng_next(&st) % 4096);
    const float base = 1000000.0f; /* Qwen3 */
    for (int64_t t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++) {
            const float *v = x + (t * n_head + h) * hd;
            float *o = ref + (t * n_head + h) * hd;
            double *mg = mag + (t * n_head + h) * hd;
            for (int i = 0; i < hd / 2; i++) {
                double theta = (double)pos[t] * pow(base, -2.0 * i / hd);
                double cs = cos(theta), sn = sin(theta);
                o[i] = (float)(v[i] * cs - v[i + hd / 2] * sn);
                o[i + hd / 2] = (float)(v[i] * sn + v[i + hd / 2] * cs);
                mg[i] = mg[i + hd / 2] = (fabs(v[i]) + fabs(v[i + hd / 2])) * (1.0 + fabs(theta) * 1e-3);
            }
        }
    kern_cu_deviceptr dx, dp;
    TRY(dalloc(&s, (size_t)ne * 4, &dx));
    TRY(dalloc(&s, (size_t)n_tok * 4, &dp));
    TRY(kern_cuda_upload(c, dx, x, (size_t)ne * 4));
    TRY(kern_cuda_upload(c, dp, pos, (size_t)n_tok * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_rope_neox(c, dx, dp, n_tok, n_head, hd, base));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "rope"));
    TRY(kern_cuda_download(c, got, dx, (size_t)ne * 4));
    compare(r, got, ref, mag, ne);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_softmax(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 1e-4, 1e-8, "softmax %lldx%lld", (long long)n, (long long)d);
    uint64_t st = seed | 1;
    float *x = halloc(&s, (size_t)(n * d) * 4), *ref = halloc(&s, (size_t)(n * d) * 4),
          *got = halloc(&s, (size_t)(n * d) * 4);
    NOMEM(x && ref && got);
    fill(x, n * d, &st, 8.0f);
    const float scale = 0.5f;
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < d; j++)
            mx = fmax(mx, x[i * d + j] * scale);
        for (int64_t j = 0; j < d; j++)
            sum += exp(x[i * d + j] * scale - mx);
        for (int64_t j = 0; j < d; j++)
            ref[i * d + j] = (float)(exp(x[i * d + j] * scale - mx) / sum);
    }
    kern_cu_deviceptr dx;
    TRY(dalloc(&s, (size_t)(n * d) * 4, &dx));
    TRY(kern_cuda_upload(c, dx, x, (size_t)(n * d) * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_softmax(c, dx, n, d, scale));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "softmax"));
    TRY(kern_cuda_download(c, got, dx, (size_t)(n * d) * 4));
    compare(r, got, ref, NULL, n * d);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_attention(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t n_kv, uint64_t seed,
                                     kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 1e-3, 1e-5, "attention %d q heads / %d kv heads x %d, %lld positions", n_head, n_kv_head, hd,
             (long long)n_kv);
    uint64_t st = seed | 1;
    size_t nc = (size_t)(n_kv * n_kv_head * hd);
    float *q = halloc(&s, (size_t)(n_head * hd) * 4), *kf = halloc(&s, nc * 4), *vf = halloc(&s, nc * 4),
          *ref = halloc(&s, (size_t)(n_head * hd) * 4), *got = halloc(&s, (size_t)(n_head * hd) * 4);
    uint16_t *kh = halloc(&s, nc * 2), *vh = halloc(&s, nc * 2);
    double *sc = halloc(&s, (size_t)n_kv * 8), *mag = halloc(&s, (size_t)(n_head * hd) * 8);
    NOMEM(q && kf && vf && ref && got && kh && vh && sc && mag);
    fill(q, n_head * hd, &st, 1.0f);
    fill(kf, (int64_t)nc, &st, 1.0f);
    fill(vf, (int64_t)nc, &st, 1.0f);
    kern_fp32_to_fp16_row(kf, kh, (int64_t)nc);
    kern_fp32_to_fp16_row(vf, vh, (int64_t)nc);
    kern_fp16_to_fp32_row(kh, kf, (int64_t)nc);
    kern_fp16_to_fp32_row(vh, vf, (int64_t)nc);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_head; h++) {
        int kvh = h / (n_head / n_kv_head);
        double mx = -INFINITY, sum = 0;
        for (int64_t p = 0; p < n_kv; p++) {
            double d = 0;
            for (int i = 0; i < hd; i++)
                d += (double)q[h * hd + i] * kf[(p * n_kv_head + kvh) * hd + i];
            sc[p] = d * scale;
            mx = fmax(mx, sc[p]);
        }
        for (int64_t p = 0; p < n_kv; p++)
            sum += sc[p] = exp(sc[p] - mx);
        for (int i = 0; i < hd; i++) {
            double o = 0, mg = 0;
            for (int64_t p = 0; p < n_kv; p++) {
                o += sc[p] / sum * vf[(p * n_kv_head + kvh) * hd + i];
                mg = fmax(mg, fabs(vf[(p * n_kv_head + kvh) * hd + i]));
            }
            ref[h * hd + i] = (float)o;
            mag[h * hd + i] = mg;
        }
    }
    kern_cu_deviceptr dq, dk, dv, dout;
    TRY(dalloc(&s, (size_t)(n_head * hd) * 4, &dq));
    TRY(dalloc(&s, nc * 2, &dk));
    TRY(dalloc(&s, nc * 2, &dv));
    TRY(dalloc(&s, (size_t)(n_head * hd) * 4, &dout));
    TRY(kern_cuda_upload(c, dq, q, (size_t)(n_head * hd) * 4));
    TRY(kern_cuda_upload(c, dk, kh, nc * 2));
    TRY(kern_cuda_upload(c, dv, vh, nc * 2));
    TRY(t_begin(&s));
    TRY(kern_cuda_attention(c, dq, dk, dv, dout, n_head, n_kv_head, hd, n_kv, scale));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "attention"));
    TRY(kern_cuda_download(c, got, dout, (size_t)(n_head * hd) * 4));
    compare(r, got, ref, mag, n_head * hd);
out:
    scope_end(&s);
    return e;
}

static adg_error *check_binary(kern_cuda_ctx *c, bool silu, int64_t n, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, silu ? 1e-5 : 0, silu ? 1e-7 : 0, "%s %lld", silu ? "silu_mul" : "add", (long long)n);
    uint64_t st = seed | 1;
    float *a = halloc(&s, (size_t)n * 4), *b = halloc(&s, (size_t)n * 4), *ref = halloc(&s, (size_t)n * 4),
          *got = halloc(&s, (size_t)n * 4);
    NOMEM(a && b && ref && got);
    fill(a, n, &st, 6.0f);
    fill(b, n, &st, 2.0f);
    for (int64_t i = 0; i < n; i++)
        ref[i] = silu ? (float)(a[i] / (1.0 + exp(-(double)a[i])) * b[i]) : a[i] + b[i];
    kern_cu_deviceptr da, db, dout;
    TRY(dalloc(&s, (size_t)n * 4, &da));
    TRY(dalloc(&s, (size_t)n * 4, &db));
    TRY(dalloc(&s, (size_t)n * 4, &dout));
    TRY(kern_cuda_upload(c, da, a, (size_t)n * 4));
    TRY(kern_cuda_upload(c, db, b, (size_t)n * 4));
    TRY(t_begin(&s));
    TRY(silu ? kern_cuda_silu_mul(c, da, db, dout, n) : kern_cuda_add(c, da, db, dout, n));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, r->name));
    TRY(kern_cuda_download(c, got, dout, (size_t)n * 4));
    compare(r, got, ref, NULL, n);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_silu_mul(kern_cuda_ctx *c, int64_t n, uint64_t seed, kern_cuda_check_result *r)
{
    return check_binary(c, true, n, seed, r);
}

adg_error *kern_cuda_check_add(kern_cuda_ctx *c, int64_t n, uint64_t seed, kern_cuda_check_result *r)
{
    return check_binary(c, false, n, seed, r);
}

/* ---- the batch ops of the GPU layers ------------------------------------------------- */

adg_error *kern_cuda_check_kv_store(kern_cuda_ctx *c, int64_t cache_rows, int64_t pos0, int64_t n_tok,
                                    int64_t row_elems, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* f32 -> f16 round to nearest: exact against the CPU's conversion, and every row
     * outside [pos0, pos0 + n_tok) must keep its previous value. */
    res_init(r, 0, 0, "kv_store %lld rows of %lld at %lld in a %lld-row cache", (long long)n_tok,
             (long long)row_elems, (long long)pos0, (long long)cache_rows);
    uint64_t st = seed | 1;
    size_t nc = (size_t)(cache_rows * row_elems), ns = (size_t)(n_tok * row_elems);
    float *src = halloc(&s, ns * 4), *ref = halloc(&s, nc * 4), *got = halloc(&s, nc * 4);
    uint16_t *cache = halloc(&s, nc * 2), *back = halloc(&s, nc * 2);
    NOMEM(src && ref && got && cache && back);
    fill(src, (int64_t)ns, &st, 4.0f);
    for (size_t i = 0; i < nc; i++)
        cache[i] = (uint16_t)(0x3c00 + (i & 0xff)); /* 1.0 ... : what was there before */
    kern_fp16_to_fp32_row(cache, ref, (int64_t)nc);
    uint16_t *tmp = halloc(&s, ns * 2);
    NOMEM(tmp);
    kern_fp32_to_fp16_row(src, tmp, (int64_t)ns);
    kern_fp16_to_fp32_row(tmp, ref + pos0 * row_elems, (int64_t)ns);
    kern_cu_deviceptr dsrc, dc;
    TRY(dalloc(&s, ns * 4, &dsrc));
    TRY(dalloc(&s, nc * 2, &dc));
    TRY(kern_cuda_upload(c, dsrc, src, ns * 4));
    TRY(kern_cuda_upload(c, dc, cache, nc * 2));
    TRY(t_begin(&s));
    TRY(kern_cuda_kv_store(c, dsrc, dc, cache_rows, pos0, n_tok, row_elems));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "kv_store"));
    TRY(kern_cuda_download(c, back, dc, nc * 2));
    kern_fp16_to_fp32_row(back, got, (int64_t)nc);
    compare(r, got, ref, NULL, (int64_t)nc);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_moe_wsum(kern_cuda_ctx *c, int64_t n_tok, int k, int64_t d, uint64_t seed,
                                    kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* k products and sums in f32 in the same order; the GPU may fuse them (fma). */
    res_init(r, 1e-6 * (k + 1), 1e-6, "moe_wsum %lld tokens x %d experts x %lld", (long long)n_tok, k, (long long)d);
    uint64_t st = seed | 1;
    size_t nx = (size_t)(n_tok * d), ny = nx * (size_t)k, nw = (size_t)n_tok * (size_t)k;
    float *x = halloc(&s, nx * 4), *y = halloc(&s, ny * 4), *w = halloc(&s, nw * 4), *ref = halloc(&s, nx * 4),
          *got = halloc(&s, nx * 4);
    double *mag = halloc(&s, nx * 8);
    NOMEM(x && y && w && ref && got && mag);
    fill(x, (int64_t)nx, &st, 1.0f);
    fill(y, (int64_t)ny, &st, 2.0f);
    fill(w, (int64_t)nw, &st, 1.0f);
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < d; i++) {
            double acc = x[t * d + i], mg = fabs(acc);
            for (int j = 0; j < k; j++) {
                double p = (double)w[t * k + j] * y[(t * k + j) * d + i];
                acc += p;
                mg += fabs(p);
            }
            ref[t * d + i] = (float)acc;
            mag[t * d + i] = mg;
        }
    kern_cu_deviceptr dx, dy, dw;
    TRY(dalloc(&s, nx * 4, &dx));
    TRY(dalloc(&s, ny * 4, &dy));
    TRY(dalloc(&s, nw * 4, &dw));
    TRY(kern_cuda_upload(c, dx, x, nx * 4));
    TRY(kern_cuda_upload(c, dy, y, ny * 4));
    TRY(kern_cuda_upload(c, dw, w, nw * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_moe_wsum(c, dx, dy, dw, n_tok, k, d));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "moe_wsum"));
    TRY(kern_cuda_download(c, got, dx, nx * 4));
    compare(r, got, ref, mag, (int64_t)nx);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_attention_causal(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t n_tok,
                                            int64_t pos0, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 1e-3, 1e-5, "attention_causal %d q heads / %d kv heads x %d, %lld tokens at %lld", n_head, n_kv_head,
             hd, (long long)n_tok, (long long)pos0);
    uint64_t st = seed | 1;
    int64_t n_kv = pos0 + n_tok;
    size_t nc = (size_t)(n_kv * n_kv_head * hd), nq = (size_t)(n_tok * n_head * hd);
    float *q = halloc(&s, nq * 4), *kf = halloc(&s, nc * 4), *vf = halloc(&s, nc * 4), *ref = halloc(&s, nq * 4),
          *got = halloc(&s, nq * 4);
    uint16_t *kh = halloc(&s, nc * 2), *vh = halloc(&s, nc * 2);
    double *sc = halloc(&s, (size_t)n_kv * 8), *mag = halloc(&s, nq * 8);
    NOMEM(q && kf && vf && ref && got && kh && vh && sc && mag);
    fill(q, (int64_t)nq, &st, 1.0f);
    fill(kf, (int64_t)nc, &st, 1.0f);
    fill(vf, (int64_t)nc, &st, 1.0f);
    kern_fp32_to_fp16_row(kf, kh, (int64_t)nc);
    kern_fp32_to_fp16_row(vf, vh, (int64_t)nc);
    kern_fp16_to_fp32_row(kh, kf, (int64_t)nc);
    kern_fp16_to_fp32_row(vh, vf, (int64_t)nc);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int64_t t = 0; t < n_tok; t++)
        for (int h = 0; h < n_head; h++) {
            int kvh = h / (n_head / n_kv_head);
            int64_t seen = pos0 + t + 1; /* causal: this token's position and the ones before */
            const float *qh = q + (t * n_head + h) * hd;
            double mx = -INFINITY, sum = 0;
            for (int64_t p = 0; p < seen; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += (double)qh[i] * kf[(p * n_kv_head + kvh) * hd + i];
                sc[p] = d * scale;
                mx = fmax(mx, sc[p]);
            }
            for (int64_t p = 0; p < seen; p++)
                sum += sc[p] = exp(sc[p] - mx);
            for (int i = 0; i < hd; i++) {
                double o = 0, mg = 0;
                for (int64_t p = 0; p < seen; p++) {
                    o += sc[p] / sum * vf[(p * n_kv_head + kvh) * hd + i];
                    mg = fmax(mg, fabs(vf[(p * n_kv_head + kvh) * hd + i]));
                }
                ref[(t * n_head + h) * hd + i] = (float)o;
                mag[(t * n_head + h) * hd + i] = mg;
            }
        }
    kern_cu_deviceptr dq, dk, dv, dout;
    TRY(dalloc(&s, nq * 4, &dq));
    TRY(dalloc(&s, nc * 2, &dk));
    TRY(dalloc(&s, nc * 2, &dv));
    TRY(dalloc(&s, nq * 4, &dout));
    TRY(kern_cuda_upload(c, dq, q, nq * 4));
    TRY(kern_cuda_upload(c, dk, kh, nc * 2));
    TRY(kern_cuda_upload(c, dv, vh, nc * 2));
    TRY(t_begin(&s));
    TRY(kern_cuda_attention_causal(c, dq, dk, dv, dout, n_head, n_kv_head, hd, n_tok, pos0, scale));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "attention_causal"));
    TRY(kern_cuda_download(c, got, dout, nq * 4));
    compare(r, got, ref, mag, (int64_t)nq);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_moe_gemm(kern_cuda_ctx *c, kern_type t, int n_expert, int64_t m, int64_t k, int64_t n_tok,
                                    int n_used, bool x_per_slot, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, Q8_RTOL, 1e-5, "moe_gemm %s %d experts of %lldx%lld, %lld tokens x %d used, %s",
             kern_type_name(t), n_expert, (long long)m, (long long)k, (long long)n_tok, n_used,
             x_per_slot ? "input per slot" : "input per token");
    uint64_t st = seed | 1;
    void *w;
    float *deq;
    TRY(make_weights(&s, t, (int64_t)n_expert * m, k, &st, &w, &deq));
    int64_t n_slots = n_tok * n_used, n_x = x_per_slot ? n_slots : n_tok;
    float *x = halloc(&s, (size_t)(n_x * k) * 4), *ref = halloc(&s, (size_t)(n_slots * m) * 4),
          *got = halloc(&s, (size_t)(n_slots * m) * 4);
    double *mag = halloc(&s, (size_t)(n_slots * m) * 8);
    int32_t *ids = halloc(&s, (size_t)n_slots * 4);
    NOMEM(x && ref && got && mag && ids);
    fill(x, n_x * k, &st, 1.0f);
    /* Distinct experts per token (as top-k gives), skewed so that some experts get many
     * tokens, some one, some none. */
    for (int64_t tk = 0; tk < n_tok; tk++)
        for (int j = 0; j < n_used; j++) {
            int32_t id;
            bool dup;
            do {
                uint64_t v = rng_next(&st);
                id = (int32_t)((v & 1) ? (v >> 8) % (uint64_t)(n_expert < 4 ? n_expert : 4)
                                       : (v >> 8) % (uint64_t)n_expert);
                dup = false;
                for (int q = 0; q < j; q++)
                    dup |= ids[tk * n_used + q] == id;
            } while (dup);
            ids[tk * n_used + j] = id;
        }
    for (int64_t sl = 0; sl < n_slots; sl++)
        gemv_ref(deq + (int64_t)ids[sl] * m * k, x + (x_per_slot ? sl : sl / n_used) * k, m, k, ref + sl * m,
                 mag + sl * m);
    kern_cu_deviceptr dw, dx, dy, ds, di;
    size_t wb = kern_row_size(t, k) * (size_t)(m * n_expert);
    TRY(dalloc(&s, wb, &dw));
    TRY(dalloc(&s, (size_t)(n_x * k) * 4, &dx));
    TRY(dalloc(&s, (size_t)(n_slots * m) * 4, &dy));
    TRY(dalloc(&s, kern_cuda_moe_gemm_scratch(n_tok, n_used, n_expert, k, x_per_slot), &ds));
    TRY(dalloc(&s, (size_t)n_slots * 4, &di));
    TRY(kern_cuda_upload(c, dw, w, wb));
    TRY(kern_cuda_upload(c, dx, x, (size_t)(n_x * k) * 4));
    TRY(kern_cuda_upload(c, di, ids, (size_t)n_slots * 4));
    TRY(t_begin(&s));
    TRY(kern_cuda_moe_gemm(c, t, dw, n_expert, m, k, di, n_tok, n_used, dx, x_per_slot, dy, ds));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "moe_gemm"));
    TRY(kern_cuda_download(c, got, dy, (size_t)(n_slots * m) * 4));
    compare(r, got, ref, mag, n_slots * m);
out:
    scope_end(&s);
    return e;
}

json_t *kern_cuda_check_json(const kern_cuda_check_result *r)
{
    return json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:b, s:s}", "kernel", r->name, "n", (json_int_t)r->n,
                     "max_abs_err", r->max_abs_err, "worst_ratio", isfinite(r->worst_ratio) ? r->worst_ratio : 1e30,
                     "rtol", r->rtol, "atol", r->atol, "ms", r->ms, "pass", r->pass, "worst", r->worst);
}

/* ---- the fused and position-on-the-device ops against the ops they replace ----------
 * Same device, same arithmetic (the fused kernels repeat the separate kernels' sums in
 * the same order): equal bit for bit, tolerance 0.  Inputs are random; every buffer of
 * a pair starts equal (caches included), and all that either side wrote is compared. */

typedef struct pair_buf {
    kern_cu_deviceptr a, b;
    size_t bytes;
} pair_buf;

/* Two device copies of host (or of zeros when host is NULL). */
static adg_error *pair_up(scope *s, const void *host, size_t bytes, pair_buf *p)
{
    p->bytes = bytes;
    adg_error *e = dalloc(s, 2 * bytes, &p->a);
    if (e)
        return e;
    p->b = p->a + bytes;
    void *z = host ? NULL : calloc(1, bytes);
    if (!host && !z)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    const void *src = host ? host : z;
    if (!(e = kern_cuda_upload(s->c, p->a, src, bytes)))
        e = kern_cuda_upload(s->c, p->b, src, bytes);
    free(z);
    return e;
}

/* Both copies back, as floats (f16 buffers converted), appended at got[*n] / ref[*n]. */
static adg_error *pair_back(scope *s, const pair_buf *p, bool f16, float *got, float *ref, int64_t *n)
{
    size_t count = p->bytes / (f16 ? 2 : 4);
    void *ha = malloc(p->bytes), *hb = malloc(p->bytes);
    adg_error *e = ha && hb ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
    if (!e && !(e = kern_cuda_download(s->c, ha, p->a, p->bytes)))
        e = kern_cuda_download(s->c, hb, p->b, p->bytes);
    if (!e && f16) {
        kern_fp16_to_fp32_row(ha, ref + *n, (int64_t)count);
        kern_fp16_to_fp32_row(hb, got + *n, (int64_t)count);
    } else if (!e) {
        memcpy(ref + *n, ha, p->bytes);
        memcpy(got + *n, hb, p->bytes);
    }
    if (!e)
        *n += (int64_t)count;
    free(ha);
    free(hb);
    return e;
}

adg_error *kern_cuda_check_qkv_post(kern_cuda_ctx *c, int64_t n_tok, int n_head, int n_kv_head, int hd, int64_t pos0,
                                    uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 0, 0, "qkv_post %lld tokens at %lld, %d/%d heads of %d vs the 6 ops", (long long)n_tok,
             (long long)pos0, n_head, n_kv_head, hd);
    uint64_t st = seed | 1;
    int64_t qn = n_tok * n_head * hd, kn = n_tok * n_kv_head * hd, rows = pos0 + n_tok + 2, kvd = (int64_t)n_kv_head * hd;
    int64_t total = 2 * qn + 2 * kn + 2 * rows * kvd;
    float *q = halloc(&s, (size_t)qn * 4), *k = halloc(&s, (size_t)kn * 4), *v = halloc(&s, (size_t)kn * 4),
          *w = halloc(&s, (size_t)hd * 8), *got = halloc(&s, (size_t)total * 4), *ref = halloc(&s, (size_t)total * 4);
    int32_t *pos = halloc(&s, (size_t)n_tok * 4);
    NOMEM(q && k && v && w && got && ref && pos);
    fill(q, qn, &st, 3.0f);
    fill(k, kn, &st, 3.0f);
    fill(v, kn, &st, 3.0f);
    fill(w, 2 * hd, &st, 1.5f);
    for (int64_t t = 0; t < n_tok; t++)
        pos[t] = (int32_t)(pos0 + t);
    pair_buf dq, dk, dv, dw, dpos, kc, vc;
    TRY(pair_up(&s, q, (size_t)qn * 4, &dq));
    TRY(pair_up(&s, k, (size_t)kn * 4, &dk));
    TRY(pair_up(&s, v, (size_t)kn * 4, &dv));
    TRY(pair_up(&s, w, (size_t)hd * 8, &dw));
    TRY(pair_up(&s, pos, (size_t)n_tok * 4, &dpos));
    TRY(pair_up(&s, NULL, (size_t)(rows * kvd) * 2, &kc));
    TRY(pair_up(&s, NULL, (size_t)(rows * kvd) * 2, &vc));
    const float eps = 1e-6f, base = 1e6f;
    kern_cu_deviceptr knorm_a = dw.a + (kern_cu_deviceptr)hd * 4;
    TRY(kern_cuda_rmsnorm(c, dq.a, dw.a, dq.a, n_tok * n_head, hd, eps));
    TRY(kern_cuda_rmsnorm(c, dk.a, knorm_a, dk.a, n_tok * n_kv_head, hd, eps));
    TRY(kern_cuda_rope_neox(c, dq.a, dpos.a, n_tok, n_head, hd, base));
    TRY(kern_cuda_rope_neox(c, dk.a, dpos.a, n_tok, n_kv_head, hd, base));
    TRY(kern_cuda_kv_store(c, dk.a, kc.a, rows, pos0, n_tok, kvd));
    TRY(kern_cuda_kv_store(c, dv.a, vc.a, rows, pos0, n_tok, kvd));
    TRY(t_begin(&s));
    TRY(kern_cuda_qkv_post(c, dq.b, dk.b, dv.b, dw.b, dw.b + (kern_cu_deviceptr)hd * 4, dpos.b, kc.b, vc.b, rows, pos0,
                           n_tok, n_head, n_kv_head, hd, eps, base));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "qkv_post"));
    int64_t n = 0;
    TRY(pair_back(&s, &dq, false, got, ref, &n));
    TRY(pair_back(&s, &kc, true, got, ref, &n));
    TRY(pair_back(&s, &vc, true, got, ref, &n));
    compare(r, got, ref, NULL, n);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_add_rmsnorm(kern_cuda_ctx *c, int64_t n, int64_t d, uint64_t seed,
                                       kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 0, 0, "add_rmsnorm %lld x %lld vs add + rmsnorm", (long long)n, (long long)d);
    uint64_t st = seed | 1;
    size_t nx = (size_t)(n * d);
    float *x = halloc(&s, nx * 4), *o = halloc(&s, nx * 4), *w = halloc(&s, (size_t)d * 4),
          *got = halloc(&s, nx * 8), *ref = halloc(&s, nx * 8);
    NOMEM(x && o && w && got && ref);
    fill(x, (int64_t)nx, &st, 2.0f);
    fill(o, (int64_t)nx, &st, 2.0f);
    fill(w, d, &st, 1.5f);
    pair_buf dx, dout, dy, dw;
    TRY(pair_up(&s, x, nx * 4, &dx));
    TRY(pair_up(&s, o, nx * 4, &dout));
    TRY(pair_up(&s, w, (size_t)d * 4, &dw));
    TRY(pair_up(&s, NULL, nx * 4, &dy));
    TRY(kern_cuda_add(c, dx.a, dout.a, dx.a, (int64_t)nx));
    TRY(kern_cuda_rmsnorm(c, dx.a, dw.a, dy.a, n, d, 1e-6f));
    TRY(t_begin(&s));
    TRY(kern_cuda_add_rmsnorm(c, dx.b, dout.b, dw.b, dy.b, n, d, 1e-6f));
    TRY(t_end(&s, &r->ms));
    TRY(kern_cuda_sync(c, "add_rmsnorm"));
    int64_t k = 0;
    TRY(pair_back(&s, &dx, false, got, ref, &k));
    TRY(pair_back(&s, &dy, false, got, ref, &k));
    compare(r, got, ref, NULL, k);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_at_pos(kern_cuda_ctx *c, int n_head, int n_kv_head, int hd, int64_t pos, uint64_t seed,
                                  kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 0, 0, "kv_store + attention at position %lld read on the device vs given by the host",
             (long long)pos);
    uint64_t st = seed | 1;
    int64_t kvd = (int64_t)n_kv_head * hd, rows = pos + 3, qd = (int64_t)n_head * hd;
    size_t nc = (size_t)(rows * kvd);
    float *q = halloc(&s, (size_t)qd * 4), *kv = halloc(&s, (size_t)kvd * 4), *cf = halloc(&s, nc * 4),
          *got = halloc(&s, (nc + (size_t)qd) * 4), *ref = halloc(&s, (nc + (size_t)qd) * 4);
    uint16_t *cache = halloc(&s, nc * 2);
    NOMEM(q && kv && cf && got && ref && cache);
    fill(q, qd, &st, 1.0f);
    fill(kv, kvd, &st, 2.0f);
    fill(cf, (int64_t)nc, &st, 2.0f);
    kern_fp32_to_fp16_row(cf, cache, (int64_t)nc);
    int32_t p32 = (int32_t)pos;
    pair_buf dq, dkv, kc, dpos, dout;
    TRY(pair_up(&s, q, (size_t)qd * 4, &dq));
    TRY(pair_up(&s, kv, (size_t)kvd * 4, &dkv));
    TRY(pair_up(&s, cache, nc * 2, &kc));
    TRY(pair_up(&s, &p32, 4, &dpos));
    TRY(pair_up(&s, NULL, (size_t)qd * 4, &dout));
    const float scale = 1.0f / sqrtf((float)hd);
    /* The same cache serves as K and V: what matters is where the new row lands and how
     * far attention reads. */
    TRY(kern_cuda_kv_store(c, dkv.a, kc.a, rows, pos, 1, kvd));
    TRY(kern_cuda_attention(c, dq.a, kc.a, kc.a, dout.a, n_head, n_kv_head, hd, pos + 1, scale));
    TRY(kern_cuda_kv_store_at(c, dkv.b, kc.b, rows, 0, dpos.b, 1, kvd));
    TRY(kern_cuda_attention_at(c, dq.b, kc.b, kc.b, dout.b, n_head, n_kv_head, hd, 1, dpos.b, scale, 0));
    TRY(kern_cuda_sync(c, "attention_at"));
    int64_t n = 0;
    TRY(pair_back(&s, &kc, true, got, ref, &n));
    TRY(pair_back(&s, &dout, false, got, ref, &n));
    compare(r, got, ref, NULL, n);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_router_topk(kern_cuda_ctx *c, int n_expert, int64_t d, int k, uint64_t seed,
                                       kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    res_init(r, 0, 0, "router_topk %d experts x %lld, top %d (3 launches) vs gemm f32 + moe_route", n_expert,
             (long long)d, k);
    uint64_t st = seed | 1;
    size_t nw = (size_t)n_expert * (size_t)d, nout = (size_t)n_expert + 4 * (size_t)k + 1;
    float *w = halloc(&s, nw * 4), *x = halloc(&s, (size_t)d * 4), *got = halloc(&s, 3 * nout * 4),
          *ref = halloc(&s, 3 * nout * 4);
    NOMEM(w && x && got && ref);
    pair_buf dw, dl, dids, dwt, dgu, dcnt;
    TRY(pair_up(&s, NULL, (size_t)n_expert * 4, &dl));
    TRY(pair_up(&s, NULL, (size_t)k * 4, &dids));
    TRY(pair_up(&s, NULL, (size_t)k * 4, &dwt));
    TRY(pair_up(&s, NULL, (size_t)k * 8, &dgu));
    TRY(pair_up(&s, NULL, 4, &dcnt));
    kern_cu_deviceptr dx;
    TRY(dalloc(&s, (size_t)d * 4, &dx));
    int64_t n = 0;
    /* Three tokens in a row: the counter must come back to 0 after each launch. */
    for (int rep = 0; rep < 3; rep++) {
        fill(w, (int64_t)nw, &st, 0.5f);
        fill(x, d, &st, 1.0f);
        if (rep == 0)
            TRY(pair_up(&s, w, nw * 4, &dw));
        else
            TRY(kern_cuda_upload(c, dw.a, w, nw * 4));
        TRY(kern_cuda_upload(c, dw.b, w, nw * 4));
        TRY(kern_cuda_upload(c, dx, x, (size_t)d * 4));
        TRY(kern_cuda_gemm(c, KERN_TYPE_F32, dw.a, n_expert, d, dx, 1, dl.a, 0));
        TRY(kern_cuda_moe_route_gu(c, dl.a, 1, n_expert, k, true, dids.a, dwt.a, dgu.a));
        TRY(t_begin(&s));
        TRY(kern_cuda_router_topk(c, dw.b, dx, d, n_expert, k, true, dl.b, dids.b, dwt.b, dgu.b, dcnt.b));
        TRY(t_end(&s, &r->ms));
        TRY(kern_cuda_sync(c, "router_topk"));
        TRY(pair_back(&s, &dl, false, got, ref, &n));
        TRY(pair_back(&s, &dwt, false, got, ref, &n));
        /* ids as floats (exact below 2^24), and the counter (both 0) */
        TRY(pair_back(&s, &dids, false, got, ref, &n));
        TRY(pair_back(&s, &dgu, false, got, ref, &n));
        TRY(pair_back(&s, &dcnt, false, got, ref, &n));
    }
    compare(r, got, ref, NULL, n);
out:
    scope_end(&s);
    return e;
}

adg_error *kern_cuda_check_q8_producers(kern_cuda_ctx *c, kern_type t, uint64_t seed, kern_cuda_check_result *r)
{
    scope s = {.c = c};
    adg_error *e = NULL;
    /* Each producer's _q8 variant feeding a _q8 GEMV against the plain producer feeding
     * the GEMV that quantises for itself: the GEMV outputs must be equal bit for bit. */
    enum { D = 512, M = 96, NH = 4, HD = 128, KU = 3, E = 5 };
    res_init(r, 0, 0, "%s GEMVs fed by rmsnorm/add_rmsnorm/silu_mul/attention _q8 vs quantising themselves",
             kern_type_name(t));
    uint64_t st = seed | 1;
    void *wb;
    float *wdeq, *x = halloc(&s, (size_t)D * KU * 4), *o = halloc(&s, (size_t)D * 4),
                 *nw = halloc(&s, (size_t)D * 4), *got = halloc(&s, (size_t)(M * KU * 4 + D * KU) * 4),
                 *ref = halloc(&s, (size_t)(M * KU * 4 + D * KU) * 4);
    uint16_t *cache = halloc(&s, (size_t)8 * 2 * HD * 2); /* 8 positions x 2 KV heads */
    NOMEM(x && o && nw && got && ref && cache);
    TRY(make_weights(&s, t, (int64_t)M * E, D, &st, &wb, &wdeq));
    fill(x, (int64_t)D * KU, &st, 2.0f);
    fill(o, D, &st, 2.0f);
    fill(nw, D, &st, 1.5f);
    for (int i = 0; i < 8 * 2 * HD; i++)
        cache[i] = kern_fp32_to_fp16((float)((int)(rng_next(&st) % 2001) - 1000) / 500.0f);
    int32_t ids[KU] = {4, 0, 2};
    pair_buf dw, dx, dout, dn, dy, dids, dsc, dkc, dres;
    size_t rs = kern_row_size(t, D);
    TRY(pair_up(&s, wb, rs * (size_t)M * E, &dw));
    TRY(pair_up(&s, x, (size_t)D * KU * 4, &dx));
    TRY(pair_up(&s, o, (size_t)D * 4, &dout));
    TRY(pair_up(&s, nw, (size_t)D * 4, &dn));
    TRY(pair_up(&s, NULL, (size_t)D * KU * 4, &dy));
    TRY(pair_up(&s, ids, sizeof ids, &dids));
    TRY(pair_up(&s, NULL, kern_cuda_gemv_scratch((int64_t)D * KU), &dsc));
    TRY(pair_up(&s, cache, (size_t)8 * 2 * HD * 2, &dkc));
    TRY(pair_up(&s, NULL, (size_t)M * KU * 4 * 4, &dres));
    int64_t n = 0;
    /* 1. rmsnorm -> gemv */
    TRY(kern_cuda_rmsnorm(c, dx.a, dn.a, dy.a, 1, D, 1e-6f));
    TRY(kern_cuda_gemv(c, t, dw.a, M, D, dy.a, dres.a, dsc.a));
    TRY(kern_cuda_rmsnorm_q8(c, dx.b, dn.b, dy.b, 1, D, 1e-6f, dsc.b));
    TRY(kern_cuda_gemv_q8(c, t, dw.b, M, D, dy.b, dres.b, dsc.b));
    /* 2. add_rmsnorm -> grouped gemv, shared input */
    kern_cu_deviceptr ra = dres.a + (kern_cu_deviceptr)M * 4, rb = dres.b + (kern_cu_deviceptr)M * 4;
    TRY(kern_cuda_add_rmsnorm(c, dx.a, dout.a, dn.a, dy.a, 1, D, 1e-6f));
    TRY(kern_cuda_moe_gemv(c, t, dw.a, E, M, D, dids.a, KU, dy.a, 1, ra, dsc.a));
    TRY(kern_cuda_add_rmsnorm_q8(c, dx.b, dout.b, dn.b, dy.b, 1, D, 1e-6f, dsc.b));
    TRY(kern_cuda_moe_gemv_q8(c, t, dw.b, E, M, D, dids.b, KU, dy.b, 1, rb, dsc.b));
    /* 3. silu_mul -> grouped gemv, one input row per job */
    ra += (kern_cu_deviceptr)M * KU * 4, rb += (kern_cu_deviceptr)M * KU * 4;
    TRY(kern_cuda_silu_mul(c, dx.a, dx.a, dy.a, (int64_t)D * KU));
    TRY(kern_cuda_moe_gemv(c, t, dw.a, E, M, D, dids.a, KU, dy.a, KU, ra, dsc.a));
    TRY(kern_cuda_silu_mul_q8(c, dx.b, dx.b, dy.b, (int64_t)D * KU, dsc.b));
    TRY(kern_cuda_moe_gemv_q8(c, t, dw.b, E, M, D, dids.b, KU, dy.b, KU, rb, dsc.b));
    /* 4. decode attention (NH heads of HD = D values) -> gemv */
    ra += (kern_cu_deviceptr)M * KU * 4, rb += (kern_cu_deviceptr)M * KU * 4;
    TRY(kern_cuda_attention_at(c, dx.a, dkc.a, dkc.a, dy.a, NH, 2, HD, 8, 0, 0.088f, 0));
    TRY(kern_cuda_gemv(c, t, dw.a, M, D, dy.a, ra, dsc.a));
    TRY(kern_cuda_attention_at(c, dx.b, dkc.b, dkc.b, dy.b, NH, 2, HD, 8, 0, 0.088f, dsc.b));
    TRY(kern_cuda_gemv_q8(c, t, dw.b, M, D, dy.b, rb, dsc.b));
    TRY(kern_cuda_sync(c, "q8 producers"));
    TRY(pair_back(&s, &dres, false, got, ref, &n));
    TRY(pair_back(&s, &dy, false, got, ref, &n));
    compare(r, got, ref, NULL, n);
out:
    scope_end(&s);
    return e;
}

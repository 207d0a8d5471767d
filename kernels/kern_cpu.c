/* The kernel context: implementation choice, thread pool, per-worker scratch, weight
 * repacking, and the dispatch of matmuls between AVX-512 VNNI and AMX tiles. */
#include "kernels/kern_cpu.h"

#include <errno.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/kern_internal.h"


/* ---- context ------------------------------------------------------------------ */

static int allowed_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static kern_impl resolve_auto(void)
{
    adg_error *e = kern_impl_check(KERN_IMPL_AMX);
    if (!e)
        return KERN_IMPL_AMX;
    adg_debug("kernels: AMX not used: %s", adg_error_msg(e));
    adg_error_free(e);
    e = kern_impl_check(KERN_IMPL_AVX512);
    if (!e)
        return KERN_IMPL_AVX512;
    adg_debug("kernels: AVX-512 not used: %s", adg_error_msg(e));
    adg_error_free(e);
    return KERN_IMPL_REF;
}

static void describe(kern_cpu *c)
{
    int nodes = kern_pool_nodes(c->pool);
    if (c->amx)
        snprintf(c->desc, sizeof c->desc, "%s (tiles for m >= %d q8_0 / %d q4_0 / %d bf16, %s), %d threads, %d NUMA node%s",
                 kern_impl_name(c->impl), c->xo.q8_0, c->xo.q4_0, c->xo.bf16, c->xo.measured ? "measured" : "default",
                 kern_pool_size(c->pool), nodes, nodes == 1 ? "" : "s");
    else
        snprintf(c->desc, sizeof c->desc, "%s, %d threads, %d NUMA node%s", kern_impl_name(c->impl),
                 kern_pool_size(c->pool), nodes, nodes == 1 ? "" : "s");
}

/* The int8 tile kernel's schedule (docs/kernels.md): AMXDIAG_AMX_INT8_KERNEL=ring (default,
 * distances 3, 1: the fastest of 3,1 / 2,1 / 1,0 at every shape measured on the reference
 * machine), ring:AHEAD,STORE_AHEAD, or 1x1 (1, 0: the earlier default's order), for
 * experiments.  Anything else is ignored with a warning: inference must not stop over a
 * tuning variable. */
static void amx_int8_from_env(kern_cpu *c)
{
    c->ring_ahead = 3;
    c->ring_store_ahead = 1;
    const char *kv = getenv("AMXDIAG_AMX_INT8_KERNEL");
    if (!kv || !*kv || strcmp(kv, "ring") == 0)
        return;
    int ahead, store_ahead, used = 0;
    if (strcmp(kv, "1x1") == 0) {
        c->ring_ahead = 1;
        c->ring_store_ahead = 0;
    } else if (sscanf(kv, "ring:%d,%d%n", &ahead, &store_ahead, &used) == 2 && kv[used] == '\0' &&
               store_ahead >= 0 && store_ahead < ahead && ahead <= 3) {
        c->ring_ahead = ahead;
        c->ring_store_ahead = store_ahead;
    } else {
        adg_warn("kernels: ignoring AMXDIAG_AMX_INT8_KERNEL=%s (want ring, ring:AHEAD,STORE_AHEAD with "
                 "0 <= STORE_AHEAD < AHEAD <= 3, or 1x1); using ring", kv);
    }
}

/* The VNNI GEMV's software prefetch (kern_ops_avx512.c), for A/B runs on the device:
 * AMXDIAG_GEMV_PREFETCH=panel (default), ahead (the earlier scheme), none, or l2 (panel's
 * lines into L2 only).  Anything else is ignored with a warning. */
static void gemv_pf_from_env(kern_cpu *c)
{
    c->gemv_pf = KERN_GEMV_PF_PANEL;
    const char *v = getenv("AMXDIAG_GEMV_PREFETCH");
    if (!v || !*v || strcmp(v, "panel") == 0)
        return;
    if (strcmp(v, "ahead") == 0)
        c->gemv_pf = KERN_GEMV_PF_AHEAD;
    else if (strcmp(v, "none") == 0)
        c->gemv_pf = KERN_GEMV_PF_NONE;
    else if (strcmp(v, "l2") == 0)
        c->gemv_pf = KERN_GEMV_PF_L2;
    else
        adg_warn("kernels: ignoring AMXDIAG_GEMV_PREFETCH=%s (want panel, ahead, none or l2); using panel", v);
}

/* Its distance in blocks, for A/B runs (AMXDIAG_GEMV_PF_DIST=1..64; default
 * KERN_GEMV_PF_DIST): a Q4_0 panel's block is 288 bytes, a Q8_0 one's 544, so the same
 * count of blocks is half the bytes ahead for Q4_0. */
static void gemv_pf_dist_from_env(kern_cpu *c)
{
    c->gemv_pf_dist = 0;
    const char *v = getenv("AMXDIAG_GEMV_PF_DIST");
    if (!v || !*v)
        return;
    char *end;
    long d = strtol(v, &end, 10);
    if (*end == 0 && d >= 1 && d <= 64)
        c->gemv_pf_dist = (int)d;
    else
        adg_warn("kernels: ignoring AMXDIAG_GEMV_PF_DIST=%s (want 1 .. 64 blocks); using %d", v, KERN_GEMV_PF_DIST);
}

/* M = 1 work split (AMXDIAG_GEMV_TAIL=1): a call's last panels go out in items of a
 * quarter of the chunk (two per worker), so the worker that takes the last item finishes
 * with the others instead of one whole chunk (about 10 us of attn_q) later.  Off (0) by
 * default until the device has measured it; the bits are the same either way (each
 * output row is one panel's dot products, whatever the item). */
static void gemv_tail_from_env(kern_cpu *c)
{
    const char *v = getenv("AMXDIAG_GEMV_TAIL");
    c->gemv_tail = 0;
    if (!v || !*v || strcmp(v, "0") == 0)
        return;
    if (strcmp(v, "1") == 0)
        c->gemv_tail = 1;
    else
        adg_warn("kernels: ignoring AMXDIAG_GEMV_TAIL=%s (want 0 or 1); using 0", v);
}

adg_error *kern_cpu_new(const kern_cpu_opts *opts, kern_cpu **out)
{
    *out = NULL;
    kern_cpu_opts o = {0};
    if (opts)
        o = *opts;
    kern_impl impl = o.impl == KERN_IMPL_AUTO ? resolve_auto() : o.impl;
    adg_error *e = kern_impl_check(impl);
    if (e)
        return adg_error_prefix(e, "--cpu-kernels %s", kern_impl_name(impl));
    int threads = o.threads > 0 ? o.threads : allowed_cpus();
    kern_cpu *c = calloc(1, sizeof *c);
    if (!c)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    c->impl = impl;
    c->amx = impl == KERN_IMPL_AMX ? &kern_amx_hw : impl == KERN_IMPL_AMX_EMU ? &kern_amx_emu : NULL;
    amx_int8_from_env(c);
    gemv_pf_from_env(c);
    gemv_pf_dist_from_env(c);
    gemv_tail_from_env(c);
    kern_crossover_defaults(&c->xo);
    if (o.crossover) {
        e = kern_crossover_load(o.crossover, &c->xo);
        if (e) {
            free(c);
            return e;
        }
    } else {
        char *path = kern_crossover_default_path();
        if (path && access(path, R_OK) == 0) {
            e = kern_crossover_load(path, &c->xo);
            if (e) {   /* a stale cache must not stop inference: say so, use defaults */
                adg_warn("kernels: ignoring %s: %s", path, adg_error_msg(e));
                adg_error_free(e);
                kern_crossover_defaults(&c->xo);
            }
        }
        free(path);
    }
    e = kern_pool_new(threads, o.pin, &c->pool);
    if (e) {
        free(c);
        return e;
    }
    c->scratch = calloc((size_t)threads, sizeof *c->scratch);
    if (!c->scratch) {
        kern_cpu_free(c);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    describe(c);
    adg_info("kernels: %s", c->desc);
    *out = c;
    return NULL;
}

void kern_cpu_free(kern_cpu *c)
{
    if (!c)
        return;
    if (c->pool) {
        for (int i = 0; c->scratch && i < kern_pool_size(c->pool); i++)
            free(c->scratch[i]);
        kern_pool_free(c->pool);
    }
    kern_ws_free(&c->ws);
    free(c->scratch);
    free(c);
}

kern_impl kern_cpu_impl(const kern_cpu *c) { return c->impl; }
int kern_cpu_threads(const kern_cpu *c) { return kern_pool_size(c->pool); }
const kern_crossover *kern_cpu_crossover(const kern_cpu *c) { return &c->xo; }
const char *kern_cpu_describe(const kern_cpu *c) { return c->desc; }

void kern_cpu_set_crossover(kern_cpu *c, const kern_crossover *x)
{
    c->xo = *x;
    describe(c);
}

adg_error *kern_cpu_ensure_scratch(kern_cpu *c, size_t bytes)
{
    bytes = (bytes + 4095) & ~(size_t)4095;
    if (bytes <= c->scratch_bytes)
        return NULL;
    for (int i = 0; i < kern_pool_size(c->pool); i++) {
        free(c->scratch[i]);
        c->scratch[i] = aligned_alloc(4096, bytes);
        if (!c->scratch[i]) {
            c->scratch_bytes = 0;
            return adg_error_new(ADG_E_NOMEM, "out of memory for %zu bytes of kernel scratch", bytes);
        }
    }
    c->scratch_bytes = bytes;
    return NULL;
}

/* ---- weights ------------------------------------------------------------------ */

kern_type kern_weight_type(const kern_weight *w) { return w->type; }
size_t kern_weight_bytes(const kern_weight *w) { return w->mat_bytes * (size_t)w->n_mat; }

size_t kern_scratch_need(const kern_weight *w)
{
    size_t need = 4096 + 32 * 32 * 4 + 4096;
    if (w->fmt == KERN_WFMT_I4)
        need += 2 * (size_t)w->nb * 512;
    return need;
}

/* The static partition of panels between workers.  Repacking uses it too, so each worker
 * first-touches the weight pages it will read.  Single panels (not pairs) as the unit:
 * an expert of 48 panels splits 3/3/.../3 over 16 workers instead of 2 pairs / 1 pair. */
static void part_panels(int64_t n_panels, int ith, int nth, int64_t *p0, int64_t *p1)
{
    long lo, hi;
    kern_split((long)n_panels, ith, nth, &lo, &hi);
    *p0 = lo;
    *p1 = hi;
}

typedef struct repack_args {
    kern_weight *w;
    const uint8_t *src;
} repack_args;

static void repack_panel_i8(const kern_weight *w, const uint8_t *src, uint8_t *dst, int64_t p)
{
    const size_t rs = kern_row_size(KERN_TYPE_Q8_0, w->k);
    for (int64_t b = 0; b < w->nb; b++) {
        uint8_t *q = dst + b * w->blk_bytes;
        uint16_t *d = (uint16_t *)(q + 512);
        for (int n = 0; n < KERN_PANEL; n++) {
            int64_t r = p * KERN_PANEL + n;
            if (r >= w->n) {
                d[n] = 0;
                for (int kk = 0; kk < KERN_KB; kk++)
                    q[(kk / 4) * 64 + n * 4 + kk % 4] = 128;
                continue;
            }
            const kern_block_q8_0 *blk = (const kern_block_q8_0 *)(src + (size_t)r * rs) + b;
            d[n] = blk->d;
            for (int kk = 0; kk < KERN_KB; kk++)
                q[(kk / 4) * 64 + n * 4 + kk % 4] = (uint8_t)(blk->qs[kk] + 128);
        }
    }
}

static void repack_panel_i4(const kern_weight *w, const uint8_t *src, uint8_t *dst, int64_t p)
{
    const size_t rs = kern_row_size(KERN_TYPE_Q4_0, w->k);
    for (int64_t b = 0; b < w->nb; b++) {
        uint8_t *q = dst + b * w->blk_bytes;
        uint16_t *d = (uint16_t *)(q + 256);
        for (int n = 0; n < KERN_PANEL; n++) {
            int64_t r = p * KERN_PANEL + n;
            const kern_block_q4_0 *blk = r < w->n ? (const kern_block_q4_0 *)(src + (size_t)r * rs) + b : NULL;
            d[n] = blk ? blk->d : 0;
            for (int kk = 0; kk < 16; kk++) {
                uint8_t lo = blk ? blk->qs[kk] & 0x0F : 8;     /* element kk */
                uint8_t hi = blk ? blk->qs[kk] >> 4 : 8;       /* element kk + 16 */
                q[(kk / 4) * 64 + n * 4 + kk % 4] = (uint8_t)(lo | (hi << 4));
            }
        }
    }
}

static uint16_t to_bf16(kern_type t, const uint8_t *row, int64_t i)
{
    switch (t) {
    case KERN_TYPE_BF16: return ((const uint16_t *)row)[i];
    case KERN_TYPE_F16: return kern_fp32_to_bf16(kern_fp16_to_fp32(((const uint16_t *)row)[i]));
    default: return kern_fp32_to_bf16(((const float *)row)[i]);
    }
}

static void repack_panel_bf16(const kern_weight *w, const uint8_t *src, uint8_t *dst, int64_t p)
{
    const size_t rs = kern_row_size(w->type, w->k);
    for (int64_t c = 0; c < w->nb; c++) {
        uint16_t *o = (uint16_t *)(dst + c * w->blk_bytes);
        for (int n = 0; n < KERN_PANEL; n++) {
            int64_t r = p * KERN_PANEL + n;
            for (int kk = 0; kk < KERN_KB; kk++) {
                int64_t k = c * KERN_KB + kk;
                o[(kk / 2) * 32 + n * 2 + kk % 2] = (r < w->n && k < w->k) ? to_bf16(w->type, src + (size_t)r * rs, k) : 0;
            }
        }
    }
}

static void repack_worker(void *arg, int ith, int nth)
{
    repack_args *a = arg;
    kern_weight *w = a->w;
    const size_t src_mat = kern_row_size(w->type, w->k) * (size_t)w->n;
    for (int64_t e = 0; e < w->n_mat; e++) {
        const uint8_t *src = a->src + (size_t)e * src_mat;
        uint8_t *dst = w->data + (size_t)e * w->mat_bytes;
        if (w->fmt == KERN_WFMT_RAW) {
            long lo, hi;
            kern_split((long)w->n, ith, nth, &lo, &hi);
            for (long r = lo; r < hi; r++) {
                if (w->type == KERN_TYPE_F16) {
                    const uint16_t *s = (const uint16_t *)(src + (size_t)r * kern_row_size(w->type, w->k));
                    uint16_t *d = (uint16_t *)(dst + (size_t)r * w->row_bytes);
                    for (int64_t i = 0; i < w->k; i++)
                        d[i] = kern_fp32_to_bf16(kern_fp16_to_fp32(s[i]));
                } else {
                    memcpy(dst + (size_t)r * w->row_bytes, src + (size_t)r * w->row_bytes, w->row_bytes);
                }
            }
            continue;
        }
        int64_t p0, p1;
        part_panels(w->n_panels, ith, nth, &p0, &p1);
        for (int64_t p = p0; p < p1; p++) {
            uint8_t *pd = dst + (size_t)p * w->panel_bytes;
            if (w->fmt == KERN_WFMT_I8)
                repack_panel_i8(w, src, pd, p);
            else if (w->fmt == KERN_WFMT_I4)
                repack_panel_i4(w, src, pd, p);
            else
                repack_panel_bf16(w, src, pd, p);
        }
    }
}

adg_error *kern_weight_new(kern_cpu *c, kern_type type, int64_t n_mat, int64_t n, int64_t k, const void *data,
                           kern_weight **out)
{
    *out = NULL;
    if (!kern_type_valid(type))
        return adg_error_new(ADG_E_UNSUPPORTED, "weight type %d is not one of f32, f16, bf16, q4_0, q8_0", (int)type);
    if (n_mat < 1 || n < 1 || k < 1)
        return adg_error_new(ADG_E_USAGE, "weight shape %lld x %lld x %lld: every dimension must be >= 1",
                             (long long)n_mat, (long long)n, (long long)k);
    if (n > (1ll << 31) || k > (1ll << 31))
        return adg_error_new(ADG_E_UNSUPPORTED, "weight shape %lld x %lld exceeds 2^31 rows or columns", (long long)n,
                             (long long)k);
    adg_error *e = kern_row_check(type, k);
    if (e)
        return adg_error_prefix(e, "weight");
    kern_weight *w = calloc(1, sizeof *w);
    if (!w)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->type = type;
    w->ctype = type == KERN_TYPE_F16 ? KERN_TYPE_BF16 : type;
    w->impl = c->impl;
    w->n_mat = n_mat;
    w->n = n;
    w->k = k;
    w->n_panels = (n + KERN_PANEL - 1) / KERN_PANEL;
    w->n_pad = w->n_panels * KERN_PANEL;
    w->k_pad = (k + KERN_KB - 1) / KERN_KB * KERN_KB;
    w->nb = w->k_pad / KERN_KB;
    if (c->impl == KERN_IMPL_REF || type == KERN_TYPE_F32) {
        w->fmt = KERN_WFMT_RAW;
        w->row_bytes = kern_row_size(w->ctype, k);
        w->mat_bytes = w->row_bytes * (size_t)n;
    } else {
        w->fmt = type == KERN_TYPE_Q8_0 ? KERN_WFMT_I8 : type == KERN_TYPE_Q4_0 ? KERN_WFMT_I4 : KERN_WFMT_BF16;
        w->blk_bytes = w->fmt == KERN_WFMT_I8 ? 544 : w->fmt == KERN_WFMT_I4 ? 288 : 1024;
        w->panel_bytes = w->blk_bytes * (size_t)w->nb;
        w->mat_bytes = w->panel_bytes * (size_t)w->n_panels;
    }
    w->bytes = (w->mat_bytes * (size_t)n_mat + 4095) & ~(size_t)4095;
    /* Anonymous mapping: pages stay untouched until the worker that will read them
     * writes them (first touch places them on that worker's NUMA node). */
    w->data = mmap(NULL, w->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->data == MAP_FAILED) {
        int err = errno;
        free(w);
        char buf[32];
        return adg_error_hint(adg_error_errno(ADG_E_NOMEM, err, "cannot map %s for a %s weight",
                                              adg_fmt_bytes((double)(n_mat * n) * (double)kern_row_size(type, k), buf,
                                                            sizeof buf),
                                              kern_type_name(type)),
                              "free memory or use a smaller model");
    }
    if (w->bytes >= (4u << 20))
        madvise(w->data, w->bytes, MADV_HUGEPAGE);   /* fewer TLB misses when streaming */
    repack_args ra = {w, data};
    kern_pool_run(c->pool, repack_worker, &ra);
    *out = w;
    return NULL;
}

void kern_weight_free(kern_weight *w)
{
    if (!w)
        return;
    munmap(w->data, w->bytes);
    free(w);
}

/* ---- matmul dispatch ----------------------------------------------------------- */

typedef enum path { PATH_REF, PATH_AVX512, PATH_AMX } path;

static int crossover_for(const kern_cpu *c, kern_type t)
{
    return t == KERN_TYPE_Q8_0 ? c->xo.q8_0 : t == KERN_TYPE_Q4_0 ? c->xo.q4_0 : c->xo.bf16;
}

static path choose(const kern_cpu *c, const kern_weight *w, int64_t m)
{
    if (c->impl == KERN_IMPL_REF)
        return PATH_REF;
    if (c->amx && w->fmt != KERN_WFMT_RAW && m >= crossover_for(c, w->ctype))
        return PATH_AMX;
    return PATH_AVX512;
}

static const char *variant_name(path p, const kern_weight *w)
{
    if (p == PATH_REF)
        return w->ctype == KERN_TYPE_Q8_0 ? "ref-q8_0" : w->ctype == KERN_TYPE_Q4_0 ? "ref-q4_0"
             : w->ctype == KERN_TYPE_BF16 ? "ref-bf16" : "ref-f32";
    if (p == PATH_AMX)
        return w->fmt == KERN_WFMT_BF16 ? "amx-bf16"
             : w->fmt == KERN_WFMT_I4   ? "amx-int8-q4_0" : "amx-int8-q8_0";
    return w->fmt == KERN_WFMT_I8 ? "avx512-vnni-q8_0" : w->fmt == KERN_WFMT_I4 ? "avx512-vnni-q4_0"
         : w->fmt == KERN_WFMT_BF16 ? "avx512-bf16" : "avx512-f32";
}

/* One group of rows multiplied by one matrix (a plain matmul is one group; MoE has one
 * per active expert). */
typedef struct mm_group {
    int64_t mat;
    int64_t m;
    const kern_qact *qa;       /* int paths */
    const kern_bact *ba;       /* bf16 paths */
    const float *xf;           /* f32 RAW and ref float paths: m rows of k */
    const int64_t *yrow;
    path p;
} mm_group;

typedef struct mm_args {
    kern_cpu *c;
    const kern_weight *w;
    const mm_group *g;
    int64_t ng;
    float *y;
    int64_t ldy;
    /* dynamic schedule (one NUMA node): chunks of `chunk` panels of every group, taken in
     * order from `next`; a worker the OS preempts delays one chunk, not a fixed share */
    bool dynamic;
    int64_t chunk, per_group;
    _Atomic int64_t next;
    int64_t small, nbig;   /* items past nbig: `small` panels (kern_gemv_split) */
} mm_args;

/* Items of a product of n_panels: nbig of `chunk` panels, then the rest in items of
 * `small` panels (small 0: all of `chunk`).  Returns the number of items. */
int64_t kern_gemv_split(const kern_cpu *c, int64_t n_panels, int64_t chunk, int nth, int64_t *small, int64_t *nbig)
{
    *small = 0;
    *nbig = (n_panels + chunk - 1) / chunk;
    if (!c->gemv_tail || chunk < 2)
        return *nbig;
    const int64_t s = chunk / 4 < 1 ? 1 : chunk / 4;
    const int64_t tail = 2 * (int64_t)nth * s;   /* two small items per worker */
    if (n_panels <= tail + chunk)
        return *nbig;   /* too small to have a tail of its own */
    *small = s;
    *nbig = (n_panels - tail) / chunk;
    return *nbig + (n_panels - *nbig * chunk + s - 1) / s;
}

void kern_gemv_item(int64_t n_panels, int64_t chunk, int64_t small, int64_t nbig, int64_t i, int64_t *p0, int64_t *p1)
{
    if (i < nbig) {
        *p0 = i * chunk;
        *p1 = *p0 + chunk;
    } else {
        *p0 = nbig * chunk + (i - nbig) * small;
        *p1 = *p0 + small;
    }
    if (*p1 > n_panels)
        *p1 = n_panels;
}

static void mm_run(mm_args *a, int ith, const mm_group *g, int64_t p0, int64_t p1)
{
    const kern_weight *w = a->w;
    kern_gemm_job j = {w, kern_weight_mat(w, g->mat), p0, p1, a->y, a->ldy, g->yrow,
                       a->c->scratch[ith], a->c->scratch_bytes, a->c->gemv_pf, a->c->gemv_pf_dist};
    switch (g->p) {
    case PATH_REF:
        if (w->ctype == KERN_TYPE_Q8_0 || w->ctype == KERN_TYPE_Q4_0)
            kern_ref_gemm_q(&j, g->qa);
        else
            kern_ref_gemm_f(&j, g->xf, g->m);
        break;
    case PATH_AVX512:
        if (w->fmt == KERN_WFMT_I8 || w->fmt == KERN_WFMT_I4)
            kern_avx512_gemm_q(&j, g->qa);
        else if (w->fmt == KERN_WFMT_BF16)
            kern_avx512_gemm_bf16(&j, g->ba);
        else
            kern_avx512_gemm_f32(&j, g->xf, g->m);
        break;
    case PATH_AMX:
        if (w->fmt == KERN_WFMT_BF16)
            a->c->amx->gemm_bf16(&j, g->ba);
        else
            a->c->amx->gemm_q_ring(&j, g->qa, a->c->ring_ahead, a->c->ring_store_ahead);
        break;
    }
}

static void mm_worker(void *arg, int ith, int nth)
{
    mm_args *a = arg;
    const kern_weight *w = a->w;
    if (a->dynamic) {
        const int64_t total = a->per_group * a->ng;
        for (;;) {
            const int64_t item = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
            if (item >= total)
                return;
            const int64_t gi = item / a->per_group, ci = item % a->per_group;
            int64_t p0, p1;
            kern_gemv_item(w->n_panels, a->chunk, a->small, a->nbig, ci, &p0, &p1);
            mm_run(a, ith, &a->g[gi], p0, p1);
        }
    }
    int64_t p0, p1;
    /* Several nodes: the static split of the repacking, so each worker reads the rows it
     * placed on its node (RAW rows are split in the same panel units). */
    part_panels(w->n_panels, ith, nth, &p0, &p1);
    if (p0 >= p1)
        return;
    for (int64_t gi = 0; gi < a->ng; gi++)
        mm_run(a, ith, &a->g[gi], p0, p1);
}

/* Chooses the schedule: dynamic chunks (about four per worker and group, at least four
 * panels: the VNNI GEMV streams four panels at once) on one NUMA node, the static
 * node-local split otherwise.  Chunks of every group share one queue, so MoE experts of
 * 48 panels still spread over 16 workers. */
static void mm_schedule(kern_cpu *c, mm_args *a)
{
    const int nth = kern_pool_size(c->pool);
    a->dynamic = kern_pool_nodes(c->pool) == 1 && nth > 1;
    int64_t chunk = (a->w->n_panels + 4 * nth - 1) / (4 * nth);
    a->chunk = chunk < 4 ? 4 : chunk;
    a->per_group = (a->w->n_panels + a->chunk - 1) / a->chunk;
    a->small = 0;
    a->nbig = a->per_group;
    bool gemv = a->ng > 0;   /* one row per group (decode), not on tiles */
    for (int64_t i = 0; i < a->ng; i++)
        gemv &= a->g[i].m == 1 && a->g[i].p != PATH_AMX;
    if (gemv)
        a->per_group = kern_gemv_split(c, a->w->n_panels, a->chunk, nth, &a->small, &a->nbig);
    atomic_store(&a->next, 0);
}

static bool is_int(const kern_weight *w) { return w->ctype == KERN_TYPE_Q8_0 || w->ctype == KERN_TYPE_Q4_0; }
static bool uses_bact(const kern_weight *w) { return w->fmt == KERN_WFMT_BF16; }

typedef struct act_args {
    kern_qact *qa;
    kern_bact *ba;
    const float *x;
    int64_t m;
    int off;
    bool avx;
} act_args;

static void act_worker(void *arg, int ith, int nth)
{
    act_args *a = arg;
    long lo, hi;
    kern_split((long)a->m, ith, nth, &lo, &hi);
    if (a->qa)
        kern_qact_rows(a->qa, a->x, lo, hi, a->off, a->avx);
    else
        kern_bact_rows(a->ba, a->x, lo, hi);
}

/* Prepares the activations of m rows for weight w: Q8_0 rows for int weights, BF16 rows
 * for BF16 panels, nothing for float RAW (the kernels read x directly). */
static adg_error *prepare_act(kern_cpu *c, const kern_weight *w, const float *x, int64_t m, kern_qact *qa,
                              kern_bact *ba, bool *have_q, bool *have_b)
{
    *have_q = *have_b = false;
    adg_error *e = NULL;
    act_args aa = {NULL, NULL, x, m, w->fmt == KERN_WFMT_I4 || w->ctype == KERN_TYPE_Q4_0 ? 8 : 128,
                   c->impl != KERN_IMPL_REF};
    if (is_int(w)) {
        if ((e = kern_qact_alloc_ws(qa, m, w->k, &c->ws, KERN_WS_QA)))
            return e;
        *have_q = true;
        aa.qa = qa;
    } else if (uses_bact(w)) {
        if ((e = kern_bact_alloc_ws(ba, m, w->k, w->k_pad, &c->ws, KERN_WS_BA)))
            return e;
        *have_b = true;
        aa.ba = ba;
    } else {
        return NULL;
    }
    if (m * w->k < 65536)
        act_worker(&aa, 0, 1);          /* a decode step: no pool round trip */
    else
        kern_pool_run(c->pool, act_worker, &aa);
    return NULL;
}

typedef struct pack_args {
    kern_qact *qa;
    kern_bact *ba;
} pack_args;

static void pack_worker(void *arg, int ith, int nth)
{
    pack_args *p = arg;
    long lo, hi;
    kern_split((long)((p->qa ? p->qa->m_pad : p->ba->m_pad) / 16), ith, nth, &lo, &hi);
    if (p->qa)
        kern_qact_pack_tiles(p->qa, lo, hi);
    else
        kern_bact_pack_tiles(p->ba, lo, hi);
}

/* A-tile order for the AMX kernels (kern_internal.h says why). */
static adg_error *pack_for_amx(kern_cpu *c, kern_qact *qa, kern_bact *ba)
{
    adg_error *e = qa ? kern_qact_alloc_tiles(qa) : kern_bact_alloc_tiles(ba);
    if (e)
        return e;
    pack_args p = {qa, qa ? NULL : ba};
    const int64_t bytes = qa ? qa->m_pad * qa->k : ba->m_pad * ba->k_pad * 2;
    if (bytes < (1 << 18))
        pack_worker(&p, 0, 1);
    else
        kern_pool_run(c->pool, pack_worker, &p);
    return NULL;
}

static adg_error *check_weight(const kern_cpu *c, const kern_weight *w)
{
    if (!w)
        return adg_error_new(ADG_E_USAGE, "no weight given");
    if ((w->impl == KERN_IMPL_REF) != (c->impl == KERN_IMPL_REF))
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "the weight was repacked for the %s kernels, this context runs %s",
                                            kern_impl_name(w->impl), kern_impl_name(c->impl)),
                              "load weights with the context that multiplies them");
    return NULL;
}

static void fill_info(kern_op_info *info, const char *op, kern_impl impl, const char *variant, uint64_t flops,
                      uint64_t bytes, uint64_t t0)
{
    if (!info)
        return;
    info->op = op;
    info->impl = impl;
    snprintf(info->variant, sizeof info->variant, "%s", variant);
    info->flops = flops;
    info->bytes = bytes;
    info->ns = adg_now_ns() - t0;
}

static kern_impl path_impl(const kern_cpu *c, path p)
{
    return p == PATH_REF ? KERN_IMPL_REF : p == PATH_AMX ? c->impl : KERN_IMPL_AVX512;
}

/* Float weights kept in row layout (f32 routers; every float weight under ref): work is
 * tiled over rows of x as well as output panels.  A router has only 8 panels, so the
 * panel-only split left 14 of 16 workers idle at prompt evaluation (16.6 GFLOP/s). */
typedef struct f32_args {
    kern_cpu *c;
    const kern_weight *w;
    const float *x;
    float *y;
    int64_t m, mb, pb, n_pblk, items;
    path p;
    _Atomic int64_t next;
} f32_args;

static void f32_worker(void *arg, int ith, int nth)
{
    (void)nth;
    f32_args *a = arg;
    const kern_weight *w = a->w;
    for (;;) {
        const int64_t item = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        if (item >= a->items)
            return;
        const int64_t m0 = item / a->n_pblk * a->mb, p0 = item % a->n_pblk * a->pb;
        const int64_t rows = a->m - m0 < a->mb ? a->m - m0 : a->mb;
        const int64_t p1 = p0 + a->pb < w->n_panels ? p0 + a->pb : w->n_panels;
        kern_gemm_job j = {w, kern_weight_mat(w, 0), p0, p1, a->y + m0 * w->n, w->n, NULL,
                           a->c->scratch[ith], a->c->scratch_bytes, a->c->gemv_pf, a->c->gemv_pf_dist};
        if (a->p == PATH_REF)
            kern_ref_gemm_f(&j, a->x + m0 * w->k, rows);
        else
            kern_avx512_gemm_f32(&j, a->x + m0 * w->k, rows);
    }
}

static void matmul_rowlayout(kern_cpu *c, const kern_weight *w, const float *x, int64_t m, float *y, path p)
{
    f32_args a = {c, w, x, y, m, 32, m >= 16 ? 2 : 1, 0, 0, p, 0};
    a.n_pblk = (w->n_panels + a.pb - 1) / a.pb;
    a.items = (m + a.mb - 1) / a.mb * a.n_pblk;
    atomic_store(&a.next, 0);
    if (a.items == 1 || (uint64_t)m * (uint64_t)w->n * (uint64_t)w->k < 65536)
        f32_worker(&a, 0, 1);            /* a small product: no pool round trip */
    else
        kern_pool_run(c->pool, f32_worker, &a);
}

adg_error *kern_matmul(kern_cpu *c, const kern_weight *w, const float *x, int64_t m, float *y, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    adg_error *e = check_weight(c, w);
    if (e)
        return e;
    if (w->n_mat != 1)
        return adg_error_new(ADG_E_USAGE, "kern_matmul takes a single matrix; this weight holds %lld (use kern_moe_matmul)",
                             (long long)w->n_mat);
    if (m < 1)
        return adg_error_new(ADG_E_USAGE, "matmul needs m >= 1 rows (got %lld)", (long long)m);
    if ((e = kern_cpu_ensure_scratch(c, kern_scratch_need(w))))
        return e;
    kern_qact qa;
    kern_bact ba;
    bool hq, hb;
    if ((e = prepare_act(c, w, x, m, &qa, &ba, &hq, &hb)))
        return e;
    mm_group g = {0, m, hq ? &qa : NULL, hb ? &ba : NULL, x, NULL, choose(c, w, m)};
    adg_debug("kernels: matmul %lld x %lld %s, m = %lld: %s", (long long)w->n, (long long)w->k, kern_type_name(w->type),
              (long long)m, variant_name(g.p, w));
    if (g.p == PATH_AMX && (e = pack_for_amx(c, hq ? &qa : NULL, hb ? &ba : NULL))) {
        if (hq)
            kern_qact_free(&qa);
        if (hb)
            kern_bact_free(&ba);
        return e;
    }
    if (w->fmt == KERN_WFMT_RAW && !is_int(w)) {
        matmul_rowlayout(c, w, x, m, y, g.p);
    } else {
        mm_args a = {c, w, &g, 1, y, w->n, false, 0, 0, 0, 0, 0};
        mm_schedule(c, &a);
        kern_pool_run(c->pool, mm_worker, &a);
    }
    if (hq)
        kern_qact_free(&qa);
    if (hb)
        kern_bact_free(&ba);
    fill_info(info, "matmul", path_impl(c, g.p), variant_name(g.p, w), 2ull * (uint64_t)m * (uint64_t)w->n * (uint64_t)w->k,
              w->mat_bytes + (uint64_t)m * (uint64_t)(w->k + w->n) * 4, t0);
    return NULL;
}

/* ---- one-row pieces (kern_cpu.h) ------------------------------------------------- */

bool kern_gemv_ok(const kern_cpu *c, const kern_weight *w)
{
    if (!w || (w->impl == KERN_IMPL_REF) != (c->impl == KERN_IMPL_REF))
        return false;
    if (choose(c, w, 1) == PATH_AMX)
        return false;
    return is_int(w) || w->fmt == KERN_WFMT_RAW;
}

int kern_gemv_act_off(const kern_weight *w)
{
    return !is_int(w) ? 0 : w->fmt == KERN_WFMT_I4 || w->ctype == KERN_TYPE_Q4_0 ? 8 : 128;
}

int64_t kern_weight_panels(const kern_weight *w) { return w->n_panels; }
int64_t kern_weight_n(const kern_weight *w) { return w->n; }
int64_t kern_weight_k(const kern_weight *w) { return w->k; }
int64_t kern_weight_n_mat(const kern_weight *w) { return w->n_mat; }

bool kern_matmul_on_tiles(const kern_cpu *c, const kern_weight *w, int64_t m)
{
    return w && choose(c, w, m) == PATH_AMX;
}

const char *kern_gemv_variant(const kern_cpu *c, const kern_weight *w)
{
    return variant_name(choose(c, w, 1), w);
}

void kern_gemv_panels(kern_cpu *c, int ith, const kern_weight *w, int64_t mat, const kern_qact *qa, const float *x,
                      int64_t p0, int64_t p1, float *y)
{
    mm_group g = {mat, 1, is_int(w) ? qa : NULL, NULL, x, NULL, choose(c, w, 1)};
    mm_args a = {c, w, &g, 1, y, w->n, false, 0, 0, 0, 0, 0};
    mm_run(&a, ith, &g, p0, p1);
}

/* ---- several one-row products in one region (kern_cpu.h) ------------------------ */

typedef struct gb_args {
    kern_cpu *c;
    const kern_weight *const *ws;
    const int64_t *mats;
    float *const *ys;
    const kern_qact *qa;
    const int64_t *first;   /* first item of product i; first[nw] = all items */
    const int64_t *chunk, *small, *nbig;
    int nw;
    path p;
    _Atomic int64_t next;
} gb_args;

static void gb_worker(void *arg, int ith, int nth)
{
    (void)nth;
    gb_args *a = arg;
    int i = 0;
    for (;;) {
        const int64_t item = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed);
        if (item >= a->first[a->nw])
            return;
        while (item >= a->first[i + 1])   /* items are taken in increasing order */
            i++;
        const kern_weight *w = a->ws[i];
        int64_t p0, p1;
        kern_gemv_item(w->n_panels, a->chunk[i], a->small[i], a->nbig[i], item - a->first[i], &p0, &p1);
        mm_group g = {a->mats ? a->mats[i] : 0, 1, a->qa, NULL, NULL, NULL, a->p};
        mm_args ma = {a->c, w, &g, 1, a->ys[i], w->n, false, 0, 0, 0, 0, 0};
        mm_run(&ma, ith, &g, p0, p1);
    }
}

adg_error *kern_gemv_batch(kern_cpu *c, const kern_weight *const *ws, const int64_t *mats, int nw, const float *x,
                           float *const *ys, kern_op_info *info)
{
    const uint64_t t0 = adg_now_ns();
    if (nw < 1 || !ws || !ys)
        return adg_error_new(ADG_E_USAGE, "kern_gemv_batch needs at least one weight");
    size_t scratch = 0;
    uint64_t flops = 0, bytes = 0;
    for (int i = 0; i < nw; i++) {
        adg_error *e = check_weight(c, ws[i]);
        if (e)
            return e;
        if (!is_int(ws[i]) || !kern_gemv_ok(c, ws[i]) || ws[i]->k != ws[0]->k ||
            kern_gemv_act_off(ws[i]) != kern_gemv_act_off(ws[0]))
            return adg_error_hint(adg_error_new(ADG_E_USAGE, "kern_gemv_batch: weight %d is not a Q4_0/Q8_0 GEMV of the "
                                                             "same input as weight 0", i),
                                  "batch only int8 weights of one k and type family on the VNNI or reference path");
        if (mats && (mats[i] < 0 || mats[i] >= ws[i]->n_mat))
            return adg_error_new(ADG_E_USAGE, "kern_gemv_batch: matrix %lld of weight %d out of range",
                                 (long long)mats[i], i);
        if (kern_scratch_need(ws[i]) > scratch)
            scratch = kern_scratch_need(ws[i]);
        flops += 2ull * (uint64_t)ws[i]->n * (uint64_t)ws[i]->k;
        bytes += ws[i]->mat_bytes + (uint64_t)ws[i]->n * 4;
    }
    adg_error *e = kern_cpu_ensure_scratch(c, scratch);
    if (e)
        return e;
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(4 * nw + 1));
    if (!first)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %d GEMV items", nw);
    int64_t *chunk = first + nw + 1, *small = chunk + nw, *nbig = small + nw;
    /* as the fused generation schedule: about four items per worker and product, at least
     * four panels; a run of products of one weight (a token's experts, matrices mats[i])
     * is one phase there, with its chunks sized for the whole run */
    const int nth = kern_pool_size(c->pool);
    first[0] = 0;
    for (int i = 0, run = 0; i < nw; i++) {
        if (i == 0 || ws[i] != ws[i - 1]) {
            run = 1;
            while (i + run < nw && ws[i + run] == ws[i])
                run++;
        }
        const int64_t ch = (ws[i]->n_panels * run + 4 * nth - 1) / (4 * nth);
        chunk[i] = ch < 4 ? 4 : ch;
        /* the tail split only on the batch's last product: the others' items are followed
         * by more work from the same counter */
        if (i == nw - 1)
            first[i + 1] = first[i] + kern_gemv_split(c, ws[i]->n_panels, chunk[i], nth, &small[i], &nbig[i]);
        else {
            small[i] = 0;
            nbig[i] = (ws[i]->n_panels + chunk[i] - 1) / chunk[i];
            first[i + 1] = first[i] + nbig[i];
        }
    }
    kern_qact qa;
    kern_bact ba;
    bool hq, hb;
    if ((e = prepare_act(c, ws[0], x, 1, &qa, &ba, &hq, &hb))) {   /* quantized once for all */
        free(first);
        return e;
    }
    gb_args a = {c, ws, mats, ys, &qa, first, chunk, small, nbig, nw, choose(c, ws[0], 1), 0};
    atomic_store(&a.next, 0);
    kern_pool_run(c->pool, gb_worker, &a);
    if (hq)
        kern_qact_free(&qa);
    if (hb)
        kern_bact_free(&ba);
    free(first);
    fill_info(info, "gemv_batch", path_impl(c, a.p), variant_name(a.p, ws[0]), flops, bytes + (uint64_t)ws[0]->k * 4, t0);
    return NULL;
}

/* ---- MoE ------------------------------------------------------------------------ */

static void gather_q(kern_qact *dst, const kern_qact *src, const int64_t *rows, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows[i];
        memcpy(dst->q + i * dst->k, src->q + r * src->k, (size_t)src->k);
        memcpy(dst->d + i * dst->nb, src->d + r * src->nb, (size_t)src->nb * sizeof(float));
        memcpy(dst->negoff + i * dst->nb, src->negoff + r * src->nb, (size_t)src->nb * sizeof(float));
        memcpy(dst->s + i * dst->nb, src->s + r * src->nb, (size_t)src->nb * sizeof(int32_t));
    }
}

typedef struct gather_args {
    mm_group *g;
    int64_t ng;
    const int64_t *in_row;     /* rows of every group, back to back */
    const kern_qact *qa;
    const kern_bact *ba;
    const float *x;
    int64_t k;
    bool hq, hb;
} gather_args;

static void gather_worker(void *arg, int ith, int nth)
{
    gather_args *a = arg;
    long lo, hi;
    kern_split((long)a->ng, ith, nth, &lo, &hi);
    int64_t pos = 0;
    for (long gi = 0; gi < lo; gi++)
        pos += a->g[gi].m;
    for (long gi = lo; gi < hi; gi++) {
        mm_group *gg = &a->g[gi];
        const int64_t *rows = a->in_row + pos;
        if (a->hq) {
            kern_qact *v = (kern_qact *)gg->qa;
            gather_q(v, a->qa, rows, gg->m);
            kern_qact_zero_rows(v, gg->m, v->m_pad);
        } else if (a->hb) {
            kern_bact *v = (kern_bact *)gg->ba;
            for (int64_t i = 0; i < gg->m; i++)
                memcpy(v->x + i * v->k_pad, a->ba->x + rows[i] * a->ba->k_pad, (size_t)v->k_pad * 2);
            kern_bact_zero_rows(v, gg->m, v->m_pad);
        } else {
            float *xv = (float *)gg->xf;
            for (int64_t i = 0; i < gg->m; i++)
                memcpy(xv + i * a->k, a->x + rows[i] * a->k, (size_t)a->k * sizeof(float));
        }
        pos += gg->m;
    }
}

adg_error *kern_moe_matmul(kern_cpu *c, const kern_weight *w, const float *x, bool x_per_slot, const int32_t *ids,
                           int64_t n_tokens, int64_t top_k, float *y, kern_op_info *info)
{
    uint64_t t0 = adg_now_ns();
    adg_error *e = check_weight(c, w);
    if (e)
        return e;
    if (n_tokens < 1 || top_k < 1 || top_k > w->n_mat)
        return adg_error_new(ADG_E_USAGE, "moe matmul: %lld tokens, top-k %lld with %lld experts: need tokens >= 1 and "
                             "1 <= top-k <= experts", (long long)n_tokens, (long long)top_k, (long long)w->n_mat);
    const int64_t slots = n_tokens * top_k;
    for (int64_t i = 0; i < slots; i++)
        if (ids[i] < -1 || ids[i] >= w->n_mat)
            return adg_error_new(ADG_E_USAGE, "moe matmul: expert id %d of token %lld slot %lld is outside 0..%lld",
                                 ids[i], (long long)(i / top_k), (long long)(i % top_k), (long long)w->n_mat - 1);
    if ((e = kern_cpu_ensure_scratch(c, kern_scratch_need(w))))
        return e;

    /* Route: rows of each expert, in token order. */
    int64_t *count = calloc((size_t)w->n_mat + 1, sizeof *count);
    int64_t *start = calloc((size_t)w->n_mat + 1, sizeof *start);
    int64_t *in_row = malloc((size_t)slots * sizeof *in_row);
    int64_t *out_row = malloc((size_t)slots * sizeof *out_row);
    mm_group *g = calloc((size_t)w->n_mat, sizeof *g);
    float *xg = NULL;
    kern_qact qa = {0}, qg = {0};
    kern_bact ba = {0}, bg = {0};
    bool hq = false, hb = false, gq = false, gb = false;
    if (!count || !start || !in_row || !out_row || !g) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory routing %lld tokens", (long long)n_tokens);
        goto out;
    }
    for (int64_t i = 0; i < slots; i++)
        if (ids[i] >= 0)
            count[ids[i]]++;
    int64_t rows_padded = 0;
    for (int64_t ex = 0; ex < w->n_mat; ex++) {
        start[ex] = rows_padded;
        rows_padded += (count[ex] + 31) / 32 * 32;
    }
    {
        int64_t *fill = calloc((size_t)w->n_mat, sizeof *fill);
        if (!fill) {
            e = adg_error_new(ADG_E_NOMEM, "out of memory");
            goto out;
        }
        /* Compact lists: entries of expert ex at [sum of earlier counts, + count[ex]). */
        int64_t acc = 0;
        for (int64_t ex = 0; ex < w->n_mat; ex++) {
            fill[ex] = acc;
            acc += count[ex];
        }
        for (int64_t i = 0; i < slots; i++) {
            int32_t ex = ids[i];
            if (ex < 0)
                continue;
            int64_t pos = fill[ex]++;
            in_row[pos] = x_per_slot ? i : i / top_k;
            out_row[pos] = i;
        }
        free(fill);
    }
    const int64_t xrows = x_per_slot ? slots : n_tokens;
    if ((e = prepare_act(c, w, x, xrows, &qa, &ba, &hq, &hb)))
        goto out;
    if (hq) {
        if ((e = kern_qact_alloc_ws(&qg, rows_padded ? rows_padded : 1, w->k, &c->ws, KERN_WS_QG)))
            goto out;
        gq = true;
        qg.off = qa.off;
    } else if (hb) {
        if ((e = kern_bact_alloc_ws(&bg, rows_padded ? rows_padded : 1, w->k, w->k_pad, &c->ws, KERN_WS_BG)))
            goto out;
        gb = true;
    } else {
        xg = kern_ws_get(&c->ws, KERN_WS_XG, (size_t)(slots ? slots : 1) * (size_t)w->k * sizeof(float));
        if (!xg) {
            e = adg_error_new(ADG_E_NOMEM, "out of memory");
            goto out;
        }
    }
    int64_t ng = 0, listpos = 0, n_amx = 0;
    kern_qact *qv = calloc((size_t)w->n_mat, sizeof *qv);
    kern_bact *bv = calloc((size_t)w->n_mat, sizeof *bv);
    if (!qv || !bv) {
        free(qv);
        free(bv);
        e = adg_error_new(ADG_E_NOMEM, "out of memory");
        goto out;
    }
    for (int64_t ex = 0; ex < w->n_mat; ex++) {
        int64_t cnt = count[ex];
        if (!cnt)
            continue;
        mm_group *gg = &g[ng++];
        gg->mat = ex;
        gg->m = cnt;
        gg->yrow = out_row + listpos;
        gg->p = choose(c, w, cnt);
        n_amx += gg->p == PATH_AMX;
        if (hq) {
            kern_qact *v = &qv[ex];
            *v = qg;
            v->m = cnt;
            v->m_pad = (cnt + 31) / 32 * 32;
            v->q = qg.q + start[ex] * qg.k;
            v->d = qg.d + start[ex] * qg.nb;
            v->negoff = qg.negoff + start[ex] * qg.nb;
            v->s = qg.s + start[ex] * qg.nb;
            gg->qa = v;
        } else if (hb) {
            kern_bact *v = &bv[ex];
            *v = bg;
            v->m = cnt;
            v->m_pad = (cnt + 31) / 32 * 32;
            v->x = bg.x + start[ex] * bg.k_pad;
            gg->ba = v;
        } else {
            gg->xf = xg + listpos * w->k;
        }
        listpos += cnt;
    }
    {
        /* Gather each expert's rows (and zero its padding rows) on the pool: at 512 tokens
         * this is 8-16 MiB of copies. */
        gather_args ga = {g, ng, in_row, &qa, &ba, x, w->k, hq, hb};
        if (listpos * w->k < 65536)
            gather_worker(&ga, 0, 1);
        else
            kern_pool_run(c->pool, gather_worker, &ga);
    }
    if (n_amx > 0 && (gq || gb)) {
        /* views start at multiples of 32 rows: slice the packed copy the same way */
        if ((e = pack_for_amx(c, gq ? &qg : NULL, gb ? &bg : NULL))) {
            free(qv);
            free(bv);
            goto out;
        }
        for (int64_t gi = 0; gi < ng; gi++) {
            const int64_t ex = g[gi].mat;
            if (gq)
                qv[ex].qt = qg.qt + (size_t)(start[ex] / 16) * (size_t)qg.nb * 512;
            else
                bv[ex].xt = bg.xt + (size_t)(start[ex] / 16) * (size_t)(bg.k_pad / KERN_KB) * 512;
        }
    }
    mm_args a = {c, w, g, ng, y, w->n, false, 0, 0, 0, 0, 0};
    mm_schedule(c, &a);
    kern_pool_run(c->pool, mm_worker, &a);
    free(qv);
    free(bv);
    if (info) {
        char variant[48];
        path pa = ng ? g[0].p : choose(c, w, 1);
        if (n_amx > 0 && n_amx < ng)
            snprintf(variant, sizeof variant, "%s+%s", variant_name(PATH_AMX, w), variant_name(PATH_AVX512, w));
        else
            snprintf(variant, sizeof variant, "%s", variant_name(n_amx ? PATH_AMX : pa, w));
        fill_info(info, "moe_matmul", path_impl(c, n_amx ? PATH_AMX : pa), variant,
                  2ull * (uint64_t)listpos * (uint64_t)w->n * (uint64_t)w->k,
                  (uint64_t)ng * w->mat_bytes + (uint64_t)xrows * (uint64_t)w->k * 4 + (uint64_t)listpos * (uint64_t)w->n * 4,
                  t0);
    }
out:
    if (hq)
        kern_qact_free(&qa);
    if (hb)
        kern_bact_free(&ba);
    if (gq)
        kern_qact_free(&qg);
    if (gb)
        kern_bact_free(&bg);
    free(count);
    free(start);
    free(in_row);
    free(out_row);
    free(g);
    return e;
}

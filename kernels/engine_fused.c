/* The fused generation schedule: one token through one CPU layer in ONE pool region.
 *
 * The per-op schedule (engine.c, layer_forward) costs a pool wake and a join for every
 * operation: about 17 per layer, 270 per token on the small preset, each followed by a
 * stretch where 15 of 16 threads spin while the caller does a small serial op (rope,
 * attention under 64 positions, top-k, the expert routing, the weighted sum).  Here a
 * layer is a list of phases of items that every worker takes from one counter:
 *
 *   norm (1)  ->  Q,K,V panels as one list  ->  per head: q/k norm, rope, KV store
 *   ->  attention per query head (+ quantizing its output)  ->  Wo panels + residual
 *   (+ ffn norm, quantizing)  ->  router panels (+ softmax, top-k)  ->  (expert, panels)
 *   gate and up + SiLU*mul (the last chunk of an expert quantizes its row)  ->  (expert,
 *   panels) down; the last expert of a chunk adds its weighted sum + residual
 *
 * An item of phase p waits until phase p-1 is complete (its last item and its tail, a
 * short serial step run by whichever worker finished that phase).  Every value is
 * computed by the same kernel on the same inputs as in the per-op schedule, and the
 * row-wise kernels do not depend on how rows are split, so the logits are the same bits
 * (tests/unit/test_kern_engine_fused.c).  AMXDIAG_ENGINE_FUSE=0 selects the per-op
 * schedule for A/B runs.
 *
 * Scope: one token (generation), layers whose weights run on the one-row kernels
 * (kern_gemv_ok: int8 weights on VNNI/ref, f32 routers); anything else takes the per-op
 * path. */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/engine_internal.h"
#include "kernels/kern_internal.h"

#define FZ_PHASES 10
#define FZ_MAX_SLOTS 64
#define FZ_MAX_CHUNKS 256   /* row chunks of the down phase */
#define FZ_MAX_ROT 1024
/* PAUSEs before a waiting worker yields its CPU (an oversubscribed machine: the worker it
 * waits for may not be running). */
#define FZ_SPIN 4096

typedef struct fz fz;
typedef void (*fz_item_fn)(fz *f, int64_t item, int ith);
typedef void (*fz_tail_fn)(fz *f, int ith);
typedef void (*fz_pref_fn)(fz *f, int64_t item);

typedef struct fz_phase {
    fz_item_fn fn;
    fz_tail_fn tail;            /* run once, by the worker that completed the phase */
    fz_pref_fn prefetch;        /* an item's weights, while its worker waits for the phase before */
    int64_t n;
    int opk;
    const char *variant;
    uint64_t bytes, flops;
} fz_phase;

struct engine_fused {
    int8_t *ok;                 /* per layer: 0 not checked, 1 fused, -1 per-op */
    kern_qact qa_in, qa_ffn, qa_mid;
    bool have_qa;
    float cs[FZ_MAX_ROT];       /* rope angles of cs_pos */
    int32_t cs_pos;
};

/* One layer's run. */
struct fz {
    kern_engine *e;
    kern_cpu *c;
    const engine_layer *L;
    const kern_model_layer *ML;
    engine_fused *F;
    int64_t d, hd, nh, nkv, qd, kvd, E, K, ff;
    int32_t pos;
    float eps;
    bool moe, neox, vec;
    uint16_t *kc, *vc;          /* this position's KV cache rows */
    kern_attn_args aa;
    bool prefetch;
    const kern_weight *gate, *up, *down;
    const int32_t *ids;
    const float *rw;
    int32_t one_id;
    float one_w;
    int64_t cq, ck, cv, chunk_q, chunk_k, chunk_v, chunk_o, chunk_r, chunk_g, chunk_d, cg;
    /* V (the Q/K/V list's last) and Wo: items past nbig_* of small_* panels
     * (kern_gemv_split, AMXDIAG_GEMV_TAIL=1); small 0: all of a chunk */
    int64_t co, small_v, nbig_v, small_o, nbig_o;

    fz_phase ph[FZ_PHASES];
    int nph;
    int64_t end[FZ_PHASES];
    int64_t total;
    uint64_t t_ready[FZ_PHASES];
    /* every worker takes items from next, bumps done[] and reads ready[]: separate lines,
     * so a phase's completions do not steal the line the item counter is on */
    _Alignas(64) _Atomic int64_t next;
    _Alignas(64) _Atomic int64_t done[FZ_PHASES];
    _Alignas(64) _Atomic int ready[FZ_PHASES];
    _Alignas(64) _Atomic int64_t slot_done[FZ_MAX_SLOTS];
    _Alignas(64) _Atomic int32_t chunk_done[FZ_MAX_CHUNKS];
    int64_t cd;                 /* row chunks of the down matrix (AMXDIAG_ENGINE_DOWN other than rows) */
};

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ---- helpers ---- */

/* Row `row` of a quantized buffer as a one-row activation of k inputs. */
static kern_qact qrow(const kern_qact *base, int64_t row, int64_t k)
{
    kern_qact v = *base;
    v.m = 1;
    v.k = k;
    v.nb = k / KERN_KB;
    v.q = base->q + row * base->k;
    v.d = base->d + row * base->nb;
    v.negoff = base->negoff + row * base->nb;
    v.s = base->s + row * base->nb;
    v.qt = NULL;
    v.ws = NULL;
    return v;
}

static void quantize(fz *f, const kern_qact *base, int64_t row, const kern_weight *w, const float *x)
{
    const int off = kern_gemv_act_off(w);
    if (!off)
        return;   /* float weights read x itself */
    kern_qact v = qrow(base, row, w->k);
    kern_qact_rows(&v, x, 0, 1, off, f->vec);
}

static void rmsnorm(fz *f, const float *x, const float *w, int64_t r0, int64_t r1, int64_t k, float *y)
{
    if (f->vec)
        kern_avx512_rmsnorm(x, w, r0, r1, k, f->eps, y);
    else
        kern_ref_rmsnorm(x, w, r0, r1, k, f->eps, y);
}

static void gemv(fz *f, int ith, const kern_weight *w, int64_t mat, const kern_qact *base, int64_t row,
                 const float *x, int64_t p0, int64_t p1, float *y)
{
    kern_qact v = qrow(base, row, w->k);
    v.off = kern_gemv_act_off(w);   /* set on quantize()'s copy, not on the base */
    kern_gemv_panels(f->c, ith, w, mat, &v, x, p0, p1, y);
}

static int64_t chunk_for(const kern_weight *w, int nth)
{
    /* as the per-op schedule: about four chunks per worker, at least four panels (the
     * VNNI GEMV streams four at once) */
    int64_t c = (w->n_panels + 4 * nth - 1) / (4 * nth);
    return c < 4 ? 4 : c;
}

static int64_t n_chunks(const kern_weight *w, int64_t chunk) { return (w->n_panels + chunk - 1) / chunk; }

static void chunk_range(const kern_weight *w, int64_t chunk, int64_t i, int64_t *p0, int64_t *p1)
{
    *p0 = i * chunk;
    *p1 = *p0 + chunk < w->n_panels ? *p0 + chunk : w->n_panels;
}

/* Weights of panels [p0, p1) of matrix mat into L2, so that a worker waiting for the
 * previous phase has its next item's weights close when the phase starts (the lines
 * come from DRAM while the slowest worker of the phase before finishes). */
static void prefetch_panels(const kern_weight *w, int64_t mat, int64_t p0, int64_t p1)
{
    const uint8_t *a, *b;
    if (w->fmt == KERN_WFMT_RAW) {
        const int64_t n1 = p1 * KERN_PANEL < w->n ? p1 * KERN_PANEL : w->n;
        a = kern_weight_mat(w, mat) + (size_t)(p0 * KERN_PANEL) * w->row_bytes;
        b = kern_weight_mat(w, mat) + (size_t)n1 * w->row_bytes;
    } else {
        a = kern_weight_mat(w, mat) + (size_t)p0 * w->panel_bytes;
        b = kern_weight_mat(w, mat) + (size_t)p1 * w->panel_bytes;
    }
    for (const uint8_t *p = a; p < b; p += 64)
        __builtin_prefetch(p, 0, 2);
}

/* ---- phases ---- *//* ---- phases ---- */

static void ph_norm(fz *f, int64_t item, int ith)
{
    (void)item;
    (void)ith;
    engine_buf *b = &f->e->buf;
    rmsnorm(f, b->x, (const float *)f->ML->attn_norm->data, 0, 1, f->d, b->h);
    quantize(f, &f->F->qa_in, 0, f->L->wq, b->h);
}

/* Item `item` of the Q/K/V list: its weight, output and panels. */
static const kern_weight *qkv_item(fz *f, int64_t item, float **y, int64_t *p0, int64_t *p1)
{
    engine_buf *b = &f->e->buf;
    if (item < f->cq) {
        *y = b->q;
        chunk_range(f->L->wq, f->chunk_q, item, p0, p1);
        return f->L->wq;
    }
    if ((item -= f->cq) < f->ck) {
        *y = b->k;
        chunk_range(f->L->wk, f->chunk_k, item, p0, p1);
        return f->L->wk;
    }
    *y = b->v;
    kern_gemv_item(f->L->wv->n_panels, f->chunk_v, f->small_v, f->nbig_v, item - f->ck, p0, p1);
    return f->L->wv;
}

static void ph_qkv(fz *f, int64_t item, int ith)
{
    float *y;
    int64_t p0, p1;
    const kern_weight *w = qkv_item(f, item, &y, &p0, &p1);
    gemv(f, ith, w, 0, &f->F->qa_in, 0, f->e->buf.h, p0, p1, y);
}

/* llama's RoPE (adjacent pairs) with the angles of engine.c's rope_norm_rows: cs holds
 * hd/2 cosines then hd/2 sines. */
static void rope_pairs(float *x, int64_t n_heads, int64_t hd, const float *cs)
{
    for (int64_t i = 0; i < hd / 2; i++) {
        const float c = cs[i], s = cs[hd / 2 + i];
        for (int64_t h = 0; h < n_heads; h++) {
            float *p = x + h * hd + 2 * i;
            float a = p[0], bb = p[1];
            p[0] = a * c - bb * s;
            p[1] = a * s + bb * c;
        }
    }
}

static void rope_heads(fz *f, float *x, int64_t n_heads)
{
    if (f->neox)
        kern_rope_neox_rotate(f->c, x, n_heads, f->hd, f->hd, f->F->cs);
    else
        rope_pairs(x, n_heads, f->hd, f->F->cs);
}

static void store_f16(fz *f, const float *x, uint16_t *y, int64_t i0, int64_t i1)
{
    if (f->vec)
        kern_avx512_fp32_to_fp16(x, y, i0, i1);
    else
        kern_fp32_to_fp16_row(x + i0, y + i0, i1 - i0);
}

/* Items [0, nkv): KV head g, its key (norm, rope, into the cache) and its value (into the
 * cache); items [nkv, nkv + nh): query head h (norm, rope).  One item per head, not per KV
 * group: 20 items on the small preset where 4 left 12 of 16 workers idle.  Every head is
 * a row of the same row-wise kernels, so the split changes no bit. */
static void ph_rope(fz *f, int64_t item, int ith)
{
    (void)ith;
    engine_buf *b = &f->e->buf;
    const int64_t hd = f->hd;
    if (item < f->nkv) {
        const int64_t g = item;
        if (f->ML->q_norm)
            rmsnorm(f, b->k, (const float *)f->ML->k_norm->data, g, g + 1, hd, b->k);
        rope_heads(f, b->k + g * hd, 1);
        store_f16(f, b->k, f->kc, g * hd, (g + 1) * hd);
        store_f16(f, b->v, f->vc, g * hd, (g + 1) * hd);
    } else {
        const int64_t h = item - f->nkv;
        if (f->ML->q_norm)
            rmsnorm(f, b->q, (const float *)f->ML->q_norm->data, h, h + 1, hd, b->q);
        rope_heads(f, b->q + h * hd, 1);
    }
}

static void ph_attn(fz *f, int64_t h, int ith)
{
    float *scores = f->c->scratch[ith];
    if (f->vec)
        kern_avx512_attn_row(&f->aa, 0, h, scores);
    else
        kern_ref_attn_row(&f->aa, 0, h, scores);
}

static void tail_attn(fz *f, int ith)
{
    (void)ith;
    quantize(f, &f->F->qa_in, 0, f->L->wo, f->e->buf.att);
}

static void ph_wo(fz *f, int64_t item, int ith)
{
    engine_buf *b = &f->e->buf;
    const kern_weight *w = f->L->wo;
    int64_t p0, p1;
    kern_gemv_item(w->n_panels, f->chunk_o, f->small_o, f->nbig_o, item, &p0, &p1);
    gemv(f, ith, w, 0, &f->F->qa_in, 0, b->att, p0, p1, b->o);
    const int64_t r1 = p1 * KERN_PANEL < f->d ? p1 * KERN_PANEL : f->d;
    for (int64_t r = p0 * KERN_PANEL; r < r1; r++)
        b->x[r] += b->o[r];
}

static void tail_wo(fz *f, int ith)
{
    (void)ith;
    engine_buf *b = &f->e->buf;
    rmsnorm(f, b->x, (const float *)f->ML->ffn_norm->data, 0, 1, f->d, b->h);
    quantize(f, &f->F->qa_ffn, 0, f->gate, b->h);
    if (f->moe)
        quantize(f, &f->F->qa_in, 0, f->L->router, b->h);
}

static void ph_router(fz *f, int64_t item, int ith)
{
    engine_buf *b = &f->e->buf;
    int64_t p0, p1;
    chunk_range(f->L->router, f->chunk_r, item, &p0, &p1);
    gemv(f, ith, f->L->router, 0, &f->F->qa_in, 0, b->h, p0, p1, b->router);
}

static void tail_router(fz *f, int ith)
{
    (void)ith;
    engine_buf *b = &f->e->buf;
    if (f->vec)
        kern_avx512_softmax(b->router, 0, 1, f->E, 1.0f);
    else
        kern_ref_softmax(b->router, 0, 1, f->E, 1.0f);
    engine_topk(b->router, f->E, f->K, true, b->ids, b->rw);
}

/* (slot j, chunk of panels): gate and up rows of expert ids[j], SiLU(gate)*up into the
 * gate buffer; the last chunk of a slot quantizes its row for the down matmul. */
static void ph_gate_up(fz *f, int64_t item, int ith)
{
    engine_buf *b = &f->e->buf;
    const int64_t j = item / f->cg, ci = item % f->cg, ff = f->ff;
    const int64_t mat = f->ids[j];
    int64_t p0, p1;
    chunk_range(f->gate, f->chunk_g, ci, &p0, &p1);
    float *g = b->gate + j * ff, *u = b->up + j * ff;
    gemv(f, ith, f->gate, mat, &f->F->qa_ffn, 0, b->h, p0, p1, g);
    gemv(f, ith, f->up, mat, &f->F->qa_ffn, 0, b->h, p0, p1, u);
    const int64_t i0 = p0 * KERN_PANEL, i1 = p1 * KERN_PANEL < ff ? p1 * KERN_PANEL : ff;
    if (f->vec)
        kern_avx512_silu_mul(g, u, i0, i1, g);
    else
        kern_ref_silu_mul(g, u, i0, i1, g);
    if (atomic_fetch_add_explicit(&f->slot_done[j], 1, memory_order_acq_rel) + 1 == f->cg)
        quantize(f, &f->F->qa_mid, j, f->down, g);
}

/* x[r0, r1) += sum_j w_j * down_j in slot order (engine.c's moe_sum_rows order, so the
 * same bits). */
static void down_sum(fz *f, int64_t r0, int64_t r1)
{
    engine_buf *b = &f->e->buf;
    for (int64_t j = 0; j < f->K; j++) {
        const float w = f->rw[j], *dr = b->down + j * f->d;
        for (int64_t r = r0; r < r1; r++)
            b->x[r] += w * dr[r];
    }
}

/* AMXDIAG_ENGINE_DOWN=rows: a chunk of output panels, every slot's down rows, then their
 * weighted sum. */
static void ph_down(fz *f, int64_t item, int ith)
{
    engine_buf *b = &f->e->buf;
    const int64_t d = f->d;
    int64_t p0, p1;
    chunk_range(f->down, f->chunk_d, item, &p0, &p1);
    for (int64_t j = 0; j < f->K; j++)
        gemv(f, ith, f->down, f->ids[j], &f->F->qa_mid, j, b->gate + j * f->ff, p0, p1, b->down + j * d);
    down_sum(f, p0 * KERN_PANEL, p1 * KERN_PANEL < d ? p1 * KERN_PANEL : d);
}

/* (slot j, row chunk): expert ids[j]'s down rows of the chunk; the last slot to finish a
 * chunk adds the chunk's weighted sum and residual.  Items of one slot and chunk are about
 * a quarter of a worker's share, so the phase balances over the workers (the row-chunk
 * items of ph_down are one per worker on the small preset: the slowest set the phase's
 * time), and each reads one run of contiguous panels instead of K short ones. */
static void ph_down_slot(fz *f, int64_t item, int ith)
{
    engine_buf *b = &f->e->buf;
    const int64_t d = f->d, j = item / f->cd, ci = item % f->cd;
    int64_t p0, p1;
    chunk_range(f->down, f->chunk_d, ci, &p0, &p1);
    gemv(f, ith, f->down, f->ids[j], &f->F->qa_mid, j, b->gate + j * f->ff, p0, p1, b->down + j * d);
    if (atomic_fetch_add_explicit(&f->chunk_done[ci], 1, memory_order_acq_rel) + 1 == f->K)
        down_sum(f, p0 * KERN_PANEL, p1 * KERN_PANEL < d ? p1 * KERN_PANEL : d);
}

static void pf_down_slot(fz *f, int64_t item)
{
    int64_t p0, p1;
    chunk_range(f->down, f->chunk_d, item % f->cd, &p0, &p1);
    prefetch_panels(f->down, f->ids[item / f->cd], p0, p1);
}

static void pf_qkv(fz *f, int64_t item)
{
    float *y;
    int64_t p0, p1;
    const kern_weight *w = qkv_item(f, item, &y, &p0, &p1);
    prefetch_panels(w, 0, p0, p1);
}

static void pf_wo(fz *f, int64_t item)
{
    int64_t p0, p1;
    kern_gemv_item(f->L->wo->n_panels, f->chunk_o, f->small_o, f->nbig_o, item, &p0, &p1);
    prefetch_panels(f->L->wo, 0, p0, p1);
}

static void pf_router(fz *f, int64_t item)
{
    int64_t p0, p1;
    chunk_range(f->L->router, f->chunk_r, item, &p0, &p1);
    prefetch_panels(f->L->router, 0, p0, p1);
}

/* the experts are known here: the router's phase ended before gate/up began */
static void pf_down(fz *f, int64_t item)
{
    int64_t p0, p1;
    chunk_range(f->down, f->chunk_d, item, &p0, &p1);
    for (int64_t j = 0; j < f->K; j++)
        prefetch_panels(f->down, f->ids[j], p0, p1);
}

/* ---- the region ---- *//* ---- the region ---- */

static void wait_ready(fz *f, int p)
{
    int spins = 0;
    while (!atomic_load_explicit(&f->ready[p], memory_order_acquire)) {
        if (++spins < FZ_SPIN) {
            relax();
        } else {
            sched_yield();
            spins = 0;
        }
    }
}

static void fz_worker(void *arg, int ith, int nth)
{
    (void)nth;
    fz *f = arg;
    int p = 0;
    for (;;) {
        const int64_t item = atomic_fetch_add_explicit(&f->next, 1, memory_order_relaxed);
        if (item >= f->total)
            return;
        while (item >= f->end[p])
            p++;
        const int64_t i = item - (p ? f->end[p - 1] : 0);
        if (p > 0 && !atomic_load_explicit(&f->ready[p - 1], memory_order_acquire)) {
            if (f->prefetch && f->ph[p].prefetch)
                f->ph[p].prefetch(f, i);
            wait_ready(f, p - 1);
        }
        f->ph[p].fn(f, i, ith);
        if (atomic_fetch_add_explicit(&f->done[p], 1, memory_order_acq_rel) + 1 == f->ph[p].n) {
            if (f->ph[p].tail)
                f->ph[p].tail(f, ith);
            f->t_ready[p] = adg_now_ns();
            atomic_store_explicit(&f->ready[p], 1, memory_order_release);
        }
    }
}

static void add_phase(fz *f, fz_item_fn fn, fz_tail_fn tail, fz_pref_fn pref, int64_t n, int opk, const char *variant,
                      uint64_t bytes, uint64_t flops)
{
    fz_phase *p = &f->ph[f->nph];
    *p = (fz_phase){fn, tail, pref, n, opk, variant, bytes, flops};
    f->end[f->nph] = (f->nph ? f->end[f->nph - 1] : 0) + n;
    f->nph++;
}

static uint64_t mm_bytes(const kern_weight *w, int64_t mats)
{
    return (uint64_t)mats * w->mat_bytes + (uint64_t)(w->k + w->n) * 4 * (uint64_t)mats;
}

static uint64_t mm_flops(const kern_weight *w, int64_t mats)
{
    return 2ull * (uint64_t)w->n * (uint64_t)w->k * (uint64_t)mats;
}

/* ---- eligibility and buffers ---- */

static bool same_input(const kern_cpu *c, const kern_weight *a, const kern_weight *b)
{
    return kern_gemv_ok(c, a) && kern_gemv_ok(c, b) && kern_gemv_act_off(a) == kern_gemv_act_off(b) && a->k == b->k &&
           a->fmt == b->fmt && a->ctype == b->ctype;
}

static bool layer_ok(const kern_engine *e, uint32_t il)
{
    const kern_model_hparams *hp = &e->model->hp;
    const engine_layer *L = &e->layers[il];
    const kern_cpu *c = e->cpu;
    if (hp->head_dim < 2 || hp->head_dim > FZ_MAX_ROT || hp->head_dim % 2 || hp->n_head % hp->n_head_kv)
        return false;
    if (!same_input(c, L->wq, L->wk) || !same_input(c, L->wq, L->wv) || !kern_gemv_ok(c, L->wo))
        return false;
    if (hp->n_expert) {
        if (hp->n_expert_used < 1 || hp->n_expert_used > FZ_MAX_SLOTS || hp->n_expert_used > hp->n_expert)
            return false;
        return kern_gemv_ok(c, L->router) && same_input(c, L->gate_exps, L->up_exps) && kern_gemv_ok(c, L->down_exps) &&
               L->gate_exps->n == L->up_exps->n && L->down_exps->k == L->gate_exps->n;
    }
    return same_input(c, L->ffn_gate, L->ffn_up) && kern_gemv_ok(c, L->ffn_down) && L->ffn_gate->n == L->ffn_up->n &&
           L->ffn_down->k == L->ffn_gate->n;
}

static adg_error *fused_init(kern_engine *e)
{
    const kern_model_hparams *hp = &e->model->hp;
    engine_fused *F = calloc(1, sizeof *F);
    if (!F || !(F->ok = calloc(hp->n_layer ? hp->n_layer : 1, sizeof *F->ok))) {
        free(F);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    F->cs_pos = -1;
    e->fz = F;
    const int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
    const int64_t K = hp->n_expert ? hp->n_expert_used : 1, ff = hp->n_expert ? hp->n_ff_exp : hp->n_ff;
    const int64_t mx = d > qd ? d : qd;
    const int64_t kin = (mx + KERN_KB - 1) / KERN_KB * KERN_KB, kff = (ff + KERN_KB - 1) / KERN_KB * KERN_KB;
    adg_error *err = kern_qact_alloc(&F->qa_in, 1, kin < KERN_KB ? KERN_KB : kin);
    if (!err && !(err = kern_qact_alloc(&F->qa_ffn, 1, (d + KERN_KB - 1) / KERN_KB * KERN_KB)))
        err = kern_qact_alloc(&F->qa_mid, K, kff < KERN_KB ? KERN_KB : kff);
    F->have_qa = !err;
    return err;
}

void engine_fused_free(engine_fused *F)
{
    if (!F)
        return;
    if (F->have_qa) {
        kern_qact_free(&F->qa_in);
        kern_qact_free(&F->qa_ffn);
        kern_qact_free(&F->qa_mid);
    }
    free(F->ok);
    free(F);
}

static void angles(fz *f, float base)
{
    engine_fused *F = f->F;
    if (F->cs_pos == f->pos)
        return;
    const int64_t hd = f->hd;
    if (f->neox) {
        kern_rope_neox_angles(f->pos, hd, base, F->cs);
    } else {
        for (int64_t i = 0; i < hd / 2; i++) {   /* engine.c's rope_norm_rows */
            float theta = (float)f->pos * powf(base, -2.0f * (float)i / (float)hd);
            F->cs[i] = cosf(theta);
            F->cs[hd / 2 + i] = sinf(theta);
        }
    }
    F->cs_pos = f->pos;
}

/* ---- entry ---- */

adg_error *engine_fused_layer(kern_engine *e, uint32_t il, int32_t pos, bool *ran)
{
    *ran = false;
    if (!e->fuse)
        return NULL;
    adg_error *err;
    if (!e->fz && (err = fused_init(e)))
        return err;
    engine_fused *F = e->fz;
    if (!F->ok[il])
        F->ok[il] = layer_ok(e, il) ? 1 : -1;
    if (F->ok[il] < 0)
        return NULL;
    const kern_model_hparams *hp = &e->model->hp;
    const engine_layer *L = &e->layers[il];
    kern_cpu *c = e->cpu;
    const int nth = kern_cpu_threads(c);

    fz *f = aligned_alloc(64, (sizeof *f + 63) / 64 * 64);   /* ~1.5 KiB: off the stack */
    if (f)
        memset(f, 0, sizeof *f);
    if (!f)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    f->e = e;
    f->c = c;
    f->L = L;
    f->ML = &e->model->layers[il];
    f->F = F;
    f->d = hp->n_embd, f->hd = hp->head_dim, f->nh = hp->n_head, f->nkv = hp->n_head_kv;
    f->qd = f->nh * f->hd, f->kvd = f->nkv * f->hd;
    f->moe = hp->n_expert > 0;
    f->E = hp->n_expert, f->K = f->moe ? hp->n_expert_used : 1;
    f->pos = pos;
    f->eps = hp->rms_eps;
    f->neox = hp->arch == KERN_ARCH_QWEN3MOE;
    f->vec = kern_cpu_impl(c) != KERN_IMPL_REF;
    f->prefetch = e->fuse_prefetch;
    f->gate = f->moe ? L->gate_exps : L->ffn_gate;
    f->up = f->moe ? L->up_exps : L->ffn_up;
    f->down = f->moe ? L->down_exps : L->ffn_down;
    f->ff = f->gate->n;
    f->one_id = 0;
    f->one_w = 1.0f;
    f->ids = f->moe ? e->buf.ids : &f->one_id;
    f->rw = f->moe ? e->buf.rw : &f->one_w;
    f->kc = e->kcache + ((size_t)il * e->n_ctx + (size_t)pos) * (size_t)f->kvd;
    f->vc = e->vcache + ((size_t)il * e->n_ctx + (size_t)pos) * (size_t)f->kvd;
    const uint16_t *kc0 = e->kcache + (size_t)il * e->n_ctx * (size_t)f->kvd;
    const uint16_t *vc0 = e->vcache + (size_t)il * e->n_ctx * (size_t)f->kvd;
    f->aa = (kern_attn_args){.q = e->buf.q, .k = kc0, .v = vc0, .kv_type = KERN_TYPE_F16, .n_tokens = 1,
                             .n_head = f->nh, .n_head_kv = f->nkv, .head_dim = f->hd, .n_ctx = e->n_ctx, .pos0 = pos,
                             .scale = 1.0f / sqrtf((float)f->hd), .out = e->buf.att};
    angles(f, hp->rope_base);

    size_t scratch = (size_t)(pos + 1 + 16) * sizeof(float);
    const kern_weight *all[] = {L->wq, L->wk, L->wv, L->wo, f->moe ? L->router : NULL, f->gate, f->up, f->down};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i] && kern_scratch_need(all[i]) > scratch)
            scratch = kern_scratch_need(all[i]);
    if ((err = kern_cpu_ensure_scratch(c, scratch))) {
        free(f);
        return err;
    }

    f->chunk_q = chunk_for(L->wq, nth), f->chunk_k = chunk_for(L->wk, nth), f->chunk_v = chunk_for(L->wv, nth);
    f->cq = n_chunks(L->wq, f->chunk_q), f->ck = n_chunks(L->wk, f->chunk_k);
    f->cv = kern_gemv_split(c, L->wv->n_panels, f->chunk_v, nth, &f->small_v, &f->nbig_v);
    f->chunk_o = chunk_for(L->wo, nth);
    f->co = kern_gemv_split(c, L->wo->n_panels, f->chunk_o, nth, &f->small_o, &f->nbig_o);
    /* the gate/up items are (slot, chunk): chunks sized for all K slots together */
    int64_t cg = (f->gate->n_panels * f->K + 4 * nth - 1) / (4 * nth);
    f->chunk_g = cg < 4 ? 4 : cg;
    f->cg = n_chunks(f->gate, f->chunk_g);
    if (e->fuse_down_rows) {
        f->chunk_d = chunk_for(f->down, nth);
    } else {
        /* (slot, chunk) items sized like gate/up's: about four per worker in all */
        int64_t cdn = (f->down->n_panels * f->K + 4 * nth - 1) / (4 * nth);
        const int64_t lo = (f->down->n_panels + FZ_MAX_CHUNKS - 1) / FZ_MAX_CHUNKS;
        f->chunk_d = cdn < 4 ? 4 : cdn;
        if (f->chunk_d < lo)
            f->chunk_d = lo;
        f->cd = n_chunks(f->down, f->chunk_d);
    }

    const char *gv = kern_gemv_variant(c, L->wq);
    const uint64_t d = (uint64_t)f->d, qd = (uint64_t)f->qd, kvd = (uint64_t)f->kvd, n_kv = (uint64_t)pos + 1;
    add_phase(f, ph_norm, NULL, NULL, 1, OPK_NORM, f->vec ? "avx512-rmsnorm" : "ref-rmsnorm", 8 * d, 4 * d);
    add_phase(f, ph_qkv, NULL, pf_qkv, f->cq + f->ck + f->cv, OPK_QKV, gv, mm_bytes(L->wq, 1) + mm_bytes(L->wk, 1) + mm_bytes(L->wv, 1),
              mm_flops(L->wq, 1) + mm_flops(L->wk, 1) + mm_flops(L->wv, 1));
    add_phase(f, ph_rope, NULL, NULL, f->nkv + f->nh, OPK_ROPE, "fused-qknorm-rope-kvstore", 8 * (qd + kvd) + 6 * kvd, 10 * (qd + kvd));
    add_phase(f, ph_attn, tail_attn, NULL, f->nh, OPK_ATTN, f->vec ? "avx512-attention" : "ref-attention",
              4 * n_kv * kvd + 8 * qd, 4 * (uint64_t)f->nh * n_kv * (uint64_t)f->hd);
    add_phase(f, ph_wo, tail_wo, pf_wo, f->co, OPK_ATTN_OUT, kern_gemv_variant(c, L->wo),
              mm_bytes(L->wo, 1) + 8 * d, mm_flops(L->wo, 1) + d);
    if (f->moe) {
        f->chunk_r = 1;   /* a router has few panels (4 on the small preset): one each */
        add_phase(f, ph_router, tail_router, pf_router, L->router->n_panels, OPK_ROUTER, kern_gemv_variant(c, L->router),
                  mm_bytes(L->router, 1), mm_flops(L->router, 1));
    }
    const int opk_gu = f->moe ? OPK_MOE_GATE_UP : OPK_FFN, opk_d = f->moe ? OPK_MOE_DOWN : OPK_FFN;
    add_phase(f, ph_gate_up, NULL, NULL, f->K * f->cg, opk_gu, kern_gemv_variant(c, f->gate),
              mm_bytes(f->gate, f->K) + mm_bytes(f->up, f->K), mm_flops(f->gate, f->K) + mm_flops(f->up, f->K));
    add_phase(f, e->fuse_down_rows ? ph_down : ph_down_slot, NULL, e->fuse_down_rows ? pf_down : pf_down_slot,
              e->fuse_down_rows ? n_chunks(f->down, f->chunk_d) : f->K * f->cd, opk_d, kern_gemv_variant(c, f->down),
              mm_bytes(f->down, f->K) + 8 * d * (uint64_t)f->K, mm_flops(f->down, f->K) + 2 * d * (uint64_t)f->K);
    f->total = f->end[f->nph - 1];

    const uint64_t t0 = adg_now_ns();
    kern_pool_run(c->pool, fz_worker, f);
    const kern_impl impl = f->vec ? KERN_IMPL_AVX512 : KERN_IMPL_REF;
    for (int p = 0; p < f->nph; p++) {
        const fz_phase *ph = &f->ph[p];
        const uint64_t from = p ? f->t_ready[p - 1] : t0;
        kern_op_info info = {.op = kern_engine_op_name(ph->opk), .impl = impl, .flops = ph->flops, .bytes = ph->bytes,
                             .ns = f->t_ready[p] > from ? f->t_ready[p] - from : 0};
        snprintf(info.variant, sizeof info.variant, "%s", ph->variant);
        engine_account(e, (int)il, ph->opk, &info, "CPU");
    }
    free(f);
    *ran = true;
    return NULL;
}

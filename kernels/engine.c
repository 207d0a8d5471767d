/* The forward pass of kern_engine.h on the CPU kernels of kern_cpu.h.  Everything that is
 * a matrix product or a row operation goes through kern_cpu (and so through its thread
 * pool and its ref/avx512/amx implementations); what is left here is bookkeeping that is
 * linear in the activations: KV-cache stores, top-k routing, the expert weighted sum,
 * and llama's (non-neox) RoPE, which kern_cpu does not provide. */
#include "kernels/kern_engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/engine_internal.h"
#include "kernels/kern_internal.h" /* the kern_cpu context's thread pool, for the bookkeeping loops */

#define UBATCH 512

static const char *const opk_names[OPK_COUNT] = {
    "get_rows", "rmsnorm", "matmul_qkv", "qk_norm", "rope", "kv_store", "attention", "matmul_attn_out",
    "router", "topk", "moe_gate_up", "silu_mul", "moe_down", "moe_sum", "ffn", "lm_head", "add", "softmax", "gpu_layer",
};

const char *kern_engine_op_name(int opk)
{
    return opk >= 0 && opk < OPK_COUNT ? opk_names[opk] : "?";
}

/* ---- op accounting ---- */

void engine_account(kern_engine *e, int layer, int opk, const kern_op_info *info, const char *backend)
{
    engine_opstat *s = &e->stats[(size_t)(layer + 1) * OPK_COUNT + (size_t)opk];
    s->backend = backend;
    s->calls++;
    s->ns += info->ns;
    s->bytes += info->bytes;
    s->flops += info->flops;
    s->impl = info->impl;
    if (info->variant[0])
        snprintf(s->variant, sizeof s->variant, "%s", info->variant);
}

/* For the bookkeeping done here rather than in kern_cpu. */
static void account_local(kern_engine *e, int layer, int opk, uint64_t t0, uint64_t bytes, uint64_t flops)
{
    kern_op_info info = {.op = opk_names[opk], .impl = KERN_IMPL_REF, .flops = flops, .bytes = bytes,
                         .ns = adg_now_ns() - t0};
    snprintf(info.variant, sizeof info.variant, "engine-scalar");
    engine_account(e, layer, opk, &info, "CPU");
}

#define CALL(layer, opk, expr)                                  \
    do {                                                        \
        kern_op_info info_ = {0};                               \
        adg_error *err_ = (expr);                               \
        if (err_)                                               \
            return adg_error_prefix(err_, "layer %d %s", (layer), opk_names[opk]); \
        engine_account(e, (layer), (opk), &info_, "CPU");       \
    } while (0)
#define INFO (&info_)

/* ---- local ops ---- */

/* Runs fn over [0, n) split across the kernel context's workers (one contiguous range
 * each, so every item is computed by one thread in a fixed order: deterministic).  Small
 * jobs (decode) run inline: a pool wake costs more than they do. */
typedef void (*range_fn)(void *arg, int64_t lo, int64_t hi);
typedef struct par_job {
    range_fn fn;
    void *arg;
    int64_t n;
} par_job;

static void par_worker(void *arg, int ith, int nth)
{
    par_job *j = arg;
    long lo, hi;
    kern_split((long)j->n, ith, nth, &lo, &hi);
    if (hi > lo)
        j->fn(j->arg, lo, hi);
}

static void par(kern_engine *e, int64_t n, int64_t work_per_item, range_fn fn, void *arg)
{
    if (n <= 1 || n * work_per_item < 32768 || kern_cpu_threads(e->cpu) == 1) {
        fn(arg, 0, n);
        return;
    }
    par_job j = {fn, arg, n};
    kern_pool_run(e->cpu->pool, par_worker, &j);
}

typedef struct rows_args {
    float *x;
    const float *a, *w;
    const int32_t *pos;
    int32_t *ids;
    int64_t d, K, E, n_heads, hd;
    float base;
    bool norm;
} rows_args;

static void add_rows(void *arg, int64_t lo, int64_t hi)
{
    rows_args *r = arg;
    for (int64_t i = lo * r->d; i < hi * r->d; i++)
        r->x[i] += r->a[i];
}

/* x[t] += sum_j w[t][j] * down[t*K + j] */
static void moe_sum_rows(void *arg, int64_t lo, int64_t hi)
{
    rows_args *r = arg;
    for (int64_t t = lo; t < hi; t++) {
        float *xr = r->x + t * r->d;
        for (int64_t j = 0; j < r->K; j++) {
            const float *dr = r->a + (t * r->K + j) * r->d;
            float w = r->w[t * r->K + j];
            for (int64_t i = 0; i < r->d; i++)
                xr[i] += w * dr[i];
        }
    }
}

/* llama's RoPE ("normal" mode): adjacent pairs (2i, 2i+1), on tokens [lo, hi). */
static void rope_norm_rows(void *arg, int64_t lo, int64_t hi)
{
    rows_args *r = arg;
    float *x = r->x;
    const int32_t *pos = r->pos;
    int64_t n_heads = r->n_heads, hd = r->hd;
    float base = r->base;
    for (int64_t t = lo; t < hi; t++)
        for (int64_t i = 0; i < hd / 2; i++) {
            float theta = (float)pos[t] * powf(base, -2.0f * (float)i / (float)hd);
            float c = cosf(theta), s = sinf(theta);
            for (int64_t h = 0; h < n_heads; h++) {
                float *p = x + (t * n_heads + h) * hd + 2 * i;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
}

void engine_topk(const float *row, int64_t E, int64_t K, bool norm, int32_t *id, float *wt)
{
    int64_t n = 0;
    for (int64_t x = 0; x < E; x++) {
        float v = row[x];
        if (n == K && !(v > wt[K - 1]))
            continue;
        /* Insert after every entry >= v: earlier (lower) ids win ties. */
        int64_t p = n < K ? n : K - 1;
        while (p > 0 && wt[p - 1] < v) {
            wt[p] = wt[p - 1];
            id[p] = id[p - 1];
            p--;
        }
        wt[p] = v;
        id[p] = (int32_t)x;
        if (n < K)
            n++;
    }
    if (norm) {
        float s = 0;
        for (int64_t j = 0; j < K; j++)
            s += wt[j];
        for (int64_t j = 0; j < K; j++)
            wt[j] /= s;
    }
}

/* Top-k of each row of probabilities (tokens [lo, hi)), largest first, lowest index on
 * ties; weights renormalised to sum 1 when norm is set (Qwen3's norm_topk_prob). */
static void topk_rows(void *arg, int64_t lo, int64_t hi)
{
    rows_args *r = arg;
    for (int64_t t = lo; t < hi; t++)
        engine_topk(r->a + t * r->E, r->E, r->K, r->norm, r->ids + t * r->K, r->x + t * r->K);
}

/* ---- forward ---- */

/* The prompt's products: under --amx-scales row the row-scaled copy takes the products the
 * crossover sends to tiles (so the choice of tiles or VNNI stays the measured one, and M = 1
 * keeps the block-scaled GEMV); everything else as kern_matmul. */
static adg_error *matmul(kern_cpu *c, const kern_weight *w, const kern_rowq_weight *rq, const float *x, int64_t T,
                         float *y, kern_op_info *info)
{
    if (rq && kern_matmul_on_tiles(c, w, T))
        return kern_rowq_matmul(c, rq, x, T, y, info);
    return kern_matmul(c, w, x, T, y, info);
}

/* The grouped experts likewise, judged at the mean rows per active expert
 * (T * top_k / min(experts, T * top_k)): the row-scaled kernel runs every group on tiles. */
static adg_error *moe_matmul(kern_cpu *c, const kern_weight *w, const kern_rowq_weight *rq, const float *x,
                             bool x_per_slot, const int32_t *ids, int64_t T, int64_t K, int64_t E, float *y,
                             kern_op_info *info)
{
    const int64_t slots = T * K, groups = E < slots ? E : slots;
    if (rq && kern_matmul_on_tiles(c, w, slots / groups))
        return kern_rowq_moe_matmul(c, rq, x, x_per_slot, ids, T, K, y, info);
    return kern_moe_matmul(c, w, x, x_per_slot, ids, T, K, y, info);
}

static adg_error *layer_forward(kern_engine *e, uint32_t il, uint32_t T, const int32_t *pos)
{
    const kern_model_hparams *hp = &e->model->hp;
    engine_layer *L = &e->layers[il];
    const kern_model_layer *ML = &e->model->layers[il];
    kern_cpu *c = e->cpu;
    int l = (int)il;
    int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv;
    int64_t qd = nh * hd, kvd = nkv * hd;
    engine_buf *b = &e->buf;

    CALL(l, OPK_NORM, kern_rmsnorm(c, b->x, (const float *)ML->attn_norm->data, T, d, hp->rms_eps, b->h, INFO));
    CALL(l, OPK_QKV, matmul(c, L->wq, L->rq_wq, b->h, T, b->q, INFO));
    CALL(l, OPK_QKV, matmul(c, L->wk, L->rq_wk, b->h, T, b->k, INFO));
    CALL(l, OPK_QKV, matmul(c, L->wv, L->rq_wv, b->h, T, b->v, INFO));
    if (ML->q_norm) {
        CALL(l, OPK_QK_NORM, kern_rmsnorm(c, b->q, (const float *)ML->q_norm->data, T * nh, hd, hp->rms_eps, b->q, INFO));
        CALL(l, OPK_QK_NORM, kern_rmsnorm(c, b->k, (const float *)ML->k_norm->data, T * nkv, hd, hp->rms_eps, b->k, INFO));
    }
    if (hp->arch == KERN_ARCH_QWEN3MOE) {
        CALL(l, OPK_ROPE, kern_rope_neox(c, b->q, T, nh, hd, hd, pos, hp->rope_base, INFO));
        CALL(l, OPK_ROPE, kern_rope_neox(c, b->k, T, nkv, hd, hd, pos, hp->rope_base, INFO));
    } else {
        uint64_t t0 = adg_now_ns();
        rows_args rq = {.x = b->q, .pos = pos, .n_heads = nh, .hd = hd, .base = hp->rope_base};
        par(e, T, qd, rope_norm_rows, &rq);
        rows_args rk = {.x = b->k, .pos = pos, .n_heads = nkv, .hd = hd, .base = hp->rope_base};
        par(e, T, kvd, rope_norm_rows, &rk);
        account_local(e, l, OPK_ROPE, t0, (uint64_t)T * (uint64_t)(qd + kvd) * 8, (uint64_t)T * (uint64_t)(qd + kvd) * 3);
    }
    /* New keys and values into the f16 cache (F16C on the pool; same bits as the scalar
     * conversion). */
    uint16_t *kc = e->kcache + (size_t)il * e->n_ctx * (size_t)kvd, *vc = e->vcache + (size_t)il * e->n_ctx * (size_t)kvd;
    CALL(l, OPK_KV_STORE, kern_store_f16(c, b->k, kc + (size_t)pos[0] * (size_t)kvd, T * kvd, INFO));
    CALL(l, OPK_KV_STORE, kern_store_f16(c, b->v, vc + (size_t)pos[0] * (size_t)kvd, T * kvd, INFO));

    kern_attn_args aa = {.q = b->q, .k = kc, .v = vc, .kv_type = KERN_TYPE_F16, .n_tokens = T, .n_head = nh,
                         .n_head_kv = nkv, .head_dim = hd, .n_ctx = e->n_ctx, .pos0 = pos[0], .scale = 0,
                         .out = b->att};
    CALL(l, OPK_ATTN, kern_attention(c, &aa, INFO));
    CALL(l, OPK_ATTN_OUT, matmul(c, L->wo, L->rq_wo, b->att, T, b->o, INFO));
    uint64_t t0 = adg_now_ns();
    rows_args ra = {.x = b->x, .a = b->o, .d = d};
    par(e, T, d, add_rows, &ra);
    account_local(e, l, OPK_ADD, t0, (uint64_t)T * (uint64_t)d * 12, (uint64_t)T * (uint64_t)d);

    CALL(l, OPK_NORM, kern_rmsnorm(c, b->x, (const float *)ML->ffn_norm->data, T, d, hp->rms_eps, b->h, INFO));
    if (hp->n_expert) {
        int64_t E = hp->n_expert, K = hp->n_expert_used, ff = hp->n_ff_exp;
        CALL(l, OPK_ROUTER, kern_matmul(c, L->router, b->h, T, b->router, INFO));
        CALL(l, OPK_SOFTMAX, kern_softmax(c, b->router, T, E, 1.0f, INFO));
        t0 = adg_now_ns();
        rows_args rt = {.x = b->rw, .a = b->router, .ids = b->ids, .E = E, .K = K,
                        .norm = true}; /* qwen3moe (norm_topk_prob) and Mixtral-style llama both renormalise */
        par(e, T, E * K, topk_rows, &rt);
        account_local(e, l, OPK_TOPK, t0, (uint64_t)T * (uint64_t)E * 4, (uint64_t)T * (uint64_t)E * (uint64_t)K);
        CALL(l, OPK_MOE_GATE_UP, moe_matmul(c, L->gate_exps, L->rq_gate_exps, b->h, false, b->ids, T, K, E, b->gate, INFO));
        CALL(l, OPK_MOE_GATE_UP, moe_matmul(c, L->up_exps, L->rq_up_exps, b->h, false, b->ids, T, K, E, b->up, INFO));
        CALL(l, OPK_SILU, kern_silu_mul(c, b->gate, b->up, T * K, ff, b->gate, INFO));
        CALL(l, OPK_MOE_DOWN, moe_matmul(c, L->down_exps, L->rq_down_exps, b->gate, true, b->ids, T, K, E, b->down, INFO));
        t0 = adg_now_ns();
        rows_args rs = {.x = b->x, .a = b->down, .w = b->rw, .d = d, .K = K};
        par(e, T, K * d, moe_sum_rows, &rs);
        account_local(e, l, OPK_MOE_SUM, t0, (uint64_t)T * (uint64_t)K * (uint64_t)d * 4,
                      2ull * (uint64_t)T * (uint64_t)K * (uint64_t)d);
    } else {
        int64_t ff = hp->n_ff;
        CALL(l, OPK_FFN, matmul(c, L->ffn_gate, L->rq_ffn_gate, b->h, T, b->gate, INFO));
        CALL(l, OPK_FFN, matmul(c, L->ffn_up, L->rq_ffn_up, b->h, T, b->up, INFO));
        CALL(l, OPK_SILU, kern_silu_mul(c, b->gate, b->up, T, ff, b->gate, INFO));
        CALL(l, OPK_FFN, matmul(c, L->ffn_down, L->rq_ffn_down, b->gate, T, b->o, INFO));
        t0 = adg_now_ns();
        rows_args rd = {.x = b->x, .a = b->o, .d = d};
        par(e, T, d, add_rows, &rd);
        account_local(e, l, OPK_ADD, t0, (uint64_t)T * (uint64_t)d * 12, (uint64_t)T * (uint64_t)d);
    }
    return NULL;
}

static adg_error *ubatch(kern_engine *e, const int32_t *tokens, uint32_t T, float *logits)
{
    const kern_model_hparams *hp = &e->model->hp;
    const kern_model *m = e->model;
    if (e->n_past + T > e->n_ctx)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "the KV cache holds %u positions; %u more do not fit after %u",
                                            e->n_ctx, T, e->n_past),
                              "use fewer prompt/generated tokens, or a larger context");
    for (uint32_t t = 0; t < T; t++) {
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
            return adg_error_new(ADG_E_USAGE, "token id %d is outside the vocabulary (0..%u)", tokens[t],
                                 hp->n_vocab - 1);
        e->buf.pos[t] = (int32_t)(e->n_past + t);
    }
    bool gathered = false;
    if (e->gpu) {
        adg_error *err = engine_gpu_embed(e, tokens, T, logits != NULL, &gathered);
        if (err)
            return err;
    }
    if (!gathered)
        CALL(-1, OPK_GET_ROWS, kern_get_rows(e->cpu, (kern_type)m->tok_embd->type, m->tok_embd->data, hp->n_vocab,
                                             hp->n_embd, tokens, T, e->buf.x, INFO));
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        adg_error *err = NULL;
        bool fused = false;
        if (il >= e->gpu_first) {
            err = engine_gpu_layer(e, il, T, e->buf.pos);
        } else {
            if (T == 1)   /* generation: one pool region for the whole layer (engine_fused.c) */
                err = engine_fused_layer(e, il, e->buf.pos[0], &fused);
            if (!err && !fused)
                err = layer_forward(e, il, T, e->buf.pos);
        }
        if (err)
            return err;
    }
    e->n_past += T;
    if (e->gpu)
        return logits ? engine_gpu_output(e, T, logits) : engine_gpu_finish(e);
    if (!logits)
        return NULL;
    const float *last = e->buf.x + (size_t)(T - 1) * hp->n_embd;
    CALL(-1, OPK_NORM, kern_rmsnorm(e->cpu, last, (const float *)m->output_norm->data, 1, hp->n_embd, hp->rms_eps,
                                    e->buf.h, INFO));
    CALL(-1, OPK_LM_HEAD, kern_matmul(e->cpu, e->output, e->buf.h, 1, logits, INFO));
    return NULL;
}

adg_error *kern_engine_eval(kern_engine *e, const int32_t *tokens, uint32_t n, float *logits)
{
    if (n == 0)
        return adg_error_new(ADG_E_USAGE, "nothing to evaluate (0 tokens)");
    for (uint32_t done = 0; done < n;) {
        uint32_t T = n - done < UBATCH ? n - done : UBATCH;
        adg_error *err = ubatch(e, tokens + done, T, done + T == n ? logits : NULL);
        if (err)
            return err;
        done += T;
    }
    return NULL;
}

static int32_t argmax(const float *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

adg_error *kern_engine_greedy(kern_engine *e, const int32_t *prompt, uint32_t n_prompt, uint32_t n_gen,
                              int32_t *out_tokens, float *last_logits)
{
    kern_engine_reset(e);
    adg_error *err = kern_engine_eval(e, prompt, n_prompt, e->logits);
    for (uint32_t i = 0; !err && i < n_gen; i++) {
        int32_t tok = argmax(e->logits, e->model->hp.n_vocab);
        out_tokens[i] = tok;
        if (i + 1 < n_gen || last_logits)
            err = kern_engine_eval(e, &tok, 1, e->logits);
    }
    if (!err && last_logits)
        memcpy(last_logits, e->logits, e->model->hp.n_vocab * sizeof *last_logits);
    return err;
}

void kern_engine_reset(kern_engine *e)
{
    e->n_past = 0;
}

uint32_t kern_engine_n_past(const kern_engine *e) { return e->n_past; }
const kern_model *kern_engine_model(const kern_engine *e) { return e->model; }
const kern_cpu *kern_engine_cpu(const kern_engine *e) { return e->cpu; }
uint32_t kern_engine_n_ctx(const kern_engine *e) { return e->n_ctx; }
const char *kern_engine_backend(const kern_engine *e) { return e->gpu ? "CPU+CUDA" : "CPU"; }
const char *kern_engine_amx_scales(const kern_engine *e) { return e->opts.amx_row_scales ? "row" : "block"; }
uint64_t kern_engine_weight_bytes(const kern_engine *e) { return e->weight_bytes + engine_gpu_weight_bytes(e->gpu); }
uint32_t kern_engine_gpu_layers(const kern_engine *e) { return e->model->hp.n_layer - e->gpu_first; }
const char *kern_engine_gpu_name(const kern_engine *e) { return engine_gpu_name(e->gpu); }
size_t kern_engine_gpu_launches(const kern_engine *e, kern_cuda_launch *out, size_t max)
{
    return engine_gpu_launches(e->gpu, out, max);
}
bool kern_engine_gpu_error_op(const kern_engine *e, const char **op, int *layer)
{
    return engine_gpu_error_op(e->gpu, op, layer);
}

/* GPU layers (--ngl): the last ngl layers and the output run on the CUDA kernels of
 * kernels/cuda/kern_cuda.h, with their weights uploaded once at load.
 *
 * The residual stream stays on the host between layers: each GPU layer uploads x, runs
 * norm, projections, q/k norm, RoPE, attention, output projection, residual, router and
 * the experts on the device, and brings x and the expert outputs back.  Two steps are
 * done on the host because the CUDA kernel set has no kernel for them yet: the f32 -> f16
 * store of new keys/values into the device KV cache, and the routing-weighted sum of the
 * expert outputs.  That costs a few small copies per layer; it is the first thing to move
 * to the GPU (a "kv_store" and a "moe_weighted_sum" kernel). */
#include "kernels/kern_engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/engine_internal.h"

typedef kern_cu_deviceptr dptr;

typedef struct gpu_layer {
    dptr attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, router, gate, up, down;
    dptr kcache, vcache;
} gpu_layer;

struct engine_gpu {
    kern_cuda_ctx *ctx;
    uint32_t first;          /* first GPU layer */
    gpu_layer *layers;       /* [n_layer - first] */
    dptr output, output_norm;
    kern_type wtype;         /* q4_0 or q8_0 for every matrix */
    dptr x, h, q, k, v, att, o, logits, ids, rw, gate, up, down, pos, scratch, vocab_logits;
    float *host_down, *host_rw;
    uint16_t *host_kv;
    uint64_t weight_bytes;
    dptr *allocs;            /* everything allocated, freed at close */
    size_t n_allocs, cap_allocs;
};

static adg_error *alloc(engine_gpu *g, size_t bytes, dptr *out)
{
    if (g->n_allocs == g->cap_allocs) {
        size_t cap = g->cap_allocs ? g->cap_allocs * 2 : 64;
        dptr *n = realloc(g->allocs, cap * sizeof *n);
        if (!n)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        g->allocs = n;
        g->cap_allocs = cap;
    }
    adg_error *e = kern_cuda_alloc(g->ctx, bytes ? bytes : 256, out);
    if (!e)
        g->allocs[g->n_allocs++] = *out;
    return e;
}

static adg_error *sync_uploads(engine_gpu *g)
{
    /* cuMemcpyHtoD from pageable memory may return before the DMA lands, and our kernels
     * run on a non-blocking stream: make the copies visible before the next launch. */
    const kern_cuda_driver *d = kern_cuda_drv(g->ctx);
    if (d->cuCtxSynchronize() != 0)
        return adg_error_new(ADG_E_CUDA, "waiting for the copies to the GPU failed");
    return NULL;
}

static adg_error *upload_tensor(engine_gpu *g, const kern_gguf_tensor *t, dptr *out)
{
    adg_error *e = alloc(g, t->nbytes, out);
    if (!e)
        e = kern_cuda_upload(g->ctx, *out, t->data, t->nbytes);
    if (e)
        return adg_error_prefix(e, "uploading '%s'", t->name);
    g->weight_bytes += t->nbytes;
    return NULL;
}

/* The router is f32 in GGUF files; the GPU GEMM takes f16. */
static adg_error *upload_f16(engine_gpu *g, const kern_gguf_tensor *t, dptr *out)
{
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    uint16_t *h = malloc(n * sizeof *h);
    if (!h)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    kern_fp32_to_fp16_row((const float *)t->data, h, (int64_t)n);
    adg_error *e = alloc(g, n * 2, out);
    if (!e)
        e = kern_cuda_upload(g->ctx, *out, h, n * 2);
    free(h);
    g->weight_bytes += n * 2;
    return e ? adg_error_prefix(e, "uploading '%s'", t->name) : NULL;
}

adg_error *engine_gpu_open(kern_engine *e, uint32_t first, engine_gpu **out)
{
    *out = NULL;
    const kern_model *m = e->model;
    const kern_model_hparams *hp = &m->hp;
    if (hp->arch != KERN_ARCH_QWEN3MOE)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "--ngl: GPU layers are implemented for qwen3moe models, "
                                                               "not %s", kern_arch_name(hp->arch)),
                              "run this model with --ngl 0");
    kern_type wt = (kern_type)m->layers[0].wq->type;
    if (wt != KERN_TYPE_Q4_0 && wt != KERN_TYPE_Q8_0)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "--ngl: the GPU kernels take q4_0 or q8_0 weights, this "
                                                               "model's are %s", kern_ggml_type_name(wt)),
                              "create the model with --quant q4_0 or q8_0, or run with --ngl 0");
    if (hp->head_dim % 32 || hp->head_dim > 256)
        return adg_error_new(ADG_E_UNSUPPORTED, "--ngl: the GPU attention needs a head size that is a multiple of 32 "
                                                "up to 256 (this model: %u)", hp->head_dim);
    engine_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    g->first = first;
    g->wtype = wt;
    *out = g;  /* engine_gpu_close frees a partial one */
    adg_error *err = kern_cuda_open(0, KERN_CUDA_LOAD_AUTO, &g->ctx);
    if (err)
        return adg_error_hint(adg_error_prefix(err, "--ngl %u", e->opts.ngl),
                              "run with --ngl 0 for the CPU only; 'amxdiag probe --only gpu' says what is missing");
    uint32_t n_gpu = hp->n_layer - first;
    g->layers = calloc(n_gpu ? n_gpu : 1, sizeof *g->layers);
    if (!g->layers)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
    for (uint32_t il = first; il < hp->n_layer; il++) {
        const kern_model_layer *L = &m->layers[il];
        gpu_layer *G = &g->layers[il - first];
        const kern_gguf_tensor *mats[] = {L->wq, L->wk, L->wv, L->wo, L->gate_exps, L->up_exps, L->down_exps};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (mats[i]->type != wt)
                return adg_error_new(ADG_E_UNSUPPORTED, "--ngl: tensor '%s' is %s, the GPU layers need every matrix in %s",
                                     mats[i]->name, kern_ggml_type_name(mats[i]->type), kern_ggml_type_name(wt));
        if ((err = upload_tensor(g, L->attn_norm, &G->attn_norm)) || (err = upload_tensor(g, L->wq, &G->wq)) ||
            (err = upload_tensor(g, L->wk, &G->wk)) || (err = upload_tensor(g, L->wv, &G->wv)) ||
            (err = upload_tensor(g, L->wo, &G->wo)) || (err = upload_tensor(g, L->q_norm, &G->q_norm)) ||
            (err = upload_tensor(g, L->k_norm, &G->k_norm)) || (err = upload_tensor(g, L->ffn_norm, &G->ffn_norm)) ||
            (err = upload_f16(g, L->gate_inp, &G->router)) || (err = upload_tensor(g, L->gate_exps, &G->gate)) ||
            (err = upload_tensor(g, L->up_exps, &G->up)) || (err = upload_tensor(g, L->down_exps, &G->down)) ||
            (err = alloc(g, (size_t)e->n_ctx * kvd * 2, &G->kcache)) ||
            (err = alloc(g, (size_t)e->n_ctx * kvd * 2, &G->vcache)))
            return err;
        /* On the device now: the file's pages of this layer can go. */
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            kern_gguf_release(m->gguf, mats[i]);
    }
    if (m->output->type != KERN_TYPE_Q4_0 && m->output->type != KERN_TYPE_Q8_0 && m->output->type != KERN_TYPE_F16)
        return adg_error_new(ADG_E_UNSUPPORTED, "--ngl: the output matrix is %s; the GPU takes q4_0, q8_0 or f16",
                             kern_ggml_type_name(m->output->type));
    if ((err = upload_tensor(g, m->output, &g->output)) || (err = upload_tensor(g, m->output_norm, &g->output_norm)))
        return err;
    /* Activations for a ubatch of 512 tokens. */
    size_t T = 512, d = hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, E = hp->n_expert,
           K = hp->n_expert_used, ff = hp->n_ff_exp;
    size_t kmax = d > qd ? d : qd;
    if (ff > kmax)
        kmax = ff;
    size_t scratch = kern_cuda_gemm_scratch((int64_t)T, (int64_t)kmax);
    size_t sv = kern_cuda_gemv_scratch((int64_t)(ff * K > kmax ? ff * K : kmax));
    if (sv > scratch)
        scratch = sv;
    if ((err = alloc(g, T * d * 4, &g->x)) || (err = alloc(g, T * d * 4, &g->h)) || (err = alloc(g, T * qd * 4, &g->q)) ||
        (err = alloc(g, T * kvd * 4, &g->k)) || (err = alloc(g, T * kvd * 4, &g->v)) ||
        (err = alloc(g, T * qd * 4, &g->att)) || (err = alloc(g, T * d * 4, &g->o)) ||
        (err = alloc(g, T * E * 4, &g->logits)) || (err = alloc(g, T * K * 4, &g->ids)) ||
        (err = alloc(g, T * K * 4, &g->rw)) || (err = alloc(g, T * K * ff * 4, &g->gate)) ||
        (err = alloc(g, T * K * ff * 4, &g->up)) || (err = alloc(g, T * K * d * 4, &g->down)) ||
        (err = alloc(g, T * 4, &g->pos)) || (err = alloc(g, scratch, &g->scratch)) ||
        (err = alloc(g, (size_t)hp->n_vocab * 4, &g->vocab_logits)))
        return err;
    g->host_down = malloc(T * K * d * sizeof *g->host_down);
    g->host_rw = malloc(T * K * sizeof *g->host_rw);
    g->host_kv = malloc(T * kvd * sizeof *g->host_kv);
    if (!g->host_down || !g->host_rw || !g->host_kv)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    const kern_cuda_load_info *li = kern_cuda_info(g->ctx);
    adg_info("engine: layers %u-%u and the output on %s (CC %d.%d), %.1f MiB of weights uploaded", first,
             hp->n_layer - 1, li->name, li->cc_major, li->cc_minor, (double)g->weight_bytes / (1 << 20));
    return NULL;
}

void engine_gpu_close(engine_gpu *g)
{
    if (!g)
        return;
    if (g->ctx) {
        for (size_t i = 0; i < g->n_allocs; i++)
            kern_cuda_free(g->ctx, g->allocs[i]);
        kern_cuda_close(g->ctx);
    }
    free(g->allocs);
    free(g->layers);
    free(g->host_down);
    free(g->host_rw);
    free(g->host_kv);
    free(g);
}

uint64_t engine_gpu_weight_bytes(const engine_gpu *g)
{
    return g ? g->weight_bytes : 0;
}

const char *engine_gpu_name(const engine_gpu *g)
{
    return g && g->ctx ? kern_cuda_info(g->ctx)->name : "";
}

/* y[T][m] = x[T][k] * W^T on the device: GEMV for one token, GEMM otherwise. */
static adg_error *mm(engine_gpu *g, kern_type type, dptr w, int64_t m, int64_t k, dptr x, int64_t T, dptr y)
{
    if (T == 1 && type != KERN_TYPE_F16)
        return kern_cuda_gemv(g->ctx, type, w, m, k, x, y, g->scratch);
    return kern_cuda_gemm(g->ctx, type, w, m, k, x, T, y, g->scratch);
}

#define TRY(expr)                                                              \
    do {                                                                       \
        adg_error *err_ = (expr);                                              \
        if (err_)                                                              \
            return adg_error_prefix(err_, "GPU layer %u", il);                 \
    } while (0)

adg_error *engine_gpu_layer(kern_engine *e, uint32_t il, uint32_t T, const int32_t *pos)
{
    engine_gpu *g = e->gpu;
    const kern_model_hparams *hp = &e->model->hp;
    const gpu_layer *G = &g->layers[il - g->first];
    kern_cuda_ctx *c = g->ctx;
    int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, qd = nh * hd, kvd = nkv * hd;
    int64_t E = hp->n_expert, K = hp->n_expert_used, ff = hp->n_ff_exp;
    float *x = e->buf.x;
    uint64_t t0 = adg_now_ns();

    TRY(kern_cuda_upload(c, g->x, x, (size_t)(T * d) * 4));
    TRY(kern_cuda_upload(c, g->pos, pos, (size_t)T * 4));
    TRY(sync_uploads(g));
    TRY(kern_cuda_rmsnorm(c, g->x, G->attn_norm, g->h, T, d, hp->rms_eps));
    TRY(mm(g, g->wtype, G->wq, qd, d, g->h, T, g->q));
    TRY(mm(g, g->wtype, G->wk, kvd, d, g->h, T, g->k));
    TRY(mm(g, g->wtype, G->wv, kvd, d, g->h, T, g->v));
    TRY(kern_cuda_rmsnorm(c, g->q, G->q_norm, g->q, T * nh, hd, hp->rms_eps));
    TRY(kern_cuda_rmsnorm(c, g->k, G->k_norm, g->k, T * nkv, hd, hp->rms_eps));
    TRY(kern_cuda_rope_neox(c, g->q, g->pos, T, (int)nh, (int)hd, hp->rope_base));
    TRY(kern_cuda_rope_neox(c, g->k, g->pos, T, (int)nkv, (int)hd, hp->rope_base));
    /* New keys and values: f32 on the device -> f16 into the device cache, via the host. */
    size_t off = (size_t)pos[0] * (size_t)kvd * 2, nkvb = (size_t)(T * kvd);
    TRY(kern_cuda_download(c, e->buf.k, g->k, nkvb * 4));
    kern_fp32_to_fp16_row(e->buf.k, g->host_kv, (int64_t)nkvb);
    TRY(kern_cuda_upload(c, G->kcache + off, g->host_kv, nkvb * 2));
    TRY(kern_cuda_download(c, e->buf.v, g->v, nkvb * 4));
    kern_fp32_to_fp16_row(e->buf.v, g->host_kv, (int64_t)nkvb);
    TRY(kern_cuda_upload(c, G->vcache + off, g->host_kv, nkvb * 2));
    TRY(sync_uploads(g));
    float scale = 1.0f / sqrtf((float)hd);
    for (uint32_t t = 0; t < T; t++)
        TRY(kern_cuda_attention(c, g->q + (size_t)t * (size_t)qd * 4, G->kcache, G->vcache,
                                g->att + (size_t)t * (size_t)qd * 4, (int)nh, (int)nkv, (int)hd, pos[t] + 1, scale));
    TRY(mm(g, g->wtype, G->wo, d, qd, g->att, T, g->o));
    TRY(kern_cuda_add(c, g->x, g->o, g->x, T * d));
    TRY(kern_cuda_rmsnorm(c, g->x, G->ffn_norm, g->h, T, d, hp->rms_eps));
    TRY(kern_cuda_gemm(c, KERN_TYPE_F16, G->router, E, d, g->h, T, g->logits, g->scratch));
    TRY(kern_cuda_moe_route(c, g->logits, T, (int)E, (int)K, true, g->ids, g->rw));
    for (uint32_t t = 0; t < T; t++) {
        dptr ids = g->ids + (size_t)t * (size_t)K * 4, xt = g->h + (size_t)t * (size_t)d * 4;
        TRY(kern_cuda_moe_gemv(c, g->wtype, G->gate, (int)E, ff, d, ids, (int)K, xt, 1,
                               g->gate + (size_t)t * (size_t)(K * ff) * 4, g->scratch));
        TRY(kern_cuda_moe_gemv(c, g->wtype, G->up, (int)E, ff, d, ids, (int)K, xt, 1,
                               g->up + (size_t)t * (size_t)(K * ff) * 4, g->scratch));
    }
    TRY(kern_cuda_silu_mul(c, g->gate, g->up, g->gate, T * K * ff));
    for (uint32_t t = 0; t < T; t++)
        TRY(kern_cuda_moe_gemv(c, g->wtype, G->down, (int)E, d, ff, g->ids + (size_t)t * (size_t)K * 4, (int)K,
                               g->gate + (size_t)t * (size_t)(K * ff) * 4, (int)K,
                               g->down + (size_t)t * (size_t)(K * d) * 4, g->scratch));
    /* The routing-weighted sum of the expert outputs, on the host. */
    TRY(kern_cuda_download(c, x, g->x, (size_t)(T * d) * 4));
    TRY(kern_cuda_download(c, g->host_down, g->down, (size_t)(T * K * d) * 4));
    TRY(kern_cuda_download(c, g->host_rw, g->rw, (size_t)(T * K) * 4));
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < K; j++) {
            float w = g->host_rw[t * K + j];
            const float *dr = g->host_down + (t * K + j) * d;
            for (int64_t i = 0; i < d; i++)
                x[t * d + i] += w * dr[i];
        }
    uint64_t flops = 2ull * (uint64_t)T * (uint64_t)(d * (qd + 2 * kvd) + qd * d + d * E + K * 3 * d * ff);
    kern_op_info info = {.op = "gpu_layer", .impl = KERN_IMPL_AUTO, .flops = flops,
                         .bytes = (uint64_t)T * (uint64_t)(2 * d + 4 * kvd + K * d + K) * 4, .ns = adg_now_ns() - t0};
    snprintf(info.variant, sizeof info.variant, "cuda-%s", kern_type_name(g->wtype));
    engine_account(e, (int)il, OPK_GPU_LAYER, &info, "CUDA");
    return NULL;
}

adg_error *engine_gpu_output(kern_engine *e, const float *x_last, float *logits)
{
    engine_gpu *g = e->gpu;
    const kern_model_hparams *hp = &e->model->hp;
    kern_cuda_ctx *c = g->ctx;
    uint32_t il = hp->n_layer;
    uint64_t t0 = adg_now_ns();
    TRY(kern_cuda_upload(c, g->x, x_last, (size_t)hp->n_embd * 4));
    TRY(sync_uploads(g));
    TRY(kern_cuda_rmsnorm(c, g->x, g->output_norm, g->h, 1, hp->n_embd, hp->rms_eps));
    TRY(mm(g, (kern_type)e->model->output->type, g->output, hp->n_vocab, hp->n_embd, g->h, 1, g->vocab_logits));
    TRY(kern_cuda_download(c, logits, g->vocab_logits, (size_t)hp->n_vocab * 4));
    kern_op_info info = {.op = "lm_head", .impl = KERN_IMPL_AUTO,
                         .flops = 2ull * hp->n_vocab * hp->n_embd, .bytes = e->model->output->nbytes,
                         .ns = adg_now_ns() - t0};
    snprintf(info.variant, sizeof info.variant, "cuda-%s", kern_ggml_type_name(e->model->output->type));
    engine_account(e, -1, OPK_LM_HEAD, &info, "CUDA");
    return NULL;
}

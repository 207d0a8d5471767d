/* GPU layers (--ngl): the last ngl layers and the output run on the CUDA kernels of
 * kernels/cuda/kern_cuda.h, with their weights uploaded once at load.
 *
 * The residual stream stays on the device from the first GPU layer to the logits: a
 * layer is norm, projections, q/k norm, RoPE, the f32 -> f16 store of the new keys and
 * values into the device KV cache, attention (causal over the ubatch for a prompt),
 * output projection, residual, router, the grouped expert matmuls and the
 * routing-weighted expert sum, all launched on one stream with no copy and no wait.
 * The host sees the GPU again only for the logits (or for x when the embedding was
 * gathered on the GPU ahead of CPU layers).  When layer 0 is on the GPU the embedding
 * gather (GET_ROWS) runs there too, as in llama.cpp with every layer offloaded.
 *
 * Per-layer times: the launches are asynchronous, so CUDA events are recorded on the
 * stream before the first GPU layer, after each layer and after the LM head, and the
 * "gpu_layer" / "lm_head" ops are accounted with the GPU time between them once the
 * stream has been waited for (the logits' copy, or the wait at the end of a ubatch).
 * Without events (their creation failed) the host's enqueue time is accounted instead.
 *
 * Generation (one token a pass) replays a CUDA graph: the first pass captures every
 * launch from the first GPU op to the LM head (timing marks included, as event-record
 * nodes), later passes copy the token id and its position (8 bytes, read by GET_ROWS,
 * RoPE, the KV store and attention on the device) and launch the graph once.  A pass
 * without logits (engine_gpu_finish, no LM head) has a graph of its own.  A token
 * is ~20 launches a layer; launched one by one their host cost (a few µs each) was most
 * of a small model's token time.  Off with --no-gpu-graphs / $AMXDIAG_GPU_GRAPHS=0, and
 * whenever kern_cuda_graph_unavailable says why (validate, sync-each, a planted fault). */
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
    bool qkv_one; /* wq, wk, wv back to back: a generated token's Q/K/V are one GEMV */
} gpu_layer;

struct engine_gpu {
    kern_cuda_ctx *ctx;
    uint32_t first;          /* first GPU layer */
    gpu_layer *layers;       /* [n_layer - first] */
    dptr output, output_norm;
    kern_type wtype;         /* q4_0 or q8_0 for every matrix */
    dptr tok_embd;           /* the embedding table, when the gather runs on the GPU (0 otherwise) */
    dptr x, h, q, k, v, att, o, logits, ids, ids_gu, rw, gate, up, down, pos, tokens, scratch, vocab_logits;
    dptr route_counter;      /* kern_cuda_router_topk's block counter (0 between launches) */
    bool x_on_gpu;           /* g->x holds the current ubatch's residual stream */
    dptr dec_io;             /* generation's inputs: [0] the token id, [1] its position */
    bool graphs;             /* generation replays a CUDA graph */
    kern_cuda_graph *decode[2]; /* those graphs, once captured: [1] with the output (a pass that wants logits),
                                 * [0] without (engine_gpu_finish ends the pass) */
    bool want_logits;        /* this pass ends with engine_gpu_output */
    bool capturing;          /* this pass is being captured into g->decode[want_logits] */
    bool replaying;          /* this pass is that graph: the ops are in it, nothing is launched */
    bool region;             /* this pass's GPU region has begun (inputs uploaded) */
    uint64_t weight_bytes;
    kern_cuda_marks *marks;  /* [0] before the first GPU layer, [i+1] after GPU layer i, [n+1] after lm_head */
    bool pending;            /* layers marked but not yet accounted */
    uint32_t pending_T;
    const char *err_op;      /* the engine op whose call returned the last error */
    int err_layer;           /* its layer (-1: outside the layers) */
    dptr *allocs;            /* everything allocated, freed at close */
    size_t n_allocs, cap_allocs;
};

static adg_error *alloc(engine_gpu *g, size_t bytes, dptr *out)
{
    if (!adg_grow(&g->allocs, &g->cap_allocs, g->n_allocs, sizeof *g->allocs, 64))
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    adg_error *e = kern_cuda_alloc(g->ctx, bytes ? bytes : 256, out);
    if (!e)
        g->allocs[g->n_allocs++] = *out;
    return e;
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

/* n tensors back to back in one allocation (out[i]: where tensor i starts), so that one
 * kernel can take them as one matrix or one stack of experts. */
static adg_error *upload_together(engine_gpu *g, const kern_gguf_tensor *const *t, size_t n, dptr *out)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += t[i]->nbytes;
    dptr base;
    adg_error *e = alloc(g, total, &base);
    for (size_t i = 0, off = 0; !e && i < n; off += t[i]->nbytes, i++) {
        out[i] = base + (dptr)off;
        if ((e = kern_cuda_upload(g->ctx, out[i], t[i]->data, t[i]->nbytes)))
            e = adg_error_prefix(e, "uploading '%s'", t[i]->name);
        else
            g->weight_bytes += t[i]->nbytes;
    }
    return e;
}

/* Q, K and V weights back to back where each part stays 256-byte aligned (the prompt's
 * GEMMs read each part on its own with 16-byte copies); separately otherwise. */
static adg_error *upload_qkv(engine_gpu *g, const kern_model_layer *L, gpu_layer *G)
{
    const kern_gguf_tensor *t[3] = {L->wq, L->wk, L->wv};
    dptr out[3];
    G->qkv_one = t[0]->nbytes % 256 == 0 && t[1]->nbytes % 256 == 0;
    adg_error *e;
    if (G->qkv_one)
        e = upload_together(g, t, 3, out);
    else if (!(e = upload_tensor(g, t[0], &out[0])) && !(e = upload_tensor(g, t[1], &out[1])))
        e = upload_tensor(g, t[2], &out[2]);
    G->wq = out[0];
    G->wk = out[1];
    G->wv = out[2];
    return e;
}

/* The router stays in f32, as the CPU computes it: its logits pick the experts, and the
 * roundings of an f16 router moved the hidden state until a near-tie between the k-th and
 * the next expert went the other way on the GPU (a token's FFN output became another
 * expert's: 0.69 per logit in test_kern_engine's test_gpu_layers with the int8 GEMM). */
static adg_error *upload_router(engine_gpu *g, const kern_gguf_tensor *t, dptr *out)
{
    if (t->type != KERN_TYPE_F32)
        return adg_error_new(ADG_E_UNSUPPORTED, "--ngl: the router '%s' is %s; the GPU layers take an f32 router",
                             t->name, kern_ggml_type_name(t->type));
    return upload_tensor(g, t, out);
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
    kern_cuda_fault fault = KERN_CUDA_FAULT_NONE;
    if (e->opts.gpu_fault && !kern_cuda_fault_parse(e->opts.gpu_fault, &fault))
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "unknown GPU fault '%s'", e->opts.gpu_fault),
                              "the faults are %s", kern_cuda_fault_names());
    engine_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    g->first = first;
    g->wtype = wt;
    g->err_layer = -1;
    *out = g;  /* engine_gpu_close frees a partial one */
    adg_error *err = kern_cuda_open(0, KERN_CUDA_LOAD_AUTO, &g->ctx);
    if (err)
        return adg_error_hint(adg_error_prefix(err, "--ngl %u", e->opts.ngl),
                              "run with --ngl 0 for the CPU only; 'amxdiag probe --only gpu' says what is missing");
    kern_cuda_set_validate(g->ctx, e->opts.gpu_validate);
    kern_cuda_set_sync_each(g->ctx, e->opts.gpu_sync_each);
    /* The gather runs where layer 0 runs; a planted GET_ROWS fault needs it on the GPU. */
    bool embd_gpu = first == 0 || fault == KERN_CUDA_FAULT_GET_ROWS_OOB || fault == KERN_CUDA_FAULT_ASYNC_BEFORE_GET_ROWS;
    if (embd_gpu) {
        if ((err = upload_tensor(g, m->tok_embd, &g->tok_embd)))
            return err;
        kern_gguf_release(m->gguf, m->tok_embd); /* the CPU never gathers when the GPU does */
    }
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
        /* The gate experts then the up experts in one buffer: a generated token's gate and up
         * matvecs are one grouped GEMV over 2 * n_expert matrices (kern_cuda_moe_route_gu). */
        const kern_gguf_tensor *gate_up[2] = {L->gate_exps, L->up_exps};
        dptr gu[2] = {0, 0};
        if ((err = upload_tensor(g, L->attn_norm, &G->attn_norm)) || (err = upload_qkv(g, L, G)) ||
            (err = upload_tensor(g, L->wo, &G->wo)) || (err = upload_tensor(g, L->q_norm, &G->q_norm)) ||
            (err = upload_tensor(g, L->k_norm, &G->k_norm)) || (err = upload_tensor(g, L->ffn_norm, &G->ffn_norm)) ||
            (err = upload_router(g, L->gate_inp, &G->router)) || (err = upload_together(g, gate_up, 2, gu)) ||
            (err = upload_tensor(g, L->down_exps, &G->down)) ||
            (err = alloc(g, (size_t)e->n_ctx * kvd * 2, &G->kcache)) ||
            (err = alloc(g, (size_t)e->n_ctx * kvd * 2, &G->vcache)))
            return err;
        G->gate = gu[0];
        G->up = gu[1];
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
    size_t scratch = kern_cuda_gemm_scratch((int64_t)T, (int64_t)kmax), sc;
    if ((sc = kern_cuda_gemv_scratch((int64_t)(ff * K > kmax ? ff * K : kmax))) > scratch)
        scratch = sc;
    if ((sc = kern_cuda_moe_gemm_scratch((int64_t)T, (int)K, (int)E, (int64_t)d, false)) > scratch)
        scratch = sc;
    if ((sc = kern_cuda_moe_gemm_scratch((int64_t)T, (int)K, (int)E, (int64_t)ff, true)) > scratch)
        scratch = sc;
    if ((err = alloc(g, T * d * 4, &g->x)) || (err = alloc(g, T * d * 4, &g->h)) || (err = alloc(g, T * qd * 4, &g->q)) ||
        (err = alloc(g, T * kvd * 4, &g->k)) || (err = alloc(g, T * kvd * 4, &g->v)) ||
        (err = alloc(g, T * qd * 4, &g->att)) || (err = alloc(g, T * d * 4, &g->o)) ||
        (err = alloc(g, T * E * 4, &g->logits)) || (err = alloc(g, T * K * 4, &g->ids)) ||
        (err = alloc(g, T * K * 4, &g->rw)) || (err = alloc(g, 2 * K * 4, &g->ids_gu)) || (err = alloc(g, 4, &g->route_counter)) ||
        (err = kern_cuda_upload(g->ctx, g->route_counter, &(uint32_t){0}, 4)) || (err = alloc(g, T * K * ff * 4, &g->gate)) ||
        (err = alloc(g, T * K * ff * 4, &g->up)) || (err = alloc(g, T * K * d * 4, &g->down)) ||
        (err = alloc(g, T * 4, &g->pos)) || (err = alloc(g, T * 4, &g->tokens)) || (err = alloc(g, 8, &g->dec_io)) ||
        (err = alloc(g, scratch, &g->scratch)) || (err = alloc(g, (size_t)hp->n_vocab * 4, &g->vocab_logits)))
        return err;
    adg_error *me = kern_cuda_marks_new(g->ctx, (int)n_gpu + 2, &g->marks);
    if (me) {
        adg_warn("engine: no GPU timing events (%s); per-layer GPU times will be enqueue times", adg_error_msg(me));
        adg_error_free(me);
    }
    /* Armed last: the first op of the matching kind in the first forward pass plants it. */
    if (fault != KERN_CUDA_FAULT_NONE)
        kern_cuda_inject(g->ctx, fault);
    const char *env = getenv("AMXDIAG_GPU_GRAPHS"), *why = kern_cuda_graph_unavailable(g->ctx);
    if (!why && !g->marks)
        why = "no timing events";
    g->graphs = !e->opts.gpu_no_graphs && !(env && strcmp(env, "0") == 0) && !why;
    if (!g->graphs && !e->opts.gpu_no_graphs && why)
        adg_info("engine: generation launches its kernels one by one (no CUDA graph: %s)", why);
    const kern_cuda_load_info *li = kern_cuda_info(g->ctx);
    adg_info("engine: layers %u-%u%s and the output on %s (CC %d.%d), %.1f MiB of weights uploaded", first,
             hp->n_layer - 1, g->tok_embd ? ", the embedding gather" : "", li->name, li->cc_major, li->cc_minor,
             (double)g->weight_bytes / (1 << 20));
    return NULL;
}

void engine_gpu_close(engine_gpu *g)
{
    if (!g)
        return;
    if (g->ctx) {
        kern_cuda_graph_free(g->ctx, g->decode[0]);
        kern_cuda_graph_free(g->ctx, g->decode[1]);
        kern_cuda_marks_free(g->ctx, g->marks);
        for (size_t i = 0; i < g->n_allocs; i++)
            kern_cuda_free(g->ctx, g->allocs[i]);
        kern_cuda_close(g->ctx);
    }
    free(g->allocs);
    free(g->layers);
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

size_t engine_gpu_launches(const engine_gpu *g, kern_cuda_launch *out, size_t max)
{
    return g && g->ctx ? kern_cuda_launch_ring(g->ctx, out, max) : 0;
}

bool engine_gpu_error_op(const engine_gpu *g, const char **op, int *layer)
{
    if (!g || !g->err_op)
        return false;
    *op = g->err_op;
    *layer = g->err_layer;
    return true;
}

/* A pass that failed while being captured: the capture is ended and dropped (the next
 * generated token captures again). */
static void graph_abort(engine_gpu *g)
{
    if (g->capturing) {
        kern_cuda_graph *none = NULL;
        adg_error_free(kern_cuda_graph_end(g->ctx, false, &none));
    }
    g->capturing = g->replaying = g->region = false;
}

/* y[T][m] = x[T][k] * W^T on the device: GEMV for one token, GEMM otherwise. */
static adg_error *mm(engine_gpu *g, kern_type type, dptr w, int64_t m, int64_t k, dptr x, int64_t T, dptr y)
{
    if (T == 1 && type != KERN_TYPE_F16)
        return kern_cuda_gemv(g->ctx, type, w, m, k, x, y, g->scratch);
    return kern_cuda_gemm(g->ctx, type, w, m, k, x, T, y, g->scratch);
}

/* The same where x's producer quantised it into g->scratch (q8: the _q8 ops) for a GEMV. */
static adg_error *mmq(engine_gpu *g, kern_type type, dptr w, int64_t m, int64_t k, dptr x, int64_t T, dptr y, dptr q8)
{
    if (q8 && T == 1 && type != KERN_TYPE_F16)
        return kern_cuda_gemv_q8(g->ctx, type, w, m, k, x, y, g->scratch);
    return mm(g, type, w, m, k, x, T, y);
}

/* Every call names its engine op, so that an asynchronous CUDA error can be reported as
 * "reported by <op>" next to the launch ring (the kernel that faulted ran earlier). */
#define TRY(name, expr)                                                        \
    do {                                                                       \
        adg_error *err_ = (expr);                                              \
        if (err_) {                                                            \
            graph_abort(g);                                                    \
            g->err_op = (name);                                                \
            g->err_layer = (int)il;                                            \
            return il >= 0 ? adg_error_prefix(err_, "GPU layer %d, %s", il, (name)) \
                           : adg_error_prefix(err_, "GPU %s", (name));         \
        }                                                                      \
    } while (0)

/* Where a generated token's GPU work begins, once its inputs can go up: the token id
 * (read by the gather when it runs here) and the position in one copy; then this pass
 * is captured (the first time) or replays the graph at its end (decode_end). */
static adg_error *decode_begin(kern_engine *e, const int32_t *token)
{
    engine_gpu *g = e->gpu;
    int32_t io[2] = {token ? token[0] : 0, e->buf.pos[0]};
    adg_error *err = kern_cuda_upload(g->ctx, g->dec_io, io, sizeof io);
    if (err)
        return err;
    g->region = true;
    if (!g->graphs)
        return NULL;
    if (g->decode[g->want_logits]) {
        g->replaying = true;
        return NULL;
    }
    err = kern_cuda_graph_begin(g->ctx);
    if (err) {
        adg_warn("engine: generated tokens launch their GPU kernels one by one (%s)", adg_error_msg(err));
        adg_error_free(err);
        g->graphs = false;
        return NULL;
    }
    g->capturing = true;
    return NULL;
}

/* The end of a generated token's GPU work: the capture becomes the graph, and the graph
 * runs (this pass's work, captured or not, is in it).  A capture that cannot be ended or
 * instantiated leaves this token's work unrun: the pass fails, saying how to run
 * without graphs. */
static adg_error *decode_end(engine_gpu *g)
{
    adg_error *err = NULL;
    kern_cuda_graph **slot = &g->decode[g->want_logits];
    if (g->capturing) {
        g->capturing = false;
        if ((err = kern_cuda_graph_end(g->ctx, true, slot))) {
            g->region = false;
            return adg_error_hint(err, "run with --no-gpu-graphs (or AMXDIAG_GPU_GRAPHS=0) to launch the kernels one "
                                       "by one");
        }
        adg_info("engine: generation%s captured as a CUDA graph of %zu launches",
                 g->want_logits ? "" : " (without the logits)", kern_cuda_graph_nodes(*slot));
        g->replaying = true;
    }
    if (g->replaying) {
        g->replaying = false;
        err = kern_cuda_graph_launch(g->ctx, *slot);
    }
    g->region = false;
    return err;
}

static void account_layer(kern_engine *e, uint32_t il, uint32_t T, uint64_t ns)
{
    engine_gpu *g = e->gpu;
    const kern_model_hparams *hp = &e->model->hp;
    uint64_t d = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim, kvd = (uint64_t)hp->n_head_kv * hp->head_dim,
             E = hp->n_expert, K = hp->n_expert_used, ff = hp->n_ff_exp;
    uint64_t flops = 2ull * T * (d * (qd + 2 * kvd) + qd * d + d * E + K * 3 * d * ff);
    kern_op_info info = {.op = "gpu_layer", .impl = KERN_IMPL_AUTO, .flops = flops,
                         .bytes = (uint64_t)T * (2 * d + 4 * kvd + K * d + K) * 4, .ns = ns};
    snprintf(info.variant, sizeof info.variant, "cuda-%s", kern_type_name(g->wtype));
    engine_account(e, (int)il, OPK_GPU_LAYER, &info, "CUDA");
}

/* After the stream was waited for: the GPU time of each layer of the last ubatch. */
static void account_marked(kern_engine *e)
{
    engine_gpu *g = e->gpu;
    if (!g->pending)
        return;
    g->pending = false;
    uint32_t n = e->model->hp.n_layer - g->first;
    for (uint32_t i = 0; i < n; i++) {
        double ms = 0;
        adg_error_free(kern_cuda_marks_ms(g->ctx, g->marks, (int)i, (int)i + 1, &ms));
        account_layer(e, g->first + i, g->pending_T, (uint64_t)(ms * 1e6));
    }
}

adg_error *engine_gpu_embed(kern_engine *e, const int32_t *tokens, uint32_t T, bool logits, bool *done)
{
    engine_gpu *g = e->gpu;
    const kern_model *m = e->model;
    int il = -1;
    *done = false;
    g->x_on_gpu = false;
    g->pending = false; /* a ubatch that failed half-way leaves marks that were never recorded */
    graph_abort(g);     /* nor a region */
    g->want_logits = logits; /* which of the two graphs a generated token replays */
    if (!g->tok_embd)
        return NULL;
    uint64_t t0 = adg_now_ns();
    dptr ids = g->tokens;
    if (T == 1) {
        TRY("get_rows (token embedding)", decode_begin(e, tokens));
        ids = g->dec_io;
    } else {
        TRY("get_rows (token embedding)", kern_cuda_upload(g->ctx, g->tokens, tokens, (size_t)T * 4));
    }
    if (!g->replaying)
        TRY("get_rows (token embedding)", kern_cuda_get_rows(g->ctx, (kern_type)m->tok_embd->type, g->tok_embd,
                                                             m->hp.n_vocab, m->hp.n_embd, ids, T, g->x));
    g->x_on_gpu = true;
    if (g->first > 0) {
        /* CPU layers come first: x goes back (this waits for the gather). */
        TRY("get_rows (token embedding)", kern_cuda_download(g->ctx, e->buf.x, g->x, (size_t)T * m->hp.n_embd * 4));
        g->x_on_gpu = false;
    }
    kern_op_info info = {.op = "get_rows", .impl = KERN_IMPL_AUTO,
                         .bytes = (uint64_t)T * (uint64_t)(kern_row_size((kern_type)m->tok_embd->type, m->hp.n_embd) +
                                                           (size_t)m->hp.n_embd * 4),
                         .ns = adg_now_ns() - t0};
    snprintf(info.variant, sizeof info.variant, "cuda-%s", kern_ggml_type_name(m->tok_embd->type));
    engine_account(e, -1, OPK_GET_ROWS, &info, "CUDA");
    *done = true;
    return NULL;
}

adg_error *engine_gpu_layer(kern_engine *e, uint32_t layer, uint32_t T, const int32_t *pos)
{
    engine_gpu *g = e->gpu;
    const kern_model_hparams *hp = &e->model->hp;
    int il = (int)layer;
    const gpu_layer *G = &g->layers[layer - g->first];
    kern_cuda_ctx *c = g->ctx;
    int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, qd = nh * hd, kvd = nkv * hd;
    int64_t E = hp->n_expert, K = hp->n_expert_used, ff = hp->n_ff_exp;
    uint64_t t0 = adg_now_ns();

    if (!g->x_on_gpu) {
        /* The first GPU layer after CPU layers: the only copy of x to the device.  The
         * context's stream waits for the copy (it is a blocking stream). */
        TRY("upload x", kern_cuda_upload(c, g->x, e->buf.x, (size_t)(T * d) * 4));
        g->x_on_gpu = true;
    }
    /* A generated token reads its position from dec_io (a graph replays these launches). */
    dptr posp = g->pos;
    if (T == 1) {
        if (!g->region)
            TRY("upload position", decode_begin(e, NULL));
        posp = g->dec_io + 4;
    } else if (layer == g->first) {
        TRY("upload positions", kern_cuda_upload(c, g->pos, pos, (size_t)T * 4));
    }
    if (g->replaying) {
        g->pending = true; /* the graph records the marks */
        g->pending_T = T;
        return NULL;
    }
    if (layer == g->first && g->marks)
        TRY("timing mark", kern_cuda_mark(c, g->marks, 0));
    /* A generated token's GEMV inputs are quantised by the ops that produce them (q8: the
     * scratch they write them to), one launch fewer per GEMV. */
    dptr q8 = T == 1 ? g->scratch : 0;
    TRY("rmsnorm", kern_cuda_rmsnorm_q8(c, g->x, G->attn_norm, g->h, T, d, hp->rms_eps, q8));
    dptr q = g->q, k = g->k, v = g->v;
    if (T == 1 && G->qkv_one) {
        /* One GEMV over the stacked weights: q, k and v land back to back. */
        TRY("matmul_qkv", mmq(g, g->wtype, G->wq, qd + 2 * kvd, d, g->h, 1, g->q, q8));
        k = q + (dptr)(qd * 4);
        v = k + (dptr)(kvd * 4);
    } else {
        TRY("matmul_qkv", mmq(g, g->wtype, G->wq, qd, d, g->h, T, q, q8));
        TRY("matmul_qkv", mmq(g, g->wtype, G->wk, kvd, d, g->h, T, k, q8));
        TRY("matmul_qkv", mmq(g, g->wtype, G->wv, kvd, d, g->h, T, v, q8));
    }
    /* Q/K norms, RoPE and the f16 K/V cache store in one launch, at the positions on the
     * device (a generated token's: dec_io, which a graph replay reads). */
    TRY("qk_norm_rope", kern_cuda_qkv_post(c, q, k, v, G->q_norm, G->k_norm, posp, G->kcache, G->vcache, e->n_ctx,
                                           pos[0], T, (int)nh, (int)nkv, (int)hd, hp->rms_eps, hp->rope_base));
    float scale = 1.0f / sqrtf((float)hd);
    if (T == 1)
        TRY("attention", kern_cuda_attention_at(c, q, G->kcache, G->vcache, g->att, (int)nh, (int)nkv, (int)hd,
                                                pos[0] + 1, posp, scale, q8));
    else
        TRY("attention", kern_cuda_attention_causal(c, q, G->kcache, G->vcache, g->att, (int)nh, (int)nkv, (int)hd,
                                                    T, pos[0], scale));
    TRY("matmul_attn_out", mmq(g, g->wtype, G->wo, d, qd, g->att, T, g->o, q8));
    TRY("add_rmsnorm", kern_cuda_add_rmsnorm_q8(c, g->x, g->o, G->ffn_norm, g->h, T, d, hp->rms_eps, q8));
    if (T == 1) {
        /* Decode: the router and its top-k in one launch; one grouped GEMV over this token's
         * gate and up experts (2k jobs over the stacked gate and up weights), then the one
         * over its down experts. */
        TRY("router", kern_cuda_router_topk(c, G->router, g->h, d, (int)E, (int)K, true, g->logits, g->ids, g->rw,
                                            g->ids_gu, g->route_counter));
        TRY("moe_gate_up", kern_cuda_moe_gemv_q8(c, g->wtype, G->gate, 2 * (int)E, ff, d, g->ids_gu, 2 * (int)K, g->h,
                                                 1, g->gate, g->scratch));
        dptr up = g->gate + (dptr)(K * ff * 4);
        TRY("silu_mul", kern_cuda_silu_mul_q8(c, g->gate, up, g->gate, K * ff, g->scratch));
        TRY("moe_down", kern_cuda_moe_gemv_q8(c, g->wtype, G->down, (int)E, d, ff, g->ids, (int)K, g->gate, (int)K,
                                              g->down, g->scratch));
    } else {
        /* Prompt: every token's slots grouped by expert, each expert's weights read once. */
        TRY("router", kern_cuda_gemm(c, KERN_TYPE_F32, G->router, E, d, g->h, T, g->logits, g->scratch));
        TRY("topk", kern_cuda_moe_route(c, g->logits, T, (int)E, (int)K, true, g->ids, g->rw));
        TRY("moe_gate_up", kern_cuda_moe_gemm(c, g->wtype, G->gate, (int)E, ff, d, g->ids, T, (int)K, g->h, false,
                                              g->gate, g->scratch));
        TRY("moe_gate_up", kern_cuda_moe_gemm(c, g->wtype, G->up, (int)E, ff, d, g->ids, T, (int)K, g->h, false,
                                              g->up, g->scratch));
        TRY("silu_mul", kern_cuda_silu_mul(c, g->gate, g->up, g->gate, T * K * ff));
        TRY("moe_down", kern_cuda_moe_gemm(c, g->wtype, G->down, (int)E, d, ff, g->ids, T, (int)K, g->gate, true,
                                           g->down, g->scratch));
    }
    TRY("moe_sum", kern_cuda_moe_wsum(c, g->x, g->down, g->rw, T, (int)K, d));
    if (g->marks) {
        TRY("timing mark", kern_cuda_mark(c, g->marks, (int)(layer - g->first) + 1));
        g->pending = true;
        g->pending_T = T;
    } else {
        account_layer(e, layer, T, adg_now_ns() - t0);
    }
    return NULL;
}

adg_error *engine_gpu_output(kern_engine *e, uint32_t T, float *logits)
{
    engine_gpu *g = e->gpu;
    const kern_model_hparams *hp = &e->model->hp;
    kern_cuda_ctx *c = g->ctx;
    int il = -1;
    uint64_t t0 = adg_now_ns();
    dptr last = g->x + (dptr)((size_t)(T - 1) * hp->n_embd * 4);
    if (!g->x_on_gpu) {
        TRY("upload x", kern_cuda_upload(c, g->x, e->buf.x + (size_t)(T - 1) * hp->n_embd, (size_t)hp->n_embd * 4));
        last = g->x;
    }
    if (T == 1 && !g->region)
        TRY("upload position", decode_begin(e, NULL));
    int n_gpu = (int)(hp->n_layer - g->first);
    bool timed = g->marks && g->pending;
    if (!g->replaying) {
        kern_type ot = (kern_type)e->model->output->type;
        dptr q8 = ot != KERN_TYPE_F16 ? g->scratch : 0; /* the LM head is a GEMV: its input quantised by the norm */
        TRY("rmsnorm (output)", kern_cuda_rmsnorm_q8(c, last, g->output_norm, g->h, 1, hp->n_embd, hp->rms_eps, q8));
        TRY("lm_head", mmq(g, ot, g->output, hp->n_vocab, hp->n_embd, g->h, 1, g->vocab_logits, q8));
        if (timed)
            TRY("timing mark", kern_cuda_mark(c, g->marks, n_gpu + 1));
    }
    if (g->region)
        TRY("CUDA graph", decode_end(g));
    TRY("lm_head", kern_cuda_download(c, logits, g->vocab_logits, (size_t)hp->n_vocab * 4));
    uint64_t ns = adg_now_ns() - t0;
    if (timed) {
        double ms = 0;
        adg_error_free(kern_cuda_marks_ms(c, g->marks, n_gpu, n_gpu + 1, &ms));
        ns = (uint64_t)(ms * 1e6);
        account_marked(e);
    }
    kern_op_info info = {.op = "lm_head", .impl = KERN_IMPL_AUTO,
                         .flops = 2ull * hp->n_vocab * hp->n_embd, .bytes = e->model->output->nbytes, .ns = ns};
    snprintf(info.variant, sizeof info.variant, "cuda-%s", kern_ggml_type_name(e->model->output->type));
    engine_account(e, -1, OPK_LM_HEAD, &info, "CUDA");
    return NULL;
}

adg_error *engine_gpu_finish(kern_engine *e)
{
    engine_gpu *g = e->gpu;
    int il = -1;
    /* A ubatch without logits (not the last of a prompt): surface its errors here, not in
     * the next ubatch. */
    if (g->region)
        TRY("CUDA graph", decode_end(g));
    TRY("sync", kern_cuda_sync(g->ctx, "waiting for the GPU layers"));
    account_marked(e);
    return NULL;
}

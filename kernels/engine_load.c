/* Opening an engine: model checks, weights repacked once into the kernels' layout, the
 * KV cache and the activation buffers. */
#include "kernels/kern_engine.h"

#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/engine_internal.h"

/* rq: where the row-scaled copy goes under --amx-scales row (NULL: a weight that never
 * takes tiles in the prompt: the router, the output) */
static adg_error *weight(kern_engine *e, const kern_gguf_tensor *t, kern_weight **out, kern_rowq_weight **rq)
{
    int64_t n_mat = t->ne[2], n = t->ne[1], k = t->ne[0];
    const kern_type type = (kern_type)t->type;
    adg_error *err = kern_weight_new(e->cpu, type, n_mat, n, k, t->data, out);
    if (err)
        return adg_error_prefix(err, "tensor '%s'", t->name);
    if (rq && e->opts.amx_row_scales && (type == KERN_TYPE_Q4_0 || type == KERN_TYPE_Q8_0)) {
        if ((err = kern_rowq_weight_new(e->cpu, type, n_mat, n, k, t->data, rq)))
            return adg_error_hint(adg_error_prefix(err, "--amx-scales row: the row-scaled copy of tensor '%s'", t->name),
                                  "the copies take about one byte per weight more; drop --amx-scales row");
        e->rowq_bytes += kern_rowq_weight_bytes(*rq);
        e->weight_bytes += kern_rowq_weight_bytes(*rq);
    }
    e->weight_bytes += kern_weight_bytes(*out);
    /* The kernels keep their own repacked copy: drop the file's pages (unless GET_ROWS
     * still reads them: tied embeddings). */
    if (t != e->model->tok_embd)
        kern_gguf_release(e->model->gguf, t);
    return NULL;
}

#define ALLOC(p, n)                                                        \
    do {                                                                   \
        size_t n_ = (size_t)(n);                                           \
        if (!((p) = calloc(n_ > 0 ? n_ : 1, sizeof *(p))))                 \
            return adg_error_new(ADG_E_NOMEM, "out of memory for the engine's buffers"); \
    } while (0)

static adg_error *buffers(kern_engine *e)
{
    const kern_model_hparams *hp = &e->model->hp;
    size_t T = 512, d = hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    size_t K = hp->n_expert ? hp->n_expert_used : 1, ff = hp->n_expert ? hp->n_ff_exp : hp->n_ff;
    size_t E = hp->n_expert ? hp->n_expert : 1;
    engine_buf *b = &e->buf;
    size_t big = T * d > T * qd ? T * d : T * qd;
    ALLOC(b->x, T * d);
    ALLOC(b->h, T * d);
    ALLOC(b->q, T * qd);
    ALLOC(b->k, T * kvd);
    ALLOC(b->v, T * kvd);
    ALLOC(b->att, T * qd);
    ALLOC(b->o, big);
    ALLOC(b->router, T * E);
    ALLOC(b->rw, T * K);
    ALLOC(b->ids, T * K);
    ALLOC(b->pos, T);
    ALLOC(b->gate, T * K * ff);
    ALLOC(b->up, T * K * ff);
    ALLOC(b->down, T * K * d);
    ALLOC(e->logits, hp->n_vocab);
    ALLOC(e->stats, (size_t)(hp->n_layer + 1) * OPK_COUNT);
    size_t cache = (size_t)hp->n_layer * e->n_ctx * kvd;
    e->kcache = malloc(cache * sizeof *e->kcache);
    e->vcache = malloc(cache * sizeof *e->vcache);
    if (!e->kcache || !e->vcache)
        return adg_error_hint(adg_error_new(ADG_E_NOMEM, "cannot allocate the KV cache (%zu MiB)",
                                            2 * cache * sizeof *e->kcache >> 20),
                              "use a smaller context");
    return NULL;
}

static adg_error *open_inner(kern_engine *e)
{
    const kern_engine_opts *o = &e->opts;
    adg_error *err = kern_model_load(o->model_path, &e->model);
    if (err)
        return err;
    const kern_model_hparams *hp = &e->model->hp;
    const kern_gguf *g = e->model->gguf;
    if (g->tensor_bytes > (64u << 20) && g->disk_bytes < g->tensor_bytes / 4)
        return adg_error_hint(adg_error_new(ADG_E_USAGE,
                                            "%s holds %.0f MiB of tensors but only %.0f MiB are on disk: it is a "
                                            "sparse layout file without weights",
                                            g->path, (double)g->tensor_bytes / (1 << 20), (double)g->disk_bytes / (1 << 20)),
                              "sparse files (model create --sparse) are for 'amxdiag model inspect'; create the "
                              "model without --sparse to run it");
    uint32_t n_gpu = o->ngl < hp->n_layer ? o->ngl : hp->n_layer;
    e->gpu_first = hp->n_layer - n_gpu;
    e->n_ctx = o->n_ctx ? o->n_ctx : 4096;
    if (e->n_ctx > 1u << 20)
        return adg_error_new(ADG_E_USAGE, "context of %u positions is too large", e->n_ctx);
    kern_cpu_opts co = {.impl = o->impl, .threads = o->threads, .pin = o->pin};
    if ((err = kern_cpu_new(&co, &e->cpu)))
        return err;
    const kern_impl impl = kern_cpu_impl(e->cpu);
    if (o->amx_row_scales && impl != KERN_IMPL_AMX && impl != KERN_IMPL_AMX_EMU)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED,
                                            "--amx-scales row changes what the AMX tile products compute, and these "
                                            "kernels (%s) use no tiles", kern_impl_name(impl)),
                              o->impl == KERN_IMPL_AUTO
                                  ? "this machine offers no usable AMX (see `amxdiag probe`); --cpu-kernels amx-emu "
                                    "runs the same arithmetic in the tile emulator, slowly"
                                  : "use --cpu-kernels amx (or amx-emu), or drop --amx-scales");
    e->layers = calloc(hp->n_layer, sizeof *e->layers);
    if (!e->layers)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    uint64_t t0 = adg_now_ns();
    for (uint32_t il = 0; il < e->gpu_first; il++) {
        const kern_model_layer *ML = &e->model->layers[il];
        engine_layer *L = &e->layers[il];
        if ((err = weight(e, ML->wq, &L->wq, &L->rq_wq)) || (err = weight(e, ML->wk, &L->wk, &L->rq_wk)) ||
            (err = weight(e, ML->wv, &L->wv, &L->rq_wv)) || (err = weight(e, ML->wo, &L->wo, &L->rq_wo)))
            return err;
        if (hp->n_expert) {
            if ((err = weight(e, ML->gate_inp, &L->router, NULL)) ||
                (err = weight(e, ML->gate_exps, &L->gate_exps, &L->rq_gate_exps)) ||
                (err = weight(e, ML->up_exps, &L->up_exps, &L->rq_up_exps)) ||
                (err = weight(e, ML->down_exps, &L->down_exps, &L->rq_down_exps)))
                return err;
        } else if ((err = weight(e, ML->ffn_gate, &L->ffn_gate, &L->rq_ffn_gate)) ||
                   (err = weight(e, ML->ffn_up, &L->ffn_up, &L->rq_ffn_up)) ||
                   (err = weight(e, ML->ffn_down, &L->ffn_down, &L->rq_ffn_down))) {
            return err;
        }
    }
    if (n_gpu) {
        if ((err = engine_gpu_open(e, e->gpu_first, &e->gpu)))
            return err;
    } else if ((err = weight(e, e->model->output, &e->output, NULL))) {
        return err;
    }
    adg_info("engine: %s weights repacked in %.2f s (%s)", e->model->name, (double)(adg_now_ns() - t0) / 1e9,
             kern_cpu_describe(e->cpu));
    if (o->amx_row_scales && e->rowq_bytes == 0)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED,
                                            "--amx-scales row re-quantises Q4_0/Q8_0 weights, and %s has none in its "
                                            "CPU layers (main type %s%s)",
                                            e->model->name ? e->model->name : o->model_path,
                                            kern_ggml_type_name(e->model->main_type),
                                            e->gpu_first == 0 ? ", every layer on the GPU" : ""),
                              "drop --amx-scales row: it applies to Q4_0/Q8_0 weights only");
    if (o->amx_row_scales)
        adg_info("engine: --amx-scales row: %.0f MiB of row-scaled copies for the prompt's tile products",
                 (double)e->rowq_bytes / (1 << 20));
    return buffers(e);
}

adg_error *kern_engine_open(const kern_engine_opts *o, kern_engine **out)
{
    *out = NULL;
    if (!o || !o->model_path)
        return adg_error_new(ADG_E_USAGE, "no model given");
    kern_engine *e = calloc(1, sizeof *e);
    if (!e)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    e->opts = *o;
    e->m_tps = e->m_lat = -1;
    const char *fuse = getenv("AMXDIAG_ENGINE_FUSE");   /* 0: the per-op schedule (A/B runs) */
    e->fuse = !(fuse && strcmp(fuse, "0") == 0);
    /* 1: waiting workers of the fused schedule prefetch their next item's weights.  Off by
     * default: on the device (16 vCPUs, qwen3-moe-small tg128) it cost 4-5 % (q4_0 452 vs
     * 472 t/s, q8_0 284 vs 298). */
    const char *pf = getenv("AMXDIAG_ENGINE_PREFETCH");
    e->fuse_prefetch = pf && strcmp(pf, "1") == 0;
    /* rows: the down phase as session 3's first schedule (an item = a row chunk of every
     * chosen expert, one item per worker on the small preset), for A/B runs */
    const char *dn = getenv("AMXDIAG_ENGINE_DOWN");
    e->fuse_down_rows = dn && strcmp(dn, "rows") == 0;
    adg_error *err = open_inner(e);
    if (err) {
        kern_engine_close(e);
        return err;
    }
    *out = e;
    return NULL;
}

void kern_engine_close(kern_engine *e)
{
    if (!e)
        return;
    if (e->layers && e->model)
        for (uint32_t il = 0; il < e->model->hp.n_layer; il++) {
            engine_layer *L = &e->layers[il];
            kern_weight *ws[] = {L->wq, L->wk, L->wv, L->wo, L->router, L->gate_exps, L->up_exps, L->down_exps,
                                 L->ffn_gate, L->ffn_up, L->ffn_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                kern_weight_free(ws[i]);
            kern_rowq_weight *rq[] = {L->rq_wq, L->rq_wk, L->rq_wv, L->rq_wo, L->rq_gate_exps, L->rq_up_exps,
                                      L->rq_down_exps, L->rq_ffn_gate, L->rq_ffn_up, L->rq_ffn_down};
            for (size_t i = 0; i < sizeof rq / sizeof rq[0]; i++)
                kern_rowq_weight_free(rq[i]);
        }
    kern_weight_free(e->output);
    engine_gpu_close(e->gpu);
    engine_fused_free(e->fz);
    free(e->layers);
    engine_buf *b = &e->buf;
    void *bufs[] = {b->x, b->h, b->q, b->k, b->v, b->att, b->o, b->router, b->rw, b->gate, b->up, b->down, b->ids, b->pos};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(e->logits);
    free(e->stats);
    free(e->kcache);
    free(e->vcache);
    kern_cpu_free(e->cpu);
    kern_model_free(e->model);
    free(e);
}

void engine_stats_reset(kern_engine *e)
{
    if (e->stats && e->model)
        memset(e->stats, 0, (size_t)(e->model->hp.n_layer + 1) * OPK_COUNT * sizeof *e->stats);
}

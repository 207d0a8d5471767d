/* Model loading: hyper-parameters from llama.cpp's metadata keys, tensors by llama.cpp's
 * names, every shape and type checked before the engine touches a byte. */
#include "kernels/kern_model.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kern_arch_name(kern_arch a)
{
    return a == KERN_ARCH_LLAMA ? "llama" : "qwen3moe";
}

static adg_error *key_u32(const kern_gguf *g, const char *arch, const char *k, bool req, uint32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    return kern_gguf_get_u32(g, key, req, out);
}

static adg_error *key_f32(const kern_gguf *g, const char *arch, const char *k, bool req, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    return kern_gguf_get_f32(g, key, req, out);
}

adg_error *kern_model_read_hparams(const kern_gguf *g, kern_model_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    char *arch = NULL;
    adg_error *e = kern_gguf_get_str(g, "general.architecture", true, &arch);
    if (e)
        return e;
    if (!strcmp(arch, "qwen3moe"))
        hp->arch = KERN_ARCH_QWEN3MOE;
    else if (!strcmp(arch, "llama"))
        hp->arch = KERN_ARCH_LLAMA;
    else {
        e = adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "%s: architecture '%s' is not supported", g->path, arch),
                           "amxdiag runs qwen3moe and llama models; 'amxdiag model inspect' still lists its tensors");
        free(arch);
        return e;
    }
    hp->rope_base = 10000.0f;
    hp->rms_eps = 1e-6f;
    hp->n_ctx_train = 4096;
    if ((e = key_u32(g, arch, "block_count", true, &hp->n_layer)) ||
        (e = key_u32(g, arch, "embedding_length", true, &hp->n_embd)) ||
        (e = key_u32(g, arch, "attention.head_count", true, &hp->n_head)) ||
        (e = key_u32(g, arch, "context_length", false, &hp->n_ctx_train)) ||
        (e = key_u32(g, arch, "feed_forward_length", false, &hp->n_ff)) ||
        (e = key_u32(g, arch, "expert_count", false, &hp->n_expert)) ||
        (e = key_u32(g, arch, "expert_used_count", false, &hp->n_expert_used)) ||
        (e = key_f32(g, arch, "rope.freq_base", false, &hp->rope_base)) ||
        (e = key_f32(g, arch, "attention.layer_norm_rms_epsilon", false, &hp->rms_eps)))
        goto out;
    hp->n_head_kv = hp->n_head;
    if ((e = key_u32(g, arch, "attention.head_count_kv", false, &hp->n_head_kv)))
        goto out;
    hp->head_dim = hp->n_head ? hp->n_embd / hp->n_head : 0;
    if ((e = key_u32(g, arch, "attention.key_length", false, &hp->head_dim)))
        goto out;
    uint32_t vlen = hp->head_dim;
    if ((e = key_u32(g, arch, "attention.value_length", false, &vlen)))
        goto out;
    hp->n_ff_exp = hp->n_ff;
    if ((e = key_u32(g, arch, "expert_feed_forward_length", false, &hp->n_ff_exp)))
        goto out;
    const kern_gguf_kv *tok = kern_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (tok && tok->type == KERN_GGUF_ARRAY && tok->arr_n <= UINT32_MAX)
        hp->n_vocab = (uint32_t)tok->arr_n;
    const kern_gguf_tensor *te = kern_gguf_find_tensor(g, "token_embd.weight");
    if (!hp->n_vocab && te && te->ne[1] <= UINT32_MAX)
        hp->n_vocab = (uint32_t)te->ne[1];

    const char *bad = NULL;
    if (hp->n_layer == 0 || hp->n_layer > 4096)
        bad = "block_count";
    else if (hp->n_embd == 0 || hp->n_embd > 1u << 20)
        bad = "embedding_length";
    else if (hp->n_head == 0 || hp->n_head > 4096)
        bad = "attention.head_count";
    else if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        bad = "attention.head_count_kv (must divide head_count)";
    else if (hp->head_dim == 0 || hp->head_dim % 2 || hp->head_dim > 1024)
        bad = "attention.key_length";
    else if (vlen != hp->head_dim)
        bad = "attention.value_length (must equal key_length)";
    else if (hp->n_expert > 4096 || (hp->n_expert && (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert)))
        bad = "expert_count / expert_used_count";
    else if (hp->n_expert && (hp->n_ff_exp == 0 || hp->n_ff_exp > 1u << 20))
        bad = "expert_feed_forward_length";
    else if (!hp->n_expert && (hp->n_ff == 0 || hp->n_ff > 1u << 20))
        bad = "feed_forward_length";
    else if (hp->arch == KERN_ARCH_QWEN3MOE && !hp->n_expert)
        bad = "expert_count (qwen3moe needs experts)";
    else if (!(hp->rope_base > 0) || !isfinite(hp->rope_base))
        bad = "rope.freq_base";
    else if (!(hp->rms_eps > 0) || !isfinite(hp->rms_eps))
        bad = "attention.layer_norm_rms_epsilon";
    else if (hp->n_vocab == 0)
        bad = "vocabulary (tokenizer.ggml.tokens)";
    if (bad)
        e = adg_error_new(ADG_E_FORMAT, "%s: metadata %s.%s has an unusable value", g->path, arch, bad);
out:
    free(arch);
    return e;
}

/* ---- tensor checks ---- */

static adg_error *want(const kern_gguf *g, const char *name, uint32_t n_dims, int64_t n0, int64_t n1, int64_t n2,
                       bool matrix, const kern_gguf_tensor **out)
{
    const kern_gguf_tensor *t = kern_gguf_find_tensor(g, name);
    if (!t)
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' is missing", g->path, name),
                              "the file is not a complete model of its architecture");
    int64_t exp[3] = {n0, n1, n2};
    for (uint32_t d = 0; d < 3; d++)
        if (t->ne[d] != (d < n_dims ? exp[d] : 1))
            return adg_error_new(ADG_E_FORMAT,
                                 "%s: tensor '%s' has shape [%lld, %lld, %lld], the hyper-parameters need [%lld, %lld, %lld]",
                                 g->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                                 (long long)n0, (long long)(n_dims > 1 ? n1 : 1), (long long)(n_dims > 2 ? n2 : 1));
    if (!kern_ggml_type_supported(t->type))
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which amxdiag's engine does not compute",
                                            g->path, name, kern_ggml_type_name(t->type)),
                              "the engine computes f32, f16, bf16, q4_0 and q8_0; requantize with llama-quantize "
                              "(e.g. Q4_0) or create a synthetic model with 'amxdiag model create'");
    if (!matrix && t->type != KERN_TYPE_F32)
        return adg_error_new(ADG_E_UNSUPPORTED, "%s: norm tensor '%s' has type %s (f32 expected)", g->path, name,
                             kern_ggml_type_name(t->type));
    *out = t;
    return NULL;
}

static adg_error *load_tensors(kern_model *m)
{
    const kern_gguf *g = m->gguf;
    const kern_model_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    adg_error *e;
    if ((e = want(g, "token_embd.weight", 2, d, hp->n_vocab, 1, true, &m->tok_embd)) ||
        (e = want(g, "output_norm.weight", 1, d, 1, 1, false, &m->output_norm)))
        return e;
    if (kern_gguf_find_tensor(g, "output.weight")) {
        if ((e = want(g, "output.weight", 2, d, hp->n_vocab, 1, true, &m->output)))
            return e;
    } else {
        m->output = m->tok_embd; /* tied embeddings, as llama.cpp does */
    }
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    char n[96];
#define T(field, suffix, nd, a, b, c, mat)                                  \
    do {                                                                    \
        snprintf(n, sizeof n, "blk.%u." suffix ".weight", il);              \
        if ((e = want(g, n, nd, a, b, c, mat, &L->field)))                  \
            return e;                                                       \
    } while (0)
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        kern_model_layer *L = &m->layers[il];
        T(attn_norm, "attn_norm", 1, d, 1, 1, false);
        T(wq, "attn_q", 2, d, qd, 1, true);
        T(wk, "attn_k", 2, d, kvd, 1, true);
        T(wv, "attn_v", 2, d, kvd, 1, true);
        T(wo, "attn_output", 2, qd, d, 1, true);
        if (hp->arch == KERN_ARCH_QWEN3MOE) {
            T(q_norm, "attn_q_norm", 1, hp->head_dim, 1, 1, false);
            T(k_norm, "attn_k_norm", 1, hp->head_dim, 1, 1, false);
        }
        T(ffn_norm, "ffn_norm", 1, d, 1, 1, false);
        if (hp->n_expert) {
            T(gate_inp, "ffn_gate_inp", 2, d, hp->n_expert, 1, true);
            T(gate_exps, "ffn_gate_exps", 3, d, hp->n_ff_exp, hp->n_expert, true);
            T(up_exps, "ffn_up_exps", 3, d, hp->n_ff_exp, hp->n_expert, true);
            T(down_exps, "ffn_down_exps", 3, hp->n_ff_exp, d, hp->n_expert, true);
        } else {
            T(ffn_gate, "ffn_gate", 2, d, hp->n_ff, 1, true);
            T(ffn_up, "ffn_up", 2, d, hp->n_ff, 1, true);
            T(ffn_down, "ffn_down", 2, hp->n_ff, d, 1, true);
        }
    }
#undef T
    return NULL;
}

adg_error *kern_model_from_gguf(kern_gguf *g, kern_model **out)
{
    *out = NULL;
    kern_model *m = calloc(1, sizeof *m);
    if (!m) {
        kern_gguf_close(g);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    m->gguf = g;
    adg_error *e = kern_model_read_hparams(g, &m->hp);
    if (!e)
        e = load_tensors(m);
    if (!e)
        e = kern_gguf_get_str(g, "general.name", false, &m->name);
    if (e) {
        kern_model_free(m);
        return e;
    }
    if (!m->name) {
        char *c = strdup(g->path);
        m->name = c ? strdup(basename(c)) : NULL;
        free(c);
    }
    /* Parameters and the dominant type by bytes. */
    uint64_t by_type[KERN_GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const kern_gguf_tensor *t = &g->tensors[i];
        m->n_params += (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        by_type[t->type] += t->nbytes;
    }
    for (uint32_t t = 0; t < KERN_GGML_TYPE_COUNT; t++)
        if (by_type[t] > by_type[m->main_type])
            m->main_type = t;
    *out = m;
    return NULL;
}

adg_error *kern_model_load(const char *path, kern_model **out)
{
    *out = NULL;
    kern_gguf *g;
    adg_error *e = kern_gguf_open(path, &g);
    if (e)
        return e;
    return kern_model_from_gguf(g, out);
}

void kern_model_free(kern_model *m)
{
    if (!m)
        return;
    kern_gguf_close(m->gguf);
    free(m->layers);
    free(m->name);
    free(m);
}

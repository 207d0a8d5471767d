/* Which role each tensor plays, which op consumes it, and whether AMX can take it, under
 * llama.cpp's rules and under amxdiag's own kernels.  The rules are data-like
 * predicates so that a new rule set is a new function. */
#include "kernels/kern_model.h"

#include <stdlib.h>
#include <string.h>

static const char *const role_names[KERN_ROLE_COUNT] = {
    "attention projections", "experts", "dense FFN", "router", "embeddings", "norms", "output", "other",
};
static const char *const role_keys[KERN_ROLE_COUNT] = {
    "attention", "experts", "ffn", "router", "embeddings", "norms", "output", "other",
};

const char *kern_role_name(kern_role r) { return r < KERN_ROLE_COUNT ? role_names[r] : "?"; }
const char *kern_role_key(kern_role r) { return r < KERN_ROLE_COUNT ? role_keys[r] : "?"; }

const char *kern_consumer_name(kern_consumer c)
{
    switch (c) {
    case KERN_OP_MUL_MAT: return "MUL_MAT";
    case KERN_OP_MUL_MAT_ID: return "MUL_MAT_ID";
    case KERN_OP_GET_ROWS: return "GET_ROWS";
    case KERN_OP_MUL: return "MUL";
    default: return "-";
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void kern_model_classify(const char *name, kern_tensor_class *c)
{
    c->role = KERN_ROLE_OTHER;
    c->op = KERN_OP_NONE;
    c->layer = -1;
    if (!strncmp(name, "blk.", 4)) {
        char *end;
        long l = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.' && l >= 0 && l < 1 << 20)
            c->layer = (int)l;
    }
    static const struct {
        const char *part;
        kern_role role;
        kern_consumer op;
    } rules[] = {
        {"_norm.", KERN_ROLE_NORM, KERN_OP_MUL},           /* attn_norm, attn_q_norm, ffn_norm, output_norm */
        {".attn_q.", KERN_ROLE_ATTN, KERN_OP_MUL_MAT},
        {".attn_k.", KERN_ROLE_ATTN, KERN_OP_MUL_MAT},
        {".attn_v.", KERN_ROLE_ATTN, KERN_OP_MUL_MAT},
        {".attn_qkv.", KERN_ROLE_ATTN, KERN_OP_MUL_MAT},
        {".attn_output.", KERN_ROLE_ATTN, KERN_OP_MUL_MAT},
        {"_exps.", KERN_ROLE_EXPERTS, KERN_OP_MUL_MAT_ID},
        {".ffn_gate_inp.", KERN_ROLE_ROUTER, KERN_OP_MUL_MAT},
        {".ffn_gate.", KERN_ROLE_FFN, KERN_OP_MUL_MAT},
        {".ffn_up.", KERN_ROLE_FFN, KERN_OP_MUL_MAT},
        {".ffn_down.", KERN_ROLE_FFN, KERN_OP_MUL_MAT},
        {"_shexp.", KERN_ROLE_FFN, KERN_OP_MUL_MAT},
    };
    if (!strncmp(name, "token_embd.", 11)) {
        c->role = KERN_ROLE_EMBED;
        c->op = KERN_OP_GET_ROWS;
        return;
    }
    if (!strncmp(name, "output.", 7)) {
        c->role = KERN_ROLE_OUTPUT;
        c->op = KERN_OP_MUL_MAT;
        return;
    }
    char dotted[80];
    size_t n = strlen(name);
    if (n + 2 > sizeof dotted)
        return;
    dotted[0] = '.';
    memcpy(dotted + 1, name, n + 1);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (strstr(dotted, rules[i].part)) {
            c->role = rules[i].role;
            c->op = rules[i].op;
            if (ends_with(name, ".bias"))
                c->op = KERN_OP_NONE;
            return;
        }
}

bool kern_model_on_gpu(const kern_tensor_class *c, uint32_t n_layer, uint32_t ngl)
{
    if (ngl == 0)
        return false;
    if (c->layer >= 0)
        return (uint32_t)c->layer + (ngl < n_layer ? ngl : n_layer) >= n_layer;
    /* Input layer stays on the CPU; output layer and final norm go with any offload. */
    return c->role == KERN_ROLE_OUTPUT || (c->role == KERN_ROLE_NORM);
}

kern_amx_verdict kern_amx_llamacpp(const kern_gguf_tensor *t, const kern_tensor_class *c, bool on_gpu)
{
    if (on_gpu)
        return (kern_amx_verdict){false, "offloaded to the GPU"};
    if (c->op == KERN_OP_MUL_MAT_ID)
        return (kern_amx_verdict){false, "MUL_MAT_ID: llama.cpp's AMX backend takes MUL_MAT only"};
    if (c->op != KERN_OP_MUL_MAT)
        return (kern_amx_verdict){false, "not a matrix multiplication"};
    if (c->layer < 0)
        return (kern_amx_verdict){false, "output layer: llama.cpp keeps it out of the AMX buffer"};
    switch (t->type) {
    case 2: case 3: case 8: case 12: case 13: case 14: case 23: break; /* Q4_0 Q4_1 Q8_0 Q4_K Q5_K Q6_K IQ4_XS */
    default: return (kern_amx_verdict){false, "type without an AMX kernel in llama.cpp"};
    }
    const kern_ggml_type_info *ti = kern_ggml_type(t->type);
    if (t->ne[1] % 32)
        return (kern_amx_verdict){false, "N is not a multiple of 32"};
    if (!ti || t->ne[0] % ti->blck)
        return (kern_amx_verdict){false, "K is not a multiple of the block"};
    return (kern_amx_verdict){true, "MUL_MAT on an AMX type"};
}

kern_amx_verdict kern_amx_amxdiag(const kern_gguf_tensor *t, const kern_tensor_class *c, bool on_gpu)
{
    if (on_gpu)
        return (kern_amx_verdict){false, "offloaded to the GPU"};
    if (c->op != KERN_OP_MUL_MAT && c->op != KERN_OP_MUL_MAT_ID)
        return (kern_amx_verdict){false, "not a matrix multiplication"};
    if (t->type != KERN_TYPE_Q4_0 && t->type != KERN_TYPE_Q8_0 && t->type != KERN_TYPE_BF16)
        return (kern_amx_verdict){false, "type without an amxdiag AMX kernel (q4_0, q8_0, bf16 have one)"};
    if (t->ne[1] % 16)
        return (kern_amx_verdict){false, "N is not a multiple of 16"};
    if (t->ne[0] % 32)
        return (kern_amx_verdict){false, "K is not a multiple of 32"};
    return (kern_amx_verdict){true, c->op == KERN_OP_MUL_MAT_ID ? "MUL_MAT_ID on AMX tiles" : "MUL_MAT on AMX tiles"};
}

adg_error *kern_model_analyse(const kern_gguf *g, uint32_t ngl, kern_model_analysis *a)
{
    memset(a, 0, sizeof *a);
    a->ngl = ngl;
    adg_error *e = kern_model_read_hparams(g, &a->hp);
    if (e) {
        /* Inspect still lists the tensors of a model it cannot run. */
        a->hp_error = strdup(adg_error_msg(e));
        adg_error_free(e);
    } else {
        a->hp_ok = true;
    }
    if ((e = kern_gguf_get_str(g, "general.architecture", false, &a->arch_str)) ||
        (e = kern_gguf_get_str(g, "general.name", false, &a->name))) {
        kern_model_analysis_free(a);
        return e;
    }
    /* Without hyper-parameters, the largest layer index stands in for the layer count. */
    uint32_t n_layer = a->hp.n_layer;
    if (!a->hp_ok)
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            kern_tensor_class c;
            kern_model_classify(g->tensors[i].name, &c);
            if (c.layer >= 0 && (uint32_t)c.layer + 1 > n_layer)
                n_layer = (uint32_t)c.layer + 1;
        }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const kern_gguf_tensor *t = &g->tensors[i];
        kern_tensor_class c;
        kern_model_classify(t->name, &c);
        kern_role_stats *r = &a->role[c.role];
        bool gpu = kern_model_on_gpu(&c, n_layer, ngl);
        uint64_t params = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        r->tensors++;
        r->bytes += t->nbytes;
        r->params += params;
        r->op = c.op;
        if (t->type < 32)
            r->type_mask_lo |= 1u << t->type;
        else
            r->type_hi = true;
        if (gpu) {
            r->gpu_bytes += t->nbytes;
            a->gpu_bytes += t->nbytes;
        } else {
            r->cpu_bytes += t->nbytes;
            a->cpu_bytes += t->nbytes;
        }
        if (kern_amx_llamacpp(t, &c, gpu).eligible) {
            r->amx_llamacpp += t->nbytes;
            a->amx_llamacpp += t->nbytes;
        }
        if (kern_amx_amxdiag(t, &c, gpu).eligible) {
            r->amx_amxdiag += t->nbytes;
            a->amx_amxdiag += t->nbytes;
        }
        if (!kern_ggml_type_supported(t->type))
            a->unsupported_tensors++;
        a->total_bytes += t->nbytes;
        a->total_params += params;
    }
    return NULL;
}

void kern_model_analysis_free(kern_model_analysis *a)
{
    free(a->hp_error);
    free(a->arch_str);
    free(a->name);
    memset(a, 0, sizeof *a);
}

/* Synthetic models: llama.cpp-compatible GGUF files with deterministic random weights.
 *
 * Every row of every tensor draws from its own counter-based random stream (seed,
 * tensor, row), so the bytes do not depend on the thread count or the order in which
 * rows are written.  Scales keep activations bounded through the layers: projections
 * ~ U with std 1/sqrt(fan_in), norms ~ 1, embeddings std 1. */
#include "kernels/kern_model.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"

static const kern_model_preset presets[] = {
    {"qwen3-30b-a3b", "Qwen3-30B-A3B shape: 48 layers, d=2048, 32/4 heads of 128, 128 experts of 768 (8 used)",
     {KERN_ARCH_QWEN3MOE, 48, 2048, 32, 4, 128, 6144, 128, 8, 768, 151936, 40960, 1e6f, 1e-6f}},
    {"qwen3-moe-small", "qwen3moe for benchmarks (~1 GB in q4_0): 16 layers, d=1024, 16/4 heads of 128, 64 experts of 512 (8 used)",
     {KERN_ARCH_QWEN3MOE, 16, 1024, 16, 4, 128, 3072, 64, 8, 512, 32768, 32768, 1e6f, 1e-6f}},
    {"tiny", "qwen3moe for tests (~5 MB in q4_0): 4 layers, d=256, 4/2 heads of 64, 8 experts of 256 (2 used)",
     {KERN_ARCH_QWEN3MOE, 4, 256, 4, 2, 64, 768, 8, 2, 256, 2048, 4096, 1e6f, 1e-6f}},
    {"llama-tiny", "dense llama for tests: 4 layers, d=256, 4/2 heads of 64, FFN 768",
     {KERN_ARCH_LLAMA, 4, 256, 4, 2, 64, 768, 0, 0, 0, 2048, 4096, 10000.0f, 1e-5f}},
};

const kern_model_preset *kern_model_presets(int *n)
{
    *n = (int)(sizeof presets / sizeof presets[0]);
    return presets;
}

const kern_model_preset *kern_model_preset_find(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return &presets[i];
    return NULL;
}

/* ---- random numbers: splitmix64 over (seed, tensor, row) ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- tensor plan ---- */

typedef enum init_kind { INIT_UNIFORM, INIT_NORM } init_kind;

typedef struct plan_tensor {
    char name[64];
    uint32_t type, n_dims;
    int64_t ne[3];
    init_kind init;
    float std;           /* for INIT_UNIFORM */
    size_t index;        /* in the writer */
    uint64_t rows, row_bytes;
} plan_tensor;

typedef struct plan {
    plan_tensor *t;
    size_t n, cap;
} plan;

static adg_error *add(plan *p, uint32_t type, init_kind init, float std, uint32_t n_dims, int64_t n0, int64_t n1,
                      int64_t n2, const char *fmt, int layer)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        plan_tensor *nt = realloc(p->t, cap * sizeof *nt);
        if (!nt)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        p->t = nt;
        p->cap = cap;
    }
    plan_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->type = type;
    t->init = init;
    t->std = std;
    t->n_dims = n_dims;
    t->ne[0] = n0;
    t->ne[1] = n1;
    t->ne[2] = n2;
    t->rows = (uint64_t)n1 * (uint64_t)n2;
    t->row_bytes = kern_row_size(type, n0);
    return NULL;
}

static adg_error *build_plan(const kern_model_hparams *hp, kern_type q, plan *p)
{
    int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = (int64_t)hp->n_head_kv * hp->head_dim;
    const uint32_t F = KERN_TYPE_F32;
    float sd = 1.0f / sqrtf((float)d);
    adg_error *e;
    /* llama.cpp's order: token_embd, per-layer tensors, output_norm, output. */
    if ((e = add(p, q, INIT_UNIFORM, 1.0f, 2, d, hp->n_vocab, 1, "token_embd.weight", 0)))
        return e;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        int l = (int)il;
        if ((e = add(p, F, INIT_NORM, 0, 1, d, 1, 1, "blk.%d.attn_norm.weight", l)) ||
            (e = add(p, q, INIT_UNIFORM, sd, 2, d, qd, 1, "blk.%d.attn_q.weight", l)) ||
            (e = add(p, q, INIT_UNIFORM, sd, 2, d, kvd, 1, "blk.%d.attn_k.weight", l)) ||
            (e = add(p, q, INIT_UNIFORM, sd, 2, d, kvd, 1, "blk.%d.attn_v.weight", l)) ||
            (e = add(p, q, INIT_UNIFORM, 1.0f / sqrtf((float)qd), 2, qd, d, 1, "blk.%d.attn_output.weight", l)))
            return e;
        if (hp->arch == KERN_ARCH_QWEN3MOE &&
            ((e = add(p, F, INIT_NORM, 0, 1, hp->head_dim, 1, 1, "blk.%d.attn_q_norm.weight", l)) ||
             (e = add(p, F, INIT_NORM, 0, 1, hp->head_dim, 1, 1, "blk.%d.attn_k_norm.weight", l))))
            return e;
        if ((e = add(p, F, INIT_NORM, 0, 1, d, 1, 1, "blk.%d.ffn_norm.weight", l)))
            return e;
        if (hp->n_expert) {
            /* The router stays f32 as llama-quantize leaves it; a larger spread keeps the
             * top-k choice away from ties. */
            if ((e = add(p, F, INIT_UNIFORM, 4.0f * sd, 2, d, hp->n_expert, 1, "blk.%d.ffn_gate_inp.weight", l)) ||
                (e = add(p, q, INIT_UNIFORM, sd, 3, d, hp->n_ff_exp, hp->n_expert, "blk.%d.ffn_gate_exps.weight", l)) ||
                (e = add(p, q, INIT_UNIFORM, 1.0f / sqrtf((float)hp->n_ff_exp), 3, hp->n_ff_exp, d, hp->n_expert,
                         "blk.%d.ffn_down_exps.weight", l)) ||
                (e = add(p, q, INIT_UNIFORM, sd, 3, d, hp->n_ff_exp, hp->n_expert, "blk.%d.ffn_up_exps.weight", l)))
                return e;
        } else {
            if ((e = add(p, q, INIT_UNIFORM, sd, 2, d, hp->n_ff, 1, "blk.%d.ffn_gate.weight", l)) ||
                (e = add(p, q, INIT_UNIFORM, 1.0f / sqrtf((float)hp->n_ff), 2, hp->n_ff, d, 1, "blk.%d.ffn_down.weight", l)) ||
                (e = add(p, q, INIT_UNIFORM, sd, 2, d, hp->n_ff, 1, "blk.%d.ffn_up.weight", l)))
                return e;
        }
    }
    if ((e = add(p, F, INIT_NORM, 0, 1, d, 1, 1, "output_norm.weight", 0)) ||
        (e = add(p, q, INIT_UNIFORM, sd, 2, d, hp->n_vocab, 1, "output.weight", 0)))
        return e;
    for (size_t i = 0; i < p->n; i++)
        if (!p->t[i].row_bytes)
            return adg_error_hint(adg_error_new(ADG_E_USAGE, "tensor %s: row length %lld does not fit %s's block of %zu",
                                                p->t[i].name, (long long)p->t[i].ne[0], kern_type_name(p->t[i].type),
                                                kern_type_block_size(p->t[i].type)),
                                  "use --quant bf16 or a preset whose widths are multiples of 32");
    return NULL;
}

/* ---- metadata ---- */

/* GPT-2 byte-level BPE maps each byte to a printable code point (bytes_to_unicode). */
static void byte_token(unsigned b, char out[8])
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
                n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static adg_error *write_vocab(kern_gguf_writer *w, uint32_t n_vocab)
{
    if (n_vocab < 257 + 3)
        return adg_error_new(ADG_E_USAGE, "vocabulary of %u tokens is too small (260 needed)", n_vocab);
    char **tok = calloc(n_vocab, sizeof *tok);
    int32_t *type = calloc(n_vocab, sizeof *type);
    adg_error *e = NULL;
    if (!tok || !type) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < n_vocab && !e; i++) {
        char buf[32];
        type[i] = 1; /* LLAMA_TOKEN_TYPE_NORMAL */
        if (i < 256)
            byte_token(i, buf);
        else if (i == 256)
            snprintf(buf, sizeof buf, "\xc4\xa0\xc4\xa0"); /* two spaces, the one merge's result */
        else if (i == n_vocab - 3)
            snprintf(buf, sizeof buf, "<|endoftext|>");
        else if (i == n_vocab - 2)
            snprintf(buf, sizeof buf, "<|im_start|>");
        else if (i == n_vocab - 1)
            snprintf(buf, sizeof buf, "<|im_end|>");
        else
            snprintf(buf, sizeof buf, "[t%u]", i);
        if (i + 3 >= n_vocab)
            type[i] = 3; /* CONTROL */
        if (!(tok[i] = strdup(buf)))
            e = adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    /* One merge ("Ġ Ġ" -> "ĠĠ"): llama.cpp's BPE vocabulary needs the merges key, and
     * some GGUF writers refuse empty arrays. */
    const char *merges[1] = {"\xc4\xa0 \xc4\xa0"};
    if (!e && !(e = kern_gguf_w_str(w, "tokenizer.ggml.model", "gpt2")) &&
        !(e = kern_gguf_w_str(w, "tokenizer.ggml.pre", "qwen2")) &&
        !(e = kern_gguf_w_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, n_vocab)) &&
        !(e = kern_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", type, n_vocab)) &&
        !(e = kern_gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, 1)) &&
        !(e = kern_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", n_vocab - 1)) &&
        !(e = kern_gguf_w_u32(w, "tokenizer.ggml.padding_token_id", n_vocab - 3)) &&
        !(e = kern_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", n_vocab - 3)))
        e = kern_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", false);
out:
    if (tok)
        for (uint32_t i = 0; i < n_vocab; i++)
            free(tok[i]);
    free(tok);
    free(type);
    return e;
}

static uint32_t file_type(kern_type q)
{
    switch (q) {
    case KERN_TYPE_Q4_0: return 2;  /* LLAMA_FTYPE_MOSTLY_Q4_0 */
    case KERN_TYPE_Q8_0: return 7;  /* MOSTLY_Q8_0 */
    case KERN_TYPE_BF16: return 32; /* MOSTLY_BF16 */
    case KERN_TYPE_F16: return 1;
    default: return 0;
    }
}

static adg_error *write_metadata(kern_gguf_writer *w, const kern_model_create_opts *o, const kern_model_hparams *hp)
{
    const char *a = kern_arch_name(hp->arch);
    char name[128], desc[256], k[128];
    snprintf(name, sizeof name, "amxdiag-%s-%s", o->preset, kern_type_name(o->quant));
    snprintf(desc, sizeof desc, "synthetic random weights (amxdiag model create --preset %s --seed %llu)", o->preset,
             (unsigned long long)o->seed);
    adg_error *e;
#define KU(key, v) (snprintf(k, sizeof k, "%s." key, a), kern_gguf_w_u32(w, k, v))
#define KF(key, v) (snprintf(k, sizeof k, "%s." key, a), kern_gguf_w_f32(w, k, v))
    if ((e = kern_gguf_w_str(w, "general.architecture", a)) || (e = kern_gguf_w_str(w, "general.type", "model")) ||
        (e = kern_gguf_w_str(w, "general.name", name)) || (e = kern_gguf_w_str(w, "general.description", desc)) ||
        (e = kern_gguf_w_u32(w, "general.file_type", file_type(o->quant))) ||
        (e = kern_gguf_w_u32(w, "general.quantization_version", 2)) ||
        (e = kern_gguf_w_u32(w, "general.alignment", KERN_GGUF_DEFAULT_ALIGNMENT)) ||
        (e = KU("block_count", hp->n_layer)) || (e = KU("context_length", hp->n_ctx_train)) ||
        (e = KU("embedding_length", hp->n_embd)) || (e = KU("feed_forward_length", hp->n_ff)) ||
        (e = KU("attention.head_count", hp->n_head)) || (e = KU("attention.head_count_kv", hp->n_head_kv)) ||
        (e = KF("rope.freq_base", hp->rope_base)) || (e = KF("attention.layer_norm_rms_epsilon", hp->rms_eps)) ||
        (e = KU("attention.key_length", hp->head_dim)) || (e = KU("attention.value_length", hp->head_dim)) ||
        (e = KU("vocab_size", hp->n_vocab)))
        return e;
    if (hp->arch == KERN_ARCH_LLAMA && (e = KU("rope.dimension_count", hp->head_dim)))
        return e;
    if (hp->n_expert &&
        ((e = KU("expert_count", hp->n_expert)) || (e = KU("expert_used_count", hp->n_expert_used)) ||
         (hp->arch == KERN_ARCH_QWEN3MOE && (e = KU("expert_feed_forward_length", hp->n_ff_exp)))))
        return e;
#undef KU
#undef KF
    return write_vocab(w, hp->n_vocab);
}

/* ---- data generation ---- */

typedef struct gen_ctx {
    const volatile int *cancel;
    const plan *p;
    kern_gguf_writer *w;
    uint64_t seed;
    uint64_t chunk_rows;      /* rows per work item */
    uint64_t *chunk_start;    /* first work item of each tensor (prefix sums) */
    uint64_t n_chunks;
    atomic_uint_fast64_t next;
    atomic_int failed;
    pthread_mutex_t lock;
    adg_error *err;
} gen_ctx;

static void fill_row(const plan_tensor *t, uint64_t seed, size_t ti, uint64_t row, float *x)
{
    int64_t k = t->ne[0];
    uint64_t s = mix(seed ^ mix(((uint64_t)ti << 40) ^ row));
    for (int64_t j = 0; j < k; j++) {
        uint64_t r = mix(s + (uint64_t)j);
        /* 24 random bits -> uniform in [-1, 1). */
        float u = (float)((int64_t)(r >> 40) - (1 << 23)) / (float)(1 << 23);
        x[j] = t->init == INIT_NORM ? 1.0f + 0.1f * u : u * t->std * 1.7320508f;
    }
}

static void *gen_worker(void *arg)
{
    gen_ctx *g = arg;
    size_t max_k = 0, max_bytes = 0;
    for (size_t i = 0; i < g->p->n; i++) {
        if ((size_t)g->p->t[i].ne[0] > max_k)
            max_k = (size_t)g->p->t[i].ne[0];
        if (g->p->t[i].row_bytes * g->chunk_rows > max_bytes)
            max_bytes = g->p->t[i].row_bytes * g->chunk_rows;
    }
    float *x = malloc(max_k * sizeof *x);
    uint8_t *buf = malloc(max_bytes);
    if (!x || !buf) {
        pthread_mutex_lock(&g->lock);
        if (!g->err)
            g->err = adg_error_new(ADG_E_NOMEM, "out of memory");
        pthread_mutex_unlock(&g->lock);
        atomic_store(&g->failed, 1);
    }
    while (x && buf && !atomic_load(&g->failed)) {
        if (g->cancel && *g->cancel) {
            pthread_mutex_lock(&g->lock);
            if (!g->err)
                g->err = adg_error_new(ADG_E_INTERRUPTED, "interrupted: no model written");
            pthread_mutex_unlock(&g->lock);
            atomic_store(&g->failed, 1);
            break;
        }
        uint64_t c = atomic_fetch_add(&g->next, 1);
        if (c >= g->n_chunks)
            break;
        size_t ti = 0;
        size_t lo = 0, hi = g->p->n; /* last tensor whose chunk_start <= c */
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (g->chunk_start[mid] <= c)
                lo = mid;
            else
                hi = mid;
        }
        ti = lo;
        const plan_tensor *t = &g->p->t[ti];
        uint64_t r0 = (c - g->chunk_start[ti]) * g->chunk_rows;
        uint64_t r1 = r0 + g->chunk_rows < t->rows ? r0 + g->chunk_rows : t->rows;
        adg_error *e = NULL;
        for (uint64_t r = r0; r < r1 && !e; r++) {
            fill_row(t, g->seed, ti, r, x);
            e = kern_quantize_row((kern_type)t->type, x, buf + (r - r0) * t->row_bytes, t->ne[0]);
        }
        if (!e)
            e = kern_gguf_writer_pwrite(g->w, t->index, r0 * t->row_bytes, buf, (size_t)((r1 - r0) * t->row_bytes));
        if (e) {
            pthread_mutex_lock(&g->lock);
            if (!g->err)
                g->err = e;
            else
                adg_error_free(e);
            pthread_mutex_unlock(&g->lock);
            atomic_store(&g->failed, 1);
        }
    }
    free(x);
    free(buf);
    return NULL;
}

static adg_error *generate(const plan *p, kern_gguf_writer *w, uint64_t seed, int threads, const volatile int *cancel)
{
    gen_ctx g = {.cancel = cancel, .p = p, .w = w, .seed = seed, .chunk_rows = 64};
    g.chunk_start = malloc((p->n + 1) * sizeof *g.chunk_start);
    if (!g.chunk_start)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        g.chunk_start[i] = g.n_chunks;
        g.n_chunks += (p->t[i].rows + g.chunk_rows - 1) / g.chunk_rows;
    }
    atomic_init(&g.next, 0);
    atomic_init(&g.failed, 0);
    pthread_mutex_init(&g.lock, NULL);
    if (threads < 1)
        threads = 1;
    if (threads > 256)
        threads = 256;
    pthread_t tid[256];
    int started = 0;
    for (int i = 1; i < threads; i++)
        if (pthread_create(&tid[started], NULL, gen_worker, &g) == 0)
            started++;
    gen_worker(&g);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&g.lock);
    free(g.chunk_start);
    return g.err;
}

adg_error *kern_model_create(const kern_model_create_opts *o, const char *path, kern_model_create_result *res)
{
    uint64_t t0 = adg_now_ns();
    const kern_model_preset *pr = kern_model_preset_find(o->preset ? o->preset : "");
    if (!pr)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "unknown preset '%s'", o->preset ? o->preset : ""),
                              "presets: qwen3-30b-a3b, qwen3-moe-small, tiny, llama-tiny");
    if (o->quant != KERN_TYPE_Q4_0 && o->quant != KERN_TYPE_Q8_0 && o->quant != KERN_TYPE_BF16 &&
        o->quant != KERN_TYPE_F16 && o->quant != KERN_TYPE_F32)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "unsupported --quant %s", kern_type_name(o->quant)),
                              "use q4_0, q8_0 or bf16");
    kern_model_hparams hp = pr->hp;
    if (o->layers) {
        if (o->layers > 4096)
            return adg_error_new(ADG_E_USAGE, "--layers %u is too many (4096 at most)", o->layers);
        hp.n_layer = o->layers;
    }
    plan p = {0};
    kern_gguf_writer *w = NULL;
    adg_error *e = build_plan(&hp, o->quant, &p);
    if (!e)
        e = kern_gguf_writer_new(KERN_GGUF_DEFAULT_ALIGNMENT, &w);
    if (!e)
        e = write_metadata(w, o, &hp);
    uint64_t params = 0;
    for (size_t i = 0; !e && i < p.n; i++) {
        e = kern_gguf_writer_add_tensor(w, p.t[i].name, p.t[i].type, p.t[i].n_dims, p.t[i].ne, &p.t[i].index);
        params += (uint64_t)p.t[i].ne[0] * p.t[i].rows;
    }
    if (!e)
        e = kern_gguf_writer_begin(w, path);
    if (!e && !o->sparse) {
        int th = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        e = generate(&p, w, o->seed, th, o->cancel);
    }
    if (!e)
        e = kern_gguf_writer_commit(w);
    if (!e && res) {
        res->file_bytes = kern_gguf_writer_file_size(w);
        res->n_params = params;
        res->n_tensors = p.n;
        res->seconds = (double)(adg_now_ns() - t0) / 1e9;
    }
    kern_gguf_writer_free(w);
    free(p.t);
    return e;
}

/* The GGUF files `amxdiag model create` writes must load in llama.cpp. This test states
 * what llama.cpp's loader (src/llama-model.cpp, src/models/{qwen3moe,llama}.cpp,
 * src/llama-vocab.cpp) demands of a file, independently of amxdiag's own loader, and
 * checks every preset against it:
 *  - the hyperparameter keys it reads as required, with the types it accepts;
 *  - exactly the tensors it creates for the architecture (its loader fails with "wrong
 *    number of tensors" on an extra one and "missing tensor" on an absent one), each with
 *    the shape it asks for (ne[0] first) and a type its CPU backend computes;
 *  - the BPE vocabulary: gpt2 model, a pre-tokenizer it knows, unique token strings,
 *    int32 token types of the same count, a non-empty merges array of "left right" pairs,
 *    special ids in range, a vocabulary as large as token_embd and output;
 *  - head_dim = rope dimension (qwen3moe's graph asserts n_embd_head == n_rot).
 * Loading the files in llama.cpp and ik_llama.cpp themselves was done outside CI (they
 * are not built here): docs/model.md records the result. */
#include "adg_test.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kern_gguf.h"
#include "kernels/kern_model.h"

static char *tmpdir;

static int setup(void **state)
{
    (void)state;
    tmpdir = adg_test_tmpdir();
    return tmpdir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    adg_test_rmtree(tmpdir);
    return 0;
}

static uint64_t u32_key(const kern_gguf *g, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, key);
    if (!kv)
        fail_msg("llama.cpp requires the key %s", key);
    /* llama.cpp's get_key accepts only the integer types here; amxdiag writes u32 as
     * convert_hf_to_gguf.py does. */
    assert_int_equal(kv->type, KERN_GGUF_U32);
    return kv->v.u;
}

/* The tensor llama.cpp creates, with its shape; ne[] padded with 1. */
static void expect(const kern_gguf *g, uint32_t *seen, const char *name, int64_t n0, int64_t n1, int64_t n2,
                   bool weight_quant)
{
    const kern_gguf_tensor *t = kern_gguf_find_tensor(g, name);
    if (!t)
        fail_msg("llama.cpp needs tensor %s", name);
    if (t->ne[0] != n0 || t->ne[1] != n1 || t->ne[2] != n2 || t->ne[3] != 1)
        fail_msg("%s: llama.cpp expects {%lld, %lld, %lld}, the file has {%lld, %lld, %lld, %lld}", name,
                 (long long)n0, (long long)n1, (long long)n2, (long long)t->ne[0], (long long)t->ne[1],
                 (long long)t->ne[2], (long long)t->ne[3]);
    if (weight_quant)
        assert_true(t->type == 0 || t->type == 1 || t->type == 2 || t->type == 8 || t->type == 30);
    else
        assert_int_equal(t->type, 0); /* norms and the router: f32, as llama-quantize leaves them */
    (*seen)++;
}

static int cmp_str(const void *a, const void *b)
{
    const kern_gguf_str *x = a, *y = b;
    uint64_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void check_vocab(const kern_gguf *g, uint64_t n_embd)
{
    char *s = NULL;
    ADG_ASSERT_OK(kern_gguf_get_str(g, "tokenizer.ggml.model", true, &s));
    assert_string_equal(s, "gpt2");
    free(s);
    ADG_ASSERT_OK(kern_gguf_get_str(g, "tokenizer.ggml.pre", true, &s));
    assert_string_equal(s, "qwen2"); /* one of llama-vocab.cpp's known pre-tokenizers */
    free(s);

    const kern_gguf_kv *tok = kern_gguf_find_kv(g, "tokenizer.ggml.tokens");
    const kern_gguf_kv *typ = kern_gguf_find_kv(g, "tokenizer.ggml.token_type");
    const kern_gguf_kv *mrg = kern_gguf_find_kv(g, "tokenizer.ggml.merges");
    assert_non_null(tok);
    assert_non_null(typ);
    assert_non_null(mrg); /* llama.cpp's BPE load throws without it */
    assert_int_equal(tok->type, KERN_GGUF_ARRAY);
    assert_int_equal(tok->arr_type, KERN_GGUF_STRING);
    assert_int_equal(typ->arr_type, KERN_GGUF_I32);
    assert_int_equal(mrg->arr_type, KERN_GGUF_STRING);
    uint64_t n_vocab = tok->arr_n;
    assert_int_equal(typ->arr_n, n_vocab);
    assert_true(mrg->arr_n >= 1);

    /* Unique token strings: llama.cpp maps text to id, a duplicate would shadow an id. */
    kern_gguf_str *all = calloc(n_vocab, sizeof *all);
    assert_non_null(all);
    uint64_t pos = 0;
    const uint8_t *cur = NULL;
    for (uint64_t i = 0; i < n_vocab; i++) {
        assert_true(kern_gguf_arr_str_next(tok, &pos, &cur, &all[i]));
        assert_true(all[i].len > 0);
    }
    qsort(all, n_vocab, sizeof *all, cmp_str);
    for (uint64_t i = 1; i < n_vocab; i++)
        assert_true(cmp_str(&all[i - 1], &all[i]) != 0);
    free(all);

    /* Merges are "left right": llama.cpp splits at the first space after the first byte. */
    pos = 0;
    cur = NULL;
    kern_gguf_str m;
    while (kern_gguf_arr_str_next(mrg, &pos, &cur, &m)) {
        const char *sp = memchr(m.ptr + 1, ' ', m.len - 1);
        assert_non_null(sp);
        assert_true(sp + 1 < m.ptr + m.len);
    }

    const int32_t *types = (const int32_t *)typ->arr_data;
    for (uint64_t i = 0; i < n_vocab; i++) {
        int32_t t;
        memcpy(&t, types + i, sizeof t);
        assert_true(t >= 1 && t <= 6); /* LLAMA_TOKEN_TYPE_NORMAL .. BYTE */
    }
    static const char *const special[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                          "tokenizer.ggml.padding_token_id"};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        uint32_t id;
        ADG_ASSERT_OK(kern_gguf_get_u32(g, special[i], true, &id));
        assert_true(id < n_vocab);
    }
    const kern_gguf_tensor *emb = kern_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(emb);
    assert_int_equal(emb->ne[0], n_embd);
    assert_int_equal(emb->ne[1], n_vocab);
}

static void check_file(const char *preset, kern_type quant, uint32_t layers)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s-%d.gguf", tmpdir, preset, (int)quant);
    kern_model_create_opts o = {.preset = preset, .quant = quant, .seed = 3, .threads = 2, .layers = layers};
    kern_model_create_result r;
    ADG_ASSERT_OK(kern_model_create(&o, path, &r));

    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_open(path, &g));
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 32);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        assert_int_equal(g->tensors[i].offset % g->alignment, 0);

    char *arch = NULL;
    ADG_ASSERT_OK(kern_gguf_get_str(g, "general.architecture", true, &arch));
    bool moe = strcmp(arch, "qwen3moe") == 0;
    assert_true(moe || strcmp(arch, "llama") == 0);

    uint64_t n_layer = u32_key(g, arch, "block_count");
    uint64_t n_embd = u32_key(g, arch, "embedding_length");
    uint64_t n_head = u32_key(g, arch, "attention.head_count");
    uint64_t n_head_kv = u32_key(g, arch, "attention.head_count_kv");
    uint64_t n_ff = u32_key(g, arch, "feed_forward_length");
    (void)u32_key(g, arch, "context_length");
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    const kern_gguf_kv *eps = kern_gguf_find_kv(g, key);
    assert_non_null(eps);
    assert_int_equal(eps->type, KERN_GGUF_F32);
    /* Without key_length llama.cpp takes n_embd / n_head; amxdiag states it, and the rope
     * dimension defaults to it. */
    uint64_t head_dim = u32_key(g, arch, "attention.key_length");
    assert_int_equal(u32_key(g, arch, "attention.value_length"), head_dim);
    snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
    const kern_gguf_kv *rot = kern_gguf_find_kv(g, key);
    assert_true(!rot || rot->v.u == head_dim);

    check_vocab(g, n_embd); /* also: token_embd is {n_embd, vocabulary size} */
    int64_t n_vocab = kern_gguf_find_tensor(g, "token_embd.weight")->ne[1];
    uint32_t seen = 0;
    expect(g, &seen, "token_embd.weight", n_embd, n_vocab, 1, true);
    expect(g, &seen, "output_norm.weight", n_embd, 1, 1, false);
    expect(g, &seen, "output.weight", n_embd, n_vocab, 1, true);
    uint64_t n_expert = 0, n_ff_exp = 0;
    if (moe) {
        n_expert = u32_key(g, arch, "expert_count");
        uint64_t used = u32_key(g, arch, "expert_used_count");
        assert_true(n_expert > 0 && used > 0 && used <= n_expert); /* qwen3moe throws on 0 */
        n_ff_exp = u32_key(g, arch, "expert_feed_forward_length");
    }
    for (uint64_t l = 0; l < n_layer; l++) {
        char n[96];
#define T(fmt, a, b, c, q)                                                                                      \
    do {                                                                                                        \
        snprintf(n, sizeof n, "blk.%llu." fmt ".weight", (unsigned long long)l);                               \
        expect(g, &seen, n, a, b, c, q);                                                                         \
    } while (0)
        T("attn_norm", n_embd, 1, 1, false);
        T("attn_q", n_embd, head_dim * n_head, 1, true);
        T("attn_k", n_embd, head_dim * n_head_kv, 1, true);
        T("attn_v", n_embd, head_dim * n_head_kv, 1, true);
        T("attn_output", head_dim * n_head, n_embd, 1, true);
        T("ffn_norm", n_embd, 1, 1, false);
        if (moe) {
            T("attn_q_norm", head_dim, 1, 1, false);
            T("attn_k_norm", head_dim, 1, 1, false);
            T("ffn_gate_inp", n_embd, n_expert, 1, false);
            T("ffn_gate_exps", n_embd, n_ff_exp, n_expert, true);
            T("ffn_down_exps", n_ff_exp, n_embd, n_expert, true);
            T("ffn_up_exps", n_embd, n_ff_exp, n_expert, true);
        } else {
            T("ffn_gate", n_embd, n_ff, 1, true);
            T("ffn_down", n_ff, n_embd, 1, true);
            T("ffn_up", n_embd, n_ff, 1, true);
        }
#undef T
    }
    /* No tensor beyond those: llama.cpp counts the ones it created against the file's. */
    assert_int_equal(seen, g->n_tensors);
    free(arch);
    kern_gguf_close(g);
}

static void test_tiny_presets(void **state)
{
    (void)state;
    check_file("tiny", KERN_TYPE_Q4_0, 0);
    check_file("tiny", KERN_TYPE_Q8_0, 0);
    check_file("tiny", KERN_TYPE_BF16, 2);
    check_file("llama-tiny", KERN_TYPE_Q4_0, 0);
}

static void test_small_preset(void **state)
{
    (void)state;
    /* The benchmark preset (32768-token vocabulary), one layer to stay fast. */
    check_file("qwen3-moe-small", KERN_TYPE_Q4_0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_presets),
        cmocka_unit_test(test_small_preset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Synthetic models and the AMX-eligibility arithmetic: the sparse Qwen3-30B-A3B Q4_0
 * layout gives 486.00 MiB of llama.cpp-eligible attention projections (384.75 MiB with
 * --ngl 10) and 15.19 GiB of MUL_MAT_ID experts. */
#include "adg_test.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_util.h"
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

static void create(const char *preset, kern_type q, uint64_t seed, int threads, bool sparse, uint32_t layers,
                   char *path, size_t len, const char *name)
{
    snprintf(path, len, "%s/%s", tmpdir, name);
    kern_model_create_opts o = {.preset = preset, .quant = q, .seed = seed, .threads = threads, .sparse = sparse,
                                .layers = layers};
    kern_model_create_result r;
    ADG_ASSERT_OK(kern_model_create(&o, path, &r));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, r.file_bytes);
}

static void test_sparse_30b_amx_numbers(void **state)
{
    (void)state;
    char path[600];
    create("qwen3-30b-a3b", KERN_TYPE_Q4_0, 1, 2, true, 0, path, sizeof path, "30b.gguf");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true((uint64_t)st.st_size > 16ull << 30);            /* the full layout ... */
    assert_true((uint64_t)st.st_blocks * 512 < 64ull << 20);     /* ... in a sparse file */
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_open(path, &g));
    kern_model_analysis a;
    ADG_ASSERT_OK(kern_model_analyse(g, 0, &a));
    assert_true(a.hp_ok);
    assert_int_equal(a.hp.n_layer, 48);
    assert_int_equal(a.hp.n_vocab, 151936);
    char b[32];
    /* 48 layers x (2048x4096 + 2x 2048x512 + 4096x2048) x 18/32 bytes */
    assert_int_equal(a.amx_llamacpp, 509607936ull);
    assert_string_equal(adg_fmt_bytes((double)a.amx_llamacpp, b, sizeof b), "486.00 MiB");
    assert_int_equal(a.role[KERN_ROLE_ATTN].amx_llamacpp, a.amx_llamacpp); /* all attention */
    assert_int_equal(a.role[KERN_ROLE_EXPERTS].bytes, 16307453952ull);
    assert_string_equal(adg_fmt_bytes((double)a.role[KERN_ROLE_EXPERTS].bytes, b, sizeof b), "15.19 GiB");
    assert_int_equal(a.role[KERN_ROLE_EXPERTS].amx_llamacpp, 0);
    assert_int_equal(a.role[KERN_ROLE_EXPERTS].amx_amxdiag, a.role[KERN_ROLE_EXPERTS].bytes);
    assert_int_equal(a.role[KERN_ROLE_ROUTER].amx_llamacpp, 0); /* f32 */
    assert_int_equal(a.role[KERN_ROLE_OUTPUT].amx_llamacpp, 0);
    assert_int_equal(a.role[KERN_ROLE_EMBED].amx_amxdiag, 0);  /* GET_ROWS */
    json_t *j = kern_model_inspect_json(g, &a, false);
    assert_string_equal(json_string_value(json_object_get(j, "schema")), "amxdiag.model.inspect/1");
    const char *concl = json_string_value(json_object_get(j, "conclusion"));
    assert_non_null(strstr(concl, "486.00 MiB eligible"));
    assert_non_null(strstr(concl, "all of it attention projections"));
    assert_non_null(strstr(concl, "15.19 GiB of experts are not eligible"));
    assert_non_null(strstr(concl, "MUL_MAT_ID"));
    json_decref(j);
    kern_model_analysis_free(&a);

    ADG_ASSERT_OK(kern_model_analyse(g, 10, &a));
    assert_int_equal(a.amx_llamacpp, 403439616ull);
    assert_string_equal(adg_fmt_bytes((double)a.amx_llamacpp, b, sizeof b), "384.75 MiB");
    assert_int_equal(a.role[KERN_ROLE_OUTPUT].gpu_bytes, a.role[KERN_ROLE_OUTPUT].bytes);
    assert_int_equal(a.role[KERN_ROLE_EMBED].cpu_bytes, a.role[KERN_ROLE_EMBED].bytes);
    assert_int_equal(a.role[KERN_ROLE_EXPERTS].gpu_bytes, a.role[KERN_ROLE_EXPERTS].bytes / 48 * 10);
    kern_model_analysis_free(&a);
    ADG_ASSERT_OK(kern_model_analyse(g, 1000, &a));
    assert_int_equal(a.amx_llamacpp, 0);
    assert_int_equal(a.cpu_bytes, a.role[KERN_ROLE_EMBED].bytes);
    kern_model_analysis_free(&a);
    kern_gguf_close(g);

    /* The model loads (shapes and types check) even though its data is a hole. */
    kern_model *m;
    ADG_ASSERT_OK(kern_model_load(path, &m));
    assert_int_equal(m->hp.n_expert, 128);
    assert_int_equal(m->hp.n_expert_used, 8);
    assert_int_equal(m->hp.n_ff_exp, 768);
    assert_int_equal(m->hp.head_dim, 128);
    assert_true(m->hp.rope_base == 1e6f);
    assert_int_equal(m->main_type, KERN_TYPE_Q4_0);
    assert_true(m->n_params > 30000000000ull && m->n_params < 31000000000ull);
    kern_model_free(m);
    unlink(path);
}

static void test_tiny_deterministic(void **state)
{
    (void)state;
    char p1[600], p2[600], p3[600];
    create("tiny", KERN_TYPE_Q4_0, 7, 1, false, 0, p1, sizeof p1, "a.gguf");
    create("tiny", KERN_TYPE_Q4_0, 7, 3, false, 0, p2, sizeof p2, "b.gguf");
    create("tiny", KERN_TYPE_Q4_0, 8, 2, false, 0, p3, sizeof p3, "c.gguf");
    char *d1, *d2, *d3;
    size_t l1, l2, l3;
    ADG_ASSERT_OK(adg_read_file(p1, 0, &d1, &l1));
    ADG_ASSERT_OK(adg_read_file(p2, 0, &d2, &l2));
    ADG_ASSERT_OK(adg_read_file(p3, 0, &d3, &l3));
    assert_int_equal(l1, l2);
    assert_memory_equal(d1, d2, l1); /* the thread count does not change the bytes */
    assert_int_equal(l1, l3);
    assert_true(memcmp(d1, d3, l1) != 0); /* the seed does */
    assert_true(l1 < 8u << 20);
    free(d1);
    free(d2);
    free(d3);

    kern_model *m;
    ADG_ASSERT_OK(kern_model_load(p1, &m));
    assert_int_equal(m->hp.arch, KERN_ARCH_QWEN3MOE);
    assert_int_equal(m->hp.n_layer, 4);
    assert_non_null(m->layers[3].q_norm);
    assert_non_null(m->layers[3].down_exps);
    assert_int_equal(m->layers[0].down_exps->ne[0], 256);
    assert_int_equal(m->layers[0].down_exps->ne[2], 8);
    assert_int_equal(m->layers[0].gate_inp->type, KERN_TYPE_F32);
    assert_int_equal(m->output->type, KERN_TYPE_Q4_0);
    /* Weights are finite and have the intended scale. */
    float row[256];
    ADG_ASSERT_OK(kern_dequantize_row(KERN_TYPE_Q4_0, m->layers[1].wq->data, row, 256));
    double ss = 0;
    for (int i = 0; i < 256; i++) {
        assert_true(isfinite(row[i]));
        ss += (double)row[i] * row[i];
    }
    double rms = sqrt(ss / 256), want = 1.0 / 16.0;
    assert_true(rms > 0.7 * want && rms < 1.3 * want);
    const float *nw = (const float *)m->layers[2].attn_norm->data;
    for (int i = 0; i < 256; i++)
        assert_true(nw[i] > 0.89f && nw[i] < 1.11f);
    kern_model_free(m);

    /* Other quantizations, the dense llama preset and a layer override. */
    create("tiny", KERN_TYPE_BF16, 1, 2, false, 2, p1, sizeof p1, "bf16.gguf");
    ADG_ASSERT_OK(kern_model_load(p1, &m));
    assert_int_equal(m->hp.n_layer, 2);
    assert_int_equal(m->layers[1].wk->type, KERN_TYPE_BF16);
    kern_model_free(m);
    create("llama-tiny", KERN_TYPE_Q8_0, 1, 2, false, 0, p1, sizeof p1, "llama.gguf");
    ADG_ASSERT_OK(kern_model_load(p1, &m));
    assert_int_equal(m->hp.arch, KERN_ARCH_LLAMA);
    assert_null(m->layers[0].q_norm);
    assert_non_null(m->layers[0].ffn_up);
    assert_int_equal(m->layers[0].ffn_up->type, KERN_TYPE_Q8_0);
    kern_model_free(m);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/x.gguf", tmpdir);
    kern_model_create_opts o = {.preset = "nope", .quant = KERN_TYPE_Q4_0};
    adg_error *e = kern_model_create(&o, p, NULL);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);
    o.preset = "tiny";
    snprintf(p, sizeof p, "%s/no/such/dir/x.gguf", tmpdir);
    e = kern_model_create(&o, p, NULL);
    assert_non_null(e);
    adg_error_free(e);

    /* A file missing a tensor, and one with a wrong shape, are refused by name. */
    kern_gguf_writer *w;
    ADG_ASSERT_OK(kern_gguf_writer_new(32, &w));
    ADG_ASSERT_OK(kern_gguf_w_str(w, "general.architecture", "qwen3moe"));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.block_count", 1));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.embedding_length", 64));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.attention.head_count", 2));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.expert_count", 4));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.expert_used_count", 2));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "qwen3moe.expert_feed_forward_length", 64));
    ADG_ASSERT_OK(kern_gguf_writer_add_tensor(w, "token_embd.weight", KERN_TYPE_F32, 2, (int64_t[]){64, 300}, NULL));
    ADG_ASSERT_OK(kern_gguf_writer_add_tensor(w, "output_norm.weight", KERN_TYPE_F32, 1, (int64_t[]){32}, NULL));
    snprintf(p, sizeof p, "%s/broken.gguf", tmpdir);
    ADG_ASSERT_OK(kern_gguf_writer_begin(w, p));
    ADG_ASSERT_OK(kern_gguf_writer_commit(w));
    kern_gguf_writer_free(w);
    kern_model *m;
    e = kern_model_load(p, &m);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "output_norm.weight"));
    assert_non_null(strstr(adg_error_msg(e), "shape"));
    adg_error_free(e);
    /* Inspect still works on it. */
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_open(p, &g));
    kern_model_analysis a;
    ADG_ASSERT_OK(kern_model_analyse(g, 0, &a));
    assert_int_equal(a.role[KERN_ROLE_EMBED].tensors, 1);
    kern_model_analysis_free(&a);
    kern_gguf_close(g);
}

static void test_classify(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        kern_role role;
        kern_consumer op;
        int layer;
    } cases[] = {
        {"token_embd.weight", KERN_ROLE_EMBED, KERN_OP_GET_ROWS, -1},
        {"output.weight", KERN_ROLE_OUTPUT, KERN_OP_MUL_MAT, -1},
        {"output_norm.weight", KERN_ROLE_NORM, KERN_OP_MUL, -1},
        {"blk.0.attn_q.weight", KERN_ROLE_ATTN, KERN_OP_MUL_MAT, 0},
        {"blk.12.attn_output.weight", KERN_ROLE_ATTN, KERN_OP_MUL_MAT, 12},
        {"blk.3.attn_q_norm.weight", KERN_ROLE_NORM, KERN_OP_MUL, 3},
        {"blk.47.ffn_gate_exps.weight", KERN_ROLE_EXPERTS, KERN_OP_MUL_MAT_ID, 47},
        {"blk.5.ffn_gate_inp.weight", KERN_ROLE_ROUTER, KERN_OP_MUL_MAT, 5},
        {"blk.5.ffn_down.weight", KERN_ROLE_FFN, KERN_OP_MUL_MAT, 5},
        {"rope_freqs.weight", KERN_ROLE_OTHER, KERN_OP_NONE, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kern_tensor_class c;
        kern_model_classify(cases[i].name, &c);
        if (c.role != cases[i].role || c.op != cases[i].op || c.layer != cases[i].layer)
            fail_msg("%s: role %d op %d layer %d", cases[i].name, c.role, c.op, c.layer);
    }
    /* Placement: ngl 10 of 48 puts layers 38..47 and the output on the GPU. */
    kern_tensor_class c = {KERN_ROLE_ATTN, KERN_OP_MUL_MAT, 37};
    assert_false(kern_model_on_gpu(&c, 48, 10));
    c.layer = 38;
    assert_true(kern_model_on_gpu(&c, 48, 10));
    assert_false(kern_model_on_gpu(&c, 48, 0));
    /* Rule edge cases: N not a multiple of 32, unsupported type. */
    kern_gguf_tensor t = {.n_dims = 2, .ne = {2048, 48, 1, 1}, .type = KERN_TYPE_Q4_0};
    kern_tensor_class ca = {KERN_ROLE_ATTN, KERN_OP_MUL_MAT, 0};
    assert_false(kern_amx_llamacpp(&t, &ca, false).eligible);
    assert_true(kern_amx_amxdiag(&t, &ca, false).eligible);
    t.ne[1] = 64;
    assert_true(kern_amx_llamacpp(&t, &ca, false).eligible);
    t.type = 12; /* q4_K */
    t.ne[0] = 2048;
    assert_true(kern_amx_llamacpp(&t, &ca, false).eligible);
    assert_false(kern_amx_amxdiag(&t, &ca, false).eligible);
    t.type = KERN_TYPE_F16;
    assert_false(kern_amx_llamacpp(&t, &ca, false).eligible);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_tiny_deterministic),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_sparse_30b_amx_numbers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

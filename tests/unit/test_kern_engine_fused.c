/* The fused generation schedule (kernels/engine_fused.c) against the per-op schedule
 * (AMXDIAG_ENGINE_FUSE=0): the same model, tokens, implementation and thread count must
 * give the same logits bit for bit after a prompt and several generated tokens, for
 * 1, 2 and 3 threads (3 on this 2-core machine: workers that wait for a preempted one),
 * on the tiny qwen3moe (q4_0, q8_0), llama-tiny (dense FFN, normal RoPE) and one layer of
 * the small preset.  And the fused schedule must actually run (its op records), and fall
 * back to the per-op one where it does not apply (bf16 weights). */
#include "adg_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kern_engine.h"
#include "kern_test.h"

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
    unsetenv("AMXDIAG_ENGINE_FUSE");
    adg_test_rmtree(tmpdir);
    return 0;
}

static void make_model(const char *preset, kern_type quant, uint32_t layers, const char *path)
{
    kern_model_create_opts o = {.preset = preset, .quant = quant, .seed = 5, .threads = 2, .layers = layers};
    ADG_ASSERT_OK(kern_model_create(&o, path, NULL));
}

static kern_engine *open_engine(const char *path, kern_impl impl, int threads, bool fuse)
{
    setenv("AMXDIAG_ENGINE_FUSE", fuse ? "1" : "0", 1);
    kern_engine_opts o = {.model_path = path, .impl = impl, .threads = threads, .n_ctx = 128};
    kern_engine *e = NULL;
    ADG_ASSERT_OK(kern_engine_open(&o, &e));
    unsetenv("AMXDIAG_ENGINE_FUSE");
    return e;
}

/* A prompt, then n_gen greedy tokens; the last logits (heap) and the tokens. */
static float *decode(const char *path, kern_impl impl, int threads, bool fuse, int32_t *tokens, uint32_t n_gen)
{
    kern_engine *e = open_engine(path, impl, threads, fuse);
    const uint32_t nv = kern_engine_model(e)->hp.n_vocab;
    int32_t prompt[9];
    for (uint32_t i = 0; i < 9; i++)
        prompt[i] = (int32_t)((i * 7919u + 13u) % (nv - 3));
    float *logits = malloc(nv * sizeof *logits);
    ADG_ASSERT_OK(kern_engine_greedy(e, prompt, 9, n_gen, tokens, logits));
    for (uint32_t i = 0; i < nv; i++)
        assert_true(isfinite(logits[i]));
    kern_engine_close(e);
    return logits;
}

static void same_bits(const char *path, kern_impl impl, int threads, uint32_t n_gen)
{
    int32_t a_tok[16], b_tok[16];
    float *a = decode(path, impl, threads, false, a_tok, n_gen);
    float *b = decode(path, impl, threads, true, b_tok, n_gen);
    kern_engine *e = open_engine(path, impl, threads, true);
    const uint32_t nv = kern_engine_model(e)->hp.n_vocab;
    kern_engine_close(e);
    uint32_t differ = 0;
    for (uint32_t i = 0; i < nv; i++)
        differ += memcmp(&a[i], &b[i], sizeof a[i]) != 0;
    printf("%s %s t=%d: %u of %u logits differ between the schedules\n", strrchr(path, '/') + 1,
           kern_impl_name(impl), threads, differ, nv);
    assert_int_equal(differ, 0);
    assert_memory_equal(a_tok, b_tok, n_gen * sizeof *a_tok);
    free(a);
    free(b);
}

static void check_model(const char *path, uint32_t n_gen)
{
    const kern_impl impls[] = {KERN_IMPL_REF, KERN_IMPL_AVX512};
    for (size_t i = 0; i < sizeof impls / sizeof impls[0]; i++) {
        if (!impl_here(impls[i]))
            continue;
        for (int t = 1; t <= 3; t++)
            same_bits(path, impls[i], t, n_gen);
    }
}

static void test_tiny_q4_0(void **state)
{
    (void)state;
    char p[700];
    snprintf(p, sizeof p, "%s/tiny-q4.gguf", tmpdir);
    make_model("tiny", KERN_TYPE_Q4_0, 0, p);
    check_model(p, 8);
    /* an AMX context: generation stays on the one-row kernels (crossover > 1) */
    if (impl_here(KERN_IMPL_AMX_EMU))
        same_bits(p, KERN_IMPL_AMX_EMU, 2, 4);
    const kern_impl impl = impl_here(KERN_IMPL_AVX512) ? KERN_IMPL_AVX512 : KERN_IMPL_REF;
    /* the A/B switches of the fused schedule and the GEMV change no bit either: the down
     * phase as row chunks of all experts, the waiting workers' prefetch, and the GEMV's
     * other prefetch schemes */
    static const char *const ab[][2] = {{"AMXDIAG_ENGINE_DOWN", "rows"},
                                        {"AMXDIAG_ENGINE_PREFETCH", "1"},
                                        {"AMXDIAG_GEMV_PREFETCH", "ahead"},
                                        {"AMXDIAG_GEMV_PREFETCH", "none"}};
    for (size_t i = 0; i < sizeof ab / sizeof ab[0]; i++) {
        setenv(ab[i][0], ab[i][1], 1);
        printf("%s=%s\n", ab[i][0], ab[i][1]);
        same_bits(p, impl, 3, 4);
        unsetenv(ab[i][0]);
    }
    unlink(p);
}

static void test_tiny_q8_0(void **state)
{
    (void)state;
    char p[700];
    snprintf(p, sizeof p, "%s/tiny-q8.gguf", tmpdir);
    make_model("tiny", KERN_TYPE_Q8_0, 0, p);
    check_model(p, 6);
    unlink(p);
}

static void test_llama_tiny(void **state)
{
    (void)state;
    char p[700];
    snprintf(p, sizeof p, "%s/llama.gguf", tmpdir);
    make_model("llama-tiny", KERN_TYPE_Q8_0, 2, p);
    check_model(p, 6);
    unlink(p);
}

/* The benchmark's shapes (d=1024, heads of 128, 64 experts of 512, top-8): 1 and 3
 * threads (2 on the tiny models; creating this model dominates the test's time).  At 3
 * threads the down phase has two row chunks of 43 panels per expert (16 items). */
static void test_small_preset(void **state)
{
    (void)state;
    if (!impl_here(KERN_IMPL_AVX512))
        return;
    char p[700];
    snprintf(p, sizeof p, "%s/small.gguf", tmpdir);
    make_model("qwen3-moe-small", KERN_TYPE_Q4_0, 1, p);
    same_bits(p, KERN_IMPL_AVX512, 1, 3);
    same_bits(p, KERN_IMPL_AVX512, 3, 3);
    /* the M = 1 tail split (V's 32 panels: 6 chunks of 4, then 8 of 1; Wo's 64: 9 of 6,
     * then 10 of 1) changes no bit either */
    setenv("AMXDIAG_GEMV_TAIL", "1", 1);
    same_bits(p, KERN_IMPL_AVX512, 3, 2);
    unsetenv("AMXDIAG_GEMV_TAIL");
    unlink(p);
}

static const kern_bench_op *find_op(const kern_bench_test *t, const char *op)
{
    for (int i = 0; i < t->n_ops; i++)
        if (strcmp(t->ops[i].op, op) == 0)
            return &t->ops[i];
    return NULL;
}

/* The op records say which schedule ran: fused generation has one matmul_qkv record per
 * layer and token (three per-op) and a fused rope step; bf16 weights (not on the one-row
 * kernels) keep the per-op schedule. */
static void test_records_and_fallback(void **state)
{
    (void)state;
    char p[700];
    snprintf(p, sizeof p, "%s/tiny-r.gguf", tmpdir);
    make_model("tiny", KERN_TYPE_Q4_0, 2, p);
    const kern_impl impl = impl_here(KERN_IMPL_AVX512) ? KERN_IMPL_AVX512 : KERN_IMPL_REF;
    for (int fuse = 0; fuse <= 1; fuse++) {
        kern_engine *e = open_engine(p, impl, 2, fuse);
        kern_bench_opts bo = {.n_prompt = 0, .n_gen = 4, .reps = 1, .seed = 1};
        kern_bench_result r;
        ADG_ASSERT_OK(kern_engine_bench(e, &bo, &r));
        assert_int_equal(r.n_tests, 1);
        const kern_bench_op *qkv = find_op(&r.tests[0], "matmul_qkv"), *rope = find_op(&r.tests[0], "rope");
        assert_non_null(qkv);
        assert_non_null(rope);
        printf("fuse=%d: matmul_qkv %llu calls, rope variant %s\n", fuse, (unsigned long long)qkv->calls, rope->variant);
        /* 4 tokens x 2 layers */
        assert_int_equal(qkv->calls, fuse ? 8 : 24);
        assert_int_equal(strcmp(rope->variant, "fused-qknorm-rope-kvstore") == 0, fuse);
        assert_true(qkv->ns > 0);
        kern_bench_result_free(&r);
        kern_engine_close(e);
    }
    unlink(p);

    snprintf(p, sizeof p, "%s/tiny-bf16.gguf", tmpdir);
    make_model("tiny", KERN_TYPE_BF16, 1, p);
    kern_engine *e = open_engine(p, impl, 2, true);
    kern_bench_opts bo = {.n_prompt = 0, .n_gen = 2, .reps = 1, .seed = 1};
    kern_bench_result r;
    ADG_ASSERT_OK(kern_engine_bench(e, &bo, &r));
    const kern_bench_op *qkv = find_op(&r.tests[0], "matmul_qkv");
    assert_non_null(qkv);
    assert_int_equal(qkv->calls, impl == KERN_IMPL_REF ? 2 : 6);   /* ref keeps bf16 in rows: fused */
    kern_bench_result_free(&r);
    kern_engine_close(e);
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_q4_0),
        cmocka_unit_test(test_tiny_q8_0),
        cmocka_unit_test(test_llama_tiny),
        cmocka_unit_test(test_small_preset),
        cmocka_unit_test(test_records_and_fallback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

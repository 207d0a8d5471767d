/* Every matmul implementation against the scalar reference on random data and many
 * shapes (tails in N, M of 1/15/17/33, K of one and many blocks): bit-exact for the
 * integer paths (see the formula in kern_cpu.h), within the documented tolerance for
 * BF16/F16/F32.  The AMX kernels run on the tile emulator everywhere and on the real
 * tiles where AMX exists. */
#include "adg_test.h"
#include "kern_test.h"

#include <math.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/amx/amx_emu.h"
#include "kernels/kern_cpu.h"
#include "kernels/kern_internal.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { return kern_test_frand(&rng); }

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand() * scale;
}

/* A weight of n_mat x n x k in ggml layout. */
static void *make_weight(kern_type t, int64_t n_mat, int64_t n, int64_t k)
{
    size_t rs = kern_row_size(t, k);
    uint8_t *w = malloc(rs * (size_t)(n_mat * n));
    float *row = malloc((size_t)k * sizeof(float));
    for (int64_t r = 0; r < n_mat * n; r++) {
        fill(row, (size_t)k, 0.5f + (float)(r % 7));
        if (r % 5 == 3)
            row[r % k] = 40.0f;   /* an outlier: a block with a large scale */
        adg_error *e = kern_quantize_row(t, row, w + rs * (size_t)r, k);
        assert_null(e);
    }
    free(row);
    return w;
}

static bool impl_available(kern_impl impl, bool say)
{
    adg_error *e = kern_impl_check(impl);
    if (!e)
        return true;
    if (say)
        printf("SKIP: %s: %s\n", kern_impl_name(impl), adg_error_msg(e));
    adg_error_free(e);
    return false;
}

static kern_cpu *ctx_new(kern_impl impl, int threads, int crossover)
{
    kern_cpu *c = kern_test_cpu(impl, threads);
    if (crossover > 0) {
        kern_crossover x = {crossover, crossover, crossover, false};
        kern_cpu_set_crossover(c, &x);
    }
    return c;
}

/* y = W x through implementation impl. */
static float *run_matmul(kern_impl impl, int threads, int crossover, kern_type t, const void *wdata, int64_t m,
                         int64_t n, int64_t k, const float *x, kern_op_info *info)
{
    kern_cpu *c = ctx_new(impl, threads, crossover);
    kern_weight *w = NULL;
    ADG_ASSERT_OK(kern_weight_new(c, t, 1, n, k, wdata, &w));
    float *y = malloc((size_t)(m * n) * sizeof(float));
    for (int64_t i = 0; i < m * n; i++)
        y[i] = NAN;
    ADG_ASSERT_OK(kern_matmul(c, w, x, m, y, info));
    kern_weight_free(w);
    kern_cpu_free(c);
    return y;
}

static const struct { int64_t m, n, k; } shapes[] = {
    {1, 16, 32}, {1, 40, 64}, {2, 33, 96}, {15, 48, 128}, {17, 70, 64}, {33, 31, 160}, {4, 17, 32}, {64, 96, 256},
    {150, 40, 2048},   /* M beyond the AMX kernels' L2 row block (128 rows at K = 2048) */
    {29, 50, 96},      /* a row tail of 5 for the VNNI GEMM's 6-row block */
};

static void check_int_exact(kern_type t, kern_impl impl, int threads, int crossover)
{
    for (size_t s = 0; s < ADG_ARRAY_LEN(shapes); s++) {
        const int64_t m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        void *wd = make_weight(t, 1, n, k);
        float *x = malloc((size_t)(m * k) * sizeof(float));
        fill(x, (size_t)(m * k), 3.0f);
        kern_op_info ri, ii;
        float *yr = run_matmul(KERN_IMPL_REF, 2, 0, t, wd, m, n, k, x, &ri);
        float *yi = run_matmul(impl, threads, crossover, t, wd, m, n, k, x, &ii);
        for (int64_t i = 0; i < m * n; i++)
            if (memcmp(&yr[i], &yi[i], sizeof(float)) != 0)
                fail_msg("%s %s m=%lld n=%lld k=%lld (%s): y[%lld][%lld] = %.9g, reference %.9g", kern_impl_name(impl),
                         kern_type_name(t), (long long)m, (long long)n, (long long)k, ii.variant, (long long)(i / n),
                         (long long)(i % n), (double)yi[i], (double)yr[i]);
        assert_int_equal(ii.flops, 2 * m * n * k);
        /* and the reference itself is the product, within the quantization of x: each x_k
         * moves by at most half its block's step amax/127 */
        float *wf = malloc((size_t)k * sizeof(float));
        for (int64_t nn = 0; nn < n; nn += 7) {
            ADG_ASSERT_OK(kern_dequantize_row(t, (uint8_t *)wd + kern_row_size(t, k) * (size_t)nn, wf, k));
            for (int64_t mm = 0; mm < m; mm += 5) {
                double dot = 0, bound = 1e-4;
                for (int64_t kk = 0; kk < k; kk++) {
                    dot += (double)x[mm * k + kk] * wf[kk];
                    float amax = 0;
                    for (int64_t q = kk / 32 * 32; q < kk / 32 * 32 + 32; q++)
                        amax = fmaxf(amax, fabsf(x[mm * k + q]));
                    bound += fabs((double)wf[kk]) * (amax / 127.0 * 0.5005 + 1e-6) + 1e-6 * fabs(dot);
                }
                if (!(fabs(dot - yr[mm * n + nn]) <= bound))
                    fail_msg("reference %s m=%lld n=%lld: %.6g, float product %.6g (bound %.3g)", kern_type_name(t),
                             (long long)mm, (long long)nn, (double)yr[mm * n + nn], dot, bound);
            }
        }
        free(wf);
        free(yr);
        free(yi);
        free(x);
        free(wd);
    }
}

static void test_avx512_int(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AVX512, true))
        skip();
    check_int_exact(KERN_TYPE_Q8_0, KERN_IMPL_AVX512, 3, 0);
    check_int_exact(KERN_TYPE_Q4_0, KERN_IMPL_AVX512, 1, 0);
}

/* The VNNI prompt GEMM's register blocks (AMXDIAG_AVX512_Q8_MR / _Q4_MR: 4x2, 6x2) and
 * prefetches (AMXDIAG_AVX512_GEMM_PF: block, line), each bit-exact on every shape and in
 * MoE; values it does not know (5, "far") fall back to the defaults. */
static void check_moe_shape(kern_type t, kern_impl impl, int crossover, bool per_slot, int64_t k, int64_t T);

static void test_avx512_int_blocks(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AVX512, true))
        skip();
    static const char *const blocks[][2] = {{"4", "block"}, {"6", "line"}, {"4", "line"}, {"5", "far"}};
    for (size_t v = 0; v < ADG_ARRAY_LEN(blocks); v++) {
        setenv("AMXDIAG_AVX512_Q8_MR", blocks[v][0], 1);
        setenv("AMXDIAG_AVX512_Q4_MR", blocks[v][0], 1);
        setenv("AMXDIAG_AVX512_GEMM_PF", blocks[v][1], 1);
        kern_avx512_gemm_q_env_reset();
        check_int_exact(KERN_TYPE_Q8_0, KERN_IMPL_AVX512, 2, 0);
        check_int_exact(KERN_TYPE_Q4_0, KERN_IMPL_AVX512, 3, 0);
        check_moe_shape(KERN_TYPE_Q8_0, KERN_IMPL_AVX512, 0, false, 256, 40);
        check_moe_shape(KERN_TYPE_Q4_0, KERN_IMPL_AVX512, 0, true, 256, 40);
    }
    unsetenv("AMXDIAG_AVX512_Q8_MR");
    unsetenv("AMXDIAG_AVX512_Q4_MR");
    unsetenv("AMXDIAG_AVX512_GEMM_PF");
    kern_avx512_gemm_q_env_reset();
}

/* The int8 tile kernel's other schedules (AMXDIAG_AMX_INT8_KERNEL), bit-exact like the
 * default; an invalid value (9,9; the retired 2x2 kernel) falls back to the default. */
static void check_int_variants(kern_impl impl)
{
    static const char *const variants[] = {"1x1", "ring:2,0", "ring:3,2", "ring:3,0", "ring:9,9", "2x2"};
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        setenv("AMXDIAG_AMX_INT8_KERNEL", variants[v], 1);
        check_int_exact(KERN_TYPE_Q8_0, impl, 3, 1);
        check_int_exact(KERN_TYPE_Q4_0, impl, 2, 1);
    }
    unsetenv("AMXDIAG_AMX_INT8_KERNEL");
}

static void test_amx_emu_int(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AMX_EMU, true))
        skip();
    check_int_exact(KERN_TYPE_Q8_0, KERN_IMPL_AMX_EMU, 2, 1);   /* tiles for every m */
    check_int_exact(KERN_TYPE_Q4_0, KERN_IMPL_AMX_EMU, 3, 1);
    check_int_exact(KERN_TYPE_Q8_0, KERN_IMPL_AMX_EMU, 2, 16);  /* below the crossover: VNNI */
    check_int_variants(KERN_IMPL_AMX_EMU);
}

static void test_amx_hw_int(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AMX, true))
        skip();
    check_int_exact(KERN_TYPE_Q8_0, KERN_IMPL_AMX, 4, 1);
    check_int_exact(KERN_TYPE_Q4_0, KERN_IMPL_AMX, 4, 1);
    check_int_variants(KERN_IMPL_AMX);
}

/* Float paths: |y - ref| <= 1e-5 * sum |x_k w_k| + 1e-6 (kern_cpu.h). */
static void check_float(kern_type t, kern_impl impl, int crossover)
{
    static const struct { int64_t m, n, k; } fs[] = {{1, 16, 32}, {3, 40, 50}, {17, 33, 64}, {33, 20, 100}, {16, 64, 96},
                                                     {100, 20, 2048} /* two AMX row blocks */,
                                                     /* f32: K tail of 8, an output tail of 1, row
                                                      * blocks of 32 x panel pairs on the pool;
                                                      * the router's outputs and K */
                                                     {70, 37, 1000}, {150, 128, 2048}};
    for (size_t s = 0; s < ADG_ARRAY_LEN(fs); s++) {
        const int64_t m = fs[s].m, n = fs[s].n, k = fs[s].k;
        void *wd = make_weight(t, 1, n, k);
        float *x = malloc((size_t)(m * k) * sizeof(float));
        fill(x, (size_t)(m * k), 2.0f);
        kern_op_info ii;
        float *yr = run_matmul(KERN_IMPL_REF, 1, 0, t, wd, m, n, k, x, NULL);
        float *yi = run_matmul(impl, 2, crossover, t, wd, m, n, k, x, &ii);
        float *wf = malloc((size_t)k * sizeof(float));
        for (int64_t nn = 0; nn < n; nn++) {
            ADG_ASSERT_OK(kern_dequantize_row(t, (uint8_t *)wd + kern_row_size(t, k) * (size_t)nn, wf, k));
            for (int64_t mm = 0; mm < m; mm++) {
                double mag = 0;
                for (int64_t kk = 0; kk < k; kk++)
                    mag += fabs((double)x[mm * k + kk] * wf[kk]);
                const double err = fabs((double)yi[mm * n + nn] - yr[mm * n + nn]);
                if (!(err <= 1e-5 * mag + 1e-6))
                    fail_msg("%s %s m=%lld n=%lld k=%lld (%s): y[%lld][%lld] = %.9g, reference %.9g (|err| %.3g > %.3g)",
                             kern_impl_name(impl), kern_type_name(t), (long long)m, (long long)n, (long long)k,
                             ii.variant, (long long)mm, (long long)nn, (double)yi[mm * n + nn], (double)yr[mm * n + nn],
                             err, 1e-5 * mag + 1e-6);
            }
        }
        free(wf);
        free(yr);
        free(yi);
        free(x);
        free(wd);
    }
}

static void test_float_paths(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AVX512, true))
        skip();
    check_float(KERN_TYPE_BF16, KERN_IMPL_AVX512, 0);
    check_float(KERN_TYPE_F16, KERN_IMPL_AVX512, 0);
    check_float(KERN_TYPE_F32, KERN_IMPL_AVX512, 0);
    check_float(KERN_TYPE_BF16, KERN_IMPL_AMX_EMU, 1);
    check_float(KERN_TYPE_F16, KERN_IMPL_AMX_EMU, 1);
    if (impl_available(KERN_IMPL_AMX, false)) {
        check_float(KERN_TYPE_BF16, KERN_IMPL_AMX, 1);
        check_float(KERN_TYPE_F16, KERN_IMPL_AMX, 1);
    } else {
        printf("SKIP: bf16 on real AMX tiles: AMX not usable here (covered by the emulator)\n");
    }
}

/* The emulated kernels really go through the tiles, and say so in the op record. */
static void test_emu_uses_tiles(void **state)
{
    (void)state;
    unsetenv("AMXDIAG_AMX_INT8_KERNEL");   /* a failed test above may have left it set */
    if (!impl_available(KERN_IMPL_AMX_EMU, true))
        skip();
    uint64_t before = kern_amx_emu_count();
    void *wd = make_weight(KERN_TYPE_Q8_0, 1, 32, 64);
    float x[32 * 64];
    fill(x, ADG_ARRAY_LEN(x), 1.0f);
    kern_op_info info;
    float *y = run_matmul(KERN_IMPL_AMX_EMU, 1, 16, KERN_TYPE_Q8_0, wd, 32, 32, 64, x, &info);
    assert_true(kern_amx_emu_count() > before + 8);
    assert_string_equal(info.variant, "amx-int8-q8_0");
    assert_int_equal(info.impl, KERN_IMPL_AMX_EMU);
    free(y);
    y = run_matmul(KERN_IMPL_AMX_EMU, 1, 16, KERN_TYPE_Q8_0, wd, 8, 32, 64, x, &info);
    assert_string_equal(info.variant, "avx512-vnni-q8_0");   /* m = 8 < crossover 16 */
    assert_int_equal(info.impl, KERN_IMPL_AVX512);
    free(y);
    free(wd);
}

/* MoE: each routed row equals the plain matmul of its expert, bit for bit. */
static void check_moe_shape(kern_type t, kern_impl impl, int crossover, bool per_slot, int64_t k, int64_t T)
{
    const int64_t E = 8, n = 40, K = 3;
    void *wd = make_weight(t, E, n, k);
    int32_t *ids = malloc((size_t)(T * K) * sizeof(int32_t));
    for (int64_t i = 0; i < T * K; i++)
        ids[i] = (int32_t)((i * 5 + i / K) % E);
    ids[7] = -1;                      /* a dropped slot */
    ids[0] = ids[3] = ids[6] = 2;     /* expert 2 gets more rows than the rest */
    const int64_t xrows = per_slot ? T * K : T;
    float *x = malloc((size_t)(xrows * k) * sizeof(float));
    fill(x, (size_t)(xrows * k), 2.0f);
    kern_cpu *c = ctx_new(impl, 3, crossover);
    kern_weight *w = NULL;
    ADG_ASSERT_OK(kern_weight_new(c, t, E, n, k, wd, &w));
    float *y = malloc((size_t)(T * K * n) * sizeof(float));
    for (int64_t i = 0; i < T * K * n; i++)
        y[i] = 12345.0f;
    kern_op_info info;
    ADG_ASSERT_OK(kern_moe_matmul(c, w, x, per_slot, ids, T, K, y, &info));
    assert_string_equal(info.op, "moe_matmul");
    const size_t mat = kern_row_size(t, k) * (size_t)n;
    for (int64_t i = 0; i < T * K; i++) {
        if (ids[i] < 0) {
            for (int64_t j = 0; j < n; j++)
                assert_true(y[i * n + j] == 12345.0f);
            continue;
        }
        const float *xr = x + (per_slot ? i : i / K) * k;
        float *yr = run_matmul(KERN_IMPL_REF, 1, 0, t, (uint8_t *)wd + mat * (size_t)ids[i], 1, n, k, xr, NULL);
        for (int64_t j = 0; j < n; j++) {
            const bool exact = kern_type_is_quantized(t);
            const float a = y[i * n + j], b = yr[j];
            if (exact ? memcmp(&a, &b, 4) != 0 : !(fabsf(a - b) <= 1e-4f * (fabsf(b) + 1.0f)))
                fail_msg("moe %s %s: token %lld slot %lld expert %d out %lld: %.9g vs reference %.9g",
                         kern_impl_name(impl), kern_type_name(t), (long long)(i / K), (long long)(i % K), ids[i],
                         (long long)j, (double)a, (double)b);
        }
        free(yr);
    }
    free(y);
    kern_weight_free(w);
    kern_cpu_free(c);
    free(x);
    free(wd);
    free(ids);
}

static void check_moe(kern_type t, kern_impl impl, int crossover, bool per_slot)
{
    check_moe_shape(t, impl, crossover, per_slot, 64, 19);
}

static void test_moe(void **state)
{
    (void)state;
    check_moe(KERN_TYPE_Q8_0, KERN_IMPL_REF, 0, false);
    check_moe(KERN_TYPE_Q4_0, KERN_IMPL_REF, 0, true);
    if (!impl_available(KERN_IMPL_AVX512, true))
        skip();
    check_moe(KERN_TYPE_Q8_0, KERN_IMPL_AVX512, 0, false);
    check_moe(KERN_TYPE_Q4_0, KERN_IMPL_AVX512, 0, true);
    check_moe(KERN_TYPE_Q4_0, KERN_IMPL_AMX_EMU, 1, false);
    check_moe(KERN_TYPE_Q8_0, KERN_IMPL_AMX_EMU, 9, true);    /* experts on both sides of the crossover */
    check_moe(KERN_TYPE_BF16, KERN_IMPL_AMX_EMU, 1, false);
    check_moe(KERN_TYPE_F32, KERN_IMPL_AVX512, 0, true);
    /* enough rows that routing, gathering and packing run on the pool */
    check_moe_shape(KERN_TYPE_Q8_0, KERN_IMPL_AMX_EMU, 1, true, 1024, 40);
    check_moe_shape(KERN_TYPE_BF16, KERN_IMPL_AMX_EMU, 1, false, 1024, 40);
    check_moe_shape(KERN_TYPE_Q4_0, KERN_IMPL_AVX512, 0, false, 1024, 40);
    if (impl_available(KERN_IMPL_AMX, false)) {
        check_moe(KERN_TYPE_Q4_0, KERN_IMPL_AMX, 1, false);
        check_moe(KERN_TYPE_Q8_0, KERN_IMPL_AMX, 9, true);
    }
}

static void test_bad_shapes(void **state)
{
    (void)state;
    kern_cpu *c = ctx_new(KERN_IMPL_REF, 1, 0);
    kern_weight *w = NULL;
    uint8_t buf[4096] = {0};
    adg_error *e = kern_weight_new(c, KERN_TYPE_Q4_0, 1, 4, 48, buf, &w);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "k = 48 is not a multiple of q4_0's block of 32"));
    adg_error_free(e);
    e = kern_weight_new(c, KERN_TYPE_Q8_0, 1, 0, 32, buf, &w);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_weight_new(c, (kern_type)3, 1, 4, 32, buf, &w);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_UNSUPPORTED);
    adg_error_free(e);

    ADG_ASSERT_OK(kern_weight_new(c, KERN_TYPE_Q8_0, 4, 16, 32, buf, &w));
    float x[64] = {0}, y[64];
    e = kern_matmul(c, w, x, 1, y, NULL);          /* 4 experts: not a plain matmul */
    assert_non_null(e);
    adg_error_free(e);
    int32_t ids[2] = {1, 4};
    e = kern_moe_matmul(c, w, x, false, ids, 1, 2, y, NULL);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "outside 0..3"));
    adg_error_free(e);
    e = kern_moe_matmul(c, w, x, false, ids, 1, 5, y, NULL);
    assert_non_null(e);
    adg_error_free(e);
    if (impl_available(KERN_IMPL_AVX512, false)) {
        kern_cpu *v = ctx_new(KERN_IMPL_AVX512, 1, 0);
        e = kern_moe_matmul(v, w, x, false, ids, 1, 1, y, NULL);   /* weight packed for ref */
        assert_non_null(e);
        assert_non_null(strstr(adg_error_msg(e), "repacked for the ref kernels"));
        adg_error_free(e);
        kern_cpu_free(v);
    }
    kern_weight_free(w);
    kern_cpu_free(c);

    kern_impl impl;
    assert_true(kern_impl_parse("amx-emu", &impl) && impl == KERN_IMPL_AMX_EMU);
    assert_false(kern_impl_parse("sse", &impl));
}

static void test_activation_quantizer(void **state)
{
    (void)state;
    if (!impl_available(KERN_IMPL_AVX512, true))
        skip();
    enum { K = 32 * 12 };
    float x[K];
    fill(x, K, 5.0f);
    for (int i = 0; i < 32; i++)   /* a block of exact ties: x/d = i + 0.5 */
        x[i] = (i - 16) + 0.5f;
    x[0] = 127.0f;
    for (int i = 32; i < 64; i++)
        x[i] = 0.0f;
    int8_t q1[K], q2[K];
    float d1[K / 32], d2[K / 32];
    int32_t s1[K / 32], s2[K / 32];
    kern_avx512_quantize_row_q8_0(x, q1, d1, s1, K);
    kern_block_q8_0 blk[K / 32];
    kern_quantize_row_q8_0(x, blk, K);
    for (int b = 0; b < K / 32; b++) {
        d2[b] = kern_fp16_to_fp32(blk[b].d);
        s2[b] = 0;
        for (int j = 0; j < 32; j++) {
            q2[b * 32 + j] = blk[b].qs[j];
            s2[b] += blk[b].qs[j];
        }
    }
    assert_memory_equal(q1, q2, sizeof q1);
    assert_memory_equal(d1, d2, sizeof d1);
    assert_memory_equal(s1, s2, sizeof s1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_quantizer),
        cmocka_unit_test(test_avx512_int),
        cmocka_unit_test(test_avx512_int_blocks),
        cmocka_unit_test(test_amx_emu_int),
        cmocka_unit_test(test_amx_hw_int),
        cmocka_unit_test(test_float_paths),
        cmocka_unit_test(test_emu_uses_tiles),
        cmocka_unit_test(test_moe),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

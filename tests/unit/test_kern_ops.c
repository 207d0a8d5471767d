/* Non-matmul operations (AVX-512 vs reference and vs closed forms), the thread pool, the
 * crossover file, and the tile emulator's fault checks. */
#include "adg_test.h"
#include "kern_test.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "kernels/amx/amx_emu.h"
#include "kernels/kern_cpu.h"
#include "kernels/kern_pool.h"
#include "kernels/kern_quant.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { return kern_test_frand(&rng); }

static bool have_avx512(void)
{
    adg_error *e = kern_impl_check(KERN_IMPL_AVX512);
    if (!e)
        return true;
    printf("SKIP: %s\n", adg_error_msg(e));
    adg_error_free(e);
    return false;
}

static kern_cpu *ctx(kern_impl impl, int threads) { return kern_test_cpu(impl, threads); }

static void close_enough(const float *a, const float *b, size_t n, float rtol, float atol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= rtol * fabsf(b[i]) + atol))
            fail_msg("%s[%zu]: %.9g vs reference %.9g", what, i, (double)a[i], (double)b[i]);
}

static void test_elementwise(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    kern_cpu *r = ctx(KERN_IMPL_REF, 2), *v = ctx(KERN_IMPL_AVX512, 2);
    enum { M = 7, N = 300 };   /* N not a multiple of 16: masked tails */
    float x[M * N], w[N], y1[M * N], y2[M * N], g[M * N], u[M * N];
    for (int i = 0; i < M * N; i++) {
        x[i] = frand() * 4;
        g[i] = frand() * 10;
        u[i] = frand();
    }
    for (int i = 0; i < N; i++)
        w[i] = 1 + frand() * 0.1f;
    kern_op_info info;
    ADG_ASSERT_OK(kern_rmsnorm(r, x, w, M, N, 1e-6f, y1, NULL));
    ADG_ASSERT_OK(kern_rmsnorm(v, x, w, M, N, 1e-6f, y2, &info));
    close_enough(y2, y1, M * N, 1e-6f, 1e-7f, "rmsnorm");
    assert_string_equal(info.op, "rmsnorm");
    assert_int_equal(info.impl, KERN_IMPL_AVX512);
    /* closed form: a row of 2s normalises to 1s */
    float twos[N], ones[N];
    for (int i = 0; i < N; i++)
        twos[i] = 2;
    ADG_ASSERT_OK(kern_rmsnorm(v, twos, NULL, 1, N, 0, ones, NULL));
    for (int i = 0; i < N; i++)
        assert_true(fabsf(ones[i] - 1) < 1e-6f);

    memcpy(y1, x, sizeof x);
    memcpy(y2, x, sizeof x);
    ADG_ASSERT_OK(kern_softmax(r, y1, M, N, 0.7f, NULL));
    ADG_ASSERT_OK(kern_softmax(v, y2, M, N, 0.7f, NULL));
    close_enough(y2, y1, M * N, 2e-6f, 1e-9f, "softmax");
    for (int m = 0; m < M; m++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += y2[m * N + i];
        assert_true(fabs(s - 1) < 1e-5);
    }

    ADG_ASSERT_OK(kern_silu_mul(r, g, u, M, N, y1, NULL));
    ADG_ASSERT_OK(kern_silu_mul(v, g, u, M, N, y2, NULL));
    close_enough(y2, y1, M * N, 2e-6f, 1e-7f, "silu_mul");
    /* big enough to go through the pool */
    enum { BIG = 70001 };
    float *bg = malloc(BIG * sizeof(float)), *bu = malloc(BIG * sizeof(float));
    float *b1 = malloc(BIG * sizeof(float)), *b2 = malloc(BIG * sizeof(float));
    for (int i = 0; i < BIG; i++) {
        bg[i] = frand() * 20;
        bu[i] = frand();
    }
    ADG_ASSERT_OK(kern_silu_mul(r, bg, bu, 1, BIG, b1, NULL));
    ADG_ASSERT_OK(kern_silu_mul(v, bg, bu, 1, BIG, b2, NULL));
    close_enough(b2, b1, BIG, 2e-6f, 1e-7f, "silu_mul big");
    free(bg);
    free(bu);
    free(b1);
    free(b2);

    /* get_rows: dequantized rows of a q8_0 table */
    enum { ROWS = 10, K = 64 };
    float tab[ROWS * K];
    for (int i = 0; i < ROWS * K; i++)
        tab[i] = frand();
    kern_block_q8_0 q[ROWS * K / 32];
    kern_quantize_row_q8_0(tab, q, ROWS * K);
    int32_t ids[3] = {9, 0, 4};
    float out[3 * K], want[K];
    ADG_ASSERT_OK(kern_get_rows(v, KERN_TYPE_Q8_0, q, ROWS, K, ids, 3, out, &info));
    for (int i = 0; i < 3; i++) {
        kern_dequantize_row_q8_0(q + ids[i] * 2, want, K);
        assert_memory_equal(out + i * K, want, sizeof want);
    }
    int32_t bad[1] = {10};
    adg_error *e = kern_get_rows(v, KERN_TYPE_Q8_0, q, ROWS, K, bad, 1, out, NULL);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_rmsnorm(v, x, w, 0, N, 1e-6f, y1, NULL);
    assert_non_null(e);
    adg_error_free(e);
    kern_cpu_free(r);
    kern_cpu_free(v);
}

static void test_rope(void **state)
{
    (void)state;
    kern_cpu *c = ctx(KERN_IMPL_REF, 1);
    enum { T = 3, H = 2, D = 8 };
    float x[T * H * D], x0[T * H * D];
    for (int i = 0; i < T * H * D; i++)
        x[i] = x0[i] = frand();
    int32_t pos[T] = {0, 1, 1000};
    ADG_ASSERT_OK(kern_rope_neox(c, x, T, H, D, D, pos, 10000.0f, NULL));
    /* position 0 is the identity */
    assert_memory_equal(x, x0, H * D * sizeof(float));
    /* position 1, pair i = 0 rotates by exactly 1 radian (base^0) */
    const float *a = x0 + H * D, *b = x + H * D;
    assert_true(fabsf(b[0] - (a[0] * cosf(1) - a[4] * sinf(1))) < 1e-6f);
    assert_true(fabsf(b[4] - (a[0] * sinf(1) + a[4] * cosf(1))) < 1e-6f);
    /* rotations keep each pair's norm */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D / 2; i++) {
                const float *p = x0 + (t * H + h) * D, *q = x + (t * H + h) * D;
                assert_true(fabsf(hypotf(p[i], p[i + 4]) - hypotf(q[i], q[i + 4])) < 1e-5f);
            }
    adg_error *e = kern_rope_neox(c, x, T, H, D, 3, pos, 10000.0f, NULL);
    assert_non_null(e);
    adg_error_free(e);
    kern_cpu_free(c);
}

/* The AVX-512 rotation (angles once per token, vectors) gives the reference's bits, for
 * head sizes with tails (rot_dim/2 not a multiple of 16) and partial rotary dimensions;
 * and the two-step API (angles, then rotate) gives kern_rope_neox's bits. */
static void test_rope_avx512_bits(void **state)
{
    (void)state;
    if (!have_avx512())
        return;
    kern_cpu *r = ctx(KERN_IMPL_REF, 1), *v = ctx(KERN_IMPL_AVX512, 2);
    const int64_t dims[][2] = {{128, 128}, {64, 64}, {40, 40}, {80, 48}, {8, 2}, {34, 34}};
    enum { T = 4, H = 3 };
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
        const int64_t D = dims[c][0], R = dims[c][1];
        float *a = malloc(sizeof(float) * T * H * D), *b = malloc(sizeof(float) * T * H * D),
              *s = malloc(sizeof(float) * T * H * D);
        for (int64_t i = 0; i < T * H * D; i++)
            a[i] = b[i] = s[i] = frand() * 3.0f;
        int32_t pos[T] = {0, 7, 513, 4095};
        ADG_ASSERT_OK(kern_rope_neox(r, a, T, H, D, R, pos, 1000000.0f, NULL));
        ADG_ASSERT_OK(kern_rope_neox(v, b, T, H, D, R, pos, 1000000.0f, NULL));
        assert_memory_equal(a, b, sizeof(float) * T * H * D);
        float cs[128];
        for (int t = 0; t < T; t++) {
            kern_rope_neox_angles(pos[t], R, 1000000.0f, cs);
            kern_rope_neox_rotate(t % 2 ? v : r, s + t * H * D, H, D, R, cs);
        }
        assert_memory_equal(a, s, sizeof(float) * T * H * D);
        free(a);
        free(b);
        free(s);
    }
    kern_cpu_free(r);
    kern_cpu_free(v);
}

static void attention_case(kern_type kv)
{
    kern_cpu *r = ctx(KERN_IMPL_REF, 2), *v = ctx(KERN_IMPL_AVX512, 3);
    enum { T = 5, H = 8, HKV = 2, D = 40, CTX = 32, POS0 = 11 };
    float q[T * H * D], o1[T * H * D], o2[T * H * D];
    float kf[CTX * HKV * D], vf[CTX * HKV * D];
    uint16_t kh[CTX * HKV * D], vh[CTX * HKV * D];
    for (int i = 0; i < T * H * D; i++)
        q[i] = frand();
    for (int i = 0; i < CTX * HKV * D; i++) {
        kf[i] = frand();
        vf[i] = frand();
        kh[i] = kern_fp32_to_fp16(kf[i]);
        vh[i] = kern_fp32_to_fp16(vf[i]);
    }
    kern_attn_args a = {q, kv == KERN_TYPE_F16 ? (void *)kh : (void *)kf, kv == KERN_TYPE_F16 ? (void *)vh : (void *)vf,
                        kv, T, H, HKV, D, CTX, POS0, 0, o1};
    ADG_ASSERT_OK(kern_attention(r, &a, NULL));
    a.out = o2;
    kern_op_info info;
    ADG_ASSERT_OK(kern_attention(v, &a, &info));
    close_enough(o2, o1, T * H * D, 1e-5f, 1e-6f, "attention");
    /* token 0 at position 0 with a 1-entry cache would return V[0]: check with pos0 = 0 */
    a.pos0 = 0;
    a.n_tokens = 1;
    ADG_ASSERT_OK(kern_attention(v, &a, NULL));
    for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) {
            float want = kv == KERN_TYPE_F16 ? kern_fp16_to_fp32(vh[(h / (H / HKV)) * D + d]) : vf[(h / (H / HKV)) * D + d];
            assert_true(fabsf(o2[h * D + d] - want) < 1e-6f);
        }
    a.pos0 = CTX;   /* beyond the cache */
    adg_error *e = kern_attention(v, &a, NULL);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "KV cache"));
    adg_error_free(e);
    a.pos0 = 0;
    a.n_head_kv = 3;   /* 8 heads are not a multiple of 3 */
    e = kern_attention(v, &a, NULL);
    assert_non_null(e);
    adg_error_free(e);
    kern_cpu_free(r);
    kern_cpu_free(v);
}

static void test_attention(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    attention_case(KERN_TYPE_F32);
    attention_case(KERN_TYPE_F16);
}

/* The blocked prompt-evaluation kernel (n_tokens >= 8) against the reference: several
 * query blocks, key blocks that straddle the diagonal, a cache prefix (pos0), GQA groups
 * of 1, 4, 8 and 16, head_dim with and without a tail, threads 1 and 3. */
static void flash_case_impl(kern_impl impl, kern_type kv, int T, int H, int HKV, int D, int pos0, int threads,
                            float rtol, float atol, const char *variant)
{
    const int CTX = pos0 + T + 3;
    const size_t nq = (size_t)T * H * D, nkv = (size_t)CTX * HKV * D;
    float *q = malloc(nq * sizeof *q), *o1 = malloc(nq * sizeof *o1), *o2 = malloc(nq * sizeof *o2);
    float *kf = malloc(nkv * sizeof *kf), *vf = malloc(nkv * sizeof *vf);
    uint16_t *kh = malloc(nkv * sizeof *kh), *vh = malloc(nkv * sizeof *vh);
    assert_non_null(q);
    assert_non_null(o1);
    assert_non_null(o2);
    assert_non_null(kf);
    assert_non_null(vf);
    assert_non_null(kh);
    assert_non_null(vh);
    for (size_t i = 0; i < nq; i++)
        q[i] = 3.0f * frand();   /* peaked rows: the online rescaling matters */
    for (size_t i = 0; i < nkv; i++) {
        kf[i] = frand();
        vf[i] = frand();
        kh[i] = kern_fp32_to_fp16(kf[i]);
        vh[i] = kern_fp32_to_fp16(vf[i]);
    }
    kern_cpu *r = ctx(KERN_IMPL_REF, 1), *v = ctx(impl, threads);
    kern_attn_args a = {q, kv == KERN_TYPE_F16 ? (void *)kh : (void *)kf, kv == KERN_TYPE_F16 ? (void *)vh : (void *)vf,
                        kv, T, H, HKV, D, CTX, pos0, 0, o1};
    ADG_ASSERT_OK(kern_attention(r, &a, NULL));
    a.out = o2;
    kern_op_info info;
    ADG_ASSERT_OK(kern_attention(v, &a, &info));
    assert_string_equal(info.variant, variant);
    close_enough(o2, o1, nq, rtol, atol, variant);
    kern_cpu_free(r);
    kern_cpu_free(v);
    free(q);
    free(o1);
    free(o2);
    free(kf);
    free(vf);
    free(kh);
    free(vh);
}

static void flash_case(kern_type kv, int T, int H, int HKV, int D, int pos0, int threads)
{
    flash_case_impl(KERN_IMPL_AVX512, kv, T, H, HKV, D, pos0, threads, 1e-5f, 2e-6f, "avx512-flash-attention");
}

/* The bf16 tile kernel (AMXDIAG_ATTN_KERNEL=amx): on the emulator here, on tiles where
 * AMX is usable.  Q, K, V and P are rounded to bf16: outputs (averages of values in
 * [-1, 1]) within 2e-2 of the fp32 reference. */
static void amx_flash_cases(kern_impl impl)
{
    setenv("AMXDIAG_ATTN_KERNEL", "amx", 1);
    flash_case_impl(impl, KERN_TYPE_F16, 37, 8, 2, 40, 0, 3, 2e-2f, 2e-2f, "amx-bf16-flash-attention");
    flash_case_impl(impl, KERN_TYPE_F32, 21, 4, 4, 16, 70, 2, 2e-2f, 2e-2f, "amx-bf16-flash-attention");
    flash_case_impl(impl, KERN_TYPE_F16, 70, 16, 2, 128, 5, 3, 2e-2f, 2e-2f, "amx-bf16-flash-attention");
    unsetenv("AMXDIAG_ATTN_KERNEL");
}

static void test_flash_attention_amx(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    amx_flash_cases(KERN_IMPL_AMX_EMU);
    adg_error *e = kern_impl_check(KERN_IMPL_AMX);
    if (e) {
        printf("SKIP (real tiles): %s\n", adg_error_msg(e));
        adg_error_free(e);
        return;
    }
    amx_flash_cases(KERN_IMPL_AMX);
}

static void test_flash_attention(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    flash_case(KERN_TYPE_F16, 37, 8, 2, 40, 0, 3);
    flash_case(KERN_TYPE_F32, 37, 8, 2, 40, 11, 3);
    flash_case(KERN_TYPE_F16, 70, 16, 2, 128, 5, 3);    /* hd 128, G 8: the Qwen3 shape */
    flash_case(KERN_TYPE_F32, 9, 3, 3, 16, 130, 1);     /* G 1, three key blocks of prefix */
    flash_case(KERN_TYPE_F16, 20, 16, 1, 24, 63, 2);    /* G 16, key block edge at pos0 + 1 */
}

/* kern_store_f16 must give kern_fp32_to_fp16_row's bits: every 4099th f32 pattern (all
 * exponents: subnormals, overflow, ties, NaNs) plus the specials. */
static void test_store_f16(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    uint16_t *y1 = malloc(N * sizeof *y1), *y2 = malloc(N * sizeof *y2);
    assert_non_null(x);
    assert_non_null(y1);
    assert_non_null(y2);
    kern_cpu *r = ctx(KERN_IMPL_REF, 2), *v = ctx(KERN_IMPL_AVX512, 2);
    uint32_t bits = 0;
    for (int i = 0; i < N; i++, bits += 4099u)
        memcpy(&x[i], &bits, 4);
    const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f, 65519.99f, 5.9604645e-8f,
                        2.9802322e-8f, 2.9802326e-8f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f};
    memcpy(x, sp, sizeof sp);
    kern_op_info info;
    ADG_ASSERT_OK(kern_store_f16(r, x, y1, N - 3, NULL));
    ADG_ASSERT_OK(kern_store_f16(v, x, y2, N - 3, &info));   /* a tail of 13 */
    assert_string_equal(info.variant, "avx512-f16c");
    for (int i = 0; i < N - 3; i++)
        if (y1[i] != y2[i])
            fail_msg("store_f16[%d] of 0x%08x: 0x%04x vs reference 0x%04x", i, (unsigned)(i * 4099u), y2[i], y1[i]);
    for (int i = 0; i < N - 3; i++)
        assert_int_equal(y1[i], kern_fp32_to_fp16(x[i]));
    kern_cpu_free(r);
    kern_cpu_free(v);
    free(x);
    free(y1);
    free(y2);
}

typedef struct pool_arg {
    _Atomic int calls;
    _Atomic long sum;
    int seen[16];
} pool_arg;

static void pool_fn(void *p, int ith, int nth)
{
    pool_arg *a = p;
    atomic_fetch_add(&a->calls, 1);
    long lo, hi;
    kern_split(1000, ith, nth, &lo, &hi);
    long s = 0;
    for (long i = lo; i < hi; i++)
        s += i;
    atomic_fetch_add(&a->sum, s);
    a->seen[ith]++;
}

static void test_pool(void **state)
{
    (void)state;
    for (int n = 1; n <= 5; n += 2) {
        kern_pool *p = NULL;
        ADG_ASSERT_OK(kern_pool_new(n, false, &p));
        assert_int_equal(kern_pool_size(p), n);
        assert_true(kern_pool_nodes(p) >= 1);
        pool_arg a = {0};
        for (int r = 0; r < 300; r++) {
            kern_pool_run(p, pool_fn, &a);
            if (r == 150)
                usleep(20000);   /* let the workers fall asleep on the futex, then wake them */
        }
        assert_int_equal(atomic_load(&a.calls), 300 * n);
        assert_int_equal(atomic_load(&a.sum), 300L * 999 * 1000 / 2);
        for (int i = 0; i < n; i++)
            assert_int_equal(a.seen[i], 300);
        kern_pool_free(p);
    }
    kern_pool *p = NULL;
    adg_error *e = kern_pool_new(0, false, &p);
    assert_non_null(e);
    adg_error_free(e);
    /* kern_split covers every unit exactly once */
    for (int nth = 1; nth < 7; nth++) {
        long next = 0;
        for (int i = 0; i < nth; i++) {
            long lo, hi;
            kern_split(10, i, nth, &lo, &hi);
            assert_int_equal(lo, next);
            next = hi;
        }
        assert_int_equal(next, 10);
    }
}

typedef struct par_sum {
    _Atomic long sum;
    _Atomic int calls;
} par_sum;

static void par_fn(void *arg, int64_t lo, int64_t hi)
{
    par_sum *p = arg;
    long s = 0;
    for (int64_t i = lo; i < hi; i++)
        s += (long)i;
    atomic_fetch_add(&p->sum, s);
    atomic_fetch_add(&p->calls, 1);
}

static void test_parallel(void **state)
{
    (void)state;
    kern_cpu *c = ctx(KERN_IMPL_REF, 3);
    par_sum p = {0};
    kern_cpu_parallel(c, 100000, 1, par_fn, &p);          /* enough work: all three workers */
    assert_int_equal(atomic_load(&p.sum), 100000L * 99999 / 2);
    assert_int_equal(atomic_load(&p.calls), 3);
    par_sum q = {0};
    kern_cpu_parallel(c, 10, 1, par_fn, &q);              /* little work: the caller alone */
    assert_int_equal(atomic_load(&q.sum), 45);
    assert_int_equal(atomic_load(&q.calls), 1);
    kern_cpu_parallel(c, 0, 1, par_fn, &q);
    assert_int_equal(atomic_load(&q.calls), 1);
    kern_cpu_free(c);
}

static void test_crossover_file(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/sub/crossover.json", dir);
    kern_crossover c = {8, 32, 4, true}, d;
    ADG_ASSERT_OK(kern_crossover_save(path, &c));
    kern_crossover_defaults(&d);
    assert_false(d.measured);
    ADG_ASSERT_OK(kern_crossover_load(path, &d));
    assert_int_equal(d.q8_0, 8);
    assert_int_equal(d.q4_0, 32);
    assert_int_equal(d.bf16, 4);
    assert_true(d.measured);
    /* a context reads it */
    kern_cpu_opts o = {.impl = KERN_IMPL_REF, .threads = 1, .crossover = path};
    kern_cpu *k = NULL;
    ADG_ASSERT_OK(kern_cpu_new(&o, &k));
    assert_int_equal(kern_cpu_crossover(k)->q4_0, 32);
    kern_cpu_free(k);
    /* corrupt and foreign files give errors that name the problem */
    static const char *bad[] = {"{\"schema\":\"amxdiag.crossover/1\",\"amx_min_m\":{\"q8_0\":0}}",
                                "{\"schema\":\"amxdiag.record/1\"}", "{\"schema\":\"amxdiag.crossover/1\"", "[]"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(bad); i++) {
        ADG_ASSERT_OK(adg_write_file_atomic(path, bad[i], strlen(bad[i])));
        adg_error *e = kern_crossover_load(path, &d);
        assert_non_null(e);
        assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
        adg_error_free(e);
        o.crossover = path;
        e = kern_cpu_new(&o, &k);   /* an explicit bad file is an error */
        assert_non_null(e);
        adg_error_free(e);
    }
    /* a bad file at the default path is ignored with a warning */
    setenv("AMXDIAG_CROSSOVER", path, 1);
    o.crossover = NULL;
    ADG_ASSERT_OK(kern_cpu_new(&o, &k));
    assert_false(kern_cpu_crossover(k)->measured);
    kern_cpu_free(k);
    adg_test_rmtree(dir);
}

static void test_emulator_faults(void **state)
{
    (void)state;
    kern_amx_emu_set_trap(1);
    uint8_t cfg[64] = {0};
    uint8_t buf[1024] = {0};
    kern_amx_emu_loadd(0, buf, 64);   /* before any ldtilecfg */
    assert_non_null(strstr(kern_amx_emu_last_fault(), "no tile configuration"));
    cfg[0] = 0;
    kern_amx_emu_loadconfig(cfg);
    assert_non_null(strstr(kern_amx_emu_last_fault(), "palette 0"));
    cfg[0] = 1;
    cfg[48] = 17;   /* tile 0: 17 rows */
    cfg[16] = 64;
    kern_amx_emu_loadconfig(cfg);
    assert_non_null(strstr(kern_amx_emu_last_fault(), "rows <= 16"));
    cfg[48] = 16;
    cfg[16] = 66;
    cfg[17] = 0;
    kern_amx_emu_loadconfig(cfg);
    assert_non_null(kern_amx_emu_last_fault());
    /* a valid configuration: C (tile 0) 16x64, A (tile 1) 16x64, B (tile 2) 16x64; tile 3 8x64 */
    memset(cfg, 0, sizeof cfg);
    cfg[0] = 1;
    for (int t = 0; t < 4; t++) {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = t == 3 ? 8 : 16;
    }
    kern_amx_emu_loadconfig(cfg);
    assert_null(kern_amx_emu_last_fault());
    kern_amx_emu_zero(5);
    assert_non_null(strstr(kern_amx_emu_last_fault(), "tile 5 is not configured"));
    kern_amx_emu_dp(KERN_AMX_EMU_DPBSSD, 0, 1, 3);   /* B has 8 rows, A has 64 bytes = K 16 */
    assert_non_null(strstr(kern_amx_emu_last_fault(), "shapes do not match"));
    kern_amx_emu_dp(KERN_AMX_EMU_DPBSSD, 0, 0, 2);
    assert_non_null(strstr(kern_amx_emu_last_fault(), "must differ"));

    /* The four integer forms against a scalar product, with signed/unsigned bytes. */
    int8_t A[16][64], B[16][64];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 64; j++) {
            A[i][j] = (int8_t)(frand() * 127);
            B[i][j] = (int8_t)(frand() * 127);
        }
    static const kern_amx_emu_op ops[] = {KERN_AMX_EMU_DPBSSD, KERN_AMX_EMU_DPBSUD, KERN_AMX_EMU_DPBUSD,
                                          KERN_AMX_EMU_DPBUUD};
    for (size_t o = 0; o < ADG_ARRAY_LEN(ops); o++) {
        kern_amx_emu_zero(0);
        kern_amx_emu_loadd(1, A, 64);
        kern_amx_emu_loadd(2, B, 64);
        kern_amx_emu_dp(ops[o], 0, 1, 2);
        int32_t C[16][16];
        kern_amx_emu_stored(0, C, 64);
        assert_null(kern_amx_emu_last_fault());
        const bool as = ops[o] == KERN_AMX_EMU_DPBSSD || ops[o] == KERN_AMX_EMU_DPBSUD;
        const bool bs = ops[o] == KERN_AMX_EMU_DPBSSD || ops[o] == KERN_AMX_EMU_DPBUSD;
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 16; n++) {
                int32_t s = 0;
                for (int k = 0; k < 64; k++) {
                    int32_t a = as ? A[m][k] : (uint8_t)A[m][k];
                    int32_t b = bs ? B[k / 4][n * 4 + k % 4] : (uint8_t)B[k / 4][n * 4 + k % 4];
                    s += a * b;
                }
                assert_int_equal(C[m][n], s);
            }
    }
    kern_amx_emu_release();
    kern_amx_emu_zero(0);
    assert_non_null(kern_amx_emu_last_fault());
    kern_amx_emu_set_trap(0);
}

/* The AMX permission request gives an actionable error where the kernel refuses it (no
 * AMX here: EINVAL), and succeeds where AMX exists; a second call returns the same. */
static void test_amx_permission(void **state)
{
    (void)state;
    adg_error *e1 = kern_amx_request_permission();
    adg_error *e2 = kern_amx_request_permission();
    assert_true((e1 == NULL) == (e2 == NULL));
    if (e1) {
        assert_non_null(strstr(adg_error_msg(e1), "ARCH_REQ_XCOMP_PERM"));
        assert_non_null(adg_error_remedy(e1));
        assert_string_equal(adg_error_msg(e1), adg_error_msg(e2));
        printf("(permission refused here, as expected without AMX: %s)\n", adg_error_msg(e1));
    }
    adg_error_free(e1);
    adg_error_free(e2);
    /* kern_impl_check names the missing layer */
    const kern_cpu_features *f = kern_cpu_features_get();
    adg_error *e = kern_impl_check(KERN_IMPL_AMX);
    if (!f->amx_tile) {
        assert_non_null(e);
        assert_non_null(strstr(adg_error_msg(e), "AMX"));
        assert_non_null(adg_error_remedy(e));
    }
    adg_error_free(e);
    assert_null(kern_impl_check(KERN_IMPL_REF));
}

/* The VNNI GEMV's prefetch schemes (AMXDIAG_GEMV_PREFETCH: panel, the default; ahead;
 * none; l2) only move lines, so every one gives the reference's bits: K of 2 to 33 blocks
 * (fewer than the prefetch distance of 8, equal, more), N with tails, one to three
 * workers (panel ranges that start past 0 and end on partial groups), and all matrices of
 * an expert weight (prefetches never leave [p0, p1), so nothing past the last matrix). */
static void gemv_pf_case(kern_type t, int64_t n_mat, int64_t n, int64_t k)
{
    const size_t rs = kern_row_size(t, k);
    uint8_t *wd = malloc(rs * (size_t)(n_mat * n));
    float *row = malloc((size_t)k * sizeof(float)), *x = malloc((size_t)k * sizeof(float));
    for (int64_t r = 0; r < n_mat * n; r++) {
        for (int64_t i = 0; i < k; i++)
            row[i] = frand() * (1.0f + (float)(r % 5));
        ADG_ASSERT_OK(kern_quantize_row(t, row, wd + rs * (size_t)r, k));
    }
    for (int64_t i = 0; i < k; i++)
        x[i] = frand() * 2.0f;
    float *want = malloc((size_t)(n_mat * n) * sizeof(float)), *got = malloc((size_t)(n_mat * n) * sizeof(float));
    for (int mode = -1; mode < 4; mode++) {
        static const char *const names[] = {"panel", "ahead", "none", "l2"};
        if (mode >= 0)
            setenv("AMXDIAG_GEMV_PREFETCH", names[mode], 1);
        for (int threads = 1; threads <= 3; threads += 2) {
            kern_cpu *c = ctx(mode < 0 ? KERN_IMPL_REF : KERN_IMPL_AVX512, mode < 0 ? 1 : threads);
            kern_weight *w = NULL;
            ADG_ASSERT_OK(kern_weight_new(c, t, n_mat, n, k, wd, &w));
            float *y = mode < 0 ? want : got;
            int32_t ids[8];
            for (int64_t e = 0; e < n_mat; e++)
                ids[e] = (int32_t)(n_mat - 1 - e);   /* every matrix, last first */
            if (n_mat == 1)
                ADG_ASSERT_OK(kern_matmul(c, w, x, 1, y, NULL));
            else
                ADG_ASSERT_OK(kern_moe_matmul(c, w, x, false, ids, 1, n_mat, y, NULL));
            kern_weight_free(w);
            kern_cpu_free(c);
            if (mode < 0)
                break;
            for (int64_t i = 0; i < n_mat * n; i++)
                if (memcmp(&want[i], &got[i], sizeof(float)) != 0)
                    fail_msg("gemv %s prefetch=%s threads=%d n_mat=%lld n=%lld k=%lld: y[%lld] = %.9g, reference %.9g",
                             kern_type_name(t), names[mode], threads, (long long)n_mat, (long long)n, (long long)k,
                             (long long)i, (double)got[i], (double)want[i]);
        }
    }
    unsetenv("AMXDIAG_GEMV_PREFETCH");
    free(want);
    free(got);
    free(row);
    free(x);
    free(wd);
}

static void test_gemv_prefetch_modes(void **state)
{
    (void)state;
    if (!have_avx512())
        skip();
    const kern_type types[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    for (size_t i = 0; i < 2; i++) {
        gemv_pf_case(types[i], 1, 16 * 9 + 5, 64);     /* 2 blocks: all within the distance */
        gemv_pf_case(types[i], 1, 16 * 13, 256);       /* 8 blocks: equal to it */
        gemv_pf_case(types[i], 1, 16 * 30 + 7, 544);   /* 17 blocks, 31 panels */
        gemv_pf_case(types[i], 1, 200, 1056);          /* 33 blocks */
        gemv_pf_case(types[i], 3, 16 * 11, 512);       /* experts: 11 panels each */
    }
}

/* kern_gemv_batch: several products in one region, x quantized once, give the reference's
 * bits for each product, and so do kern_matmul / kern_moe_matmul at m = 1 with the M = 1
 * tail split (AMXDIAG_GEMV_TAIL=1: the last panels in smaller items) at 1 and 3 workers;
 * a weight of another k or type family, or a matrix out of range, is a usage error. */
static uint8_t *batch_data(kern_type t, int64_t rows, int64_t k)
{
    const size_t rs = kern_row_size(t, k);
    uint8_t *wd = malloc(rs * (size_t)rows);
    float *row = malloc((size_t)k * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++)
            row[i] = frand() * (1.0f + (float)(r % 3));
        ADG_ASSERT_OK(kern_quantize_row(t, row, wd + rs * (size_t)r, k));
    }
    free(row);
    return wd;
}

static void test_gemv_batch(void **state)
{
    (void)state;
    enum { K = 320, NA = 16 * 99 + 3, NB = 16 * 5, NW = 5 };   /* a: 100 panels, the last one partial */
    float x[K];
    for (int64_t i = 0; i < K; i++)
        x[i] = frand() * 2.0f;
    /* a last: the tail split applies to a region's last product (items of 2 panels at 3
     * workers, 3 at 1) */
    const int64_t mats[NW] = {0, 2, 0, 1, 0};
    const bool is_a[NW] = {true, false, false, false, true};
    const kern_type types[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    for (int ti = 0; ti < 2; ti++) {
        const kern_type t = types[ti];
        uint8_t *da = batch_data(t, NA, K), *db = batch_data(t, 3 * NB, K);
        uint8_t *dk = batch_data(t, 16, K + 32), *dt = batch_data(types[ti ^ 1], 16, K);
        float *want[NW], *got[NW], *one = malloc(sizeof(float) * NA);
        for (int i = 0; i < NW; i++) {
            want[i] = malloc(sizeof(float) * NA);
            got[i] = malloc(sizeof(float) * NA);
        }
        /* run 0: the reference, one worker, no tail split; then avx512 (when here) and the
         * reference at 1 and 3 workers, with and without it */
        for (int run = 0; run < 9; run++) {
            const int impl = run == 0 ? 0 : (run - 1) / 4, threads = run == 0 ? 1 : (run - 1) % 2 ? 3 : 1;
            const int tail = run == 0 ? 0 : ((run - 1) / 2) % 2;
            if (impl == 1 && !have_avx512())
                continue;
            setenv("AMXDIAG_GEMV_TAIL", tail ? "1" : "0", 1);
            for (int i = 0; i < NW; i++)   /* a row no item wrote is caught */
                memset(got[i], 0xff, sizeof(float) * NA);
            kern_cpu *c = ctx(impl ? KERN_IMPL_AVX512 : KERN_IMPL_REF, threads);
            kern_weight *a = NULL, *b = NULL, *ok = NULL, *ot = NULL;
            ADG_ASSERT_OK(kern_weight_new(c, t, 1, NA, K, da, &a));
            ADG_ASSERT_OK(kern_weight_new(c, t, 3, NB, K, db, &b));
            ADG_ASSERT_OK(kern_weight_new(c, t, 1, 16, K + 32, dk, &ok));
            ADG_ASSERT_OK(kern_weight_new(c, types[ti ^ 1], 1, 16, K, dt, &ot));
            const kern_weight *ws[NW];
            for (int i = 0; i < NW; i++)
                ws[i] = is_a[i] ? a : b;
            kern_op_info info;
            ADG_ASSERT_OK(kern_gemv_batch(c, ws, mats, NW, x, run == 0 ? want : got, &info));
            assert_string_equal(info.op, "gemv_batch");
            for (int i = 0; i < NW && run > 0; i++) {
                const int64_t n = is_a[i] ? NA : NB;
                const int32_t id = (int32_t)mats[i];
                memset(one, 0xff, sizeof(float) * NA);
                if (is_a[i])
                    ADG_ASSERT_OK(kern_matmul(c, a, x, 1, one, NULL));
                else
                    ADG_ASSERT_OK(kern_moe_matmul(c, b, x, false, &id, 1, 1, one, NULL));
                if (memcmp(want[i], got[i], sizeof(float) * (size_t)n) != 0 ||
                    memcmp(want[i], one, sizeof(float) * (size_t)n) != 0)
                    fail_msg("gemv_batch %s %s threads=%d tail=%d: product %d differs from the reference",
                             kern_type_name(t), impl ? "avx512" : "ref", threads, tail, i);
            }
            const kern_weight *bad1[] = {a, ok}, *bad2[] = {a, ot}, *ab[] = {a, b};
            const int64_t bad_mats[] = {0, 3};
            adg_error *e = kern_gemv_batch(c, bad1, NULL, 2, x, got, NULL);
            assert_non_null(e);
            assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
            assert_non_null(adg_error_remedy(e));
            adg_error_free(e);
            assert_non_null(e = kern_gemv_batch(c, bad2, NULL, 2, x, got, NULL));
            adg_error_free(e);
            assert_non_null(e = kern_gemv_batch(c, ab, bad_mats, 2, x, got, NULL));
            adg_error_free(e);
            assert_non_null(e = kern_gemv_batch(c, ab, NULL, 0, x, got, NULL));
            adg_error_free(e);
            kern_weight_free(a);
            kern_weight_free(b);
            kern_weight_free(ok);
            kern_weight_free(ot);
            kern_cpu_free(c);
        }
        unsetenv("AMXDIAG_GEMV_TAIL");
        for (int i = 0; i < NW; i++) {
            free(want[i]);
            free(got[i]);
        }
        free(one);
        free(da);
        free(db);
        free(dk);
        free(dt);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elementwise),   cmocka_unit_test(test_rope), cmocka_unit_test(test_rope_avx512_bits),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_pool),
        cmocka_unit_test(test_flash_attention), cmocka_unit_test(test_store_f16),
        cmocka_unit_test(test_crossover_file), cmocka_unit_test(test_emulator_faults),
        cmocka_unit_test(test_amx_permission), cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_gemv_prefetch_modes), cmocka_unit_test(test_gemv_batch),
        /* last: test_emulator_faults expects a thread that never loaded a tile configuration */
        cmocka_unit_test(test_flash_attention_amx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The row-scaled int8 experiment (kernels/amx/amx_rowq.h):
 *  - the tile kernel (emulator everywhere, real tiles where AMX is usable), the AVX-512
 *    quantiser and the scalar reference against an independent model of the contract
 *    built from the ggml bytes, bit for bit, on many shapes with tails in M, N and K;
 *  - the grouped expert form against the model per expert (dropped slots, per-slot input);
 *  - the numeric cost of the contract against the shipped Q8_0/Q4_0 arithmetic: an
 *    element-wise error bound that follows from the two roundings, and relative RMS / max
 *    figures on random rows and on rows whose block scales span 2^-6 .. 1;
 *  - bad shapes and types give errors that name the constraint. */
#include "adg_test.h"
#include "kern_test.h"

#include <math.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/amx/amx_emu.h"
#include "kernels/amx/amx_rowq.h"
#include "kernels/kern_cpu.h"
#include "kernels/kern_internal.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { return kern_test_frand(&rng); }


/* Float rows, one magnitude per row.  FILL_OUTLIERS: every fifth row also holds one
 * value of 40 (a few times the row's range, as activation outliers are); FILL_WIDE: every
 * block of 32 has its own magnitude 2^-6 .. 1 of the row's (the case a per-row scale
 * serves worst). */
enum { FILL_PLAIN, FILL_OUTLIERS, FILL_WIDE };
static void fill_rows(float *x, int64_t rows, int64_t k, int mode)
{
    for (int64_t r = 0; r < rows; r++) {
        const float row_scale = 0.5f + (float)(r % 7);
        for (int64_t b = 0; b < k / 32; b++) {
            const float s = mode == FILL_WIDE ? row_scale * exp2f(-6.0f * (0.5f + 0.5f * frand())) : row_scale;
            for (int i = 0; i < 32; i++)
                x[r * k + b * 32 + i] = frand() * s;
        }
        if (mode == FILL_OUTLIERS && r % 5 == 3)
            x[r * k + r % k] = 40.0f;
    }
}

static void *quantize(kern_type t, const float *f, int64_t rows, int64_t k)
{
    const size_t rs = kern_row_size(t, k);
    uint8_t *w = malloc(rs * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        ADG_ASSERT_OK(kern_quantize_row(t, f + r * k, w + rs * (size_t)r, k));
    return w;
}

/* The contract computed from the ggml bytes with nothing of the kernels' layouts:
 * y[m][n] = ((float)sum(q_a q_w) * d_a) * d_w, rows of every matrix back to back. */
typedef struct model {
    int64_t n_mat, n, k, k_pad;
    int8_t *qw;
    float *dw;
    float *wdeq;   /* the dequantised ggml weights */
} model;

static void model_new(model *md, kern_type t, const void *w, int64_t n_mat, int64_t n, int64_t k)
{
    md->n_mat = n_mat;
    md->n = n;
    md->k = k;
    md->k_pad = (k + 63) / 64 * 64;
    md->qw = malloc((size_t)(n_mat * n * md->k_pad));
    md->dw = malloc((size_t)(n_mat * n) * sizeof(float));
    md->wdeq = malloc((size_t)(n_mat * n * k) * sizeof(float));
    const size_t rs = kern_row_size(t, k);
    for (int64_t r = 0; r < n_mat * n; r++) {
        ADG_ASSERT_OK(kern_dequantize_row(t, (const uint8_t *)w + rs * (size_t)r, md->wdeq + r * k, k));
        kern_rowq_quant_row_ref(md->wdeq + r * k, k, md->k_pad, md->qw + r * md->k_pad, &md->dw[r]);
    }
}

static void model_free(model *md)
{
    free(md->qw);
    free(md->dw);
    free(md->wdeq);
}

static float model_y(const model *md, int64_t e, int64_t n, const int8_t *qa, float da)
{
    const int8_t *qw = md->qw + (e * md->n + n) * md->k_pad;
    int32_t s = 0;
    for (int64_t i = 0; i < md->k_pad; i++)
        s += qa[i] * qw[i];
    const float t = (float)s * da;
    return t * md->dw[e * md->n + n];
}

static float *model_dense(const model *md, const float *x, int64_t m)
{
    float *y = malloc((size_t)(m * md->n) * sizeof(float));
    int8_t *qa = malloc((size_t)md->k_pad);
    for (int64_t i = 0; i < m; i++) {
        float da;
        kern_rowq_quant_row_ref(x + i * md->k, md->k, md->k_pad, qa, &da);
        for (int64_t n = 0; n < md->n; n++)
            y[i * md->n + n] = model_y(md, 0, n, qa, da);
    }
    free(qa);
    return y;
}

static const kern_impl impls[] = {KERN_IMPL_REF, KERN_IMPL_AVX512, KERN_IMPL_AMX_EMU, KERN_IMPL_AMX};

static void test_quantizer(void **state)
{
    (void)state;
    if (!impl_here(KERN_IMPL_AVX512))
        ADG_SKIP("the AVX-512 quantiser needs AVX-512");
    const int64_t ks[] = {32, 64, 96, 160, 2048};
    for (size_t ki = 0; ki < ADG_ARRAY_LEN(ks); ki++) {
        const int64_t k = ks[ki], k_pad = (k + 63) / 64 * 64;
        float *x = malloc((size_t)k * sizeof(float));
        int8_t *lin = malloc((size_t)k_pad), *tile = calloc((size_t)(k_pad / 64), 1024);
        for (int variant = 0; variant < 5; variant++) {
            for (int64_t i = 0; i < k; i++)
                x[i] = variant == 0 ? 0.0f : frand() * (variant == 3 ? 1e-30f : 3.0f);
            if (variant == 4)     /* a NaN is skipped by the row maximum in both quantisers */
                x[k / 2] = NAN;
            if (variant == 2) {   /* exact halves: amax 127 gives d = 1, x = j + 0.5 ties */
                x[0] = 127.0f;
                for (int64_t i = 1; i < k; i++)
                    x[i] = (float)((int)(i % 200) - 100) + 0.5f;
            }
            float d1, d2;
            kern_rowq_quant_row_ref(x, k, k_pad, lin, &d1);
            kern_rowq_emu.quant_row(x, k, k_pad, tile, &d2);
            assert_memory_equal(&d1, &d2, sizeof d1);
            for (int64_t i = 0; i < k_pad; i++)
                if (lin[i] != tile[(i / 64) * 1024 + i % 64]) {
                    print_error("k %lld variant %d: byte %lld: ref %d avx512 %d (x %a, d %a)\n", (long long)k, variant,
                                (long long)i, lin[i], tile[(i / 64) * 1024 + i % 64], i < k ? (double)x[i] : 0.0,
                                (double)d1);
                    fail();
                }
            if (variant == 2) {   /* RNE: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0, -1.5 -> -2 */
                assert_true(d1 == 1.0f);
                for (int64_t i = 1; i < k; i++)
                    assert_int_equal(lin[i], (int)lrintf(x[i]));
            }
        }
        free(x);
        free(lin);
        free(tile);
    }
}

/* Every implementation and thread count against the model, for Q8_0 and Q4_0. */
static void check_dense(kern_type t, int64_t m, int64_t n, int64_t k)
{
    float *wf = malloc((size_t)(n * k) * sizeof(float)), *x = malloc((size_t)(m * k) * sizeof(float));
    fill_rows(wf, n, k, (int)((n + k) % 3));
    fill_rows(x, m, k, FILL_OUTLIERS);
    void *w = quantize(t, wf, n, k);
    model md;
    model_new(&md, t, w, 1, n, k);
    float *want = model_dense(&md, x, m);
    float *y = malloc((size_t)(m * n) * sizeof(float));
    for (size_t ii = 0; ii < ADG_ARRAY_LEN(impls); ii++) {
        if (impls[ii] == KERN_IMPL_AMX && !impl_here(KERN_IMPL_AMX))
            continue;
        if (impls[ii] != KERN_IMPL_REF && !impl_here(KERN_IMPL_AVX512))
            continue;
        for (int threads = 1; threads <= 3; threads += 2) {
            kern_cpu *c = kern_test_cpu(impls[ii], threads);
            kern_rowq_weight *rw = NULL;
            ADG_ASSERT_OK(kern_rowq_weight_new(c, t, 1, n, k, w, &rw));
            for (int64_t i = 0; i < m * n; i++)
                y[i] = NAN;
            kern_op_info info;
            ADG_ASSERT_OK(kern_rowq_matmul(c, rw, x, m, y, &info));
            if (memcmp(y, want, (size_t)(m * n) * sizeof(float))) {
                for (int64_t i = 0; i < m * n; i++)
                    if (memcmp(&y[i], &want[i], sizeof(float))) {
                        print_error("%s %s M %lld N %lld K %lld threads %d: y[%lld][%lld] = %a, model %a\n",
                                    kern_impl_name(impls[ii]), kern_type_name(t), (long long)m, (long long)n,
                                    (long long)k, threads, (long long)(i / n), (long long)(i % n), (double)y[i],
                                    (double)want[i]);
                        break;
                    }
                fail();
            }
            const bool tiles = impls[ii] == KERN_IMPL_AMX || impls[ii] == KERN_IMPL_AMX_EMU;
            assert_non_null(strstr(info.variant, tiles ? "amx-int8-rowq-" : "ref-rowq-"));
            assert_int_equal(info.flops, 2ull * (uint64_t)(m * n * k));
            /* the kernels' view of the repacked weights is the model's */
            float *row = malloc((size_t)k * sizeof(float));
            for (int64_t r = 0; r < n; r += (n > 7 ? 7 : 1)) {
                kern_rowq_weight_row(rw, 0, r, row);
                assert_memory_equal(&md.dw[r], &(float){kern_rowq_weight_scale(rw, 0, r)}, sizeof(float));
                for (int64_t i = 0; i < k; i++)
                    assert_true(row[i] == md.dw[r] * (float)md.qw[r * md.k_pad + i]);
            }
            free(row);
            kern_rowq_weight_free(rw);
            kern_cpu_free(c);
        }
    }
    free(y);
    free(want);
    model_free(&md);
    free(w);
    free(wf);
    free(x);
}

static void test_dense_exact(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {
        {1, 16, 64},  {1, 5, 32},    {15, 17, 32},  {17, 33, 96},  {33, 70, 128}, {2, 31, 160},
        {64, 48, 256}, {40, 100, 512}, {31, 32, 2048}, {100, 64, 192},
    };
    for (size_t s = 0; s < ADG_ARRAY_LEN(shapes); s++) {
        check_dense(KERN_TYPE_Q8_0, shapes[s][0], shapes[s][1], shapes[s][2]);
        check_dense(KERN_TYPE_Q4_0, shapes[s][0], shapes[s][1], shapes[s][2]);
    }
    /* several L2 row blocks and one panel pair per item: the blocking's edges */
    setenv("AMXDIAG_AMX_ROWQ_L2KB", "16", 1);
    setenv("AMXDIAG_AMX_ROWQ_CHUNK", "1", 1);
    check_dense(KERN_TYPE_Q8_0, 150, 49, 128);
    check_dense(KERN_TYPE_Q4_0, 97, 80, 256);
    /* K blocks (sums parked in scratch between them): one step, and 3 of 4 / 3 of 5 steps */
    setenv("AMXDIAG_AMX_ROWQ_KB", "1", 1);
    check_dense(KERN_TYPE_Q8_0, 70, 33, 192);
    setenv("AMXDIAG_AMX_ROWQ_KB", "3", 1);
    check_dense(KERN_TYPE_Q4_0, 97, 80, 256);
    check_dense(KERN_TYPE_Q8_0, 33, 64, 288);
    unsetenv("AMXDIAG_AMX_ROWQ_L2KB");
    unsetenv("AMXDIAG_AMX_ROWQ_CHUNK");
    check_dense(KERN_TYPE_Q8_0, 100, 48, 320);   /* K blocks, the default L2 block */
    setenv("AMXDIAG_AMX_ROWQ_PF", "2", 1);       /* L1 prefetch: the same bits */
    check_dense(KERN_TYPE_Q4_0, 40, 48, 320);
    unsetenv("AMXDIAG_AMX_ROWQ_KB");
    check_dense(KERN_TYPE_Q8_0, 33, 33, 192);
    unsetenv("AMXDIAG_AMX_ROWQ_PF");
}

static void test_emu_uses_tiles(void **state)
{
    (void)state;
    if (!impl_here(KERN_IMPL_AMX_EMU))
        ADG_SKIP("the tile emulator build needs AVX-512");
    const int64_t m = 20, n = 40, k = 128;
    float *wf = malloc((size_t)(n * k) * sizeof(float)), *x = malloc((size_t)(m * k) * sizeof(float));
    fill_rows(wf, n, k, FILL_PLAIN);
    fill_rows(x, m, k, FILL_PLAIN);
    void *w = quantize(KERN_TYPE_Q8_0, wf, n, k);
    kern_cpu *c = kern_test_cpu(KERN_IMPL_AMX_EMU, 1);
    kern_rowq_weight *rw = NULL;
    ADG_ASSERT_OK(kern_rowq_weight_new(c, KERN_TYPE_Q8_0, 1, n, k, w, &rw));
    float *y = malloc((size_t)(m * n) * sizeof(float));
    const uint64_t before = kern_amx_emu_count();
    ADG_ASSERT_OK(kern_rowq_matmul(c, rw, x, m, y, NULL));
    /* 1 M strip of 32 x 2 panel pairs (n = 40: 3 panels) x 2 K steps: 4 zero + 2 x 8 + 4
     * stores per (strip, pair), plus a configuration */
    const uint64_t used = kern_amx_emu_count() - before;
    assert_true(used >= 2 * (4 + 2 * 8 + 4));
    kern_rowq_weight_free(rw);
    kern_cpu_free(c);
    free(y);
    free(w);
    free(wf);
    free(x);
}

static void test_moe(void **state)
{
    (void)state;
    const int64_t E = 6, n = 40, k = 96, T = 21, K = 3;
    for (int ti = 0; ti < 2; ti++) {
        const kern_type t = ti ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
        float *wf = malloc((size_t)(E * n * k) * sizeof(float));
        fill_rows(wf, E * n, k, ti ? FILL_WIDE : FILL_OUTLIERS);
        void *w = quantize(t, wf, E * n, k);
        model md;
        model_new(&md, t, w, E, n, k);
        int32_t ids[21 * 3];
        for (int64_t i = 0; i < T * K; i++)
            ids[i] = i % 11 == 4 ? -1 : (int32_t)((i * 7 + i / K) % E);
        ids[0] = ids[1] = 0;   /* can repeat: each slot is a row of its own */
        for (int per_slot = 0; per_slot < 2; per_slot++) {
            const int64_t xrows = per_slot ? T * K : T;
            float *x = malloc((size_t)(xrows * k) * sizeof(float));
            fill_rows(x, xrows, k, FILL_OUTLIERS);
            float *want = malloc((size_t)(T * K * n) * sizeof(float));
            int8_t *qa = malloc((size_t)md.k_pad);
            for (int64_t s = 0; s < T * K; s++) {
                float da;
                const int64_t r = per_slot ? s : s / K;
                kern_rowq_quant_row_ref(x + r * k, k, md.k_pad, qa, &da);
                for (int64_t j = 0; j < n; j++)
                    want[s * n + j] = ids[s] < 0 ? 7.0f : model_y(&md, ids[s], j, qa, da);
            }
            free(qa);
            float *y = malloc((size_t)(T * K * n) * sizeof(float));
            for (size_t ii = 0; ii < ADG_ARRAY_LEN(impls); ii++) {
                if ((impls[ii] == KERN_IMPL_AMX && !impl_here(KERN_IMPL_AMX)) ||
                    (impls[ii] != KERN_IMPL_REF && !impl_here(KERN_IMPL_AVX512)))
                    continue;
                kern_cpu *c = kern_test_cpu(impls[ii], 2);
                kern_rowq_weight *rw = NULL;
                ADG_ASSERT_OK(kern_rowq_weight_new(c, t, E, n, k, w, &rw));
                for (int64_t i = 0; i < T * K * n; i++)
                    y[i] = 7.0f;   /* dropped slots keep it */
                kern_op_info info;
                ADG_ASSERT_OK(kern_rowq_moe_matmul(c, rw, x, per_slot, ids, T, K, y, &info));
                if (memcmp(y, want, (size_t)(T * K * n) * sizeof(float))) {
                    print_error("moe %s %s per_slot %d differs from the model\n", kern_impl_name(impls[ii]),
                                kern_type_name(t), per_slot);
                    fail();
                }
                assert_string_equal(info.op, "moe_matmul");
                kern_rowq_weight_free(rw);
                kern_cpu_free(c);
            }
            free(y);
            free(want);
            free(x);
        }
        model_free(&md);
        free(w);
        free(wf);
    }
}

/* ---- the numeric cost of the contract ---- */

typedef struct errs {
    double rms, max;   /* relative: sqrt(sum d^2 / sum r^2), max |d| / max |r| */
} errs;

static errs rel_err(const float *y, const double *r, int64_t cnt)
{
    double se = 0, sr = 0, me = 0, mr = 0;
    for (int64_t i = 0; i < cnt; i++) {
        const double d = (double)y[i] - r[i];
        se += d * d;
        sr += r[i] * r[i];
        me = fabs(d) > me ? fabs(d) : me;
        mr = fabs(r[i]) > mr ? fabs(r[i]) : mr;
    }
    return (errs){sqrt(se / (sr > 0 ? sr : 1)), me / (mr > 0 ? mr : 1)};
}

/* Relative RMS of the row-scaled result against the shipped one, asserted per data set
 * at about twice what this test measures (M 24, N 64, K 2048; Q8_0 / Q4_0): plain
 * 0.0061 / 0.0067, outliers 0.0223 / 0.0233, wide block scales 0.0145 / 0.0139 (the
 * shipped result's own error against the exact product is 0.0035-0.0045 on all three).
 * docs/kernels.md quotes them. */
static const double max_rms_vs_shipped[] = {0.012, 0.045, 0.03};

static const char *const fill_name[] = {"plain", "outliers", "wide"};

static void accuracy_case(kern_type t, int mode, double max_rms, int64_t m, int64_t n, int64_t k)
{
    float *wf = malloc((size_t)(n * k) * sizeof(float)), *x = malloc((size_t)(m * k) * sizeof(float));
    fill_rows(wf, n, k, mode);
    fill_rows(x, m, k, mode);
    void *w = quantize(t, wf, n, k);
    model md;
    model_new(&md, t, w, 1, n, k);
    /* exact product of the ggml weights (dequantised) and the float input */
    double *exact = malloc((size_t)(m * n) * sizeof(double)), *absdot = malloc((size_t)(m * n) * sizeof(double));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0, a = 0;
            for (int64_t q = 0; q < k; q++) {
                s += (double)x[i * k + q] * md.wdeq[j * k + q];
                a += fabs((double)x[i * k + q] * md.wdeq[j * k + q]);
            }
            exact[i * n + j] = s;
            absdot[i * n + j] = a;
        }
    kern_cpu *c = kern_test_cpu(KERN_IMPL_REF, 2);
    kern_weight *sw = NULL;
    kern_rowq_weight *rw = NULL;
    ADG_ASSERT_OK(kern_weight_new(c, t, 1, n, k, w, &sw));
    ADG_ASSERT_OK(kern_rowq_weight_new(c, t, 1, n, k, w, &rw));
    float *ys = malloc((size_t)(m * n) * sizeof(float)), *yr = malloc((size_t)(m * n) * sizeof(float));
    ADG_ASSERT_OK(kern_matmul(c, sw, x, m, ys, NULL));
    ADG_ASSERT_OK(kern_rowq_matmul(c, rw, x, m, yr, NULL));
    /* Element-wise bound from the two roundings: |x - d_a q_a| <= d_a/2 and
     * |w - d_w q_w| <= d_w/2 (RNE of a correctly rounded quotient, up to 2^-17 of a
     * step), so |y - exact| <= sum_k(|x_k| d_w/2 + |w_k| d_a/2 + d_a d_w/4), plus the
     * epilogue's three fp32 roundings (4e-7 of sum |x w| is far above them). */
    const int64_t k_pad = md.k_pad;
    for (int64_t i = 0; i < m; i++) {
        double sx = 0, amax = 0;
        for (int64_t q = 0; q < k; q++) {
            sx += fabs(x[i * k + q]);
            amax = fabs(x[i * k + q]) > amax ? fabs(x[i * k + q]) : amax;
        }
        const double da = (double)(float)((float)amax / 127.0f);
        for (int64_t j = 0; j < n; j++) {
            double sw_abs = 0;
            for (int64_t q = 0; q < k; q++)
                sw_abs += fabs(md.wdeq[j * k + q]);
            const double dw = md.dw[j];
            const double step = 0.5 + 1e-5;
            const double bound = sx * dw * step + sw_abs * da * step + (double)k * da * dw * step * step +
                                 4e-7 * absdot[i * n + j] + 1e-30;
            const double err = fabs((double)yr[i * n + j] - exact[i * n + j]);
            if (!(err <= bound)) {
                print_error("%s %s: y[%lld][%lld] = %.9g, exact %.9g: error %.3g above the bound %.3g\n",
                            kern_type_name(t), fill_name[mode], (long long)i, (long long)j, (double)yr[i * n + j],
                            exact[i * n + j], err, bound);
                fail();
            }
        }
    }
    (void)k_pad;
    double *ship = malloc((size_t)(m * n) * sizeof(double));
    for (int64_t i = 0; i < m * n; i++)
        ship[i] = ys[i];
    const errs rs = rel_err(yr, ship, m * n), re = rel_err(yr, exact, m * n), se = rel_err(ys, exact, m * n);
    printf("accuracy %s %-6s M %lld N %lld K %lld: rowq vs shipped rms %.4f max %.4f; vs exact: rowq rms %.4f max "
           "%.4f, shipped rms %.4f max %.4f\n",
           kern_type_name(t), fill_name[mode], (long long)m, (long long)n, (long long)k, rs.rms, rs.max, re.rms,
           re.max, se.rms, se.max);
    assert_true(rs.rms <= max_rms);
    /* the contract loses against the block format, it does not win */
    assert_true(re.rms >= 0.5 * se.rms);
    free(ship);
    free(ys);
    free(yr);
    kern_weight_free(sw);
    kern_rowq_weight_free(rw);
    kern_cpu_free(c);
    free(exact);
    free(absdot);
    model_free(&md);
    free(w);
    free(wf);
    free(x);
}

static void test_accuracy(void **state)
{
    (void)state;
    for (int ti = 0; ti < 2; ti++)
        for (int mode = FILL_PLAIN; mode <= FILL_WIDE; mode++)
            accuracy_case(ti ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, mode, max_rms_vs_shipped[mode], 24, 64, 2048);
}

static void test_bad_input(void **state)
{
    (void)state;
    kern_cpu *c = kern_test_cpu(KERN_IMPL_REF, 1);
    kern_rowq_weight *rw = NULL;
    uint8_t data[4096] = {0};
    adg_error *e = kern_rowq_weight_new(c, KERN_TYPE_BF16, 1, 4, 32, data, &rw);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_UNSUPPORTED);
    assert_non_null(strstr(adg_error_msg(e), "q8_0 or q4_0"));
    adg_error_free(e);
    e = kern_rowq_weight_new(c, KERN_TYPE_Q8_0, 1, 4, 48, data, &rw);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "multiple"));
    adg_error_free(e);
    e = kern_rowq_weight_new(c, KERN_TYPE_Q8_0, 1, 1, (int64_t)KERN_ROWQ_MAX_K + 32, data, &rw);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "wrap"));
    adg_error_free(e);
    e = kern_rowq_weight_new(c, KERN_TYPE_Q8_0, 0, 4, 32, data, &rw);
    assert_non_null(e);
    adg_error_free(e);
    assert_null(rw);

    ADG_ASSERT_OK(kern_rowq_weight_new(c, KERN_TYPE_Q8_0, 2, 4, 32, data, &rw));
    float x[64] = {0}, y[64];
    e = kern_rowq_matmul(c, rw, x, 1, y, NULL);   /* two matrices */
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "single matrix"));
    adg_error_free(e);
    int32_t ids[2] = {0, 2};
    e = kern_rowq_moe_matmul(c, rw, x, false, ids, 1, 2, y, NULL);   /* id 2 of 2 experts */
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "outside 0..1"));
    adg_error_free(e);
    e = kern_rowq_moe_matmul(c, rw, x, false, ids, 1, 3, y, NULL);   /* top-k 3 of 2 */
    assert_non_null(e);
    adg_error_free(e);
    kern_rowq_weight_free(rw);
    ADG_ASSERT_OK(kern_rowq_weight_new(c, KERN_TYPE_Q4_0, 1, 4, 32, data, &rw));
    e = kern_rowq_matmul(c, rw, x, 0, y, NULL);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "m >= 1"));
    adg_error_free(e);
    e = kern_rowq_matmul(c, rw, NULL, 1, y, NULL);
    assert_non_null(e);
    adg_error_free(e);
    kern_rowq_weight_free(rw);
    kern_cpu_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantizer),    cmocka_unit_test(test_dense_exact), cmocka_unit_test(test_emu_uses_tiles),
        cmocka_unit_test(test_moe),          cmocka_unit_test(test_accuracy),    cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The CUDA kernels on a real GPU against the CPU reference (kern_cuda_check), the
 * self-test in both load modes, and --gpu-validate catching planted bad indices without
 * faulting.  Prints SKIP with the reason where there is no GPU.  The faults that end in
 * error 700 run in their own processes (tests/integration/cuda_bench.sh,
 * tests/device/cuda.sh): a sticky error kills the context. */
#include "adg_test.h"

#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kern_cuda_check.h"

#include "cuda_test_ctx.h"

#define NEED_GPU()                         \
    do {                                   \
        if (!ctx)                          \
            ADG_SKIP("%s", skip_reason);   \
    } while (0)

static void expect_pass(adg_error *e, const kern_cuda_check_result *r)
{
    if (e) {
        print_error("%s: %s\n", r->name, adg_error_msg(e));
        adg_error_free(e);
        fail();
    }
    print_message("%-70s max err %.3g, %.2f of allowed, %.3f ms\n", r->name, r->max_abs_err, r->worst_ratio, r->ms);
    if (!r->pass)
        fail_msg("%s: %s", r->name, r->worst);
}

static void test_load_info(void **state)
{
    (void)state;
    NEED_GPU();
    const kern_cuda_load_info *in = kern_cuda_info(ctx);
    assert_true(in->cc_major >= 7);
    assert_true(in->image_arch >= 75);
    /* the build has SASS for every arch this test targets; a SASS load is not JIT */
    if (in->sass_arch) {
        assert_false(in->used_ptx_jit);
        assert_int_equal(in->image_arch, in->sass_arch);
    }
    print_message("%s cc %d.%d: %s sm_%d, load %.2f ms\n", in->name, in->cc_major, in->cc_minor,
                  in->used_ptx_jit ? "PTX JIT" : "SASS", in->image_arch, in->module_load_ms);
}

static void test_selftest(void **state)
{
    (void)state;
    NEED_GPU();
    json_t *details = NULL;
    ADG_ASSERT_OK(kern_cuda_selftest(ctx, &details));
    assert_non_null(details);
    assert_int_equal(json_array_size(json_object_get(details, "tests")), 5);
    json_decref(details);
}

static void test_force_ptx(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_ctx *p = NULL;
    ADG_ASSERT_OK(kern_cuda_open(0, KERN_CUDA_LOAD_FORCE_PTX, &p));
    const kern_cuda_load_info *in = kern_cuda_info(p);
    assert_true(in->used_ptx_jit);
    print_message("PTX JIT: image sm_%d, ptx %d, load %.1f ms (JIT %.1f ms)\n", in->image_arch, in->ptx_version,
                  in->module_load_ms, in->jit_ms);
    ADG_ASSERT_OK(kern_cuda_selftest(p, NULL));
    kern_cuda_close(p);
}

static void test_get_rows(void **state)
{
    (void)state;
    NEED_GPU();
    const kern_type t[] = {KERN_TYPE_F32, KERN_TYPE_F16, KERN_TYPE_BF16, KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    kern_cuda_check_result r;
    for (size_t i = 0; i < 5; i++) {
        expect_pass(kern_cuda_check_get_rows(ctx, t[i], 500, 128, 100000, 10 + i, &r), &r); /* > 65,535 */
        expect_pass(kern_cuda_check_get_rows(ctx, t[i], 3, 32, 1, 20 + i, &r), &r);
        if (t[i] == KERN_TYPE_F32 || t[i] == KERN_TYPE_F16 || t[i] == KERN_TYPE_BF16)
            expect_pass(kern_cuda_check_get_rows(ctx, t[i], 9, 13, 17, 30 + i, &r), &r);
    }
}

static void test_gemv(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    for (size_t i = 0; i < 2; i++) {
        expect_pass(kern_cuda_check_gemv(ctx, t[i], 1000, 2048, 40 + i, &r), &r);
        expect_pass(kern_cuda_check_gemv(ctx, t[i], 33, 32 * 9, 42 + i, &r), &r);   /* 18*9: not 16-aligned */
        expect_pass(kern_cuda_check_gemv(ctx, t[i], 5, 32 * 300, 44 + i, &r), &r);  /* too long to stage */
        expect_pass(kern_cuda_check_gemv(ctx, t[i], 1, 32, 46 + i, &r), &r);
        expect_pass(kern_cuda_check_moe(ctx, t[i], 128, 96, 512, 8, 1, 48 + i, &r), &r);
        expect_pass(kern_cuda_check_moe(ctx, t[i], 7, 40, 160, 3, 3, 50 + i, &r), &r);
    }
}

/* The experimental multi-row GEMV: same shapes, plus row counts that leave a partial
 * group and shapes where it must fall back to the single-row kernel. */
static void test_gemv_multirow(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    /* 1: the single-row kernel (measured on the H100), 2 and 4: the multi-row one; the
     * default (auto) takes 4 for Q4_0 and 1 for Q8_0, which test_gemv covers. */
    for (int rows = 1; rows <= 4; rows *= 2) {
        kern_cuda_set_gemv_rows(ctx, rows);
        for (size_t i = 0; i < 2; i++) {
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 1000, 2048, 140 + i, &r), &r);
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 1001, 2048, 142 + i, &r), &r); /* partial group */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 35, 32 * 8, 144 + i, &r), &r);
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 33, 32 * 9, 146 + i, &r), &r);  /* fallback */
            expect_pass(kern_cuda_check_moe(ctx, t[i], 128, 97, 512, 8, 1, 148 + i, &r), &r);
            expect_pass(kern_cuda_check_moe(ctx, t[i], 7, 40, 160, 3, 3, 150 + i, &r), &r);
        }
    }
    kern_cuda_set_validate(ctx, true);
    adg_error *e = kern_cuda_run_fault(ctx, KERN_CUDA_FAULT_MATVEC_OOB);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "gemv: weight row"));
    adg_error_free(e);
    kern_cuda_set_validate(ctx, false);
    kern_cuda_set_gemv_rows(ctx, 0);
}

/* The super-block GEMV (kern_gemv_sb.cuh) in every configuration the sweep times: row
 * lengths of 1, 3 (odd: lanes 30 and 31 idle, row sums through shared memory), 8, 16 and
 * 32 super-blocks, partial last spans, grouped experts with shared and per-job inputs, a
 * persistent grid with many spans a warp (40,000 rows of 256), the cp.async ring of 2 and 3
 * stages, shapes that fall back to the row kernels, and --gpu-validate's report. */
static void test_gemv_sb(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    static const char *const cfgs[] = {"sb,load=cs,warps=4,waves=0",
                                       "sb,load=cs,warps=4,waves=1",
                                       "sb,load=nc,warps=8,waves=1",
                                       "sb,load=async,stages=2,warps=4,waves=1",
                                       "sb,load=async,stages=3,warps=8,waves=2",
                                       "sb,load=async,stages=2,warps=8,waves=0",
                                       "auto"};
    for (size_t ci = 0; ci < ADG_ARRAY_LEN(cfgs); ci++) {
        kern_cuda_gemv_cfg cfg;
        ADG_ASSERT_OK(kern_cuda_gemv_parse(cfgs[ci], &cfg));
        kern_cuda_set_gemv(ctx, &cfg);
        {
            /* as run: a card whose blocks cannot hold the configuration runs it stepped down */
            char b4[64], b8[64], f4[128], f8[128];
            unsigned s4 = 0, s8 = 0;
            kern_cuda_gemv_cfg e4 = kern_cuda_gemv_effective(ctx, KERN_TYPE_Q4_0, &s4);
            kern_cuda_gemv_cfg e8 = kern_cuda_gemv_effective(ctx, KERN_TYPE_Q8_0, &s8);
            print_message("GEMV %s: q4_0 %s [%s], q8_0 %s [%s]\n", cfgs[ci], kern_cuda_gemv_cfg_str(&e4, b4, sizeof b4),
                          kern_cuda_gemv_fit_str(s4, f4, sizeof f4), kern_cuda_gemv_cfg_str(&e8, b8, sizeof b8),
                          kern_cuda_gemv_fit_str(s8, f8, sizeof f8));
        }
        for (size_t i = 0; i < 2; i++) {
            const uint64_t s = 300 + 40 * ci + 20 * i;
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 1000, 2048, s, &r), &r);
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 1001, 2048, s + 1, &r), &r); /* partial span */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 37, 768, s + 2, &r), &r);    /* nsb 3 */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 50, 4096, s + 3, &r), &r);   /* nsb 16 */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 9, 8192, s + 4, &r), &r);    /* nsb 32 */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 300, 256, s + 5, &r), &r);   /* nsb 1 */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 33, 32 * 9, s + 6, &r), &r); /* fallback */
            expect_pass(kern_cuda_check_gemv(ctx, t[i], 5, 8448, s + 7, &r), &r);    /* fallback: nsb 33 */
            expect_pass(kern_cuda_check_moe(ctx, t[i], 128, 96, 512, 8, 1, s + 8, &r), &r);
            expect_pass(kern_cuda_check_moe(ctx, t[i], 16, 101, 768, 4, 4, s + 9, &r), &r);
            expect_pass(kern_cuda_check_moe(ctx, t[i], 7, 40, 160, 3, 3, s + 10, &r), &r); /* fallback */
            if (ci == 1 || ci == 3 || ci == 4)
                expect_pass(kern_cuda_check_gemv(ctx, t[i], 40000, 256, s + 11, &r), &r);
        }
    }
    /* --gpu-validate's report from each load path (the planted fault: a Q4_0 GEMV of
     * 1024 x 256, aligned, one super-block a row), then from whatever auto runs on this
     * card (the row kernels on an H100, the register path on an H200 at this shape) */
    static const struct {
        const char *spec, *kernel;
    } faults[] = {{"sb,load=cs", "kern_gemv_q4_0_sb"}, {"sb,load=async", "kern_gemv_q4_0_sba2"}, {"auto", NULL}};
    kern_cuda_set_validate(ctx, true);
    for (size_t fi = 0; fi < ADG_ARRAY_LEN(faults); fi++) {
        kern_cuda_gemv_cfg cfg;
        ADG_ASSERT_OK(kern_cuda_gemv_parse(faults[fi].spec, &cfg));
        kern_cuda_set_gemv(ctx, &cfg);
        const char *k = kern_cuda_gemv_kernel(ctx, KERN_TYPE_Q4_0, 1024, 256, 1, true);
        unsigned fit = 0;
        kern_cuda_gemv_effective(ctx, KERN_TYPE_Q4_0, &fit);
        print_message("GEMV %s: matvec-oob in %s\n", faults[fi].spec, k);
        if (faults[fi].kernel && !fit) /* (AMXDIAG_GPU_GEMV_SMEM below 37,376 bytes: not the ring) */
            assert_string_equal(k, faults[fi].kernel);
        adg_error *e = kern_cuda_run_fault(ctx, KERN_CUDA_FAULT_MATVEC_OOB);
        assert_non_null(e);
        if (!strstr(adg_error_msg(e), "gemv: weight row"))
            fail_msg("GEMV %s (%s): %s", faults[fi].spec, k, adg_error_msg(e));
        adg_error_free(e);
    }
    kern_cuda_set_validate(ctx, false);
    kern_cuda_set_gemv(ctx, NULL);
}

static void test_gemm(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0, KERN_TYPE_F16};
    for (size_t i = 0; i < 3; i++) {
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 256, 256, 128, 60 + i, &r), &r);
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 131, 96, 37, 63 + i, &r), &r);
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 1, 32, 1, 66 + i, &r), &r);
    }
}

/* The experimental 64-wide-stage GEMM, including a k of an odd number of quant blocks. */
static void test_gemm_bk64(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0, KERN_TYPE_F16};
    kern_cuda_set_gemm_bk(ctx, 64);
    for (size_t i = 0; i < 3; i++) {
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 256, 256, 128, 160 + i, &r), &r);
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 131, 96, 37, 163 + i, &r), &r); /* 3 quant blocks */
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 1, 32, 1, 166 + i, &r), &r);
        expect_pass(kern_cuda_check_gemm(ctx, t[i], 300, 2048, 70, 169 + i, &r), &r);
    }
    kern_cuda_set_gemm_bk(ctx, 32);
}

static void test_small_ops(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    expect_pass(kern_cuda_check_moe_route(ctx, 200, 128, 8, 70, &r), &r);
    expect_pass(kern_cuda_check_moe_route(ctx, 3, 33, 5, 71, &r), &r);
    expect_pass(kern_cuda_check_rmsnorm(ctx, 17, 2048, 72, &r), &r);
    expect_pass(kern_cuda_check_rmsnorm(ctx, 2, 999, 73, &r), &r);
    expect_pass(kern_cuda_check_rope(ctx, 7, 32, 128, 74, &r), &r);
    expect_pass(kern_cuda_check_rope(ctx, 2, 3, 34, 75, &r), &r);
    expect_pass(kern_cuda_check_softmax(ctx, 9, 4096, 76, &r), &r);
    expect_pass(kern_cuda_check_softmax(ctx, 2, 31, 77, &r), &r);
    expect_pass(kern_cuda_check_attention(ctx, 32, 4, 128, 777, 78, &r), &r);
    expect_pass(kern_cuda_check_attention(ctx, 6, 3, 96, 1, 79, &r), &r);
    expect_pass(kern_cuda_check_attention(ctx, 2, 2, 256, 5, 80, &r), &r);
    expect_pass(kern_cuda_check_silu_mul(ctx, 12345, 81, &r), &r);
    expect_pass(kern_cuda_check_add(ctx, 12345, 82, &r), &r);
}

/* --gpu-validate turns the two index faults into a report, and the context survives. */
static void test_validate(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_set_validate(ctx, true);
    adg_error *e = kern_cuda_run_fault(ctx, KERN_CUDA_FAULT_GET_ROWS_OOB);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_non_null(strstr(adg_error_msg(e), "get_rows: row index"));
    assert_non_null(strstr(adg_error_msg(e), "at position 256"));
    print_message("%s\n", adg_error_msg(e));
    adg_error_free(e);
    e = kern_cuda_run_fault(ctx, KERN_CUDA_FAULT_MATVEC_OOB);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_non_null(strstr(adg_error_msg(e), "gemv: weight row"));
    print_message("%s\n", adg_error_msg(e));
    adg_error_free(e);
    /* nothing planted: no report, and the kernels still compute correctly */
    ADG_ASSERT_OK(kern_cuda_run_fault(ctx, KERN_CUDA_FAULT_NONE));
    kern_cuda_check_result r;
    expect_pass(kern_cuda_check_gemv(ctx, KERN_TYPE_Q4_0, 100, 256, 90, &r), &r);
    kern_cuda_set_validate(ctx, false);
    ADG_ASSERT_OK(kern_cuda_selftest(ctx, NULL));
}

static void test_bad_args(void **state)
{
    (void)state;
    NEED_GPU();
    adg_error *e = kern_cuda_gemv(ctx, KERN_TYPE_F32, 0, 4, 64, 0, 0, 0);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
    e = kern_cuda_get_rows(ctx, KERN_TYPE_Q4_0, 0, 4, 33, 0, 1, 0);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "get_rows"));
    adg_error_free(e);
    e = kern_cuda_attention(ctx, 0, 0, 0, 0, 32, 5, 128, 10, 1.0f);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_cuda_open(999, KERN_CUDA_LOAD_AUTO, &(kern_cuda_ctx *){NULL});
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
}

/* The ops that keep the --ngl layers on the device, against the CPU reference. */
static void test_batch_ops(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    expect_pass(kern_cuda_check_kv_store(ctx, 64, 0, 1, 4 * 128, 200, &r), &r);
    expect_pass(kern_cuda_check_kv_store(ctx, 600, 512, 77, 2 * 64, 201, &r), &r); /* a second ubatch at 512 */
    expect_pass(kern_cuda_check_moe_wsum(ctx, 1, 8, 2048, 202, &r), &r);
    expect_pass(kern_cuda_check_moe_wsum(ctx, 513, 3, 100, 203, &r), &r);
    expect_pass(kern_cuda_check_attention_causal(ctx, 32, 4, 128, 1, 0, 204, &r), &r);
    expect_pass(kern_cuda_check_attention_causal(ctx, 32, 4, 128, 129, 0, 205, &r), &r);
    expect_pass(kern_cuda_check_attention_causal(ctx, 16, 16, 64, 33, 500, 206, &r), &r); /* no GQA, later ubatch */
    expect_pass(kern_cuda_check_attention_causal(ctx, 8, 2, 256, 7, 3, 207, &r), &r);
    const kern_type t[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        expect_pass(kern_cuda_check_moe_gemm(ctx, t[i], 128, 96, 512, 64, 8, false, 210 + i, &r), &r);
        expect_pass(kern_cuda_check_moe_gemm(ctx, t[i], 128, 512, 96, 64, 8, true, 212 + i, &r), &r);
        expect_pass(kern_cuda_check_moe_gemm(ctx, t[i], 16, 64, 96, 9, 3, true, 214 + i, &r), &r); /* unstaged */
        expect_pass(kern_cuda_check_moe_gemm(ctx, t[i], 3, 33, 32 * 300, 2, 2, false, 216 + i, &r), &r); /* long rows */
        expect_pass(kern_cuda_check_moe_gemm(ctx, t[i], 64, 40, 256, 1, 8, false, 218 + i, &r), &r); /* one token */
    }
    /* --gpu-validate catches the planted weight-row fault of the grouped matmul. */
    kern_cuda_set_validate(ctx, true);
    kern_cuda_inject(ctx, KERN_CUDA_FAULT_MATVEC_OOB);
    adg_error *e = kern_cuda_check_moe_gemm(ctx, KERN_TYPE_Q4_0, 16, 32, 256, 8, 4, false, 220, &r);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_non_null(strstr(adg_error_msg(e), "weight row"));
    print_message("%s\n", adg_error_msg(e));
    adg_error_free(e);
    expect_pass(kern_cuda_check_moe_gemm(ctx, KERN_TYPE_Q4_0, 16, 32, 256, 8, 4, false, 221, &r), &r);
    kern_cuda_set_validate(ctx, false);
}

/* The fused ops of generation, and the ops that read the position on the device (what a
 * CUDA graph replays), equal bit for bit to the ops they replace. */
static void test_fused_ops(void **state)
{
    (void)state;
    NEED_GPU();
    kern_cuda_check_result r;
    expect_pass(kern_cuda_check_qkv_post(ctx, 1, 32, 4, 128, 0, 230, &r), &r);
    expect_pass(kern_cuda_check_qkv_post(ctx, 1, 32, 4, 128, 377, 231, &r), &r);
    expect_pass(kern_cuda_check_qkv_post(ctx, 67, 16, 16, 64, 500, 232, &r), &r); /* a prompt, no GQA */
    expect_pass(kern_cuda_check_qkv_post(ctx, 5, 8, 2, 256, 3, 233, &r), &r);
    expect_pass(kern_cuda_check_add_rmsnorm(ctx, 1, 2048, 234, &r), &r);
    expect_pass(kern_cuda_check_add_rmsnorm(ctx, 77, 1000, 235, &r), &r);
    /* the f32 router GEMM: a prompt's (k split 8 ways, summed in order), a few tokens, a tail */
    expect_pass(kern_cuda_check_gemm(ctx, KERN_TYPE_F32, 128, 2048, 512, 242, &r), &r);
    expect_pass(kern_cuda_check_gemm(ctx, KERN_TYPE_F32, 60, 1024, 77, 243, &r), &r);
    expect_pass(kern_cuda_check_gemm(ctx, KERN_TYPE_F32, 128, 2048, 3, 244, &r), &r);
    expect_pass(kern_cuda_check_router_topk(ctx, 128, 2048, 8, 238, &r), &r);
    expect_pass(kern_cuda_check_router_topk(ctx, 61, 1024, 4, 239, &r), &r); /* a block with one logit */
    expect_pass(kern_cuda_check_q8_producers(ctx, KERN_TYPE_Q4_0, 240, &r), &r);
    expect_pass(kern_cuda_check_q8_producers(ctx, KERN_TYPE_Q8_0, 241, &r), &r);
    expect_pass(kern_cuda_check_at_pos(ctx, 32, 4, 128, 0, 236, &r), &r);
    expect_pass(kern_cuda_check_at_pos(ctx, 32, 4, 128, 640, 237, &r), &r);
}

/* Argument checks of the batch ops come before any use of the context: they run here
 * without a GPU. */
static void test_batch_bad_args(void **state)
{
    (void)state;
    adg_error *fe = kern_cuda_qkv_post(NULL, 0, 0, 0, 0, 0, 8, 0, 0, 64, 60, 5, 32, 4, 128, 1e-6f, 1e6f);
    assert_non_null(fe);
    assert_int_equal(adg_error_kind(fe), ADG_E_USAGE);
    assert_non_null(strstr(adg_error_msg(fe), "do not fit"));
    adg_error_free(fe);
    fe = kern_cuda_qkv_post(NULL, 0, 0, 0, 0, 0, 8, 0, 0, 64, 0, 1, 32, 4, 300, 1e-6f, 1e6f);
    assert_non_null(fe);
    assert_non_null(strstr(adg_error_msg(fe), "qkv_post"));
    adg_error_free(fe);
    fe = kern_cuda_add_rmsnorm(NULL, 0, 0, 0, 0, 0, 64, 1e-6f);
    assert_non_null(fe);
    assert_int_equal(adg_error_kind(fe), ADG_E_USAGE);
    adg_error_free(fe);
    adg_error *e = kern_cuda_kv_store(NULL, 0, 0, 64, 60, 5, 128);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    assert_non_null(strstr(adg_error_msg(e), "do not fit"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    e = kern_cuda_kv_store(NULL, 0, 0, 64, -1, 5, 128);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_cuda_moe_wsum(NULL, 0, 0, 0, 0, 8, 64);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
    e = kern_cuda_attention_causal(NULL, 0, 0, 0, 0, 32, 5, 128, 4, 0, 1.0f);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "attention_causal"));
    adg_error_free(e);
    e = kern_cuda_attention_causal(NULL, 0, 0, 0, 0, 32, 4, 128, 4, -1, 1.0f);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_cuda_moe_gemm(NULL, KERN_TYPE_F16, 0, 4, 8, 64, 1, 2, 2, 0, false, 0, 0);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "q4_0 or q8_0"));
    adg_error_free(e);
    e = kern_cuda_moe_gemm(NULL, KERN_TYPE_Q4_0, 0, 4, 8, 33, 1, 2, 2, 0, false, 0, 0);
    assert_non_null(e);
    adg_error_free(e);
    e = kern_cuda_moe_gemm(NULL, KERN_TYPE_Q8_0, 0, 4, 8, 64, 0, 2, 2, 0, false, 0, 0);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "expert ids"));
    adg_error_free(e);
    /* scratch: the quantized input, the per-expert offsets and the slot list */
    assert_true(kern_cuda_moe_gemm_scratch(512, 8, 128, 2048, false) >= kern_cuda_gemv_scratch(512 * 2048) + 129 * 4 +
                                                                           512 * 8 * 4);
    assert_true(kern_cuda_moe_gemm_scratch(512, 8, 128, 768, true) >= kern_cuda_gemv_scratch(512 * 8 * 768));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_info), cmocka_unit_test(test_selftest),   cmocka_unit_test(test_force_ptx),
        cmocka_unit_test(test_get_rows),  cmocka_unit_test(test_gemv),       cmocka_unit_test(test_gemv_multirow),
        cmocka_unit_test(test_gemv_sb),
        cmocka_unit_test(test_gemm),      cmocka_unit_test(test_gemm_bk64),
        cmocka_unit_test(test_small_ops), cmocka_unit_test(test_validate),   cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_batch_ops), cmocka_unit_test(test_batch_bad_args), cmocka_unit_test(test_fused_ops),
    };
    /* a device script may run a part: AMXDIAG_TEST_FILTER=*gemv* (cmocka's wildcards) */
    if (getenv("AMXDIAG_TEST_FILTER"))
        cmocka_set_test_filter(getenv("AMXDIAG_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}

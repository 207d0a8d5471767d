/* The decode GEMV's configuration and launch plan (kern_cuda_gemv.c), host logic only:
 * the spec parser, the auto pick from the device facts, when the super-block kernel runs
 * and when the row kernels do (their old rules unchanged), and the persistent grid. */
#include "adg_test.h"

#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda.h"

/* An H200 and an H100 as the driver describes them (memory clock kHz, bus width bits). */
static const kern_cuda_gemv_dev h200 = {.sm_count = 132, .cc_major = 9, .mem_clock_khz = 3201000,
                                        .bus_width_bits = 6144, .regs_per_sm = 65536, .threads_per_sm = 2048,
                                        .smem_per_sm = 233472,
                                        .sb_regs = {170, 229, 170, 229, 128, 132, 147, 162}};
static const kern_cuda_gemv_dev h100 = {.sm_count = 132, .cc_major = 9, .mem_clock_khz = 2619000,
                                        .bus_width_bits = 5120, .regs_per_sm = 65536, .threads_per_sm = 2048,
                                        .smem_per_sm = 233472,
                                        .sb_regs = {170, 229, 170, 229, 128, 132, 147, 162}};

static kern_cuda_gemv_cfg parse_ok(const char *spec)
{
    kern_cuda_gemv_cfg c;
    adg_error *e = kern_cuda_gemv_parse(spec, &c);
    if (e)
        fail_msg("'%s': %s", spec, adg_error_msg(e));
    return c;
}

static void test_parse(void **state)
{
    (void)state;
    char buf[64];
    kern_cuda_gemv_cfg c = parse_ok("");
    assert_int_equal(c.kernel, KERN_CUDA_GEMV_AUTO);
    assert_int_equal(c.load, -1);
    assert_int_equal(c.warps, 0);
    assert_int_equal(c.waves, -1);
    assert_string_equal(kern_cuda_gemv_cfg_str(&c, buf, sizeof buf), "auto,load=auto,warps=auto,waves=auto");
    c = parse_ok("rows");
    assert_int_equal(c.kernel, KERN_CUDA_GEMV_ROWS);
    assert_string_equal(kern_cuda_gemv_cfg_str(&c, buf, sizeof buf), "rows");
    assert_int_equal(parse_ok("old").kernel, KERN_CUDA_GEMV_ROWS);
    c = parse_ok("sb,load=nc,warps=8,waves=2");
    assert_int_equal(c.kernel, KERN_CUDA_GEMV_SB);
    assert_int_equal(c.load, 1);
    assert_int_equal(c.warps, 8);
    assert_int_equal(c.waves, 2);
    assert_string_equal(kern_cuda_gemv_cfg_str(&c, buf, sizeof buf), "sb,load=nc,warps=8,waves=2");
    /* what cfg_str writes parses back to the same */
    kern_cuda_gemv_cfg d = parse_ok(buf);
    assert_memory_equal(&c, &d, sizeof c);
    c = parse_ok("sb,waves=0,load=cs");
    assert_int_equal(c.waves, 0);
    assert_int_equal(c.load, 0);
    assert_int_equal(c.warps, 0);
    c = parse_ok("sb,load=async,stages=3,warps=8,waves=2");
    assert_int_equal(c.load, 2);
    assert_int_equal(c.stages, 3);
    assert_string_equal(kern_cuda_gemv_cfg_str(&c, buf, sizeof buf), "sb,load=async,warps=8,waves=2,stages=3");
    d = parse_ok(buf);
    assert_memory_equal(&c, &d, sizeof c);
    static const char *const bad[] = {"fast", "sb,load=xx", "sb,warps=6", "sb,waves=-1", "sb,waves=65",
                                      "sb,waves=1x", "sb,depth=2", "sb,warps=", "sb,=4",
                                      "sb,load=async,stages=4", "sb,stages=1"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(bad); i++) {
        kern_cuda_gemv_cfg x = KERN_CUDA_GEMV_CFG_AUTO;
        adg_error *e = kern_cuda_gemv_parse(bad[i], &x);
        if (!e)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
        assert_non_null(adg_error_remedy(e));
        adg_error_free(e);
    }
}

static void test_auto(void **state)
{
    (void)state;
    /* 4.9 TB/s peak (H200): the super-block kernel; 3.35 TB/s (H100): the row kernels it
     * was measured with; unknown memory: the row kernels */
    assert_true(kern_cuda_gemv_peak_gbps(&h200) > 4800 && kern_cuda_gemv_peak_gbps(&h200) < 5000);
    assert_true(kern_cuda_gemv_peak_gbps(&h100) > 3300 && kern_cuda_gemv_peak_gbps(&h100) < 3400);
    kern_cuda_gemv_cfg a = KERN_CUDA_GEMV_CFG_AUTO;
    for (int t = 0; t < 2; t++) {
        const kern_type ty = t ? KERN_TYPE_Q8_0 : KERN_TYPE_Q4_0;
        kern_cuda_gemv_cfg r = kern_cuda_gemv_resolve(&a, &h200, ty);
        assert_int_equal(r.kernel, KERN_CUDA_GEMV_SB);
        /* Q8_0 through registers; Q4_0's load left to the plan (by shape) */
        assert_int_equal(r.load, t ? 0 : -1);
        assert_int_equal(r.stages, 0);
        assert_true(r.warps == 4 || r.warps == 8);
        assert_true(r.waves >= 0);
        assert_int_equal(kern_cuda_gemv_resolve(&a, &h100, ty).kernel, KERN_CUDA_GEMV_ROWS);
        const kern_cuda_gemv_dev none = {0};
        assert_int_equal(kern_cuda_gemv_resolve(&a, &none, ty).kernel, KERN_CUDA_GEMV_ROWS);
    }
    /* what is asked stays */
    kern_cuda_gemv_cfg s = parse_ok("sb,load=nc,warps=8,waves=3");
    kern_cuda_gemv_cfg rs = kern_cuda_gemv_resolve(&s, &h100, KERN_TYPE_Q4_0);
    assert_memory_equal(&s, &rs, sizeof s);
    s = parse_ok("sb,load=async,warps=4,waves=1");
    rs = kern_cuda_gemv_resolve(&s, &h100, KERN_TYPE_Q8_0);
    assert_int_equal(rs.stages, 2); /* async's auto stages */
}

static void test_plan_sb(void **state)
{
    (void)state;
    kern_cuda_gemv_cfg c = parse_ok("sb,load=cs,warps=4,waves=0");
    /* K = 2048: 8 super-blocks a row, 4 rows a span; Q4_0 4608 + 512 bytes of stage a warp */
    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 1u << 31);
    assert_true(p.sb);
    assert_int_equal(p.nsb, 8);
    assert_int_equal(p.rows, 4);
    assert_int_equal(p.spans, 1024);
    assert_int_equal(p.block, 128);
    assert_int_equal(p.grid, 256);
    assert_int_equal(p.smem, 4 * 32 * (9 * 16 + 4));
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 4097, 2048, 1, true, 1u << 31);
    assert_int_equal(p.spans, 1025); /* a partial last span */
    assert_int_equal(p.smem, 4 * 32 * (17 * 16 + 4));
    /* K = 768: 3 super-blocks, 10 rows a span (30 lanes); grouped: spans per job */
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 2048, 768, 8, true, 1u << 31);
    assert_true(p.sb);
    assert_int_equal(p.nsb, 3);
    assert_int_equal(p.rows, 10);
    assert_int_equal(p.spans, 8 * 205);
    /* K = 8192: 32 super-blocks, one row a span; K = 256: 32 rows a span */
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 10, 8192, 1, true, 1u << 31);
    assert_true(p.sb && p.nsb == 32 && p.rows == 1 && p.spans == 10);
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 33, 256, 1, true, 1u << 31);
    assert_true(p.sb && p.nsb == 1 && p.rows == 32 && p.spans == 2);
    /* the cp.async ring: stages x the span's stage a warp; kernels after the register ones */
    c = parse_ok("sb,load=async,stages=3,warps=8,waves=0");
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 4096, 2048, 1, true, 1u << 31);
    assert_true(p.sb && p.load == 2 && p.stages == 3);
    assert_int_equal(p.fn_index, 7);
    assert_int_equal(p.smem, 8 * 32 * (3 * 17 * 16 + 4));
    c.stages = 2;
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 1u << 31);
    assert_int_equal(p.fn_index, 4);
    c = parse_ok("sb,load=nc,warps=4,waves=0");
    assert_int_equal(kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 4096, 2048, 1, true, 65535).fn_index, 3);
    c = parse_ok("sb,load=cs,warps=4,waves=0");
    /* not for: K % 256 != 0, K > 8192, unaligned weights, --gemv-rows N */
    assert_false(kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 100, 32 * 9, 1, true, 65535).sb);
    assert_false(kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 100, 8192 + 256, 1, true, 65535).sb);
    assert_false(kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 100, 2048, 1, false, 65535).sb);
    assert_false(kern_cuda_gemv_plan_for(&c, &h200, 1, KERN_TYPE_Q4_0, 100, 2048, 1, true, 65535).sb);
}

static void test_plan_persistent(void **state)
{
    (void)state;
    /* waves = 1: as many blocks as the SMs hold at once.  Q4_0 at 170 registers: 176 a
     * thread after the 256-per-warp rounding, 11 warps an SM, 2 blocks of 4 warps; 132 SMs */
    kern_cuda_gemv_cfg c = parse_ok("sb,load=cs,warps=4,waves=1");
    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 2097152, 2048, 1, true, 1u << 31);
    assert_int_equal(p.spans, 524288);
    assert_int_equal(p.grid, 2 * 132);
    c.waves = 3;
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 2097152, 2048, 1, true, 1u << 31);
    assert_int_equal(p.grid, 3 * 2 * 132);
    /* 8 warps of 229 registers: 1 block an SM */
    c = parse_ok("sb,load=nc,warps=8,waves=1");
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 2097152, 2048, 1, true, 1u << 31);
    assert_int_equal(p.load, 1);
    assert_int_equal(p.block, 256);
    assert_int_equal(p.grid, 132);
    /* the 2-stage ring, Q4_0 at 128 registers: 16 warps by registers, by shared memory
     * 233472 / (4 x 32 x (2 x 144 + 4) + 1024) = 6 blocks of 4 warps; 132 SMs */
    c = parse_ok("sb,load=async,stages=2,warps=4,waves=1");
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 2097152, 2048, 1, true, 1u << 31);
    assert_int_equal(p.grid, 4 * 132);
    c = parse_ok("sb,load=nc,warps=8,waves=1");
    /* fewer spans than the SMs hold: a block per `warps` spans, persistent or not */
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 512, 2048, 1, true, 1u << 31);
    assert_int_equal(p.grid, 16);
    /* max_grid_x caps it */
    c.waves = 0;
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 2097152, 2048, 1, true, 1000);
    assert_int_equal(p.grid, 1000);
}

/* Q4_0 on the H200 by default: the register path for a layer's GEMVs, the cp.async ring
 * where the register path's 1056 resident warps (8 an SM) would have 4 spans or more each
 * (4224 spans: the LM heads, the large shape). */
static void test_plan_by_shape(void **state)
{
    (void)state;
    kern_cuda_gemv_cfg a = kern_cuda_gemv_resolve(&KERN_CUDA_GEMV_CFG_AUTO, &h200, KERN_TYPE_Q4_0);
    struct {
        int64_t m, k;
        int jobs;
        int load;
    } cases[] = {
        {4096, 2048, 1, 0},   /* attn_q: 1024 spans */
        {3072, 1024, 1, 0},   /* qwen3-moe-small's QKV */
        {768, 2048, 16, 0},   /* gate and up experts, 16 jobs */
        {2048, 768, 8, 0},    /* down experts */
        {16892, 2048, 1, 0},  /* 4223 spans */
        {16896, 2048, 1, 2},  /* 4224 spans */
        {151936, 1024, 1, 2}, /* the small model's LM head: 18992 spans */
        {151936, 2048, 1, 2}, /* the 30B LM head */
        {2097152, 2048, 1, 2},
    };
    for (size_t i = 0; i < ADG_ARRAY_LEN(cases); i++) {
        kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&a, &h200, 0, KERN_TYPE_Q4_0, cases[i].m, cases[i].k,
                                                        cases[i].jobs, true, 1u << 31);
        if (!p.sb || p.load != cases[i].load)
            fail_msg("%lldx%lld x %d: sb %d load %d, want load %d", (long long)cases[i].m, (long long)cases[i].k,
                     cases[i].jobs, p.sb, p.load, cases[i].load);
        assert_int_equal(p.fn_index, p.load == 2 ? 4 : 0);
        assert_int_equal(p.smem, 4 * 32 * ((p.load == 2 ? 2 : 1) * 144 + 4));
    }
    /* Q8_0: registers everywhere */
    kern_cuda_gemv_cfg a8 = kern_cuda_gemv_resolve(&KERN_CUDA_GEMV_CFG_AUTO, &h200, KERN_TYPE_Q8_0);
    assert_int_equal(kern_cuda_gemv_plan_for(&a8, &h200, 0, KERN_TYPE_Q8_0, 151936, 2048, 1, true, 1u << 31).fn_index, 1);
    /* asked explicitly: what is asked, whatever the shape */
    kern_cuda_gemv_cfg r = parse_ok("sb,load=cs");
    assert_int_equal(kern_cuda_gemv_plan_for(&r, &h200, 0, KERN_TYPE_Q4_0, 151936, 2048, 1, true, 1u << 31).load, 0);
    r = parse_ok("sb,load=async,stages=3");
    assert_int_equal(kern_cuda_gemv_plan_for(&r, &h200, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 1u << 31).fn_index, 6);
}

static void test_plan_rows(void **state)
{
    (void)state;
    /* The row kernels as before: auto 4 rows for Q4_0, 1 for Q8_0; R rows must fit 4608
     * bytes and be 16-byte aligned; 4 warps a block, a warp per R rows */
    kern_cuda_gemv_cfg c = parse_ok("rows");
    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 1001, 2048, 1, true, 65535);
    assert_false(p.sb);
    assert_int_equal(p.rows, 4);
    assert_int_equal(p.block, 128);
    assert_int_equal(p.grid, (251 + 3) / 4);
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q8_0, 1001, 2048, 1, true, 65535);
    assert_int_equal(p.rows, 1);
    assert_int_equal(p.grid, (1001 + 3) / 4);
    p = kern_cuda_gemv_plan_for(&c, &h200, 4, KERN_TYPE_Q8_0, 100, 2048, 1, true, 65535);
    assert_int_equal(p.rows, 2); /* 2 x 2176 bytes fit 4608, 4 do not */
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 100, 32 * 9, 1, true, 65535);
    assert_int_equal(p.rows, 1); /* 162-byte rows: not 16-byte multiples */
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 100, 2048, 1, false, 65535);
    assert_int_equal(p.rows, 1);
    p = kern_cuda_gemv_plan_for(&c, &h200, 0, KERN_TYPE_Q4_0, 2097152, 2048, 1, true, 65535);
    assert_int_equal(p.grid, 65535);
    /* auto on an H100: the row kernels */
    kern_cuda_gemv_cfg a = kern_cuda_gemv_resolve(&KERN_CUDA_GEMV_CFG_AUTO, &h100, KERN_TYPE_Q4_0);
    assert_false(kern_cuda_gemv_plan_for(&a, &h100, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 65535).sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_auto),      cmocka_unit_test(test_plan_sb),
        cmocka_unit_test(test_plan_persistent), cmocka_unit_test(test_plan_by_shape), cmocka_unit_test(test_plan_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

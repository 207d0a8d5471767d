/* The decode GEMV's configuration and launch plan (kern_cuda_gemv.c), host logic only:
 * the spec parser, the auto pick from the device facts, when the super-block kernel runs
 * and when the row kernels do (their old rules unchanged), and the persistent grid. */
#include "adg_test.h"

#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda.h"

/* An H200 and an H100 as the driver describes them (memory clock kHz, bus width bits;
 * 227 KiB of shared memory a block). */
static const kern_cuda_gemv_dev h200 = {.sm_count = 132, .cc_major = 9, .mem_clock_khz = 3201000,
                                        .bus_width_bits = 6144, .regs_per_sm = 65536, .threads_per_sm = 2048,
                                        .smem_per_sm = 233472, .smem_optin = 232448,
                                        .sb_regs = {170, 229, 170, 229, 128, 132, 147, 162}};
static const kern_cuda_gemv_dev h100 = {.sm_count = 132, .cc_major = 9, .mem_clock_khz = 2619000,
                                        .bus_width_bits = 5120, .regs_per_sm = 65536, .threads_per_sm = 2048,
                                        .smem_per_sm = 233472, .smem_optin = 232448,
                                        .sb_regs = {170, 229, 170, 229, 128, 132, 147, 162}};
/* Smaller per-block shared memory (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN):
 * a T4 (sm_75, 64 KiB), an L40S (sm_89, 99 KiB; A10 / L4 / RTX 4090 / sm_120 alike) and an
 * A100 (sm_80, 163 KiB).  Registers as on sm_90 (sm_75's register path: 242). */
static const kern_cuda_gemv_dev t4 = {.sm_count = 40, .cc_major = 7, .mem_clock_khz = 5001000,
                                      .bus_width_bits = 256, .regs_per_sm = 65536, .threads_per_sm = 1024,
                                      .smem_per_sm = 65536, .smem_optin = 65536,
                                      .sb_regs = {170, 242, 170, 242, 128, 132, 147, 162}};
static const kern_cuda_gemv_dev l40s = {.sm_count = 142, .cc_major = 8, .mem_clock_khz = 9001000,
                                        .bus_width_bits = 384, .regs_per_sm = 65536, .threads_per_sm = 1536,
                                        .smem_per_sm = 102400, .smem_optin = 101376,
                                        .sb_regs = {170, 229, 170, 229, 128, 132, 147, 162}};
static const kern_cuda_gemv_dev a100 = {.sm_count = 108, .cc_major = 8, .mem_clock_khz = 1593000,
                                        .bus_width_bits = 5120, .regs_per_sm = 65536, .threads_per_sm = 2048,
                                        .smem_per_sm = 167936, .smem_optin = 166912,
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
    /* 4.9 TB/s peak (H200) and 3.35 TB/s (H100): the super-block kernel (measured on both);
     * an L40S's 0.86 TB/s and unknown memory: the row kernels */
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
        assert_int_equal(kern_cuda_gemv_resolve(&a, &h100, ty).kernel, KERN_CUDA_GEMV_SB);
        assert_int_equal(kern_cuda_gemv_resolve(&a, &l40s, ty).kernel, KERN_CUDA_GEMV_ROWS);
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
    /* auto on an H100: the super-block kernel; on an L40S (below 3 TB/s): the row kernels */
    kern_cuda_gemv_cfg a = kern_cuda_gemv_resolve(&KERN_CUDA_GEMV_CFG_AUTO, &h100, KERN_TYPE_Q4_0);
    assert_true(kern_cuda_gemv_plan_for(&a, &h100, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 65535).sb);
    a = kern_cuda_gemv_resolve(&KERN_CUDA_GEMV_CFG_AUTO, &l40s, KERN_TYPE_Q4_0);
    assert_false(kern_cuda_gemv_plan_for(&a, &l40s, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 65535).sb);
}

/* The shared memory a super-block block takes (the kernel's carve-up: per warp `stages`
 * stages of 32 super-blocks, then 32 floats). */
static unsigned smem_of(kern_type t, int warps, int stages)
{
    return (unsigned)warps * 32 * ((unsigned)stages * (t == KERN_TYPE_Q4_0 ? 144 : 272) + 4);
}

static unsigned fit_of(const char *spec, const kern_cuda_gemv_dev *d, kern_type t, kern_cuda_gemv_cfg *out)
{
    kern_cuda_gemv_cfg a = parse_ok(spec);
    *out = kern_cuda_gemv_resolve(&a, d, t);
    return kern_cuda_gemv_fit(out, d, t);
}

/* A configuration whose shared memory a block cannot have (cuFuncSetAttribute would refuse
 * it and every GEMV of the type fail) steps down: 3 -> 2 stages, 8 -> 4 warps, the
 * register path, the row kernels; the numbers are the review's (4096 x 2048). */
static void test_fit_steps(void **state)
{
    (void)state;
    char buf[128];
    kern_cuda_gemv_cfg r;
    /* T4, 64 KiB: the 2-stage ring of q8_0 (70,144 bytes at 4 warps) takes the register path;
     * q4_0's (37,376) fits */
    assert_int_equal(fit_of("sb,load=async", &t4, KERN_TYPE_Q8_0, &r), KERN_CUDA_GEMV_FIT_REGS);
    assert_string_equal(kern_cuda_gemv_cfg_str(&r, buf, sizeof buf), "sb,load=cs,warps=4,waves=1");
    assert_int_equal(fit_of("sb,load=async", &t4, KERN_TYPE_Q4_0, &r), 0);
    assert_int_equal(r.load, 2);
    assert_int_equal(r.stages, 2);
    /* 8 warps through registers: q8_0 70,656 bytes -> 4 warps; q4_0 37,888 fits */
    assert_int_equal(fit_of("sb,load=cs,warps=8", &t4, KERN_TYPE_Q8_0, &r), KERN_CUDA_GEMV_FIT_WARPS);
    assert_int_equal(r.warps, 4);
    assert_int_equal(fit_of("sb,load=cs,warps=8", &t4, KERN_TYPE_Q4_0, &r), 0);
    assert_int_equal(r.warps, 8);
    /* every step but the last */
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &t4, KERN_TYPE_Q8_0, &r),
                     KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS | KERN_CUDA_GEMV_FIT_REGS);
    assert_string_equal(kern_cuda_gemv_cfg_str(&r, buf, sizeof buf), "sb,load=cs,warps=4,waves=1");
    assert_string_equal(kern_cuda_gemv_fit_str(KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS |
                                                   KERN_CUDA_GEMV_FIT_REGS, buf, sizeof buf),
                        "3 -> 2 stages, 8 -> 4 warps, the register path instead of the ring");
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &t4, KERN_TYPE_Q4_0, &r),
                     KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS);
    assert_string_equal(kern_cuda_gemv_cfg_str(&r, buf, sizeof buf), "sb,load=async,warps=4,waves=1,stages=2");
    /* Q4_0's load left auto: both kernels the choice by shape may take must fit (the ring
     * at 8 warps, 74,752 bytes, does not): 4 warps for every shape */
    assert_int_equal(fit_of("sb,warps=8", &t4, KERN_TYPE_Q4_0, &r), KERN_CUDA_GEMV_FIT_WARPS);
    assert_int_equal(r.load, -1);
    assert_int_equal(r.warps, 4);
    /* L40S, 99 KiB: q8_0's 3 stages (104,960) -> 2; 8 warps of 2 stages (140,288) -> 4;
     * q4_0's 3 stages at 8 warps (111,616) -> 2 stages */
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=4", &l40s, KERN_TYPE_Q8_0, &r), KERN_CUDA_GEMV_FIT_STAGES);
    assert_int_equal(fit_of("sb,load=async,stages=2,warps=8", &l40s, KERN_TYPE_Q8_0, &r), KERN_CUDA_GEMV_FIT_WARPS);
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &l40s, KERN_TYPE_Q4_0, &r), KERN_CUDA_GEMV_FIT_STAGES);
    assert_int_equal(r.warps, 8);
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &l40s, KERN_TYPE_Q8_0, &r),
                     KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS);
    assert_int_equal(fit_of("sb,load=cs,warps=8", &l40s, KERN_TYPE_Q8_0, &r), 0);
    /* A100, 163 KiB: only q8_0's 3 stages at 8 warps (209,920) */
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &a100, KERN_TYPE_Q8_0, &r), KERN_CUDA_GEMV_FIT_STAGES);
    assert_int_equal(fit_of("sb,load=async,stages=2,warps=8", &a100, KERN_TYPE_Q8_0, &r), 0);
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &a100, KERN_TYPE_Q4_0, &r), 0);
    /* H200/H100, 227 KiB: everything as asked */
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &h200, KERN_TYPE_Q8_0, &r), 0);
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &h100, KERN_TYPE_Q8_0, &r), 0);
    /* a block of 32 KiB (below any CUDA device's; the last step): q8_0's register path at
     * 4 warps (35,328) does not fit either -> the row kernels; q4_0's (18,944) does */
    kern_cuda_gemv_dev tiny = t4;
    tiny.smem_optin = 32 * 1024;
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &tiny, KERN_TYPE_Q8_0, &r),
                     KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS | KERN_CUDA_GEMV_FIT_REGS |
                         KERN_CUDA_GEMV_FIT_ROWS);
    assert_string_equal(kern_cuda_gemv_cfg_str(&r, buf, sizeof buf), "rows");
    assert_string_equal(kern_cuda_gemv_fit_str(KERN_CUDA_GEMV_FIT_ROWS, buf, sizeof buf), "the row kernels");
    assert_string_equal(kern_cuda_gemv_fit_str(0, buf, sizeof buf), "");
    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&(kern_cuda_gemv_cfg){KERN_CUDA_GEMV_SB, 0, 4, 1, 0}, &tiny, 0,
                                                    KERN_TYPE_Q8_0, 4096, 2048, 1, true, 65535);
    assert_false(p.sb);
    assert_int_equal(p.fit, KERN_CUDA_GEMV_FIT_ROWS);
    assert_int_equal(p.rows, 1); /* the row kernels' own rule: Q8_0 one row */
    assert_int_equal(p.grid, (4096 + 3) / 4);
    /* unknown (0): not checked; not the super-block kernel: nothing to fit */
    kern_cuda_gemv_dev unknown = t4;
    unknown.smem_optin = 0;
    assert_int_equal(fit_of("sb,load=async,stages=3,warps=8", &unknown, KERN_TYPE_Q8_0, &r), 0);
    assert_int_equal(fit_of("rows", &tiny, KERN_TYPE_Q8_0, &r), 0);
    assert_int_equal(fit_of("auto", &t4, KERN_TYPE_Q8_0, &r), 0); /* auto there: the row kernels */
    /* the plan steps down the same way, and says so; --gemv-rows and shapes the kernel
     * does not take have nothing to fit */
    kern_cuda_gemv_cfg c = parse_ok("sb,load=async,stages=3,warps=8,waves=1");
    p = kern_cuda_gemv_plan_for(&c, &l40s, 0, KERN_TYPE_Q8_0, 4096, 2048, 1, true, 65535);
    assert_true(p.sb);
    assert_int_equal(p.fit, KERN_CUDA_GEMV_FIT_STAGES | KERN_CUDA_GEMV_FIT_WARPS);
    assert_int_equal(p.load, 2);
    assert_int_equal(p.stages, 2);
    assert_int_equal(p.warps, 4);
    assert_int_equal(p.block, 128);
    assert_int_equal(p.fn_index, 5); /* kern_gemv_q8_0_sba2 */
    assert_int_equal(p.smem, smem_of(KERN_TYPE_Q8_0, 4, 2));
    assert_int_equal(kern_cuda_gemv_plan_for(&c, &l40s, 2, KERN_TYPE_Q8_0, 4096, 2048, 1, true, 65535).fit, 0);
    assert_int_equal(kern_cuda_gemv_plan_for(&c, &l40s, 0, KERN_TYPE_Q8_0, 4096, 32 * 9, 1, true, 65535).fit, 0);
    /* T4, Q4_0 load auto with 8 warps asked: 4 warps, the register path for a layer's
     * shape and the ring for the LM head, both fitting */
    c = parse_ok("sb,warps=8,waves=1");
    kern_cuda_gemv_cfg c4 = kern_cuda_gemv_resolve(&c, &t4, KERN_TYPE_Q4_0);
    p = kern_cuda_gemv_plan_for(&c4, &t4, 0, KERN_TYPE_Q4_0, 4096, 2048, 1, true, 65535);
    assert_true(p.sb && p.load == 0 && p.warps == 4 && p.fit == KERN_CUDA_GEMV_FIT_WARPS);
    p = kern_cuda_gemv_plan_for(&c4, &t4, 0, KERN_TYPE_Q4_0, 151936, 2048, 1, true, 65535);
    assert_true(p.sb && p.load == 2 && p.warps == 4 && p.fit == KERN_CUDA_GEMV_FIT_WARPS);
    assert_true(p.smem <= (unsigned)t4.smem_optin);
}

/* Every configuration of `bench --gemv sweep` on each device: the plan's kernel fits the
 * block's shared memory, and runs as asked wherever the plan reports no step. */
static void test_fit_sweep(void **state)
{
    (void)state;
    const kern_cuda_gemv_dev *devs[] = {&t4, &l40s, &a100, &h100, &h200};
    const char *dev_names[] = {"t4", "l40s", "a100", "h100", "h200"};
    const struct {
        int64_t m, k;
        int jobs;
    } shapes[] = {{4096, 2048, 1}, {768, 2048, 8}, {2048, 768, 8}, {151936, 2048, 1}, {2097152, 2048, 1}, {40000, 256, 1}};
    size_t n = 0;
    const char *const *sweep = kern_cuda_gemv_sweep(&n);
    assert_int_equal(n, 12);
    int stepped[5][2] = {{0}};
    for (size_t di = 0; di < ADG_ARRAY_LEN(devs); di++)
        for (size_t si = 0; si < n; si++)
            for (int t = 0; t < 2; t++)
                for (size_t hi = 0; hi < ADG_ARRAY_LEN(shapes); hi++) {
                    const kern_type ty = t ? KERN_TYPE_Q8_0 : KERN_TYPE_Q4_0;
                    const kern_cuda_gemv_cfg asked = parse_ok(sweep[si]);
                    const kern_cuda_gemv_cfg r = kern_cuda_gemv_resolve(&asked, devs[di], ty);
                    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&r, devs[di], 0, ty, shapes[hi].m, shapes[hi].k,
                                                                    shapes[hi].jobs, true, 65535);
                    if (p.sb && p.smem > (unsigned)devs[di]->smem_optin)
                        fail_msg("%s %s %s: %u bytes of shared memory, the device allows %d", dev_names[di],
                                 sweep[si], kern_type_name(ty), p.smem, devs[di]->smem_optin);
                    if (p.sb)
                        assert_int_equal(p.smem, smem_of(ty, p.warps, p.stages));
                    /* the effective configuration (what the bench prints) steps the same way */
                    kern_cuda_gemv_cfg e = r;
                    assert_int_equal(kern_cuda_gemv_fit(&e, devs[di], ty), p.fit);
                    if (p.fit) {
                        stepped[di][t] += hi == 0;
                        continue;
                    }
                    if (r.kernel == KERN_CUDA_GEMV_SB) {
                        assert_true(p.sb);
                        assert_int_equal(p.warps, r.warps);
                        if (r.load >= 0)
                            assert_int_equal(p.load, r.load);
                        if (p.load == 2) /* with load auto, the ring's stages default to 2 */
                            assert_int_equal(p.stages, r.stages == 3 ? 3 : 2);
                    }
                }
    /* specs stepped down, of 12 (q4_0, q8_0): on a T4 q8_0's ring in every form (7) and
     * q4_0's ring at 8 warps (2); on an L40S q8_0's 3 stages or 8 warps (4) and q4_0's 3
     * stages at 8 warps; on an A100 q8_0's 3 stages at 8 warps; none on an H100/H200 */
    static const int want[5][2] = {{2, 7}, {1, 4}, {0, 1}, {0, 0}, {0, 0}};
    for (size_t di = 0; di < ADG_ARRAY_LEN(devs); di++)
        for (int t = 0; t < 2; t++)
            if (stepped[di][t] != want[di][t])
                fail_msg("%s %s: %d sweep specs stepped down, want %d", dev_names[di], t ? "q8_0" : "q4_0",
                         stepped[di][t], want[di][t]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_auto),      cmocka_unit_test(test_plan_sb),
        cmocka_unit_test(test_plan_persistent), cmocka_unit_test(test_plan_by_shape), cmocka_unit_test(test_plan_rows),
        cmocka_unit_test(test_fit_steps),       cmocka_unit_test(test_fit_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The executed self-tests and the tables the CPU decoding walks.  The AVX-512 part runs
 * wherever the CPU has VNNI/BF16; the AMX part passes on AMX machines, and elsewhere is
 * forced to run so that the crash path (SIGILL at LDTILECFG, reported, not a crash of
 * the caller) is exercised for real. */
#include "adg_test.h"

#include <cpuid.h>
#include <signal.h>
#include <string.h>

#include "probe/probe_cpu.h"
#include "probe/probe_selftest.h"

static bool cpu_has(int reg, int bit, unsigned subleaf)
{
    unsigned r[4];
    __cpuid_count(7, subleaf, r[0], r[1], r[2], r[3]);
    return (r[reg] >> bit) & 1;
}

static bool os_has(uint64_t mask)
{
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 27)))
        return false;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((((uint64_t)hi << 32) | lo) & mask) == mask;
}

static void test_reference_int8(void **state)
{
    (void)state;
    static uint8_t a[16][64], b[16][64];
    static int32_t c[16][16];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    memset(c, 0, sizeof c);
    /* C[1][2] = sum_k A[1][k] * B[k/4][2*4 + k%4]: put -1 (0xff) at A[1][5] and 3 at B[1][9]. */
    a[1][5] = 0xff;
    b[1][9] = 3;
    probe_ref_tdpb(c, a, b, true, true);
    assert_int_equal(c[1][2], -3);
    memset(c, 0, sizeof c);
    probe_ref_tdpb(c, a, b, false, true); /* A unsigned: 255 * 3 */
    assert_int_equal(c[1][2], 765);
    memset(c, 0, sizeof c);
    b[1][9] = 0xfe;
    probe_ref_tdpb(c, a, b, false, false);
    assert_int_equal(c[1][2], 255 * 254);
    memset(c, 0, sizeof c);
    probe_ref_tdpb(c, a, b, true, false);
    assert_int_equal(c[1][2], -254);
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++)
            if (!(m == 1 && n == 2))
                assert_int_equal(c[m][n], 0);
}

static void test_reference_half(void **state)
{
    (void)state;
    assert_true(probe_bf16_to_float(0x3f80) == 1.0f);
    assert_true(probe_bf16_to_float(0xc000) == -2.0f);
    assert_true(probe_fp16_to_float(0x3c00) == 1.0f);
    assert_true(probe_fp16_to_float(0xc800) == -8.0f);
    assert_true(probe_fp16_to_float(0x0001) == 5.9604644775390625e-08f);
    static uint16_t a[16][32], b[16][32];
    static float c[16][16];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    memset(c, 0, sizeof c);
    /* C[0][3] += A[0][2k+i] * B[k][2*3+i] for pair k=4: 2*3 + (-1)*5 = 1 */
    a[0][8] = 0x4000;  /* 2 */
    a[0][9] = 0xbf80;  /* -1 */
    b[4][6] = 0x4040;  /* 3 */
    b[4][7] = 0x40a0;  /* 5 */
    probe_ref_tdp_half(c, a, b, false);
    assert_true(c[0][3] == 1.0f);
}

static void test_avx512(void **state)
{
    (void)state;
    bool vnni = cpu_has(2, 11, 0), bf16 = cpu_has(0, 5, 1), zmm = cpu_has(1, 16, 0) && os_has(0xe6);
    if (!zmm || (!vnni && !bf16))
        ADG_SKIP("this CPU lacks AVX-512 VNNI and BF16");
    probe_st_opts o = {.vnni = vnni, .bf16 = bf16, .seed = 42};
    probe_st_result r;
    ADG_ASSERT_OK(probe_selftest_avx512(&o, &r));
    assert_true(r.completed);
    assert_int_equal(r.signal, 0);
    assert_int_equal(r.nops, (size_t)vnni + bf16);
    for (size_t i = 0; i < r.nops; i++) {
        if (!r.ops[i].ok)
            fail_msg("%s: %s", r.ops[i].insn, r.ops[i].detail);
    }
}

static void test_amx(void **state)
{
    (void)state;
    bool amx = cpu_has(3, 24, 0) && cpu_has(3, 25, 0) && cpu_has(3, 22, 0) && os_has(0x60000);
    probe_st_result r;
    if (amx) {
        probe_st_opts o = {.fp16 = cpu_has(0, 21, 1), .seed = 7};
        ADG_ASSERT_OK(probe_selftest_amx(&o, &r));
        if (!r.completed)
            fail_msg("child ended at %s: signal %d, exit %d, perm errno %d", r.at, r.signal, r.exit_code, r.perm_errno);
        assert_int_equal(r.nops, 5 + (size_t)o.fp16);
        for (size_t i = 0; i < r.nops; i++)
            if (!r.ops[i].ok)
                fail_msg("%s: %s", r.ops[i].insn, r.ops[i].detail);
        return;
    }
    /* No AMX: without forcing, the child stops at the permission request. */
    probe_st_opts o = {.seed = 7};
    ADG_ASSERT_OK(probe_selftest_amx(&o, &r));
    assert_false(r.completed);
    assert_int_equal(r.exit_code, 3);
    assert_int_not_equal(r.perm_ret, 0);
    assert_string_equal(r.at, "ARCH_REQ_XCOMP_PERM");
    /* Forced past it, the first tile instruction raises #UD: the child dies of SIGILL and
     * the report names LDTILECFG; this process goes on. */
    o.ignore_perm = true;
    ADG_ASSERT_OK(probe_selftest_amx(&o, &r));
    assert_false(r.completed);
    assert_int_equal(r.signal, SIGILL);
    assert_string_equal(r.at, "LDTILECFG");
    assert_int_equal(r.nops, 0);
}

static void test_tables(void **state)
{
    (void)state;
    const probe_uarch *u = probe_uarch_lookup("GenuineIntel", 6, 207, 2);
    assert_non_null(u);
    assert_string_equal(u->name, "Emerald Rapids");
    assert_true(u->amx);
    assert_string_equal(u->pfm_core, "spr");
    assert_int_equal(u->amx_int8_ops, 2048);
    assert_string_equal(probe_uarch_lookup("GenuineIntel", 6, 143, 8)->name, "Sapphire Rapids");
    assert_string_equal(probe_uarch_lookup("GenuineIntel", 6, 173, 1)->name, "Granite Rapids");
    assert_string_equal(probe_uarch_lookup("GenuineIntel", 6, 85, 7)->name, "Cascade Lake");
    assert_string_equal(probe_uarch_lookup("GenuineIntel", 6, 85, 4)->name, "Skylake-SP");
    assert_string_equal(probe_uarch_lookup("AuthenticAMD", 0x19, 0x11, 1)->name, "Zen 4");
    assert_string_equal(probe_uarch_lookup("AuthenticAMD", 0x19, 0x01, 1)->name, "Zen 3");
    assert_string_equal(probe_uarch_lookup("AuthenticAMD", 0x1a, 0x02, 1)->name, "Zen 5");
    assert_string_equal(probe_uarch_lookup("AuthenticAMD", 0x17, 0x31, 0)->name, "Zen 2");
    assert_null(probe_uarch_lookup("GenuineIntel", 6, 250, 0));
    assert_null(probe_uarch_lookup("HygonGenuine", 0x18, 0, 0));
    /* Every ISA row names a real CPUID location. */
    size_t n;
    const probe_isa_row *rows = probe_isa_table(&n);
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].bit >= 0 && rows[i].bit < 32);
        assert_true(rows[i].leaf == 1 || rows[i].leaf == 7);
        assert_ptr_equal(probe_isa_row_of(rows[i].f), &rows[i]);
    }
    assert_int_equal(probe_isa_row_of(PROBE_F_AMX_TILE)->bit, 24);
    assert_int_equal(probe_isa_row_of(PROBE_F_AMX_FP16)->subleaf, 1);
}

static void test_cpuinfo_flags(void **state)
{
    (void)state;
    const char *ci = "processor\t: 0\nflags\t\t: fpu avx2 amx_tile amx_int8\nbugs\t\t: spectre\n";
    assert_int_equal(probe_cpuinfo_has_flag(ci, "amx_tile"), 1);
    assert_int_equal(probe_cpuinfo_has_flag(ci, "amx_int8"), 1);
    assert_int_equal(probe_cpuinfo_has_flag(ci, "amx"), 0);
    assert_int_equal(probe_cpuinfo_has_flag(ci, "spectre"), 0); /* another line */
    assert_int_equal(probe_cpuinfo_has_flag(ci, "fpu"), 1);
    assert_int_equal(probe_cpuinfo_has_flag("processor : 0\n", "fpu"), -1);
    assert_int_equal(probe_cpuinfo_has_flag(NULL, "fpu"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_int8), cmocka_unit_test(test_reference_half), cmocka_unit_test(test_avx512),
        cmocka_unit_test(test_amx),            cmocka_unit_test(test_tables),        cmocka_unit_test(test_cpuinfo_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

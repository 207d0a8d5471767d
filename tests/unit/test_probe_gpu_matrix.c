/* The CUDA support matrix and the driver's code-selection rules. */
#include "adg_test.h"

#include <string.h>

#include "probe/cc_matrix.h"

static void test_parse(void **state)
{
    (void)state;
    static const struct { const char *in; int cc; } ok[] = {
        {"12.0", 120}, {"9.0", 90}, {"12.1", 121}, {"7.5", 75}, {"120", 120}, {"sm_120", 120}, {"sm_120a", 120},
        {"compute_90", 90}, {"86", 86},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int cc = 0;
        ADG_ASSERT_OK(cc_parse(ok[i].in, &cc));
        assert_int_equal(cc, ok[i].cc);
    }
    static const char *bad[] = {"", "abc", "12.", "1.23", "12.0x", "sm_", "-9.0", "9", "12.a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int cc = 0;
        adg_error *e = cc_parse(bad[i], &cc);
        if (!e)
            fail_msg("'%s' parsed as %d", bad[i], cc);
        assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
        assert_non_null(adg_error_remedy(e));
        adg_error_free(e);
    }
}

static void test_table(void **state)
{
    (void)state;
    /* Every arch nvcc 13.0 lists (compute_75 ... compute_121) has a row. */
    static const int nvcc13[] = {75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121};
    for (size_t i = 0; i < sizeof nvcc13 / sizeof nvcc13[0]; i++)
        assert_non_null(cc_lookup(nvcc13[i]));
    const cc_row *r = cc_lookup(120);
    assert_int_equal(r->min_driver, 570);
    assert_int_equal(r->min_toolkit, 12080);
    assert_true(r->min_toolkit_a > 0 && r->min_toolkit_f > 0);
    assert_int_equal(cc_lookup(90)->min_toolkit_f, 0); /* no sm_90f */
    assert_int_equal(cc_lookup(89)->min_toolkit_a, 0);
    assert_null(cc_lookup(70));
    char why[256];
    assert_false(cc_driver_supports(120, 560, why, sizeof why));
    assert_non_null(strstr(why, "570"));
    assert_true(cc_driver_supports(120, 570, why, sizeof why));
    assert_true(cc_driver_supports(90, 0, why, sizeof why));
    assert_int_equal(cc_max_ptx_isa(13000), 90);
    assert_int_equal(cc_max_ptx_isa(12080), 87);
    assert_int_equal(cc_max_ptx_isa(12090), 88);
    assert_int_equal(cc_cuda_for_ptx_isa(90), 13000);
}

static cc_code sass(int arch, char v) { return (cc_code){.ptx = false, .arch = arch, .variant = v}; }
static cc_code ptx(int arch, char v, int isa) { return (cc_code){.ptx = true, .arch = arch, .variant = v, .ptx_isa = isa}; }

static void test_fits(void **state)
{
    (void)state;
    cc_code c;
    c = sass(120, 0);
    assert_true(cc_code_fits(&c, 120));
    assert_true(cc_code_fits(&c, 121));   /* later minor of the same major */
    assert_false(cc_code_fits(&c, 100));
    c = sass(121, 0);
    assert_false(cc_code_fits(&c, 120));  /* not an earlier minor */
    c = sass(120, 'a');
    assert_true(cc_code_fits(&c, 120));
    assert_false(cc_code_fits(&c, 121));  /* arch-specific: exact CC only */
    c = sass(120, 'f');
    assert_true(cc_code_fits(&c, 120));
    assert_true(cc_code_fits(&c, 121));   /* family */
    c = sass(121, 'f');
    assert_false(cc_code_fits(&c, 120));
    c = sass(80, 0);
    assert_true(cc_code_fits(&c, 86));
    assert_true(cc_code_fits(&c, 89));
    c = sass(86, 0);
    assert_false(cc_code_fits(&c, 80));
    c = sass(90, 0);
    assert_false(cc_code_fits(&c, 100));  /* SASS never crosses a major */
    c = ptx(90, 0, 90);
    assert_true(cc_code_fits(&c, 120));   /* PTX JITs forward */
    assert_false(cc_code_fits(&c, 89));
    c = ptx(120, 'a', 90);
    assert_false(cc_code_fits(&c, 121));
}

static void test_evaluate(void **state)
{
    (void)state;
    cc_verdict v;
    /* The acceptance case: sm_120a-only code on an H100 (CC 9.0) fails with error 209. */
    cc_code a120[] = {sass(120, 'a')};
    cc_evaluate(a120, 1, 90, 13000, &v);
    assert_int_equal(v.outcome, CC_NO_IMAGE);
    assert_int_equal(v.cuda_error, 209);
    assert_non_null(strstr(v.reason, "209"));
    assert_non_null(strstr(v.reason, "no kernel image is available"));
    cc_evaluate(a120, 1, 121, 13000, &v);   /* RTX 5090 build on a GB10 */
    assert_int_equal(v.outcome, CC_ARCH_SPECIFIC);
    assert_int_equal(v.cuda_error, 209);
    assert_non_null(strstr(v.reason, "sm_120a"));
    cc_evaluate(a120, 1, 120, 13000, &v);
    assert_int_equal(v.outcome, CC_NATIVE);
    assert_int_equal(v.chosen, 0);

    cc_code h[] = {ptx(90, 0, 90), sass(90, 0)};
    cc_evaluate(h, 2, 90, 13000, &v);
    assert_int_equal(v.outcome, CC_NATIVE);
    assert_int_equal(v.chosen, 1);
    cc_evaluate(h, 2, 120, 13000, &v);
    assert_int_equal(v.outcome, CC_JIT);
    assert_int_equal(v.chosen, 0);
    assert_non_null(strstr(v.reason, "JIT"));
    cc_evaluate(h, 2, 89, 13000, &v);
    assert_int_equal(v.outcome, CC_NO_IMAGE);

    /* PTX 9.0 (CUDA 13.0) on a CUDA 12.8 driver: 222; unknown driver: JIT assumed. */
    cc_code p120[] = {ptx(120, 0, 90)};
    cc_evaluate(p120, 1, 120, 12080, &v);
    assert_int_equal(v.outcome, CC_PTX_TOO_NEW);
    assert_int_equal(v.cuda_error, 222);
    assert_non_null(strstr(v.reason, "13.0"));
    cc_evaluate(p120, 1, 120, 0, &v);
    assert_int_equal(v.outcome, CC_JIT);
    cc_evaluate(p120, 1, 90, 13000, &v);
    assert_int_equal(v.outcome, CC_NO_IMAGE);

    /* The closest SASS wins. */
    cc_code many[] = {sass(75, 0), sass(80, 0), sass(86, 0), sass(120, 0), sass(121, 0), ptx(121, 0, 90)};
    cc_evaluate(many, 6, 121, 13000, &v);
    assert_int_equal(v.chosen, 4);
    cc_evaluate(many, 6, 89, 13000, &v);
    assert_int_equal(v.chosen, 2);
    assert_non_null(strstr(v.reason, "binary compatible"));
    cc_evaluate(many, 6, 90, 13000, &v);
    assert_int_equal(v.outcome, CC_NO_IMAGE);
    cc_evaluate(NULL, 0, 90, 13000, &v);
    assert_int_equal(v.outcome, CC_NO_IMAGE);
    assert_non_null(strstr(v.reason, "no device code"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_fits),
        cmocka_unit_test(test_evaluate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

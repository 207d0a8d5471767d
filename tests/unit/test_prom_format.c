/* Prometheus text-format primitives (common/adg_prom): metric names from the bus's
 * dotted names and units, label and HELP escaping, values, sample lines. */
#include "adg_test.h"

#include <math.h>
#include <string.h>

#include "common/adg_prom.h"

static void name_is(const char *bus, const char *unit, const char *want)
{
    char out[ADG_PROM_NAME_MAX];
    adg_prom_metric_name(bus, unit, out, sizeof out);
    if (strcmp(out, want))
        print_error("%s [%s] -> %s, expected %s\n", bus, unit ? unit : "(null)", out, want);
    assert_string_equal(out, want);
    assert_true(adg_prom_valid_metric_name(out));
}

static void test_names(void **state)
{
    (void)state;
    name_is("mem.read_bw", "B/s", "amxdiag_mem_read_bw_bytes_per_second");
    name_is("gpu.busy", "%", "amxdiag_gpu_busy_ratio");
    name_is("amx.busy", "%", "amxdiag_amx_busy_ratio");
    name_is("cpu.ipc", "1", "amxdiag_cpu_ipc_ratio");
    name_is("engine.tokens_per_s", "t/s", "amxdiag_engine_tokens_per_second");
    name_is("workload.tokens_per_s", "t/s", "amxdiag_workload_tokens_per_second");
    name_is("engine.token_latency", "s", "amxdiag_engine_token_latency_seconds");
    name_is("gpu.kernel_time", "s", "amxdiag_gpu_kernel_time_seconds");
    name_is("numa.resident", "B", "amxdiag_numa_resident_bytes");
    name_is("numa.threads", "count", "amxdiag_numa_threads");
    name_is("amx.ops", "ops/s", "amxdiag_amx_ops_per_second");
    name_is("simd.fp512", "ops/s", "amxdiag_simd_fp512_ops_per_second");
    name_is("cpu.freq", "Hz", "amxdiag_cpu_freq_hertz");
    /* units already spelled, odd characters, prefix, unknown unit */
    name_is("copy.seconds", "s", "amxdiag_copy_seconds");
    name_is("h2d.bytes_per_second", "B/s", "amxdiag_h2d_bytes_per_second");
    name_is("weird-name with spaces..and/slashes", NULL, "amxdiag_weird_name_with_spaces_and_slashes");
    name_is("amxdiag_already", "", "amxdiag_already");
    name_is("x.y", "furlongs", "amxdiag_x_y");
    name_is("3d.thing", "1", "amxdiag_3d_thing_ratio");
    name_is("...", "s", "amxdiag_unnamed_seconds");
    name_is("", NULL, "amxdiag_unnamed");
    /* the rate's noun is only dropped when something is left */
    name_is("tokens_per_s", "t/s", "amxdiag_tokens_per_second");
    /* truncation keeps a valid name */
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char out[64];
    adg_prom_metric_name(big, "s", out, sizeof out);
    assert_int_equal(strlen(out), 63);
    assert_true(adg_prom_valid_metric_name(out));
}

static void test_units(void **state)
{
    (void)state;
    const char *suffix;
    double scale;
    assert_true(adg_prom_unit("%", &suffix, &scale));
    assert_string_equal(suffix, "ratio");
    assert_true(fabs(scale - 0.01) < 1e-15);
    assert_true(adg_prom_unit("ms", &suffix, &scale));
    assert_string_equal(suffix, "seconds");
    assert_true(fabs(scale - 1e-3) < 1e-18);
    assert_false(adg_prom_unit("fraction of read bandwidth", &suffix, &scale));
    assert_string_equal(suffix, "");
    assert_true(scale == 1);
    assert_false(adg_prom_unit(NULL, &suffix, &scale));
    assert_true(adg_prom_scale(41.25, 0.01) == 0.4125);
    assert_true(adg_prom_scale(23.5, 0.01) == 0.235);
    assert_true(adg_prom_scale(1500, 1e-3) == 1.5);
    assert_true(adg_prom_scale(2, 1e9) == 2e9);
}

static void test_validity(void **state)
{
    (void)state;
    assert_true(adg_prom_valid_metric_name("amxdiag_x"));
    assert_true(adg_prom_valid_metric_name("job:rule:rate5m"));
    assert_false(adg_prom_valid_metric_name("1abc"));
    assert_false(adg_prom_valid_metric_name("a-b"));
    assert_false(adg_prom_valid_metric_name(""));
    assert_true(adg_prom_valid_label_name("cpu"));
    assert_false(adg_prom_valid_label_name("__name__"));
    assert_false(adg_prom_valid_label_name("a:b"));
    assert_false(adg_prom_valid_label_name("0x"));
}

static char *esc(void (*fn)(adg_strbuf *, const char *), const char *in)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    fn(&sb, in);
    char *s = adg_sb_take(&sb);
    return s ? s : strdup("");
}

static void test_label_escaping(void **state)
{
    (void)state;
    char *s = esc(adg_prom_escape_label, "a\\b\"c\nd");
    assert_string_equal(s, "a\\\\b\\\"c\\nd");
    free(s);
    /* a kernel name with templates and quotes stays readable */
    s = esc(adg_prom_escape_label, "void k<(int)3, \"x\">(float*)");
    assert_string_equal(s, "void k<(int)3, \\\"x\\\">(float*)");
    free(s);
    /* UTF-8 passes; broken sequences become '?' (Prometheus rejects the scrape otherwise) */
    s = esc(adg_prom_escape_label, "µs \xe2\x82\xac ok");
    assert_string_equal(s, "µs € ok");
    free(s);
    s = esc(adg_prom_escape_label, "bad\xff\xc3(\xed\xa0\x80" "end");
    assert_string_equal(s, "bad?" "?(???" "end");
    free(s);
    s = esc(adg_prom_escape_label, NULL);
    assert_string_equal(s, "");
    free(s);
}

static void test_help_escaping(void **state)
{
    (void)state;
    /* HELP escapes backslash and newline, but not the double quote */
    char *s = esc(adg_prom_escape_help, "say \"hi\"\\now\nline2");
    assert_string_equal(s, "say \"hi\"\\\\now\\nline2");
    free(s);
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_prom_family(&sb, "amxdiag_x", "gauge", "two\nlines");
    assert_string_equal(sb.buf, "# HELP amxdiag_x two\\nlines\n# TYPE amxdiag_x gauge\n");
    adg_sb_free(&sb);
    adg_sb_init(&sb);
    adg_prom_family(&sb, "amxdiag_y", NULL, NULL);
    assert_string_equal(sb.buf, "# HELP amxdiag_y (no description)\n# TYPE amxdiag_y untyped\n");
    adg_sb_free(&sb);
}

static void value_is(double v, const char *want)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_prom_value(&sb, v);
    assert_string_equal(sb.buf, want);
    adg_sb_free(&sb);
}

static void test_values(void **state)
{
    (void)state;
    value_is(0, "0");
    value_is(-0.0, "0");
    value_is(1, "1");
    value_is(0.25, "0.25");
    value_is(0.1, "0.1");
    value_is(1e21, "1e+21");
    value_is(1795640000, "1795640000");
    value_is(0.5e-9, "5e-10");
    value_is(223.3e9, "223300000000");
    value_is(-3.5, "-3.5");
    value_is(NAN, "NaN");
    value_is(INFINITY, "+Inf");
    value_is(-INFINITY, "-Inf");
    /* round trip for a value that needs 17 digits */
    adg_strbuf sb;
    adg_sb_init(&sb);
    double v = 0.1 + 0.2;
    adg_prom_value(&sb, v);
    assert_true(strtod(sb.buf, NULL) == v);
    adg_sb_free(&sb);
}

static void test_sample(void **state)
{
    (void)state;
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_prom_sample(&sb, "amxdiag_a", NULL, 0, 2);
    adg_prom_label l[] = {{"cpu", "3"}, {"skipped", NULL}, {"kernel", "k\"1\""}};
    adg_prom_sample(&sb, "amxdiag_b", l, 3, 0.5);
    adg_prom_label only_null[] = {{"x", NULL}};
    adg_prom_sample(&sb, "amxdiag_c", only_null, 1, 1);
    assert_string_equal(sb.buf, "amxdiag_a 2\n"
                                "amxdiag_b{cpu=\"3\",kernel=\"k\\\"1\\\"\"} 0.5\n"
                                "amxdiag_c 1\n");
    adg_sb_free(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),          cmocka_unit_test(test_units),
        cmocka_unit_test(test_validity),       cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_help_escaping),  cmocka_unit_test(test_values),
        cmocka_unit_test(test_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* compute-sanitizer reports: XML and text fixtures, malformed and truncated ones, and the
 * merge into a run record file. */
#include "adg_test.h"

#include <string.h>

#include "common/adg_json.h"
#include "common/adg_record.h"
#include "common/adg_util.h"
#include "profiler/sanitizer_parse.h"
#include "profiler/sanitizer_run.h"

static char *fixture(const char *name)
{
    const char *dir = getenv("FIXTURES");
    char *p = NULL;
    if (asprintf(&p, "%s/sanitizer/%s", dir ? dir : "tests/fixtures", name) < 0)
        return NULL;
    return p;
}

static adg_error *parse(const char *name, san_report *r)
{
    char *p = fixture(name);
    adg_error *e = san_parse_file(p, r);
    free(p);
    return e;
}

static void test_xml(void **st)
{
    (void)st;
    san_report r;
    ADG_ASSERT_OK(parse("memcheck_oob.xml", &r));
    assert_string_equal(r.format, "xml");
    assert_int_equal(r.n, 1);
    assert_int_equal(r.other, 1); /* the Api record */
    crash_san *s = &r.recs[0];
    assert_string_equal(s->kernel, "oob_write_kernel(float *, int)"); /* not a host frame's func */
    assert_string_equal(s->what, "Invalid __global__ write of size 4 bytes");
    assert_string_equal(s->kind, "out of bounds");
    assert_int_equal(s->address, 0x7f3a00001000ull);
    assert_int_equal(s->size, 4);
    assert_int_equal(s->thread[0], 31);
    assert_int_equal(s->block[0], 2);
    assert_string_equal(s->location, "/src/cupti_prog.cu:38");
    assert_true(s->has_nearest);
    assert_int_equal(s->distance, 256);
    assert_int_equal(s->nearest_base, 0x7f3a00000f00ull);
    san_report_free(&r);
}


/* A report compute-sanitizer 2025.3.1 wrote on an H100 (the test program's out-of-bounds
 * write; only the build path was shortened): the real layout, not our idea of it. */
static void test_real_h100_xml(void **st)
{
    (void)st;
    san_report r;
    ADG_ASSERT_OK(parse("memcheck_real_h100.xml", &r));
    assert_string_equal(r.format, "xml");
    assert_true(r.n >= 1);
    crash_san *s = &r.recs[0];
    assert_string_equal(s->kernel, "oob_write_kernel");
    assert_string_equal(s->kind, "out of bounds");
    assert_non_null(strstr(s->what, "Invalid __global__ write of size 4 bytes"));
    assert_int_equal(s->address, 0x801071000000ull);
    assert_int_equal(s->size, 4);
    san_report_free(&r);
}

static void expect_format_error(const char *name, const char *needle)
{
    san_report r;
    adg_error *e = parse(name, &r);
    if (!e)
        fail_msg("%s parsed without error", name);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    if (!strstr(adg_error_msg(e), needle))
        fail_msg("%s: '%s' lacks '%s'", name, adg_error_msg(e), needle);
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    assert_int_equal(r.n, 0);
}

static void test_bad_xml(void **st)
{
    (void)st;
    expect_format_error("memcheck_truncated.xml", "truncated compute-sanitizer XML at line");
    expect_format_error("malformed.xml", "malformed compute-sanitizer XML at line 3");
    expect_format_error("not_sanitizer.xml", "root element <testsuites>");
    expect_format_error("not_sanitizer.txt", "not compute-sanitizer output");
    expect_format_error("empty.txt", "is empty");
    san_report r;
    adg_error *e = san_parse_file("/nonexistent/report.xml", &r);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
}

static void test_text(void **st)
{
    (void)st;
    san_report r;
    ADG_ASSERT_OK(parse("memcheck_oob.txt", &r));
    assert_string_equal(r.format, "text");
    assert_int_equal(r.n, 1);
    assert_int_equal(r.errors_total, 2);
    assert_false(r.truncated);
    assert_int_equal(r.other, 1); /* "Program hit cudaErrorLaunchFailure" */
    crash_san *s = &r.recs[0];
    assert_string_equal(s->kernel, "oob_write_kernel(float *, int)");
    assert_string_equal(s->location, "/src/cupti_prog.cu:38");
    assert_int_equal(s->address, 0x7f3a40001000ull);
    assert_string_equal(s->kind, "out of bounds");
    assert_true(s->has_nearest);
    assert_int_equal(s->distance, 1099511627776ll);
    assert_int_equal(s->nearest_size, 16777216);
    san_report_free(&r);

    /* the older "at 0x.. in file:line:function" layout */
    ADG_ASSERT_OK(parse("memcheck_old.txt", &r));
    assert_int_equal(r.n, 1);
    assert_string_equal(r.recs[0].kernel, "mul_mat_vec_q<(ggml_type)2, 1>(const void *, const void *, float *, int, int)");
    assert_string_equal(r.recs[0].location, "/src/mmvq.cu:211");
    assert_int_equal(r.recs[0].thread[0], 64);
    assert_int_equal(r.recs[0].block[0], 511);
    assert_int_equal(r.recs[0].size, 16);
    assert_int_equal(r.recs[0].distance, 64);
    san_report_free(&r);

    ADG_ASSERT_OK(parse("memcheck_clean.txt", &r));
    assert_int_equal(r.n, 0);
    assert_int_equal(r.errors_total, 0);
    san_report_free(&r);

    /* cut before the summary: the report so far, marked truncated */
    ADG_ASSERT_OK(parse("memcheck_cut.txt", &r));
    assert_int_equal(r.n, 1);
    assert_true(r.truncated);
    san_report_free(&r);
}

static void test_nearest(void **st)
{
    (void)st;
    crash_san s;
    memset(&s, 0, sizeof s);
    assert_true(san_parse_nearest("and is 12 bytes before the nearest allocation at 0x1000 of size 64 bytes", &s));
    assert_int_equal(s.distance, -12);
    assert_int_equal(s.nearest_base, 0x1000);
    assert_int_equal(s.nearest_size, 64);
    memset(&s, 0, sizeof s);
    assert_false(san_parse_nearest("Address 0x10 is out of bounds", &s));
    assert_false(s.has_nearest);
}

static void test_merge_into_record(void **st)
{
    (void)st;
    char *dir = adg_test_tmpdir();
    char rec[512], rep[512];
    snprintf(rec, sizeof rec, "%s/run.json", dir);
    prof_sanitizer_report_path(rec, rep, sizeof rep);
    assert_non_null(strstr(rep, "/run.sanitizer.xml"));

    adg_bus *bus = adg_bus_new();
    adg_record *r = adg_record_new();
    ADG_ASSERT_OK(adg_record_write(r, bus, rec));
    char *fx = fixture("memcheck_oob.xml");
    size_t merged = 99;
    ADG_ASSERT_OK(prof_sanitize_merge(rec, fx, &merged));
    assert_int_equal(merged, 1);
    json_t *root;
    ADG_ASSERT_OK(adg_record_load(rec, &root));
    json_t *crash = json_object_get(root, "crash");
    assert_non_null(crash);
    assert_string_equal(json_string_value(json_object_get(json_object_get(crash, "faulting_kernel"), "kernel")),
                        "oob_write_kernel(float *, int)");
    json_decref(root);

    /* a bad report leaves the record as it was */
    char before[4096];
    char *data;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(rec, 0, &data, &len));
    snprintf(before, sizeof before, "%s", data);
    free(data);
    char *bad = fixture("memcheck_truncated.xml");
    adg_error *e = prof_sanitize_merge(rec, bad, &merged);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    adg_error_free(e);
    ADG_ASSERT_OK(adg_read_file(rec, 0, &data, &len));
    assert_int_equal(strncmp(before, data, sizeof before - 1), 0);
    free(data);

    /* a clean sanitizer run without a crash: a "sanitizer" section saying so */
    adg_record_free(r);
    r = adg_record_new();
    ADG_ASSERT_OK(adg_record_write(r, bus, rec));
    char *clean = fixture("memcheck_clean.txt");
    ADG_ASSERT_OK(prof_sanitize_merge(rec, clean, &merged));
    assert_int_equal(merged, 0);
    ADG_ASSERT_OK(adg_record_load(rec, &root));
    assert_null(json_object_get(root, "crash"));
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(root, "sanitizer"), "conclusion")),
                           "no memory-access error"));
    json_decref(root);
    free(fx);
    free(bad);
    free(clean);
    adg_record_free(r);
    adg_bus_free(bus);
    adg_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml),
        cmocka_unit_test(test_real_h100_xml),
        cmocka_unit_test(test_bad_xml), cmocka_unit_test(test_text),
        cmocka_unit_test(test_nearest),     cmocka_unit_test(test_merge_into_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

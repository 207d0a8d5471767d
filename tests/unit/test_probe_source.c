/* The probe's input layer: live gathering, save/replay round trip, and clean errors for
 * corrupt, truncated, foreign or future snapshots. */
#include "adg_test.h"

#include <errno.h>
#include <string.h>

#include "common/adg_json.h"
#include "common/adg_util.h"
#include "probe/probe_cpu.h"
#include "probe/probe_sections.h"
#include "probe/probe_source.h"

static void run_sections(probe_src *src, probe_report *rep)
{
    probe_opts o;
    memset(&o, 0, sizeof o);
    probe_report_init(rep);
    ADG_ASSERT_OK(probe_cpu_section(&o, src, rep));
    ADG_ASSERT_OK(probe_amx_section(&o, src, rep));
    ADG_ASSERT_OK(probe_numa_section(&o, src, rep));
    ADG_ASSERT_OK(probe_pmu_section(&o, src, rep));
}

/* Live, saved, then replayed: every check that does not execute code gives the same verdict
 * and evidence from the snapshot as it did live. */
static void test_round_trip(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char *path = NULL;
    assert_true(asprintf(&path, "%s/snap.json", dir) > 0);
    probe_src *live = NULL;
    ADG_ASSERT_OK(probe_src_live(&live));
    probe_report a, b;
    run_sections(live, &a);
    ADG_ASSERT_OK(probe_src_save(live, path));
    probe_src_free(live);
    probe_src *rep = NULL;
    ADG_ASSERT_OK(probe_src_load(path, &rep));
    assert_true(probe_src_is_replay(rep));
    run_sections(rep, &b);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_string_equal(a.checks[i].id, b.checks[i].id);
        if (!strcmp(a.checks[i].id, "cpu.selftest") || !strcmp(a.checks[i].id, "amx.selftest") ||
            !strcmp(a.checks[i].id, "amx.usable"))
            continue; /* executed live, SKIP from a snapshot */
        if (a.checks[i].status != b.checks[i].status || strcmp(a.checks[i].evidence, b.checks[i].evidence))
            fail_msg("%s: live %s \"%s\", replay %s \"%s\"", a.checks[i].id, probe_status_name(a.checks[i].status),
                     a.checks[i].evidence, probe_status_name(b.checks[i].status), b.checks[i].evidence);
    }
    assert_int_equal(probe_report_find(&b, "amx.selftest")->status, PROBE_SKIP);
    probe_report_free(&a);
    probe_report_free(&b);
    probe_src_free(rep);
    free(path);
    adg_test_rmtree(dir);
}

static void test_live_cpuid(void **state)
{
    (void)state;
    probe_src *s = NULL;
    ADG_ASSERT_OK(probe_src_live(&s));
    probe_cpu c;
    probe_cpu_decode(s, &c);
    assert_true(c.ok);
    assert_true(!strcmp(c.vendor, "GenuineIntel") || !strcmp(c.vendor, "AuthenticAMD"));
    assert_true(c.family >= 6);
    uint32_t r[4];
    /* A leaf above the maximum reads as zeros rather than the CPU's last-leaf echo. */
    assert_true(probe_src_cpuid(s, 0x7fffffff, 0, r));
    assert_int_equal(r[0] | r[1] | r[2] | r[3], 0);
    int err = 0;
    assert_null(probe_src_file(s, "/nonexistent/amxdiag", &err));
    assert_int_equal(err, ENOENT);
    probe_src_free(s);
}

/* Writes text to a temporary file and expects probe_src_load to fail with kind and a
 * message containing want. */
static void expect_bad(const char *text, adg_errkind kind, const char *want)
{
    char *dir = adg_test_tmpdir();
    char *path = NULL;
    assert_true(asprintf(&path, "%s/bad.json", dir) > 0);
    ADG_ASSERT_OK(adg_write_file_atomic(path, text, strlen(text)));
    probe_src *s = NULL;
    adg_error *e = probe_src_load(path, &s);
    if (!e)
        fail_msg("accepted: %s", text);
    assert_null(s);
    if (adg_error_kind(e) != kind || !strstr(adg_error_msg(e), want))
        fail_msg("for %.60s: got %s \"%s\", want %s \"%s\"", text, adg_error_kind_name(adg_error_kind(e)),
                 adg_error_msg(e), adg_error_kind_name(kind), want);
    adg_error_free(e);
    free(path);
    adg_test_rmtree(dir);
}

static void test_bad_snapshots(void **state)
{
    (void)state;
    expect_bad("not json at all", ADG_E_FORMAT, "not valid JSON: line 1");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1", ADG_E_FORMAT, "not valid JSON");
    expect_bad("{\"schema\": \"amxdiag.record/1\"}", ADG_E_FORMAT, "expected \"amxdiag.snapshot/1\"");
    expect_bad("{\"cpuid\": {}}", ADG_E_FORMAT, "no \"schema\" field");
    expect_bad("[1, 2, 3]", ADG_E_FORMAT, "no \"schema\" field");
    expect_bad("{\"schema\": \"amxdiag.snapshot/2\"}", ADG_E_UNSUPPORTED, "schema version 2");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\"}", ADG_E_FORMAT, "no \"cpuid\" object");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1\", \"0x2\"]}}", ADG_E_FORMAT,
               "four registers");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"1\", \"2\", \"3\", \"4\"]}}",
               ADG_E_FORMAT, "32-bit hex");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1\",\"0x1\",\"0x1\",\"0x1\"], "
               "\"leaf0\": [\"0x1\",\"0x1\",\"0x1\",\"0x1\"]}}",
               ADG_E_FORMAT, "malformed CPUID key");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1\",\"0x1\",\"0x1\",\"0x1\"]},"
               " \"xcr0\": 7}",
               ADG_E_FORMAT, "\"xcr0\"");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1\",\"0x1\",\"0x1\",\"0x1\"]},"
               " \"arch_prctl\": {\"get_xcomp_supp\": {\"ret\": \"0\"}}}",
               ADG_E_FORMAT, "arch_prctl");
    expect_bad("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": [\"0x1\",\"0x1\",\"0x1\",\"0x1\"]},"
               " \"files\": {\"/proc/cpuinfo\": 3}}",
               ADG_E_FORMAT, "for file /proc/cpuinfo");
    expect_bad("", ADG_E_FORMAT, "not valid JSON");
}

/* A minimal but valid snapshot: checks whose inputs are missing say so (SKIP) rather than
 * guessing, and nothing crashes. */
static void test_sparse_snapshot(void **state)
{
    (void)state;
    json_error_t je;
    json_t *j = json_loads("{\"schema\": \"amxdiag.snapshot/1\", \"cpuid\": {\"0x0.0x0\": "
                           "[\"0x1\",\"0x756e6547\",\"0x6c65746e\",\"0x49656e69\"]}}",
                           0, &je);
    assert_non_null(j);
    probe_src *s = NULL;
    ADG_ASSERT_OK(probe_src_from_json(j, "test snapshot", &s));
    json_decref(j);
    probe_report rep;
    run_sections(s, &rep);
    assert_int_equal(probe_report_find(&rep, "cpu.identity")->status, PROBE_SKIP);
    assert_int_equal(probe_report_find(&rep, "numa.topology")->status, PROBE_SKIP);
    assert_int_equal(probe_report_find(&rep, "pmu.hardware")->status, PROBE_SKIP);
    probe_report_free(&rep);
    probe_src_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_live_cpuid),
        cmocka_unit_test(test_bad_snapshots),
        cmocka_unit_test(test_sparse_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

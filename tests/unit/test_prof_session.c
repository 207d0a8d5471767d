/* The profiling session end to end, in process: a workload spinning in a known AVX-512
 * function and a known scalar one must be attributed to them; exit codes, crashes and
 * commands that cannot start; the record is written every time the command ran. */
#include "adg_test.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_error.h"
#include "common/adg_record.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_session.h"

static char *tmp;
static char *spin; /* the test workload: build-time path, or $PROF_SPIN */

static int setup(void **st)
{
    (void)st;
    tmp = adg_test_tmpdir();
    spin = getenv("PROF_SPIN") && *getenv("PROF_SPIN") ? getenv("PROF_SPIN") : PROF_SPIN;
    return tmp ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    adg_test_rmtree(tmp);
    return 0;
}

static adg_error *profile(char **argv, const char *name, unsigned sets, prof_outcome *out, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.json", tmp, name);
    prof_options o = {.argv = argv, .interval_ms = 50, .freq_hz = 999, .sets = sets, .top_n = 10, .tee = true,
                      .out = path};
    return prof_session_run(&o, out);
}

static double share(json_t *rec, const char *how, const char *cls)
{
    return json_number_value(json_object_get(json_object_get(json_object_get(rec, "isa_share"), how), cls));
}

static json_t *hot(json_t *rec, const char *fn)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "hot_functions"), i, v) if (!strcmp(
        json_string_value(json_object_get(v, "function")), fn)) return v;
    return NULL;
}

static void test_attribution(void **st)
{
    (void)st;
    if (!__builtin_cpu_supports("avx512f"))
        ADG_SKIP("this CPU has no AVX-512F: the test workload cannot run its AVX-512 loop");
    char *argv[] = {spin, "mixed", "1.2", NULL};
    prof_outcome out;
    char path[512];
    adg_error *e = profile(argv, "mixed", PROF_SET_SAMPLING | PROF_SET_NUMA, &out, path, sizeof path);
    if (e && adg_error_kind(e) == ADG_E_PERMISSION) {
        adg_error_free(e);
        ADG_SKIP("perf_event_open is not permitted here");
    }
    ADG_ASSERT_OK(e);
    assert_int_equal(out.exit_code, 0);
    json_t *rec = out.record;
    size_t ui;
    json_t *u;
    json_array_foreach(json_object_get(rec, "unavailable"), ui, u)
    {
        if (!strcmp(json_string_value(json_object_get(u, "collector")), "sampler")) {
            /* e.g. a container whose seccomp profile blocks perf_event_open */
            char why[512];
            snprintf(why, sizeof why, "%s", json_string_value(json_object_get(u, "reason")));
            json_decref(rec);
            ADG_SKIP("cpu-clock sampling is not possible here: %s", why);
        }
    }
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "complete");
    json_int_t samples = json_integer_value(json_object_get(json_object_get(rec, "isa_share"), "samples"));
    if (samples < 50)
        fail_msg("only %lld samples in 1.2 s of two spinning threads", (long long)samples);
    /* Two threads spin equally long, one in each function; the machine may be busy, so
     * only a loose split is asserted. */
    double avx = share(rec, "by_function", "avx512"), sc = share(rec, "by_function", "scalar");
    if (avx < 20 || sc < 20 || avx + sc < 90)
        fail_msg("avx512 %.1f%%, scalar %.1f%%", avx, sc);
    assert_true(share(rec, "by_function", "amx") == 0);
    json_t *f = hot(rec, "spin_avx512");
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "class")), "avx512");
    f = hot(rec, "spin_scalar");
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "class")), "scalar");
    /* per thread: two threads, each (almost) all in one class */
    json_t *th = json_object_get(json_object_get(rec, "isa_share"), "threads");
    assert_true(json_array_size(th) >= 2);
    /* time series and sections */
    assert_non_null(json_object_get(rec, "numa"));
    assert_non_null(json_object_get(rec, "machine"));
    assert_non_null(json_object_get(rec, "config"));
    assert_non_null(json_object_get(rec, "memory"));
    bool series = false;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(rec, "series"), i, v) series |=
        !strcmp(json_string_value(json_object_get(v, "metric")), "isa.share.avx512");
    assert_true(series);
    /* the file on disk is the same record, and loads */
    json_t *disk;
    ADG_ASSERT_OK(adg_record_load(path, &disk));
    json_decref(disk);
    json_decref(rec);
}

static void test_exit_code(void **st)
{
    (void)st;
    char *argv[] = {spin, "exit", "3", NULL};
    prof_outcome out;
    char path[512];
    ADG_ASSERT_OK(profile(argv, "exit3", PROF_SET_SAMPLING, &out, path, sizeof path));
    assert_int_equal(out.exit_code, 3);
    assert_string_equal(json_string_value(json_object_get(out.record, "status")), "workload-failed");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out.record, "workload"), "exit_code")), 3);
    json_decref(out.record);
}

static void test_crash(void **st)
{
    (void)st;
    char *argv[] = {spin, "segv", NULL};
    prof_outcome out;
    char path[512];
    ADG_ASSERT_OK(profile(argv, "segv", PROF_SET_SAMPLING | PROF_SET_NUMA, &out, path, sizeof path));
    assert_int_equal(out.exit_code, 128 + 11);
    assert_string_equal(json_string_value(json_object_get(out.record, "status")), "workload-crashed");
    json_t *wl = json_object_get(out.record, "workload");
    assert_string_equal(json_string_value(json_object_get(wl, "signal_name")), "SIGSEGV");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    json_decref(out.record);
}

static void test_cannot_start(void **st)
{
    (void)st;
    char *argv[] = {"/nonexistent/amxdiag-no-such-command", NULL};
    prof_outcome out;
    char path[512];
    adg_error *e = profile(argv, "enoent", PROF_SET_SAMPLING, &out, path, sizeof path);
    assert_non_null(e);
    assert_int_equal(out.exit_code, 127);
    assert_non_null(strstr(adg_error_msg(e), "cannot run"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    assert_null(out.record);
    struct stat sb;
    assert_int_not_equal(stat(path, &sb), 0); /* no record for a command that never ran */
}

static void test_no_command(void **st)
{
    (void)st;
    prof_outcome out;
    prof_options o = {.out = "unused.json"};
    adg_error *e = prof_session_run(&o, &out);
    assert_non_null(e);
    assert_int_equal(out.exit_code, 2);
    adg_error_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attribution), cmocka_unit_test(test_exit_code), cmocka_unit_test(test_crash),
        cmocka_unit_test(test_cannot_start), cmocka_unit_test(test_no_command),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

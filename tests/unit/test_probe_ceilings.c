/* common/adg_ceilings: the cache of --bench figures (location, key, round trip, bad files)
 * and the benchmark itself, shortened. */
#include "adg_test.h"

#include <cpuid.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_ceilings.h"
#include "common/adg_util.h"
#include "probe/probe_bench.h"

static void test_path(void **state)
{
    (void)state;
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    char *p = NULL;
    ADG_ASSERT_OK(adg_ceilings_path("Intel(R) Xeon(R) Platinum 8580", 16, &p));
    assert_string_equal(p, "/x/cache/amxdiag/ceilings-Intel_R_Xeon_R_Platinum_8580-16cpu.json");
    free(p);
    ADG_ASSERT_OK(adg_ceilings_path("../../etc/passwd", 2, &p));
    assert_null(strstr(p + strlen("/x/cache/amxdiag/"), "/")); /* never leaves the directory */
    free(p);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    ADG_ASSERT_OK(adg_ceilings_path("AMD EPYC", 2, &p));
    assert_string_equal(p, "/home/u/.cache/amxdiag/ceilings-AMD_EPYC-2cpu.json");
    free(p);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    char *cache = NULL;
    assert_true(asprintf(&cache, "%s/deep/cache", dir) > 0);
    setenv("XDG_CACHE_HOME", cache, 1);
    adg_ceilings c, d;
    memset(&c, 0, sizeof c);
    snprintf(c.cpu, sizeof c.cpu, "Test CPU 9000");
    c.ncpus = 16;
    snprintf(c.created, sizeof c.created, "2026-11-25T21:00:00Z");
    c.clock_ghz = 2.1;
    c.amx_int8_core = (adg_rate){.ops_per_s = 1.95e12, .per_cycle = 928.6, .peak_per_cycle = 2048, .threads = 1};
    c.amx_int8_all = (adg_rate){.ops_per_s = 33.5e12, .per_cycle = 997, .peak_per_cycle = 2048, .threads = 16};
    snprintf(c.vnni_core.why, sizeof c.vnni_core.why, "not measured");
    c.nnodes = 1;
    c.nodes[0] = (adg_node_bw){.node = 0, .threads = 16, .read_gbs = 127, .read_core_gbs = 13.1, .read_plain_gbs = 110.5,
                               .read_pf_gbs = 121, .read_multi_gbs = 127, .triad_gbs = 95,
                               .buffer_bytes = 1 << 30};
    bool found = true;
    ADG_ASSERT_OK(adg_ceilings_load("Test CPU 9000", 16, &d, &found));
    assert_false(found);
    ADG_ASSERT_OK(adg_ceilings_save(&c));
    ADG_ASSERT_OK(adg_ceilings_load("Test CPU 9000", 16, &d, &found));
    assert_true(found);
    assert_string_equal(d.cpu, "Test CPU 9000");
    assert_int_equal(d.ncpus, 16);
    assert_true(d.amx_int8_core.ops_per_s == 1.95e12);
    assert_int_equal(d.amx_int8_all.threads, 16);
    assert_true(d.amx_int8_core.peak_per_cycle == 2048);
    assert_string_equal(d.vnni_core.why, "not measured");
    assert_int_equal(d.nnodes, 1);
    assert_true(d.nodes[0].read_gbs == 127 && d.nodes[0].read_core_gbs == 13.1 && d.nodes[0].triad_gbs == 95);
    assert_true(d.nodes[0].read_plain_gbs == 110.5 && d.nodes[0].read_pf_gbs == 121 && d.nodes[0].read_multi_gbs == 127);
    /* Another CPU count is another machine. */
    ADG_ASSERT_OK(adg_ceilings_load("Test CPU 9000", 8, &d, &found));
    assert_false(found);
    /* A corrupt cache file is an error that names it, not a crash or silent zeros. */
    char *path = NULL;
    ADG_ASSERT_OK(adg_ceilings_path("Test CPU 9000", 16, &path));
    ADG_ASSERT_OK(adg_write_file_atomic(path, "{\"schema\": \"amxdiag.ceil", 24));
    adg_error *e = adg_ceilings_load("Test CPU 9000", 16, &d, &found);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_false(found);
    adg_error_free(e);
    ADG_ASSERT_OK(adg_write_file_atomic(path, "{\"schema\": \"amxdiag.ceilings/1\"}", 32));
    e = adg_ceilings_load("Test CPU 9000", 16, &d, &found);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "lacks"));
    adg_error_free(e);
    free(path);
    unsetenv("XDG_CACHE_HOME");
    free(cache);
    adg_test_rmtree(dir);
}

static void test_bench_short(void **state)
{
    (void)state;
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    probe_bench_opts o = {.seconds = 0.01, .mem_bytes = 16u << 20, .max_threads = 2, .vnni = (c >> 11) & 1};
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    o.vnni = o.vnni && (lo & 0xe6) == 0xe6;
    adg_ceilings r;
    probe_bench_timing t;
    ADG_ASSERT_OK(probe_bench_run(&o, &r, &t));
    assert_true(t.n >= 2); /* clock and at least one memory node */
    assert_string_equal(t.name[0], "clock");
    for (int i = 0; i < t.n; i++)
        assert_true(t.seconds[i] >= 0 && t.seconds[i] < 60);
    assert_true(r.clock_ghz > 0.3 && r.clock_ghz < 7);
    assert_true(r.clock_all_ghz > 0.3 && r.clock_all_ghz < 7);
    assert_true(r.ncpus >= 1);
    assert_true(r.cpu[0] != '\0');
    assert_true(r.amx_int8_core.ops_per_s == 0 && r.amx_int8_core.why[0]); /* not asked */
    if (o.vnni) {
        assert_true(r.vnni_core.ops_per_s > 1e9);
        assert_true(r.vnni_all.threads >= 1);
    } else {
        assert_true(r.vnni_core.why[0]);
    }
    assert_true(r.nnodes >= 1);
    assert_true(r.nodes[0].read_gbs > 0.1);
    assert_true(r.nodes[0].triad_gbs > 0.1);
    assert_true(r.nodes[0].read_core_gbs > 0.1);
}

/* What a loop's scaling says about the units behind the threads (probe_bench_units), with
 * the device machine's own figures: AMX int8 7.1x on 16 threads of a guest that reports one
 * thread per core (the host shares cores), VNNI 12.7x (scales), SMT 2. */
static void test_units(void **state)
{
    (void)state;
    char why[200];
    assert_int_equal(probe_bench_units(7.1, 16, 1, why, sizeof why), 7);
    assert_non_null(strstr(why, "one thread per core"));
    assert_int_equal(probe_bench_units(12.7, 16, 1, why, sizeof why), 0);
    assert_int_equal(why[0], 0);
    assert_int_equal(probe_bench_units(8.2, 16, 2, why, sizeof why), 8);
    assert_non_null(strstr(why, "SMT"));
    assert_int_equal(probe_bench_units(5.9, 16, 0, why, sizeof why), 6);
    assert_non_null(strstr(why, "not known"));
    /* too few threads to tell, a loop that did not run, one unit for all */
    assert_int_equal(probe_bench_units(1.2, 2, 1, why, sizeof why), 0);
    assert_int_equal(probe_bench_units(0, 16, 1, why, sizeof why), 0);
    assert_int_equal(probe_bench_units(1.1, 8, 1, why, sizeof why), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bench_short),
        cmocka_unit_test(test_units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

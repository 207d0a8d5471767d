/* Pure parts of the profiler: libpfm4 encodings with the PMU forced to Sapphire Rapids,
 * llama-bench / llama-cli output, numa_maps, /proc stat and arch_status. */
#include "adg_test.h"

#include <string.h>

#include "common/adg_error.h"
#include "common/adg_record.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_numa.h"
#include "profiler/prof_pmu.h"
#include "profiler/prof_workload.h"

static const prof_pmu_event *event(const char *id)
{
    for (unsigned i = 0; i < prof_pmu_nevents; i++)
        if (!strcmp(prof_pmu_events[i].id, id))
            return &prof_pmu_events[i];
    return NULL;
}

static void test_pmu_encodings_spr(void **st)
{
    (void)st;
    prof_pmu_table t;
    ADG_ASSERT_OK(prof_pmu_init(&t));
    assert_string_equal(t.pmu, "spr");
    assert_non_null(strstr(t.note, "LIBPFM_FORCE_PMU"));
    static const struct {
        const char *id;
        uint64_t config;
    } want[] = {
        {"amx_busy", 0x02b7},      {"amx_ops_int8", 0x01ce}, {"amx_ops_bf16", 0x02ce},  {"core_clocks", 0x003c},
        {"fp_512_ps", 0x80c7},     {"fp_512_pd", 0x40c7},    {"fp_256_ps", 0x20c7},     {"fp_scalar", 0x03c7},
        {"fp16_vector", 0x1ccf},   {"fp16_512", 0x10cf},     {"int_vec_vnni", 0x20e7},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const prof_pmu_event *ev = event(want[i].id);
        assert_non_null(ev);
        struct perf_event_attr a;
        const char *how;
        ADG_ASSERT_OK(prof_pmu_encode(&t, ev, &a, &how));
        assert_string_equal(how, "libpfm4");
        assert_int_equal(a.type, PERF_TYPE_RAW);
        if ((a.config & 0xffff) != want[i].config)
            fail_msg("%s: libpfm4 config %#llx, expected %#llx", want[i].id, (unsigned long long)a.config,
                     (unsigned long long)want[i].config);
        /* The raw fallback in the table agrees with libpfm4's encoding. */
        assert_int_equal(ev->raw, a.config & 0xffff);
    }
    /* Every SPR row of the table encodes, and agrees with its raw fallback. */
    for (unsigned i = 0; i < prof_pmu_nevents; i++) {
        const prof_pmu_event *ev = &prof_pmu_events[i];
        struct perf_event_attr a;
        const char *how;
        ADG_ASSERT_OK(prof_pmu_encode(&t, ev, &a, &how));
        if (ev->raw && (a.config & 0xffff) != ev->raw)
            fail_msg("%s: table raw %#llx but libpfm4 says %#llx", ev->id, (unsigned long long)ev->raw,
                     (unsigned long long)a.config);
        if (!ev->raw)
            assert_string_equal(how, "generic");
    }
}

static void test_llama_bench(void **st)
{
    (void)st;
    prof_tps t;
    assert_true(prof_workload_parse_line(
        "| llama 1B Q4_0                  | 606.53 MiB |     1.10 B | CPU        |      16 |         pp512 |        "
        "473.12 \xc2\xb1 58.01 |",
        &t));
    assert_string_equal(t.test, "pp512");
    assert_float_equal(t.tps, 473.12, 1e-9);
    assert_float_equal(t.stddev, 58.01, 1e-9);
    assert_string_equal(t.source, "llama-bench");
    assert_true(prof_workload_parse_line("| qwen2moe ?B Q4_0 | 1.2 GiB | 1.2 B | CPU | 16 | tg64 | 122.60 \xc2\xb1 4.00 |", &t));
    assert_string_equal(t.test, "tg64");
    assert_float_equal(t.tps, 122.6, 1e-9);
    /* header and separator rows, and other tables, are not figures */
    assert_false(prof_workload_parse_line("| model | size | params | backend | threads | test | t/s |", &t));
    assert_false(prof_workload_parse_line("| --- | ---: | ---: | --- | ---: | ---: | ---: |", &t));
    assert_false(prof_workload_parse_line("| a | b |", &t));
    assert_false(prof_workload_parse_line("plain text", &t));
    assert_false(prof_workload_parse_line("", &t));
}

static void test_llama_cli(void **st)
{
    (void)st;
    prof_tps t;
    assert_true(prof_workload_parse_line("llama_perf_context_print:        eval time =    1234.56 ms /   127 runs   (    "
                                         "9.72 ms per token,   102.88 tokens per second)",
                                         &t));
    assert_string_equal(t.test, "eval");
    assert_float_equal(t.tps, 102.88, 1e-9);
    assert_string_equal(t.source, "llama-cli");
    assert_true(prof_workload_parse_line("llama_print_timings: prompt eval time =     123.45 ms /    12 tokens (   "
                                         "10.29 ms per token,    97.20 tokens per second)",
                                         &t));
    assert_string_equal(t.test, "prompt");
    assert_float_equal(t.tps, 97.2, 1e-9);
    assert_false(prof_workload_parse_line("llama_perf_context_print:        load time =     100.00 ms", &t));
    assert_false(prof_workload_parse_line("eval time = tokens per second", &t));
}

static void test_numa_maps(void **st)
{
    (void)st;
    uint64_t b[PROF_NUMA_MAX_NODES] = {0};
    const char *text =
        "55d0c0a00000 default file=/usr/bin/cat mapped=3 N0=3 kernelpagesize_kB=4\n"
        "7f0000000000 bind:1 anon=512 dirty=512 N1=512 kernelpagesize_kB=4\n"
        "7f1000000000 default anon=2 dirty=2 N0=1 N1=1 kernelpagesize_kB=2048\n"
        "7ffc00000000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4\n"
        "7ffd00000000 default\n";
    assert_int_equal(prof_numa_parse_maps(text, b), 4);
    assert_int_equal(b[0], 3 * 4096 + 2048 * 1024 + 3 * 4096);
    assert_int_equal(b[1], 512 * 4096 + 2048 * 1024);
    assert_int_equal(b[2], 0);
    assert_int_equal(prof_numa_parse_maps("", b), 0);
}

static void test_proc_fields(void **st)
{
    (void)st;
    /* comm with spaces and parentheses; field 39 = 7 */
    const char *stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 4 0 12345 "
                       "1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 7 0 0 0 0 0";
    assert_int_equal(prof_numa_stat_cpu(stat), 7);
    assert_int_equal(prof_numa_stat_cpu("garbage"), -1);
    assert_int_equal(prof_numa_stat_cpu("1 (x) S 1 2"), -1);
    assert_int_equal(prof_numa_avx512_elapsed("AVX512_elapsed_ms:\t12\n"), 12);
    assert_int_equal(prof_numa_avx512_elapsed("AVX512_elapsed_ms:\t-1\n"), -1);
    assert_int_equal(prof_numa_avx512_elapsed("something else\n"), -2);
}

/* The resctrl MBM collector on a fake resctrl tree ($AMXDIAG_RESCTRL). */
static void write_num(const char *path, unsigned long long v)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%llu\n", v);
    fclose(f);
}

static void test_mbm_fake_tree(void **st)
{
    (void)st;
    char *dir = adg_test_tmpdir();
    if (!dir) {
        fail_msg("no temporary directory");
        return;
    }
    char path[512], f0[600], f1[600];
    snprintf(path, sizeof path, "%s/mon_data/mon_L3_00", dir);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/mon_data/mon_L3_01'", path, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(f0, sizeof f0, "%s/mbm_total_bytes", path);
    snprintf(f1, sizeof f1, "%s/mon_data/mon_L3_01/mbm_total_bytes", dir);
    write_num(f0, 1000);
    write_num(f1, 5000);
    setenv("AMXDIAG_RESCTRL", dir, 1);

    prof_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.bus = adg_bus_new();
    ctx.record = adg_record_new();
    ctx.interval_ns = 100000000;
    prof_pidset_init(&ctx.pids);
    void *state = NULL;
    ADG_ASSERT_OK(prof_mbm_collector.open(&ctx, &state));
    int m = adg_bus_find(ctx.bus, "mem.mbm_bw");
    assert_true(m >= 0);
    uint64_t t0 = adg_bus_elapsed_ns(ctx.bus);
    write_num(f0, 1000 + 2000000000ull);  /* 2 GB more on domain 00 */
    write_num(f1, 5000);                  /* none on 01 */
    prof_mbm_collector.sample(&ctx, state, t0 + 1000000000ull); /* one second later */
    adg_point pt;
    assert_true(adg_bus_latest(ctx.bus, m, "l3_00", &pt));
    /* the open happened a little before t0: the rate is 2 GB over just over a second */
    assert_true(pt.value > 1.9e9 && pt.value <= 2.0e9);
    assert_true(adg_bus_latest(ctx.bus, m, "l3_01", &pt));
    assert_true(pt.value == 0);
    prof_mbm_collector.finish(&ctx, state, t0 + 2000000000ull);
    prof_mbm_collector.close(state);

    /* No tree: the reason names the path and says how to mount it. */
    setenv("AMXDIAG_RESCTRL", "/nonexistent/resctrl", 1);
    adg_error *e = prof_mbm_collector.open(&ctx, &state);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "/nonexistent/resctrl/mon_data"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    unsetenv("AMXDIAG_RESCTRL");
    prof_pidset_destroy(&ctx.pids);
    adg_record_free(ctx.record);
    adg_bus_free(ctx.bus);
    adg_test_rmtree(dir);
}

int main(void)
{
    /* libpfm4 reads this once, at initialisation: the encodings are checked against
     * the Sapphire Rapids table whatever CPU runs the test. */
    setenv("LIBPFM_FORCE_PMU", "spr", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pmu_encodings_spr), cmocka_unit_test(test_llama_bench),
        cmocka_unit_test(test_llama_cli),         cmocka_unit_test(test_numa_maps),
        cmocka_unit_test(test_proc_fields),       cmocka_unit_test(test_mbm_fake_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

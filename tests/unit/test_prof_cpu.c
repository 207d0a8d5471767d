/* The CPU collector (cpu.util from /proc/stat), the machine section's CPU -> node map,
 * and the NUMA collector's per-node CPU time of the workload (numa.cpu). */
#include "adg_test.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_error.h"
#include "common/adg_record.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_cpu.h"
#include "profiler/prof_numa.h"
#include "profiler/prof_session.h"

static void test_parse_stat(void **st)
{
    (void)st;
    /* A real layout: the aggregate line, CPUs with a gap (cpu2 offline), and the other
     * lines /proc/stat carries. guest/guest_nice (already in user) are not added. */
    const char *text = "cpu  100 0 50 800 10 0 0 0 0 0\n"
                       "cpu0 40 0 20 400 5 0 0 0 30 0\n"
                       "cpu1 60 2 30 300 5 1 2 0 0 0\n"
                       "cpu3 1 0 0 99 0 0 0 0\n"
                       "intr 12345 0 0\n"
                       "ctxt 999\n"
                       "cpufoo bar\n";
    prof_cpu_ticks t[8];
    size_t n = prof_cpu_parse_stat(text, t, 8);
    assert_int_equal(n, 3);
    assert_int_equal(t[0].cpu, 0);
    assert_int_equal(t[0].total, 40 + 20 + 400 + 5);
    assert_int_equal(t[0].idle, 405);
    assert_int_equal(t[1].cpu, 1);
    assert_int_equal(t[1].total, 60 + 2 + 30 + 300 + 5 + 1 + 2);
    assert_int_equal(t[2].cpu, 3);
    assert_int_equal(t[2].total, 100);
    /* at most max entries */
    assert_int_equal(prof_cpu_parse_stat(text, t, 2), 2);
    assert_int_equal(prof_cpu_parse_stat("", t, 8), 0);
    assert_int_equal(prof_cpu_parse_stat("garbage\n\n", t, 8), 0);

    prof_cpu_ticks a = {0, 1000, 800}, b = {0, 1100, 825};
    assert_true(fabs(prof_cpu_util(&a, &b) - 75.0) < 1e-9);
    assert_true(prof_cpu_util(&a, &a) < 0);          /* no tick passed */
    assert_true(prof_cpu_util(&b, &a) < 0);          /* counters went back */
    prof_cpu_ticks c = {0, 1100, 700};               /* idle went back: treated as 0 idle */
    assert_true(fabs(prof_cpu_util(&a, &c) - 100.0) < 1e-9);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void ctx_init(prof_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->bus = adg_bus_new();
    ctx->record = adg_record_new();
    ctx->interval_ns = 100000000;
    prof_pidset_init(&ctx->pids);
}

static void ctx_free(prof_ctx *ctx)
{
    prof_pidset_destroy(&ctx->pids);
    adg_record_free(ctx->record);
    adg_bus_free(ctx->bus);
}

/* The collector on recorded snapshots ($AMXDIAG_PROC_STAT): exact values per CPU. */
static void test_collector_snapshots(void **st)
{
    (void)st;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char path[600];
    snprintf(path, sizeof path, "%s/stat", dir);
    write_text(path, "cpu  0 0 0 0 0 0 0 0\n"
                     "cpu0 100 0 0 900 0 0 0 0\n"
                     "cpu1 0 0 0 1000 0 0 0 0\n"
                     "cpu5 500 0 0 500 0 0 0 0\n");
    setenv("AMXDIAG_PROC_STAT", path, 1);
    prof_ctx ctx;
    ctx_init(&ctx);
    void *state = NULL;
    ADG_ASSERT_OK(prof_cpu_collector.open(&ctx, &state));
    int m = adg_bus_find(ctx.bus, "cpu.util");
    assert_true(m >= 0);
    adg_metric_def def;
    const char *coll;
    assert_true(adg_bus_metric(ctx.bus, (size_t)m, &def, &coll));
    assert_string_equal(coll, "cpu");
    assert_int_equal(def.scope, ADG_SCOPE_CPU);
    assert_string_equal(def.unit, "%");

    /* cpu0: 10 busy of 10 ticks; cpu1: 5 of 20; cpu5: only 2 ticks (below the minimum:
     * not published yet, its delta keeps accumulating). */
    write_text(path, "cpu0 110 0 0 900 0 0 0 0\n"
                     "cpu1 3 0 2 1015 0 0 0 0\n"
                     "cpu5 501 0 0 501 0 0 0 0\n");
    prof_cpu_collector.sample(&ctx, state, 100000000);
    adg_point p;
    assert_true(adg_bus_latest(ctx.bus, m, "cpu0", &p));
    assert_true(fabs(p.value - 100.0) < 1e-9);
    assert_true(adg_bus_latest(ctx.bus, m, "cpu1", &p));
    assert_true(fabs(p.value - 25.0) < 1e-9);
    assert_false(adg_bus_latest(ctx.bus, m, "cpu5", &p));

    /* cpu5 now 6 ticks since open (3 busy): published as 50 %; cpu1 goes offline. */
    write_text(path, "cpu0 110 0 0 920 0 0 0 0\n"
                     "cpu5 503 0 0 503 0 0 0 0\n");
    prof_cpu_collector.sample(&ctx, state, 200000000);
    assert_true(adg_bus_latest(ctx.bus, m, "cpu0", &p));
    assert_true(fabs(p.value - 0.0) < 1e-9);
    assert_true(adg_bus_latest(ctx.bus, m, "cpu5", &p));
    assert_true(fabs(p.value - 50.0) < 1e-9);
    char **names;
    size_t n = adg_bus_instances(ctx.bus, m, &names);
    assert_int_equal(n, 3);
    adg_bus_free_names(names, n);

    /* finish: the whole-run figure per CPU (first reading to last) in the cpu section */
    prof_cpu_collector.finish(&ctx, state, 300000000);
    json_t *sec = adg_record_section(ctx.record, "cpu");
    assert_non_null(sec);
    json_t *util = json_object_get(sec, "util_pct");
    assert_true(fabs(json_real_value(json_object_get(util, "cpu0")) - 100.0 * 10 / 30) < 1e-9);
    assert_true(fabs(json_real_value(json_object_get(util, "cpu5")) - 50.0) < 1e-9);
    assert_null(json_object_get(util, "cpu1")); /* offline at the end: no figure */
    assert_int_equal(json_integer_value(json_object_get(sec, "cpus")), 3);
    prof_cpu_collector.close(state);

    /* Unreadable: the reason names the file and the collector does not run. */
    setenv("AMXDIAG_PROC_STAT", "/nonexistent/stat", 1);
    adg_error *e = prof_cpu_collector.open(&ctx, &state);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "/nonexistent/stat"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    /* A file with no per-CPU line (a foreign format) is refused the same way. */
    write_text(path, "intr 1 2 3\n");
    setenv("AMXDIAG_PROC_STAT", path, 1);
    e = prof_cpu_collector.open(&ctx, &state);
    assert_non_null(e);
    adg_error_free(e);
    unsetenv("AMXDIAG_PROC_STAT");
    ctx_free(&ctx);
    adg_test_rmtree(dir);
}

/* Spins until this thread used `seconds` of CPU time (not wall time: the machine may be
 * shared), and returns the CPU time it used. */
static double burn(double seconds)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    volatile unsigned long x = 0;
    double used;
    do {
        for (int i = 0; i < 100000; i++)
            x += (unsigned long)i;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        used = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    } while (used < seconds);
    return used;
}

/* The real /proc/stat: every online CPU gets an instance, values stay within 0..100, and
 * the CPU this test burns shows up busy. */
static void test_collector_live(void **st)
{
    (void)st;
    if (access("/proc/stat", R_OK) != 0)
        ADG_SKIP("no /proc/stat here");
    prof_ctx ctx;
    ctx_init(&ctx);
    void *state = NULL;
    ADG_ASSERT_OK(prof_cpu_collector.open(&ctx, &state));
    int m = adg_bus_find(ctx.bus, "cpu.util");
    uint64_t t0 = adg_bus_elapsed_ns(ctx.bus);
    burn(0.3);
    prof_cpu_collector.sample(&ctx, state, t0 + 300000000ull);
    char **names;
    size_t n = adg_bus_instances(ctx.bus, m, &names);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(n >= 1 && (long)n <= online);
    double max = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(!strncmp(names[i], "cpu", 3));
        adg_point p;
        assert_true(adg_bus_latest(ctx.bus, m, names[i], &p));
        assert_true(p.value >= 0 && p.value <= 100);
        if (p.value > max)
            max = p.value;
    }
    adg_bus_free_names(names, n);
    assert_true(max >= 50); /* 0.3 s of spinning on some CPU */
    prof_cpu_collector.finish(&ctx, state, t0 + 400000000ull);
    prof_cpu_collector.close(state);
    ctx_free(&ctx);
}

/* The machine section's cpu_node: one entry per configured CPU, each a node libnuma knows
 * (or -1), and the same array prof_machine_section carries. */
static void test_machine_cpu_nodes(void **st)
{
    (void)st;
    json_t *a = prof_machine_cpu_nodes();
    assert_true(json_is_array(a));
    assert_int_equal((long)json_array_size(a), sysconf(_SC_NPROCESSORS_CONF));
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        assert_true(json_is_integer(v));
        assert_true(json_integer_value(v) >= -1 && json_integer_value(v) < PROF_NUMA_MAX_NODES);
    }
    json_t *m = prof_machine_section();
    assert_true(json_equal(json_object_get(m, "cpu_node"), a));
    json_decref(m);
    json_decref(a);
}

static void test_stat_ticks(void **st)
{
    (void)st;
    /* utime 5, stime 3 (fields 14, 15), comm with spaces and parentheses */
    const char *stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194304 100 0 0 0 5 3 0 0 20 0 4 0 12345 "
                       "1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 7 0 0 0 0 0";
    uint64_t t = 0;
    assert_true(prof_numa_stat_ticks(stat, &t));
    assert_int_equal(t, 8);
    assert_false(prof_numa_stat_ticks("garbage", &t));
    assert_false(prof_numa_stat_ticks("1 (x) S 1 2 3", &t));
}

/* numa.cpu on this process: the collector sees its own threads burn CPU. */
static void test_numa_cpu_live(void **st)
{
    (void)st;
    prof_ctx ctx;
    ctx_init(&ctx);
    prof_pidset_add(&ctx.pids, getpid());
    void *state = NULL;
    ADG_ASSERT_OK(prof_numa_collector.open(&ctx, &state));
    int m = adg_bus_find(ctx.bus, "numa.cpu");
    assert_true(m >= 0);
    prof_numa_collector.sample(&ctx, state, 0); /* the baseline: nothing published */
    adg_point p;
    assert_false(adg_bus_latest(ctx.bus, m, "node0", &p));
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    double used = burn(0.4);
    clock_gettime(CLOCK_MONOTONIC, &w1);
    uint64_t dt = (uint64_t)(w1.tv_sec - w0.tv_sec) * 1000000000ull + (uint64_t)w1.tv_nsec - (uint64_t)w0.tv_nsec;
    prof_numa_collector.sample(&ctx, state, dt);
    char **names;
    size_t n = adg_bus_instances(ctx.bus, m, &names);
    assert_true(n >= 1);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        if (adg_bus_latest(ctx.bus, m, names[i], &p))
            sum += p.value;
    adg_bus_free_names(names, n);
    /* the CPU time this thread used over the interval, within the ticks' resolution
     * (10 ms at each end of 0.4 s) */
    double want = 100.0 * used / ((double)dt * 1e-9);
    if (fabs(sum - want) > 8 + want * 0.1)
        fail_msg("numa.cpu summed over nodes is %.1f %%, expected %.1f %%", sum, want);
    prof_numa_collector.finish(&ctx, state, dt + 1000);
    json_t *sec = adg_record_section(ctx.record, "numa");
    json_t *per = json_object_get(sec, "per_node");
    double cpu_s = 0;
    size_t i;
    json_t *v;
    json_array_foreach(per, i, v) cpu_s += json_real_value(json_object_get(v, "cpu_s"));
    if (fabs(cpu_s - used) > 0.05)
        fail_msg("numa per_node cpu_s sums to %.3f s, expected %.3f s", cpu_s, used);
    prof_numa_collector.close(state);
    ctx_free(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),       cmocka_unit_test(test_collector_snapshots),
        cmocka_unit_test(test_collector_live),   cmocka_unit_test(test_machine_cpu_nodes),
        cmocka_unit_test(test_stat_ticks),       cmocka_unit_test(test_numa_cpu_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

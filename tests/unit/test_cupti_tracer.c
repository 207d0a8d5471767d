/* The tracer's activity buffers (profiler/cupti_tracer.c) against a stand-in libcupti
 * (tests/fixtures/cupti/fake_act_cupti.c): a buffer handed back twice or not ours is
 * neither read nor freed (an injected program died at exit with "double free" inside
 * cuptiActivityFlushAll on an H200), the flushes during the run deliver records before the
 * end, and the exit-flush variants (AMXDIAG_CUPTI_EXIT_FLUSH, cupti_tracer_quiesce); the
 * activity variants beside --gpu-metrics (AMXDIAG_GPU_METRICS_ACTIVITY) and where the Range
 * Profiler may start (in process always, injected only when asked). */
#include "adg_test.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "profiler/cupti_range_prof.h"
#include "profiler/cupti_tracer.h"

#ifndef ADG_FAKE_ACT_CUPTI

static void test_none(void **st)
{
    (void)st;
    ADG_SKIP("built without the CUPTI headers: no stand-in libcupti");
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_none)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

static struct {
    atomic_uint kernels, flag0, flag1, flush_recs, periodic;
} C;

static void count_emit(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len)
{
    (void)ctx;
    (void)fixed;
    if (type == CUPTI_REC_KERNEL) {
        atomic_fetch_add(&C.kernels, 1);
        if (name && name_len == 12 && !memcmp(name, "flush-flag-0", 12))
            atomic_fetch_add(&C.flag0, 1);
        if (name && name_len == 12 && !memcmp(name, "flush-flag-1", 12))
            atomic_fetch_add(&C.flag1, 1);
    } else if (type == CUPTI_REC_FLUSH)
        atomic_fetch_add(&C.flush_recs, 1);
}

static void count_flushed(void *ctx, cupti_flush_reason reason)
{
    (void)ctx;
    if (reason == CUPTI_FLUSH_PERIODIC)
        atomic_fetch_add(&C.periodic, 1);
}

static unsigned fake_flushes(void)
{
    void *h = dlopen(ADG_FAKE_ACT_CUPTI, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(h);
    atomic_uint *n = dlsym(h, "fake_act_flushes");
    assert_non_null(n);
    unsigned v = atomic_load(n);
    dlclose(h);
    return v;
}

static unsigned long long fake_kinds(size_t *buf_size)
{
    void *h = dlopen(ADG_FAKE_ACT_CUPTI, RTLD_NOW | RTLD_NOLOAD);
    assert_non_null(h);
    atomic_ullong *k = dlsym(h, "fake_act_kinds");
    atomic_size_t *b = dlsym(h, "fake_act_buf_size");
    assert_non_null(k);
    assert_non_null(b);
    unsigned long long v = atomic_load(k);
    if (buf_size)
        *buf_size = atomic_load(b);
    dlclose(h);
    return v;
}

static int setup(void **st)
{
    (void)st;
    memset(&C, 0, sizeof C);
    setenv("CUPTI_PATH", ADG_FAKE_ACT_CUPTI, 1);
    unsetenv("FAKE_ACT_TWICE");
    unsetenv("FAKE_ACT_FOREIGN");
    unsetenv("FAKE_ACT_PER_FLUSH");
    unsetenv("AMXDIAG_CUPTI_FLUSH_DURING");
    unsetenv("AMXDIAG_CUPTI_EXIT_FLUSH");
    unsetenv("AMXDIAG_GPU_METRICS_ACTIVITY");
    unsetenv("AMXDIAG_CUPTI_BUFFER_KB");
    unsetenv("FAKE_ACT_PERIOD_DELIVERS");
    unsetenv("AMXDIAG_GPU_METRICS_INJECTED");
    unsetenv("AMXDIAG_GPU_METRICS_EXPERIMENTAL");
    return 0;
}

static void start(bool during, unsigned period_ms)
{
    cupti_tracer_opts o = {.emit = count_emit, .flushed = count_flushed, .flush_period_ms = period_ms,
                           .flush_during = during};
    ADG_ASSERT_OK(cupti_tracer_start(&o));
}

/* Handed back twice: read once, freed once (ASan would see a second free or a read of the
 * freed buffer); the run goes on. */
static void test_buffer_back_twice(void **st)
{
    (void)st;
    setenv("FAKE_ACT_TWICE", "1", 1);
    setenv("FAKE_ACT_PER_FLUSH", "3", 1);
    start(false, 200);
    cupti_tracer_flush(CUPTI_FLUSH_PERIODIC);
    assert_int_equal(atomic_load(&C.kernels), 3);
    cupti_tracer_stop();
    assert_int_equal(atomic_load(&C.kernels), 6);
    assert_int_equal(atomic_load(&C.flag1), 6); /* both flushes forced */
    assert_false(cupti_tracer_running());
}

/* A buffer that is not ours: not read (its records would be someone else's), not freed. */
static void test_foreign_buffer(void **st)
{
    (void)st;
    setenv("FAKE_ACT_FOREIGN", "1", 1);
    start(false, 200);
    cupti_tracer_stop();
    assert_int_equal(atomic_load(&C.kernels), 1);
}

/* The flush thread: records arrive during the run (completed buffers only: flag 0), and
 * the sink is told each time; it is gone after stop. */
static void test_flush_during(void **st)
{
    (void)st;
    unsigned before = fake_flushes();
    start(true, 5);
    struct timespec d = {0, 2000000};
    for (int i = 0; i < 1000 && atomic_load(&C.flag0) < 3; i++)
        nanosleep(&d, NULL);
    assert_true(atomic_load(&C.flag0) >= 3);
    assert_true(atomic_load(&C.periodic) >= 3);
    cupti_tracer_stop();
    unsigned after = fake_flushes();
    nanosleep(&(struct timespec){0, 30000000}, NULL);
    assert_int_equal(fake_flushes(), after); /* the thread is gone */
    assert_true(after > before);
    assert_int_equal(atomic_load(&C.flag1), 1); /* the exit flush, forced */
}

/* AMXDIAG_CUPTI_FLUSH_DURING overrides the caller's choice. */
static void test_flush_during_env(void **st)
{
    (void)st;
    setenv("AMXDIAG_CUPTI_FLUSH_DURING", "0", 1);
    start(true, 5);
    nanosleep(&(struct timespec){0, 40000000}, NULL);
    assert_int_equal(atomic_load(&C.flag0), 0);
    cupti_tracer_stop();
    assert_int_equal(atomic_load(&C.kernels), 1);
}

static void test_exit_flush_variants(void **st)
{
    (void)st;
    setenv("AMXDIAG_CUPTI_EXIT_FLUSH", "normal", 1);
    start(false, 200);
    cupti_tracer_stop();
    assert_int_equal(atomic_load(&C.flag0), 1);
    assert_int_equal(atomic_load(&C.flag1), 0);

    memset(&C, 0, sizeof C);
    setenv("AMXDIAG_CUPTI_EXIT_FLUSH", "none", 1);
    start(false, 200);
    unsigned before = fake_flushes();
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), before);
    assert_int_equal(atomic_load(&C.kernels), 0);
    assert_int_equal(atomic_load(&C.flush_recs), 1); /* the sink still hears of the end */
}

/* No CUPTI call at all: the flush thread ends, a FLUSH record, the sink closed. */
static void test_quiesce(void **st)
{
    (void)st;
    start(true, 5);
    nanosleep(&(struct timespec){0, 30000000}, NULL);
    cupti_tracer_quiesce();
    unsigned at = fake_flushes();
    unsigned k = atomic_load(&C.kernels);
    assert_false(cupti_tracer_running());
    assert_int_equal(atomic_load(&C.flush_recs), 1);
    nanosleep(&(struct timespec){0, 30000000}, NULL);
    assert_int_equal(fake_flushes(), at);
    assert_int_equal(atomic_load(&C.kernels), k);
    cupti_tracer_stop(); /* a no-op now */
    assert_int_equal(fake_flushes(), at);
}

/* --gpu-metrics on, through the stand-in (it has no Range Profiler: the tracer notes that
 * and goes on, which is all these need). */
static void start_metrics_as(bool injected)
{
    cupti_tracer_opts o = {.emit = count_emit,
                           .flushed = count_flushed,
                           .flush_period_ms = 200,
                           .gpu_metrics = true,
                           .injected = injected};
    ADG_ASSERT_OK(cupti_tracer_start(&o));
}

static void start_metrics(void)
{
    start_metrics_as(false);
}

#define BIT(k) (1ull << (k))
#define DEFAULT_KINDS (BIT(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) | BIT(CUPTI_ACTIVITY_KIND_MEMCPY) | BIT(CUPTI_ACTIVITY_KIND_MEMSET))

/* AMXDIAG_GPU_METRICS_ACTIVITY: each variant's kinds, buffers and end. */
static void test_activity_variants(void **st)
{
    (void)st;
    size_t bs = 0;
    /* The defaults with --gpu-metrics: CONCURRENT_KERNEL in process, KERNEL in an injected
     * program (the one kind with which CUPTI 13.0.1's activity thread did not crash there). */
    unsetenv("AMXDIAG_GPU_METRICS_ACTIVITY");
    start_metrics_as(false);
    assert_int_equal(fake_kinds(NULL), DEFAULT_KINDS);
    cupti_tracer_stop();
    start_metrics_as(true);
    assert_int_equal(fake_kinds(NULL),
                     BIT(CUPTI_ACTIVITY_KIND_KERNEL) | BIT(CUPTI_ACTIVITY_KIND_MEMCPY) | BIT(CUPTI_ACTIVITY_KIND_MEMSET));
    cupti_tracer_stop();
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "concurrent", 1);
    start_metrics_as(true);
    assert_int_equal(fake_kinds(NULL), DEFAULT_KINDS);
    cupti_tracer_stop();
    /* Without --gpu-metrics the variable is ignored. */
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "none", 1);
    start(false, 200);
    assert_int_equal(fake_kinds(NULL), DEFAULT_KINDS);
    cupti_tracer_stop();
    assert_int_equal(fake_kinds(NULL), 0);

    /* kernel: KERNEL instead of CONCURRENT_KERNEL; the exit flush as usual. */
    memset(&C, 0, sizeof C);
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "kernel", 1);
    start_metrics();
    assert_int_equal(fake_kinds(NULL),
                     BIT(CUPTI_ACTIVITY_KIND_KERNEL) | BIT(CUPTI_ACTIVITY_KIND_MEMCPY) | BIT(CUPTI_ACTIVITY_KIND_MEMSET));
    unsigned f = fake_flushes();
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), f + 1);
    assert_int_equal(fake_kinds(NULL), 0);

    /* none: nothing enabled, nothing flushed, the sink still hears of the end. */
    memset(&C, 0, sizeof C);
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "none", 1);
    start_metrics();
    assert_int_equal(fake_kinds(NULL), 0);
    f = fake_flushes();
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), f);
    assert_int_equal(atomic_load(&C.flush_recs), 1);

    /* late: nothing before the profiler's setup (which never comes here), so no flush. */
    memset(&C, 0, sizeof C);
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "late", 1);
    start_metrics();
    assert_int_equal(fake_kinds(NULL), 0);
    f = fake_flushes();
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), f);

    /* period: the kinds on, buffers of 16 KiB (or AMXDIAG_CUPTI_BUFFER_KB), no flush of
     * ours at all, not even with the flush thread asked for. */
    memset(&C, 0, sizeof C);
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "period", 1);
    setenv("AMXDIAG_CUPTI_FLUSH_DURING", "1", 1);
    setenv("AMXDIAG_CUPTI_BUFFER_KB", "8", 1);
    start_metrics();
    assert_int_equal(fake_kinds(NULL), DEFAULT_KINDS);
    f = fake_flushes();
    nanosleep(&(struct timespec){0, 20000000}, NULL);
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), f);
    assert_int_equal(fake_kinds(NULL), 0);
    /* The records come from CUPTI's own delivery (the stand-in's FlushPeriod hands one
     * buffer back), in buffers of AMXDIAG_CUPTI_BUFFER_KB, else 16 KiB; a context's end or a
     * CUDA error makes no flush of ours either. */
    setenv("FAKE_ACT_PERIOD_DELIVERS", "1", 1);
    memset(&C, 0, sizeof C);
    start_metrics();
    fake_kinds(&bs);
    assert_int_equal(bs, 8u << 10);
    assert_int_equal(atomic_load(&C.flag0), 1);
    f = fake_flushes();
    cupti_tracer_flush(CUPTI_FLUSH_CTX_DESTROY);
    cupti_tracer_flush(CUPTI_FLUSH_CUDA_ERROR);
    cupti_tracer_stop();
    assert_int_equal(fake_flushes(), f);
    unsetenv("AMXDIAG_CUPTI_BUFFER_KB");
    start_metrics();
    fake_kinds(&bs);
    assert_int_equal(bs, 16u << 10);
    cupti_tracer_stop();
    unsetenv("FAKE_ACT_PERIOD_DELIVERS");

    /* Unknown: the default. */
    setenv("AMXDIAG_GPU_METRICS_ACTIVITY", "bogus", 1);
    unsetenv("AMXDIAG_CUPTI_FLUSH_DURING");
    start_metrics();
    assert_int_equal(fake_kinds(NULL), DEFAULT_KINDS);
    cupti_tracer_flush(CUPTI_FLUSH_PERIODIC);
    fake_kinds(&bs);
    assert_int_equal(bs, 1u << 20);
    cupti_tracer_stop();
}

/* The Range Profiler may start in process and, unless AMXDIAG_GPU_METRICS_INJECTED=0, in an
 * injected program; the reason for the refusal names the switch and the ways around. */
static void test_metrics_gate(void **st)
{
    (void)st;
    assert_true(cupti_range_prof_enabled(false));
    assert_true(cupti_range_prof_enabled(true));
    setenv("AMXDIAG_GPU_METRICS_INJECTED", "0", 1);
    assert_false(cupti_range_prof_enabled(true));
    assert_true(cupti_range_prof_enabled(false));
    setenv("AMXDIAG_GPU_METRICS_INJECTED", "1", 1);
    assert_true(cupti_range_prof_enabled(true));
    unsetenv("AMXDIAG_GPU_METRICS_INJECTED");
    assert_non_null(strstr(cupti_range_prof_off_reason, "AMXDIAG_GPU_METRICS_INJECTED=0"));
    assert_non_null(strstr(cupti_range_prof_off_reason, "CUPTI 13.0.1"));
    assert_non_null(strstr(cupti_range_prof_off_reason, "ncu"));
    assert_non_null(strstr(cupti_range_prof_off_reason, "--ngl"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_activity_variants, setup),
        cmocka_unit_test_setup(test_metrics_gate, setup),
        cmocka_unit_test_setup(test_buffer_back_twice, setup),
        cmocka_unit_test_setup(test_foreign_buffer, setup),
        cmocka_unit_test_setup(test_flush_during, setup),
        cmocka_unit_test_setup(test_flush_during_env, setup),
        cmocka_unit_test_setup(test_exit_flush_variants, setup),
        cmocka_unit_test_setup(test_quiesce, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif

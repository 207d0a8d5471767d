/* The tracer's activity buffers (profiler/cupti_tracer.c) against a stand-in libcupti
 * (tests/fixtures/cupti/fake_act_cupti.c): a buffer handed back twice or not ours is
 * neither read nor freed (an injected program died at exit with "double free" inside
 * cuptiActivityFlushAll on an H200), the flushes during the run deliver records before the
 * end, and the exit-flush variants (AMXDIAG_CUPTI_EXIT_FLUSH, cupti_tracer_quiesce). */
#include "adg_test.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
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

/* Live snapshots on the bus (adg_bus_snapshot_put/get): what the sampler's hot-function
 * list rides on while a run goes on, read by the TUI. */
#include "adg_test.h"

#include <jansson.h>
#include <pthread.h>

#include "common/adg_metrics.h"

static void test_snapshot_versions(void **st)
{
    (void)st;
    adg_bus *b = adg_bus_new();
    assert_non_null(b);
    uint64_t v = 0;
    assert_null(adg_bus_snapshot_get(b, "hot_functions", &v)); /* nothing yet */
    assert_int_equal(v, 0);

    adg_bus_snapshot_put(b, "hot_functions", json_pack("[{s:s,s:i}]", "function", "f", "samples", 3));
    json_t *h = adg_bus_snapshot_get(b, "hot_functions", &v);
    assert_non_null(h);
    assert_true(v != 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "function")), "f");
    /* a copy: changing it does not change the bus's */
    json_array_clear(h);
    json_decref(h);
    uint64_t seen = v;
    assert_null(adg_bus_snapshot_get(b, "hot_functions", &v)); /* unchanged since */
    assert_int_equal(v, seen);
    uint64_t fresh = 0;                                         /* another reader */
    h = adg_bus_snapshot_get(b, "hot_functions", &fresh);
    assert_int_equal(json_array_size(h), 1);
    json_decref(h);

    /* replaced: the reader gets the new one once */
    adg_bus_snapshot_put(b, "hot_functions", json_array());
    h = adg_bus_snapshot_get(b, "hot_functions", &v);
    assert_non_null(h);
    assert_int_equal(json_array_size(h), 0);
    assert_true(v > seen);
    json_decref(h);
    assert_null(adg_bus_snapshot_get(b, "hot_functions", &v));

    /* names are independent; a NULL value is ignored */
    adg_bus_snapshot_put(b, "other", json_integer(5));
    adg_bus_snapshot_put(b, "other", NULL);
    uint64_t ov = 0;
    h = adg_bus_snapshot_get(b, "other", &ov);
    assert_int_equal(json_integer_value(h), 5);
    json_decref(h);
    assert_null(adg_bus_snapshot_get(b, "hot_functions", &v));
    /* not part of the record's views */
    json_t *ev = adg_bus_events_json(b);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    adg_bus_free(b);
}

/* A writer thread replacing the snapshot while a reader polls: every copy the reader gets
 * is whole (ASan/TSan-friendly: the bus lock covers both sides). */
typedef struct writer {
    adg_bus *b;
    int n;
} writer;

static void *write_main(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->n; i++) {
        json_t *a = json_array();
        for (int k = 0; k < 30; k++)
            json_array_append_new(a, json_pack("{s:i,s:i}", "round", i, "k", k));
        adg_bus_snapshot_put(w->b, "hot_functions", a);
    }
    return NULL;
}

static void test_snapshot_threads(void **st)
{
    (void)st;
    adg_bus *b = adg_bus_new();
    writer w = {b, 2000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_main, &w), 0);
    uint64_t v = 0;
    int got = 0;
    for (int i = 0; i < 2000; i++) {
        json_t *h = adg_bus_snapshot_get(b, "hot_functions", &v);
        if (!h)
            continue;
        got++;
        assert_int_equal(json_array_size(h), 30);
        json_int_t round = json_integer_value(json_object_get(json_array_get(h, 0), "round"));
        assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 29), "round")), round);
        json_decref(h);
    }
    pthread_join(th, NULL);
    json_t *h = adg_bus_snapshot_get(b, "hot_functions", &v);
    if (h) {
        got++;
        assert_int_equal(json_integer_value(json_object_get(json_array_get(h, 0), "round")), w.n - 1);
        json_decref(h);
    }
    assert_true(got >= 1);
    adg_bus_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_versions),
        cmocka_unit_test(test_snapshot_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

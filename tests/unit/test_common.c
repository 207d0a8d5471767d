/* common/: errors, string buffers, atomic writes, metrics bus, run records. */
#include "adg_test.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_error.h"
#include "common/adg_json.h"
#include "common/adg_metrics.h"
#include "common/adg_record.h"
#include "common/adg_util.h"

static void test_error_message_hint_prefix(void **state)
{
    (void)state;
    adg_error *e = adg_error_errno(ADG_E_IO, ENOENT, "cannot open %s", "x.gguf");
    assert_string_equal(adg_error_msg(e), "cannot open x.gguf: No such file or directory");
    assert_null(adg_error_remedy(e));
    adg_error_hint(e, "pass an existing %s", "file");
    adg_error_prefix(e, "model");
    assert_string_equal(adg_error_msg(e), "model: cannot open x.gguf: No such file or directory");
    assert_string_equal(adg_error_remedy(e), "pass an existing file");
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    assert_int_equal(adg_error_errnum(e), ENOENT);
    adg_error_free(e);
}

static void test_strbuf_and_parsers(void **state)
{
    (void)state;
    adg_strbuf sb;
    adg_sb_init(&sb);
    for (int i = 0; i < 1000; i++)
        adg_sb_printf(&sb, "%d,", i);
    assert_false(sb.failed);
    assert_int_equal(strncmp(sb.buf, "0,1,2,", 6), 0);
    char *s = adg_sb_take(&sb);
    assert_int_equal(strlen(s), 3890);
    free(s);

    uint64_t u;
    int64_t i;
    double d;
    assert_true(adg_parse_u64("4096", &u) && u == 4096);
    assert_true(adg_parse_u64("0x10", &u) && u == 16);
    assert_false(adg_parse_u64("-1", &u));
    assert_false(adg_parse_u64("12abc", &u));
    assert_false(adg_parse_u64("", &u));
    assert_false(adg_parse_u64("99999999999999999999999", &u));
    assert_true(adg_parse_i64("-5", &i) && i == -5);
    assert_true(adg_parse_double("12.5", &d) && d == 12.5);
    assert_false(adg_parse_double("nan", &d));

    char buf[32];
    assert_string_equal(adg_fmt_bytes(486.0 * 1024 * 1024, buf, sizeof buf), "486.00 MiB");
    assert_string_equal(adg_fmt_bytes(512, buf, sizeof buf), "512 B");
}

static void test_grow(void **state)
{
    (void)state;
    int *a = NULL;
    size_t cap = 0, n = 0;
    for (int i = 0; i < 100; i++) {
        assert_true(adg_grow(&a, &cap, n, sizeof *a, 4));
        a[n++] = i;
    }
    assert_int_equal(cap, 128); /* 4, 8, ..., 128 */
    for (int i = 0; i < 100; i++)
        assert_int_equal(a[i], i);
    assert_true(adg_grow(&a, &cap, 50, sizeof *a, 4)); /* room already: nothing moves */
    assert_int_equal(cap, 128);
    free(a);
}

static void test_atomic_write_replaces_and_refuses_bad_dir(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    ADG_ASSERT_OK(adg_write_file_atomic(path, "first", 5));
    ADG_ASSERT_OK(adg_write_file_atomic(path, "second!", 7));
    char *data;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(path, 0, &data, &len));
    assert_int_equal(len, 7);
    assert_string_equal(data, "second!");
    free(data);

    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/out.txt", dir);
    adg_error *e = adg_write_file_atomic(bad, "x", 1);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "cannot create"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    assert_int_not_equal(access(bad, F_OK), 0);

    /* No temporary file is left behind. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    adg_test_rmtree(dir);
}

static void test_bus_register_sample_series(void **state)
{
    (void)state;
    adg_bus *b = adg_bus_new();
    int id, id2, id3;
    adg_metric_def d = {"cpu.util", "%", ADG_SCOPE_CPU, "CPU utilisation"};
    ADG_ASSERT_OK(adg_bus_register(b, "numa", &d, &id));
    ADG_ASSERT_OK(adg_bus_register(b, "numa", &d, &id2));
    assert_int_equal(id, id2);
    adg_metric_def clash = {"cpu.util", "B/s", ADG_SCOPE_CPU, "x"};
    adg_error *e = adg_bus_register(b, "other", &clash, &id3);
    assert_non_null(e);
    adg_error_free(e);
    assert_int_equal(adg_bus_find(b, "cpu.util"), id);
    assert_int_equal(adg_bus_find(b, "nope"), -1);

    adg_bus_sample(b, id, "cpu0", 100, 50.0);
    adg_bus_sample(b, id, "cpu0", 200, 75.0);
    adg_bus_sample(b, id, "cpu1", 200, 10.0);
    adg_bus_sample(b, 99, "cpu1", 200, 10.0); /* unknown id: ignored */
    adg_point p;
    assert_true(adg_bus_latest(b, id, "cpu0", &p));
    assert_int_equal(p.t_ns, 200);
    assert_true(p.value == 75.0);
    assert_false(adg_bus_latest(b, id, NULL, &p));
    adg_point *pts;
    assert_int_equal(adg_bus_series_copy(b, id, "cpu0", &pts), 2);
    free(pts);
    char **names;
    size_t n = adg_bus_instances(b, id, &names);
    assert_int_equal(n, 2);
    adg_bus_free_names(names, n);
    adg_bus_free(b);
}

static int heard;
static void listener(void *ctx, int metric, const char *instance, adg_point p)
{
    (void)ctx;
    (void)metric;
    (void)instance;
    heard += (int)p.value;
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    adg_bus *b = adg_bus_new();
    adg_bus_listen(b, listener, NULL);
    int id;
    adg_metric_def d = {"mem.read_bw", "B/s", ADG_SCOPE_NUMA_NODE, "DRAM read bandwidth"};
    ADG_ASSERT_OK(adg_bus_register(b, "pmu", &d, &id));
    adg_bus_sample(b, id, "node0", 10, 1e9);
    adg_bus_sample(b, id, "node0", 20, 2.0);
    assert_int_equal(heard, 1000000002);
    adg_bus_unavailable(b, "pmu", "amx.busy", "no hardware PMU in this VM");
    adg_bus_event(b, 15, "phase", "prompt", json_pack("{s:i}", "tokens", 512));

    adg_record *r = adg_record_new();
    ADG_ASSERT_OK(adg_record_set_section(r, "config", json_pack("{s:s}", "kernels", "amx")));
    adg_error *e = adg_record_set_section(r, "metrics", json_object());
    assert_non_null(e);
    adg_error_free(e);
    adg_record_set_status(r, "interrupted");

    char *dir = adg_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/run.json", dir);
    ADG_ASSERT_OK(adg_record_write(r, b, path));
    adg_record_free(r);
    adg_bus_free(b);

    json_t *rec;
    ADG_ASSERT_OK(adg_record_load(path, &rec));
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "interrupted");
    adg_bus *b2;
    ADG_ASSERT_OK(adg_bus_from_record(rec, &b2));
    int id2 = adg_bus_find(b2, "mem.read_bw");
    assert_true(id2 >= 0);
    adg_point p;
    assert_true(adg_bus_latest(b2, id2, "node0", &p));
    assert_true(p.value == 2.0);
    json_t *un = adg_bus_unavailable_json(b2);
    assert_int_equal(json_array_size(un), 1);
    json_decref(un);
    adg_bus_free(b2);
    json_decref(rec);
    adg_test_rmtree(dir);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_record_load_rejects_bad_input(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.json", dir);
    json_t *rec;
    adg_error *e;

    write_text(path, "{\"schema\": \"amxdiag.run/1\", \"metrics\": [");
    e = adg_record_load(path, &rec);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_non_null(strstr(adg_error_msg(e), "line 1"));
    adg_error_free(e);

    write_text(path, "{\"schema\": \"amxdiag.probe/1\"}");
    e = adg_record_load(path, &rec);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "expected \"amxdiag.run/1\""));
    adg_error_free(e);

    write_text(path, "{\"schema\": \"amxdiag.run/7\"}");
    e = adg_record_load(path, &rec);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_UNSUPPORTED);
    adg_error_free(e);

    write_text(path, "{\"schema\": \"amxdiag.run/1\", \"metrics\": [], \"series\": {}, \"events\": [], \"unavailable\": []}");
    e = adg_record_load(path, &rec);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "\"series\""));
    adg_error_free(e);

    /* Structurally valid but inconsistent: a series naming an unknown metric. */
    write_text(path, "{\"schema\": \"amxdiag.run/1\", \"metrics\": [], \"series\": [{\"metric\": \"x\", \"t_ns\": [1], "
                     "\"value\": [2]}], \"events\": [], \"unavailable\": []}");
    ADG_ASSERT_OK(adg_record_load(path, &rec));
    adg_bus *b;
    e = adg_bus_from_record(rec, &b);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "series[0]"));
    adg_error_free(e);
    json_decref(rec);

    e = adg_record_load("/nonexistent/run.json", &rec);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
    adg_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_message_hint_prefix),
        cmocka_unit_test(test_strbuf_and_parsers),
        cmocka_unit_test(test_grow), cmocka_unit_test(test_atomic_write_replaces_and_refuses_bad_dir),
        cmocka_unit_test(test_bus_register_sample_series),
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_load_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

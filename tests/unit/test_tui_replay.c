/* Replay: timing, samples and events published at their recorded times, bad records
 * refused with FORMAT errors; and the panels rendered from a replayed bus show the
 * record's values (or the unavailable reasons), with snapshots that carry them. */
#include "adg_test.h"

#include <locale.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include "common/adg_json.h"
#include "common/adg_util.h"
#include "tui/tui_internal.h"

static char *fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("FIXTURES");
    snprintf(path, sizeof path, "%s/records/%s", dir ? dir : "tests/fixtures", name);
    return path;
}

static void test_step(void **state)
{
    (void)state;
    const uint64_t S = 1000000000ull;
    assert_int_equal(tui_replay_step(0, 30 * S, S, 1.0), S);
    assert_int_equal(tui_replay_step(0, 30 * S, S, 2.0), 2 * S);
    assert_int_equal(tui_replay_step(S, 30 * S, S / 4, 0.5), S + S / 8);
    assert_int_equal(tui_replay_step(29 * S, 30 * S, 5 * S, 1.0), 30 * S); /* capped */
    assert_int_equal(tui_replay_step(30 * S, 30 * S, S, 1.0), 30 * S);
    assert_int_equal(tui_replay_step(3 * S, 30 * S, S, 0.0), 3 * S);       /* no speed: no move */
    /* 120 frames of 250 ms at x1 reach exactly 30 s. */
    uint64_t c = 0;
    for (int i = 0; i < 120; i++)
        c = tui_replay_step(c, 30 * S, S / 4, 1.0);
    assert_int_equal(c, 30 * S);
}

static void test_publishes_in_time(void **state)
{
    (void)state;
    adg_bus *view = adg_bus_new();
    tui_replay *r;
    ADG_ASSERT_OK(tui_replay_open(fixture("top_basic.json"), 2.0, view, &r));
    assert_int_equal(tui_replay_end(r), 30000000000ull);
    /* The registry and the unavailable list are there at once, samples are not. */
    int amx = adg_bus_find(view, "isa.share.amx");
    assert_true(amx >= 0);
    adg_point p;
    assert_false(adg_bus_latest(view, amx, NULL, &p));
    json_t *un = adg_bus_unavailable_json(view);
    assert_int_equal(json_array_size(un), 2);
    json_decref(un);
    /* 1 s of wall time at x2 = 2 s of record: samples up to 2 s, none after. */
    assert_int_equal(tui_replay_advance(r, 1000000000ull), 2000000000ull);
    assert_true(adg_bus_latest(view, amx, NULL, &p));
    assert_int_equal(p.t_ns, 2000000000ull);
    int tps = adg_bus_find(view, "workload.tokens_per_s");
    assert_false(adg_bus_latest(view, tps, "pp512", &p)); /* recorded at 10 s */
    size_t next;
    json_t *evs = adg_bus_events_since(view, 0, &next);
    assert_int_equal(json_array_size(evs), 2); /* start (0 s), prompt begin (1 s) */
    json_decref(evs);
    tui_replay_set_speed(r, 8.0);
    while (!tui_replay_done(r))
        tui_replay_advance(r, 250000000ull);
    assert_true(adg_bus_latest(view, amx, NULL, &p));
    assert_float_equal(p.value, 62.5, 1e-9);
    assert_true(adg_bus_latest(view, tps, "tg64", &p));
    assert_float_equal(p.value, 95.2, 1e-9);
    adg_point *pts;
    assert_int_equal(adg_bus_series_copy(view, amx, NULL, &pts), 151);
    free(pts);
    tui_replay_free(r);
    adg_bus_free(view);
}

static void expect_bad(const char *name, adg_errkind kind, const char *needle)
{
    adg_bus *view = adg_bus_new();
    tui_replay *r = NULL;
    adg_error *e = tui_replay_open(fixture(name), 1.0, view, &r);
    assert_non_null(e);
    assert_null(r);
    assert_int_equal(adg_error_kind(e), kind);
    if (!strstr(adg_error_msg(e), needle))
        fail_msg("'%s' not in '%s'", needle, adg_error_msg(e));
    adg_error_free(e);
    adg_bus_free(view);
}

static void test_bad_records(void **state)
{
    (void)state;
    expect_bad("top_corrupt.json", ADG_E_FORMAT, "top_corrupt.json");
    expect_bad("top_badseries.json", ADG_E_FORMAT, "series[0]");
    expect_bad("does-not-exist.json", ADG_E_IO, "does-not-exist.json");
    adg_bus *view = adg_bus_new();
    tui_replay *r = NULL;
    adg_error *e = tui_replay_open(fixture("top_basic.json"), 0.0, view, &r);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
    adg_bus_free(view);
}

/* Plays a fixture to its end and renders it into a w x h canvas. */
static void render_fixture(const char *name, tui_app *a, tui_canvas *c, int w, int h)
{
    tui_app_init(a);
    a->bus = adg_bus_new();
    ADG_ASSERT_OK(tui_replay_open(fixture(name), 1.0, a->bus, &a->replay));
    json_t *rec = tui_replay_record(a->replay);
    a->machine = json_incref(json_object_get(rec, "machine"));
    a->hot = json_incref(json_object_get(rec, "hot_functions"));
    a->gpus = json_incref(json_object_get(json_object_get(rec, "nvml"), "devices"));
    snprintf(a->source, sizeof a->source, "replay %s", name);
    a->t_ns = tui_replay_advance(a->replay, 3600000000000ull);
    ADG_ASSERT_OK(tui_canvas_init(c, w, h, true));
    tui_render(a, c);
}

static void done_fixture(tui_app *a, tui_canvas *c)
{
    tui_replay_free(a->replay);
    a->replay = NULL;
    tui_app_free(a);
    adg_bus_free(a->bus);
    tui_canvas_free(c);
}

static void expect_text(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("screen lacks '%s':\n%s", needle, text);
}

static double snap_value(json_t *snap, const char *metric, const char *instance)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(snap, "values"), i, v) {
        const char *m = json_string_value(json_object_get(v, "metric"));
        const char *in = json_string_value(json_object_get(v, "instance"));
        if (!strcmp(m, metric) && ((!instance && !in) || (instance && in && !strcmp(in, instance))))
            return json_number_value(json_object_get(v, "value"));
    }
    return NAN;
}

static void test_render_values_match_record(void **state)
{
    (void)state;
    tui_app a;
    tui_canvas c = {0};
    render_fixture("top_basic.json", &a, &c, 80, 24);
    char *text = tui_canvas_text(&c);
    expect_text(text, "CPU");
    expect_text(text, "Memory");
    expect_text(text, "GPU");
    expect_text(text, "History");
    expect_text(text, "Hot functions");
    expect_text(text, "AMX 62%");
    expect_text(text, "AVX-512 30%");
    expect_text(text, "AMX: tile+int8+bf16");
    expect_text(text, "95.2 t/s (tg64)");
    expect_text(text, "phase generation");
    expect_text(text, "R 45.6 GB/s W 12.3 GB/s");
    expect_text(text, "3.00 GiB");
    expect_text(text, " 87%");
    expect_text(text, "ggml_backend_amx_mul_mat");
    expect_text(text, "AMX busy (PMU) n/a - pmu: no hardware");
    free(text);
    json_t *snap = tui_snapshot_json(&a, &c);
    assert_string_equal(json_string_value(json_object_get(snap, "schema")), TUI_SNAPSHOT_SCHEMA);
    assert_float_equal(snap_value(snap, "isa.share.amx", NULL), 62.5, 1e-9);
    assert_float_equal(snap_value(snap, "mem.read_bw", "socket0"), 45.6e9, 1);
    assert_float_equal(snap_value(snap, "numa.resident", "node1"), 1073741824.0, 1);
    assert_float_equal(snap_value(snap, "gpu.busy", "gpu0"), 87.0, 1e-9);
    assert_float_equal(snap_value(snap, "cpu.util", "cpu15"), 95.0, 1e-9);
    assert_float_equal(snap_value(snap, "workload.tokens_per_s", "tg64"), 95.2, 1e-9);
    assert_int_equal(json_array_size(json_object_get(snap, "screen")), 24);
    json_decref(snap);
    done_fixture(&a, &c);

    /* A large screen shows every core on its own line and every kernel. */
    render_fixture("top_basic.json", &a, &c, 200, 60);
    text = tui_canvas_text(&c);
    expect_text(text, "cpu15");
    expect_text(text, "rope_neox_f32");
    expect_text(text, "Intel(R) Xeon(R) Platinum 8592+ (fixture)");
    expect_text(text, "[unknown]");
    /* Events: the CUDA error (the GPU collector reports them as events) and the NUMA warning. */
    expect_text(text, "errors 1, last cuMemcpyDtoH_v2");
    expect_text(text, "! 4 threads ran on node1, 75% of the memory is on node0");
    free(text);
    done_fixture(&a, &c);
}

static void test_render_reasons_instead_of_blanks(void **state)
{
    (void)state;
    tui_app a;
    tui_canvas c = {0};
    render_fixture("top_minimal.json", &a, &c, 120, 30);
    char *text = tui_canvas_text(&c);
    expect_text(text, "ISA share n/a - sampler: perf_event_paranoid is 3");
    expect_text(text, "AMX busy (PMU) n/a - pmu: no hardware PMU in this VM");
    expect_text(text, "DRAM bandwidth: n/a - uncore: no uncore_imc PMU");
    expect_text(text, "resident per node: n/a - numa: /proc/PID/numa_maps");
    expect_text(text, "GPU: n/a - not measured: no collector");
    expect_text(text, "busy: n/a - not measured: no collector");
    expect_text(text, "no hot_functions section");
    expect_text(text, "no measured ceiling");
    free(text);
    done_fixture(&a, &c);
}

static void test_keys_state_in_render(void **state)
{
    (void)state;
    tui_app a;
    tui_canvas c = {0};
    render_fixture("top_basic.json", &a, &c, 100, 30);
    /* Sorting the hot table by function name (column 3): alphabetical order. */
    a.focus = TUI_P_HOT;
    a.sort[TUI_P_HOT] = 3;
    tui_render(&a, &c);
    char *text = tui_canvas_text(&c);
    char *first = strstr(text, "[unknown]"), *second = strstr(text, "ggml_backend_amx_mul_mat");
    assert_non_null(first);
    assert_non_null(second);
    assert_true(first < second);
    free(text);
    /* Help lists the registry with meanings. */
    a.help = true;
    tui_render(&a, &c);
    text = tui_canvas_text(&c);
    expect_text(text, "Help");
    expect_text(text, "isa.share.amx");
    free(text);
    /* Too small a screen says so instead of drawing garbage. */
    ADG_ASSERT_OK(tui_canvas_init(&c, 40, 10, true));
    tui_render(&a, &c);
    text = tui_canvas_text(&c);
    expect_text(text, "terminal too small: 40x10");
    free(text);
    done_fixture(&a, &c);
}

static void test_snapshot_files(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    tui_app a;
    tui_canvas c = {0};
    render_fixture("top_basic.json", &a, &c, 80, 24);
    char *md = NULL, *md2 = NULL;
    ADG_ASSERT_OK(tui_snapshot_write(&a, &c, dir, &md));
    ADG_ASSERT_OK(tui_snapshot_write(&a, &c, dir, &md2));
    assert_string_not_equal(md, md2); /* never overwrites */
    char js[4200];
    snprintf(js, sizeof js, "%.*s.json", (int)(strlen(md) - 3), md);
    json_t *snap;
    ADG_ASSERT_OK(adg_json_load_file(js, "snapshot", &snap));
    ADG_ASSERT_OK(adg_json_check_schema(snap, "amxdiag.top-snapshot", 1, "snapshot"));
    json_decref(snap);
    char *data;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(md, 0, &data, &len));
    assert_non_null(strstr(data, "# amxdiag top snapshot"));
    assert_non_null(strstr(data, "| cpu | isa.share.amx | - | 62.5 | % |"));
    free(data);
    /* An unwritable directory is an error with a hint, not a crash. */
    char *bad = NULL;
    adg_error *e = tui_snapshot_write(&a, &c, "/nonexistent-dir-for-amxdiag", &bad);
    assert_non_null(e);
    assert_null(bad);
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    free(md);
    free(md2);
    done_fixture(&a, &c);
    adg_test_rmtree(dir);
}

/* Hostile but valid content: extreme and negative values, wide characters and control
 * characters in names, a metric with thousands of instances.  Every row of the screen
 * must stay exactly one canvas wide, whatever the data. */
static void test_render_hostile_values(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/hostile.json", dir);
    json_t *metrics = json_array(), *series = json_array();
    static const char *const names[][3] = {
        {"isa.share.amx", "%", "process"},   {"isa.share.avx512", "%", "process"}, {"mem.read_bw", "B/s", "socket"},
        {"numa.resident", "B", "numa_node"}, {"gpu.busy", "%", "gpu"},             {"gpu.kernel_time", "s", "kernel"},
        {"cpu.util", "%", "cpu"},            {"workload.cpu", "%", "process"},
    };
    static const double vals[] = {1e308, -5.0, 0.0, 1e-300, 250.0};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_array_append_new(metrics, json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", names[i][0], "unit", names[i][1],
                                                 "scope", names[i][2], "meaning", "m", "collector", "c"));
        for (size_t k = 0; k < 5; k++) {
            char inst[64];
            if (!strcmp(names[i][2], "kernel"))
                snprintf(inst, sizeof inst, "\xe6\xbc\xa2\xe5\xad\x97_kernel\t%zu\x1b[31m", k); /* CJK, tab, escape */
            else
                snprintf(inst, sizeof inst, "inst%zu", k);
            json_array_append_new(series, json_pack("{s:s,s:s,s:[I,I],s:[f,f]}", "metric", names[i][0], "instance",
                                                    inst, "t_ns", (json_int_t)0, (json_int_t)1000000000, "value",
                                                    vals[k], vals[(k + 1) % 5]));
        }
    }
    for (int cpu = 0; cpu < 2000; cpu++) {
        char inst[16];
        snprintf(inst, sizeof inst, "cpu%d", cpu);
        json_array_append_new(series, json_pack("{s:s,s:s,s:[I],s:[f]}", "metric", "cpu.util", "instance", inst, "t_ns",
                                                (json_int_t)0, "value", (double)(cpu % 101)));
    }
    json_t *rec = json_pack("{s:s,s:o,s:o,s:[],s:[{s:s,s:s,s:s}],s:[{s:s,s:s,s:s,s:f,s:f}]}", "schema",
                            "amxdiag.run/1", "metrics", metrics, "series", series, "events", "unavailable",
                            "collector", "x", "what", "y", "reason", "\xe2\x80\x8b zero-width and \x07 bell",
                            "hot_functions", "function", "\xf0\x9f\x94\xa5\xe6\xbc\xa2", "module", "/x/\xe2\x80\xae",
                            "class", "amx", "share", 1e308, "samples", -1.0);
    assert_non_null(rec);
    ADG_ASSERT_OK(adg_json_write_atomic(path, rec));
    json_decref(rec);

    static const int sizes[][2] = {{80, 24}, {200, 60}, {60, 18}};
    for (size_t z = 0; z < 3; z++) {
        tui_app a;
        tui_canvas c = {0};
        tui_app_init(&a);
        a.bus = adg_bus_new();
        ADG_ASSERT_OK(tui_replay_open(path, 1.0, a.bus, &a.replay));
        a.hot = json_incref(json_object_get(tui_replay_record(a.replay), "hot_functions"));
        a.t_ns = tui_replay_advance(a.replay, 5000000000ull);
        ADG_ASSERT_OK(tui_canvas_init(&c, sizes[z][0], sizes[z][1], true));
        tui_render(&a, &c);
        /* A hostile CPU -> node map: 400 nodes, negative, text, huge and null entries. */
        json_t *map = json_array();
        for (int cpu = 0; cpu < 2000; cpu++)
            json_array_append_new(map, cpu % 5 == 0   ? json_integer(cpu)
                                       : cpu % 5 == 1 ? json_integer(-3)
                                       : cpu % 5 == 2 ? json_string("x")
                                       : cpu % 5 == 3 ? json_integer(1000000000)
                                                      : json_null());
        a.machine = json_pack("{s:o}", "cpu_node", map);
        tui_render(&a, &c);
        char *t = tui_canvas_text(&c);
        assert_true(strstr(t, "node0 ") != NULL || c.h < 20);
        free(t);
        a.help = true;
        tui_render(&a, &c);
        for (int i = 0; i < c.w * c.h; i++) {
            uint32_t ch = c.cells[i].ch;
            assert_true(ch >= 0x20 && ch != 0x7f);
            assert_true(ch < 0x80 || wcwidth((wchar_t)ch) == 1);
        }
        json_t *snap = tui_snapshot_json(&a, &c);
        assert_non_null(snap);
        json_decref(snap);
        done_fixture(&a, &c);
    }
    adg_test_rmtree(dir);
}


/* The row of the canvas that starts (inside the CPU frame) with `prefix`, or -1. */
static int row_of(const tui_canvas *c, const char *needle)
{
    char buf[2048];
    for (int y = 0; y < c->h; y++) {
        tui_canvas_row(c, y, buf, sizeof buf);
        if (strstr(buf, needle))
            return y;
    }
    return -1;
}

/* CPU bars by the record's NUMA map: interleaved CPUs sit under their own node, the node
 * header carries the node's mean; a record without the map keeps number order. */
static void test_render_numa_groups(void **state)
{
    (void)state;
    tui_app a;
    tui_canvas c = {0};
    render_fixture("top_numa.json", &a, &c, 100, 30);
    char *text = tui_canvas_text(&c);
    expect_text(text, "75% 4 CPUs");
    expect_text(text, "25% 4 CPUs");
    free(text);
    int n0 = row_of(&c, "node0 "), n1 = row_of(&c, "node1 ");
    assert_true(n0 > 0 && n1 > n0);
    /* Even CPUs between the headers, odd ones after node1's. */
    const char *even[] = {"cpu0 ", "cpu2 ", "cpu4 ", "cpu6 "}, *odd[] = {"cpu1 ", "cpu3 ", "cpu5 ", "cpu7 "};
    for (int i = 0; i < 4; i++) {
        int ye = row_of(&c, even[i]), yo = row_of(&c, odd[i]);
        assert_true(ye > n0 && ye < n1);
        assert_true(yo > n1);
    }
    /* Every CPU's value is in the snapshot, the node means are not invented metrics. */
    json_t *snap = tui_snapshot_json(&a, &c);
    assert_float_equal(snap_value(snap, "cpu.util", "cpu0"), 90.0, 1e-9);
    assert_float_equal(snap_value(snap, "cpu.util", "cpu7"), 40.0, 1e-9);
    assert_true(isnan(snap_value(snap, "cpu.util", "node0")));
    /* The GPU panel from NVML alone, with the device's name on the header. */
    assert_float_equal(snap_value(snap, "gpu.util", "gpu0"), 64.0, 1e-9);
    assert_float_equal(snap_value(snap, "gpu.workload_mem", "gpu0"), 18.0 * 1073741824.0, 1);
    assert_float_equal(snap_value(snap, "gpu.power", "gpu0"), 412.0, 1e-9);
    json_decref(snap);
    text = tui_canvas_text(&c);
    expect_text(text, "GPU: 1x NVIDIA H100 80GB HBM3");
    expect_text(text, "64% 20.00 GiB/80.00 GiB");
    expect_text(text, "workload 18.00 GiB 58C 412W 1980MHz");
    expect_text(text, "PCIe rx 2.5 GB/s tx 500.0 MB/s");
    free(text);
    done_fixture(&a, &c);

    /* 96 CPUs on 4 nodes at 80x24: node lines only, each with its mean. */
    render_fixture("top_numa_big.json", &a, &c, 80, 24);
    text = tui_canvas_text(&c);
    for (int k = 0; k < 4; k++) {
        char want[32];
        snprintf(want, sizeof want, "node%d ", k);
        int y = row_of(&c, want);
        assert_true(y > 0);
        char buf[1024];
        tui_canvas_row(&c, y, buf, sizeof buf);
        snprintf(want, sizeof want, "%d%%", 20 + 20 * k);
        if (!strstr(buf, want))
            fail_msg("node%d line lacks %s: %s", k, want, buf);
    }
    assert_int_equal(row_of(&c, "cpu95"), -1);
    free(text);
    done_fixture(&a, &c);
    /* ... and at 200x60 the nodes' CPUs in groups under each header. */
    render_fixture("top_numa_big.json", &a, &c, 200, 60);
    assert_true(row_of(&c, "cpu0..") > row_of(&c, "node0 "));
    assert_true(row_of(&c, "cpu1..") > row_of(&c, "node1 "));
    done_fixture(&a, &c);

    /* No map: number order, consecutive groups, no node headers. */
    render_fixture("top_basic.json", &a, &c, 80, 24);
    assert_int_equal(row_of(&c, "CPUs "), -1);
    assert_true(row_of(&c, "cpu0-") > 0 || row_of(&c, "cpu0 ") > 0);
    done_fixture(&a, &c);
}

int main(void)
{
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_publishes_in_time),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_render_values_match_record),
        cmocka_unit_test(test_render_reasons_instead_of_blanks),
        cmocka_unit_test(test_keys_state_in_render),
        cmocka_unit_test(test_snapshot_files),
        cmocka_unit_test(test_render_hostile_values),
        cmocka_unit_test(test_render_numa_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* reports/prom_bus: a bus with a metric of every scope, rendered in the Prometheus text
 * format: names and units, the scope's label, latest values, scaling of "%", families
 * without samples left out, name clashes, the unavailable list. */
#include "adg_test.h"

#include <string.h>

#include "reports/prom_bus.h"

static int reg(adg_bus *b, const char *name, const char *unit, adg_scope scope, const char *meaning)
{
    int id = -1;
    ADG_ASSERT_OK(adg_bus_register(b, "test", &(adg_metric_def){name, unit, scope, meaning}, &id));
    return id;
}

static char *render(adg_bus *b)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    rep_prom_bus(b, &sb);
    assert_false(sb.failed);
    char *s = adg_sb_take(&sb);
    return s ? s : strdup("");
}

static void contains(const char *text, const char *line)
{
    if (!strstr(text, line))
        print_error("missing: %s\nin:\n%s\n", line, text);
    assert_non_null(strstr(text, line));
}

static void test_every_scope(void **state)
{
    (void)state;
    adg_bus *b = adg_bus_new();
    int machine = reg(b, "machine.load", "1", ADG_SCOPE_MACHINE, "load");
    int process = reg(b, "engine.tokens_per_s", "t/s", ADG_SCOPE_PROCESS, "tokens per second");
    int thread = reg(b, "thread.cpu", "%", ADG_SCOPE_THREAD, "per-thread CPU");
    int cpu = reg(b, "cpu.util", "%", ADG_SCOPE_CPU, "CPU utilisation");
    int node = reg(b, "numa.resident", "B", ADG_SCOPE_NUMA_NODE, "resident bytes");
    int sock = reg(b, "mem.read_bw", "B/s", ADG_SCOPE_SOCKET, "DRAM reads");
    int gpu = reg(b, "gpu.busy", "%", ADG_SCOPE_GPU, "GPU busy");
    int kern = reg(b, "gpu.kernel_time", "s", ADG_SCOPE_KERNEL, "kernel time");
    adg_bus_sample(b, machine, NULL, 1, 0.75);
    adg_bus_sample(b, process, "pp512", 1, 100);
    adg_bus_sample(b, process, "tg128", 2, 20.5);
    adg_bus_sample(b, thread, "tid1234", 1, 50);
    adg_bus_sample(b, cpu, "cpu0", 1, 10);
    adg_bus_sample(b, cpu, "cpu0", 2, 40); /* the latest counts */
    adg_bus_sample(b, cpu, "cpu15", 2, 100);
    adg_bus_sample(b, node, "node1", 1, 4096);
    adg_bus_sample(b, sock, "socket0", 1, 2.5e10);
    adg_bus_sample(b, sock, "mon_L3_01", 1, 1e9); /* a resctrl domain: kept whole */
    adg_bus_sample(b, gpu, "gpu0", 1, 87.5);
    adg_bus_sample(b, kern, "void mul_mat_q<(ggml_type)2, 64>(\"x\")", 1, 0.125);
    char *s = render(b);
    contains(s, "# TYPE amxdiag_machine_load_ratio gauge\namxdiag_machine_load_ratio 0.75\n");
    contains(s, "amxdiag_engine_tokens_per_second{series=\"pp512\"} 100\n");
    contains(s, "amxdiag_engine_tokens_per_second{series=\"tg128\"} 20.5\n");
    contains(s, "amxdiag_thread_cpu_ratio{thread=\"1234\"} 0.5\n");
    contains(s, "amxdiag_cpu_util_ratio{cpu=\"0\"} 0.4\n");
    contains(s, "amxdiag_cpu_util_ratio{cpu=\"15\"} 1\n");
    contains(s, "amxdiag_numa_resident_bytes{node=\"1\"} 4096\n");
    contains(s, "amxdiag_mem_read_bw_bytes_per_second{socket=\"0\"} 25000000000\n");
    contains(s, "amxdiag_mem_read_bw_bytes_per_second{socket=\"mon_L3_01\"} 1000000000\n");
    contains(s, "amxdiag_gpu_busy_ratio{gpu=\"0\"} 0.875\n");
    contains(s, "amxdiag_gpu_kernel_time_seconds{kernel=\"void mul_mat_q<(ggml_type)2, 64>(\\\"x\\\")\"} 0.125\n");
    contains(s, "# HELP amxdiag_gpu_busy_ratio GPU busy [bus metric gpu.busy, unit % reported as a ratio (1 = 100%), "
                "collector test]\n");
    /* one HELP and one TYPE per family, before its samples */
    const char *first = strstr(s, "# TYPE amxdiag_cpu_util_ratio");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE amxdiag_cpu_util_ratio"));
    assert_true(strstr(s, "# HELP amxdiag_cpu_util_ratio") < strstr(s, "amxdiag_cpu_util_ratio{"));
    free(s);
    adg_bus_free(b);
}

static void test_empty_and_clash(void **state)
{
    (void)state;
    adg_bus *b = adg_bus_new();
    char *s = render(b);
    assert_string_equal(s, "");
    free(s);
    int a = reg(b, "a.b", "s", ADG_SCOPE_PROCESS, "first");
    int c = reg(b, "a_b", "s", ADG_SCOPE_PROCESS, "second, same Prometheus name");
    reg(b, "never.sampled", "B", ADG_SCOPE_PROCESS, "no sample yet");
    adg_bus_sample(b, a, NULL, 1, 1);
    adg_bus_sample(b, c, NULL, 1, 2);
    s = render(b);
    contains(s, "amxdiag_a_b_seconds 1\n");
    assert_null(strstr(s, "amxdiag_a_b_seconds 2"));
    contains(s, "# amxdiag: bus metric a_b left out: its name amxdiag_a_b_seconds is taken\n");
    assert_null(strstr(s, "never_sampled"));
    free(s);
    adg_bus_free(b);
}

static void test_unavailable(void **state)
{
    (void)state;
    adg_bus *b = adg_bus_new();
    adg_bus_unavailable(b, "pmu", "pmu", "no hardware PMU in this VM: \"cycles\" failed\nsecond line");
    adg_bus_unavailable(b, "pmu", "pmu", "said twice");
    adg_bus_unavailable(b, "gpu", "gpu", "no NVIDIA driver");
    char *s = render(b);
    contains(s, "# TYPE amxdiag_unavailable_info gauge\n");
    contains(s, "amxdiag_unavailable_info{collector=\"pmu\",what=\"pmu\",reason=\"no hardware PMU in this VM: "
                "\\\"cycles\\\" failed\\nsecond line\"} 1\n");
    contains(s, "amxdiag_unavailable_info{collector=\"gpu\",what=\"gpu\",reason=\"no NVIDIA driver\"} 1\n");
    assert_null(strstr(s, "said twice"));
    free(s);
    adg_bus_free(b);
}

static void test_instance_values(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_CPU, "cpu12", buf, sizeof buf), "12");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_CPU, "cpu", buf, sizeof buf), "cpu");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_CPU, "cpu1a", buf, sizeof buf), "cpu1a");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_NUMA_NODE, "node3", buf, sizeof buf), "3");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_GPU, "gpu0", buf, sizeof buf), "0");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_KERNEL, "gpu0", buf, sizeof buf), "gpu0");
    assert_string_equal(rep_prom_instance_value(ADG_SCOPE_PROCESS, "node0", buf, sizeof buf), "node0");
    assert_string_equal(rep_prom_scope_label(ADG_SCOPE_SOCKET), "socket");
    assert_string_equal(rep_prom_scope_label(ADG_SCOPE_KERNEL), "kernel");
    assert_string_equal(rep_prom_scope_label(ADG_SCOPE_MACHINE), "series");
}

/* A replayed run record renders like the live bus (what a fleet job could push). */
static void test_from_record_fixture(void **state)
{
    (void)state;
    const char *fx = getenv("FIXTURES");
    if (!fx)
        ADG_SKIP("FIXTURES is not set (run through ctest)");
    char path[1024];
    snprintf(path, sizeof path, "%s/prometheus/bus-record.json", fx);
    json_t *rec = json_load_file(path, 0, NULL);
    assert_non_null(rec);
    adg_bus *b = NULL;
    ADG_ASSERT_OK(adg_bus_from_record(rec, &b));
    char *s = render(b);
    char want_path[1024];
    snprintf(want_path, sizeof want_path, "%s/prometheus/bus-record.prom", fx);
    if (getenv("ADG_UPDATE_FIXTURES")) /* regenerate after a deliberate format change; review the diff */
        ADG_ASSERT_OK(adg_write_file_atomic(want_path, s, strlen(s)));
    char *want = NULL;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(want_path, 0, &want, &len));
    if (strcmp(s, want))
        print_error("rendering differs from %s:\n%s\n", want_path, s);
    assert_string_equal(s, want);
    free(want);
    free(s);
    adg_bus_free(b);
    json_decref(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_scope),     cmocka_unit_test(test_empty_and_clash),
        cmocka_unit_test(test_unavailable),     cmocka_unit_test(test_instance_values),
        cmocka_unit_test(test_from_record_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* probe/probe_prom: a probe report (checks of every status, a duplicated id, GPU facts
 * and verdicts of an H100 and a CC 12.0 card, binary verdicts) and cached ceilings, in
 * the Prometheus text format; the textfile is written atomically. */
#include "adg_test.h"

#include <string.h>
#include <sys/stat.h>

#include "probe/probe_prom.h"

static void contains(const char *text, const char *line)
{
    if (!strstr(text, line))
        print_error("missing: %s\nin:\n%s\n", line, text);
    assert_non_null(strstr(text, line));
}

static void build(probe_report *r)
{
    probe_report_init(r);
    probe_add(r, "cpu", "cpu.identity", PROBE_INFO, "CPU model", "identity", "x");
    probe_add(r, "amx", "amx.xcr0", PROBE_PASS, "XCR0", "ok", "XCR0=0x602e7");
    probe_add(r, "amx", "amx.selftest", PROBE_FAIL, "self-test", "SIGILL", "TDPBSSD raised SIGILL");
    probe_add(r, "pmu", "pmu.hardware", PROBE_WARN, "PMU", "none in this VM", "ENOENT");
    probe_add(r, "pmu", "pmu.events.amx", PROBE_SKIP, "AMX events", "no PMU", "-");
    /* the GPU loop adds gpu.compute_mode once per prohibited GPU: the worst wins, once */
    probe_add(r, "gpu", "gpu.compute_mode", PROBE_WARN, "compute mode", "x", "GPU 0");
    probe_add(r, "gpu", "gpu.compute_mode", PROBE_FAIL, "compute mode", "x", "GPU 1");
    probe_add(r, "gpu", "gpu.0.device", PROBE_INFO, "GPU 0", "identity", "H100");
    probe_add(r, "gpu", "gpu.0.support", PROBE_PASS, "GPU 0 (CC 9.0)", "ok", "-");
    probe_add(r, "gpu", "gpu.0.selftest.auto", PROBE_PASS, "GPU 0 runs", "ok", "-");
    probe_add(r, "gpu", "gpu.1.support", PROBE_FAIL, "GPU 1 (CC 12.0)", "driver too old", "-");
    probe_add(r, "gpu", "gpu.1.numa", PROBE_WARN, "GPU 1 NUMA", "away", "-");
    probe_check *e = probe_add(r, "binary", "binary.0.entries", PROBE_INFO, "CUDA code in llama-cli", "x", "-");
    probe_check_set_data(e, json_pack("{s:s}", "path", "/opt/llama/bin/llama-cli"));
    probe_check *g = probe_add(r, "binary", "binary.0.gpu1", PROBE_FAIL, "llama-cli runs on GPU 1", "x", "-");
    probe_check_set_data(g, json_pack("{s:s,s:s,s:i}", "cc", "12.0", "outcome", "no_binary_for_gpu", "gpu", 1));
    probe_check *k = probe_add(r, "binary", "binary.0.cc120", PROBE_WARN, "llama-cli runs on CC 12.0", "x", "-");
    probe_check_set_data(k, json_pack("{s:s,s:s}", "cc", "12.0", "outcome", "ptx_jit"));
    probe_report_set_fact(r, "cpu", "brand", json_string("Intel(R) Xeon(R) \"Platinum\" 8580"));
    probe_report_set_fact(r, "cpu", "vendor", json_string("GenuineIntel"));
    probe_report_set_fact(r, "cpu", "family", json_integer(6));
    probe_report_set_fact(r, "cpu", "model", json_integer(207));
    probe_report_set_fact(r, "cpu", "uarch", json_string("Emerald Rapids"));
    probe_report_set_fact(r, "amx", "usable", json_false());
    probe_report_set_fact(r, "numa", "nodes", json_integer(2));
    probe_report_set_fact(r, "gpu", "devices",
                          json_pack("[{s:i,s:s,s:s,s:I,s:s},{s:i,s:s,s:s,s:I,s:s}]", "ordinal", 0, "name",
                                    "NVIDIA H100 80GB HBM3", "cc", "9.0", "memory_bytes", (json_int_t)85520809984LL,
                                    "pci_bus_id", "0000:01:00.0", "ordinal", 1, "name", "NVIDIA GeForce RTX 5090", "cc",
                                    "12.0", "memory_bytes", (json_int_t)34190917632LL, "pci_bus_id", "0000:81:00.0"));
}

static void test_checks_and_gpu(void **state)
{
    (void)state;
    probe_report r;
    build(&r);
    adg_strbuf sb;
    adg_sb_init(&sb);
    probe_prom_opts o = {.duration_s = 1.5, .timestamp_s = 1795640000};
    probe_prom_render(&r, &o, &sb);
    const char *s = sb.buf;
    contains(s, "# TYPE amxdiag_probe_check_status gauge\n");
    contains(s, "amxdiag_probe_check_status{section=\"cpu\",check=\"cpu.identity\"} 1\n");
    contains(s, "amxdiag_probe_check_status{section=\"amx\",check=\"amx.xcr0\"} 0\n");
    contains(s, "amxdiag_probe_check_status{section=\"amx\",check=\"amx.selftest\"} 3\n");
    contains(s, "amxdiag_probe_check_status{section=\"pmu\",check=\"pmu.hardware\"} 2\n");
    contains(s, "amxdiag_probe_check_status{section=\"pmu\",check=\"pmu.events.amx\"} 4\n");
    contains(s, "amxdiag_probe_check_status{section=\"gpu\",check=\"gpu.compute_mode\"} 3\n");
    const char *cm = strstr(s, "check=\"gpu.compute_mode\"");
    assert_null(strstr(cm + 1, "check=\"gpu.compute_mode\""));
    contains(s, "amxdiag_probe_checks{status=\"fail\"} 4\n");
    contains(s, "amxdiag_probe_checks{status=\"pass\"} 3\n");
    contains(s, "amxdiag_probe_cpu_info{cpu=\"Intel(R) Xeon(R) \\\"Platinum\\\" 8580\",vendor=\"GenuineIntel\","
                "family_model=\"6/207\",uarch=\"Emerald Rapids\"} 1\n");
    contains(s, "amxdiag_probe_amx_usable 0\n");
    contains(s, "amxdiag_probe_numa_nodes 2\n");
    contains(s, "amxdiag_probe_duration_seconds 1.5\n");
    contains(s, "amxdiag_probe_last_run_timestamp_seconds 1795640000\n");
    contains(s, "amxdiag_probe_gpu_info{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\",cc=\"9.0\",pci_bus_id=\"0000:01:00.0\"} 1\n");
    contains(s, "amxdiag_probe_gpu_memory_bytes{gpu=\"1\"} 34190917632\n");
    contains(s, "amxdiag_probe_gpu_verdict{gpu=\"0\",cc=\"9.0\",verdict=\"support\"} 0\n");
    contains(s, "amxdiag_probe_gpu_verdict{gpu=\"0\",cc=\"9.0\",verdict=\"selftest.auto\"} 0\n");
    contains(s, "amxdiag_probe_gpu_verdict{gpu=\"1\",cc=\"12.0\",verdict=\"support\"} 3\n");
    contains(s, "amxdiag_probe_gpu_verdict{gpu=\"1\",cc=\"12.0\",verdict=\"numa\"} 2\n");
    assert_null(strstr(s, "verdict=\"device\""));
    contains(s, "amxdiag_probe_binary_verdict{binary=\"/opt/llama/bin/llama-cli\",gpu=\"1\",cc=\"12.0\","
                "outcome=\"no_binary_for_gpu\"} 3\n");
    contains(s, "amxdiag_probe_binary_verdict{binary=\"/opt/llama/bin/llama-cli\",cc=\"12.0\",outcome=\"ptx_jit\"} 2\n");
    /* no ceilings given: none rendered */
    assert_null(strstr(s, "amxdiag_ceiling_"));
    /* every family's TYPE comes once */
    const char *t = strstr(s, "# TYPE amxdiag_probe_gpu_verdict");
    assert_null(strstr(t + 1, "# TYPE amxdiag_probe_gpu_verdict"));
    adg_sb_free(&sb);
    probe_report_free(&r);
}

static void test_ceilings(void **state)
{
    (void)state;
    probe_report r;
    probe_report_init(&r);
    adg_ceilings c;
    memset(&c, 0, sizeof c);
    snprintf(c.created, sizeof c.created, "2026-11-25T20:53:52Z");
    c.clock_ghz = 2.1;
    c.clock_all_ghz = 2.0;
    c.amx_int8_core = (adg_rate){.ops_per_s = 2.73e12, .per_cycle = 1300, .peak_per_cycle = 2048, .threads = 1};
    c.amx_int8_all = (adg_rate){.ops_per_s = 40e12, .per_cycle = 1250, .peak_per_cycle = 2048, .threads = 16};
    c.vnni_core = (adg_rate){.ops_per_s = 0.5e12, .threads = 1}; /* no clock: no fraction */
    c.amx_bf16_core = (adg_rate){.ops_per_s = 0, .why = "not measured"};
    c.nnodes = 2;
    c.nodes[0] = (adg_node_bw){.node = 0, .threads = 16, .read_gbs = 223.3, .read_core_gbs = 14.1, .triad_gbs = 133.5};
    c.nodes[1] = (adg_node_bw){.node = 1, .threads = 16, .read_gbs = 200, .read_core_gbs = 13, .triad_gbs = 120};
    adg_strbuf sb;
    adg_sb_init(&sb);
    probe_prom_opts o = {.ceilings = &c, .duration_s = -1};
    probe_prom_render(&r, &o, &sb);
    const char *s = sb.buf;
    contains(s, "amxdiag_ceiling_ops_per_second{op=\"amx_int8\",cores=\"one\"} 2730000000000\n");
    contains(s, "amxdiag_ceiling_ops_per_second{op=\"amx_int8\",cores=\"all\"} 40000000000000\n");
    contains(s, "amxdiag_ceiling_ops_per_second{op=\"vnni\",cores=\"one\"} 500000000000\n");
    assert_null(strstr(s, "op=\"amx_bf16\""));
    contains(s, "amxdiag_ceiling_peak_ratio{op=\"amx_int8\",cores=\"one\"} 0.634765625\n");
    assert_null(strstr(s, "amxdiag_ceiling_peak_ratio{op=\"vnni\""));
    contains(s, "amxdiag_ceiling_memory_read_bytes_per_second{node=\"0\",cores=\"all\"} 223300000000\n");
    contains(s, "amxdiag_ceiling_memory_read_bytes_per_second{node=\"1\",cores=\"one\"} 13000000000\n");
    contains(s, "amxdiag_ceiling_memory_triad_bytes_per_second{node=\"0\"} 133500000000\n");
    contains(s, "amxdiag_ceiling_clock_hertz{cores=\"one\"} 2100000000\n");
    contains(s, "amxdiag_ceiling_measured_timestamp_seconds 1795640032\n");
    assert_null(strstr(s, "amxdiag_probe_duration_seconds"));
    assert_null(strstr(s, "amxdiag_probe_last_run"));
    adg_sb_free(&sb);
    probe_report_free(&r);
}

static void test_textfile(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char *path = NULL;
    ADG_ASSERT_OK(probe_prom_write_textfile(dir, "amxdiag_x 1\n", &path));
    assert_non_null(strstr(path, "/amxdiag_probe.prom"));
    char *data = NULL;
    size_t len;
    ADG_ASSERT_OK(adg_read_file(path, 0, &data, &len));
    assert_string_equal(data, "amxdiag_x 1\n");
    free(data);
    /* replaced whole, never appended to */
    ADG_ASSERT_OK(probe_prom_write_textfile(dir, "amxdiag_x 2\n", NULL));
    ADG_ASSERT_OK(adg_read_file(path, 0, &data, &len));
    assert_string_equal(data, "amxdiag_x 2\n");
    free(data);
    /* node_exporter reads *.prom files only: no temporary may be left */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* a missing directory and a file instead of a directory are errors */
    char missing[1100];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    adg_error *e = probe_prom_write_textfile(missing, "x 1\n", NULL);
    assert_non_null(e);
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    e = probe_prom_write_textfile(path, "x 1\n", NULL);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_USAGE);
    adg_error_free(e);
    free(path);
    adg_test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checks_and_gpu),
        cmocka_unit_test(test_ceilings),
        cmocka_unit_test(test_textfile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The NVML loader (common/adg_nvml.h), the nvml collector (profiler/prof_nvml.c) and the
 * probe's persistence query, against the stand-in libnvidia-ml (tests/fixtures/nvml,
 * scripted through $AMXDIAG_FAKE_NVML).  Where a real NVML loads, one more test reads the
 * real devices. */
#include "adg_test.h"

#include <dlfcn.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_metrics.h"
#include "common/adg_nvml.h"
#include "common/adg_prom.h"
#include "common/adg_record.h"
#include "probe/cuda_probe.h"
#include "profiler/prof_collector.h"

static char fake[4096], fake_v1[4096], script[4096];
static char *tmp;

static void write_script(const char *text)
{
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **st)
{
    (void)st;
    const char *bd = getenv("BUILD_DIR");
    if (!bd)
        return -1;
    snprintf(fake, sizeof fake, "%s/tests/libfake_nvml.so", bd);
    snprintf(fake_v1, sizeof fake_v1, "%s/tests/libfake_nvml_v1.so", bd);
    tmp = adg_test_tmpdir();
    snprintf(script, sizeof script, "%s/nvml.txt", tmp);
    setenv("AMXDIAG_FAKE_NVML", script, 1);
    setenv("AMXDIAG_LIBNVML", fake, 1);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    adg_test_rmtree(tmp);
    return 0;
}

static int fake_refcount(const char *lib)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return -1;
    int (*fn)(void);
    void *p = dlsym(h, "fake_nvml_refcount");
    memcpy(&fn, &p, sizeof fn);
    int n = fn ? fn() : -1;
    dlclose(h);
    return n;
}

static void test_loader(void **st)
{
    (void)st;
    write_script("count=1\n");
    /* Held open here so the stand-in's init count can be read after the loader closes. */
    void *keep = dlopen(fake, RTLD_NOW);
    assert_non_null(keep);
    adg_nvml n;
    ADG_ASSERT_OK(adg_nvml_open(&n));
    assert_int_equal(n.procs_version, 3);
    assert_non_null(n.DeviceGetMemoryInfo);
    assert_int_equal(fake_refcount(fake), 1);
    char buf[128];
    adg_nvml_error(&n, ADG_NVML_ERROR_NOT_SUPPORTED, buf, sizeof buf);
    assert_string_equal(buf, "NVML_ERROR_NOT_SUPPORTED (Not Supported)");
    adg_nvml_close(&n);
    assert_null(n.handle);
    assert_int_equal(fake_refcount(fake), 0); /* every init was shut down */
    dlclose(keep);

    /* The oldest process-list entry point only. */
    setenv("AMXDIAG_LIBNVML", fake_v1, 1);
    ADG_ASSERT_OK(adg_nvml_open(&n));
    assert_int_equal(n.procs_version, 1);
    adg_nvml_close(&n);
    setenv("AMXDIAG_LIBNVML", fake, 1);
}

static void test_loader_errors(void **st)
{
    (void)st;
    adg_nvml n;
    setenv("AMXDIAG_LIBNVML", "/nonexistent/libnvidia-ml.so.1", 1);
    adg_error *e = adg_nvml_open(&n);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "cannot load NVML (/nonexistent/libnvidia-ml.so.1)"));
    assert_non_null(strstr(adg_error_remedy(e), "AMXDIAG_LIBNVML"));
    adg_error_free(e);
    /* A library without NVML's entry points (libm is everywhere). */
    setenv("AMXDIAG_LIBNVML", "libm.so.6", 1);
    e = adg_nvml_open(&n);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "lacks nvmlInit_v2"));
    adg_error_free(e);
    setenv("AMXDIAG_LIBNVML", fake, 1);
    /* nvmlInit's own error, with the library's text and a remedy for it. */
    write_script("init=9\n");
    e = adg_nvml_open(&n);
    assert_non_null(e);
    assert_string_equal(adg_error_msg(e), "nvmlInit failed: NVML_ERROR_DRIVER_NOT_LOADED (Driver Not Loaded)");
    assert_non_null(strstr(adg_error_remedy(e), "kernel module"));
    adg_error_free(e);
    assert_null(n.handle);
}

/* ---- the collector ---- */

typedef struct run {
    prof_ctx ctx;
    void *state;
} run;

static adg_error *run_open(run *r)
{
    memset(r, 0, sizeof *r);
    r->ctx.bus = adg_bus_new();
    r->ctx.record = adg_record_new();
    r->ctx.root = getpid();
    r->ctx.interval_ns = 100000000ull;
    r->ctx.sets = PROF_SET_NVML;
    prof_pidset_init(&r->ctx.pids);
    prof_pidset_add(&r->ctx.pids, r->ctx.root);
    return prof_nvml_collector.open(&r->ctx, &r->state);
}

static void run_close(run *r)
{
    if (r->state)
        prof_nvml_collector.close(r->state);
    prof_pidset_destroy(&r->ctx.pids);
    adg_record_free(r->ctx.record);
    adg_bus_free(r->ctx.bus);
}

static bool latest(run *r, const char *metric, const char *inst, double *v)
{
    int id = adg_bus_find(r->ctx.bus, metric);
    adg_point p;
    if (id < 0 || !adg_bus_latest(r->ctx.bus, id, inst, &p))
        return false;
    *v = p.value;
    return true;
}

/* The reason the bus gives for `what`, "" when none. */
static const char *reason(run *r, const char *what, char *buf, size_t len)
{
    json_t *u = adg_bus_unavailable_json(r->ctx.bus);
    size_t i;
    json_t *x;
    buf[0] = 0;
    json_array_foreach(u, i, x) {
        if (!strcmp(json_string_value(json_object_get(x, "what")), what)) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s%s", l ? " | " : "", json_string_value(json_object_get(x, "reason")));
        }
        assert_string_equal(json_string_value(json_object_get(x, "collector")), "nvml");
    }
    json_decref(u);
    return buf;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_collector(void **st)
{
    (void)st;
    char text[2048];
    /* gpu0 answers everything; gpu1 has no power reading and no PCIe counters. The
     * process list holds this process (the workload's root), pid 1 (someone else's) and,
     * on gpu1, this process again. */
    snprintf(text, sizeof text,
             "count=2\ndriver=580.65.06\n"
             "gpu0.name=NVIDIA H100 80GB HBM3\ngpu0.uuid=GPU-abc\ngpu0.mem_total=85899345920\n"
             "gpu0.mem_used=12884901888\ngpu0.util=87\ngpu0.mem_util=41\ngpu0.power_mw=312500\n"
             "gpu0.power_limit_mw=700000\ngpu0.temp=61\ngpu0.sm_mhz=1980\ngpu0.max_sm_mhz=1980\n"
             "gpu0.rx_kbs=1000\ngpu0.tx_kbs=250\ngpu0.procs=%d:10737418240,1:1073741824\n"
             "gpu1.name=Second\ngpu1.mem_total=25769803776\ngpu1.mem_used=1073741824\ngpu1.util=5\n"
             "gpu1.temp=40\ngpu1.sm_mhz=1410\ngpu1.procs=%d:536870912\n",
             (int)getpid(), (int)getpid());
    write_script(text);
    run r;
    ADG_ASSERT_OK(run_open(&r));
    double v;
    /* The PCIe thread's first reading comes within a few ms (the stand-in does not wait
     * 20 ms per query); a slow sanitizer build gets two seconds. */
    for (int i = 0; i < 100 && !latest(&r, "gpu.pcie_rx_bw", "gpu0", &v); i++) {
        sleep_ms(20);
        prof_nvml_collector.sample(&r.ctx, r.state, 100000000ull);
    }
    assert_true(latest(&r, "gpu.mem_used", "gpu0", &v));
    assert_true(v == 12884901888.0);
    assert_true(latest(&r, "gpu.mem_total", "gpu0", &v));
    assert_true(v == 85899345920.0);
    assert_true(latest(&r, "gpu.util", "gpu0", &v) && v == 87);
    assert_true(latest(&r, "gpu.mem_util", "gpu0", &v) && v == 41);
    assert_true(latest(&r, "gpu.power", "gpu0", &v) && fabs(v - 312.5) < 1e-9);
    assert_true(latest(&r, "gpu.temp", "gpu0", &v) && v == 61);
    assert_true(latest(&r, "gpu.sm_clock", "gpu0", &v) && v == 1980e6);
    assert_true(latest(&r, "gpu.pcie_rx_bw", "gpu0", &v) && v == 1000 * 1024.0);
    assert_true(latest(&r, "gpu.pcie_tx_bw", "gpu0", &v) && v == 250 * 1024.0);
    /* Only the workload's process counts, not pid 1's gigabyte. */
    assert_true(latest(&r, "gpu.workload_mem", "gpu0", &v) && v == 10737418240.0);
    assert_true(latest(&r, "gpu.workload_mem", "gpu1", &v) && v == 536870912.0);
    assert_true(latest(&r, "gpu.mem_used", "gpu1", &v) && v == 1073741824.0);
    assert_false(latest(&r, "gpu.power", "gpu1", &v));
    char why[512];
    assert_non_null(strstr(reason(&r, "gpu.power", why, sizeof why), "gpu1: not supported"));
    assert_string_equal(reason(&r, "gpu.mem_used", why, sizeof why), "");
    /* The registry: units and scopes as documented. */
    adg_metric_def d;
    const char *coll;
    assert_true(adg_bus_metric(r.ctx.bus, (size_t)adg_bus_find(r.ctx.bus, "gpu.power"), &d, &coll));
    assert_string_equal(d.unit, "W");
    assert_int_equal(d.scope, ADG_SCOPE_GPU);
    assert_string_equal(coll, "nvml");

    /* Values change while the run goes on; a device that is lost says so once. */
    snprintf(text, sizeof text,
             "count=2\ngpu0.mem_total=85899345920\ngpu0.mem_used=17179869184\ngpu0.util=100\ngpu0.power_mw=650000\n"
             "gpu0.temp=err:15\ngpu0.sm_mhz=1755\ngpu0.rx_kbs=1000\ngpu0.tx_kbs=250\ngpu0.procs=%d:16106127360\n"
             "gpu1.mem_total=25769803776\ngpu1.mem_used=1073741824\ngpu1.util=5\ngpu1.temp=40\ngpu1.sm_mhz=1410\n",
             (int)getpid());
    write_script(text);
    prof_nvml_collector.sample(&r.ctx, r.state, 200000000ull);
    prof_nvml_collector.sample(&r.ctx, r.state, 300000000ull);
    assert_true(latest(&r, "gpu.mem_used", "gpu0", &v) && v == 17179869184.0);
    assert_true(latest(&r, "gpu.power", "gpu0", &v) && v == 650);
    assert_true(latest(&r, "gpu.temp", "gpu0", &v) && v == 61); /* the last good one stays */
    assert_string_equal(reason(&r, "gpu.temp", why, sizeof why), "gpu0: NVML_ERROR_GPU_IS_LOST (GPU is lost)");
    /* gpu1's process left: the workload holds nothing there now. */
    assert_true(latest(&r, "gpu.workload_mem", "gpu1", &v) && v == 0);

    prof_nvml_collector.finish(&r.ctx, r.state, 400000000ull);
    json_t *sec = adg_record_section(r.ctx.record, "nvml");
    assert_non_null(sec);
    assert_string_equal(json_string_value(json_object_get(sec, "source")), "NVML");
    assert_int_equal(json_integer_value(json_object_get(sec, "process_api")), 3);
    json_t *d0 = json_array_get(json_object_get(sec, "devices"), 0);
    assert_string_equal(json_string_value(json_object_get(d0, "name")), "NVIDIA H100 80GB HBM3");
    assert_true(json_real_value(json_object_get(d0, "power_limit_w")) == 700.0);
    assert_true(json_real_value(json_object_get(d0, "max_sm_clock_hz")) == 1980e6);
    assert_int_equal(json_integer_value(json_object_get(d0, "workload_mem_peak_bytes")), 16106127360ll);
    json_t *procs = json_object_get(sec, "workload_processes");
    assert_int_equal(json_array_size(procs), 2);
    json_t *p0 = json_array_get(procs, 0);
    assert_int_equal(json_integer_value(json_object_get(p0, "pid")), getpid());
    assert_int_equal(json_integer_value(json_object_get(p0, "mem_peak_bytes")), 16106127360ll);
    run_close(&r);
}

/* A child of the workload's root that the session never saw (no sampler) still counts,
 * and joins the session's pid set; the v1 process list works the same. */
static void test_descendants_v1(void **st)
{
    (void)st;
    setenv("AMXDIAG_LIBNVML", fake_v1, 1);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    char text[512];
    snprintf(text, sizeof text, "count=1\ngpu0.mem_used=100\ngpu0.procs=%d:4096,%d:na\n", (int)child, 1);
    write_script(text);
    run r;
    ADG_ASSERT_OK(run_open(&r));
    prof_nvml_collector.sample(&r.ctx, r.state, 100000000ull);
    double v;
    assert_true(latest(&r, "gpu.workload_mem", "gpu0", &v) && v == 4096);
    pid_t *pids;
    size_t n = prof_pidset_copy(&r.ctx.pids, &pids);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= pids[i] == child;
    free(pids);
    assert_true(found);
    /* The driver hides the workload's memory: the reason, not a zero. */
    snprintf(text, sizeof text, "count=1\ngpu0.mem_used=100\ngpu0.procs=%d:na\n", (int)child);
    write_script(text);
    prof_nvml_collector.sample(&r.ctx, r.state, 200000000ull);
    char why[512];
    assert_non_null(strstr(reason(&r, "gpu.workload_mem", why, sizeof why), "usedGpuMemory not available"));
    assert_true(latest(&r, "gpu.workload_mem", "gpu0", &v) && v == 4096); /* not overwritten with 0 */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    prof_nvml_collector.finish(&r.ctx, r.state, 300000000ull);
    json_t *sec = adg_record_section(r.ctx.record, "nvml");
    assert_int_equal(json_integer_value(json_object_get(sec, "process_api")), 1);
    run_close(&r);
    setenv("AMXDIAG_LIBNVML", fake, 1);
}

static void test_cannot_run(void **st)
{
    (void)st;
    run r;
    write_script("count=0\n");
    adg_error *e = run_open(&r);
    assert_non_null(e);
    assert_string_equal(adg_error_msg(e), "NVML sees no GPU");
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    run_close(&r);

    write_script("init=9\n");
    e = run_open(&r);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "Driver Not Loaded"));
    adg_error_free(e);
    run_close(&r);

    /* A device NVML cannot open is skipped; the others are sampled. */
    write_script("count=2\ngpu0.handle=err:15\ngpu1.mem_used=5\n");
    ADG_ASSERT_OK(run_open(&r));
    prof_nvml_collector.sample(&r.ctx, r.state, 100000000ull);
    double v;
    assert_true(latest(&r, "gpu.mem_used", "gpu1", &v) && v == 5);
    assert_false(latest(&r, "gpu.mem_used", "gpu0", &v));
    /* Nothing answers utilisation anywhere: not registered, and the reason is given. */
    assert_int_equal(adg_bus_find(r.ctx.bus, "gpu.util"), -1);
    char why[512];
    assert_non_null(strstr(reason(&r, "gpu.util", why, sizeof why), "not supported"));
    prof_nvml_collector.finish(&r.ctx, r.state, 200000000ull);
    run_close(&r);
}

/* The probe asks NVML for persistence mode by PCI bus id, through the same loader. */
static void test_probe_persistence(void **st)
{
    (void)st;
    write_script("count=2\ngpu0.bus=0000:17:00.0\ngpu0.persistence=1\ngpu1.bus=0000:65:00.0\ngpu1.persistence=0\n");
    gpu_facts *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->ndevs = 3;
    snprintf(f->devs[0].bus_id, sizeof f->devs[0].bus_id, "0000:17:00.0");
    snprintf(f->devs[1].bus_id, sizeof f->devs[1].bus_id, "0000:65:00.0");
    snprintf(f->devs[2].bus_id, sizeof f->devs[2].bus_id, "0000:99:00.0");
    for (int i = 0; i < 3; i++)
        f->devs[i].persistence = -1;
    void *keep = dlopen(fake, RTLD_NOW);
    cuda_probe_nvml(f);
    assert_int_equal(f->devs[0].persistence, 1);
    assert_int_equal(f->devs[1].persistence, 0);
    assert_int_equal(f->devs[2].persistence, -1); /* NVML does not know it */
    assert_int_equal(fake_refcount(fake), 0);
    dlclose(keep);
    /* Without NVML the facts stay unknown. */
    setenv("AMXDIAG_LIBNVML", "/nonexistent/libnvidia-ml.so.1", 1);
    f->devs[0].persistence = -1;
    cuda_probe_nvml(f);
    assert_int_equal(f->devs[0].persistence, -1);
    setenv("AMXDIAG_LIBNVML", fake, 1);
    free(f);
}

/* amxdiag export names the new units as Prometheus does (watts, celsius). */
static void test_prom_names(void **st)
{
    (void)st;
    char name[128];
    adg_prom_metric_name("gpu.power", "W", name, sizeof name);
    assert_non_null(strstr(name, "gpu_power_watts"));
    adg_prom_metric_name("gpu.temp", "C", name, sizeof name);
    assert_non_null(strstr(name, "gpu_temp_celsius"));
    adg_prom_metric_name("gpu.workload_mem", "B", name, sizeof name);
    assert_non_null(strstr(name, "gpu_workload_mem_bytes"));
}

/* The real library where the driver is installed: every device answers memory. */
static void test_real_nvml(void **st)
{
    (void)st;
    unsetenv("AMXDIAG_LIBNVML");
    adg_nvml n;
    adg_error *e = adg_nvml_open(&n);
    setenv("AMXDIAG_LIBNVML", fake, 1);
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", adg_error_msg(e));
        adg_error_free(e);
        ADG_SKIP("no NVIDIA driver here: %s", msg);
    }
    unsigned count = 0;
    assert_int_equal(n.DeviceGetCount(&count), 0);
    for (unsigned i = 0; i < count; i++) {
        adg_nvml_device d;
        adg_nvml_memory m;
        assert_int_equal(n.DeviceGetHandleByIndex(i, &d), 0);
        assert_int_equal(n.DeviceGetMemoryInfo(d, &m), 0);
        assert_true(m.total > 0 && m.used <= m.total);
    }
    adg_nvml_close(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader),       cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_collector),    cmocka_unit_test(test_descendants_v1),
        cmocka_unit_test(test_cannot_run),   cmocka_unit_test(test_probe_persistence),
        cmocka_unit_test(test_prom_names),   cmocka_unit_test(test_real_nvml),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

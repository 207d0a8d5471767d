/* Why CUDA sees no GPU: the diagnosis over synthetic facts (one per cause), and the
 * gathering code over a fake /proc + /sys tree and, where present, the toolkit's stub
 * libcuda and CUPTI. */
#include "adg_test.h"

#include <numaif.h>
#include <string.h>
#include <sys/stat.h>

#include "probe/gpu_facts.h"

static gpu_cause causes[16];

static const gpu_cause *find(size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(causes[i].id, id))
            return &causes[i];
    return NULL;
}

/* One H100 on node 0, module and libcuda present, device nodes fine. */
static void machine(gpu_facts *f, int init_rc, int ndev)
{
    memset(f, 0, sizeof *f);
    f->kmod_loaded = true;
    snprintf(f->kmod_version, sizeof f->kmod_version, "580.65.06");
    f->driver_branch = 580;
    f->lib_loaded = true;
    snprintf(f->lib_path, sizeof f->lib_path, "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
    f->driver_cuda = 13000;
    f->init_called = true;
    f->init_rc = init_rc;
    snprintf(f->init_name, sizeof f->init_name, init_rc == 100 ? "CUDA_ERROR_NO_DEVICE" : init_rc ? "CUDA_ERROR_X" : "CUDA_SUCCESS");
    f->dev_count = init_rc ? -1 : ndev;
    f->nkgpus = 1;
    snprintf(f->kgpus[0].bus_id, sizeof f->kgpus[0].bus_id, "0000:17:00.0");
    snprintf(f->kgpus[0].uuid, sizeof f->kgpus[0].uuid, "GPU-1234abcd-0000");
    f->kgpus[0].minor = 0;
    f->kgpus[0].numa_node = 0;
    for (int i = 0; i < ndev; i++) {
        f->devs[i].ordinal = i;
        f->devs[i].cc = 90;
        f->devs[i].numa_node = 0;
        snprintf(f->devs[i].bus_id, sizeof f->devs[i].bus_id, "0000:17:00.0");
    }
    f->ndevs = init_rc ? 0 : ndev;
    static const char *nodes[] = {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0"};
    for (int i = 0; i < 3; i++) {
        snprintf(f->nodes[i].path, sizeof f->nodes[i].path, "%s", nodes[i]);
        f->nodes[i].exists = f->nodes[i].access_ok = true;
        f->nodes[i].mode = 0666;
    }
    f->nnodes = 3;
    f->numa_nodes = 4;
    f->cpu_node_mask = 0xf;
    snprintf(f->cpus_allowed, sizeof f->cpus_allowed, "0-127");
    f->mempolicy = MPOL_DEFAULT;
    f->rm_profiling_admin_only = 1;
}

static void test_no_driver(void **state)
{
    (void)state;
    gpu_facts f;
    memset(&f, 0, sizeof f);
    snprintf(f.lib_error, sizeof f.lib_error, "no NVIDIA driver: libcuda.so.1 not found");
    size_t n = gpu_diagnose(&f, causes, 16);
    assert_int_equal(n, 1);
    assert_string_equal(causes[0].id, "no_driver");
    assert_int_equal(causes[0].status, PROBE_SKIP);
    assert_non_null(strstr(causes[0].explanation, "no NVIDIA driver"));
    assert_false(gpu_facts_cuda_failed(&f));
}

static void test_healthy(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 0, 1);
    assert_false(gpu_facts_cuda_failed(&f));
    size_t n = gpu_diagnose(&f, causes, 16);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(causes[i].status, PROBE_FAIL);
    assert_null(find(n, "numa_binding"));
}

static void test_libcuda_missing(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 0, 0);
    f.lib_loaded = false;
    f.init_called = false;
    snprintf(f.lib_error, sizeof f.lib_error, "libcuda.so.1: cannot open shared object file");
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "libcuda_missing");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->remedy, "580"));
}

static void test_stub_and_mismatch(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 34, 0);
    size_t n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "stub_library"));
    assert_null(find(n, "init_error"));
    machine(&f, 803, 0);
    n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "driver_mismatch"));
}

static void test_visible_empty(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 100, 0);
    f.visible_set = true;
    f.visible[0] = '\0';
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "visible_devices_empty");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->evidence, "CUDA_VISIBLE_DEVICES=\"\""));
    assert_non_null(strstr(c->remedy, "unset CUDA_VISIBLE_DEVICES"));
    assert_null(find(n, "init_error"));
}

static void test_visible_bad_index(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 100, 0);
    f.visible_set = true;
    snprintf(f.visible, sizeof f.visible, "7");
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "visible_devices_invalid");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->evidence, "\"7\" is not a GPU"));
    /* A UUID that exists is fine; an unknown one is not. */
    machine(&f, 0, 1);
    f.visible_set = true;
    snprintf(f.visible, sizeof f.visible, "GPU-1234abcd");
    n = gpu_diagnose(&f, causes, 16);
    assert_null(find(n, "visible_devices_invalid"));
    /* Entries after an invalid one are dropped by CUDA: a warning when some GPU remains. */
    machine(&f, 0, 1);
    f.nkgpus = 2;
    f.kgpus[1] = f.kgpus[0];
    f.visible_set = true;
    snprintf(f.visible, sizeof f.visible, "0,5,1");
    n = gpu_diagnose(&f, causes, 16);
    c = find(n, "visible_devices_invalid");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_WARN);
    assert_non_null(strstr(c->evidence, "1 of 3"));
}

static void test_device_nodes(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 100, 0);
    f.nodes[2].exists = false;
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "device_nodes_missing");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->evidence, "/dev/nvidia0"));
    machine(&f, 100, 0);
    f.nodes[0].access_ok = false;
    f.nodes[0].mode = 0660;
    n = gpu_diagnose(&f, causes, 16);
    c = find(n, "device_nodes_permission");
    assert_non_null(c);
    assert_non_null(strstr(c->evidence, "0660"));
    machine(&f, 100, 0);
    f.nodes[2].open_errno = 1; /* EPERM */
    n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "device_cgroup"));
}

/* The seed: `numactl -N 2,3 -m 2,3` with the GPU on node 0, cuInit -> no device. */
static void test_numa_seed(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 100, 0);
    f.cpu_node_mask = 0xc;
    snprintf(f.cpus_allowed, sizeof f.cpus_allowed, "64-127");
    f.mempolicy = MPOL_BIND;
    f.mem_node_mask = 0xc;
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "numa_binding");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->evidence, "GPU 0000:17:00.0 on node 0"));
    assert_non_null(strstr(c->evidence, "bind (nodes 2-3)"));
    assert_non_null(strstr(c->remedy, "numactl -N 0 -m 0"));
    assert_non_null(strstr(c->remedy, "-m 0,2-3"));
    assert_null(find(n, "init_error"));
    /* Memory binding alone is also named. */
    machine(&f, 100, 0);
    f.mempolicy = MPOL_BIND;
    f.mem_node_mask = 0x2;
    n = gpu_diagnose(&f, causes, 16);
    c = find(n, "numa_binding");
    assert_non_null(c);
    assert_non_null(strstr(c->explanation, "binding its memory away"));
    /* When CUDA works, the same binding is a placement warning. */
    machine(&f, 0, 1);
    f.cpu_node_mask = 0xc;
    n = gpu_diagnose(&f, causes, 16);
    c = find(n, "numa_binding");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_WARN);
    /* When another cause explains the failure, the binding is only a warning. */
    machine(&f, 100, 0);
    f.cpu_node_mask = 0xc;
    f.visible_set = true;
    n = gpu_diagnose(&f, causes, 16);
    assert_int_equal(find(n, "visible_devices_empty")->status, PROBE_FAIL);
    assert_int_equal(find(n, "numa_binding")->status, PROBE_WARN);
    /* No NUMA information (VM): nothing to say. */
    machine(&f, 100, 0);
    f.kgpus[0].numa_node = -1;
    f.cpu_node_mask = 0x1;
    f.mempolicy = MPOL_BIND;
    f.mem_node_mask = 0x1;
    n = gpu_diagnose(&f, causes, 16);
    assert_null(find(n, "numa_binding"));
}

static void test_unexplained_and_info(void **state)
{
    (void)state;
    gpu_facts f;
    machine(&f, 999, 0);
    snprintf(f.init_text, sizeof f.init_text, "unknown error");
    size_t n = gpu_diagnose(&f, causes, 16);
    const gpu_cause *c = find(n, "init_error");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(strstr(c->explanation, "nvidia-uvm"));
    machine(&f, 0, 2);
    n = gpu_diagnose(&f, causes, 16);
    c = find(n, "device_order");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_INFO);
    machine(&f, 100, 0);
    f.kgpus[0].excluded = true;
    n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "gpu_excluded"));
    machine(&f, 0, 1);
    f.kmod_loaded = false;
    f.init_rc = 100;
    f.nkgpus = 0;
    n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "kernel_module_missing"));
    assert_string_equal(gpu_init_meaning(100) + 0, gpu_init_meaning(100));
    char b[32];
    assert_string_equal(gpu_fmt_nodes(0xd, b, sizeof b), "0,2-3");
    assert_string_equal(gpu_fmt_nodes(0, b, sizeof b), "none");
}

/* Both spellings of /proc/driver/nvidia/version (proprietary and open kernel modules). */
static void test_kmod_version(void **state)
{
    (void)state;
    char v[64];
    gpu_parse_kmod_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:29 UTC 2025\n",
                           v, sizeof v);
    assert_string_equal(v, "580.65.06");
    gpu_parse_kmod_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
                           "(dvs-builder@U22-I3-AM02-24-3)  Thu Oct 30 2025\nGCC version: gcc 12.3.0\n",
                           v, sizeof v);
    assert_string_equal(v, "580.159.04");
    gpu_parse_kmod_version("NVRM version: NVIDIA UNIX aarch64 Kernel Module  570.86.16\n", v, sizeof v);
    assert_string_equal(v, "570.86.16");
    gpu_parse_kmod_version("garbage x86_64 1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27",
                           v, 16);
    assert_string_equal(v, "");
    gpu_parse_kmod_version("", v, sizeof v);
    assert_string_equal(v, "");
}

static void put(const char *root, const char *rel, const char *text)
{
    char path[512], cmd[600];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The gathering code over a fake /proc and /sys: one GPU on node 1, no device nodes. */
static void test_gather_fake_tree(void **state)
{
    (void)state;
    char *root = adg_test_tmpdir();
    assert_non_null(root);
    put(root, "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:29 UTC 2025\n"
        "GCC version:  gcc version 12.2.0\n");
    put(root, "proc/driver/nvidia/gpus/0000:17:00.0/information",
        "Model: \t\t NVIDIA GeForce RTX 5090\nIRQ:   \t\t 150\nGPU UUID: \t GPU-aaaa-bbbb\n"
        "Bus Location: \t 0000:17:00.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n");
    put(root, "proc/driver/nvidia/params", "ResmanDebugLevel: 4294967295\nRmProfilingAdminOnly: 1\n");
    put(root, "sys/bus/pci/devices/0000:17:00.0/numa_node", "1\n");
    setenv("AMXDIAG_GPU_PROC_ROOT", root, 1);
    setenv("AMXDIAG_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    gpu_facts f;
    gpu_facts_gather(&f);
    unsetenv("AMXDIAG_GPU_PROC_ROOT");
    unsetenv("AMXDIAG_LIBCUDA");
    unsetenv("CUDA_VISIBLE_DEVICES");
    assert_true(f.kmod_loaded);
    assert_string_equal(f.kmod_version, "580.65.06");
    assert_int_equal(f.driver_branch, 580);
    assert_int_equal(f.nkgpus, 1);
    assert_string_equal(f.kgpus[0].model, "NVIDIA GeForce RTX 5090");
    assert_string_equal(f.kgpus[0].uuid, "GPU-aaaa-bbbb");
    assert_int_equal(f.kgpus[0].minor, 0);
    assert_int_equal(f.kgpus[0].numa_node, 1);
    assert_false(f.kgpus[0].excluded);
    assert_int_equal(f.rm_profiling_admin_only, 1);
    assert_true(f.visible_set);
    assert_false(f.lib_loaded);
    assert_non_null(strstr(f.lib_error, "/nonexistent/libcuda.so.1"));
    assert_true(f.nnodes >= 3);
    assert_false(f.nodes[0].exists);
    size_t n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "libcuda_missing"));
    json_t *j = gpu_facts_json(&f);
    assert_non_null(json_object_get(j, "kernel_gpus"));
    assert_int_equal(json_integer_value(json_object_get(j, "RmProfilingAdminOnly")), 1);
    json_decref(j);
    adg_test_rmtree(root);
}

/* This machine as it is: a real gathering that must not fail, whatever is installed. */
static void test_gather_here(void **state)
{
    (void)state;
    gpu_facts f;
    gpu_facts_gather(&f);
    assert_true(f.ncpus_allowed > 0);
    assert_true(f.cpus_allowed[0] != '\0');
    size_t n = gpu_diagnose(&f, causes, 16);
    if (!f.kmod_loaded && !f.lib_loaded) {
        assert_int_equal(n, 1);
        assert_string_equal(causes[0].id, "no_driver");
    }
    if (f.cupti_found)
        assert_true(f.cupti_version > 0);
}

/* The toolkit's stub libcuda: cuInit says CUDA_ERROR_STUB_LIBRARY (34). */
static void test_stub_libcuda(void **state)
{
    (void)state;
    static const char *stubs[] = {"/usr/local/cuda/lib/stubs/libcuda.so", "/usr/local/cuda/lib64/stubs/libcuda.so",
                                  "/usr/local/cuda/targets/x86_64-linux/lib/stubs/libcuda.so"};
    const char *stub = NULL;
    struct stat st;
    for (size_t i = 0; i < sizeof stubs / sizeof stubs[0]; i++)
        if (stat(stubs[i], &st) == 0)
            stub = stubs[i];
    if (!stub)
        ADG_SKIP("no CUDA toolkit stub libcuda.so here");
    setenv("AMXDIAG_LIBCUDA", stub, 1);
    gpu_facts f;
    gpu_facts_gather(&f);
    unsetenv("AMXDIAG_LIBCUDA");
    assert_true(f.lib_loaded);
    assert_true(f.init_called);
    assert_int_equal(f.init_rc, 34);
    assert_string_equal(f.init_name, "CUDA_ERROR_STUB_LIBRARY");
    size_t n = gpu_diagnose(&f, causes, 16);
    assert_non_null(find(n, "stub_library"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_driver),          cmocka_unit_test(test_healthy),
        cmocka_unit_test(test_libcuda_missing),    cmocka_unit_test(test_stub_and_mismatch),
        cmocka_unit_test(test_visible_empty),      cmocka_unit_test(test_visible_bad_index),
        cmocka_unit_test(test_device_nodes),       cmocka_unit_test(test_numa_seed),
        cmocka_unit_test(test_unexplained_and_info), cmocka_unit_test(test_gather_fake_tree),
        cmocka_unit_test(test_gather_here),        cmocka_unit_test(test_stub_libcuda),
        cmocka_unit_test(test_kmod_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

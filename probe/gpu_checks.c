/* GPU section of the probe: driver, devices, support matrix, functional test,
 * interference diagnosis, profiling permission and CUPTI. */
#include "probe/gpu_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "probe/probe.h"

size_t gpu_codes_from_fatbin(const fatbin_list *l, cc_code *codes, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n && n < max; i++) {
        const fatbin_entry *e = &l->v[i];
        if (e->kind != FATBIN_KIND_PTX && e->kind != FATBIN_KIND_ELF)
            continue;
        codes[n].ptx = e->kind == FATBIN_KIND_PTX;
        codes[n].arch = (int)e->arch;
        codes[n].variant = e->variant;
        codes[n].ptx_isa = (int)e->ptx_isa;
        n++;
    }
    return n;
}

void gpu_add_causes(probe_report *rep, const gpu_facts *f)
{
    gpu_cause causes[16];
    size_t n = gpu_diagnose(f, causes, ADG_ARRAY_LEN(causes));
    for (size_t i = 0; i < n; i++) {
        const gpu_cause *c = &causes[i];
        char id[64];
        if (!strcmp(c->id, "no_driver"))
            snprintf(id, sizeof id, "gpu.driver");
        else
            snprintf(id, sizeof id, "gpu.cause.%s", c->id);
        probe_check *k = probe_add(rep, "gpu", id, c->status, c->title, c->explanation, "%s", c->evidence);
        if (k && c->remedy[0])
            probe_check_set_remedy(k, "%s", c->remedy);
    }
}

static const char *compute_mode_name(int m)
{
    switch (m) {
    case 0: return "default";
    case 1: return "exclusive-thread";
    case 2: return "prohibited";
    case 3: return "exclusive-process";
    default: return "unknown";
    }
}

/* Driver branch and CC from the table; and whether amxdiag's own embedded kernels
 * (the fatbin nvcc built into this binary) have code for the CC. */
static void support_check(probe_report *rep, const gpu_facts *f, const gpu_dev *d)
{
    char id[48], reason[512], cc[16];
    snprintf(id, sizeof id, "gpu.%d.support", d->ordinal);
    cc_fmt(d->cc, cc, sizeof cc);
    bool ok = cc_driver_supports(d->cc, f->driver_branch, reason, sizeof reason);
    const void *fb = NULL;
    size_t fblen = 0;
    kern_cuda_embedded_fatbin(&fb, &fblen);
    cc_verdict v = {.outcome = CC_NATIVE};
    char own[600] = "amxdiag built without CUDA kernels";
    if (fb && fblen) {
        fatbin_list l = {0};
        adg_error *e = fatbin_parse(fb, fblen, &l);
        if (e) {
            snprintf(own, sizeof own, "amxdiag's embedded fatbin cannot be read: %s", adg_error_msg(e));
            adg_error_free(e);
        } else {
            cc_code codes[64];
            size_t nc = gpu_codes_from_fatbin(&l, codes, ADG_ARRAY_LEN(codes));
            cc_evaluate(codes, nc, d->cc, f->driver_cuda, &v);
            snprintf(own, sizeof own, "amxdiag's kernels: %s", v.reason);
        }
        fatbin_list_free(&l);
    }
    probe_status st = !ok ? PROBE_FAIL : v.outcome == CC_NATIVE ? PROBE_PASS : v.outcome == CC_JIT ? PROBE_WARN : PROBE_FAIL;
    char title[160];
    snprintf(title, sizeof title, "GPU %d (CC %s) is supported by this driver", d->ordinal, cc);
    probe_check *c = probe_add(rep, "gpu", id, st, title,
                               !ok ? "the driver is older than this GPU's architecture needs"
                                   : "the driver supports this compute capability; code built for it runs",
                               "%s; %s", reason, own);
    if (c && !ok) {
        const cc_row *r = cc_lookup(d->cc);
        probe_check_set_remedy(c, "install NVIDIA driver %d or newer (and build with CUDA toolkit %d.%d or newer)",
                               r ? r->min_driver : 580, r ? r->min_toolkit / 1000 : 13, r ? (r->min_toolkit % 1000) / 10 : 0);
    } else if (c && st != PROBE_PASS) {
        probe_check_set_remedy(c, "rebuild amxdiag with a toolkit that knows sm_%d", d->cc);
    }
}

static void binding_check(probe_report *rep, const gpu_facts *f, const gpu_dev *d)
{
    char id[48], title[96];
    snprintf(id, sizeof id, "gpu.%d.numa", d->ordinal);
    snprintf(title, sizeof title, "GPU %d and this process share a NUMA node", d->ordinal);
    if (d->numa_node < 0) {
        probe_add(rep, "gpu", id, PROBE_INFO, title,
                  "the platform reports no NUMA node for this PCI device (single-node machine or VM)",
                  "%s numa_node=%d", d->bus_id, d->numa_node == GPU_NUMA_UNKNOWN ? -2 : d->numa_node);
        return;
    }
    char cpus[64];
    gpu_fmt_nodes(f->cpu_node_mask, cpus, sizeof cpus);
    bool cpu_ok = !f->cpu_node_mask || (f->cpu_node_mask >> d->numa_node) & 1;
    probe_add(rep, "gpu", id, cpu_ok ? PROBE_PASS : PROBE_WARN, title,
              cpu_ok ? "the process may run on the GPU's node" : "the process runs away from the GPU's node (see gpu.cause.numa_binding)",
              "GPU on node %d; process CPUs %s (nodes %s), memory policy %s", d->numa_node, f->cpus_allowed, cpus,
              gpu_mempolicy_name(f->mempolicy));
}

static void profiling_checks(probe_report *rep, const gpu_facts *f, bool have_driver)
{
    probe_check *c;
    if (f->rm_profiling_admin_only < 0) {
        probe_add(rep, "gpu", "gpu.profiling", have_driver ? PROBE_INFO : PROBE_SKIP,
                  "GPU performance counters are open to this user",
                  "RmProfilingAdminOnly could not be read from /proc/driver/nvidia/params", "not readable");
    } else if (f->rm_profiling_admin_only == 0 || f->is_root) {
        probe_add(rep, "gpu", "gpu.profiling", PROBE_PASS, "GPU performance counters are open to this user",
                  "CUPTI range/PM-sampling metrics (amxdiag profile --gpu-metrics, ncu) can run",
                  "RmProfilingAdminOnly=%d%s", f->rm_profiling_admin_only, f->is_root ? ", running as root" : "");
    } else {
        c = probe_add(rep, "gpu", "gpu.profiling", PROBE_WARN, "GPU performance counters are open to this user",
                      "GPU counters are restricted to administrators: kernel tracing works, hardware metrics fail "
                      "with CUPTI_ERROR_INSUFFICIENT_PRIVILEGES / ERR_NVGPUCTRPERM",
                      "RmProfilingAdminOnly=1 and not root");
        probe_check_set_remedy(c, "run as root, or set `options nvidia NVreg_RestrictProfilingToAdminUsers=0` in "
                                  "/etc/modprobe.d and reload the module (reboot)");
    }
    if (f->cupti_found) {
        probe_add(rep, "gpu", "gpu.cupti", PROBE_PASS, "CUPTI can be loaded",
                  "kernel tracing (amxdiag profile, the injection library) can use CUPTI",
                  "%s, cuptiGetVersion = %u", f->cupti_path, f->cupti_version);
    } else {
        c = probe_add(rep, "gpu", "gpu.cupti", have_driver ? PROBE_WARN : PROBE_INFO, "CUPTI can be loaded",
                      "without CUPTI, GPU kernel tracing is unavailable", "%s", f->cupti_error);
        probe_check_set_remedy(c, "install the CUDA toolkit's CUPTI (cuda-cupti-13-0) or point AMXDIAG_LIBCUPTI at "
                                  "libcupti.so");
    }
}

adg_error *probe_gpu_section(const probe_opts *opts, probe_report *rep)
{
    if (opts->snapshot_in) {
        /* Snapshots record the CPU-side inputs; mixing this machine's GPUs into another
         * machine's report would mislead. */
        probe_add(rep, "gpu", "gpu.driver", PROBE_SKIP, "NVIDIA driver",
                  "GPU facts are not part of snapshots: run the probe on that machine", "evaluating snapshot %s",
                  opts->snapshot_in);
        return NULL;
    }
    const gpu_facts *f = gpu_facts_get();
    json_t *fj = gpu_facts_json(f);
    const char *key;
    json_t *val;
    json_object_foreach(fj, key, val) probe_report_set_fact(rep, "gpu", key, json_incref(val));
    json_decref(fj);

    bool no_driver = !f->kmod_loaded && !f->lib_loaded && f->nkgpus == 0;
    if (no_driver) {
        gpu_add_causes(rep, f); /* the single SKIP "no NVIDIA driver" */
        profiling_checks(rep, f, false);
        return NULL;
    }
    char cuda[16];
    probe_check *c;
    if (f->lib_loaded) {
        c = probe_add(rep, "gpu", "gpu.driver", PROBE_PASS, "NVIDIA driver",
                      "the kernel module and the user-space driver are present",
                      "kernel module %s; %s (CUDA %s)", f->kmod_loaded ? (f->kmod_version[0] ? f->kmod_version : "loaded")
                                                                        : "not visible",
                      f->lib_path, cc_fmt_cuda(f->driver_cuda, cuda, sizeof cuda));
    }
    if (f->init_called) {
        if (f->init_rc == 0) {
            probe_add(rep, "gpu", "gpu.init", f->dev_count > 0 ? PROBE_PASS : PROBE_FAIL, "CUDA initialises and sees GPUs",
                      f->dev_count > 0 ? "cuInit succeeded" : "cuInit succeeded but reports no device",
                      "cuInit: CUDA_SUCCESS; %d device%s (kernel module lists %d)", f->dev_count,
                      f->dev_count == 1 ? "" : "s", f->nkgpus);
        } else {
            c = probe_add(rep, "gpu", "gpu.init", PROBE_FAIL, "CUDA initialises and sees GPUs",
                          gpu_init_meaning(f->init_rc), "cuInit: %s (%d): %s; kernel module lists %d GPU%s", f->init_name,
                          f->init_rc, f->init_text, f->nkgpus, f->nkgpus == 1 ? "" : "s");
            probe_check_set_remedy(c, "see the gpu.cause.* checks for the cause and its fix");
        }
    }
    gpu_add_causes(rep, f);
    for (int i = 0; i < f->ndevs; i++) {
        const gpu_dev *d = &f->devs[i];
        char id[48], mem[32], cc[16], title[96], node[16];
        snprintf(id, sizeof id, "gpu.%d.device", d->ordinal);
        if (d->numa_node == GPU_NUMA_UNKNOWN)
            snprintf(node, sizeof node, "unknown");
        else if (d->numa_node < 0)
            snprintf(node, sizeof node, "none (-1)");
        else
            snprintf(node, sizeof node, "%d", d->numa_node);
        snprintf(title, sizeof title, "GPU %d", d->ordinal);
        c = probe_add(rep, "gpu", id, PROBE_INFO, title, "identity and placement",
                      "%s, CC %s, %d SMs, %s, PCI %s, NUMA node %s, compute mode %s, persistence %s", d->name,
                      cc_fmt(d->cc, cc, sizeof cc), d->sms, adg_fmt_bytes((double)d->mem_bytes, mem, sizeof mem),
                      d->bus_id, node,
                      compute_mode_name(d->compute_mode),
                      d->persistence < 0 ? "unknown (no NVML)" : d->persistence ? "on" : "off");
        support_check(rep, f, d);
        binding_check(rep, f, d);
        if (d->compute_mode == 2) {
            c = probe_add(rep, "gpu", "gpu.compute_mode", PROBE_FAIL, "compute mode allows contexts",
                          "compute mode 'prohibited': no process can create a context", "GPU %d", d->ordinal);
            probe_check_set_remedy(c, "nvidia-smi -i %d -c DEFAULT", d->ordinal);
        }
        gpu_selftest_check(rep, d, KERN_CUDA_LOAD_AUTO);
        gpu_selftest_check(rep, d, KERN_CUDA_LOAD_FORCE_PTX);
    }
    profiling_checks(rep, f, true);
    return NULL;
}

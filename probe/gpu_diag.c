/* Why CUDA sees fewer GPUs than the machine has: a pure function of gpu_facts, so every
 * cause is tested with synthetic facts (tests/unit/test_probe_gpu_diag.c). */
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe/cc_matrix.h"
#include "probe/gpu_facts.h"

const char *gpu_init_meaning(int rc)
{
    switch (rc) {
    case 0: return "success";
    case 2: return "the driver ran out of memory while initialising (host memory limits or a strict NUMA memory binding)";
    case 3: return "the driver is not initialised";
    case 34: return "this libcuda is the toolkit's link stub (cuda/lib64/stubs), not the driver";
    case 46: return "every GPU is busy or unavailable (exclusive-process compute mode held by another process)";
    case 100: return "no CUDA-capable device is visible to this process: CUDA_VISIBLE_DEVICES hides them, their "
                     "device nodes are missing or inaccessible, or none is installed";
    case 101: return "an invalid device ordinal was used";
    case 304: return "an operating-system call failed inside the driver (device node, mmap or memory-lock limit)";
    case 802: return "the system is not ready: on NVSwitch systems the fabric manager is not running";
    case 803: return "the user-space driver (libcuda) and the kernel module are different versions";
    case 804: return "forward-compatibility libcuda used on a GPU that does not support it";
    case 999: return "unknown error: often the kernel module failed to bring the GPU up (dmesg: NVRM/Xid), or "
                     "/dev/nvidia-uvm is missing";
    default: return "see the CUDA driver API documentation for this code";
    }
}

bool gpu_facts_cuda_failed(const gpu_facts *f)
{
    if (!f->lib_loaded)
        return f->kmod_loaded || f->nkgpus > 0;
    if (f->init_called && f->init_rc != 0)
        return true;
    return f->dev_count == 0;
}

static gpu_cause *add(gpu_cause *out, size_t max, size_t *n, const char *id, probe_status st, const char *title)
{
    if (*n >= max)
        return NULL;
    gpu_cause *c = &out[(*n)++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->title, sizeof c->title, "%s", title);
    c->status = st;
    return c;
}

static bool is_uint(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* How many leading CUDA_VISIBLE_DEVICES entries name a GPU this machine has (CUDA stops
 * at the first entry that does not).  total = entries. bad = the first bad one. */
static int visible_valid_prefix(const gpu_facts *f, int *total, char *bad, size_t badlen)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", f->visible);
    int valid = 0, n = 0;
    bool stopped = false;
    bad[0] = '\0';
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ')
            *--end = '\0';
        n++;
        if (stopped)
            continue;
        bool ok = false;
        if (is_uint(tok)) {
            long idx = strtol(tok, NULL, 10);
            ok = f->nkgpus > 0 ? idx < f->nkgpus : idx < GPU_MAX_DEVS;
        } else if (!strncmp(tok, "GPU-", 4)) {
            for (int i = 0; i < f->nkgpus && !ok; i++)
                ok = f->kgpus[i].uuid[0] && !strncmp(f->kgpus[i].uuid, tok, strlen(tok));
            if (f->nkgpus == 0)
                ok = true; /* cannot check */
        } else if (!strncmp(tok, "MIG-", 4)) {
            ok = true;
        }
        if (ok) {
            valid++;
        } else {
            stopped = true;
            snprintf(bad, badlen, "%s", tok);
        }
    }
    *total = n;
    return valid;
}

static int physical_gpus(const gpu_facts *f)
{
    return f->nkgpus > f->dev_count ? f->nkgpus : (f->dev_count > 0 ? f->dev_count : 0);
}

static void diag_visible(const gpu_facts *f, bool failed, gpu_cause *out, size_t max, size_t *n)
{
    if (!f->visible_set)
        return;
    int total = 0;
    char bad[64];
    int valid = visible_valid_prefix(f, &total, bad, sizeof bad);
    int phys = physical_gpus(f);
    gpu_cause *c;
    if (valid == 0) {
        bool empty = total == 0;
        c = add(out, max, n, empty ? "visible_devices_empty" : "visible_devices_invalid",
                failed ? PROBE_FAIL : PROBE_WARN,
                empty ? "CUDA_VISIBLE_DEVICES hides every GPU" : "CUDA_VISIBLE_DEVICES names no existing GPU");
        if (!c)
            return;
        if (empty)
            snprintf(c->evidence, sizeof c->evidence, "CUDA_VISIBLE_DEVICES=\"%s\" (set, empty); the kernel module lists %d GPU%s",
                     f->visible, phys, phys == 1 ? "" : "s");
        else
            snprintf(c->evidence, sizeof c->evidence,
                     "CUDA_VISIBLE_DEVICES=\"%s\": \"%s\" is not a GPU of this machine (it has %d GPU%s, valid "
                     "indices 0..%d)",
                     f->visible, bad, phys, phys == 1 ? "" : "s", phys > 0 ? phys - 1 : 0);
        snprintf(c->explanation, sizeof c->explanation,
                 "CUDA only sees the GPUs CUDA_VISIBLE_DEVICES lists, up to the first entry that names no GPU; "
                 "here that leaves none, so cuInit/cudaGetDeviceCount report \"no CUDA-capable device is detected\"");
        snprintf(c->remedy, sizeof c->remedy,
                 "unset CUDA_VISIBLE_DEVICES, or set it to existing indices or UUIDs (0%s; nvidia-smi -L lists "
                 "them)",
                 phys > 1 ? ",1,..." : "");
        return;
    }
    if (valid < total) {
        c = add(out, max, n, "visible_devices_invalid", PROBE_WARN, "CUDA_VISIBLE_DEVICES has an entry that names no GPU");
        if (!c)
            return;
        snprintf(c->evidence, sizeof c->evidence, "CUDA_VISIBLE_DEVICES=\"%s\": \"%s\" names no GPU; %d of %d entries used",
                 f->visible, bad, valid, total);
        snprintf(c->explanation, sizeof c->explanation,
                 "CUDA ignores every entry from the first invalid one on, so GPUs listed after it are hidden");
        snprintf(c->remedy, sizeof c->remedy, "remove \"%s\" from CUDA_VISIBLE_DEVICES", bad);
        return;
    }
    if (!failed && valid < phys) {
        c = add(out, max, n, "visible_devices_subset", PROBE_INFO, "CUDA_VISIBLE_DEVICES selects a subset");
        if (c) {
            snprintf(c->evidence, sizeof c->evidence, "CUDA_VISIBLE_DEVICES=\"%s\": %d of %d GPUs visible", f->visible,
                     valid, phys);
            snprintf(c->explanation, sizeof c->explanation, "the other GPUs are hidden from CUDA in this process");
        }
    }
}

static void diag_nodes(const gpu_facts *f, bool failed, gpu_cause *out, size_t max, size_t *n)
{
    if (!f->kmod_loaded)
        return;
    char missing[256] = "", denied[256] = "", cgroup[256] = "";
    size_t um = 0, ud = 0, uc = 0;
    for (int i = 0; i < f->nnodes; i++) {
        const gpu_node *nd = &f->nodes[i];
        int w;
        if (!nd->exists) {
            w = snprintf(missing + um, sizeof missing - um, "%s%s", um ? ", " : "", nd->path);
            if (w > 0 && (size_t)w < sizeof missing - um)
                um += (size_t)w;
        } else if (!nd->access_ok) {
            w = snprintf(denied + ud, sizeof denied - ud, "%s%s (mode %04o, uid %u, gid %u)", ud ? ", " : "", nd->path,
                         nd->mode, nd->uid, nd->gid);
            if (w > 0 && (size_t)w < sizeof denied - ud)
                ud += (size_t)w;
        } else if (nd->open_errno == 1 /* EPERM */) {
            w = snprintf(cgroup + uc, sizeof cgroup - uc, "%s%s", uc ? ", " : "", nd->path);
            if (w > 0 && (size_t)w < sizeof cgroup - uc)
                uc += (size_t)w;
        }
    }
    gpu_cause *c;
    if (um && (c = add(out, max, n, "device_nodes_missing", failed ? PROBE_FAIL : PROBE_WARN,
                       "NVIDIA device nodes are missing"))) {
        snprintf(c->evidence, sizeof c->evidence, "missing: %s", missing);
        snprintf(c->explanation, sizeof c->explanation,
                 "libcuda talks to the GPUs through /dev/nvidiactl, /dev/nvidia<N> and /dev/nvidia-uvm; without them "
                 "the GPU is invisible (a container started without its GPUs, or nvidia-modprobe never ran)");
        snprintf(c->remedy, sizeof c->remedy,
                 "in a container: start it with the GPUs (docker run --gpus all, or --device for each node); on the "
                 "host: run nvidia-modprobe -u -c=0 (or nvidia-smi once as root) to create the nodes");
    }
    if (ud && (c = add(out, max, n, "device_nodes_permission", failed ? PROBE_FAIL : PROBE_WARN,
                       "NVIDIA device nodes are not accessible"))) {
        snprintf(c->evidence, sizeof c->evidence, "no read/write access: %s", denied);
        snprintf(c->explanation, sizeof c->explanation,
                 "this user cannot open the device nodes, so the driver reports no device");
        snprintf(c->remedy, sizeof c->remedy,
                 "add the user to the group that owns the nodes (often video or render) and log in again, or set "
                 "the driver option NVreg_DeviceFileMode/NVreg_DeviceFileGID");
    }
    if (uc && (c = add(out, max, n, "device_cgroup", failed ? PROBE_FAIL : PROBE_WARN,
                       "a device cgroup denies the NVIDIA device nodes"))) {
        snprintf(c->evidence, sizeof c->evidence, "open() fails with EPERM although the mode allows it: %s", cgroup);
        snprintf(c->explanation, sizeof c->explanation,
                 "the nodes exist and their permissions allow access, but the cgroup device controller (container "
                 "runtime or systemd DeviceAllow=) forbids them");
        snprintf(c->remedy, sizeof c->remedy,
                 "allow character devices 195:* and the nvidia-uvm major (docker: --gpus all; systemd: "
                 "DeviceAllow=/dev/nvidia* rw)");
    }
}

static void diag_binding(const gpu_facts *f, bool failed, bool explained, gpu_cause *out, size_t max, size_t *n)
{
    /* The GPUs and their NUMA nodes: CUDA's list when it has one, else the kernel's. */
    uint64_t gpu_nodes = 0;
    char names[256] = "";
    size_t used = 0;
    int ng = f->ndevs ? f->ndevs : f->nkgpus;
    for (int i = 0; i < ng; i++) {
        int node = f->ndevs ? f->devs[i].numa_node : f->kgpus[i].numa_node;
        const char *bus = f->ndevs ? f->devs[i].bus_id : f->kgpus[i].bus_id;
        if (node < 0 || node >= 64)
            continue;
        gpu_nodes |= 1ull << node;
        int w = snprintf(names + used, sizeof names - used, "%sGPU %s on node %d", used ? ", " : "", bus, node);
        if (w > 0 && (size_t)w < sizeof names - used)
            used += (size_t)w;
    }
    if (!gpu_nodes)
        return; /* single-node machines and VMs report -1: nothing to compare */
    bool cpu_excl = f->cpu_node_mask && !(f->cpu_node_mask & gpu_nodes);
    bool strict_mem = f->mempolicy == MPOL_BIND || f->mempolicy == MPOL_PREFERRED_MANY || f->mempolicy == MPOL_INTERLEAVE;
    bool mem_excl = strict_mem && f->mem_node_mask && !(f->mem_node_mask & gpu_nodes);
    if (!cpu_excl && !mem_excl)
        return;
    probe_status st = failed && !explained ? PROBE_FAIL : PROBE_WARN;
    gpu_cause *c = add(out, max, n, "numa_binding", st,
                       failed && !explained ? "the process is bound away from the GPU's NUMA node"
                                            : "CPU/memory binding excludes the GPU's NUMA node");
    if (!c)
        return;
    char cpus[24], mem[24], gn[24];
    gpu_fmt_nodes(f->cpu_node_mask, cpus, sizeof cpus);
    gpu_fmt_nodes(f->mem_node_mask, mem, sizeof mem);
    gpu_fmt_nodes(gpu_nodes, gn, sizeof gn);
    snprintf(c->evidence, sizeof c->evidence, "%s; this process runs on CPUs %s (node%s %s), memory policy %s%s%s%s",
             names, f->cpus_allowed[0] ? f->cpus_allowed : "?", strchr(cpus, ',') || strchr(cpus, '-') ? "s" : "", cpus,
             gpu_mempolicy_name(f->mempolicy), strict_mem ? " (nodes " : "", strict_mem ? mem : "", strict_mem ? ")" : "");
    if (failed && !explained)
        snprintf(c->explanation, sizeof c->explanation,
                 "CUDA initialisation failed while the process is %s%s%s the node the GPU is attached to: the "
                 "driver allocates its host-side structures and pinned buffers under this policy and can fail "
                 "to bring the device up (the seed report: `numactl -N 2,3 -m 2,3` with the GPU on node 0 gave "
                 "\"no CUDA-capable device is detected\")",
                 cpu_excl ? "running on CPUs away from" : "", cpu_excl && mem_excl ? " and binding memory away from" : "",
                 !cpu_excl && mem_excl ? "binding its memory away from" : "");
    else
        snprintf(c->explanation, sizeof c->explanation,
                 "host<->GPU copies and pinned buffers cross the inter-socket link: lower bandwidth and higher "
                 "latency than on the GPU's node");
    snprintf(c->remedy, sizeof c->remedy,
             "run the CUDA process on the GPU's node: numactl -N %s -m %s <cmd>; or keep the CPU binding and give "
             "memory a policy that includes node %s: numactl -N %s -m %s,%s <cmd> (or --preferred=%s)",
             gn, gn, gn, cpus, gn, mem[0] != 'n' && strict_mem ? mem : cpus, gn);
}

size_t gpu_diagnose(const gpu_facts *f, gpu_cause *out, size_t max)
{
    size_t n = 0;
    gpu_cause *c;
    char have[16];
    if (!f->kmod_loaded && !f->lib_loaded && f->nkgpus == 0) {
        if ((c = add(out, max, &n, "no_driver", PROBE_SKIP, "NVIDIA driver"))) {
            snprintf(c->evidence, sizeof c->evidence, "/proc/driver/nvidia absent; %s",
                     f->lib_error[0] ? f->lib_error : "libcuda.so.1 not found");
            snprintf(c->explanation, sizeof c->explanation,
                     "no NVIDIA driver on this machine: GPU checks are skipped (--binary verdicts still work with --cc)");
        }
        return n;
    }
    bool failed = gpu_facts_cuda_failed(f);
    if (!f->lib_loaded) {
        if ((c = add(out, max, &n, "libcuda_missing", PROBE_FAIL, "the user-space driver (libcuda) is missing"))) {
            snprintf(c->evidence, sizeof c->evidence, "kernel module %s loaded; %s",
                     f->kmod_version[0] ? f->kmod_version : "", f->lib_error);
            snprintf(c->explanation, sizeof c->explanation,
                     "the NVIDIA kernel module is loaded but libcuda.so.1 cannot be loaded, so no CUDA program can run");
            snprintf(c->remedy, sizeof c->remedy,
                     "install the driver's user-space part matching the module (libnvidia-compute-%d or the .run "
                     "installer), or in a container mount it with the NVIDIA container toolkit",
                     f->driver_branch ? f->driver_branch : 580);
        }
        return n;
    }
    bool explained = false;
    if (f->init_called && f->init_rc == 34 && (c = add(out, max, &n, "stub_library", PROBE_FAIL, "libcuda is the toolkit stub"))) {
        snprintf(c->evidence, sizeof c->evidence, "cuInit: CUDA_ERROR_STUB_LIBRARY (34); loaded %s", f->lib_path);
        snprintf(c->explanation, sizeof c->explanation, "%s", gpu_init_meaning(34));
        snprintf(c->remedy, sizeof c->remedy,
                 "remove .../cuda/lib64/stubs from LD_LIBRARY_PATH (it is for linking only) and install the driver");
        explained = true;
    }
    if (f->init_called && f->init_rc == 803 &&
        (c = add(out, max, &n, "driver_mismatch", PROBE_FAIL, "libcuda and the kernel module differ"))) {
        snprintf(c->evidence, sizeof c->evidence, "cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803); kernel module %s, libcuda %s (CUDA %s)",
                 f->kmod_version[0] ? f->kmod_version : "?", f->lib_path, cc_fmt_cuda(f->driver_cuda, have, sizeof have));
        snprintf(c->explanation, sizeof c->explanation, "%s", gpu_init_meaning(803));
        snprintf(c->remedy, sizeof c->remedy, "reboot after a driver upgrade, or reinstall one driver version");
        explained = true;
    }
    if (!f->kmod_loaded && failed && !explained &&
        (c = add(out, max, &n, "kernel_module_missing", PROBE_FAIL, "the NVIDIA kernel module is not loaded"))) {
        snprintf(c->evidence, sizeof c->evidence, "/proc/driver/nvidia absent; libcuda %s loaded; cuInit: %s (%d)",
                 f->lib_path, f->init_name, f->init_rc);
        snprintf(c->explanation, sizeof c->explanation,
                 "libcuda is installed but the kernel module is not loaded (or /proc is not that of the host)");
        snprintf(c->remedy, sizeof c->remedy,
                 "load it (sudo modprobe nvidia nvidia-uvm; dmesg shows why it fails, e.g. Secure Boot or a kernel "
                 "update without DKMS rebuild)");
        explained = true;
    }
    size_t before = n;
    diag_visible(f, failed, out, max, &n);
    for (int i = 0; i < f->nkgpus; i++) {
        if (!f->kgpus[i].excluded)
            continue;
        if ((c = add(out, max, &n, "gpu_excluded", failed ? PROBE_FAIL : PROBE_WARN, "a GPU is excluded by the driver"))) {
            snprintf(c->evidence, sizeof c->evidence, "/proc/driver/nvidia/gpus/%s/information: GPU Excluded: Yes",
                     f->kgpus[i].bus_id);
            snprintf(c->explanation, sizeof c->explanation,
                     "the kernel module keeps this GPU from CUDA (NVreg_ExcludedGpus, or it failed its start-up checks)");
            snprintf(c->remedy, sizeof c->remedy, "check dmesg for NVRM messages about %s and the NVreg_ExcludedGpus option",
                     f->kgpus[i].bus_id);
        }
        break;
    }
    diag_nodes(f, failed, out, max, &n);
    for (size_t i = before; i < n; i++)
        if (out[i].status == PROBE_FAIL)
            explained = true;
    diag_binding(f, failed, explained, out, max, &n);
    for (size_t i = 0; i < n; i++)
        if (out[i].status == PROBE_FAIL)
            explained = true;
    if (f->ndevs >= 2 && (!f->order_set || strcmp(f->order, "PCI_BUS_ID") != 0) &&
        (c = add(out, max, &n, "device_order", PROBE_INFO, "CUDA device order differs from nvidia-smi's"))) {
        snprintf(c->evidence, sizeof c->evidence, "CUDA_DEVICE_ORDER=%s; %d GPUs", f->order_set ? f->order : "(unset: FASTEST_FIRST)",
                 f->ndevs);
        snprintf(c->explanation, sizeof c->explanation,
                 "CUDA numbers GPUs fastest first, nvidia-smi by PCI bus id: \"GPU 1\" may name different cards");
        snprintf(c->remedy, sizeof c->remedy, "export CUDA_DEVICE_ORDER=PCI_BUS_ID so that indices agree with nvidia-smi");
    }
    if (failed && !explained && (c = add(out, max, &n, "init_error", PROBE_FAIL, "CUDA initialisation failed"))) {
        if (f->init_called && f->init_rc)
            snprintf(c->evidence, sizeof c->evidence, "cuInit: %s (%d): %s", f->init_name, f->init_rc, f->init_text);
        else
            snprintf(c->evidence, sizeof c->evidence, "cuInit succeeded but reports %d devices; the kernel module lists %d",
                     f->dev_count, f->nkgpus);
        snprintf(c->explanation, sizeof c->explanation, "%s", gpu_init_meaning(f->init_rc ? f->init_rc : 100));
        snprintf(c->remedy, sizeof c->remedy,
                 "check nvidia-smi and dmesg (NVRM, Xid); no environment, device-node or binding cause was found");
    }
    return n;
}

/* Gathering the GPU facts: /proc/driver/nvidia, sysfs, /dev/nvidia*, the environment,
 * this process's CPU and memory binding; the driver and CUPTI parts are in cuda_probe.c. */
#include "probe/gpu_facts.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/cc_matrix.h"
#include "probe/cuda_probe.h"

static const char *proc_root(void)
{
    /* Tests point this at a fake tree; users never need it. */
    const char *r = getenv("AMXDIAG_GPU_PROC_ROOT");
    return r && *r ? r : "";
}

static bool read_small(const char *path, char *buf, size_t len)
{
    char *data = NULL;
    size_t n = 0;
    adg_error *e = adg_read_file(path, 64 * 1024, &data, &n);
    if (e) {
        adg_error_free(e);
        return false;
    }
    snprintf(buf, len, "%s", data);
    free(data);
    return true;
}

/* "Key:   value" from a /proc information file. */
static bool field(const char *text, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            const char *v = line + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t i = 0;
            while (v[i] && v[i] != '\n' && i + 1 < len) {
                out[i] = v[i];
                i++;
            }
            out[i] = '\0';
            adg_rstrip(out);
            return true;
        }
    }
    return false;
}

void gpu_bus_normalise(const char *in, char *out, size_t len)
{
    /* CUDA writes "00000000:17:00.0" or "0000:17:00.0"; sysfs "0000:17:00.0". */
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    if (sscanf(in, "%x:%x:%x.%x", &dom, &bus, &dev, &fn) == 4)
        snprintf(out, len, "%04x:%02x:%02x.%x", dom & 0xffff, bus, dev, fn);
    else
        snprintf(out, len, "%s", in);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

int gpu_sysfs_numa_node(const char *bus_id)
{
    char path[256], buf[32];
    snprintf(path, sizeof path, "%s/sys/bus/pci/devices/%s/numa_node", proc_root(), bus_id);
    if (!read_small(path, buf, sizeof buf))
        return GPU_NUMA_UNKNOWN;
    int64_t v;
    adg_rstrip(buf);
    return adg_parse_i64(buf, &v) ? (int)v : GPU_NUMA_UNKNOWN;
}

void gpu_parse_kmod_version(const char *text, char *out, size_t len)
{
    /* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..." or
     * "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...":
     * the first whitespace-separated token made of digits and dots, with a dot in it. */
    out[0] = '\0';
    const char *line_end = strchr(text, '\n');
    size_t n = line_end ? (size_t)(line_end - text) : strlen(text);
    for (size_t i = 0; i < n;) {
        while (i < n && isspace((unsigned char)text[i]))
            i++;
        size_t start = i, dots = 0;
        bool numeric = true;
        while (i < n && !isspace((unsigned char)text[i])) {
            if (text[i] == '.')
                dots++;
            else if (!isdigit((unsigned char)text[i]))
                numeric = false;
            i++;
        }
        size_t tl = i - start;
        if (numeric && dots && tl < len && isdigit((unsigned char)text[start])) {
            memcpy(out, text + start, tl);
            out[tl] = '\0';
            return;
        }
    }
}

static void gather_kmod(gpu_facts *f)
{
    char path[256], buf[512];
    snprintf(path, sizeof path, "%s/proc/driver/nvidia/version", proc_root());
    if (read_small(path, buf, sizeof buf)) {
        f->kmod_loaded = true;
        gpu_parse_kmod_version(buf, f->kmod_version, sizeof f->kmod_version);
        f->driver_branch = atoi(f->kmod_version);
    } else {
        snprintf(path, sizeof path, "%s/proc/driver/nvidia", proc_root());
        struct stat st;
        f->kmod_loaded = stat(path, &st) == 0;
    }
    snprintf(path, sizeof path, "%s/proc/driver/nvidia/gpus", proc_root());
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL && f->nkgpus < GPU_MAX_DEVS) {
            if (de->d_name[0] == '.')
                continue;
            char ipath[800], *text = NULL;
            size_t n = 0;
            snprintf(ipath, sizeof ipath, "%s/%s/information", path, de->d_name);
            adg_error *e = adg_read_file(ipath, 64 * 1024, &text, &n);
            gpu_kgpu *g = &f->kgpus[f->nkgpus++];
            memset(g, 0, sizeof *g);
            g->minor = -1;
            gpu_bus_normalise(de->d_name, g->bus_id, sizeof g->bus_id);
            if (!e) {
                char v[128];
                field(text, "Model", g->model, sizeof g->model);
                field(text, "GPU UUID", g->uuid, sizeof g->uuid);
                if (field(text, "Device Minor", v, sizeof v))
                    g->minor = atoi(v);
                if (field(text, "GPU Excluded", v, sizeof v))
                    g->excluded = !strncmp(v, "Yes", 3);
                if (field(text, "Bus Location", v, sizeof v))
                    gpu_bus_normalise(v, g->bus_id, sizeof g->bus_id);
                free(text);
            } else {
                adg_error_free(e);
            }
            g->numa_node = gpu_sysfs_numa_node(g->bus_id);
        }
        closedir(d);
    }
    snprintf(path, sizeof path, "%s/proc/driver/nvidia/params", proc_root());
    f->rm_profiling_admin_only = -1;
    char *params = NULL;
    size_t n = 0;
    adg_error *e = adg_read_file(path, 256 * 1024, &params, &n);
    if (!e) {
        char v[32];
        if (field(params, "RmProfilingAdminOnly", v, sizeof v))
            f->rm_profiling_admin_only = atoi(v);
        free(params);
    } else {
        adg_error_free(e);
    }
}

static void add_node(gpu_facts *f, const char *name)
{
    if (f->nnodes >= GPU_MAX_NODES)
        return;
    gpu_node *n = &f->nodes[f->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->path, sizeof n->path, "/dev/%s", name);
    char full[300];
    snprintf(full, sizeof full, "%s/dev/%s", proc_root(), name);
    struct stat st;
    if (stat(full, &st) != 0)
        return;
    n->exists = true;
    n->mode = st.st_mode & 07777;
    n->uid = st.st_uid;
    n->gid = st.st_gid;
    n->access_ok = access(full, R_OK | W_OK) == 0;
    if (n->access_ok && S_ISCHR(st.st_mode)) {
        /* Opening a control node is harmless; a device cgroup says no here with EPERM
         * although the mode bits allow it. */
        int fd = open(full, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            n->open_errno = errno;
        else
            close(fd);
    }
}

static void gather_nodes(gpu_facts *f)
{
    add_node(f, "nvidiactl");
    add_node(f, "nvidia-uvm");
    for (int i = 0; i < f->nkgpus; i++) {
        char name[32];
        snprintf(name, sizeof name, "nvidia%d", f->kgpus[i].minor >= 0 ? f->kgpus[i].minor : i);
        add_node(f, name);
    }
}

static void gather_env(gpu_facts *f)
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (v) {
        f->visible_set = true;
        snprintf(f->visible, sizeof f->visible, "%s", v);
    }
    v = getenv("CUDA_DEVICE_ORDER");
    if (v) {
        f->order_set = true;
        snprintf(f->order, sizeof f->order, "%s", v);
    }
    f->is_root = geteuid() == 0;
    struct stat st;
    f->in_container = stat("/.dockerenv", &st) == 0 || stat("/run/.containerenv", &st) == 0;
    char buf[256];
    if (read_small("/proc/self/cgroup", buf, sizeof buf)) {
        adg_rstrip(buf);
        snprintf(f->cgroup, sizeof f->cgroup, "%s", buf);
    }
}

static void gather_binding(gpu_facts *f)
{
    f->mempolicy = -1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    f->ncpus_online = online > 0 ? (int)online : 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    bool have_aff = sched_getaffinity(0, sizeof set, &set) == 0;
    if (have_aff)
        f->ncpus_allowed = CPU_COUNT(&set);
    bool numa_ok = numa_available() >= 0;
    if (numa_ok)
        f->numa_nodes = numa_num_configured_nodes();
    /* The affinity as a CPU list ("0-3,8") and the nodes its CPUs belong to. */
    size_t used = 0;
    for (int c = 0; have_aff && c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        int end = c;
        while (end + 1 < CPU_SETSIZE && CPU_ISSET(end + 1, &set))
            end++;
        if (used + 16 < sizeof f->cpus_allowed) {
            int w = end > c ? snprintf(f->cpus_allowed + used, sizeof f->cpus_allowed - used, "%s%d-%d",
                                       used ? "," : "", c, end)
                            : snprintf(f->cpus_allowed + used, sizeof f->cpus_allowed - used, "%s%d", used ? "," : "", c);
            if (w > 0)
                used += (size_t)w;
        }
        for (int k = c; numa_ok && k <= end; k++) {
            int node = numa_node_of_cpu(k);
            if (node >= 0 && node < 64)
                f->cpu_node_mask |= 1ull << node;
        }
        c = end;
    }
    int mode = 0;
    unsigned long mask[16] = {0};
    if (get_mempolicy(&mode, mask, sizeof mask * 8, NULL, 0) == 0) {
        f->mempolicy = mode & ~(MPOL_F_NUMA_BALANCING);
        f->mem_node_mask = mask[0];
    }
}

void gpu_facts_gather(gpu_facts *f)
{
    memset(f, 0, sizeof *f);
    f->dev_count = -1;
    gather_kmod(f);
    gather_nodes(f);
    gather_env(f);
    gather_binding(f);
    cuda_probe_driver(f);
    cuda_probe_nvml(f);
    cuda_probe_cupti(f);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static gpu_facts cached;

static void gather_once(void)
{
    gpu_facts_gather(&cached);
}

const gpu_facts *gpu_facts_get(void)
{
    pthread_once(&once, gather_once);
    return &cached;
}

const char *gpu_fmt_nodes(uint64_t mask, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < 64; i++) {
        if (!(mask & (1ull << i)))
            continue;
        int end = i;
        while (end + 1 < 64 && (mask & (1ull << (end + 1))))
            end++;
        int w = end > i ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", i, end)
                        : snprintf(buf + used, len - used, "%s%d", used ? "," : "", i);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
        i = end;
    }
    if (!used)
        snprintf(buf, len, "none");
    return buf;
}

static const char *policy_name(int p)
{
    switch (p) {
    case MPOL_DEFAULT: return "default";
    case MPOL_PREFERRED: return "preferred";
    case MPOL_BIND: return "bind";
    case MPOL_INTERLEAVE: return "interleave";
    case MPOL_LOCAL: return "local";
    case MPOL_PREFERRED_MANY: return "preferred-many";
    default: return "unknown";
    }
}

const char *gpu_mempolicy_name(int p)
{
    return policy_name(p);
}

json_t *gpu_facts_json(const gpu_facts *f)
{
    char buf[128];
    json_t *j = json_object();
    json_object_set_new(j, "kernel_module", f->kmod_loaded ? json_string(f->kmod_version[0] ? f->kmod_version : "loaded")
                                                           : json_null());
    json_object_set_new(j, "libcuda", f->lib_loaded ? json_string(f->lib_path) : json_null());
    if (!f->lib_loaded && f->lib_error[0])
        json_object_set_new(j, "libcuda_error", json_string(f->lib_error));
    json_object_set_new(j, "driver_cuda_version", f->driver_cuda ? json_string(cc_fmt_cuda(f->driver_cuda, buf, sizeof buf))
                                                                 : json_null());
    if (f->init_called) {
        json_t *i = json_object();
        json_object_set_new(i, "code", json_integer(f->init_rc));
        json_object_set_new(i, "name", json_string(f->init_name));
        json_object_set_new(i, "text", json_string(f->init_text));
        json_object_set_new(j, "cuInit", i);
    }
    json_object_set_new(j, "cuda_device_count", json_integer(f->dev_count));
    json_t *devs = json_array();
    for (int i = 0; i < f->ndevs; i++) {
        const gpu_dev *d = &f->devs[i];
        json_t *o = json_object();
        json_object_set_new(o, "ordinal", json_integer(d->ordinal));
        json_object_set_new(o, "name", json_string(d->name));
        snprintf(buf, sizeof buf, "%d.%d", d->cc / 10, d->cc % 10);
        json_object_set_new(o, "cc", json_string(buf));
        json_object_set_new(o, "sms", json_integer(d->sms));
        json_object_set_new(o, "memory_bytes", json_integer((json_int_t)d->mem_bytes));
        json_object_set_new(o, "pci_bus_id", json_string(d->bus_id));
        json_object_set_new(o, "numa_node", d->numa_node == GPU_NUMA_UNKNOWN ? json_null() : json_integer(d->numa_node));
        json_object_set_new(o, "compute_mode", d->compute_mode < 0 ? json_null() : json_integer(d->compute_mode));
        json_object_set_new(o, "persistence_mode", d->persistence < 0 ? json_null() : json_boolean(d->persistence));
        json_array_append_new(devs, o);
    }
    json_object_set_new(j, "devices", devs);
    json_t *k = json_array();
    for (int i = 0; i < f->nkgpus; i++) {
        const gpu_kgpu *g = &f->kgpus[i];
        json_t *o = json_object();
        json_object_set_new(o, "pci_bus_id", json_string(g->bus_id));
        json_object_set_new(o, "model", json_string(g->model));
        json_object_set_new(o, "uuid", json_string(g->uuid));
        json_object_set_new(o, "minor", json_integer(g->minor));
        json_object_set_new(o, "excluded", json_boolean(g->excluded));
        json_object_set_new(o, "numa_node", g->numa_node == GPU_NUMA_UNKNOWN ? json_null() : json_integer(g->numa_node));
        json_array_append_new(k, o);
    }
    json_object_set_new(j, "kernel_gpus", k);
    json_t *nodes = json_array();
    for (int i = 0; i < f->nnodes; i++) {
        const gpu_node *n = &f->nodes[i];
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(n->path));
        json_object_set_new(o, "exists", json_boolean(n->exists));
        if (n->exists) {
            snprintf(buf, sizeof buf, "%04o", n->mode);
            json_object_set_new(o, "mode", json_string(buf));
            json_object_set_new(o, "access", json_boolean(n->access_ok));
            if (n->open_errno)
                json_object_set_new(o, "open_error", json_string(strerror(n->open_errno)));
        }
        json_array_append_new(nodes, o);
    }
    json_object_set_new(j, "device_nodes", nodes);
    json_object_set_new(j, "CUDA_VISIBLE_DEVICES", f->visible_set ? json_string(f->visible) : json_null());
    json_object_set_new(j, "CUDA_DEVICE_ORDER", f->order_set ? json_string(f->order) : json_null());
    json_t *b = json_object();
    json_object_set_new(b, "cpus_allowed", json_string(f->cpus_allowed));
    json_object_set_new(b, "cpus_online", json_integer(f->ncpus_online));
    json_object_set_new(b, "numa_nodes", json_integer(f->numa_nodes));
    json_object_set_new(b, "cpu_nodes", json_string(gpu_fmt_nodes(f->cpu_node_mask, buf, sizeof buf)));
    json_object_set_new(b, "mempolicy", json_string(policy_name(f->mempolicy)));
    if (f->mempolicy != MPOL_DEFAULT && f->mempolicy >= 0)
        json_object_set_new(b, "mem_nodes", json_string(gpu_fmt_nodes(f->mem_node_mask, buf, sizeof buf)));
    json_object_set_new(j, "binding", b);
    json_object_set_new(j, "RmProfilingAdminOnly",
                        f->rm_profiling_admin_only < 0 ? json_null() : json_integer(f->rm_profiling_admin_only));
    json_t *c = json_object();
    json_object_set_new(c, "found", json_boolean(f->cupti_found));
    if (f->cupti_found) {
        json_object_set_new(c, "path", json_string(f->cupti_path));
        json_object_set_new(c, "api_version", json_integer(f->cupti_version));
    } else if (f->cupti_error[0]) {
        json_object_set_new(c, "error", json_string(f->cupti_error));
    }
    json_object_set_new(j, "cupti", c);
    json_object_set_new(j, "in_container", json_boolean(f->in_container));
    return j;
}

/* The nvml collector: what nvidia-smi and nvtop show, per GPU, for any workload (an
 * injected command, a --pid process, the built-in path): device memory used/total,
 * GPU and memory-controller utilisation, power, temperature, SM clock, PCIe throughput,
 * and the device memory held by the workload's own processes.  It needs nothing in the
 * workload (no injection, no CUDA calls of ours), so it works where the CUPTI tracer
 * cannot: attached to a running server, beside nsys or ncu, on a process that makes no
 * CUDA calls for a while.
 *
 * Instances are NVML's device indices ("gpu0" = nvidia-smi's GPU 0: PCI bus order), which
 * are CUDA's ordinals when CUDA_DEVICE_ORDER=PCI_BUS_ID or on a one-GPU machine.
 *
 * nvmlDeviceGetPcieThroughput measures over 20 ms per call, so PCIe is read on a thread
 * of its own; everything else is a quick driver query on the session's sampling thread. */
#include "profiler/prof_nvml.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_nvml.h"
#include "common/adg_term.h"
#include "common/adg_util.h"
#include "profiler/prof_collector.h"

#define COLLECTOR "nvml"
#define MAX_DEV 16
#define MAX_WL_PROCS 64

enum { M_USED, M_TOTAL, M_UTIL, M_MUTIL, M_POWER, M_TEMP, M_CLOCK, M_RX, M_TX, M_WL, NMET };

static const adg_metric_def defs[NMET] = {
    [M_USED] = {"gpu.mem_used", "B", ADG_SCOPE_GPU, "device memory in use on the GPU, all processes (NVML, as nvidia-smi shows it)"},
    [M_TOTAL] = {"gpu.mem_total", "B", ADG_SCOPE_GPU, "device memory of the GPU (NVML)"},
    [M_UTIL] = {"gpu.util", "%", ADG_SCOPE_GPU,
                "share of the driver's last sample period in which a kernel ran, any process (NVML utilization.gpu)"},
    [M_MUTIL] = {"gpu.mem_util", "%", ADG_SCOPE_GPU,
                 "share of the driver's last sample period in which device memory was read or written (NVML "
                 "utilization.memory)"},
    [M_POWER] = {"gpu.power", "W", ADG_SCOPE_GPU, "board power draw (NVML)"},
    [M_TEMP] = {"gpu.temp", "C", ADG_SCOPE_GPU, "GPU core temperature, degrees Celsius (NVML)"},
    [M_CLOCK] = {"gpu.sm_clock", "Hz", ADG_SCOPE_GPU, "current SM clock (NVML)"},
    [M_RX] = {"gpu.pcie_rx_bw", "B/s", ADG_SCOPE_GPU, "PCIe bytes received by the GPU per second, all processes (NVML, 20 ms window)"},
    [M_TX] = {"gpu.pcie_tx_bw", "B/s", ADG_SCOPE_GPU, "PCIe bytes sent by the GPU per second, all processes (NVML, 20 ms window)"},
    [M_WL] = {"gpu.workload_mem", "B", ADG_SCOPE_GPU,
              "device memory held by the workload's processes (NVML's compute process list)"},
};

typedef struct nvml_dev {
    adg_nvml_device h;
    char inst[16];
    char name[96], uuid[96];
    bool ok[NMET];           /* the query works on this device (checked at open) */
    adg_nvml_return rc[NMET]; /* what it answered at open when it did not work */
    bool failed[NMET];       /* it failed later; said once */
    unsigned long long total;
    unsigned power_limit_mw, max_sm_mhz;
    /* PCIe, from the thread */
    double rx, tx;
    bool pcie_new;
    adg_nvml_return pcie_err; /* the thread's failure, for the sampling thread to report */
    unsigned long long wl_peak;
} nvml_dev;

typedef struct wl_proc {
    unsigned pid;
    int dev;
    unsigned long long peak;
} wl_proc;

typedef struct nvml_state {
    adg_nvml lib;
    nvml_dev dev[MAX_DEV];
    unsigned ndev;
    int m[NMET];
    void *procs;
    unsigned procs_cap;
    wl_proc wl[MAX_WL_PROCS];
    size_t nwl;
    bool wl_na;              /* usedGpuMemory not available for a workload process */
    bool saw_foreign;        /* processes on a GPU, none of them the workload's */
    bool any_wl;
    pthread_t th;
    bool th_started, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t interval_ns;
} nvml_state;

static void note_failure(prof_ctx *ctx, nvml_state *s, nvml_dev *d, int k, adg_nvml_return rc, const char *when)
{
    if (d->failed[k])
        return;
    d->failed[k] = true;
    char why[160], msg[320];
    adg_nvml_error(&s->lib, rc, why, sizeof why);
    snprintf(msg, sizeof msg, "%s: %s%s", d->inst, why, when);
    adg_bus_unavailable(ctx->bus, COLLECTOR, defs[k].name, msg);
}

/* ---- the workload's processes ---- */

static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it. */
    char *p = strrchr(buf, ')');
    int ppid = 0;
    if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

/* The workload's: a pid the session knows, or a descendant of its root (a child the
 * sampler has not seen, or no sampler in this run). */
static bool is_workload(prof_ctx *ctx, const pid_t *known, size_t nknown, pid_t pid)
{
    for (size_t i = 0; i < nknown; i++)
        if (known[i] == pid)
            return true;
    pid_t p = pid;
    for (int depth = 0; depth < 64 && p > 1; depth++) {
        p = parent_of(p);
        if (p == ctx->root) {
            prof_pidset_add(&ctx->pids, pid);
            return true;
        }
    }
    return false;
}

static void wl_note(nvml_state *s, unsigned pid, int dev, unsigned long long bytes)
{
    for (size_t i = 0; i < s->nwl; i++)
        if (s->wl[i].pid == pid && s->wl[i].dev == dev) {
            if (bytes > s->wl[i].peak)
                s->wl[i].peak = bytes;
            return;
        }
    if (s->nwl < MAX_WL_PROCS)
        s->wl[s->nwl++] = (wl_proc){pid, dev, bytes};
}

/* The process list of one device, grown once if the driver says it is longer. */
static adg_nvml_return list_procs(nvml_state *s, nvml_dev *d, unsigned *n)
{
    size_t esz = s->lib.procs_version >= 2 ? sizeof(adg_nvml_process) : sizeof(adg_nvml_process_v1);
    for (int attempt = 0; attempt < 2; attempt++) {
        *n = s->procs_cap;
        adg_nvml_return rc = s->lib.DeviceGetComputeRunningProcesses(d->h, n, s->procs);
        if (rc != ADG_NVML_ERROR_INSUFFICIENT_SIZE)
            return rc;
        unsigned want = *n + 16;
        /* Twice the room the driver is told of: should a driver's entries ever be wider
         * than nvml.h's (DCGM's header has one more field), it cannot write past the end. */
        void *p = realloc(s->procs, 2 * (size_t)want * esz);
        if (!p)
            return rc;
        s->procs = p;
        s->procs_cap = want;
    }
    return ADG_NVML_ERROR_INSUFFICIENT_SIZE;
}

static void sample_procs(prof_ctx *ctx, nvml_state *s, nvml_dev *d, int di, uint64_t t_ns)
{
    unsigned n = 0;
    adg_nvml_return rc = list_procs(s, d, &n);
    if (rc != ADG_NVML_SUCCESS) {
        note_failure(ctx, s, d, M_WL, rc, " (compute process list)");
        return;
    }
    pid_t *known;
    size_t nknown = prof_pidset_copy(&ctx->pids, &known);
    unsigned long long sum = 0;
    bool na = false;
    for (unsigned i = 0; i < n && i < s->procs_cap; i++) {
        unsigned pid;
        unsigned long long used;
        if (s->lib.procs_version >= 2) {
            adg_nvml_process *p = (adg_nvml_process *)s->procs + i;
            pid = p->pid;
            used = p->usedGpuMemory;
        } else {
            adg_nvml_process_v1 *p = (adg_nvml_process_v1 *)s->procs + i;
            pid = p->pid;
            used = p->usedGpuMemory;
        }
        if (!is_workload(ctx, known, nknown, (pid_t)pid)) {
            s->saw_foreign = true;
            continue;
        }
        s->any_wl = true;
        if (used == ADG_NVML_VALUE_NOT_AVAILABLE) {
            na = true;
            continue;
        }
        sum += used;
        wl_note(s, pid, di, used);
    }
    free(known);
    if (na && !sum) {
        if (!s->wl_na)
            adg_bus_unavailable(ctx->bus, COLLECTOR, defs[M_WL].name,
                                "NVML lists the workload's process but not its memory (usedGpuMemory not "
                                "available: a vGPU/MIG setup or no permission) - gpu.mem_used is device-wide");
        s->wl_na = true;
        return;
    }
    if (sum > d->wl_peak)
        d->wl_peak = sum;
    adg_bus_sample(ctx->bus, s->m[M_WL], d->inst, t_ns, (double)sum);
}

/* ---- PCIe thread ---- */

static void *pcie_main(void *arg)
{
    nvml_state *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < s->ndev; i++) {
            nvml_dev *d = &s->dev[i];
            if (!d->ok[M_RX])
                continue;
            unsigned rx = 0, tx = 0;
            adg_nvml_return r1 = s->lib.DeviceGetPcieThroughput(d->h, ADG_NVML_PCIE_UTIL_RX_BYTES, &rx);
            adg_nvml_return r2 = r1 == ADG_NVML_SUCCESS ? s->lib.DeviceGetPcieThroughput(d->h, ADG_NVML_PCIE_UTIL_TX_BYTES, &tx) : r1;
            pthread_mutex_lock(&s->lock);
            if (r2 == ADG_NVML_SUCCESS) {
                d->rx = rx * 1024.0; /* KB/s */
                d->tx = tx * 1024.0;
                d->pcie_new = true;
            } else {
                d->ok[M_RX] = false;
                d->pcie_err = r2;
            }
            pthread_mutex_unlock(&s->lock);
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + s->interval_ns;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        pthread_mutex_lock(&s->lock);
        while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void stop_thread(nvml_state *s)
{
    if (!s->th_started)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->th, NULL);
    s->th_started = false;
}

/* ---- open: devices, static facts, which queries work ---- */

static void nvml_close(void *state)
{
    nvml_state *s = state;
    if (!s)
        return;
    stop_thread(s);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    adg_nvml_close(&s->lib);
    free(s->procs);
    free(s);
}

/* Tries each query once per device; a metric is registered when it works on one. */
static void probe_device(nvml_state *s, nvml_dev *d)
{
    const adg_nvml *n = &s->lib;
    adg_nvml_memory mem;
    adg_nvml_utilization u;
    unsigned v, cnt = 0;
    for (int k = 0; k < NMET; k++)
        d->rc[k] = ADG_NVML_ERROR_NOT_SUPPORTED; /* also: this NVML lacks the entry point */
    if (n->DeviceGetMemoryInfo)
        d->rc[M_USED] = d->rc[M_TOTAL] = n->DeviceGetMemoryInfo(d->h, &mem);
    if (n->DeviceGetUtilizationRates)
        d->rc[M_UTIL] = d->rc[M_MUTIL] = n->DeviceGetUtilizationRates(d->h, &u);
    if (n->DeviceGetPowerUsage)
        d->rc[M_POWER] = n->DeviceGetPowerUsage(d->h, &v);
    if (n->DeviceGetTemperature)
        d->rc[M_TEMP] = n->DeviceGetTemperature(d->h, ADG_NVML_TEMPERATURE_GPU, &v);
    if (n->DeviceGetClockInfo)
        d->rc[M_CLOCK] = n->DeviceGetClockInfo(d->h, ADG_NVML_CLOCK_SM, &v);
    /* PCIe is tried by its thread (a 20 ms measurement): assumed to work until it fails. */
    if (n->DeviceGetPcieThroughput)
        d->rc[M_RX] = d->rc[M_TX] = ADG_NVML_SUCCESS;
    if (n->DeviceGetComputeRunningProcesses) {
        /* With no room given, the driver answers "insufficient size" when processes run. */
        d->rc[M_WL] = n->DeviceGetComputeRunningProcesses(d->h, &cnt, NULL);
        if (d->rc[M_WL] == ADG_NVML_ERROR_INSUFFICIENT_SIZE)
            d->rc[M_WL] = ADG_NVML_SUCCESS;
    }
    for (int k = 0; k < NMET; k++)
        d->ok[k] = d->rc[k] == ADG_NVML_SUCCESS;
    if (d->ok[M_TOTAL])
        d->total = mem.total;
    if (!n->DeviceGetName || n->DeviceGetName(d->h, d->name, sizeof d->name) != ADG_NVML_SUCCESS)
        d->name[0] = 0;
    if (!n->DeviceGetUUID || n->DeviceGetUUID(d->h, d->uuid, sizeof d->uuid) != ADG_NVML_SUCCESS)
        d->uuid[0] = 0;
    if (!n->DeviceGetEnforcedPowerLimit || n->DeviceGetEnforcedPowerLimit(d->h, &d->power_limit_mw) != ADG_NVML_SUCCESS)
        d->power_limit_mw = 0;
    if (!n->DeviceGetMaxClockInfo || n->DeviceGetMaxClockInfo(d->h, ADG_NVML_CLOCK_SM, &d->max_sm_mhz) != ADG_NVML_SUCCESS)
        d->max_sm_mhz = 0;
}

/* "gpu1: not supported by the GPU or driver" or the error NVML gave. */
static void open_reason(nvml_state *s, const nvml_dev *d, int k, char *buf, size_t len)
{
    char why[160];
    if (d->rc[k] == ADG_NVML_ERROR_NOT_SUPPORTED)
        snprintf(buf, len, "%s: not supported by this GPU or driver (NVML)", d->inst);
    else
        snprintf(buf, len, "%s: %s", d->inst, adg_nvml_error(&s->lib, d->rc[k], why, sizeof why));
}

static adg_error *nvml_open(prof_ctx *ctx, void **state)
{
    nvml_state *s = calloc(1, sizeof *s);
    if (!s)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->interval_ns = ctx->interval_ns < 200000000ull ? 200000000ull : ctx->interval_ns;
    adg_error *e = adg_nvml_open(&s->lib);
    if (e) {
        nvml_close(s);
        return e;
    }
    unsigned count = 0;
    adg_nvml_return rc = s->lib.DeviceGetCount(&count);
    if (rc != ADG_NVML_SUCCESS || count == 0) {
        char why[160];
        if (rc != ADG_NVML_SUCCESS)
            adg_nvml_error(&s->lib, rc, why, sizeof why);
        nvml_close(s);
        return rc != ADG_NVML_SUCCESS
                   ? adg_error_new(ADG_E_HARDWARE, "nvmlDeviceGetCount failed: %s", why)
                   : adg_error_hint(adg_error_new(ADG_E_HARDWARE, "NVML sees no GPU"),
                                    "check 'nvidia-smi -L'; in a container, the GPUs must be passed in");
    }
    for (unsigned i = 0; i < count && s->ndev < MAX_DEV; i++) {
        nvml_dev *d = &s->dev[s->ndev];
        if (s->lib.DeviceGetHandleByIndex(i, &d->h) != ADG_NVML_SUCCESS)
            continue; /* a device NVML cannot open (lost, or not permitted): the others still count */
        snprintf(d->inst, sizeof d->inst, "gpu%u", i);
        probe_device(s, d);
        s->ndev++;
    }
    if (!s->ndev) {
        nvml_close(s);
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "NVML cannot open any of its %u GPUs", count),
                              "check 'nvidia-smi': a GPU that fell off the bus needs a reset");
    }
    for (int k = 0; k < NMET; k++) {
        s->m[k] = -1;
        unsigned works = 0;
        for (unsigned i = 0; i < s->ndev; i++)
            works += s->dev[i].ok[k];
        if (!works) {
            char why[256];
            if (k == M_WL && !s->lib.DeviceGetComputeRunningProcesses)
                snprintf(why, sizeof why, "this NVML has no nvmlDeviceGetComputeRunningProcesses");
            else if (s->ndev == 1)
                open_reason(s, &s->dev[0], k, why, sizeof why);
            else
                snprintf(why, sizeof why, "not supported by the GPUs or driver (NVML)");
            adg_bus_unavailable(ctx->bus, COLLECTOR, defs[k].name, why);
            continue;
        }
        adg_error *re = adg_bus_register(ctx->bus, COLLECTOR, &defs[k], &s->m[k]);
        if (re) {
            adg_error_free(re);
            s->m[k] = -1;
            continue;
        }
        for (unsigned i = 0; i < s->ndev; i++)
            if (!s->dev[i].ok[k]) {
                char msg[256];
                open_reason(s, &s->dev[i], k, msg, sizeof msg);
                adg_bus_unavailable(ctx->bus, COLLECTOR, defs[k].name, msg);
            }
    }
    if (s->m[M_RX] >= 0 && pthread_create(&s->th, NULL, pcie_main, s) == 0)
        s->th_started = true;
    /* The device names for live consumers (top's header); the record gets the section. */
    json_t *names = json_array();
    for (unsigned i = 0; i < s->ndev; i++)
        json_array_append_new(names, json_pack("{s:s,s:s}", "instance", s->dev[i].inst, "name", s->dev[i].name));
    adg_bus_snapshot_put(ctx->bus, "nvml_devices", names);
    *state = s;
    return NULL;
}

/* ---- sample, finish ---- */

static void pub(prof_ctx *ctx, nvml_state *s, int k, nvml_dev *d, uint64_t t_ns, double v)
{
    if (s->m[k] >= 0)
        adg_bus_sample(ctx->bus, s->m[k], d->inst, t_ns, v);
}

static void nvml_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    nvml_state *s = state;
    const adg_nvml *n = &s->lib;
    for (unsigned i = 0; i < s->ndev; i++) {
        nvml_dev *d = &s->dev[i];
        adg_nvml_return rc;
        if (d->ok[M_USED]) {
            adg_nvml_memory mem;
            if ((rc = n->DeviceGetMemoryInfo(d->h, &mem)) == ADG_NVML_SUCCESS) {
                pub(ctx, s, M_USED, d, t_ns, (double)mem.used);
                pub(ctx, s, M_TOTAL, d, t_ns, (double)mem.total);
            } else
                note_failure(ctx, s, d, M_USED, rc, "");
        }
        if (d->ok[M_UTIL]) {
            adg_nvml_utilization u;
            if ((rc = n->DeviceGetUtilizationRates(d->h, &u)) == ADG_NVML_SUCCESS) {
                pub(ctx, s, M_UTIL, d, t_ns, u.gpu);
                pub(ctx, s, M_MUTIL, d, t_ns, u.memory);
            } else
                note_failure(ctx, s, d, M_UTIL, rc, "");
        }
        unsigned v;
        if (d->ok[M_POWER]) {
            if ((rc = n->DeviceGetPowerUsage(d->h, &v)) == ADG_NVML_SUCCESS)
                pub(ctx, s, M_POWER, d, t_ns, v / 1000.0);
            else
                note_failure(ctx, s, d, M_POWER, rc, "");
        }
        if (d->ok[M_TEMP]) {
            if ((rc = n->DeviceGetTemperature(d->h, ADG_NVML_TEMPERATURE_GPU, &v)) == ADG_NVML_SUCCESS)
                pub(ctx, s, M_TEMP, d, t_ns, v);
            else
                note_failure(ctx, s, d, M_TEMP, rc, "");
        }
        if (d->ok[M_CLOCK]) {
            if ((rc = n->DeviceGetClockInfo(d->h, ADG_NVML_CLOCK_SM, &v)) == ADG_NVML_SUCCESS)
                pub(ctx, s, M_CLOCK, d, t_ns, v * 1e6);
            else
                note_failure(ctx, s, d, M_CLOCK, rc, "");
        }
        if (d->ok[M_WL])
            sample_procs(ctx, s, d, (int)i, t_ns);
        pthread_mutex_lock(&s->lock);
        bool fresh = d->pcie_new;
        double rx = d->rx, tx = d->tx;
        adg_nvml_return perr = d->pcie_err;
        d->pcie_new = false;
        pthread_mutex_unlock(&s->lock);
        if (fresh) {
            pub(ctx, s, M_RX, d, t_ns, rx);
            pub(ctx, s, M_TX, d, t_ns, tx);
        } else if (perr && s->m[M_RX] >= 0)
            note_failure(ctx, s, d, M_RX, perr, " (PCIe throughput)");
    }
}

/* In a nested PID namespace (a container) NVML reports the host's pids, which are not
 * the workload's as we see them. */
static bool nested_pid_ns(void)
{
    char *data;
    size_t len;
    adg_error *e = adg_read_file("/proc/self/status", 0, &data, &len);
    if (e) {
        adg_error_free(e);
        return false;
    }
    const char *p = strstr(data, "\nNSpid:");
    int fields = 0;
    if (p) {
        p += 7;
        while (*p && *p != '\n') {
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p && *p != '\n')
                fields++;
            while (*p && *p != ' ' && *p != '\t' && *p != '\n')
                p++;
        }
    }
    free(data);
    return fields > 1;
}

static void nvml_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    nvml_state *s = state;
    stop_thread(s);
    nvml_sample(ctx, s, t_ns);
    if (!s->any_wl && s->saw_foreign && s->m[M_WL] >= 0 && nested_pid_ns())
        adg_bus_unavailable(ctx->bus, COLLECTOR, defs[M_WL].name,
                            "amxdiag runs in a PID namespace (a container): NVML lists the host's process ids, "
                            "which cannot be matched to the workload's");
    json_t *devs = json_array();
    for (unsigned i = 0; i < s->ndev; i++) {
        nvml_dev *d = &s->dev[i];
        json_t *o = json_pack("{s:s,s:s,s:s}", "instance", d->inst, "name", d->name, "uuid", d->uuid);
        json_object_set_new(o, "memory_total_bytes", d->ok[M_TOTAL] ? json_integer((json_int_t)d->total) : json_null());
        json_object_set_new(o, "power_limit_w", d->power_limit_mw ? json_real(d->power_limit_mw / 1000.0) : json_null());
        json_object_set_new(o, "max_sm_clock_hz", d->max_sm_mhz ? json_real(d->max_sm_mhz * 1e6) : json_null());
        json_object_set_new(o, "workload_mem_peak_bytes", s->m[M_WL] >= 0 && d->ok[M_WL] && !s->wl_na
                                                              ? json_integer((json_int_t)d->wl_peak)
                                                              : json_null());
        json_array_append_new(devs, o);
    }
    json_t *procs = json_array();
    for (size_t i = 0; i < s->nwl; i++)
        json_array_append_new(procs, json_pack("{s:i,s:s,s:I}", "pid", (int)s->wl[i].pid, "instance",
                                               s->dev[s->wl[i].dev].inst, "mem_peak_bytes", (json_int_t)s->wl[i].peak));
    char drv[96] = "";
    if (!s->lib.SystemGetDriverVersion || s->lib.SystemGetDriverVersion(drv, sizeof drv) != ADG_NVML_SUCCESS)
        drv[0] = 0;
    json_t *sec = json_pack("{s:s,s:s,s:o,s:i,s:o,s:o}", "source", "NVML", "library", s->lib.path, "driver_version",
                            drv[0] ? json_string(drv) : json_null(), "process_api", s->lib.procs_version, "devices",
                            devs, "workload_processes", procs);
    adg_error_free(adg_record_set_section(ctx->record, "nvml", sec));
}

const prof_collector prof_nvml_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_NVML,
    .open = nvml_open,
    .sample = nvml_sample,
    .finish = nvml_finish,
    .close = nvml_close,
};

/* ---- profile's summaries ---- */

/* max / mean of a series of one instance; false when it has no points. */
static bool series_stats(json_t *rec, const char *metric, const char *inst, double *mx, double *mean)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rec, "series"), i, s) {
        const char *m = json_string_value(json_object_get(s, "metric"));
        const char *in = json_string_value(json_object_get(s, "instance"));
        json_t *vals = json_object_get(s, "value");
        if (!m || !in || strcmp(m, metric) || strcmp(in, inst) || !json_array_size(vals))
            continue;
        double sum = 0, top = 0;
        size_t k;
        json_t *v;
        json_array_foreach(vals, k, v) {
            double x = json_number_value(v);
            sum += x;
            if (k == 0 || x > top)
                top = x;
        }
        *mx = top;
        *mean = sum / (double)json_array_size(vals);
        return true;
    }
    return false;
}

json_t *prof_nvml_summary_json(json_t *rec)
{
    json_t *nv = json_object_get(rec, "nvml");
    if (!json_is_object(nv))
        return NULL;
    json_t *devs = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(nv, "devices"), i, d) {
        const char *inst = json_string_value(json_object_get(d, "instance"));
        if (!inst)
            continue;
        json_t *o = json_pack("{s:s,s:O?,s:O?,s:O?,s:O?}", "instance", inst, "name", json_object_get(d, "name"),
                              "memory_total_bytes", json_object_get(d, "memory_total_bytes"), "workload_mem_peak_bytes",
                              json_object_get(d, "workload_mem_peak_bytes"), "power_limit_w",
                              json_object_get(d, "power_limit_w"));
        static const struct {
            const char *metric, *max_key, *mean_key;
        } st[] = {{"gpu.mem_used", "mem_used_peak_bytes", NULL},
                  {"gpu.util", "util_max_pct", "util_mean_pct"},
                  {"gpu.power", "power_max_w", "power_mean_w"},
                  {"gpu.temp", "temp_max_c", NULL}};
        for (size_t k = 0; o && k < ADG_ARRAY_LEN(st); k++) {
            double mx, mean;
            if (!series_stats(rec, st[k].metric, inst, &mx, &mean))
                continue;
            json_object_set_new(o, st[k].max_key, json_real(mx));
            if (st[k].mean_key)
                json_object_set_new(o, st[k].mean_key, json_real(mean));
        }
        json_array_append_new(devs, o);
    }
    return json_pack("{s:o,s:O?}", "devices", devs, "driver_version", json_object_get(nv, "driver_version"));
}

void prof_nvml_summary_print(FILE *f, json_t *rec, bool color)
{
    json_t *sum = prof_nvml_summary_json(rec);
    if (!sum)
        return;
    const char *B = color ? ADG_SGR_BOLD : "", *R = color ? ADG_SGR_RESET : "";
    fprintf(f, "\n%sGPUs%s (NVML, every process)\n", B, R);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(sum, "devices"), i, d) {
        char b1[24], b2[24], b3[24];
        json_t *peak = json_object_get(d, "mem_used_peak_bytes"), *tot = json_object_get(d, "memory_total_bytes");
        json_t *wl = json_object_get(d, "workload_mem_peak_bytes");
        const char *name = json_string_value(json_object_get(d, "name"));
        fprintf(f, "  %-5s %s: memory peak %s of %s", json_string_value(json_object_get(d, "instance")),
                name && *name ? name : "?", peak ? adg_fmt_bytes(json_number_value(peak), b1, sizeof b1) : "n/a",
                tot ? adg_fmt_bytes(json_number_value(tot), b2, sizeof b2) : "n/a");
        if (json_is_number(wl))
            fprintf(f, " (the workload's %s)", adg_fmt_bytes(json_number_value(wl), b3, sizeof b3));
        fprintf(f, "\n        ");
        const char *sep = "";
        json_t *um = json_object_get(d, "util_mean_pct"), *ux = json_object_get(d, "util_max_pct");
        if (um && ux) {
            fprintf(f, "util mean %.0f%% max %.0f%%", json_number_value(um), json_number_value(ux));
            sep = ", ";
        }
        json_t *px = json_object_get(d, "power_max_w"), *pl = json_object_get(d, "power_limit_w");
        if (px) {
            fprintf(f, "%spower max %.0f W", sep, json_number_value(px));
            if (json_is_number(pl))
                fprintf(f, " of %.0f W", json_number_value(pl));
            sep = ", ";
        }
        json_t *tx = json_object_get(d, "temp_max_c");
        if (tx)
            fprintf(f, "%stemperature max %.0f C", sep, json_number_value(tx));
        fputc('\n', f);
    }
    json_decref(sum);
}

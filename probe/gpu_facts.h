/* Facts about the NVIDIA stack of this machine and of this process, gathered once, and
 * the diagnosis of why CUDA sees fewer GPUs than the machine has (gpu_diag.c), which is
 * a pure function of these facts so that every cause is unit-tested with synthetic
 * facts. */
#ifndef PROBE_GPU_FACTS_H
#define PROBE_GPU_FACTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "probe/probe_report.h"

#define GPU_MAX_DEVS 16
#define GPU_MAX_NODES 24
#define GPU_NUMA_UNKNOWN (-2) /* not read; -1 is sysfs's "no NUMA affinity" */

/* A GPU as CUDA reports it. */
typedef struct gpu_dev {
    int ordinal;
    char name[128];
    int cc;               /* 90 */
    int sms;
    uint64_t mem_bytes;
    char bus_id[32];      /* normalised "0000:17:00.0" */
    int numa_node;        /* from sysfs, GPU_NUMA_UNKNOWN when unreadable */
    int compute_mode;     /* CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, -1 unknown */
    int persistence;      /* NVML persistence mode: 1 on, 0 off, -1 unknown (no NVML) */
} gpu_dev;

/* A GPU as the kernel module lists it in /proc/driver/nvidia/gpus/<bus>/information. */
typedef struct gpu_kgpu {
    char bus_id[32];
    char model[128];
    char uuid[64];
    int minor;            /* /dev/nvidia<minor>, -1 unknown */
    bool excluded;        /* "GPU Excluded: Yes" */
    int numa_node;
} gpu_kgpu;

typedef struct gpu_node {
    char path[40];
    bool exists;
    bool access_ok;       /* access(R_OK|W_OK) */
    int open_errno;       /* errno of open(O_RDWR) when access_ok, 0 when it opened */
    unsigned mode;        /* st_mode & 07777 */
    unsigned uid, gid;
} gpu_node;

typedef struct gpu_facts {
    /* kernel module and user-space driver */
    bool kmod_loaded;                 /* /proc/driver/nvidia exists */
    char kmod_version[64];            /* "580.65.06" */
    int driver_branch;                /* 580 */
    bool lib_loaded;
    char lib_path[256];
    char lib_error[256];
    int driver_cuda;                  /* cuDriverGetVersion, 0 unknown */
    bool init_called;
    int init_rc;                      /* CUresult of cuInit(0) */
    char init_name[64], init_text[160];
    int dev_count;                    /* cuDeviceGetCount, -1 not called */
    gpu_dev devs[GPU_MAX_DEVS];
    int ndevs;
    gpu_kgpu kgpus[GPU_MAX_DEVS];
    int nkgpus;
    gpu_node nodes[GPU_MAX_NODES];    /* /dev/nvidiactl, /dev/nvidia-uvm, /dev/nvidia<minor> */
    int nnodes;
    /* environment */
    bool visible_set;
    char visible[256];                /* CUDA_VISIBLE_DEVICES */
    bool order_set;
    char order[64];                   /* CUDA_DEVICE_ORDER */
    /* this process's placement */
    int numa_nodes;                   /* configured NUMA nodes, 0 unknown */
    uint64_t cpu_node_mask;           /* nodes with at least one CPU in our affinity */
    char cpus_allowed[128];           /* "0-15" */
    int ncpus_allowed, ncpus_online;
    int mempolicy;                    /* MPOL_* from get_mempolicy, -1 unknown */
    uint64_t mem_node_mask;           /* its nodemask (bind/preferred/interleave) */
    /* profiling */
    int rm_profiling_admin_only;      /* -1 unknown */
    bool is_root;
    bool cupti_found;
    char cupti_path[256];
    unsigned cupti_version;           /* cuptiGetVersion */
    char cupti_error[256];
    /* container */
    bool in_container;
    char cgroup[256];
} gpu_facts;

/* Gathers everything (dlopen's libcuda and calls cuInit once per process; the result is
 * cached, so the GPU and --binary sections share it). Never fails: what cannot be read is
 * recorded as unknown. */
const gpu_facts *gpu_facts_get(void);
/* The same, uncached, into f (tests). */
void gpu_facts_gather(gpu_facts *f);
json_t *gpu_facts_json(const gpu_facts *f);

/* One diagnosed cause. */
typedef struct gpu_cause {
    char id[40];                /* "visible_devices_empty" */
    probe_status status;        /* FAIL when it explains a failure, WARN/INFO otherwise */
    char title[96];
    char evidence[512];
    char explanation[512];
    char remedy[512];
} gpu_cause;

/* True when CUDA sees no GPU or fewer than the kernel module lists. */
bool gpu_facts_cuda_failed(const gpu_facts *f);
/* Why CUDA sees fewer GPUs than the machine has, and placement problems: fills up to max
 * causes, returns how many.  Pure: reads only f. */
size_t gpu_diagnose(const gpu_facts *f, gpu_cause *out, size_t max);
/* "CUDA_ERROR_NO_DEVICE" meaning for a cuInit code, in words a user can act on. */
const char *gpu_init_meaning(int rc);
/* The driver version ("580.159.04") from /proc/driver/nvidia/version's text; "" if none. */
void gpu_parse_kmod_version(const char *text, char *out, size_t len);
/* "0000:17:00.0" from CUDA's or the kernel's spelling of a PCI address. */
void gpu_bus_normalise(const char *in, char *out, size_t len);
/* The NUMA node sysfs gives for a PCI device (-1 none), GPU_NUMA_UNKNOWN unreadable. */
int gpu_sysfs_numa_node(const char *bus_id);
/* "bind" for MPOL_BIND. */
const char *gpu_mempolicy_name(int policy);
/* "0,2-3" for a node mask into buf. */
const char *gpu_fmt_nodes(uint64_t mask, char *buf, size_t len);

#endif

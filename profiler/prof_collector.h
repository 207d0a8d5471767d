/* The collector interface (nvtop's gpu_vendor shape): one file per collector, each with
 * open (registers its metrics, or returns the reason it cannot run here), sample (called
 * on the session's sampling thread every interval), finish (last sample, record
 * sections) and close.  The session owns the loop; collectors never see each other. */
#ifndef PROF_COLLECTOR_H
#define PROF_COLLECTOR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "common/adg_record.h"

/* -e sets. */
enum {
    PROF_SET_AMX = 1u << 0,      /* PMU: EXE.AMX_BUSY, AMX_OPS_RETIRED, core clocks */
    PROF_SET_SIMD = 1u << 1,     /* PMU: FP_ARITH_INST_RETIRED(2), INT_VEC_RETIRED */
    PROF_SET_CORE = 1u << 2,     /* PMU: cycles, instructions */
    PROF_SET_MEM = 1u << 3,      /* uncore IMC CAS counts; resctrl MBM */
    PROF_SET_SAMPLING = 1u << 4, /* cpu-clock sampling + ISA attribution */
    PROF_SET_NUMA = 1u << 5,     /* numa_maps, thread placement, arch_status */
    PROF_SET_GPU = 1u << 6,      /* CUPTI trace of the command (profiler/cupti_collector.h) */
    PROF_SET_CPU = 1u << 7,      /* per-CPU load from /proc/stat (machine-wide) */
    PROF_SET_NVML = 1u << 8,     /* NVML per-GPU memory, utilisation, power, clocks (profiler/prof_nvml.c) */
    PROF_SET_ALL = 0x1ff,
};

/* The processes of the workload seen so far (the root plus every child the sampler saw). */
typedef struct prof_pidset {
    pthread_mutex_t lock;
    pid_t *pids;
    size_t n, cap;
} prof_pidset;

void prof_pidset_init(prof_pidset *s);
void prof_pidset_destroy(prof_pidset *s);
void prof_pidset_add(prof_pidset *s, pid_t pid);
/* Copies the set (heap array; caller frees). */
size_t prof_pidset_copy(prof_pidset *s, pid_t **out);

typedef struct prof_ctx {
    adg_bus *bus;
    adg_record *record;
    pid_t root;              /* the workload's first process */
    bool attach;             /* --pid: the process already runs (no enable-on-exec) */
    uint64_t interval_ns;
    unsigned freq_hz;        /* sampling frequency */
    unsigned sets;           /* PROF_SET_* requested */
    bool sets_explicit;      /* -e given: a set that cannot run is an error, not a note */
    unsigned top_n;          /* hot functions kept in the record */
    prof_pidset pids;
    bool self;               /* the workload is this process (the built-in path) */
    volatile pid_t exclude_tid; /* self: the sampling thread, whose samples are not the workload's */
    bool gpu_metrics;        /* --gpu-metrics */
    /* "NAME=value" strings added to the command's environment only (set by collectors'
     * prepare hooks, owned by them; the session's own environment is untouched). */
    const char *child_env[8];
    unsigned n_child_env;
} prof_ctx;

typedef struct prof_collector {
    const char *name;
    unsigned sets;           /* runs when any of these sets is requested */
    /* Optional (NULL for most): runs before the command is started, to set up what its
     * environment must carry (ctx->child_env); the state it sets is handed to open.  An
     * error means the collector cannot run (open is then not called). */
    adg_error *(*prepare)(prof_ctx *ctx, void **state);
    /* Registers metrics and prepares; an error says why it cannot run here (the
     * session puts it in the record's unavailable list). */
    adg_error *(*open)(prof_ctx *ctx, void **state);
    void (*sample)(prof_ctx *ctx, void *state, uint64_t t_ns);
    /* Called once after the workload ended (or the session was interrupted): last
     * sample, record sections. */
    void (*finish)(prof_ctx *ctx, void *state, uint64_t t_ns);
    void (*close)(void *state);
} prof_collector;

extern const prof_collector prof_sampler_collector;
extern const prof_collector prof_pmu_collector;
extern const prof_collector prof_uncore_collector;
extern const prof_collector prof_mbm_collector;
extern const prof_collector prof_numa_collector;
extern const prof_collector prof_cupti_collector;
extern const prof_collector prof_cpu_collector;
extern const prof_collector prof_nvml_collector;

/* Registers a metric or logs why not (registration only fails on a name clash, a bug). */
int prof_register(prof_ctx *ctx, const char *collector, const char *name, const char *unit, adg_scope scope,
                  const char *meaning);

#endif

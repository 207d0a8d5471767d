/* --gpu-metrics: which Range Profiler metrics amxdiag asks for, by role, and how the
 * ranges of a decoded window are named.  Pure code (libc only): compiled into amxdiag and
 * into the injection library, and unit-tested without a GPU.  The CUPTI calls are in
 * cupti_range_prof.c. */
#ifndef CUPTI_RANGE_H
#define CUPTI_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Roles: one value of a kernel launch each (cupti_kmetric_rec.v[role]). */
typedef enum cupti_range_role {
    CUPTI_RM_DURATION = 0,       /* ns the kernel ran in the profiled pass */
    CUPTI_RM_DRAM_READ = 1,      /* bytes read from device memory */
    CUPTI_RM_DRAM_WRITE = 2,     /* bytes written to device memory */
    CUPTI_RM_DRAM_PCT = 3,       /* DRAM throughput, % of peak sustained */
    CUPTI_RM_SM_PCT = 4,         /* SM throughput, % of peak sustained */
    CUPTI_RM_TENSOR_HMMA_PCT = 5, /* tensor pipe (mma.sync, f16/bf16), % of active cycles */
    CUPTI_RM_TENSOR_IMMA_PCT = 6, /* tensor pipe (integer mma) */
    CUPTI_RM_TENSOR_GMMA_PCT = 7, /* tensor pipe (Hopper warpgroup mma, wgmma) */
    CUPTI_RM_DRAM_PEAK_BPC = 8,  /* DRAM peak sustained bytes per DRAM cycle */
    CUPTI_RM_DRAM_CPS = 9,       /* DRAM cycles per second (with the above: the peak bandwidth) */
    CUPTI_RM_COUNT = 10,
} cupti_range_role;

/* The candidates of each role, most wanted first; required roles must be named by the
 * chip or --gpu-metrics cannot run there. */
typedef struct cupti_range_metric {
    cupti_range_role role;
    const char *key;             /* the record's name for the role */
    bool required;
    const char *const *names;    /* NULL-terminated CUPTI metric names */
} cupti_range_metric;

const cupti_range_metric *cupti_range_metrics(size_t *n);
const char *cupti_range_role_key(unsigned role);

/* The metrics chosen for a chip: per role the first candidate `supported` accepts. */
typedef struct cupti_range_sel {
    const char *names[CUPTI_RM_COUNT]; /* in request order, n of them */
    int role_of[CUPTI_RM_COUNT];       /* names[i] serves role role_of[i] */
    size_t n;
    uint32_t present;                  /* bit per role */
} cupti_range_sel;

/* Fills *sel.  Returns false when a required role has no supported candidate; *why then
 * names the role and the candidates that were tried. */
bool cupti_range_select(bool (*supported)(void *ctx, const char *metric), void *ctx, cupti_range_sel *sel, char *why,
                        size_t why_len);

/* Launch names of one window, in launch order, and the decoded ranges they name.  Auto
 * ranges are numbered by execution order, not named: range i of a window is the i-th
 * kernel launched in it, as long as the counts agree. */
typedef struct cupti_range_names {
    char **name;
    bool *opt;                   /* an entry that may or may not have become a range */
    size_t n, cap;
    size_t n_opt;
    size_t graph_launches;       /* cuGraphLaunch in the window: its kernels have no names here */
} cupti_range_names;

bool cupti_range_names_push(cupti_range_names *q, const char *name);
/* An entry that becomes a range on some drivers and not on others (a cuMemset the driver
 * runs as a kernel): counted in when the window's range count says it was one. */
bool cupti_range_names_push_opt(cupti_range_names *q, const char *name);
/* The name of range i of a window of n_ranges decoded ranges, or NULL when the launches
 * seen cannot name it (more ranges than launches).  Where the optional entries of some
 * kinds (labels) left out make the counts agree, those are passed over (every memset of a
 * window becomes a range or none does, and so for device-to-device copies); otherwise the
 * names go by order. */
const char *cupti_range_names_at(const cupti_range_names *q, size_t i, size_t n_ranges);
/* Whether n_ranges decoded ranges are named without a guess: the counts agree, or exactly
 * one set of optional kinds left out makes them agree. */
bool cupti_range_names_fit(const cupti_range_names *q, size_t n_ranges);
void cupti_range_names_clear(cupti_range_names *q);
void cupti_range_names_free(cupti_range_names *q);

#endif

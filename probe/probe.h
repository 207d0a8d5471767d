/* Public surface of probe/. */
#ifndef PROBE_H
#define PROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_error.h"
#include "common/adg_term.h"
#include "probe/probe_report.h"

enum {
    PROBE_SEC_CPU = 1u << 0,
    PROBE_SEC_AMX = 1u << 1,
    PROBE_SEC_NUMA = 1u << 2,
    PROBE_SEC_PMU = 1u << 3,
    PROBE_SEC_GPU = 1u << 4,
    PROBE_SEC_ALL = 0x1f,
};

#define PROBE_MAX_LIST 64

typedef struct probe_opts {
    unsigned sections;                    /* PROBE_SEC_* (--only) */
    bool json, verbose, bench;
    adg_color_mode color;
    const char *snapshot_in;              /* --snapshot FILE: evaluate recorded inputs */
    const char *snapshot_out;             /* --save-snapshot FILE */
    const char *binaries[PROBE_MAX_LIST]; /* --binary PATH (repeatable) */
    size_t nbinaries;
    const char *ccs[PROBE_MAX_LIST];      /* --cc X.Y (repeatable): verdicts for absent GPUs */
    size_t nccs;
} probe_opts;

/* Section runners.  Each adds its checks to rep; an error return means the section
 * could not run at all (the caller reports it and exits 2). */
adg_error *probe_gpu_section(const probe_opts *opts, probe_report *rep);
/* Fatbin verdicts for opts->binaries against present GPUs and opts->ccs. */
adg_error *probe_binary_section(const probe_opts *opts, probe_report *rep);

int probe_cmd_main(int argc, char **argv);

#endif

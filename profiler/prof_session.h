/* A profiling session: starts (or attaches to) the workload, opens the collectors,
 * samples them on a thread every interval, and writes the run record. */
#ifndef PROF_SESSION_H
#define PROF_SESSION_H

#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "profiler/prof_builtin.h"

typedef struct prof_options {
    char **argv;             /* the command (NULL-terminated), or NULL */
    pid_t pid;               /* --pid, or 0 */
    unsigned interval_ms;    /* default 100 */
    unsigned freq_hz;        /* sampling frequency, default 999 */
    unsigned sets;           /* PROF_SET_* */
    bool sets_explicit;
    unsigned top_n;          /* hot functions kept, default 30 */
    bool tee;                /* pass the command's output through a pipe and parse it */
    bool output_to_stderr;   /* the command's stdout goes to our stderr (--json) */
    double duration_s;       /* --duration (with --pid): stop after this long; 0 = until exit */
    const char *out;         /* record path */
    adg_bus *bus;            /* publish on this bus (the caller's, e.g. amxdiag top's live
                              * screen) instead of a new one; it must outlive the call */
    bool gpu_metrics;        /* --gpu-metrics: per-kernel counters through CUPTI where permitted */
    bool builtin;            /* no command: the built-in inference path, in process */
    prof_builtin_opts engine; /* its options (amxdiag run's) */
} prof_options;

typedef struct prof_outcome {
    int exit_code;           /* what amxdiag exits with (the command's status passed through) */
    json_t *record;          /* the record as written (new reference) */
    adg_error *workload_error; /* the built-in path failed (the record says so too); caller frees */
} prof_outcome;

/* Runs the whole session. An error means no record was written (bad input, the command
 * could not be started, the record could not be written); outcome->exit_code is then
 * the code to exit with. */
adg_error *prof_session_run(const prof_options *o, prof_outcome *outcome);

/* Builds the machine section (new reference). */
json_t *prof_machine_section(void);
/* The section's cpu_node array: NUMA node of each logical CPU (index = CPU number; -1 for
 * a CPU the kernel places on no node, e.g. offline), for per-node grouping (new reference). */
json_t *prof_machine_cpu_nodes(void);

/* The record's memory section from the bus's bandwidth metrics (new reference). */
json_t *prof_memory_section(adg_bus *bus);

/* Prints the human summary / the --json summary of a built record. */
void prof_summary_print(FILE *f, json_t *record, const char *path, bool color);
json_t *prof_summary_json(json_t *record, const char *path, int exit_code);

#endif

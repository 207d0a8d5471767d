/* The built-in inference path (kernels/kern_engine.h) as a profiled workload, run
 * in-process on its own thread so that the session's collectors, opened first, inherit
 * into every kernel worker thread the engine creates. */
#ifndef PROF_BUILTIN_H
#define PROF_BUILTIN_H

#include <jansson.h>
#include <stdbool.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "common/adg_record.h"
#include "kernels/kern_engine.h"

typedef struct prof_builtin_opts {
    kern_engine_opts engine;   /* model_path NULL: the default model */
    kern_bench_opts bench;
    const char *numa;          /* --numa policy or NULL */
} prof_builtin_opts;

typedef struct prof_builtin prof_builtin;

/* Starts the engine thread (open the model, attach the bus, run the llama-bench tests). */
adg_error *prof_builtin_start(const prof_builtin_opts *o, adg_bus *bus, prof_builtin **out);
bool prof_builtin_done(prof_builtin *b);
/* Joins the thread; fills the workload object (model, kernels), appends the tests to results and the record's
 * "ops" section, and adds the per-op traffic estimate to "memory" when no hardware source
 * measured bandwidth.  Returns the engine's error, if it failed (the record is still
 * complete otherwise). Frees b. */
adg_error *prof_builtin_finish(prof_builtin *b, json_t *workload, json_t *results, adg_record *rec);
/* After an interrupt: the engine cannot be cancelled mid-kernel; detach from the bus so
 * that it may be freed, and leave the thread to die with the process. */
void prof_builtin_abandon(prof_builtin *b);

#endif

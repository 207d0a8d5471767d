/* The confirmation re-run of a crash whose faulting kernel is not certain: the command
 * runs once more under the same GPU tracer with CUDA_LAUNCH_BLOCKING=1, where every launch
 * waits for its kernel, so the faulting launch returns the error itself; the finding is
 * merged into the first run's crash section (docs/crash-report.md, "Confirmation re-run"). */
#ifndef CRASH_CONFIRM_H
#define CRASH_CONFIRM_H

#include <stdbool.h>

#include "common/adg_error.h"
#include "profiler/prof_session.h"

/* Where the re-run's own record goes while it runs: "<record minus .json>.confirm.json"
 * (removed after the merge). */
void prof_confirm_record_path(const char *record_path, char *buf, size_t len);

/* If the record at o->out has a crash section whose faulting kernel is not certain (and the
 * run was not interrupted, and CUDA_LAUNCH_BLOCKING=1 is not already set), re-runs o->argv with CUDA_LAUNCH_BLOCKING=1 under the GPU
 * collector only, its output on stderr, and merges the result into the record atomically.
 * *ran says whether it re-ran; *rc gets the re-run's exit status (as a shell's $?).  An
 * error leaves the first record as it was.  Says nothing (beyond -v's info line). */
adg_error *prof_confirm_run(const prof_options *o, bool *ran, int *rc);
/* The same, and unless quiet says on stderr that it re-runs and what the re-run found
 * (what `amxdiag profile` uses). */
adg_error *prof_confirm_run_msg(const prof_options *o, bool quiet, bool *ran, int *rc);

#endif

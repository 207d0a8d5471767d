/* The confirmation re-run of a crash whose faulting kernel is not certain: the command
 * runs once more under the same GPU tracer with CUDA_LAUNCH_BLOCKING=1, where every launch
 * waits for its kernel, so the faulting launch returns the error itself; the finding is
 * merged into the first run's crash section (docs/crash-report.md, "Confirmation re-run"). */
#ifndef CRASH_CONFIRM_H
#define CRASH_CONFIRM_H

#include <jansson.h>
#include <stdbool.h>

#include "common/adg_error.h"
#include "profiler/prof_session.h"

/* Where the re-run's own record goes while it runs: "<record minus .json>.confirm.json"
 * (removed after the merge). */
void prof_confirm_record_path(const char *record_path, char *buf, size_t len);

/* What a confirmation re-run found (prof_confirm_run_ex). */
typedef struct prof_confirm_result {
    bool ran;               /* the command ran again */
    int rc;                 /* its exit status (as a shell's $?) */
    bool interrupted;       /* the re-run was stopped (Ctrl-C, top's q): nothing was merged */
    bool reproduced;        /* it failed with a CUDA error again */
    bool certain;           /* and named the faulting kernel for certain */
    int agrees;             /* 1/0: the kernel is / is not the launch ring's first guess; -1 unknown */
    char kernel[256];       /* the confirmed kernel ("" when none) */
    char first_guess[256];  /* the launch ring's guess before the re-run ("" when none) */
    char summary[768];      /* one line for the user (what prof_confirm_run_msg prints); "" when it did not run */
} prof_confirm_result;

/* Whether prof_confirm_run would re-run the command for this record (a loaded or just
 * written run record): a command ran, its crash section's faulting kernel is not certain,
 * the run was not interrupted, and CUDA_LAUNCH_BLOCKING=1 is not set already.  Lets a
 * caller say that it is about to confirm before it starts (amxdiag top's status line). */
bool prof_confirm_wanted(const prof_options *o, const json_t *record);

/* If the record at o->out has a crash section whose faulting kernel is not certain (and the
 * run was not interrupted, and CUDA_LAUNCH_BLOCKING=1 is not already set), re-runs o->argv with CUDA_LAUNCH_BLOCKING=1 under the GPU
 * collector only, its output on stderr, and merges the result into the record atomically.
 * *ran says whether it re-ran; *rc gets the re-run's exit status (as a shell's $?).  An
 * error leaves the first record as it was.  Says nothing (beyond -v's info line). */
adg_error *prof_confirm_run(const prof_options *o, bool *ran, int *rc);
/* The same, and unless quiet says on stderr that it re-runs and what the re-run found
 * (what `amxdiag profile` uses). */
adg_error *prof_confirm_run_msg(const prof_options *o, bool quiet, bool *ran, int *rc);
/* The same, silent, with what the re-run found in *res (amxdiag top shows it on screen).
 * A re-run that is interrupted (SIGINT/SIGTERM reach the session as in profile) merges
 * nothing: the first analysis stands and res->interrupted says so. */
adg_error *prof_confirm_run_ex(const prof_options *o, prof_confirm_result *res);

#endif

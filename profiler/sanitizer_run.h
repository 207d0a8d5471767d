/* `amxdiag profile --sanitize`: the command is run again under compute-sanitizer memcheck
 * (`--tool=memcheck --xml --save=FILE`), and its reports are merged into the crash
 * section of the run record (docs/crash-report.md). */
#ifndef SANITIZER_RUN_H
#define SANITIZER_RUN_H

#include <jansson.h>

#include "common/adg_error.h"

/* Finds compute-sanitizer: $COMPUTE_SANITIZER, then PATH, then the CUDA toolkit
 * ($CUDA_HOME/bin, /usr/local/cuda/bin, .../compute-sanitizer/). */
adg_error *prof_sanitizer_find(char *buf, size_t len);

/* Where the report of the record at record_path goes: "<record minus .json>.sanitizer.xml". */
void prof_sanitizer_report_path(const char *record_path, char *buf, size_t len);

/* Runs argv under compute-sanitizer (its output goes to our stderr), then merges the
 * report into the record file.  *exit_status gets the sanitized run's wait status
 * decoded like a shell's ($?). */
adg_error *prof_sanitize_run(char *const *argv, const char *record_path, int *exit_status);

/* Merges a compute-sanitizer report (XML or text) into the record file's crash section
 * and rewrites the record atomically.  A bad report leaves the record untouched.
 * *merged (optional) gets the number of memory-access reports merged. */
adg_error *prof_sanitize_merge(const char *record_path, const char *report_path, size_t *merged);

#endif

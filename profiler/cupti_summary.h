/* The GPU part of `amxdiag profile`'s summaries (human and --json), from a run record's
 * gpu_kernels section: the kernels by time and, with --gpu-metrics, what each one moved
 * through device memory and how busy it kept the SMs. */
#ifndef CUPTI_SUMMARY_H
#define CUPTI_SUMMARY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Prints nothing when the record has no gpu_kernels section. */
void prof_cupti_summary_print(FILE *f, json_t *rec, bool color);
/* {"kernel_time_s", "launches", "kernels": top 10 (name, count, total_s, median_us,
 * metrics), "metrics": the session} (new reference), or NULL without a gpu_kernels section. */
json_t *prof_cupti_summary_json(json_t *rec);

#endif

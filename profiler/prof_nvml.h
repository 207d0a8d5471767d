/* The nvml collector's part of `amxdiag profile`'s summaries (human and --json), from a
 * run record's nvml section and gpu.* series (profiler/prof_nvml.c, docs/nvml.md). */
#ifndef PROF_NVML_H
#define PROF_NVML_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Prints nothing when the record has no nvml section. */
void prof_nvml_summary_print(FILE *f, json_t *rec, bool color);
/* {"driver_version", "devices": [{instance, name, memory_total_bytes, mem_used_peak_bytes,
 * workload_mem_peak_bytes, util_mean_pct, util_max_pct, power_mean_w, power_max_w,
 * power_limit_w, temp_max_c}]} (new reference; absent keys where nothing was measured),
 * or NULL without an nvml section. */
json_t *prof_nvml_summary_json(json_t *rec);

#endif

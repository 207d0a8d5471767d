/* Parsers of the NUMA collector, exposed for tests. */
#ifndef PROF_NUMA_H
#define PROF_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROF_NUMA_MAX_NODES 64

/* Adds the resident bytes per node of one /proc/PID/numa_maps text to bytes[node]
 * (N<node>=<pages> x kernelpagesize_kB). Returns the number of mappings parsed. */
size_t prof_numa_parse_maps(const char *text, uint64_t bytes[PROF_NUMA_MAX_NODES]);
/* Field 39 (processor last run on) of a /proc/.../stat line; -1 when malformed. */
int prof_numa_stat_cpu(const char *stat_line);
/* utime + stime (fields 14 and 15, clock ticks) of a /proc/.../stat line; false when
 * malformed. */
bool prof_numa_stat_ticks(const char *stat_line, uint64_t *ticks);
/* AVX512_elapsed_ms from an arch_status text; -2 when absent (-1 = never used). */
long prof_numa_avx512_elapsed(const char *arch_status);

#endif

/* Parsers of the CPU collector (profiler/prof_cpu.c), exposed for tests. */
#ifndef PROF_CPU_H
#define PROF_CPU_H

#include <stddef.h>
#include <stdint.h>

typedef struct prof_cpu_ticks {
    int cpu;        /* N of the "cpuN" line */
    uint64_t total; /* user+nice+system+idle+iowait+irq+softirq+steal ticks */
    uint64_t idle;  /* idle + iowait */
} prof_cpu_ticks;

/* The per-CPU lines of a /proc/stat text, in file order (the aggregate "cpu" line is
 * skipped); at most max. Returns how many. */
size_t prof_cpu_parse_stat(const char *text, prof_cpu_ticks *out, size_t max);
/* Busy % of one CPU between two readings; -1 when no tick passed (or counters went back). */
double prof_cpu_util(const prof_cpu_ticks *before, const prof_cpu_ticks *after);

#endif

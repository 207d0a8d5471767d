/* --bench: the machine's ceilings.  Everything runs in a forked child (tile instructions
 * that fault must not take the probe down) with pthreads pinned one per CPU. */
#ifndef PROBE_BENCH_H
#define PROBE_BENCH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_ceilings.h"
#include "common/adg_error.h"

typedef struct probe_bench_opts {
    double seconds;        /* per compute measurement (default 0.15) */
    double clock_scale;    /* tests: every clock figure times this (AMXDIAG_BENCH_CLOCK_SCALE; 0 or 1: as measured) */
    size_t mem_bytes;      /* read buffer per node; 0: 4 x L3, between 256 MiB and 1 GiB */
    bool amx, vnni;        /* run these (the caller checked CPUID/XCR0) */
    unsigned amx_int8_peak, amx_bf16_peak, vnni_peak; /* theoretical ops/cycle/core, 0 unknown */
    int max_threads;       /* 0: every allowed CPU */
    size_t read_pf;        /* the read pass also with software prefetch this many bytes ahead (0: not;
                              default adg_read_pf_bytes()) */
} probe_bench_opts;

/* Where the time went, step by step (clock, AMX int8, AMX bf16, VNNI, memory node N). */
typedef struct probe_bench_timing {
    int n;
    char name[16][32];
    double seconds[16];
} probe_bench_timing;

/* Fills c (cpu/ncpus key included) and, when t is not NULL, the step timings.  An error means the child could not run at all;
 * a measurement that failed leaves its rate at 0 with `why` set. */
adg_error *probe_bench_run(const probe_bench_opts *o, adg_ceilings *c, probe_bench_timing *t);

/* What a compute loop's scaling says about the units behind the threads: `scale` = the
 * all-thread rate / the one-thread rate on `threads` threads, `siblings` = the threads per
 * core the OS reports (0 unknown).  Returns 0 when the threads scale (scale >= 0.6 x
 * threads, or fewer than 4 threads); else the number of units that seem to serve them
 * (scale rounded, at least 1), with `why` set to the likely reason: SMT siblings, or a
 * host that shares cores the guest calls separate (siblings 1).  An interpretation of one
 * run, so the report keeps it INFO: on a noisy host the one-thread figure moves (the
 * device machine's AMX loop scaled 7.1x in one call and 13.8x in another). */
int probe_bench_units(double scale, int threads, int siblings, char *why, size_t why_len);

#endif

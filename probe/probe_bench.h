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
    size_t mem_bytes;      /* read buffer per node; 0: 4 x L3, between 256 MiB and 1 GiB */
    bool amx, vnni;        /* run these (the caller checked CPUID/XCR0) */
    unsigned amx_int8_peak, amx_bf16_peak, vnni_peak; /* theoretical ops/cycle/core, 0 unknown */
    int max_threads;       /* 0: every allowed CPU */
    size_t read_pf;        /* the read pass also with software prefetch this many bytes ahead (0: not) */
} probe_bench_opts;
/* The default of read_pf (AMXDIAG_BENCH_READ_PF overrides it): on the device machine's
 * Emerald Rapids guest (tests/device/read_ceiling.sh, 2026-11-26 11:39 UTC, 4 GiB buffer,
 * 16 threads, two rounds) the plain loop read 108.9 / 111.7 GB/s, 1024 bytes ahead 143.7 /
 * 139.0, 2048 144.3 / 113.8, 4096 120.1 / 153.3, 8192 115.0 / 151.1. */
#define PROBE_BENCH_READ_PF 1024

/* Where the time went, step by step (clock, AMX int8, AMX bf16, VNNI, memory node N). */
typedef struct probe_bench_timing {
    int n;
    char name[16][32];
    double seconds[16];
} probe_bench_timing;

/* Fills c (cpu/ncpus key included) and, when t is not NULL, the step timings.  An error means the child could not run at all;
 * a measurement that failed leaves its rate at 0 with `why` set. */
adg_error *probe_bench_run(const probe_bench_opts *o, adg_ceilings *c, probe_bench_timing *t);

#endif

/* The machine's measured ceilings (`amxdiag probe --bench`), cached for later commands:
 * kernels' benchmarks and reports compare their rates against them.
 *
 * Location: $XDG_CACHE_HOME/amxdiag/ceilings-<cpu>-<N>cpu.json, or
 * ~/.cache/amxdiag/... when XDG_CACHE_HOME is unset, where <cpu> is the CPU's brand
 * string reduced to [A-Za-z0-9._-] and N the number of online CPUs.  A machine whose CPU
 * or CPU count changed (another VM size) thus never reads another machine's figures.
 * Schema "amxdiag.ceilings/1" (docs/probe-schema.md). */
#ifndef ADG_CEILINGS_H
#define ADG_CEILINGS_H

#include <jansson.h>
#include <stdbool.h>

#include "common/adg_error.h"

#define ADG_CEILINGS_SCHEMA "amxdiag.ceilings/1"
#define ADG_CEIL_MAX_NODES 64

/* One measured rate.  ops_per_s is 0 when not measured (then `why` says why). */
typedef struct adg_rate {
    double ops_per_s;       /* operations per second (a multiply-add counts 2) */
    double per_cycle;       /* ops per cycle per core at the measured clock */
    double peak_per_cycle;  /* theoretical ops per cycle per core, 0 when unknown */
    int threads;
    char why[96];
} adg_rate;

typedef struct adg_node_bw {
    int node;
    int threads;
    double read_gbs;        /* 1e9 bytes per second, all the node's allowed CPUs */
    double read_core_gbs;   /* one core */
    double read_plain_gbs;  /* read_gbs's loop, one stream per thread, without software prefetch (read_gbs:
                               the fastest of it, the prefetching loop read_pf_gbs and the multi-stream one
                               read_multi_gbs; 0 where not run) */
    double read_pf_gbs;
    double read_multi_gbs;  /* ADG_MEMREAD_STREAMS streams per thread, with or without prefetch (the faster) */
    double triad_gbs;       /* STREAM convention: 24 bytes per element */
    double buffer_bytes;
} adg_node_bw;

typedef struct adg_ceilings {
    char cpu[64];           /* brand string */
    int ncpus;              /* online CPUs when measured */
    char created[32];       /* ISO-8601 UTC */
    double clock_ghz;       /* one core, from a dependent-multiply loop; 0: no plausible figure */
    double clock_all_ghz;   /* mean over all cores running at once */
    char clock_note[160];   /* why the clock is 0 when a figure was measured but rejected, else "" */
    adg_rate amx_int8_core, amx_int8_all;
    adg_rate amx_bf16_core, amx_bf16_all;
    adg_rate vnni_core, vnni_all;
    size_t nnodes;
    adg_node_bw nodes[ADG_CEIL_MAX_NODES];
    double seconds;         /* how long the measurement took */
} adg_ceilings;

/* This machine's key: brand string (from CPUID) and online CPU count. */
void adg_ceilings_key(char *cpu, size_t len, int *ncpus);
/* The cache file for a key (caller frees).  Fails only when no home is known. */
adg_error *adg_ceilings_path(const char *cpu, int ncpus, char **path);

json_t *adg_ceilings_to_json(const adg_ceilings *c);
adg_error *adg_ceilings_from_json(const json_t *j, const char *what, adg_ceilings *c);

/* Saves under the key in c (creating the directory); atomic. */
adg_error *adg_ceilings_save(const adg_ceilings *c);
/* Loads the ceilings cached for a key.  *found = false (and no error) when none are. */
adg_error *adg_ceilings_load(const char *cpu, int ncpus, adg_ceilings *c, bool *found);
/* Loads this machine's ceilings (adg_ceilings_key). */
adg_error *adg_ceilings_load_current(adg_ceilings *c, bool *found);

/* The memory read loop's software prefetch distance in bytes, shared by `probe --bench` and
 * `bench kernels` so both read the same way: AMXDIAG_BENCH_READ_PF (0 .. 1048576, a multiple
 * of 64; 0 = the plain loop only), else ADG_READ_PF_DEFAULT.  On the device machine's
 * Emerald Rapids guest (tests/device/read_ceiling.sh, 2026-11-26 11:39 UTC, 4 GiB buffer,
 * 16 threads, two rounds) the plain loop read 108.9 / 111.7 GB/s, 1024 bytes ahead 143.7 /
 * 139.0, 2048 144.3 / 113.8, 4096 120.1 / 153.3, 8192 115.0 / 151.1.  A bad value is
 * ignored with a warning. */
#define ADG_READ_PF_DEFAULT 1024
size_t adg_read_pf_bytes(void);

#endif

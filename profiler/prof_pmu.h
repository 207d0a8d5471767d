/* Hardware PMU events through libpfm4: the event table and its encodings.
 *
 * libpfm4 4.13 knows Sapphire Rapids (model 143) but not Emerald Rapids (model 207),
 * whose core PMU is the same; on EMR the table is looked up with the PMU forced to
 * "spr" (LIBPFM_FORCE_PMU=spr, read once by pfm_initialize), and when libpfm4 cannot
 * encode an event at all the raw encoding from the table (event | umask << 8) is used.
 * The record says which. */
#ifndef PROF_PMU_H
#define PROF_PMU_H

#include <linux/perf_event.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/adg_error.h"

typedef struct prof_pmu_event {
    unsigned set;          /* PROF_SET_* */
    const char *id;        /* short name used in the record ("amx_busy") */
    const char *pfm;       /* libpfm4 name without PMU prefix ("EXE:AMX_BUSY"), or a perf:: generic name */
    uint64_t raw;          /* event | umask << 8 on SPR/EMR; 0 for generic events */
    double weight;         /* operations per count (lanes for packed FP; FMA already counts 2) */
    const char *meaning;
} prof_pmu_event;

extern const prof_pmu_event prof_pmu_events[];
extern const unsigned prof_pmu_nevents;

/* CPU family/model from CPUID. */
void prof_pmu_cpu_model(unsigned *family, unsigned *model);

typedef struct prof_pmu_table {
    char pmu[32];          /* libpfm4 PMU used for core events: "spr", "" when none */
    bool forced;           /* LIBPFM_FORCE_PMU was set by amxdiag (EMR on a libpfm4 without EMR) */
    char note[256];        /* what the record says about it */
} prof_pmu_table;

/* Initialises libpfm4 once (forcing "spr" on Emerald Rapids when libpfm4 has no EMR
 * table and the user did not set LIBPFM_FORCE_PMU), and says which table is used. */
adg_error *prof_pmu_init(prof_pmu_table *t);

/* Encodes one table event into attr (counting, user+kernel per the caller's flags);
 * *how is "libpfm4", "raw" or "generic". */
adg_error *prof_pmu_encode(const prof_pmu_table *t, const prof_pmu_event *ev, struct perf_event_attr *attr,
                           const char **how);

#endif

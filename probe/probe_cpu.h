/* CPU identity and ISA features decoded from the probe's inputs, with the tables the
 * decoding walks (feature bits, microarchitectures).  Used by every CPU-side section. */
#ifndef PROBE_CPU_H
#define PROBE_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "probe/probe_source.h"

typedef enum probe_feature {
    PROBE_F_OSXSAVE,
    PROBE_F_AVX,
    PROBE_F_FMA,
    PROBE_F_AVX2,
    PROBE_F_AVX_VNNI,
    PROBE_F_AVX512F,
    PROBE_F_AVX512DQ,
    PROBE_F_AVX512BW,
    PROBE_F_AVX512VL,
    PROBE_F_AVX512_VNNI,
    PROBE_F_AVX512_BF16,
    PROBE_F_AVX512_FP16,
    PROBE_F_AMX_TILE,
    PROBE_F_AMX_INT8,
    PROBE_F_AMX_BF16,
    PROBE_F_AMX_FP16,
    PROBE_F_AMX_COMPLEX,
    PROBE_F_HYPERVISOR,
    PROBE_F_N,
} probe_feature;

enum { PROBE_EAX, PROBE_EBX, PROBE_ECX, PROBE_EDX };

/* One row per feature: where CPUID reports it and how /proc/cpuinfo names it. */
typedef struct probe_isa_row {
    probe_feature f;
    const char *id;      /* check id suffix: "avx512_vnni" */
    const char *name;    /* "AVX-512 VNNI" */
    uint32_t leaf, subleaf;
    int reg, bit;
    const char *cpuinfo; /* flag name in /proc/cpuinfo (NULL: not listed there) */
    bool isa_check;      /* gets its own cpu.isa.* check */
    const char *use;     /* what amxdiag and inference engines use it for */
} probe_isa_row;

const probe_isa_row *probe_isa_table(size_t *n);
const probe_isa_row *probe_isa_row_of(probe_feature f);

/* One row per microarchitecture (vendor, family, model range, stepping range). */
typedef struct probe_uarch {
    const char *vendor;    /* "GenuineIntel", "AuthenticAMD" */
    unsigned family, model_lo, model_hi, step_lo, step_hi;
    const char *name;      /* "Emerald Rapids" */
    const char *product;   /* "5th Gen Xeon Scalable" */
    bool amx;              /* the silicon has AMX (a VM may still hide it) */
    unsigned amx_int8_ops; /* ops (2 per MAC) per cycle per core, theoretical */
    unsigned amx_bf16_ops;
    unsigned vnni512_ops;  /* ops per cycle per core from 512-bit VPDPBUSD */
    const char *pfm_core;  /* libpfm4 core PMU whose events this model uses ("spr"), or NULL */
} probe_uarch;

const probe_uarch *probe_uarch_table(size_t *n);
const probe_uarch *probe_uarch_lookup(const char *vendor, unsigned family, unsigned model, unsigned stepping);

typedef struct probe_cpu {
    bool ok;                 /* false: CPUID not recorded (corrupt or partial snapshot) */
    char vendor[13];
    char brand[49];
    char hypervisor[13];     /* "" on bare metal */
    unsigned family, model, stepping;
    const probe_uarch *uarch; /* NULL when not in the table */
    bool feat[PROBE_F_N];
    bool feat_known[PROBE_F_N]; /* false when the snapshot lacks the leaf */
} probe_cpu;

void probe_cpu_decode(probe_src *s, probe_cpu *c);
/* "Emerald Rapids (5th Gen Xeon Scalable)" or "unknown (family 6 model 250)". */
void probe_cpu_uarch_name(const probe_cpu *c, char *buf, size_t len);
/* Whether flag appears in the "flags" line of /proc/cpuinfo text; -1 when no flags line. */
int probe_cpuinfo_has_flag(const char *cpuinfo, const char *flag);

#endif

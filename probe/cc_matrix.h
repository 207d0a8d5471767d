/* The CUDA support matrix (one table, cc_matrix.c) and the rules that decide whether a
 * piece of device code runs on a compute capability.
 *
 * Compute capabilities and SM numbers are written as major*10+minor (9.0 -> 90,
 * 12.1 -> 121).  CUDA versions as the driver API writes them: major*1000+minor*10
 * (13.0 -> 13000). */
#ifndef PROBE_CC_MATRIX_H
#define PROBE_CC_MATRIX_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_error.h"

typedef struct cc_row {
    int cc;                 /* 90 */
    const char *arch_name;  /* "Hopper" */
    const char *examples;   /* "H100, H200, GH200" */
    int min_driver;         /* Linux driver branch, e.g. 520 (R520) */
    int min_toolkit;        /* CUDA version that first compiles for it, e.g. 11080 */
    int min_toolkit_a;      /* first toolkit with sm_XYa, 0 when there is none */
    int min_toolkit_f;      /* first toolkit with sm_XYf, 0 when there is none */
} cc_row;

/* The row for a CC, or NULL when the CC is not in the table. */
const cc_row *cc_lookup(int cc);
const cc_row *cc_rows(size_t *n);

/* One piece of device code as far as the loader cares. */
typedef struct cc_code {
    bool ptx;        /* PTX (JIT-compiled) rather than SASS */
    int arch;        /* 120 for sm_120 / compute_120 */
    char variant;    /* 0, 'a' (arch-specific), 'f' (family) */
    int ptx_isa;     /* PTX ISA version as major*10+minor (9.0 -> 90); 0 unknown */
} cc_code;

typedef enum cc_outcome {
    CC_NATIVE,          /* SASS for this CC (exactly or same major, lower minor) */
    CC_JIT,             /* only PTX fits: the driver JIT-compiles it on first load */
    CC_NO_IMAGE,        /* CUDA_ERROR_NO_BINARY_FOR_GPU (209) */
    CC_ARCH_SPECIFIC,   /* only sm_XYa/sm_XYf code for a different CC: also error 209 */
    CC_PTX_TOO_NEW,     /* only PTX the driver is too old to JIT: error 222 */
} cc_outcome;

typedef struct cc_verdict {
    cc_outcome outcome;
    int chosen;          /* index of the code the driver would load, -1 none */
    int cuda_error;      /* 0, 209 or 222 */
    char reason[512];
} cc_verdict;

/* True when code compiled as `c` can be loaded on a device of compute capability cc
 * (ignoring the PTX ISA / driver question). */
bool cc_code_fits(const cc_code *c, int cc);

/* The PTX ISA version (major*10+minor) that a driver supporting CUDA version
 * `cuda_version` (13000) can JIT, or 0 when unknown. */
int cc_max_ptx_isa(int cuda_version);
/* The CUDA version that introduced PTX ISA `isa` (90 -> 13000), 0 when unknown. */
int cc_cuda_for_ptx_isa(int isa);

/* Decides what the driver does with `codes` on a device of compute capability cc.
 * driver_cuda is the driver's CUDA version (cuDriverGetVersion), 0 when unknown
 * (then PTX ISA versions are not held against the code). */
void cc_evaluate(const cc_code *codes, size_t n, int cc, int driver_cuda, cc_verdict *out);

/* "sm_120a", "compute_90" into buf. */
const char *cc_code_name(const cc_code *c, char *buf, size_t len);
/* "12.0" into buf. */
const char *cc_fmt(int cc, char *buf, size_t len);
/* "13.0" from 13000 into buf. */
const char *cc_fmt_cuda(int cuda_version, char *buf, size_t len);

/* Parses a --cc argument: "12.0", "120", "sm_120", "sm_120a" (the variant is ignored:
 * a device has a plain CC). */
adg_error *cc_parse(const char *s, int *cc);

/* Checks the device itself against the table: is the CC known, does the driver branch
 * (e.g. 580) reach the row's minimum.  Fills reason; returns false when unsupported. */
bool cc_driver_supports(int cc, int driver_branch, char *reason, size_t len);

#endif

/* Executed self-tests: each instruction family runs in a forked child on random data and
 * is compared with a scalar reference.  A child that dies (SIGILL, SIGSEGV, ...) is
 * reported with the instruction it was executing; the probe itself never crashes. */
#ifndef PROBE_SELFTEST_H
#define PROBE_SELFTEST_H

#include <stdbool.h>
#include <stdint.h>

#include "common/adg_error.h"

typedef struct probe_st_op {
    const char *insn;     /* "TDPBSSD" */
    bool ran, ok;
    unsigned mismatches;  /* result elements that differ from the reference */
    char detail[128];     /* the first mismatch */
} probe_st_op;

#define PROBE_ST_MAX_OPS 8

typedef struct probe_st_result {
    bool completed;       /* the child ran every step and reported */
    int perm_ret, perm_errno; /* ARCH_REQ_XCOMP_PERM in the child (AMX only) */
    int signal;           /* the signal that ended the child, 0 if none */
    bool timed_out;
    int exit_code;
    char at[24];          /* the step the child was at when it ended */
    uint64_t seed;
    size_t nops;
    probe_st_op ops[PROBE_ST_MAX_OPS];
} probe_st_result;

typedef struct probe_st_opts {
    bool fp16;            /* AMX: also TDPFP16PS */
    bool ignore_perm;     /* AMX: go on when the permission request fails (tests: prove the SIGILL) */
    bool vnni, bf16;      /* AVX-512: which instructions to run */
    uint64_t seed;        /* 0: from the clock */
} probe_st_opts;

/* Runs the AMX self-test: permission, LDTILECFG (palette 1), TILELOADD, TDPBSSD,
 * TDPBSUD, TDPBUSD, TDPBUUD, TDPBF16PS (+TDPFP16PS), TILESTORED, TILERELEASE.
 * The error return is for a child that could not be started at all. */
adg_error *probe_selftest_amx(const probe_st_opts *o, probe_st_result *out);
/* Runs VPDPBUSD (AVX-512 VNNI) and VDPBF16PS (AVX-512 BF16) on zmm registers. */
adg_error *probe_selftest_avx512(const probe_st_opts *o, probe_st_result *out);

/* Scalar references (also used by the tests): C (16x16) += A (16x64 bytes) . B (16x64 bytes)
 * in the AMX layout (B holds K/4 rows of N groups of 4 bytes). */
void probe_ref_tdpb(int32_t c[16][16], const uint8_t a[16][64], const uint8_t b[16][64], bool a_signed,
                    bool b_signed);
/* C (16x16 fp32) += A (16x32 bf16/fp16) . B (16 rows of 16 pairs); fp16 selects the format. */
void probe_ref_tdp_half(float c[16][16], const uint16_t a[16][32], const uint16_t b[16][32], bool fp16);
float probe_bf16_to_float(uint16_t v);
float probe_fp16_to_float(uint16_t v);

#endif

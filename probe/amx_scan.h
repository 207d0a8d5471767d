/* A binary's AMX code, decoded with Zydis: how many tile instructions it holds, whether
 * it asks the kernel for the XTILEDATA permission, and for every LDTILECFG whether the
 * 64-byte tile configuration it loads has its rows and colsb written before it.
 *
 * The last question catches GCC 12's _tile_loadconfig bug: the block is passed as an
 * 8-byte memory operand, so the compiler drops the stores of colsb (bytes 16-47) and rows
 * (bytes 48-63) as dead; the block loaded holds only zeros and the palette byte, every
 * tile has 0 rows, and the first tile instruction raises #UD (SIGILL).  The analysis
 * looks at the straight-line code before each LDTILECFG (the fall-through path, at most
 * AMX_SCAN_WINDOW instructions, ending at a call, an unconditional jump or a return). */
#ifndef PROBE_AMX_SCAN_H
#define PROBE_AMX_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

#define AMX_SCAN_WINDOW 64
#define AMX_SCAN_MAX_STORES 12
#define AMX_SCAN_MAX_PERM 8

typedef struct amx_counts {
    uint64_t tdp;          /* TDPBSSD/TDPBSUD/TDPBUSD/TDPBUUD/TDPBF16PS/TDPFP16PS... */
    uint64_t tileloadd;    /* TILELOADD and TILELOADDT1 */
    uint64_t tilestored;
    uint64_t ldtilecfg;
    uint64_t sttilecfg;
    uint64_t tilezero;
    uint64_t tilerelease;
    uint64_t total;
} amx_counts;

typedef enum amx_cfg_verdict {
    AMX_CFG_WRITTEN,    /* rows/colsb are stored (or initialised data) before the load */
    AMX_CFG_UNWRITTEN,  /* the block holds only zeros (and the palette byte): SIGILL */
    AMX_CFG_UNKNOWN,    /* could not be decided; reason says why */
} amx_cfg_verdict;

/* What a byte of the block is known to hold when LDTILECFG runs. */
enum { AMX_BYTE_UNSEEN = 0, AMX_BYTE_ZERO, AMX_BYTE_SET };

typedef struct amx_cfg_store {
    uint64_t addr;        /* the storing instruction */
    int lo, hi;           /* bytes [lo, hi) of the block it writes (may start below 0 / end past 64: clipped) */
    bool zero;            /* the value stored is known to be zero */
    char text[96];        /* the instruction, Intel syntax */
} amx_cfg_store;

typedef struct amx_cfg_site {
    uint64_t addr;                  /* the LDTILECFG */
    char insn[96];                  /* its text */
    char func[128];                 /* the function holding it (symbols), "" unknown */
    uint64_t func_addr;
    amx_cfg_verdict verdict;
    char reason[400];               /* one line: why this verdict */
    uint8_t state[64];              /* AMX_BYTE_* per byte */
    bool absolute;                  /* the block's address is known (RIP-relative / lea) */
    uint64_t block_addr;            /* valid when absolute */
    char data_section[32];          /* where the block's initial bytes came from, "" none */
    uint8_t palette;                /* byte 0 when palette_known */
    bool palette_known;
    amx_cfg_store stores[AMX_SCAN_MAX_STORES]; /* program order; the ones nearest the load when more */
    size_t nstores, nstores_total;
} amx_cfg_site;

typedef struct amx_scan {
    amx_counts counts;
    uint64_t insns, bytes, undecodable;
    uint64_t first_amx;                    /* address of the first tile instruction; 0 none */
    uint64_t perm_sites[AMX_SCAN_MAX_PERM]; /* "mov $0x1023, reg" followed by syscall / call */
    size_t nperm;
    amx_cfg_site *sites;
    size_t nsites, cap;
} amx_scan;

/* Where an absolute address lies in the file, for a configuration in data. */
typedef enum amx_data_kind {
    AMX_DATA_NONE,       /* not in any allocated section, or unresolvable (relocatable object) */
    AMX_DATA_READONLY,   /* .rodata & co: the file's bytes are the bytes loaded */
    AMX_DATA_WRITABLE,   /* .data: the file's bytes are the initial value */
    AMX_DATA_BSS,        /* zero-initialised, filled at run time if at all */
} amx_data_kind;

/* Fills out[0..64) with the file's bytes at vaddr (zeros for BSS) and names the section. */
typedef amx_data_kind (*amx_data_fn)(void *ctx, uint64_t vaddr, uint8_t out[64], char *section, size_t seclen);

/* What the scan may ask of the file; every member may be NULL. */
typedef struct amx_env {
    amx_data_fn data;
    bool (*is_entry)(void *ctx, uint64_t vaddr); /* is vaddr a function's first instruction? */
    void *ctx;
} amx_env;

void amx_scan_init(amx_scan *s);
void amx_scan_free(amx_scan *s);

/* Decodes code[0..len) loaded at vaddr (one executable section), adding to s.  env (may
 * be NULL) resolves configurations held in data sections and marks function entries: a
 * stack block whose colsb/rows are not stored between the function's entry (or its frame
 * allocation) and the LDTILECFG holds uninitialised bytes. */
adg_error *amx_scan_code(amx_scan *s, const uint8_t *code, size_t len, uint64_t vaddr, const amx_env *env);

const char *amx_cfg_verdict_name(amx_cfg_verdict v); /* "written", "unwritten", "unknown" */

#endif

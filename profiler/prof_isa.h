/* ISA classes of x86-64 machine code, decoded with Zydis 4.
 *
 * A function's class is the most advanced class among its instructions (AMX > AVX-512 >
 * AVX2 > SSE > scalar); a sampled instruction's block class is the same rule applied to
 * the straight-line run of instructions from the sampled IP to the next branch. */
#ifndef PROF_ISA_H
#define PROF_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum prof_isa_class {
    PROF_ISA_SCALAR = 0,  /* general-purpose, x87, BMI: no vector unit */
    PROF_ISA_SSE,         /* legacy-encoded SSE..SSE4.2, MMX, AES-NI, SHA */
    PROF_ISA_AVX2,        /* VEX-encoded vector code: AVX, AVX2, FMA, F16C, AVX-VNNI */
    PROF_ISA_AVX512,      /* EVEX-encoded code and opmask ops: AVX-512 incl. VNNI/BF16/FP16 */
    PROF_ISA_AMX,         /* tile instructions: AMX-TILE/INT8/BF16 */
    PROF_ISA_UNKNOWN,     /* could not be decoded or resolved (no symbol, JIT, vdso) */
    PROF_ISA_NCLASSES
} prof_isa_class;

/* "amx", "avx512", "avx2", "sse", "scalar", "unknown" */
const char *prof_isa_class_name(prof_isa_class c);
/* Parses a class name; -1 when unknown. */
int prof_isa_class_parse(const char *s);

typedef struct prof_isa_counts {
    uint32_t n[PROF_ISA_NCLASSES];   /* instructions per class (UNKNOWN = undecodable bytes) */
    uint32_t total;
} prof_isa_counts;

/* Classifies every instruction in code[0..len) (runtime address `addr`), counting per
 * class into counts (may be NULL); returns the most advanced class found (SCALAR for an
 * empty range, UNKNOWN when nothing decodes). Undecodable bytes are skipped one by one. */
prof_isa_class prof_isa_classify(const uint8_t *code, size_t len, uint64_t addr, prof_isa_counts *counts);

/* Classifies the instructions from code[0] up to and including the first control-flow
 * instruction (jump, call, return) or max_insns instructions. */
prof_isa_class prof_isa_classify_block(const uint8_t *code, size_t len, uint64_t addr, unsigned max_insns);

/* Is the instruction at code[back] (runtime address addr) part of a spin-wait loop?  True
 * when the run from it to its first branch contains PAUSE, or that branch jumps back at
 * most `back` bytes (a loop around the sampled instruction) and the loop body contains
 * PAUSE.  code[0..len) holds the bytes from addr - back.  Such samples are threads waiting
 * for work (thread-pool barriers, spin locks), not computing: VTune's "spin time". */
bool prof_isa_spins(const uint8_t *code, size_t len, size_t back, uint64_t addr);

#endif

/* The core clock from a chain of dependent 64-bit multiplies: 3 cycles each on every Intel
 * core since Sandy Bridge and every Zen.  (A chain of `add $1` does not work: Golden Cove and
 * later cores, Sapphire/Emerald Rapids included, fold immediate adds at rename and run several
 * per cycle, which read as a 7-15 GHz "clock" on the device machine.)  Header-only, so the
 * one-core test fixtures (tests/fixtures/amx) use the same chain as probe --bench. */
#ifndef ADG_CLOCK_H
#define ADG_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t adg_clock_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* 16 * n dependent multiplies; their cycle count is 48 * n. */
static inline void adg_mul_chain(uint64_t n)
{
    uint64_t x = 1, m = 3;
    __asm__ volatile("1:\n\t"
                     ".rept 16\n\timul %2, %0\n\t.endr\n\t"
                     "dec %1\n\tjnz 1b"
                     : "+r"(x), "+r"(n)
                     : "r"(m));
}

/* GHz of one timed chain of 16 * n multiplies. */
static inline double adg_mul_chain_ghz(uint64_t n)
{
    const uint64_t t0 = adg_clock_ns();
    adg_mul_chain(n);
    return (double)(48 * n) / (double)(adg_clock_ns() - t0);
}

#endif

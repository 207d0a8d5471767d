/* Helpers shared by the kernel tests. */
#ifndef KERN_TEST_H
#define KERN_TEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "adg_test.h"
#include "kernels/kern_cpu.h"

/* Whether an implementation can run on this machine; where not, a SKIP line for that part
 * of the test (the rest still runs). */
static inline bool impl_here(kern_impl impl)
{
    adg_error *e = kern_impl_check(impl);
    if (!e)
        return true;
    printf("SKIP part: %s: %s\n", kern_impl_name(impl), adg_error_msg(e));
    adg_error_free(e);
    return false;
}

/* xorshift64 on *state: uniform in [-1, 1) with 24 random bits (each test its own seed). */
static inline float kern_test_frand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (float)((*state >> 40) & 0xFFFFFF) / (float)(1 << 24) * 2.0f - 1.0f;
}

/* A CPU context of `impl` with `threads` workers and the default crossover points: a
 * crossover file measured on this machine (bench kernels --save-crossover) must not
 * change which kernel a test runs. */
static inline kern_cpu *kern_test_cpu(kern_impl impl, int threads)
{
    setenv("AMXDIAG_CROSSOVER", "/nonexistent/amxdiag-test-crossover.json", 1);
    kern_cpu_opts o = {.impl = impl, .threads = threads};
    kern_cpu *c = NULL;
    ADG_ASSERT_OK(kern_cpu_new(&o, &c));
    return c;
}

#endif

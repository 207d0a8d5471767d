/* Helpers shared by the kernel tests. */
#ifndef KERN_TEST_H
#define KERN_TEST_H

#include <stdbool.h>
#include <stdio.h>

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

#endif

/* The GPU context shared by the CUDA kernel tests (included once per test file): setup()
 * opens device 0 or records why it cannot, so each GPU test skips with that reason. */
#ifndef CUDA_TEST_CTX_H
#define CUDA_TEST_CTX_H

#include <stdio.h>

#include "kernels/cuda/kern_cuda.h"

static kern_cuda_ctx *ctx;
static char skip_reason[512];

static int setup(void **state)
{
    (void)state;
    adg_error *e = kern_cuda_open(0, KERN_CUDA_LOAD_AUTO, &ctx);
    if (e) {
        snprintf(skip_reason, sizeof skip_reason, "no usable GPU: %s", adg_error_msg(e));
        adg_error_free(e);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kern_cuda_close(ctx);
    return 0;
}

#endif

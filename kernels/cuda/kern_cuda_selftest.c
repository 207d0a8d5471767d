/* The probe's functional test, and the planted faults. */
#include "kernels/cuda/kern_cuda_check.h"
#include "kernels/cuda/kern_cuda_internal.h"

#include <stdio.h>
#include <string.h>

adg_error *kern_cuda_selftest(kern_cuda_ctx *c, json_t **details)
{
    kern_cuda_check_result r[6];
    int n = 0;
    adg_error *e = NULL;
    /* 70,000 indices: past the 65,535 that a grid.y launch would allow. */
    if (!e)
        e = kern_cuda_check_get_rows(c, KERN_TYPE_F32, 1000, 64, 70000, 1, &r[n++]);
    if (!e)
        e = kern_cuda_check_get_rows(c, KERN_TYPE_F16, 300, 96, 257, 2, &r[n++]);
    if (!e)
        e = kern_cuda_check_get_rows(c, KERN_TYPE_Q4_0, 300, 256, 513, 3, &r[n++]);
    if (!e)
        e = kern_cuda_check_get_rows(c, KERN_TYPE_Q8_0, 300, 256, 513, 4, &r[n++]);
    if (!e)
        e = kern_cuda_check_gemv(c, KERN_TYPE_Q4_0, 512, 1024, 5, &r[n++]);
    if (e)
        n--; /* the last one did not finish */
    if (details) {
        json_t *tests = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(tests, kern_cuda_check_json(&r[i]));
        *details = json_pack("{s:o, s:o}", "tests", tests, "load", kern_cuda_info_json(&c->info));
    }
    if (e)
        return adg_error_prefix(e, "CUDA self-test");
    for (int i = 0; i < n; i++)
        if (!r[i].pass)
            return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "CUDA self-test: %s gives wrong results on %s (%s)",
                                                r[i].name, c->info.name, r[i].worst),
                                  "the GPU or the driver's code for compute capability %d.%d computes wrongly; "
                                  "try another driver, and report this with `amxdiag probe --json`",
                                  c->info.cc_major, c->info.cc_minor);
    return NULL;
}

adg_error *kern_cuda_run_fault(kern_cuda_ctx *c, kern_cuda_fault f)
{
    /* Small buffers: the planted accesses land tens of GiB away from all of them. */
    const int64_t nrows = 4096, ncols = 256, n_ids = 512, m = 1024;
    kern_cu_deviceptr tab = 0, ids = 0, rows = 0, w = 0, x = 0, y = 0, scr = 0;
    adg_error *e = kern_cuda_alloc(c, kern_row_size(KERN_TYPE_F32, ncols) * nrows, &tab);
    if (!e)
        e = kern_cuda_alloc(c, (size_t)n_ids * 4, &ids);
    if (!e)
        e = kern_cuda_alloc(c, (size_t)(n_ids * ncols) * 4, &rows);
    if (!e)
        e = kern_cuda_alloc(c, kern_row_size(KERN_TYPE_Q4_0, ncols) * m, &w);
    if (!e)
        e = kern_cuda_alloc(c, (size_t)ncols * 4, &x);
    if (!e)
        e = kern_cuda_alloc(c, (size_t)m * 4, &y);
    if (!e)
        e = kern_cuda_alloc(c, kern_cuda_gemv_scratch(ncols), &scr);
    if (e)
        return e;
    /* Valid data everywhere: the only bad access is the planted one. */
    int32_t idv[512];
    for (int i = 0; i < n_ids; i++)
        idv[i] = (int32_t)((i * 7919) % nrows);
    if (c->d->cuMemsetD8(tab, 0, kern_row_size(KERN_TYPE_F32, ncols) * nrows) ||
        c->d->cuMemsetD8(w, 0, kern_row_size(KERN_TYPE_Q4_0, ncols) * m) || c->d->cuMemsetD8(x, 0, ncols * 4) ||
        c->d->cuCtxSynchronize())
        return adg_error_new(ADG_E_CUDA, "preparing the fault run: cuMemsetD8 failed");
    if ((e = kern_cuda_upload(c, ids, idv, sizeof idv)) != NULL)
        return e;
    kern_cuda_inject(c, f);
    /* The order of a decode step: embedding gather, then a projection. */
    e = kern_cuda_get_rows(c, KERN_TYPE_F32, tab, nrows, ncols, ids, n_ids, rows);
    if (!e)
        e = kern_cuda_sync(c, "get_rows");
    if (!e)
        e = kern_cuda_gemv(c, KERN_TYPE_Q4_0, w, m, ncols, x, y, scr);
    if (!e)
        e = kern_cuda_sync(c, "gemv");
    c->armed = KERN_CUDA_FAULT_NONE;
    return e;
}

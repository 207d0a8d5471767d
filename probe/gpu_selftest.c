/* The functional test per GPU: amxdiag's own kernels (GET_ROWS and a Q4_0 matvec)
 * loaded through the driver API, run on random data and compared with the CPU
 * reference, once as the driver picks (SASS when there is a match) and once forcing
 * the PTX JIT. */
#include "probe/gpu_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kern_cuda.h"

static const char *mode_id(kern_cuda_load_mode m)
{
    return m == KERN_CUDA_LOAD_FORCE_PTX ? "ptx" : "sass";
}

void gpu_selftest_check(probe_report *rep, const gpu_dev *d, kern_cuda_load_mode mode)
{
    char id[64], title[128];
    snprintf(id, sizeof id, "gpu.%d.selftest.%s", d->ordinal, mode_id(mode));
    snprintf(title, sizeof title, "GPU %d runs amxdiag's kernels (%s)", d->ordinal,
             mode == KERN_CUDA_LOAD_FORCE_PTX ? "forced PTX JIT" : "driver's choice: SASS or PTX");
    const char *env = getenv("AMXDIAG_PROBE_GPU_SELFTEST");
    if (env && !strcmp(env, "0")) {
        probe_add(rep, "gpu", id, PROBE_SKIP, title, "skipped: AMXDIAG_PROBE_GPU_SELFTEST=0",
                  "not run (AMXDIAG_PROBE_GPU_SELFTEST=0)");
        return;
    }
    if (!kern_cuda_built_with_kernels()) {
        probe_add(rep, "gpu", id, PROBE_SKIP, title,
                  "this amxdiag was built without nvcc, so it carries no CUDA kernels to test",
                  "built without CUDA kernels");
        return;
    }
    kern_cuda_ctx *ctx = NULL;
    adg_error *e = kern_cuda_open(d->ordinal, mode, &ctx);
    if (e) {
        probe_check *c = probe_add(rep, "gpu", id, PROBE_FAIL, title,
                                   "the kernels could not be loaded onto this GPU", "%s", adg_error_msg(e));
        if (c && adg_error_remedy(e))
            probe_check_set_remedy(c, "%s", adg_error_remedy(e));
        adg_error_free(e);
        return;
    }
    const kern_cuda_load_info *in = kern_cuda_info(ctx);
    json_t *details = NULL;
    e = kern_cuda_selftest(ctx, &details);
    char how[160];
    if (in->used_ptx_jit)
        snprintf(how, sizeof how, "PTX JIT (compute_%d, PTX ISA %d.%d) to sm_%d", in->ptx_arch, in->ptx_version / 10,
                 in->ptx_version % 10, in->image_arch);
    else
        snprintf(how, sizeof how, "native SASS sm_%d", in->image_arch);
    /* A forced JIT that silently loaded SASS would test nothing: say so. */
    bool mode_ok = mode != KERN_CUDA_LOAD_FORCE_PTX || in->used_ptx_jit;
    probe_check *c;
    if (e) {
        c = probe_add(rep, "gpu", id, PROBE_FAIL, title,
                      "the GPU's results differ from the CPU reference: the kernels or the GPU are broken",
                      "%s; module load %.1f ms; %s", how, in->module_load_ms, adg_error_msg(e));
        if (c)
            probe_check_set_remedy(c, "%s", adg_error_remedy(e) ? adg_error_remedy(e)
                                                                 : "rerun under compute-sanitizer; report with the JSON output");
        adg_error_free(e);
    } else if (!mode_ok) {
        c = probe_add(rep, "gpu", id, PROBE_FAIL, title, "PTX JIT was requested but the driver loaded SASS",
                      "%s; module load %.1f ms", how, in->module_load_ms);
    } else {
        size_t ntests = details ? json_array_size(json_object_get(details, "tests")) : 0;
        c = probe_add(rep, "gpu", id, PROBE_PASS, title,
                      in->used_ptx_jit ? "the driver JIT-compiled the PTX; results match the CPU reference (the "
                                         "first load of a PTX-only binary pays this JIT time)"
                                       : "native code for this GPU; results match the CPU reference",
                      "%s; module load %.1f ms%s; %zu kernel tests match the CPU reference", how, in->module_load_ms,
                      in->used_ptx_jit && in->jit_ms > 0 ? " (JIT included)" : "", ntests);
    }
    if (c) {
        json_t *data = json_object();
        json_object_set_new(data, "load", kern_cuda_info_json(in));
        if (details)
            json_object_set(data, "selftest", details);
        probe_check_set_data(c, data);
    }
    json_decref(details);
    kern_cuda_close(ctx);
}

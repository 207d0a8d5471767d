/* The sm_90a module of the wgmma prompt GEMM (kern_gemm_wgmma.cu): the embedded cubin and
 * its loading.  wgmma is arch-specific (sm_90a) code, so it cannot sit in the main
 * fatbin's sm_90 image and runs on no other compute capability; the module is loaded
 * only on a 9.0 device and only in the normal (SASS) load mode.  Loading never fails the
 * context: where the module cannot be used, the plan runs the f16-MMA kernel instead and
 * says why (caps.wgmma_off, `bench`'s plan lines, the debug log). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "kernels/cuda/kern_cuda_internal.h"
#include "kernels/cuda/kern_gemm_wgmma_map.h"

#ifdef AMXDIAG_CUDA_WGMMA
/* Defined by the generated kern_cuda_embed.S (kernels/cuda/CMakeLists.txt). */
extern const unsigned char kern_cuda_wgmma_start[], kern_cuda_wgmma_end[];
#endif

void kern_cuda_wgmma_image(const void **data, size_t *len)
{
#ifdef AMXDIAG_CUDA_WGMMA
    *data = kern_cuda_wgmma_start;
    *len = (size_t)(kern_cuda_wgmma_end - kern_cuda_wgmma_start);
#else
    *data = NULL;
    *len = 0;
#endif
}

bool kern_cuda_fn_in_wgmma(int fn) { return fn >= KF_GEMM_WGMMA_FIRST && fn <= KF_GEMM_WGMMA_LAST; }

/* Why the module is not used on this context, or NULL when it may be loaded. */
static const char *wgmma_unusable(const kern_cuda_ctx *c, char *buf, size_t len)
{
    const void *img;
    size_t n;
    kern_cuda_wgmma_image(&img, &n);
    const char *env = getenv("AMXDIAG_GPU_WGMMA");
    if (!n)
        return "this amxdiag has no sm_90a module (built with AMXDIAG_CUDA_ARCHS without 90)";
    if (env && strcmp(env, "0") == 0)
        return "AMXDIAG_GPU_WGMMA=0";
    if (c->info.mode == KERN_CUDA_LOAD_FORCE_PTX)
        return "forced PTX JIT: the sm_90a module is SASS only";
    if (c->info.cc_major != 9 || c->info.cc_minor != 0) {
        snprintf(buf, len, "compute capability %d.%d: wgmma is sm_90a code, which runs on 9.0 (H100, H200) only",
                 c->info.cc_major, c->info.cc_minor);
        return buf;
    }
    return NULL;
}

void kern_cuda_wgmma_load(kern_cuda_ctx *c)
{
    const kern_cuda_driver *d = c->d;
    c->caps.wgmma = false;
    c->caps.wgmma_off = c->wgmma_off;
    const char *why = wgmma_unusable(c, c->wgmma_off, sizeof c->wgmma_off);
    if (why) {
        if (why != c->wgmma_off)
            snprintf(c->wgmma_off, sizeof c->wgmma_off, "%s", why);
        adg_debug("cuda: wgmma GEMM not used: %s", c->wgmma_off);
        return;
    }
    const void *img;
    size_t n;
    kern_cuda_wgmma_image(&img, &n);
    char errlog[1024] = "";
    int opts[] = {KERN_CU_JIT_ERROR_LOG_BUFFER, KERN_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[] = {errlog, (void *)(uintptr_t)sizeof errlog};
    kern_cu_result r = d->cuModuleLoadDataEx(&c->mod_wgmma, img, 2, opts, vals);
    if (r != KERN_CU_SUCCESS) {
        c->mod_wgmma = NULL;
        snprintf(c->wgmma_off, sizeof c->wgmma_off, "loading the sm_90a module (%zu bytes) failed: %s%s%.80s", n,
                 kern_cuda_result_name(r), errlog[0] ? "; " : "", errlog);
        adg_warn("cuda: wgmma GEMM not used (the f16-MMA kernel runs instead): %s", c->wgmma_off);
        return;
    }
    for (int i = KF_GEMM_WGMMA_FIRST; i <= KF_GEMM_WGMMA_LAST; i++) {
        r = d->cuModuleGetFunction(&c->fn[i], c->mod_wgmma, kern_cuda_kernel_names[i]);
        if (r != KERN_CU_SUCCESS) {
            snprintf(c->wgmma_off, sizeof c->wgmma_off, "CUDA kernel %s missing from the sm_90a module: %s",
                     kern_cuda_kernel_names[i], kern_cuda_result_name(r));
            adg_warn("cuda: wgmma GEMM not used (the f16-MMA kernel runs instead): %s", c->wgmma_off);
            d->cuModuleUnload(c->mod_wgmma);
            c->mod_wgmma = NULL;
            for (int j = KF_GEMM_WGMMA_FIRST; j <= KF_GEMM_WGMMA_LAST; j++)
                c->fn[j] = NULL;
            return;
        }
    }
    c->wgmma_off[0] = 0;
    c->caps.wgmma_off = NULL;
    c->caps.wgmma = true;
    adg_debug("cuda: sm_90a wgmma module loaded (%zu bytes)", n);
}

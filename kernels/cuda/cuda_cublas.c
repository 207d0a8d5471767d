/* cuBLAS through dlopen, only for the comparison GEMM. */
#include "kernels/cuda/cuda_cublas.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cublas_api.h / library_types.h values. */
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUDA_R_16F = 2, CUDA_R_32F = 0, CUDA_R_8I = 3, CUDA_R_32I = 10,
       CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32I = 72, CUBLAS_GEMM_DEFAULT = -1 };

typedef struct cublas_ctx_st *cublas_handle;
struct kern_cublas {
    void *lib;
    char path[128];
    cublas_handle h;
    int (*create)(cublas_handle *);
    int (*destroy)(cublas_handle);
    int (*set_stream)(cublas_handle, kern_cu_stream);
    int (*gemm_ex)(cublas_handle, int, int, int, int, int, const void *, const void *, int, int, const void *, int,
                   int, const void *, void *, int, int, int, int);
};

static void *sym(void *lib, const char *name)
{
    return dlsym(lib, name);
}

adg_error *kern_cublas_open(kern_cuda_ctx *ctx, kern_cu_stream stream, kern_cublas **out)
{
    (void)ctx;
    *out = NULL;
    const char *env = getenv("AMXDIAG_LIBCUBLAS");
    const char *cands[] = {env && *env ? env : "libcublas.so.13", "libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13",
                           "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.12", "libcublas.so"};
    kern_cublas *b = calloc(1, sizeof *b);
    if (!b)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (size_t i = 0; i < sizeof cands / sizeof cands[0] && !b->lib; i++) {
        b->lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (b->lib)
            snprintf(b->path, sizeof b->path, "%s", cands[i]);
    }
    if (!b->lib) {
        free(b);
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "cuBLAS not found (libcublas.so.13 or .12)"),
                              "install the CUDA toolkit's cuBLAS, set AMXDIAG_LIBCUBLAS, or pass --no-cublas");
    }
    void *p[4] = {sym(b->lib, "cublasCreate_v2"), sym(b->lib, "cublasDestroy_v2"), sym(b->lib, "cublasSetStream_v2"),
                  sym(b->lib, "cublasGemmEx")};
    if (!p[0] || !p[1] || !p[2] || !p[3]) {
        dlclose(b->lib);
        free(b);
        return adg_error_new(ADG_E_UNSUPPORTED, "%s lacks cublasCreate_v2/cublasGemmEx", cands[0]);
    }
    memcpy(&b->create, &p[0], sizeof p[0]);
    memcpy(&b->destroy, &p[1], sizeof p[1]);
    memcpy(&b->set_stream, &p[2], sizeof p[2]);
    memcpy(&b->gemm_ex, &p[3], sizeof p[3]);
    int st = b->create(&b->h);
    if (st == 0)
        st = b->set_stream(b->h, stream);
    if (st != 0) {
        kern_cublas_close(b);
        return adg_error_new(ADG_E_CUDA, "cuBLAS initialisation failed (cublasStatus %d)", st);
    }
    *out = b;
    return NULL;
}

void kern_cublas_close(kern_cublas *b)
{
    if (!b)
        return;
    if (b->h)
        b->destroy(b->h);
    if (b->lib)
        dlclose(b->lib);
    free(b);
}

const char *kern_cublas_path(const kern_cublas *b) { return b->path; }

adg_error *kern_cublas_gemm_f16(kern_cublas *b, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr x,
                                int64_t n, kern_cu_deviceptr y)
{
    /* Column-major view: C (m x n, ld m) = W^T-as-stored (k x m, op T) . X (k x n). */
    const float alpha = 1.0f, beta = 0.0f;
    void *wp = (void *)(uintptr_t)w, *xp = (void *)(uintptr_t)x, *yp = (void *)(uintptr_t)y;
    int st = b->gemm_ex(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)k, &alpha, wp, CUDA_R_16F, (int)k, xp,
                        CUDA_R_16F, (int)k, &beta, yp, CUDA_R_32F, (int)m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != 0)
        return adg_error_new(ADG_E_CUDA, "cublasGemmEx %lldx%lldx%lld failed (cublasStatus %d)", (long long)m,
                             (long long)n, (long long)k, st);
    return NULL;
}

bool kern_cublas_has_i8(const kern_cublas *b) { return b && b->gemm_ex; }

adg_error *kern_cublas_gemm_i8(kern_cublas *b, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr x,
                               int64_t n, kern_cu_deviceptr y)
{
    /* The int8 form cuBLAS documents: A transposed, B not (both k-contiguous), int32
     * alpha/beta and result, leading dimensions multiples of 4. */
    const int32_t alpha = 1, beta = 0;
    void *wp = (void *)(uintptr_t)w, *xp = (void *)(uintptr_t)x, *yp = (void *)(uintptr_t)y;
    int st = b->gemm_ex(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)k, &alpha, wp, CUDA_R_8I, (int)k, xp,
                        CUDA_R_8I, (int)k, &beta, yp, CUDA_R_32I, (int)m, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT);
    if (st != 0)
        return adg_error_new(ADG_E_CUDA, "cublasGemmEx int8 %lldx%lldx%lld failed (cublasStatus %d)", (long long)m,
                             (long long)n, (long long)k, st);
    return NULL;
}

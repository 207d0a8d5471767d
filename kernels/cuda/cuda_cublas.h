/* cuBLAS, dlopen'ed for one purpose: the reference GEMM rate in `bench kernels --gpu`. */
#ifndef KERN_CUDA_CUBLAS_H
#define KERN_CUDA_CUBLAS_H

#include "kernels/cuda/kern_cuda.h"

typedef struct kern_cublas kern_cublas;

/* Loads libcublas.so.13 (or .12, or $AMXDIAG_LIBCUBLAS) and creates a handle on the
 * context's current device and stream. ADG_E_UNSUPPORTED when it is not installed. */
adg_error *kern_cublas_open(kern_cuda_ctx *ctx, kern_cu_stream stream, kern_cublas **out);
void kern_cublas_close(kern_cublas *b);
/* Where the library was found ("libcublas.so.13"). */
const char *kern_cublas_path(const kern_cublas *b);
/* Y[n, m] = W[m, k] . X[n, k]^T with W and X f16, Y f32, f32 accumulation (tensor cores):
 * the same shape and precision as kern_cuda_gemm's f16 path.  Asynchronous. */
adg_error *kern_cublas_gemm_f16(kern_cublas *b, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr x,
                                int64_t n, kern_cu_deviceptr y);
/* Y[n, m] = W[m, k] . X[n, k]^T with W and X int8, Y int32 (CUBLAS_COMPUTE_32I): the
 * int8 reference rate.  m and k multiples of 4.  Asynchronous. */
bool kern_cublas_has_i8(const kern_cublas *b);
adg_error *kern_cublas_gemm_i8(kern_cublas *b, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr x,
                               int64_t n, kern_cu_deviceptr y);

#endif

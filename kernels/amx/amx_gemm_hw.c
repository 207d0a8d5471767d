/* The AMX kernels on the real tile instructions.  Compiled with -mamx-tile -mamx-int8
 * -mamx-bf16 and the AVX-512 flags (kernels/CMakeLists.txt); only called after
 * kern_impl_check(KERN_IMPL_AMX) succeeded, which includes the permission request. */
#include <immintrin.h>

#include "kernels/kern_internal.h"

#define AMX_SYM(x) hw_##x
#include "kernels/amx/amx_gemm.inc.c"

const kern_amx_kernels kern_amx_hw = {"amx", hw_gemm_q, hw_gemm_q_1x1, hw_gemm_bf16};

/* The AMX kernels on the real tile instructions.  Compiled with -mamx-tile -mamx-int8
 * -mamx-bf16 and the AVX-512 flags (kernels/CMakeLists.txt); only called after
 * kern_impl_check(KERN_IMPL_AMX) succeeded, which includes the permission request. */
#include <immintrin.h>

#include "kernels/kern_internal.h"

/* GCC 12's _tile_loadconfig passes the 64-byte configuration as an 8-byte memory operand,
 * so the compiler drops the stores of the rows/colsb fields as dead (seen on hardware: a
 * #GP/SIGSEGV at the first tile load).  Its _tile_loadd has no memory input at all, so
 * stores to a buffer a tile then loads (the Q4_0 unpack scratch) could be moved past it.
 * Both are replaced here by asm that tells the compiler what is read. */
#define AMX_LOADCFG(p) __asm__ volatile("ldtilecfg %0" ::"m"(*(const struct { unsigned char b[64]; } *)(p)))
#undef _tile_loadd
#define _tile_loadd(dst, base, stride) AMX_LOADD_(dst, base, stride)
#define AMX_LOADD_(dst, base, stride)                                                              \
    __asm__ volatile("{tileloadd\t(%0,%1,1), %%tmm" #dst "|tileloadd\t%%tmm" #dst ", [%0+%1*1]}" \
                     ::"r"((const void *)(base)), "r"((long)(stride))                                \
                     : "memory")

#define AMX_SYM(x) hw_##x
#include "kernels/amx/amx_gemm.inc.c"
#include "kernels/amx/amx_attn.inc.c"
#include "kernels/amx/amx_rowq.inc.c"   /* the row-scaled experiment (amx_rowq.h) */

const kern_amx_kernels kern_amx_hw = {"amx", hw_gemm_q_ring, hw_gemm_bf16, hw_attn_block, hw_attn_scratch};
const kern_rowq_kernels kern_rowq_hw = {"amx", hw_rowq_gemm, hw_rowq_quant_row};

// The sm_90a module: the prompt GEMM on Hopper's warpgroup MMA (wgmma.mma_async, operands
// from shared memory), kern_gemm_wgmma.cuh.  wgmma exists only in arch-specific sm_90a
// code: a plain sm_90 cubin cannot hold it and no other GPU runs it.  So this is a second,
// small image (kernels/cuda/CMakeLists.txt: -gencode arch=compute_90a,code=sm_90a, no
// PTX), embedded beside the main fatbin and loaded only on a device of compute capability
// 9.0 (kern_gemm_wgmma_load.c); when it does not load, the f16-MMA kernel runs instead and
// the reason is logged.  Everything below is guarded by __CUDA_ARCH_FEAT_SM90_ALL, so any
// other target compiles it to nothing.
#include <cuda_fp16.h>
#include <stdint.h>

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ unsigned gw_smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(gw_smem_u32(dst)), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(gw_smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most n (0..7) groups are pending; n is the same in every thread.
__device__ __forceinline__ void gw_cp_wait(int n)
{
    switch (n <= 0 ? 0 : n >= 7 ? 7 : n) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::: "memory"); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    case 3: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
    case 4: asm volatile("cp.async.wait_group 4;\n" ::: "memory"); break;
    case 5: asm volatile("cp.async.wait_group 5;\n" ::: "memory"); break;
    case 6: asm volatile("cp.async.wait_group 6;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 7;\n" ::: "memory"); break;
    }
}
// This thread's generic-proxy writes to shared memory (st.shared, landed cp.async) made
// visible to the async proxy, which the tensor cores' wgmma operand reads belong to.
__device__ __forceinline__ void gw_fence_proxy() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void gw_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void gw_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void gw_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void gw_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

// d (64 x N f32, the warpgroup's accumulators) += A (64 x 16 f16, descriptor da) . B^T
// (N x 16 f16, descriptor db), both K-major in shared memory; scale-d = 1 (accumulate).
// The accumulator operands 8 at a time, and their placeholders %(10 t) .. %(10 t + 9).
#define GW_D8(i)                                                                                              \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
        "+f"(d[i + 7])
#define GW_D32(i) GW_D8(i), GW_D8(i + 8), GW_D8(i + 16), GW_D8(i + 24)
#define GW_D64(i) GW_D32(i), GW_D32(i + 32)
#define GW_D128(i) GW_D64(i), GW_D64(i + 64)
#define GW_S10(t) "%" #t "0, %" #t "1, %" #t "2, %" #t "3, %" #t "4, %" #t "5, %" #t "6, %" #t "7, %" #t "8, %" #t "9"
// gw_mma_nN: the N / 2 accumulators REGS, then the descriptors DA, DB and scale-d's source P.
#define GW_MMA_FN(N, REGS, DA, DB, P, OPS)                                                                    \
    __device__ __forceinline__ void gw_mma_n##N(float *d, unsigned long long da, unsigned long long db)         \
    {                                                                                                          \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " P ", 0;\n"                                             \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.f16.f16 {" REGS "}, " DA ", " DB             \
                     ", p, 1, 1, 0, 0;\n}\n"                                                                    \
                     : OPS                                                                                     \
                     : "l"(da), "l"(db), "r"(1));                                                              \
    }
GW_MMA_FN(64, GW_S10() ", " GW_S10(1) ", " GW_S10(2) ", %30, %31", "%32", "%33", "%34", GW_D32(0))
GW_MMA_FN(128,
          GW_S10() ", " GW_S10(1) ", " GW_S10(2) ", " GW_S10(3) ", " GW_S10(4) ", " GW_S10(5) ", %60, %61, %62, %63",
          "%64", "%65", "%66", GW_D64(0))
GW_MMA_FN(256,
          GW_S10() ", " GW_S10(1) ", " GW_S10(2) ", " GW_S10(3) ", " GW_S10(4) ", " GW_S10(5) ", " GW_S10(6) ", "
              GW_S10(7) ", " GW_S10(8) ", " GW_S10(9) ", " GW_S10(10) ", " GW_S10(11)
                  ", %120, %121, %122, %123, %124, %125, %126, %127",
          "%128", "%129", "%130", GW_D128(0))
#undef GW_MMA_FN
#undef GW_S10
#undef GW_D128
#undef GW_D64
#undef GW_D32
#undef GW_D8

template <int BN> __device__ __forceinline__ void gw_mma(float *d, unsigned long long da, unsigned long long db);
template <> __device__ __forceinline__ void gw_mma<64>(float *d, unsigned long long da, unsigned long long db)
{
    gw_mma_n64(d, da, db);
}
template <> __device__ __forceinline__ void gw_mma<128>(float *d, unsigned long long da, unsigned long long db)
{
    gw_mma_n128(d, da, db);
}
template <> __device__ __forceinline__ void gw_mma<256>(float *d, unsigned long long da, unsigned long long db)
{
    gw_mma_n256(d, da, db);
}

// the f16 conversion's arithmetic (the same as kern_kernels.cu's: one rounding per value)
__device__ __forceinline__ unsigned gf_sub_mul(unsigned h, unsigned magic, unsigned d2)
{
    const __half2 r = __hmul2(__hsub2(*reinterpret_cast<const __half2 *>(&h), *reinterpret_cast<const __half2 *>(&magic)),
                              *reinterpret_cast<const __half2 *>(&d2));
    return *reinterpret_cast<const unsigned *>(&r);
}
__device__ __forceinline__ void gf_store4(unsigned *dst, unsigned a, unsigned b, unsigned c, unsigned d)
{
    *(uint4 *)dst = make_uint4(a, b, c, d);
}
__device__ __forceinline__ void gf_red_add(float *p, float v) { atomicAdd(p, v); }
// kern_gemm_f16mma.cuh is included for gf_convert only; its kernel template is never
// instantiated here, so the primitives only it uses are declared, not defined
__device__ void cp_async8(void *dst, const void *src, bool ok);
__device__ void cp_async_wait(int n);
__device__ void ldsm_x4(unsigned r[4], const void *p);
__device__ void mma_f16(float c[4], const unsigned a[4], const unsigned b[2]);
__device__ void gf_red_add4(float *p, const float v[4]);
__device__ void gf_ld4f(const float *p, float v[4]);
__device__ void gf_st4f(float *p, const float v[4]);
#define GF_DYN_SMEM(name) extern __shared__ __align__(16) uint8_t name[]
#define GW_DYN_SMEM(name) extern __shared__ __align__(1024) uint8_t name[]
#include "kern_gemm_f16mma.cuh"
#include "kern_gemm_wgmma.cuh"

#endif

// One kernel per weight type and variant (GW_VARIANTS: kern_gemm_wgmma_q4_0_w0 ...,
// kern_gemm_wgmma_f16_w0 ...); on
// targets other than sm_90a the entry points exist and are empty (never launched: the
// module is only built for sm_90a).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GW_BODY(WT, WG, BN) gemm_wgmma<WT, WG, BN>(w, m, k, x, n, y, slots, flags, ksplit, ldy);
#else
#define GW_BODY(WT, WG, BN)
#endif
#define GW_DENSE1(WT, Q, I, WG, BN, CPS)                                                                              \
    extern "C" __global__ void __launch_bounds__(128 * WG, CPS)                                                      \
        kern_gemm_wgmma_##Q##_w##I(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n,       \
                                   float *y, int slots, int flags, int ksplit, long long ldy)                        \
    {                                                                                                                \
        GW_BODY(WT, WG, BN)                                                                                          \
    }
// f16 weights (WT 16): kern_gemm_wgmma_f16_w<I>
#define GW_DENSE(I, WG, BN, CPS) \
    GW_DENSE1(4, q4_0, I, WG, BN, CPS) GW_DENSE1(8, q8_0, I, WG, BN, CPS) GW_DENSE1(16, f16, I, WG, BN, CPS)
#include "kern_gemm_wgmma_map.h"
GW_VARIANTS(GW_DENSE)
#undef GW_DENSE
#undef GW_DENSE1

// The experimental variants (AMXDIAG_GPU_GEMM_WGMMA_X, kern_gemm_wgmma_map.h GW_XV_*):
// kern_gemm_wgmma_<type>_w<I>_x<XV>; FSL: the fixed slot count of GW_FIX_SLOTS (xv 2: the
// plain stride's, xv 3: the padded one's; 0 for xv 1).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GW_XBODY(WT, WG, BN, XV, FSL) gemm_wgmma<WT, WG, BN, XV, FSL>(w, m, k, x, n, y, slots, flags, ksplit, ldy);
#else
#define GW_XBODY(WT, WG, BN, XV, FSL)
#endif
#define GW_XK(WT, Q, I, WG, BN, CPS, XV, FSL)                                                                         \
    extern "C" __global__ void __launch_bounds__(128 * WG, CPS)                                                      \
        kern_gemm_wgmma_##Q##_w##I##_x##XV(const uint8_t *w, long long m, long long k, const uint16_t *x,            \
                                          long long n, float *y, int slots, int flags, int ksplit, long long ldy)   \
    {                                                                                                                \
        GW_XBODY(WT, WG, BN, XV, FSL)                                                                                \
    }
#define GW_XK3(WT, Q, I, WG, BN, CPS, S_PLAIN, S_PAD)                                                                 \
    GW_XK(WT, Q, I, WG, BN, CPS, 1, 0) GW_XK(WT, Q, I, WG, BN, CPS, 2, S_PLAIN) GW_XK(WT, Q, I, WG, BN, CPS, 3, S_PAD)
// (the slot counts as GW_FIX_SLOTS lists them; gw_fix_slots checks them on the host)
GW_XK3(4, q4_0, 0, 2, 256, 1, 5, 4)
GW_XK3(8, q8_0, 0, 2, 256, 1, 4, 4)
GW_XK3(4, q4_0, 1, 2, 128, 1, 8, 8)
GW_XK3(8, q8_0, 1, 2, 128, 1, 7, 7)
GW_XK3(4, q4_0, 2, 1, 128, 2, 5, 4)
GW_XK3(8, q8_0, 2, 1, 128, 2, 4, 4)
#undef GW_XK3
#undef GW_XK
#undef GW_XBODY
#undef GW_BODY

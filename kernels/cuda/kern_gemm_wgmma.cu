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
__device__ __forceinline__ void gw_mma_n64(float *d, unsigned long long da, unsigned long long db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}
__device__ __forceinline__ void gw_mma_n128(float *d, unsigned long long da, unsigned long long db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}
__device__ __forceinline__ void gw_mma_n256(float *d, unsigned long long da, unsigned long long db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
                 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
                 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
                 "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
                 "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
                 "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                   "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
                   "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
                   "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
                   "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
                   "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
                   "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
                   "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
                   "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
                 : "l"(da), "l"(db), "r"(1));
}

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

// One kernel per weight type and variant (GW_VARIANTS: kern_gemm_wgmma_q4_0_w0 ...); on
// targets other than sm_90a the entry points exist and are empty (never launched: the
// module is only built for sm_90a).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GW_BODY(WT, WG, BN) gemm_wgmma<WT, WG, BN>(w, m, k, x, n, y, slots, flags, ksplit);
#else
#define GW_BODY(WT, WG, BN)
#endif
#define GW_DENSE1(WT, Q, I, WG, BN, CPS)                                                                              \
    extern "C" __global__ void __launch_bounds__(128 * WG, CPS)                                                      \
        kern_gemm_wgmma_##Q##_w##I(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n,       \
                                   float *y, int slots, int flags, int ksplit)                                       \
    {                                                                                                                \
        GW_BODY(WT, WG, BN)                                                                                          \
    }
#define GW_DENSE(I, WG, BN, CPS) GW_DENSE1(4, q4_0, I, WG, BN, CPS) GW_DENSE1(8, q8_0, I, WG, BN, CPS)
#include "kern_gemm_wgmma_map.h"
GW_VARIANTS(GW_DENSE)
#undef GW_DENSE
#undef GW_DENSE1
#undef GW_BODY

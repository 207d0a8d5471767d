// The int8 tensor-core prompt GEMM's device code (see kern_kernels.cu for the design):
// included by kern_kernels.cu after the PTX primitives it uses (cp_async4/8/16,
// cp_async_commit, cp_async_wait, ldsm_x4, mma_s8) and GI8_DYN_SMEM, and by the host
// SIMT emulator (tests/unit/kern_cuda_gemm_simt.cc), which supplies its own versions of
// those, so that this very source is also run without a GPU.
#ifndef KERN_GEMM_I8_CUH
#define KERN_GEMM_I8_CUH

#include "kern_gemm_i8_map.h"

// 4 bytes at a 2-byte aligned shared address; A4: known to be 4-byte aligned.
template <bool A4>
__device__ __forceinline__ unsigned lds_u32(const uint8_t *p)
{
    if (A4)
        return *(const unsigned *)p;
    const unsigned *q = (const unsigned *)(p - 2);
    return __byte_perm(q[0], q[1], GI8_PERM_2MOD4);
}

// The A fragment of rows row0 .. row0+15, quant block bl of the W stage, and the two
// scales (rows row0 + g, row0 + g + 8).
template <int WT, int BL>
__device__ __forceinline__ void gi8_load_a(const uint8_t *ws, int row0, int lane, unsigned a[4], float dw[2])
{
    constexpr bool A4 = ((BL * (WT == 4 ? 18 : 34) + 2) & 3) == 0;
    const int g = lane >> 2;
    dw[0] = __half2float(*(const __half *)(ws + gi8_w_scale_off(WT, row0, BL, g)));
    dw[1] = __half2float(*(const __half *)(ws + gi8_w_scale_off(WT, row0, BL, g + 8)));
    if (WT == 8) {
#pragma unroll
        for (int r = 0; r < 4; r++)
            a[r] = lds_u32<A4>(ws + gi8_a_off(WT, row0, BL, lane, r));
    } else {
        // q - 8 per byte (__vsub4: no borrow between bytes): the CPU's signed nibbles.
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const unsigned q = lds_u32<A4>(ws + gi8_a_off(WT, row0, BL, lane, r));
            a[r] = __vsub4(q & 0x0F0F0F0Fu, 0x08080808u);
            a[r + 2] = __vsub4((q >> 4) & 0x0F0F0F0Fu, 0x08080808u);
        }
    }
}

template <int WT, int BM, bool MOE>
__device__ void gemm_i8(const uint8_t *w, long long m, long long k, const int8_t *xq, const float *xd, long long n,
                        float *y, int stages, int aligned, int n_expert, const int *off, const int *list, int x_div)
{
#if __CUDA_ARCH__ >= 800
    GI8_DYN_SMEM(gi8_smem);
    __shared__ long long tok_x[GI8_BN], tok_y[GI8_BN];
    constexpr int THREADS = BM * 2, BSZ = WT == 4 ? 18 : 34;
    constexpr int WSTR = WT == 4 ? 80 : 144, CH = BSZ * GI8_KBS / 8;
    constexpr int XO = BM * WSTR, DO = XO + GI8_BN * GI8_XSTR, SB = DO + GI8_KBS * GI8_BN * 4;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1, t4 = lane & 3;
    const long long nb = k / 32, row_bytes = nb * BSZ;
    const long long nst = (nb + GI8_KBS - 1) / GI8_KBS;
    const long long tiles_m = (m + BM - 1) / BM;
    const long long n_tiles = MOE ? (long long)n_expert * tiles_m : tiles_m * ((n + GI8_BN - 1) / GI8_BN);
    for (long long tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        const long long r0 = (tile % tiles_m) * BM;
        long long e = 0, t0, t1;
        if (MOE) {
            e = tile / tiles_m;
            t0 = off[e];
            t1 = off[e + 1];
        } else {
            t0 = (tile / tiles_m) * GI8_BN;
            t1 = t0 + GI8_BN < n ? t0 + GI8_BN : n;
        }
        const uint8_t *we = w + e * m * row_bytes;
        for (long long n0 = t0; n0 < t1; n0 += GI8_BN) {
            const int cnt = (int)(t1 - n0 < GI8_BN ? t1 - n0 : (long long)GI8_BN);
            __syncthreads(); // the previous tile is done with the token tables and buffers
            if (tid < GI8_BN) {
                long long xr = -1, yr = -1;
                if (tid < cnt) {
                    yr = MOE ? (long long)list[n0 + tid] : n0 + tid;
                    xr = MOE ? yr / x_div : yr;
                }
                tok_x[tid] = xr;
                tok_y[tid] = yr;
            }
            __syncthreads();
            auto load = [&](long long st) {
                uint8_t *sb = gi8_smem + (int)(st % stages) * SB;
                const long long kb0 = st * GI8_KBS;
                if (aligned) {
                    for (int c = tid; c < BM * CH; c += THREADS) {
                        const int row = c / CH, j = c - row * CH;
                        const bool ok = r0 + row < m;
                        const uint8_t *src = ok ? we + (r0 + row) * row_bytes + kb0 * BSZ + j * 8 : w;
                        cp_async8(sb + row * WSTR + j * 8, src, ok);
                    }
                } else {
                    for (int c = tid; c < BM * GI8_KBS; c += THREADS) {
                        const int row = c / GI8_KBS, bl = c % GI8_KBS;
                        uint16_t *dst = (uint16_t *)(sb + row * WSTR + bl * BSZ);
                        if (r0 + row < m && kb0 + bl < nb) {
                            const uint16_t *src = (const uint16_t *)(we + (r0 + row) * row_bytes + (kb0 + bl) * BSZ);
#pragma unroll
                            for (int i = 0; i < BSZ / 2; i++)
                                dst[i] = __ldg(src + i);
                        } else {
#pragma unroll
                            for (int i = 0; i < BSZ / 2; i++)
                                dst[i] = 0;
                        }
                    }
                }
                for (int c = tid; c < GI8_BN * 8; c += THREADS) {
                    const int i = c >> 3, j = c & 7;
                    const long long xr = tok_x[i];
                    const bool ok = xr >= 0 && kb0 + (j >> 1) < nb;
                    cp_async16(sb + XO + i * GI8_XSTR + j * 16, ok ? xq + xr * k + kb0 * 32 + j * 16 : xq, ok);
                }
                for (int c = tid; c < GI8_KBS * GI8_BN; c += THREADS) {
                    const int bl = c / GI8_BN, i = c % GI8_BN;
                    const long long xr = tok_x[i];
                    const bool ok = xr >= 0 && kb0 + bl < nb;
                    cp_async4(sb + DO + c * 4, ok ? xd + xr * nb + kb0 + bl : xd, ok);
                }
            };
            float acc[2][4][4];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int q = 0; q < 4; q++)
                        acc[i][j][q] = 0.0f;
            for (int s = 0; s < stages - 1; s++) {
                if (s < nst)
                    load(s);
                cp_async_commit();
            }
            for (long long st = 0; st < nst; st++) {
                cp_async_wait(stages - 2);
                __syncthreads(); // stage st has landed; everyone is done with stage st - 1's buffer
                if (st + stages - 1 < nst)
                    load(st + stages - 1);
                cp_async_commit();
                const uint8_t *sb = gi8_smem + (int)(st % stages) * SB;
                const float *ds = (const float *)(sb + DO);
#define GI8_BLOCK(BL)                                                                                 \
    {                                                                                                 \
        unsigned a[2][4], b[4][2], r[4];                                                              \
        float dw[2][2];                                                                               \
        gi8_load_a<WT, BL>(sb, wm * 32, lane, a[0], dw[0]);                                           \
        gi8_load_a<WT, BL>(sb, wm * 32 + 16, lane, a[1], dw[1]);                                      \
        _Pragma("unroll") for (int p = 0; p < 2; p++)                                                 \
        {                                                                                             \
            ldsm_x4(r, sb + XO + gi8_ldsm_off(wn * 32 + p * 16, BL, lane));                           \
            b[2 * p][0] = r[0], b[2 * p][1] = r[1], b[2 * p + 1][0] = r[2], b[2 * p + 1][1] = r[3];   \
        }                                                                                             \
        _Pragma("unroll") for (int nt = 0; nt < 4; nt++)                                              \
        {                                                                                             \
            const float2 dx = *(const float2 *)(ds + BL * GI8_BN + wn * 32 + nt * 8 + 2 * t4);        \
            _Pragma("unroll") for (int mt = 0; mt < 2; mt++)                                          \
            {                                                                                         \
                float c[4];                                                                           \
                mma_s8(c, a[mt], b[nt]);                                                              \
                acc[mt][nt][0] = fmaf(__fmul_rn(c[0], dx.x), dw[mt][0], acc[mt][nt][0]);              \
                acc[mt][nt][1] = fmaf(__fmul_rn(c[1], dx.y), dw[mt][0], acc[mt][nt][1]);              \
                acc[mt][nt][2] = fmaf(__fmul_rn(c[2], dx.x), dw[mt][1], acc[mt][nt][2]);              \
                acc[mt][nt][3] = fmaf(__fmul_rn(c[3], dx.y), dw[mt][1], acc[mt][nt][3]);              \
            }                                                                                         \
        }                                                                                             \
    }
                GI8_BLOCK(0)
                GI8_BLOCK(1)
                GI8_BLOCK(2)
                GI8_BLOCK(3)
#undef GI8_BLOCK
            }
            cp_async_wait(0);
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const long long row = r0 + wm * 32 + mt * 16 + gi8_c_row(lane, i);
                        const int ti = wn * 32 + nt * 8 + gi8_c_tok(lane, i);
                        if (row < m && ti < cnt)
                            y[tok_y[ti] * m + row] = acc[mt][nt][i];
                    }
        }
    }
#else
    __trap(); // the host launches these only on sm_80+ code (kern_cuda_gemm_plan)
#endif
}

#endif

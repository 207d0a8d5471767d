// The dequantise-to-f16 tensor-core prompt GEMM's device code (layout and precision:
// kern_gemm_f16mma_map.h).  Included by kern_kernels.cu after the PTX primitives it uses
// (cp_async8/16, cp_async_commit, cp_async_wait, ldsm_x4, mma_f16, gf_sub_mul) and
// GF_DYN_SMEM, and by the host SIMT emulator (tests/unit/kern_cuda_gemm_simt.cc), which
// supplies its own versions, so that this very source also runs without a GPU.
#ifndef KERN_GEMM_F16MMA_CUH
#define KERN_GEMM_F16MMA_CUH

#include "kern_gemm_f16mma_map.h"

// One raw block (row, bl) of a ring slot to 32 f16 values q d in the f16 W buffer
// (chunks 4 bl .. 4 bl + 3 of the row).  The quants start 2 or 0 mod 4 (bl even / odd):
// whole words from the aligned address below, realigned with one byte_perm each, so that
// the lanes of a warp (both parities) take one path.
template <int WT>
__device__ __forceinline__ void gf_convert(const uint8_t *raw, uint8_t *wf, int row, int bl)
{
    constexpr int BSZ = WT == 4 ? 18 : 34, WSTR = WT == 4 ? 80 : 144, NWD = WT == 4 ? 4 : 8;
    const uint8_t *blk = raw + row * WSTR + bl * BSZ;
    const unsigned dh = *(const uint16_t *)blk;
    const unsigned d2 = dh | (dh << 16);
    const int mis = (bl * BSZ + 2) & 3; // 0 or 2 (WSTR is a multiple of 16)
    const unsigned *src = (const unsigned *)(blk + 2 - mis);
    const unsigned sel = mis ? GI8_PERM_2MOD4 : 0x3210u;
    unsigned wd[NWD + 1];
#pragma unroll
    for (int i = 0; i <= NWD; i++)
        wd[i] = src[i];
    unsigned out[16];
#pragma unroll
    for (int i = 0; i < NWD; i++) {
        const unsigned q = __byte_perm(wd[i], wd[i + 1], sel);
        if (WT == 8) {
            const unsigned b = q ^ 0x80808080u; // q + 128 per byte
            out[2 * i] = gf_sub_mul(__byte_perm(b, 0x64646464u, 0x4140u), GF_MAGIC_Q8, d2);
            out[2 * i + 1] = gf_sub_mul(__byte_perm(b, 0x64646464u, 0x4342u), GF_MAGIC_Q8, d2);
        } else {
            // values 4i..4i+3: low nibbles; 16+4i..: high nibbles
            const unsigned lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
            out[2 * i] = gf_sub_mul(__byte_perm(lo, 0x64646464u, 0x4140u), GF_MAGIC_Q4, d2);
            out[2 * i + 1] = gf_sub_mul(__byte_perm(lo, 0x64646464u, 0x4342u), GF_MAGIC_Q4, d2);
            out[8 + 2 * i] = gf_sub_mul(__byte_perm(hi, 0x64646464u, 0x4140u), GF_MAGIC_Q4, d2);
            out[8 + 2 * i + 1] = gf_sub_mul(__byte_perm(hi, 0x64646464u, 0x4342u), GF_MAGIC_Q4, d2);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        unsigned *dst = (unsigned *)(wf + gf_off(row, bl * 4 + j));
        gf_store4(dst, out[4 * j], out[4 * j + 1], out[4 * j + 2], out[4 * j + 3]);
    }
}

// One CTA tile of variant (MT, NT, WM, WN): weight rows r0 .. r0 + BM - 1, tokens n0 ..
// n0 + BN - 1; token tiles run fastest (the CTAs that share a band of weight rows are in
// flight together, so a weight matrix larger than L2 is read from DRAM about once).
// x: the activations in f16 [n][k]; `slots` (3..4) ring slots; aligned: raw W by cp.async
// (k % 128 == 0, 8-byte aligned weights), else by 2-byte loads into the same layout.
//
// Pipeline per k stage st (one barrier): wait for slot st + 1's copies; barrier; issue
// the copies of stage st + slots - 1 (into the slot stage st - 1 used); multiply stage st
// (f16 buffer st & 1, X of slot st) and, between its k steps, convert stage st + 1's raw W
// into f16 buffer (st + 1) & 1.  After the barrier every warp is past stage st - 1, whose
// slot and f16 buffer are the ones written.
template <int WT, int MT, int NT, int WM, int WN>
__device__ void gemm_f16mma(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n, float *y,
                            int slots, int aligned)
{
#if __CUDA_ARCH__ >= 800
    constexpr int BM = 16 * MT * WM, BN = 8 * NT * WN, NW = WM * WN, THREADS = 32 * NW;
    constexpr int BSZ = WT == 4 ? 18 : 34, WSTR = WT == 4 ? 80 : 144, CH = BSZ * GI8_KBS / 8;
    constexpr int XO = BM * WSTR, SLOT = XO + BN * GF_ROW, WFB = BM * GF_ROW;
    constexpr int RPW = BM / NW, LPR = CH - 1, RPI = 32 / LPR;
    static_assert(BM % NW == 0 && RPW <= 32 && RPW % RPI == 0 && NT % 2 == 0, "tile variant");
    constexpr int CU = BM * GI8_KBS / THREADS; // raw blocks each thread converts per stage
    static_assert(BM * GI8_KBS % THREADS == 0 && BN * 16 % THREADS == 0 && CU >= 1 && CU <= 4, "tile variant");
    GF_DYN_SMEM(gf_smem);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    uint8_t *const wf0 = gf_smem + slots * SLOT;
    const long long nb = k / 32, row_bytes = nb * BSZ;
    const long long nst = (nb + GI8_KBS - 1) / GI8_KBS;
    const long long tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
    const int wr_lane = lane % LPR, wr_row = lane / LPR;
    for (long long tile = blockIdx.x; tile < tiles_m * tiles_n; tile += gridDim.x) {
        const long long r0 = (tile / tiles_n) * BM, n0 = (tile % tiles_n) * BN;
        const long long wrow0 = r0 + warp * RPW + wr_row;
        const uint8_t *wsrc = w + wrow0 * row_bytes + wr_lane * 8;
        const uint8_t *wsrc_last = w + (r0 + warp * RPW + lane) * row_bytes + (CH - 1) * 8;
        const long long wleft = m - wrow0;
        __syncthreads(); // the previous tile is done with every buffer
        auto load = [&](long long st) {
            uint8_t *sb = gf_smem + (int)(st % slots) * SLOT;
            const long long kb0 = st * GI8_KBS;
            if (aligned) {
                uint8_t *wd = sb + (warp * RPW + wr_row) * WSTR + wr_lane * 8;
                if (lane < LPR * RPI) {
#pragma unroll
                    for (int i = 0; i < RPW / RPI; i++) {
                        const bool ok = i * RPI < wleft;
                        cp_async8(wd + i * RPI * WSTR, ok ? wsrc + i * RPI * row_bytes + kb0 * BSZ : w, ok);
                    }
                }
                if (lane < RPW) {
                    const bool ok = r0 + warp * RPW + lane < m;
                    cp_async8(sb + (warp * RPW + lane) * WSTR + (CH - 1) * 8, ok ? wsrc_last + kb0 * BSZ : w, ok);
                }
            } else {
                for (int c = tid; c < BM * GI8_KBS; c += THREADS) {
                    const int row = c / GI8_KBS, bl = c % GI8_KBS;
                    uint16_t *dst = (uint16_t *)(sb + row * WSTR + bl * BSZ);
                    if (r0 + row < m && kb0 + bl < nb) {
                        const uint16_t *src = (const uint16_t *)(w + (r0 + row) * row_bytes + (kb0 + bl) * BSZ);
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
#pragma unroll
            for (int it = 0; it < BN * 16 / THREADS; it++) {
                const int c = tid + it * THREADS, i = c >> 4, j = c & 15;
                const bool ok = n0 + i < n && kb0 + (j >> 2) < nb;
                cp_async16(sb + XO + gf_off(i, j), ok ? x + (n0 + i) * k + kb0 * 32 + j * 8 : x, ok);
            }
        };
        // this thread's unit `it` of stage st's raw W: (row, block) u >> 2, u & 3
        auto convert_unit = [&](long long st, int it) {
            const int u = tid + it * THREADS;
            gf_convert<WT>(gf_smem + (int)(st % slots) * SLOT, wf0 + (int)(st & 1) * WFB, u >> 2, u & 3);
        };
        float acc[MT][NT][4];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int q = 0; q < 4; q++)
                    acc[i][j][q] = 0.0f;
        for (int s = 0; s < slots - 1; s++) {
            if (s < nst)
                load(s);
            cp_async_commit();
        }
        cp_async_wait(slots - 2);
        __syncthreads();
#pragma unroll
        for (int it = 0; it < CU; it++)
            convert_unit(0, it);
        for (long long st = 0; st < nst; st++) {
            cp_async_wait(slots - 3); // stage st + 1 has landed (this thread's copies)
            __syncthreads();
            if (st + slots - 1 < nst)
                load(st + slots - 1);
            cp_async_commit();
            const bool next = st + 1 < nst;
            const uint8_t *wf = wf0 + (int)(st & 1) * WFB;
            const uint8_t *xs = gf_smem + (int)(st % slots) * SLOT + XO;
#pragma unroll
            for (int kk = 0; kk < 8; kk++) {
                unsigned a[MT][4], b[NT][2];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldsm_x4(a[mt], wf + gf_a_ldsm(wm * (MT * 16) + mt * 16, kk, lane));
#pragma unroll
                for (int p = 0; p < NT / 2; p++) {
                    unsigned r[4];
                    ldsm_x4(r, xs + gf_b_ldsm(wn * (NT * 8) + p * 16, kk, lane));
                    b[2 * p][0] = r[0];
                    b[2 * p][1] = r[1];
                    b[2 * p + 1][0] = r[2];
                    b[2 * p + 1][1] = r[3];
                }
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
                        mma_f16(acc[mt][nt], a[mt], b[nt]);
                // the next stage's conversion, spread over the k steps so that each warp's
                // MMAs and conversion arithmetic interleave
#pragma unroll
                for (int it = 0; it < CU; it++)
                    if (kk == 1 + it * (8 / CU) && next)
                        convert_unit(st + 1, it);
            }
        }
        cp_async_wait(0);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const long long row = r0 + wm * (MT * 16) + mt * 16 + gi8_c_row(lane, i);
                    const long long tok = n0 + wn * (NT * 8) + nt * 8 + gi8_c_tok(lane, i);
                    if (row < m && tok < n)
                        y[tok * m + row] = acc[mt][nt][i];
                }
    }
#else
    __trap(); // the host launches these only on sm_80+ code (kern_cuda_gemm_plan)
#endif
}

#endif

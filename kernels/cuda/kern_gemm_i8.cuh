// The int8 tensor-core prompt GEMM's device code (see kern_kernels.cu for the design):
// included by kern_kernels.cu after the PTX primitives it uses (cp_async4/8/16,
// cp_async_commit, cp_async_wait, ldsm_x4, mma_s8) and GI8_DYN_SMEM, and by the host
// SIMT emulator (tests/unit/kern_cuda_gemm_simt.cc), which supplies its own versions of
// those, so that this very source is also run without a GPU.
#ifndef KERN_GEMM_I8_CUH
#define KERN_GEMM_I8_CUH

#include "kern_gemm_copy.cuh"
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
        // q - 8 per byte: the CPU's signed nibbles (gi8_nib_s8).
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const unsigned q = lds_u32<A4>(ws + gi8_a_off(WT, row0, BL, lane, r));
            a[r] = gi8_nib_s8(q & 0x0F0F0F0Fu);
            a[r + 2] = gi8_nib_s8((q >> 4) & 0x0F0F0F0Fu);
        }
    }
}

// One CTA tile of the variant (MT, NT, WM, WN) (kern_gemm_i8_map.h): rows r0 .., tokens
// of the dense matrix or of an expert's list; `tile` walks the grid.  Dense tiles run
// token tiles fastest, so the CTAs that share a band of weight rows are in flight
// together and a weight matrix larger than L2 (the LM head) is read from DRAM once.
// MOE: 0 dense; 1 grouped, a tile per (expert, row tile) looping over the expert's tokens
// BN at a time; 2 grouped by token tiles (GI8M_VARIANTS): a tile per (token tile of an
// expert, row tile), row tiles fastest, the 8-token MMA groups past the tile's tokens
// skipped.
template <int WT, int MT, int NT, int WM, int WN, int MOE>
__device__ void gemm_i8(const uint8_t *w, long long m, long long k, const int8_t *xq, const float *xd, long long n,
                        float *y, int stages, int aligned, int n_expert, const int *off, const int *list, int x_div)
{
#if __CUDA_ARCH__ >= 800
    constexpr int BM = 16 * MT * WM, BN = 8 * NT * WN, NW = WM * WN, THREADS = 32 * NW;
    constexpr int BSZ = WT == 4 ? 18 : 34, WSTR = WT == 4 ? 80 : 144, CH = BSZ * GI8_KBS / 8;
    constexpr int XO = BM * WSTR, DO = XO + BN * GI8_XSTR, SB = DO + GI8_KBS * BN * 4;
    // W copies: a warp copies rows warp * RPW .. + RPW - 1; lanes 0 .. LPR * RPI - 1 take
    // chunks 0 .. CH - 2 of RPI rows at a time (contiguous 8-byte pieces, coalesced), then
    // lanes 0 .. RPW - 1 the last chunk of every row.
    constexpr int RPW = BM / NW, LPR = CH - 1, RPI = 32 / LPR;
    static_assert(BM % NW == 0 && RPW <= 32 && RPW % RPI == 0 && NT % 2 == 0, "tile variant");
    static_assert(THREADS % BN == 0 && BN * 8 % THREADS == 0 && GI8_KBS * BN % THREADS == 0, "tile variant");
    static_assert(MOE != 2 || WN == 1, "the token-tile grouped form has warps over rows only");
    GI8_DYN_SMEM(gi8_smem);
    // tok_x: a token's X row, -1 past the tile's tokens (MOE 2: as its byte offset in xq,
    // row * k; its steps' offset in xd is that / 32); tok_y its output row
    __shared__ long long tok_x[BN], tok_y[BN];
    __shared__ int tt_scan[MOE == 2 ? THREADS : 1], tt_sel[2];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN, t4 = lane & 3;
    const long long nb = k / 32, row_bytes = nb * BSZ;
    const long long nst = (nb + GI8_KBS - 1) / GI8_KBS;
    const long long tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
    // MOE 2: the experts' token tiles (ceil(tokens / BN) each) numbered expert by expert.
    // Thread tid counts those of its chunk of experts (tt_mine, after tt_pre of the chunks
    // before it: a Hillis-Steele scan in shared memory, once per CTA).
    int tt_e0 = 0, tt_e1 = 0, tt_mine = 0, tt_pre = 0, tt_total = 0;
    if (MOE == 2) {
        const int chunk = (n_expert + THREADS - 1) / THREADS;
        tt_e0 = tid * chunk < n_expert ? tid * chunk : n_expert;
        tt_e1 = tt_e0 + chunk < n_expert ? tt_e0 + chunk : n_expert;
        for (int x = tt_e0; x < tt_e1; x++)
            tt_mine += (off[x + 1] - off[x] + BN - 1) / BN;
        int v = tt_mine;
        for (int d = 1; d < THREADS; d <<= 1) {
            tt_scan[tid] = v;
            __syncthreads();
            if (tid >= d)
                v += tt_scan[tid - d];
            __syncthreads();
        }
        tt_scan[tid] = v;
        __syncthreads();
        tt_pre = v - tt_mine;
        tt_total = tt_scan[THREADS - 1];
    }
    const long long n_tiles = MOE == 2 ? (long long)tt_total * tiles_m
                              : MOE    ? (long long)n_expert * tiles_m
                                       : tiles_m * tiles_n;
    const int wr_lane = lane % LPR, wr_row = lane / LPR; // this lane's chunk and row in a W copy step
    for (long long tile = blockIdx.x; tile < n_tiles; tile += gridDim.x) {
        long long r0, e = 0, t0, t1;
        if (MOE == 2) {
            const int tt = (int)(tile / tiles_m);
            r0 = (tile % tiles_m) * BM;
            __syncthreads(); // every thread has read the previous tile's tt_sel
            if (tt >= tt_pre && tt < tt_pre + tt_mine) {
                int before = tt_pre;
                for (int x = tt_e0; x < tt_e1; x++) {
                    const int c = (off[x + 1] - off[x] + BN - 1) / BN;
                    if (tt < before + c) {
                        tt_sel[0] = x;
                        tt_sel[1] = tt - before;
                        break;
                    }
                    before += c;
                }
            }
            __syncthreads();
            e = tt_sel[0];
            t0 = off[e] + (long long)tt_sel[1] * BN;
            t1 = t0 + BN < off[e + 1] ? t0 + BN : off[e + 1];
        } else if (MOE) {
            r0 = (tile % tiles_m) * BM;
            e = tile / tiles_m;
            t0 = off[e];
            t1 = off[e + 1];
        } else {
            r0 = (tile / tiles_n) * BM;
            t0 = (tile % tiles_n) * BN;
            t1 = t0 + BN < n ? t0 + BN : n;
        }
        const uint8_t *we = w + e * m * row_bytes;
        // this thread's W rows (aligned path): first row, rows left in the matrix
        const long long wrow0 = r0 + warp * RPW + wr_row;
        const uint8_t *wsrc = we + wrow0 * row_bytes + wr_lane * 8;
        const uint8_t *wsrc_last = we + (r0 + warp * RPW + lane) * row_bytes + (CH - 1) * 8;
        const long long wleft = m - wrow0;
        for (long long n0 = t0; n0 < t1; n0 += BN) {
            const int cnt = (int)(t1 - n0 < BN ? t1 - n0 : (long long)BN);
            // MOE 2: the X rows staged (whole 8-token MMA groups; the rest is never read)
            const int cnt8 = MOE == 2 ? (cnt + 7) & ~7 : BN;
            __syncthreads(); // the previous tile is done with the token tables and buffers
            if (tid < BN) {
                long long xr = -1, yr = -1;
                if (tid < cnt) {
                    yr = MOE ? (long long)list[n0 + tid] : n0 + tid;
                    xr = MOE ? yr / x_div : yr;
                }
                tok_x[tid] = MOE == 2 && xr >= 0 ? xr * k : xr;
                tok_y[tid] = yr;
            }
            __syncthreads();
            // load(st, slot): k stage st into ring buffer `slot` (MOE 2 counts the ring's slots;
            // the others, as measured before, take st % stages: a 64-bit division per stage)
            auto load = [&](long long st, int slot) {
                uint8_t *sb = gi8_smem + slot * SB;
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
                    gq_copy_blocks_2byte<BSZ, BM, GI8_KBS, WSTR, THREADS>(sb, we, r0, m, kb0, nb, row_bytes, tid);
                }
#pragma unroll
                for (int it = 0; it < BN * 8 / THREADS; it++) {
                    const int c = tid + it * THREADS, i = c >> 3, j = c & 7;
                    if (MOE == 2 && i >= cnt8)
                        break; // i grows with it
                    const long long xr = tok_x[i];
                    const bool ok = xr >= 0 && kb0 + (j >> 1) < nb;
                    if (MOE == 2)
                        cp_async16(sb + XO + i * GI8_XSTR + j * 16, ok ? xq + xr + kb0 * 32 + j * 16 : xq, ok);
                    else
                        cp_async16(sb + XO + i * GI8_XSTR + j * 16, ok ? xq + xr * k + kb0 * 32 + j * 16 : xq, ok);
                }
#pragma unroll
                for (int it = 0; it < GI8_KBS * BN / THREADS; it++) {
                    const int c = tid + it * THREADS, bl = c / BN, i = c % BN;
                    if (MOE == 2 && i >= cnt8)
                        continue;
                    const long long xr = tok_x[i];
                    const bool ok = xr >= 0 && kb0 + bl < nb;
                    if (MOE == 2)
                        cp_async4(sb + DO + c * 4, ok ? xd + (xr >> 5) + kb0 + bl : xd, ok);
                    else
                        cp_async4(sb + DO + c * 4, ok ? xd + xr * nb + kb0 + bl : xd, ok);
                }
            };
            float acc[MT][NT][4];
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int q = 0; q < 4; q++)
                        acc[i][j][q] = 0.0f;
            for (int s = 0; s < stages - 1; s++) {
                if (s < nst)
                    load(s, s);
                cp_async_commit();
            }
            // the slots of the next load (stage st + stages - 1) and of stage st
            int lslot = stages - 1, cslot = 0;
            for (long long st = 0; st < nst; st++) {
                cp_async_wait(stages - 2);
                __syncthreads(); // stage st has landed; everyone is done with stage st - 1's buffer
                if (st + stages - 1 < nst)
                    load(st + stages - 1, MOE == 2 ? lslot : (int)((st + stages - 1) % stages));
                cp_async_commit();
                lslot = lslot + 1 == stages ? 0 : lslot + 1;
                const uint8_t *sb = gi8_smem + (MOE == 2 ? cslot : (int)(st % stages)) * SB;
                cslot = cslot + 1 == stages ? 0 : cslot + 1;
                const float *ds = (const float *)(sb + DO) + wn * (NT * 8) + 2 * t4;
                // per block: the warp's MT A fragments once, then for each pair of token
                // tiles one ldmatrix.x4 and MT MMAs each; t = d dx (exact fma, see
                // GI8_ACC_BIAS), acc = fma(t, dw, acc): the CPU's two roundings.
#define GI8_BLOCK(BL)                                                                                   \
    {                                                                                                   \
        unsigned a[MT][4];                                                                              \
        float dw[MT][2];                                                                                \
        _Pragma("unroll") for (int mt = 0; mt < MT; mt++)                                               \
            gi8_load_a<WT, BL>(sb, wm * (MT * 16) + mt * 16, lane, a[mt], dw[mt]);                      \
        _Pragma("unroll") for (int p = 0; p < NT / 2; p++)                                              \
        {                                                                                               \
            if (MOE == 2 && p * 16 >= cnt)                                                              \
                break;                                                                                  \
            unsigned r[4];                                                                              \
            ldsm_x4(r, sb + XO + gi8_ldsm_off(wn * (NT * 8) + p * 16, BL, lane));                       \
            _Pragma("unroll") for (int h = 0; h < 2; h++)                                               \
            {                                                                                           \
                const int nt = 2 * p + h;                                                               \
                if (MOE == 2 && nt * 8 >= cnt)                                                          \
                    break;                                                                              \
                const unsigned b[2] = {r[2 * h], r[2 * h + 1]};                                         \
                const float2 dx = *(const float2 *)(ds + BL * BN + nt * 8);                             \
                const float nx = __fmul_rn(dx.x, -GI8_ACC_BIAS), ny = __fmul_rn(dx.y, -GI8_ACC_BIAS);   \
                _Pragma("unroll") for (int mt = 0; mt < MT; mt++)                                       \
                {                                                                                       \
                    float c[4];                                                                         \
                    mma_s8(c, a[mt], b);                                                                \
                    acc[mt][nt][0] = fmaf(fmaf(c[0], dx.x, nx), dw[mt][0], acc[mt][nt][0]);             \
                    acc[mt][nt][1] = fmaf(fmaf(c[1], dx.y, ny), dw[mt][0], acc[mt][nt][1]);             \
                    acc[mt][nt][2] = fmaf(fmaf(c[2], dx.x, nx), dw[mt][1], acc[mt][nt][2]);             \
                    acc[mt][nt][3] = fmaf(fmaf(c[3], dx.y, ny), dw[mt][1], acc[mt][nt][3]);             \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }
                GI8_BLOCK(0)
                GI8_BLOCK(1)
                GI8_BLOCK(2)
                GI8_BLOCK(3)
#undef GI8_BLOCK
            }
            cp_async_wait(0);
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const long long row = r0 + wm * (MT * 16) + mt * 16 + gi8_c_row(lane, i);
                        const int ti = wn * (NT * 8) + nt * 8 + gi8_c_tok(lane, i);
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

// The dequantise-to-f16 tensor-core prompt GEMM's device code (layout and precision:
// kern_gemm_f16mma_map.h).  Included by kern_kernels.cu after the PTX primitives it uses
// (cp_async8/16, cp_async_commit, cp_async_wait, ldsm_x4, mma_f16, gf_sub_mul) and
// GF_DYN_SMEM, and by the host SIMT emulator (tests/unit/kern_cuda_gemm_simt.cc), which
// supplies its own versions, so that this very source also runs without a GPU.
#ifndef KERN_GEMM_F16MMA_CUH
#define KERN_GEMM_F16MMA_CUH

#include "kern_gemm_copy.cuh"
#include "kern_gemm_f16mma_map.h"

// One raw block of a ring slot (blk: its first byte; mis = (its offset in the slot + 2) & 3,
// 0 or 2) to 32 f16 values q d in the f16 W buffer: its 4 chunks go to wrow ^ (j << 4),
// j = 0..3 (wrow: the row's byte offset plus the swizzled first chunk, gf_conv_dst).  The
// quants start 2 or 0 mod 4: whole words from the aligned address below, realigned with
// one byte_perm each, so that the lanes of a warp (both parities) take one path.
template <int WT>
__device__ __forceinline__ void gf_convert(const uint8_t *blk, int mis, uint8_t *wf, int wrow)
{
    constexpr int NWD = WT == 4 ? 4 : 8;
    const unsigned dh = *(const uint16_t *)blk;
    const unsigned d2 = dh | (dh << 16);
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
    for (int j = 0; j < 4; j++)
        gf_store4((unsigned *)(wf + (wrow ^ (j << 4))), out[4 * j], out[4 * j + 1], out[4 * j + 2], out[4 * j + 3]);
}

// One CTA tile of variant (MT, NT, WM, WN): weight rows r0 .. r0 + BM - 1, tokens n0 ..
// n0 + BN - 1; token tiles run fastest (the CTAs that share a band of weight rows are in
// flight together, so a weight matrix larger than L2 is read from DRAM about once).
// x: the activations in f16 [n][k]; `slots` (3..4) ring slots; flags bit 0 (GF_FLAG_ALIGNED,
// gf_aligned): raw W by cp.async, else by 2-byte loads into the same layout; bit 1
// (GF_FLAG_STAGED): the result tile through shared memory and out as 16-byte pieces of
// rows (the fragments' own stores write 4-byte pieces, 8 rows x 4 tokens per instruction;
// the LM head writes 311 MB of f32).  KB: quant blocks per k stage.
// WT 16: f16 weights [m][k] (the layout of X): their 16-byte pieces go by cp.async straight
// into the slot, swizzled as X, and the MMAs read them there (no raw W, no conversion, no
// f16 W buffers; the host passes k % 8 == 0 and a 16-byte aligned buffer, gf_f16_ok;
// GF_FLAG_ALIGNED: k % (32 KB) == 0, else the pieces past k are zeros).
// ksplit > 1: each tile's k stages are cut into ksplit slices, one CTA tile each, whose
// partial sums are added into y (zeroed by the host) with gf_red_add; with 2 slices the
// result does not depend on their order (0 + a + b == 0 + b + a in IEEE arithmetic).
// ldy: the distance between two tokens' rows of y (m, or the whole matrix's rows where this
// launch writes one slab of rows: the two-pass path, kern_cuda_ops.c gemm_dequant).
//
// Pipeline per k stage st (one barrier): wait for slot st + 1's copies; barrier; issue
// the copies of stage st + slots - 1 (into the slot stage st - 1 used); multiply stage st
// (f16 buffer st & 1, X of slot st) and, between its k steps, convert stage st + 1's raw W
// into f16 buffer (st + 1) & 1.  After the barrier every warp is past stage st - 1, whose
// slot and f16 buffer are the ones written.
//
// Every address that does not change from stage to stage (the copies' sources and
// destinations, the conversion's block and row, the ldmatrix lanes) is worked out once per
// thread or tile: on the H200 (Nsight Compute, attn_q, f0) the first version issued 845
// instructions per warp and stage for 128 MMAs, with 2 warps per scheduler waiting on the
// address arithmetic's dependencies (issue slots 32 % busy, tensor pipe 30 %).
template <int WT, int MT, int NT, int WM, int WN, int KB>
__device__ void gemm_f16mma(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n, float *y,
                            int slots, int flags, int ksplit, long long ldy)
{
#if __CUDA_ARCH__ >= 800
    constexpr int BM = 16 * MT * WM, BN = 8 * NT * WN, NW = WM * WN, THREADS = 32 * NW;
    static_assert(KB == 4 || KB == 2, "k stages of 4 or 2 blocks");
    constexpr bool F16 = WT == 16;
    constexpr int BSZ = WT == 4 ? 18 : 34, RB = 64 * KB, CPR = 4 * KB, KK = 2 * KB;
    constexpr int WSTR = F16 ? RB : KB == 4 ? (WT == 4 ? 80 : 144) : (WT == 4 ? 48 : 80);
    constexpr int XO = BM * WSTR, SLOT = XO + BN * RB, WFB = BM * RB;
    // KB 4: the int8 kernel's copy scheme (CH pieces of 8 bytes per row, LPR lanes per
    // row, RPI rows per instruction); KB 2: PW pieces of 4 bytes per row, WPT per thread
    constexpr int CH = BSZ * 4 / 8, RPW = BM / NW, LPR = CH - 1, RPI = 32 / LPR;
    constexpr int PW = BSZ * KB / 4, WPT = (BM * PW + THREADS - 1) / THREADS;
    static_assert(BM % NW == 0 && NT % 2 == 0, "tile variant");
    static_assert(KB != 4 || (RPW <= 32 && RPW % RPI == 0 && RPW / RPI <= 32), "tile variant");
    constexpr int CU = BM * KB / THREADS; // raw blocks each thread converts per stage
    static_assert(BM * KB % THREADS == 0 && BN * CPR % THREADS == 0 && CU >= 1 && CU <= 4, "tile variant");
    // a thread's X pieces are XPI tokens apart and its conversion units CPI rows apart:
    // multiples of 8, so that one swizzle (r & 7) holds for all of them
    constexpr int XPI = THREADS / CPR, XIT = BN * CPR / THREADS, CPI = THREADS / KB, WIT = KB == 4 ? RPW / RPI : 1;
    static_assert(XPI % 8 == 0 && CPI % 8 == 0 && XIT <= 32, "tile variant");
    // f16 W: a row's CPR pieces of a stage as X's (rows XPI apart, FIT per thread)
    constexpr int FIT = BM * CPR / THREADS;
    static_assert(!F16 || (BM * CPR % THREADS == 0 && FIT <= 32), "tile variant");
    GF_DYN_SMEM(gf_smem);
    // flags bit 1: the staged epilogue (where its [token][row] f32 tile fits the slots and
    // f16 buffers); bit 0: aligned raw W copies
    // flags (like the other kernel parameters) is read where used: values derived once up
    // here would hold registers through the main loop (f5 Q8_0 spilled more)
    constexpr int ES = BM + 4;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WN, wn = warp % WN;
    uint8_t *const wf0 = gf_smem + slots * SLOT;
    const long long nb = k / 32, row_bytes = F16 ? 2 * k : nb * BSZ;
    const int nst = F16 ? (int)((k + 32 * KB - 1) / (32 * KB)) : (int)((nb + KB - 1) / KB);
    const long long tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
    // per-thread offsets (bytes): the raw W copies in a slot, the X copies, the
    // conversion's block in a slot and its row in an f16 buffer, the ldmatrix lanes
    const int wr_lane = lane % LPR, wr_row = lane / LPR;
    const int w_dst = (warp * RPW + wr_row) * WSTR + wr_lane * 8, w_dst_last = (warp * RPW + lane) * WSTR + (CH - 1) * 8;
    const int x_tok = tid / CPR, x_j = tid % CPR, x_dst = XO + gf_offr(x_tok, x_j, RB);
    const int cv_row = tid / KB, cv_bl = tid % KB;
    const int pw_row = tid / PW, pw_pc = tid % PW, rbytes = (int)row_bytes;
    const int cv_src = cv_row * WSTR + cv_bl * BSZ, cv_mis = (cv_bl * BSZ + 2) & 3;
    const int cv_dst = gf_offr(cv_row, cv_bl * 4, RB); // chunk j of the block: cv_dst ^ (j << 4)
    // ldmatrix at k step kk: lane offset ^ (kk << 5) (the swizzle's XOR moves only bits
    // 4..6 or 4..7 of an offset whose row part is a multiple of RB), plus 16 RB per 16 rows
    // or tokens
    const int a_lane = gf_a_ldsm(wm * (MT * 16), 0, lane, RB), b_lane = gf_b_ldsm(wn * (NT * 8), 0, lane, RB);
    const long long tiles_mn = tiles_m * tiles_n;
    const int per_slice = (nst + ksplit - 1) / ksplit;
    for (long long tile = blockIdx.x; tile < tiles_mn * ksplit; tile += gridDim.x) {
        const long long tmn = tile % tiles_mn;
        const int st0 = (int)(tile / tiles_mn) * per_slice, st1 = st0 + per_slice < nst ? st0 + per_slice : nst;
        if (st0 >= st1)
            continue; // (the whole CTA) an empty slice: k too short to cut
        const long long r0 = (tmn / tiles_n) * BM, n0 = (tmn % tiles_n) * BN;
        const long long wrow0 = r0 + warp * RPW + wr_row;
        const uint8_t *const wsrc = w + wrow0 * row_bytes + wr_lane * 8;
        const uint8_t *const wsrc_last = w + (r0 + warp * RPW + lane) * row_bytes + (CH - 1) * 8;
        const long long wstep = RPI * row_bytes;
        const uint8_t *const wtile = w + r0 * row_bytes;
        const int rows_left = m - r0 < BM ? (int)(m - r0) : BM;
        const bool wlast_ok = r0 + warp * RPW + lane < m;
        unsigned wok = 0, xok = 0; // copy i (it) of this tile reads a row (token) that exists
#pragma unroll
        for (int i = 0; i < WIT; i++)
            wok |= (unsigned)(wrow0 + i * RPI < m) << i;
#pragma unroll
        for (int it = 0; it < XIT; it++)
            xok |= (unsigned)(n0 + x_tok + it * XPI < n) << it;
        const uint16_t *const xsrc = x + (n0 + x_tok) * k + x_j * 8;
        const long long xstep = XPI * k;
        // f16 W: this thread's pieces (rows x_tok + it XPI of the tile, chunk x_j)
        const uint16_t *const wsrc16 = (const uint16_t *)w + (r0 + x_tok) * k + x_j * 8;
        unsigned fok = 0;
        if (F16) {
#pragma unroll
            for (int it = 0; it < FIT; it++)
                fok |= (unsigned)(x_tok + it * XPI < rows_left) << it;
        }
        __syncthreads(); // the previous tile is done with every buffer
        auto load = [&](int st, int slot) {
            uint8_t *sb = gf_smem + slot * SLOT;
            const long long kb0 = (long long)st * KB;
            const bool kin16 = (flags & GF_FLAG_ALIGNED) || kb0 * 32 + x_j * 8 < k;
            if (F16) {
                gq_copy_x_pieces<FIT, XPI * RB>(sb + gf_offr(x_tok, x_j, RB), wsrc16 + kb0 * 32, xstep,
                                                (const uint16_t *)w, kin16, fok);
            } else if ((flags & GF_FLAG_ALIGNED) && KB == 2) {
                // piece c = tid + i THREADS is (row, pc) = (c / PW, c % PW): from this
                // thread's first piece by compile-time steps and one carry; 32-bit offsets
                // within the tile (the plan keeps BM row_bytes below 2^31)
                const uint8_t *const wst = wtile + kb0 * BSZ;
#pragma unroll
                for (int i = 0; i < WPT; i++) {
                    if (BM * PW % THREADS == 0 || tid + i * THREADS < BM * PW) {
                        const int pcs = pw_pc + (i * THREADS) % PW, carry = pcs >= PW;
                        const int row = pw_row + (i * THREADS) / PW + carry, pc = pcs - (carry ? PW : 0);
                        const bool ok = row < rows_left;
                        cp_async4(sb + row * WSTR + pc * 4, ok ? wst + (row * rbytes + pc * 4) : w, ok);
                    }
                }
            } else if (flags & GF_FLAG_ALIGNED) {
                if (lane < LPR * RPI) {
                    const uint8_t *src = wsrc + kb0 * BSZ;
#pragma unroll
                    for (int i = 0; i < WIT; i++) {
                        const bool ok = (wok >> i) & 1;
                        cp_async8(sb + w_dst + i * RPI * WSTR, ok ? src : w, ok);
                        src += wstep;
                    }
                }
                if (lane < RPW)
                    cp_async8(sb + w_dst_last, wlast_ok ? wsrc_last + kb0 * BSZ : w, wlast_ok);
            } else {
                gq_copy_blocks_2byte<BSZ, BM, KB, WSTR, THREADS>(sb, w, r0, m, kb0, nb, row_bytes, tid);
            }
            // k is a multiple of 32 KB on the aligned path: every block of the stage exists
            const bool kin = F16 ? kin16 : (flags & GF_FLAG_ALIGNED) || kb0 + (x_j >> 2) < nb;
            gq_copy_x_pieces<XIT, XPI * RB>(sb + x_dst, xsrc + kb0 * 32, xstep, x, kin, xok);
        };
        // this thread's raw blocks of the stage in `slot` into f16 buffer `buf`
        auto convert_unit = [&](int slot, int buf, int it) {
            if constexpr (!F16)
                gf_convert<WT>(gf_smem + slot * SLOT + cv_src + it * CPI * WSTR, cv_mis, wf0 + buf * WFB,
                               cv_dst + it * CPI * RB);
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
            if (st0 + s < st1)
                load(st0 + s, s);
            cp_async_commit();
        }
        cp_async_wait(slots - 2);
        __syncthreads();
#pragma unroll
        for (int it = 0; it < CU; it++)
            convert_unit(0, st0 & 1, it);
        // ring slots of stage st (rd), st + 1 (nx) and st + slots - 1 (ld)
        int rd = 0, nx = 1, ld = slots - 1;
        for (int st = st0; st < st1; st++) {
            // stage st + 1 has landed (this thread's copies; f16 W: stage st, no conversion)
            cp_async_wait(F16 ? slots - 2 : slots - 3);
            __syncthreads();
            if (st + slots - 1 < st1)
                load(st + slots - 1, ld);
            cp_async_commit();
            const bool next = st + 1 < st1;
            const int buf = st & 1;
            const uint8_t *xs = gf_smem + rd * SLOT + XO;
#pragma unroll
            for (int kk = 0; kk < KK; kk++) {
                unsigned a[MT][4], b[NT][2];
                const uint8_t *ak = (F16 ? gf_smem + rd * SLOT : wf0 + buf * WFB) + (a_lane ^ (kk << 5));
                const uint8_t *bk = xs + (b_lane ^ (kk << 5));
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldsm_x4(a[mt], ak + mt * 16 * RB);
#pragma unroll
                for (int p = 0; p < NT / 2; p++) {
                    unsigned r[4];
                    ldsm_x4(r, bk + p * 16 * RB);
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
                    if (!F16 && kk == (1 + it * KK / CU) % KK && next)
                        convert_unit(nx, buf ^ 1, it);
            }
            rd = nx;
            nx = nx + 1 == slots ? 0 : nx + 1;
            ld = ld + 1 == slots ? 0 : ld + 1;
        }
        cp_async_wait(0);
        if ((flags & GF_FLAG_STAGED) && BN * ES * 4 <= slots * SLOT + (F16 ? 0 : 2 * WFB)) {
            // the tile through shared memory as [token][row] f32 (rows padded by 4: a fragment
            // store's 8 rows x 4 tokens fall in 32 banks), then 4 rows of a token per thread
            // as one 16-byte store or RED.ADD (split-K): a warp writes 512 contiguous bytes
            float *const es = reinterpret_cast<float *>(gf_smem);
            __syncthreads(); // every warp is past the last stage's buffers
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        es[(wn * (NT * 8) + nt * 8 + gi8_c_tok(lane, i)) * ES + wm * (MT * 16) + mt * 16 +
                           gi8_c_row(lane, i)] = acc[mt][nt][i];
            __syncthreads();
#pragma unroll 4
            for (int e = tid; e < BN * (BM / 4); e += THREADS) {
                const int t = e / (BM / 4), r = (e % (BM / 4)) * 4;
                const long long tok = n0 + t, row = r0 + r;
                if (tok >= n || row >= m)
                    continue;
                float v[4];
                gf_ld4f(es + t * ES + r, v);
                float *const dst = y + tok * ldy + row;
                if ((m & 3) == 0 && (ldy & 3) == 0 && (reinterpret_cast<unsigned long long>(y) & 15) == 0) {
                    // m % 4 == 0: rows row .. row + 3 all exist
                    if (ksplit > 1)
                        gf_red_add4(dst, v);
                    else
                        gf_st4f(dst, v);
                } else {
                    for (int q = 0; q < 4 && row + q < m; q++) {
                        if (ksplit > 1)
                            gf_red_add(dst + q, v[q]);
                        else
                            dst[q] = v[q];
                    }
                }
            }
            continue; // the next tile's first barrier keeps its copies off `es` until all have read
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const long long row = r0 + wm * (MT * 16) + mt * 16 + gi8_c_row(lane, i);
                    const long long tok = n0 + wn * (NT * 8) + nt * 8 + gi8_c_tok(lane, i);
                    if (row < m && tok < n) {
                        if (ksplit > 1)
                            gf_red_add(y + tok * ldy + row, acc[mt][nt][i]);
                        else
                            y[tok * ldy + row] = acc[mt][nt][i];
                    }
                }
    }
#else
    __trap(); // the host launches these only on sm_80+ code (kern_cuda_gemm_plan)
#endif
}

#endif

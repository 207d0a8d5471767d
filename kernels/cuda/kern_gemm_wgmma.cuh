// The Hopper warpgroup-MMA prompt GEMM's device code (layout and descriptors:
// kern_gemm_wgmma_map.h).  Included by the sm_90a module kern_gemm_wgmma.cu after the
// primitives it uses (cp_async4/16, gw_cp_wait, gw_fence, gw_fence_proxy, gw_commit,
// gw_wait0, gw_wait1, gw_mma<BN>, gw_smem_u32, gf_sub_mul, gf_store4, gf_red_add,
// GW_DYN_SMEM) and by a host emulator, which supplies its own versions.  The f16
// conversion is the f16-MMA kernel's k64 one (gf_convert, kern_gemm_f16mma.cuh), whose
// output layout is the wgmma 128-byte-swizzle layout; the 2-byte weight path and the
// X pieces' copy are shared too (kern_gemm_copy.cuh).
//
// WT 16: f16 weights [m][k], which have the layout of the activations X [n][k]: their
// pieces go by 16-byte cp.async straight into the swizzled layout the MMAs read, in the
// ring slot (no raw W, no conversion, no f16 W buffers); the MMAs read W from the slot.
#ifndef KERN_GEMM_WGMMA_CUH
#define KERN_GEMM_WGMMA_CUH

#include "kern_gemm_copy.cuh"
#include "kern_gemm_wgmma_map.h"

// CTA tiles: weight rows r0 .. r0 + 64 WG - 1 (warpgroup g: rows 64 g ..), tokens n0 ..
// n0 + BN - 1; token tiles run fastest (the CTAs sharing a band of weight rows run together,
// so weights larger than L2 come from DRAM about once).  A CTA takes tiles blockIdx.x,
// + gridDim.x, ... (a grid of one CTA per tile, or a persistent one of as many as fit).
// Arguments as the f16-MMA kernel's:
// x the f16 activations [n][k]; `slots` ring slots (3..8, gw_slots_fit); flags bit 0
// (GF_FLAG_ALIGNED): raw W by 4-byte cp.async (k % 64 == 0, 4-byte aligned buffer), else
// 2-byte loads; ksplit > 1: each tile's k stages in ksplit slices whose partial sums are
// added into y (zeroed by the host); ldy, the distance between two tokens' rows of y (m, or
// more where the launch writes a slab of y's rows: the two-pass path).
//
// Pipeline per k stage st (one barrier): wait for stage st + 1's copies (this thread's);
// fence.proxy.async (this thread's generic writes, the conversion's stores and the landed
// cp.async data, become visible to the tensor cores' async proxy); barrier; wgmma.fence;
// 4 wgmma k16 steps on (f16 W buffer of stage st, X of its slot), committed as one group;
// while they run: the copies of stage st + D into the slot stage st + D - slots used and
// the conversion of stage st + 1's raw W into the next f16 buffer; then wgmma.wait_group P.
//   P = 0 (flags without GW_FLAG_DEEP): 2 f16 buffers, D = slots - 1.  After the barrier
//     of stage st every warpgroup's MMAs of stage st - 1 are complete, so that slot and
//     that buffer may be written; the tensor cores idle from the end of stage st's MMAs to
//     the issue of stage st + 1's (the barrier between them).
//   P = 1 (GW_FLAG_DEEP, slots >= 4): 3 f16 buffers, D = slots - 2: stage st's MMAs may
//     still run while the barrier of stage st + 1 is passed and its MMAs are queued behind
//     them; what is written in stage st (slot and buffer of stage st - 2) was read only by
//     MMAs of stage st - 2, which the wait of stage st - 1 completed.
//
// XV (the experimental variants, session 5; kern_gemm_wgmma_map.h GW_XV_*): bit 0, raw W
// rows 52 / 84 bytes apart (13 / 21 words: odd, so the conversion's 16 rows per warp fall
// on distinct banks; the raw part padded to 1024 bytes); bit 1, FSL ring slots fixed at
// compile time and the flat pipeline (the cp.async wait and the ring's wrap-around become
// constants: no runtime wait_group switch).  XV 0 is the kernel as measured in session 4.
template <int WT, int WG, int BN, int XV = 0, int FSL = 0>
__device__ void gemm_wgmma(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n, float *y,
                           int slots_in, int flags, int ksplit, long long ldy)
{
    constexpr int KB = GW_KB, BM = 64 * WG, THREADS = 128 * WG, NACC = BN / 2;
    constexpr bool F16 = WT == 16, PAD = (XV & GW_XV_PAD) != 0, FIX = (XV & GW_XV_FIX) != 0;
    static_assert(!FIX || (FSL >= 3 && FSL <= GW_MAX_SLOTS), "fixed ring slots");
    constexpr int BSZ = WT == 4 ? 18 : 34, RB = GW_ROW, CPR = 8;
    constexpr int WSTR = F16 ? RB : PAD ? (WT == 4 ? 52 : 84) : WT == 4 ? 48 : 80;
    constexpr int XB = BN * RB, SLOT = XB + (BM * WSTR + GW_ALIGN - 1) / GW_ALIGN * GW_ALIGN, WFB = BM * RB;
    const int slots = FIX ? FSL : slots_in;
    static_assert(SLOT % GW_ALIGN == 0 && WFB % GW_ALIGN == 0, "1024-byte aligned tiles");
    // raw W: PW pieces of 4 bytes per row, dealt round the CTA (piece c = tid + i THREADS is
    // row c / PW, piece c % PW), WPT per thread: a warp's copy covers 128 consecutive bytes
    // of 3-4 rows.  (A row's pieces by its 2 threads from one address, 8 bytes apart, took
    // fewer instructions but touched 16 rows per warp copy: on the H200 at 05:48 the L1 went
    // from 64 % to 81-87 % busy, warps stalled on the MIO queue and the LM head took 7-9 %
    // longer.)  X: XIT 16-byte pieces per thread, XPI tokens apart (a multiple of 8: one
    // swizzle for all of them).
    constexpr int PW = BSZ * KB / 4, WPT = (BM * PW + THREADS - 1) / THREADS;
    constexpr int XPI = THREADS / CPR, XIT = BN * CPR / THREADS;
    // f16 W: a row's 8 pieces of a stage as X's (rows XPI apart, WIT per thread)
    constexpr int WIT = BM * CPR / THREADS;
    static_assert(!F16 || BM * CPR % THREADS == 0, "tile variant");
    // the conversion: CU raw blocks per thread and stage, CPI rows apart
    constexpr int CU = BM * KB / THREADS, CPI = THREADS / KB;
    static_assert(CU >= 1 && BN * CPR % THREADS == 0 && XPI % 8 == 0 && CPI % 8 == 0, "tile variant");
    static_assert(BN % 8 == 0 && BN >= 8 && BN <= 256, "wgmma N");
    GW_DYN_SMEM(gw_raw);
    // the swizzle's pattern is of the shared address: start every tile on 1024 bytes
    uint8_t *const sm = gw_raw + ((GW_ALIGN - (gw_smem_u32(gw_raw) & (GW_ALIGN - 1))) & (GW_ALIGN - 1));
    uint8_t *const wf0 = sm + slots * SLOT;
    const int deep = !FIX && (flags & GW_FLAG_DEEP) ? 1 : 0, nbuf = 2 + deep, ahead = slots - 1 - deep;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
    const long long nb = k / 32, row_bytes = F16 ? 2 * k : nb * BSZ;
    const int nst = F16 ? (int)((k + 32 * KB - 1) / (32 * KB)) : (int)((nb + KB - 1) / KB);
    const long long tiles_m = (m + BM - 1) / BM, tiles_n = (n + BN - 1) / BN;
    const int x_tok = tid / CPR, x_j = tid % CPR, x_dst = gf_offr(x_tok, x_j, RB);
    const int cv_row = tid / KB, cv_bl = tid % KB;
    const int pw_row = tid / PW, pw_pc = tid % PW, rbytes = (int)row_bytes;
    const int cv_src = XB + cv_row * WSTR + cv_bl * BSZ, cv_mis = (cv_bl * BSZ + 2) & 3;
    const int cv_dst = gf_offr(cv_row, cv_bl * 4, RB);
    // descriptors of stage 0's k16 step 0: this warpgroup's 64 rows of f16 buffer 0, the X
    // of slot 0; buffer b, slot s and step kk add (b WFB + 32 kk) >> 4, (s SLOT + 32 kk) >> 4
    // (f16 W: the W part of slot 0; slot s adds (s SLOT) >> 4)
    const unsigned long long da0 = gw_desc(gw_smem_u32((F16 ? sm + XB : wf0) + wg * 64 * RB));
    const unsigned long long db0 = gw_desc(gw_smem_u32(sm));
    const long long tiles_mn = tiles_m * tiles_n, n_tiles = tiles_mn * ksplit;
    const int per_slice = (nst + ksplit - 1) / ksplit;
    const long long xstep = XPI * k;
    // The CTA's tiles (blockIdx.x, + gridDim.x, ...) as one stream of k stages: the copies
    // run `ahead` stages in front of the MMAs and the conversion one, into the next tile
    // at the end of one, so that a CTA that owns several tiles (a grid of fewer CTAs than
    // tiles) keeps its pipeline full from tile to tile; only the MMAs stop for the
    // epilogue.  Tile t covers k stages [s0, s1) of slice t / tiles_mn (empty where k is
    // too short to cut: skipped).
    auto stages_of = [&](long long t, int &s0, int &s1) {
        s0 = (int)(t / tiles_mn) * per_slice;
        s1 = s0 + per_slice < nst ? s0 + per_slice : nst;
    };
    auto next_tile = [&](long long t) {
        for (t += gridDim.x; t < n_tiles; t += gridDim.x) {
            int s0, s1;
            stages_of(t, s0, s1);
            if (s0 < s1)
                return t;
        }
        return n_tiles;
    };
    // the copies' cursor: tile lt, stage ls of [ls, ls1), and what its copies need
    long long lt = next_tile((long long)blockIdx.x - gridDim.x), lr0 = 0;
    int ls = 0, ls1 = 0;
    const uint8_t *wtile = w; // the tile's first raw W row
    int rows_left = 0;
    const uint16_t *xsrc = x;
    const uint16_t *wsrc16 = (const uint16_t *)w; // f16 W: this thread's first piece of the tile
    unsigned wok = 0;                              // f16 W piece it of the tile reads a row that exists
    unsigned xok = 0; // X piece it of the tile reads a token that exists
    bool xfull = false; // every token of the tile exists
    auto set_load = [&](long long t) {
        stages_of(t, ls, ls1);
        const long long tmn = t % tiles_mn, ln0 = (tmn % tiles_n) * BN;
        lr0 = (tmn / tiles_n) * BM;
        wtile = w + lr0 * row_bytes;
        rows_left = m - lr0 < BM ? (int)(m - lr0) : BM;
        xfull = ln0 + BN <= n;
        xok = 0;
#pragma unroll
        for (int it = 0; it < XIT; it++)
            xok |= (unsigned)(ln0 + x_tok + it * XPI < n) << it;
        xsrc = x + (ln0 + x_tok) * k + x_j * 8;
        if (F16) {
            wok = 0;
#pragma unroll
            for (int it = 0; it < WIT; it++)
                wok |= (unsigned)(x_tok + it * XPI < rows_left) << it;
            wsrc16 = (const uint16_t *)w + (lr0 + x_tok) * k + x_j * 8;
        }
    };
    // stage ls of tile lt into `slot`, then the cursor one stage on
    auto load = [&](int slot) {
        uint8_t *const sb = sm + slot * SLOT;
        const long long kb0 = (long long)ls * KB;
        // f16: a piece of k values 32 kb0 + 8 x_j .. + 7 exists (k % 8 == 0, the plan's
        // rule; all of them where k % 64 == 0, GF_FLAG_ALIGNED)
        const bool kin16 = (flags & GF_FLAG_ALIGNED) || kb0 * 32 + x_j * 8 < k;
        if (F16) {
            gq_copy_x_pieces<WIT, XPI * RB>(sb + XB + x_dst, wsrc16 + kb0 * 32, xstep, (const uint16_t *)w, kin16,
                                            wok);
        } else if (flags & GF_FLAG_ALIGNED) {
            // 32-bit offsets within the tile (the plan keeps BM row_bytes below 2^31); the
            // pieces start 4-byte aligned (k % 64 == 0, an aligned buffer)
            const uint8_t *const wst = wtile + kb0 * BSZ;
#pragma unroll
            for (int i = 0; i < WPT; i++) {
                if (BM * PW % THREADS == 0 || tid + i * THREADS < BM * PW) {
                    const int pcs = pw_pc + (i * THREADS) % PW, carry = pcs >= PW;
                    const int row = pw_row + (i * THREADS) / PW + carry, pc = pcs - (carry ? PW : 0);
                    const bool ok = row < rows_left;
                    cp_async4(sb + XB + row * WSTR + pc * 4, ok ? wst + (row * rbytes + pc * 4) : w, ok);
                }
            }
        } else {
            gq_copy_blocks_2byte<BSZ, BM, KB, WSTR, THREADS>(sb + XB, w, lr0, m, kb0, nb, row_bytes, tid);
        }
        // k is a multiple of 64 on the aligned path: every block of the stage exists
        const uint16_t *src = xsrc + kb0 * 32;
        if ((flags & GF_FLAG_ALIGNED) && xfull) { // every piece exists
#pragma unroll
            for (int it = 0; it < XIT; it++) {
                cp_async16(sb + x_dst + it * XPI * RB, src, true);
                src += xstep;
            }
        } else {
            const bool kin = F16 ? kin16 : (flags & GF_FLAG_ALIGNED) || kb0 + (x_j >> 2) < nb;
            gq_copy_x_pieces<XIT, XPI * RB>(sb + x_dst, src, xstep, x, kin, xok);
        }
        if (++ls == ls1 && (lt = next_tile(lt)) < n_tiles)
            set_load(lt);
    };
    auto convert = [&](int slot, int buf) {
        if constexpr (!F16) {
#pragma unroll
            for (int it = 0; it < CU; it++)
                gf_convert<WT>(sm + slot * SLOT + cv_src + it * CPI * WSTR, cv_mis, wf0 + buf * WFB,
                               cv_dst + it * CPI * RB);
        }
    };
    // the MMAs' cursor: tile mt, stage ms of [ms, ms1); the tile after it
    long long mt = lt, mt_next = n_tiles;
    int ms = 0, ms1 = 0;
    if (mt >= n_tiles)
        return; // (the whole CTA) no tile
    stages_of(mt, ms, ms1);
    mt_next = next_tile(mt);
    set_load(lt);
    float acc[NACC];
#pragma unroll
    for (int i = 0; i < NACC; i++)
        acc[i] = 0.0f;
    for (int s = 0; s < ahead; s++) {
        if (lt < n_tiles)
            load(s);
        cp_async_commit();
    }
    if (!F16) {
        gw_cp_wait(ahead - 1); // the first stage
        __syncthreads();
        convert(0, 0);
    }
    int rd = 0, nx = 1, ld = ahead; // ring slots of the stream's stages g, g + 1, g + ahead
    int bf = 0;                     // the f16 buffer of stage g
    for (;;) {
        // stage g + 1 has landed (this thread's copies; f16 W: stage g, no conversion)
        gw_cp_wait(F16 ? ahead - 1 : ahead - 2);
        gw_fence_proxy(); // ... and stage g's conversion: visible to the tensor cores
        __syncthreads();
        gw_fence(); // the accumulators' last writes are ordered before the MMAs
        {
            const unsigned long long da = da0 + (unsigned)(((F16 ? rd * SLOT : bf * WFB)) >> 4);
            const unsigned long long db = db0 + (unsigned)((rd * SLOT) >> 4);
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                gw_mma<BN>(acc, da + 2 * kk, db + 2 * kk);
        }
        gw_commit();
        if (lt < n_tiles)
            load(ld);
        cp_async_commit();
        bf = bf + 1 == nbuf ? 0 : bf + 1;
        if (!F16 && (ms + 1 < ms1 || mt_next < n_tiles))
            convert(nx, bf);
        if (deep)
            gw_wait1(); // stage g - 1's MMAs are done with their buffers
        else
            gw_wait0(); // stage g's
        rd = nx;
        nx = nx + 1 == slots ? 0 : nx + 1;
        ld = ld + 1 == slots ? 0 : ld + 1;
        if (++ms < ms1)
            continue;
        // the tile's last stage: its result out (no shared memory involved), the
        // accumulators cleared for the next tile, whose first stages are in flight
        gw_wait0();
        const long long tmn = mt % tiles_mn, r0 = (tmn / tiles_n) * BM, n0 = (tmn % tiles_n) * BN;
        if (r0 + BM <= m && n0 + BN <= n) {
            // a whole tile: accumulators 4j .. 4j + 3 are rows (row, row + 8) x tokens (tok,
            // tok + 1), tok = n0 + 8 j + 2 (lane & 3): one running pointer per 8 tokens
            float *p = y + (n0 + gw_d_tok(lane, 0)) * ldy + r0 + wg * 64 + gw_d_row(warp & 3, lane, 0);
            const long long m8 = 8 * ldy;
#pragma unroll
            for (int j = 0; j < NACC / 4; j++) {
                float *const q = p + ldy;
                if (ksplit > 1) {
                    gf_red_add(p, acc[4 * j]);
                    gf_red_add(q, acc[4 * j + 1]);
                    gf_red_add(p + 8, acc[4 * j + 2]);
                    gf_red_add(q + 8, acc[4 * j + 3]);
                } else {
                    p[0] = acc[4 * j];
                    q[0] = acc[4 * j + 1];
                    p[8] = acc[4 * j + 2];
                    q[8] = acc[4 * j + 3];
                }
                p += m8;
            }
        } else {
#pragma unroll
            for (int i = 0; i < NACC; i++) {
                const long long row = r0 + wg * 64 + gw_d_row(warp & 3, lane, i);
                const long long tok = n0 + gw_d_tok(lane, i);
                if (row < m && tok < n) {
                    if (ksplit > 1)
                        gf_red_add(y + tok * ldy + row, acc[i]);
                    else
                        y[tok * ldy + row] = acc[i];
                }
            }
        }
#pragma unroll
        for (int i = 0; i < NACC; i++)
            acc[i] = 0.0f;
        if ((mt = mt_next) >= n_tiles)
            break;
        stages_of(mt, ms, ms1);
        mt_next = next_tile(mt);
    }
    gw_cp_wait(0);
}

#endif

// The wgmma prompt GEMM's own device source (kernels/cuda/kern_gemm_wgmma.cuh), run on the
// host with the SIMT emulator of kern_cuda_gemm_simt.cc (one POSIX thread per CUDA thread,
// cp.async landing early or late, shared memory starting as garbage) plus the Hopper
// primitives: wgmma.mma_async reads its operands through the shared-memory matrix
// descriptors as the PTX ISA describes them (K-major, 128-byte swizzle: start address,
// 1024-byte stride between 8-row groups, address bits 4..6 XOR bits 7..9), either at issue
// (EARLY) or only at the issuing thread's wgmma.wait_group (LATE: a buffer rewritten before
// the MMAs that read it were waited for shows), always the other way round from the
// cp.async copies (early copies and late MMAs show a slot refilled too soon; late copies
// and early MMAs, data used before it landed); each thread computes its own accumulators
// through the D fragment map.  The dynamic shared memory starts 48 bytes past a 1024-byte
// boundary of the emulated shared window, so the kernel's own alignment is exercised, and
// a descriptor whose start is not on a 1024-byte pattern boundary (other than the k16
// steps' 32-byte offsets) or not in the 128-byte swizzle traps.  Results must be within
// one f32 rounding per MMA of the exact sum of the kernel's f16 inputs (as for f16-MMA).
// Exit 0: all agree; 1: a difference (printed).  No GPU involved.
#define main kern_cuda_gemm_simt_main // the int8 / f16-MMA cases are that file's own test
#include "kern_cuda_gemm_simt.cc"
#undef main
#include "kernels/cuda/kern_gemm_wgmma_map.h"

// ---- the Hopper primitives -----------------------------------------------------------------

// The shared-window address of p: the dynamic shared memory begins 48 bytes into the window.
static unsigned gw_smem_u32(const void *p) { return (unsigned)((uintptr_t)p - ((uintptr_t)sim_dyn - 48)); }
static const uint8_t *gw_window() { return sim_dyn - 48; }
static void gw_cp_wait(int n) { cp_async_wait(n); }
static void gw_fence_proxy() {}
static void gw_fence() {}

struct gw_op {
    float *d;
    unsigned long long da, db;
    int n;
};
// LATE: this thread's MMAs not yet run, by commit group (oldest first), and the open group
static thread_local std::vector<std::vector<gw_op>> gw_groups;
static thread_local std::vector<gw_op> gw_open;
static bool gw_late;
static void gw_commit()
{
    gw_groups.push_back(gw_open);
    gw_open.clear();
}

// Element (row r, k) of a K-major 128-byte-swizzled operand (k < 16 within the k16 step).
static double gw_elem(unsigned long long desc, int r, int k)
{
    const unsigned start = (unsigned)(desc & 0x3FFF) << 4, sbo = (unsigned)((desc >> 32) & 0x3FFF) << 4;
    if ((desc >> 62) != 1 || ((desc >> 49) & 7) != 0 || sbo != 1024 || (start & 0x380) != 0 || (start & 0x1F) != 0)
        __trap(); // not the layout the kernel claims: 128-byte swizzle from a 1024-byte boundary + 32 kk
    unsigned a = start + (unsigned)(r / 8) * sbo + (unsigned)(r % 8) * 128 + 2u * (unsigned)k;
    a ^= ((a >> 7) & 7) << 4;
    uint16_t h;
    memcpy(&h, gw_window() + a, 2);
    return sim_h2d(h);
}

static void gw_run(const gw_op &op)
{
    const int w = (int)((threadIdx.x >> 5) & 3), lane = lane_id();
    for (int i = 0; i < op.n / 2; i++) {
        const int row = gw_d_row(w, lane, i), tok = gw_d_tok(lane, i);
        double sum = op.d[i];
        for (int k = 0; k < 16; k++)
            sum += gw_elem(op.da, row, k) * gw_elem(op.db, tok, k);
        op.d[i] = (float)sum; // one f32 rounding per MMA, as the f16-MMA emulation
    }
}

template <int BN> static void gw_mma(float *d, unsigned long long da, unsigned long long db)
{
    const gw_op op = {d, da, db, BN};
    if (gw_late)
        gw_open.push_back(op);
    else
        gw_run(op);
}
// wgmma.wait_group n: the oldest groups run until at most n are pending (an MMA never
// committed is never waited for: it stays pending, and its accumulators stay wrong)
static void gw_wait(size_t n)
{
    while (gw_groups.size() > n) {
        for (const gw_op &op : gw_groups.front())
            gw_run(op);
        gw_groups.erase(gw_groups.begin());
    }
}
static void gw_wait0() { gw_wait(0); }
static void gw_wait1() { gw_wait(1); }

#define GW_DYN_SMEM(name) uint8_t *name = sim_dyn
#include "kernels/cuda/kern_gemm_wgmma.cuh"

// ---- cases ----------------------------------------------------------------------------------

// (g_ldy_pad and unpad_y: kern_cuda_gemm_simt.cc's)
template <int WT, int WG, int BN, int XV = 0, int FSL = 0>
static void wgmma_case_t(int v, int slots, bool late, size_t pad, int64_t m, int64_t k, int64_t n, unsigned grid,
                         int ksplit, bool deep)
{
    if (XV & GW_XV_FIX) { // the fixed variants: their compiled slots, the flat pipeline
        slots = FSL;
        deep = false;
    }
    std::vector<uint8_t> wbuf = make_w(WT, m, k, pad);
    const uint8_t *w = wbuf.data() + pad;
    std::vector<uint16_t> xh = make_xh(n, k);
    // y's rows g_ldy_pad values longer than m (a slab of a larger y: the two-pass path)
    const int64_t ldy = m + g_ldy_pad;
    std::vector<float> got((size_t)(n * ldy), ksplit > 1 ? 0.0f : NAN);
    // as the host plan decides (f16 weights: every piece of every stage exists)
    const int aligned = WT == 16 ? k % 64 == 0 : gf_aligned(GW_KB, k / 32, (uintptr_t)w);
    if (WT == 16 && !gf_f16_ok(64 * WG, k, (uintptr_t)w))
        __trap(); // a case the plan would not give this kernel
    const int bm = 64 * WG;
    sim_late = late;
    gw_late = !late;
    const int flags = (aligned ? GF_FLAG_ALIGNED : 0) | (deep ? GW_FLAG_DEEP : 0);
    // the window offset of 48 needs the kernel's 1024-byte skip: gw_smem_bytes includes it
    launch(grid, 128 * WG, (size_t)gw_smem_bytes_x(WT, bm, BN, slots, deep, XV & GW_XV_PAD), [&] {
        gw_groups.clear();
        gw_open.clear();
        gemm_wgmma<WT, WG, BN, XV, FSL>(w, m, k, xh.data(), n, got.data(), slots, flags, ksplit, ldy);
    });
    char what[220];
    snprintf(what, sizeof what,
             "wgmma %s%s %lldx%lld x %lld, variant w%d (%dx%d), %d slots, %s, cp.async %s, %d k slice(s), "
             "%s pipeline, grid %u%s",
             WT == 16 ? "f16" : WT == 4 ? "q4" : "q8", WT == 16 ? "" : "_0", (long long)m, (long long)k, (long long)n,
             v, bm, BN, slots,
             WT == 16 ? (aligned ? "f16 weights, whole stages" : "f16 weights, a part stage")
                      : aligned ? "cp.async weights" : "2-byte weights", late ? "late, MMAs early" : "early, MMAs late", ksplit,
             deep ? "deep" : "flat", grid,
             XV == 1 ? ", x1 (rows 52/84 B)" : XV == 2 ? ", x2 (fixed slots)" : XV == 3 ? ", x3 (both)" : "");
    if (g_ldy_pad)
        got = unpad_y(what, got, m, n, ldy, ksplit);
    check_f16_sum(what, WT, w, m, k, n, xh, got, ksplit);
}

static void wgmma_case(int wt, int v, int slots, bool late, size_t pad, int64_t m, int64_t k, int64_t n,
                       unsigned grid, int ksplit = 1, bool deep = false)
{
#define SIM_WVAR(I, WG, BN, CPS)                                                            \
    if (v == (I)) {                                                                         \
        if (wt == 4)                                                                        \
            wgmma_case_t<4, WG, BN>(v, slots, late, pad, m, k, n, grid, ksplit, deep);      \
        else if (wt == 16)                                                                  \
            wgmma_case_t<16, WG, BN>(v, slots, late, pad, m, k, n, grid, ksplit, deep);     \
        else                                                                                \
            wgmma_case_t<8, WG, BN>(v, slots, late, pad, m, k, n, grid, ksplit, deep);      \
    }
    GW_VARIANTS(SIM_WVAR)
#undef SIM_WVAR
}

// The experimental variants (AMXDIAG_GPU_GEMM_WGMMA_X): every tile that has them, both
// types, each variant (x2 / x3 with the slot counts compiled into kern_gemm_wgmma.cu).
template <int WT, int WG, int BN>
static void xv_cases(int v)
{
    wgmma_case_t<WT, WG, BN, 1, 0>(v, 4, true, 0, 100, 384, 70, 2, 1, false);
    // (4 slots: w0's 5 padded Q8_0 slots and 3 buffers would pass the 256 KiB that the
    // descriptors' 18-bit addresses reach, and the 227 KiB of an sm_90 part)
    wgmma_case_t<WT, WG, BN, 1, 0>(v, 4, false, 2, 70, 480, 37, 3, 2, true);    // 2-byte weights, split-K, deep
    wgmma_case_t<WT, WG, BN, 1, 0>(v, 3, false, 0, 130, 448, 150, 2, 1, false); // several tiles per CTA
}
template <int WT, int WG, int BN, int SPLAIN, int SPAD>
static void xv_fix_cases(int v)
{
    wgmma_case_t<WT, WG, BN, 2, SPLAIN>(v, 0, true, 0, 100, 704, 70, 2, 1, false);
    wgmma_case_t<WT, WG, BN, 2, SPLAIN>(v, 0, false, 0, 130, 448, 150, 2, 2, false); // split-K, several tiles
    wgmma_case_t<WT, WG, BN, 3, SPAD>(v, 0, false, 0, 100, 704, 70, 2, 1, false);
    wgmma_case_t<WT, WG, BN, 3, SPAD>(v, 0, true, 2, 70, 480, 37, 3, 2, false); // 2-byte weights, split-K
}

int main()
{
    // the experimental variants, checked first
    xv_cases<4, 2, 256>(0);
    xv_cases<8, 2, 256>(0);
    xv_cases<8, 2, 128>(1);
    xv_cases<8, 1, 128>(2);
    xv_fix_cases<4, 2, 256, 5, 4>(0);
    xv_fix_cases<8, 2, 256, 4, 4>(0);
    xv_fix_cases<4, 2, 128, 8, 8>(1);
    xv_fix_cases<8, 2, 128, 7, 7>(1);
    xv_fix_cases<4, 1, 128, 5, 4>(2);
    xv_fix_cases<8, 1, 128, 4, 4>(2);
    // every variant, both types, both timings: partial row and token tiles, the ring
    // wrapping (6 k stages through 3 or 4 slots), grid-stride tiles
    for (int v = 0; v < GW_NVAR; v++) {
        wgmma_case(4, v, 3, true, 0, 100, 384, 70, 2);
        wgmma_case(8, v, 4, v & 1, 0, 70, 384, 37, 3);
    }
    // more slots than stages (8 slots, 3 stages), the largest ring, k % 64 == 32 (2-byte
    // loads, half a last stage), a 2-byte aligned buffer, a 4-byte aligned one (cp.async)
    wgmma_case(8, 1, 8, true, 0, 130, 192, 130, 2);
    wgmma_case(4, 3, 8, false, 0, 64, 1024, 64, 1);
    wgmma_case(8, 2, 3, true, 0, 70, 96, 37, 2);
    wgmma_case(4, 0, 3, true, 2, 40, 256, 5, 1);
    wgmma_case(8, 3, 5, false, 4, 70, 512, 20, 2);
    wgmma_case(4, 2, 4, true, 0, 64, 2048, 1, 1); // one token
    // split-K by 2: odd stage count (7 = 4 + 3), grid-stride over tiles x slices, 2-byte path
    wgmma_case(4, 1, 4, true, 0, 150, 448, 70, 3, 2);
    wgmma_case(8, 0, 3, false, 2, 70, 544, 37, 2, 2);
    // the deep pipeline (one stage of MMAs in flight across the barrier, 3 f16 buffers):
    // every variant, its smallest ring (4 slots) and larger ones, the 2-byte path, split-K
    for (int v = 0; v < GW_NVAR; v++) {
        wgmma_case(4, v, 4, true, 0, 100, 384, 70, 2, 1, true);
        wgmma_case(8, v, 5 + v, v & 1, 0, 70, 448, 37, 3, 1, true);
    }
    wgmma_case(8, 2, 4, true, 0, 70, 96, 37, 2, 1, true);
    wgmma_case(4, 1, 6, true, 0, 150, 448, 70, 3, 2, true);
    wgmma_case(8, 3, 8, false, 2, 70, 1024, 1, 1, 2, true);
    // CTAs that own several tiles (fewer CTAs than tiles): the copies and the conversion
    // run on into the next tile; empty k slices (k too short to cut) skipped
    wgmma_case(4, 3, 4, true, 0, 200, 448, 150, 5);           // 12 tiles on 5 CTAs
    wgmma_case(8, 3, 3, false, 0, 200, 448, 150, 5, 1, false);
    wgmma_case(8, 1, 5, true, 0, 300, 320, 130, 4, 1, true);  // 6 tiles on 4 CTAs, deep
    wgmma_case(4, 0, 4, false, 2, 260, 256, 300, 3, 1, true); // 6 tiles, 2-byte weights, deep
    wgmma_case(8, 2, 4, true, 0, 130, 448, 300, 3, 2);        // 2 slices of 4 + 3 stages, 18 on 3 CTAs
    wgmma_case(4, 3, 6, false, 0, 130, 64, 70, 4, 2, true);   // one stage: every second slice empty
    wgmma_case(4, 2, 3, true, 0, 64, 32, 129, 2, 1);          // half a stage per tile, 2 tiles
    wgmma_case(8, 3, 8, true, 4, 190, 192, 200, 1, 1, true);  // 12 tiles on one CTA, 3 stages each
    // f16 weights (WT 16: W pieces straight into the slot, no conversion): every variant
    // flat and deep, both timings, partial row / token tiles, k % 64 == 32 and == 8 (part
    // stages: pieces past k are zeros), a 16-byte pad, split-K, CTAs with several tiles,
    // the smallest and largest rings, one token
    for (int v = 0; v < GW_NVAR; v++) {
        wgmma_case(16, v, 3, true, 0, 100, 384, 70, 2);
        wgmma_case(16, v, 4 + v, v & 1, 16, 70, 352, 37, 3);
        wgmma_case(16, v, 4, !(v & 1), 0, 130, 200, 70, 2, 1, true);
    }
    wgmma_case(16, 1, 8, false, 0, 130, 192, 130, 2);         // 8 slots, 3 stages
    wgmma_case(16, 0, 3, true, 0, 150, 448, 70, 3, 2);        // split-K 4 + 3 stages
    wgmma_case(16, 2, 5, false, 16, 70, 520, 37, 2, 2, true); // split-K, part stage, deep
    // a slab of a longer y (the two-pass path's launches, ldy > m): whole and partial
    // tiles, split-K, the converting kernels too
    g_ldy_pad = 40;
    for (int v = 0; v < GW_NVAR; v++)
        wgmma_case(16, v, 4, true, 0, 130, 256, 70, 2);
    wgmma_case(16, 0, 3, false, 0, 256, 448, 70, 3, 2);
    wgmma_case(8, 1, 4, true, 0, 128, 256, 64, 2);
    g_ldy_pad = 3;
    wgmma_case(16, 3, 4, true, 0, 64, 256, 37, 2, 2, true);
    g_ldy_pad = 0;
    wgmma_case(16, 3, 4, true, 0, 200, 448, 150, 5);          // 12 tiles on 5 CTAs
    wgmma_case(16, 0, 4, false, 0, 260, 264, 300, 3, 1, true); // 6 tiles on 3, part stage, deep
    wgmma_case(16, 2, 3, true, 0, 64, 1024, 1, 1);            // one token
    wgmma_case(16, 3, 6, false, 0, 130, 64, 70, 4, 2, true);  // one stage: every second slice empty
    if (failures) {
        printf("%d case(s) differ from the reference\n", failures);
        return 1;
    }
    printf("all cases agree (the wgmma GEMM within f32 rounding per MMA)\n");
    return 0;
}

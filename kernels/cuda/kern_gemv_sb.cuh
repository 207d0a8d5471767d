// The Q4_0 / Q8_0 GEMV by super-blocks (kern_gemv_{q4_0,q8_0}_sb{,n}), included by
// kern_kernels.cu (which defines kval, kval_report, f16_bits_to_f32 and the OP_ codes
// before it) and by the host emulator tests/unit/kern_cuda_gemv_simt.cc.
//
// Why a third GEMV.  The row kernels (gemv_q, gemv_q_mr) stage rows in shared memory and
// read the 2-byte-aligned blocks back with 16-bit loads: 9 (Q4_0) or 17 (Q8_0) shared
// loads per block, each a 4- to 8-way bank conflict across the warp, and the activations
// reloaded for every row.  That costs more shared-memory wavefronts per weight byte than an
// SM can serve at much over ~2.9 TB/s, which is where both the H100 (91 % of its 2980 GB/s
// copy) and the H200 (69 % of its 4207) stopped.
//
// Eight blocks are a whole number of 16-byte chunks: 8 x 18 = 144 = 9 x 16 (Q4_0) and
// 8 x 34 = 272 = 17 x 16 (Q8_0).  Rows of K % 256 == 0 values (nsb = K / 256 super-blocks)
// starting 16-byte aligned are therefore strings of aligned super-blocks, and a warp takes
// 32 of them at a time (a "span": 32 / nsb consecutive rows, nsb <= 32):
//   - the span's chunks come in with coalesced 128-bit loads (chunk lane + 32 i) into
//     registers, and are written to the warp's shared stage (conflict-free 16-byte stores);
//   - lane l then reads super-block l back with 16-byte loads (conflict-free: consecutive
//     lanes are 144 or 272 bytes apart, 4 banks apart modulo 32), pulls the blocks' scales
//     and quants out of its registers (__byte_perm for the half-word-shifted ones) and
//     sums 8 blocks with dp4a;
//   - lane l's super-block index within its row (l % nsb) never changes, so its 256
//     activations (64 registers) and their 8 steps (and Q4_0's sums) are loaded once per
//     job, not once per row;
//   - the nsb lanes of a row add their sums (butterfly when nsb is a power of two, else in
//     order through shared memory).
// The grid may be smaller than the spans (a persistent grid, the host's `waves`): then a
// warp issues the loads of its next span before it works on the current one, so a span's
// bytes stay in flight while it computes.
//
// Shared memory (dynamic): warps x 32 x chunks x 16 bytes (Q4_0 4608, Q8_0 8704 per warp),
// then warps x 32 floats for the row sums of a non-power-of-two nsb.

#ifndef GEMV_SB_LOAD
// LD 0: ld.global.cs (streamed: evict first in L1 and L2, like the row kernels);
// LD 1: ld.global.nc.L1::no_allocate with a 256-byte L2 prefetch (the weights are read
// once; the prefetch asks DRAM for whole 256-byte pieces; sm_80 and later, without the
// prefetch before).
template <int LD>
__device__ __forceinline__ int4 gemv_sb_load(const int4 *p)
{
    if (LD == 0)
        return __ldcs(p);
    int4 r;
#if __CUDA_ARCH__ >= 800
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.s32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
#else // the L2 prefetch size needs sm_80
    asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
#endif
    return r;
}
#define GEMV_SB_LOAD(LD, p) gemv_sb_load<LD>(p)
#endif

// The 32-bit word at byte offset p (even) of a register array (p known at compile time
// after unrolling, so this is a register pick or one byte permute).
__device__ __forceinline__ int gemv_sb_word(const int *r, int p)
{
    return (p & 3) == 0 ? r[p >> 2] : (int)__byte_perm((unsigned)r[p >> 2], (unsigned)r[(p >> 2) + 1], 0x5432);
}

__device__ __forceinline__ uint16_t gemv_sb_half(const int *r, int p)
{
    return (uint16_t)((unsigned)r[p >> 2] >> (8 * (p & 3)));
}

// One span's source: where its chunks are and how many, or n16 = 0 when validation
// skipped it (reported).
struct gemv_sb_span {
    const int4 *src;
    long long r0, n16;
    int job, nr;
};

template <int QT>
__device__ __forceinline__ gemv_sb_span gemv_sb_at(long long t, const uint8_t *w, long long nrows, long long row_bytes,
                                                   int rpi, long long gpj, const int *ids, int n_expert,
                                                   long long row_fault, long long w_rows, kval *v)
{
    gemv_sb_span s;
    if (t < 0x7fffffff && gpj < 0x7fffffff) { // 32-bit division: a few instructions, not a 64-bit routine
        const unsigned tt = (unsigned)t, g = (unsigned)gpj;
        s.job = (int)(tt / g);
        s.r0 = (long long)(tt % g) * rpi;
    } else {
        s.job = (int)(t / gpj);
        s.r0 = (t % gpj) * rpi;
    }
    s.nr = (int)(nrows - s.r0 < rpi ? nrows - s.r0 : rpi);
    s.src = NULL;
    s.n16 = 0;
    long long e = 0;
    if (ids) {
        e = ids[s.job];
        if (v && (e < 0 || e >= n_expert)) {
            if ((threadIdx.x & 31) == 0)
                kval_report(v, OP_MOE_GEMV, e, n_expert, s.job);
            return s;
        }
    }
    const long long wr = e * nrows + s.r0 + row_fault;
    if (v && (wr < 0 || wr + s.nr > w_rows)) {
        const long long bad = (wr < 0 || wr >= w_rows) ? wr : w_rows;
        if ((threadIdx.x & 31) == 0)
            kval_report(v, ids ? OP_MOE_ROW : OP_GEMV, bad, w_rows, s.r0 + (bad - wr));
        return s;
    }
    s.src = (const int4 *)(w + wr * row_bytes);
    s.n16 = s.nr * row_bytes / 16;
    return s;
}

template <int QT, int LD>
__device__ __forceinline__ void gemv_sb_fetch(int4 *buf, const gemv_sb_span s, int lane)
{
    constexpr int C = QT == 4 ? 9 : 17;
#pragma unroll
    for (int i = 0; i < C; i++)
        if (lane + 32 * i < s.n16)
            buf[i] = GEMV_SB_LOAD(LD, s.src + lane + 32 * i);
}

// The lane's activations for job offset xo (in blocks): 8 blocks of 32 int8 (64 words),
// their steps and (Q4_0) sums.
template <int QT>
__device__ __forceinline__ void gemv_sb_x(const int8_t *xq, const float *xd, const int *xs, long long xo, int *xv,
                                          float *xdv, int *xsv)
{
    const int4 *x4 = (const int4 *)(xq + xo * 32);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int4 q = __ldg(x4 + i);
        xv[4 * i] = q.x, xv[4 * i + 1] = q.y, xv[4 * i + 2] = q.z, xv[4 * i + 3] = q.w;
    }
#pragma unroll
    for (int m = 0; m < 8; m++) {
        xdv[m] = __ldg(xd + xo + m);
        xsv[m] = QT == 4 ? __ldg(xs + xo + m) : 0;
    }
}

// The geometry every lane of a warp shares.
struct gemv_sb_geo {
    long long nrows, row_bytes, gpj, total, step;
    int nsb, rpi, my_r, my_sb;
    bool pow2;
};

template <int QT>
__device__ __forceinline__ gemv_sb_geo gemv_sb_geometry(long long nrows, long long ncols, int n_jobs, int nw)
{
    gemv_sb_geo g;
    const int lane = threadIdx.x & 31;
    const long long nb = ncols / 32;
    g.nrows = nrows;
    g.row_bytes = nb * (QT == 4 ? 18 : 34);
    g.nsb = (int)(nb / 8); // 1..32 (the host checks)
    g.rpi = 32 / g.nsb;    // rows per span
    g.pow2 = (g.nsb & (g.nsb - 1)) == 0;
    g.my_r = lane / g.nsb;
    g.my_sb = lane % g.nsb;
    g.gpj = (nrows + g.rpi - 1) / g.rpi; // spans per job
    g.total = (long long)n_jobs * g.gpj;
    g.step = (long long)gridDim.x * nw;
    return g;
}

// Sums span `cur` from the warp's stage and writes its rows of y.  Every lane calls it
// (the shuffles); x: the lane's activations for cur's job.
template <int QT>
__device__ __forceinline__ void gemv_sb_sum(const int4 *stage, const gemv_sb_span cur, const gemv_sb_geo &g,
                                            const int *xv, const float *xdv, const int *xsv, float *red, float *y)
{
    constexpr int C = QT == 4 ? 9 : 17;
    constexpr int BSZ = QT == 4 ? 18 : 34;
    const int lane = threadIdx.x & 31;
    float acc = 0.0f;
    if (g.my_r < cur.nr) {
        int r[4 * C];
        const int4 *sb = stage + (g.my_r * g.nsb + g.my_sb) * C;
#pragma unroll
        for (int i = 0; i < C; i++) {
            const int4 q = sb[i];
            r[4 * i] = q.x, r[4 * i + 1] = q.y, r[4 * i + 2] = q.z, r[4 * i + 3] = q.w;
        }
#pragma unroll
        for (int m = 0; m < 8; m++) {
            const int o = m * BSZ;
            const float dw = f16_bits_to_f32(gemv_sb_half(r, o));
            int sumi = 0;
            if (QT == 4) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int q = gemv_sb_word(r, o + 2 + 4 * i);
                    sumi = __dp4a(q & 0x0F0F0F0F, xv[8 * m + i], sumi);
                    sumi = __dp4a((q >> 4) & 0x0F0F0F0F, xv[8 * m + 4 + i], sumi);
                }
                acc += dw * xdv[m] * (float)(sumi - 8 * xsv[m]);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++)
                    sumi = __dp4a(gemv_sb_word(r, o + 2 + 4 * i), xv[8 * m + i], sumi);
                acc += dw * xdv[m] * (float)sumi;
            }
        }
    }
    // Lanes past the span's rows (or past rpi * nsb) hold 0 and write nothing.
    float *yr = y + (long long)cur.job * g.nrows + cur.r0;
    if (g.pow2) {
        for (int o = 1; o < g.nsb; o <<= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (g.my_sb == 0 && g.my_r < cur.nr)
            yr[g.my_r] = acc;
    } else {
        red[lane] = acc;
        __syncwarp();
        if (lane < cur.nr) {
            float s = 0.0f;
            for (int j = 0; j < g.nsb; j++)
                s += red[lane * g.nsb + j];
            yr[lane] = s;
        }
        __syncwarp(); // red is written again by the next span
    }
}

// The register path: a span's chunks come into registers, go to the warp's stage, and
// the next span's loads are issued before the current one is summed.
template <int QT, int LD>
__device__ void gemv_sb(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                        const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                        long long row_fault, long long w_rows, kval *v)
{
    constexpr int C = QT == 4 ? 9 : 17; // 16-byte chunks of a super-block
    extern __shared__ int4 gemv_sb_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int4 *stage = gemv_sb_smem + warp * 32 * C;
    float *red = (float *)(gemv_sb_smem + nw * 32 * C) + warp * 32;
    const gemv_sb_geo g = gemv_sb_geometry<QT>(nrows, ncols, n_jobs, nw);
    long long t = (long long)blockIdx.x * nw + warp;
    if (t >= g.total)
        return;

    int4 buf[C];
    gemv_sb_span cur = gemv_sb_at<QT>(t, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
    gemv_sb_fetch<QT, LD>(buf, cur, lane);

    // The first span's activations load while its weights are in flight (one round trip
    // for both, where a warp has a single span: the small decode shapes).
    int xv[64];
    float xdv[8];
    int xsv[8];
    long long x_at = -1;
    if (cur.n16 > 0) {
        x_at = (long long)cur.job * x_stride + (long long)g.my_sb * 8;
        gemv_sb_x<QT>(xq, xd, xs, x_at, xv, xdv, xsv);
    }
    while (true) {
        __syncwarp();
#pragma unroll
        for (int i = 0; i < C; i++)
            if (lane + 32 * i < cur.n16)
                stage[lane + 32 * i] = buf[i];
        __syncwarp();
        const long long tn = t + g.step;
        gemv_sb_span nxt;
        nxt.n16 = 0;
        if (tn < g.total) {
            nxt = gemv_sb_at<QT>(tn, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
            gemv_sb_fetch<QT, LD>(buf, nxt, lane); // in flight while this span is summed
        }
        if (cur.n16 > 0) {
            const long long xo = (long long)cur.job * x_stride + (long long)g.my_sb * 8; // the lane's first block
            if (xo != x_at) { // a new job with inputs of its own
                gemv_sb_x<QT>(xq, xd, xs, xo, xv, xdv, xsv);
                x_at = xo;
            }
            gemv_sb_sum<QT>(stage, cur, g, xv, xdv, xsv, red, y);
        }
        if (tn >= g.total)
            break;
        cur = nxt;
        t = tn;
    }
}

// The copy path (cp.async, sm_80 and later; a plain copy before): the spans go straight
// from global to shared memory (no registers held for them), S of them in flight per warp
// in a ring of S stages; a span is summed once its group has landed, and its stage takes
// the span S steps ahead.
#ifndef GEMV_SB_CP_ASYNC
__device__ __forceinline__ void gemv_sb_cp16(int4 *dst, const int4 *src)
{
#if __CUDA_ARCH__ >= 800
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
#else
    *dst = __ldcs(src);
#endif
}
__device__ __forceinline__ void gemv_sb_cp_commit()
{
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void gemv_sb_cp_wait()
{
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}
#define GEMV_SB_CP_ASYNC 1
#endif

template <int QT>
__device__ __forceinline__ void gemv_sb_issue(int4 *stage, const gemv_sb_span s, int lane)
{
    constexpr int C = QT == 4 ? 9 : 17;
#pragma unroll
    for (int i = 0; i < C; i++)
        if (lane + 32 * i < s.n16)
            gemv_sb_cp16(stage + lane + 32 * i, s.src + lane + 32 * i);
    gemv_sb_cp_commit(); // a group per span, empty or not: the wait counts groups
}

template <int QT, int S>
__device__ void gemv_sba(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                         const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                         long long row_fault, long long w_rows, kval *v)
{
    constexpr int C = QT == 4 ? 9 : 17;
    extern __shared__ int4 gemv_sb_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    int4 *ring = gemv_sb_smem + warp * S * 32 * C;
    float *red = (float *)(gemv_sb_smem + nw * S * 32 * C) + warp * 32;
    const gemv_sb_geo g = gemv_sb_geometry<QT>(nrows, ncols, n_jobs, nw);
    long long t = (long long)blockIdx.x * nw + warp;
    if (t >= g.total)
        return;
    // The spans' sources are recomputed where they are summed (cheap with 32-bit index
    // math) rather than kept: an array of them indexed by the ring slot would live in
    // local memory.
#pragma unroll
    for (int k = 0; k < S; k++) {
        const long long tk = t + k * g.step;
        gemv_sb_span s;
        s.n16 = 0;
        if (tk < g.total)
            s = gemv_sb_at<QT>(tk, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
        gemv_sb_issue<QT>(ring + k * 32 * C, s, lane);
    }
    int xv[64];
    float xdv[8];
    int xsv[8];
    long long x_at = -1;
    gemv_sb_span cur = gemv_sb_at<QT>(t, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
    if (cur.n16 > 0) {
        x_at = (long long)cur.job * x_stride + (long long)g.my_sb * 8;
        gemv_sb_x<QT>(xq, xd, xs, x_at, xv, xdv, xsv);
    }
    int slot = 0;
    while (true) {
        int4 *stage = ring + slot * 32 * C;
        gemv_sb_cp_wait<S - 1>(); // span t's group (the oldest) has landed
        __syncwarp();
        if (cur.n16 > 0) {
            const long long xo = (long long)cur.job * x_stride + (long long)g.my_sb * 8;
            if (xo != x_at) {
                gemv_sb_x<QT>(xq, xd, xs, xo, xv, xdv, xsv);
                x_at = xo;
            }
            gemv_sb_sum<QT>(stage, cur, g, xv, xdv, xsv, red, y);
        }
        __syncwarp(); // every lane has read the stage
        const long long tn = t + S * g.step;
        gemv_sb_span s;
        s.n16 = 0;
        if (tn < g.total)
            s = gemv_sb_at<QT>(tn, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
        gemv_sb_issue<QT>(stage, s, lane);
        t += g.step;
        if (t >= g.total)
            break;
        cur = gemv_sb_at<QT>(t, w, nrows, g.row_bytes, g.rpi, g.gpj, ids, n_expert, row_fault, w_rows, v);
        slot = slot + 1 == S ? 0 : slot + 1;
    }
    gemv_sb_cp_wait<0>();
}

#define GEMV_SB_KERNEL(name, QT, LD)                                                                                 \
    extern "C" __global__ void __launch_bounds__(256)                                                               \
        name(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,          \
             const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y, long long row_fault,  \
             long long w_rows, kval *v)                                                                             \
    {                                                                                                               \
        gemv_sb<QT, LD>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v);     \
    }
#define GEMV_SBA_KERNEL(name, QT, S)                                                                                 \
    extern "C" __global__ void __launch_bounds__(256)                                                               \
        name(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,          \
             const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y, long long row_fault,  \
             long long w_rows, kval *v)                                                                             \
    {                                                                                                               \
        gemv_sba<QT, S>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v);     \
    }

// The CUDA kernels of amxdiag's hybrid path.  Plain CUDA C++, every entry point
// extern "C" so that the host side (kern_cuda.c, through cuModuleGetFunction) finds them
// by a stable name.  Block formats are ggml's: Q4_0 = fp16 d + 16 bytes (element j in the
// low nibble of byte j, j+16 in the high nibble, x = d*(q-8)); Q8_0 = fp16 d + 32 int8.
//
// Every kernel that indexes memory with data-dependent values takes a `kval *` (NULL =
// no checking): with --gpu-validate it records the first bad index there and skips the
// access instead of faulting.  Rows always run on grid.x with grid-stride loops, so row
// counts beyond 65,535 (the grid.y limit) work.
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

// Must match struct kern_cuda_valrec in kern_cuda.c.
struct kval {
    unsigned int flag;
    int op;
    long long index;
    long long limit;
    long long pos;
};

enum { OP_GET_ROWS = 1, OP_GEMV = 2, OP_MOE_GEMV = 3, OP_GEMM = 4, OP_MOE_ROW = 5 };

__device__ __forceinline__ void kval_report(kval *v, int op, long long index, long long limit, long long pos)
{
    if (atomicCAS(&v->flag, 0u, 1u) == 0u) {
        v->op = op;
        v->index = index;
        v->limit = limit;
        v->pos = pos;
        __threadfence();
    }
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over a block of blockDim.x (multiple of 32, <= 1024) threads; all threads get it.
__device__ float block_sum(float x)
{
    __shared__ float part[32];
    __shared__ float total;
    x = warp_sum(x);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        part[warp] = x;
    __syncthreads();
    if (warp == 0) {
        float y = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
        y = warp_sum(y);
        if (lane == 0)
            total = y;
    }
    __syncthreads();
    float r = total;
    __syncthreads();
    return r;
}

__device__ float block_max(float x)
{
    __shared__ float part[32];
    __shared__ float total;
    x = warp_max(x);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        part[warp] = x;
    __syncthreads();
    if (warp == 0) {
        float y = lane < (int)(blockDim.x >> 5) ? part[lane] : -INFINITY;
        y = warp_max(y);
        if (lane == 0)
            total = y;
    }
    __syncthreads();
    float r = total;
    __syncthreads();
    return r;
}

__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((unsigned)h << 16); }

// ---- GET_ROWS ----------------------------------------------------------------------
// blockIdx.x strides over the ids; threads over the columns (or blocks of 32 columns).

__device__ __forceinline__ bool get_rows_id(const int *ids, long long i, long long nrows, kval *v, long long *row)
{
    long long r = ids[i];
    if (v && (r < 0 || r >= nrows)) {
        kval_report(v, OP_GET_ROWS, r, nrows, i);
        return false;
    }
    *row = r;
    return true;
}

extern "C" __global__ void kern_get_rows_f32(const float *src, long long nrows, long long ncols, const int *ids,
                                             long long n_ids, float *dst, kval *v)
{
    for (long long i = blockIdx.x; i < n_ids; i += gridDim.x) {
        long long r;
        if (!get_rows_id(ids, i, nrows, v, &r))
            continue;
        const float *s = src + r * ncols;
        float *d = dst + i * ncols;
        if ((ncols & 3) == 0) {
            const float4 *s4 = (const float4 *)s;
            float4 *d4 = (float4 *)d;
            for (long long c = threadIdx.x; c < ncols / 4; c += blockDim.x)
                d4[c] = __ldg(s4 + c);
        } else {
            for (long long c = threadIdx.x; c < ncols; c += blockDim.x)
                d[c] = __ldg(s + c);
        }
    }
}

extern "C" __global__ void kern_get_rows_f16(const uint16_t *src, long long nrows, long long ncols, const int *ids,
                                             long long n_ids, float *dst, kval *v)
{
    for (long long i = blockIdx.x; i < n_ids; i += gridDim.x) {
        long long r;
        if (!get_rows_id(ids, i, nrows, v, &r))
            continue;
        const uint16_t *s = src + r * ncols;
        float *d = dst + i * ncols;
        if ((ncols & 3) == 0) {
            for (long long c = threadIdx.x; c < ncols / 4; c += blockDim.x) {
                uint2 q = __ldg((const uint2 *)s + c);
                float4 o = make_float4(f16_bits_to_f32(q.x & 0xffff), f16_bits_to_f32(q.x >> 16),
                                       f16_bits_to_f32(q.y & 0xffff), f16_bits_to_f32(q.y >> 16));
                ((float4 *)d)[c] = o;
            }
        } else {
            for (long long c = threadIdx.x; c < ncols; c += blockDim.x)
                d[c] = f16_bits_to_f32(s[c]);
        }
    }
}

extern "C" __global__ void kern_get_rows_bf16(const uint16_t *src, long long nrows, long long ncols, const int *ids,
                                              long long n_ids, float *dst, kval *v)
{
    for (long long i = blockIdx.x; i < n_ids; i += gridDim.x) {
        long long r;
        if (!get_rows_id(ids, i, nrows, v, &r))
            continue;
        const uint16_t *s = src + r * ncols;
        float *d = dst + i * ncols;
        if ((ncols & 3) == 0) {
            for (long long c = threadIdx.x; c < ncols / 4; c += blockDim.x) {
                uint2 q = __ldg((const uint2 *)s + c);
                float4 o = make_float4(__uint_as_float(q.x << 16), __uint_as_float(q.x & 0xffff0000u),
                                       __uint_as_float(q.y << 16), __uint_as_float(q.y & 0xffff0000u));
                ((float4 *)d)[c] = o;
            }
        } else {
            for (long long c = threadIdx.x; c < ncols; c += blockDim.x)
                d[c] = bf16_bits_to_f32(s[c]);
        }
    }
}

// Quantized rows: one thread per (block of 32, quarter); each writes 8 floats as 2 float4.
template <int QT>
__device__ void get_rows_q(const uint8_t *src, long long nrows, long long ncols, const int *ids, long long n_ids,
                           float *dst, kval *v)
{
    const int bsz = QT == 4 ? 18 : 34;
    const long long nb = ncols / 32;
    for (long long i = blockIdx.x; i < n_ids; i += gridDim.x) {
        long long r;
        if (!get_rows_id(ids, i, nrows, v, &r))
            continue;
        const uint8_t *s = src + r * nb * bsz;
        float *d = dst + i * ncols;
        for (long long t = threadIdx.x; t < nb * 4; t += blockDim.x) {
            const long long b = t >> 2;
            const int part = (int)(t & 3);
            const uint8_t *blk = s + b * bsz;
            const float scale = f16_bits_to_f32(*(const uint16_t *)blk);
            float o[8];
            if (QT == 4) {
                // part 0/1: elements 8p..8p+7 = low nibbles of bytes 8p..; part 2/3: high nibbles.
                const int byte0 = (part & 1) * 8;
                const int hi = part >> 1;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    int q = blk[2 + byte0 + j];
                    q = hi ? (q >> 4) : (q & 15);
                    o[j] = scale * (float)(q - 8);
                }
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++)
                    o[j] = scale * (float)(int8_t)blk[2 + part * 8 + j];
            }
            float4 *d4 = (float4 *)(d + b * 32 + part * 8);
            d4[0] = make_float4(o[0], o[1], o[2], o[3]);
            d4[1] = make_float4(o[4], o[5], o[6], o[7]);
        }
    }
}

extern "C" __global__ void kern_get_rows_q4_0(const uint8_t *src, long long nrows, long long ncols, const int *ids,
                                              long long n_ids, float *dst, kval *v)
{
    get_rows_q<4>(src, nrows, ncols, ids, n_ids, dst, v);
}

extern "C" __global__ void kern_get_rows_q8_0(const uint8_t *src, long long nrows, long long ncols, const int *ids,
                                              long long n_ids, float *dst, kval *v)
{
    get_rows_q<8>(src, nrows, ncols, ids, n_ids, dst, v);
}

// ---- Activation quantization for the dp4a GEMV -----------------------------------------
// x (n_blocks*32 floats) -> qs int8[n*32], d float[n], s int[n] (sum of qs, for Q4_0's -8).
// One warp per block of 32.  Exactly the CPU's (and ggml's) q8_0 rounding: the step is
// amax/127 kept in f16, q = round-half-away(x * (1/step)).  With the same int8 values the
// dot products are the CPU's integer sums; only the f32 order of the block sums differs.
__device__ __forceinline__ int q8_0_round(float xv, float amax, float *d16)
{
    const float dd = amax / 127.0f;
    const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    *d16 = __half2float(__float2half_rn(dd));
    return (int)roundf(xv * id);
}

// A warp's 32 consecutive values (block b, lane = position) quantised as kern_quantize_q8
// does, for the ops that produce a GEMV's input and quantise it on the way out (their
// kernel_cuda_*_q8 variants): the same values and steps, one launch fewer per GEMV.
// Every lane of the warp calls it.
struct q8_out {
    int8_t *qs;
    float *d;
    int *s;
};
__device__ __forceinline__ void q8_store(const q8_out &o, long long b, float xv)
{
    const int lane = threadIdx.x & 31;
    const float amax = warp_max(fabsf(xv));
    float d16;
    const int q = q8_0_round(xv, amax, &d16);
    o.qs[b * 32 + lane] = (int8_t)q;
    const float sum = warp_sum((float)q);
    if (lane == 0) {
        o.d[b] = d16;
        o.s[b] = (int)sum;
    }
}

extern "C" __global__ void kern_quantize_q8(const float *x, long long n_blocks, int8_t *qs, float *d, int *s)
{
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long b = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); b < n_blocks; b += warps) {
        const float xv = x[b * 32 + lane];
        const float amax = warp_max(fabsf(xv));
        float d16;
        const int q = q8_0_round(xv, amax, &d16);
        qs[b * 32 + lane] = (int8_t)q;
        const float sum = warp_sum((float)q);
        if (lane == 0) {
            d[b] = d16;
            s[b] = (int)sum;
        }
    }
}

// The GEMM's activations for Q4_0/Q8_0 weights: x rounded to q8_0 as above (the values
// every CPU path and the GPU GEMV multiply), then to f16 for the tensor cores
// (q * step, one f16 rounding).  Converting x straight to f16 instead made a prompt's
// keys and values differ from the CPU's by a q8 step, which later greedy tokens showed.
// CTA `cta` of `ctas` doing this work (a kernel of its own, or a part of the two-pass GEMM's
// prologue, kern_gemm_prologue_*).
__device__ __forceinline__ void f32_to_f16_q8(const float *x, __half *y, long long n_blocks, long long cta,
                                              long long ctas)
{
    const int lane = threadIdx.x & 31;
    const long long warps = ctas * (blockDim.x >> 5);
    for (long long b = cta * (blockDim.x >> 5) + (threadIdx.x >> 5); b < n_blocks; b += warps) {
        const float xv = x[b * 32 + lane];
        const float amax = warp_max(fabsf(xv));
        float d16;
        const int q = q8_0_round(xv, amax, &d16);
        y[b * 32 + lane] = __float2half_rn((float)q * d16);
    }
}
extern "C" __global__ void kern_f32_to_f16_q8(const float *x, __half *y, long long n_blocks)
{
    f32_to_f16_q8(x, y, n_blocks, blockIdx.x, gridDim.x);
}

// ---- Q4_0 / Q8_0 GEMV (and the grouped expert GEMV) ---------------------------------------
// One warp per output row.  When a row is 16-byte aligned and fits, the warp first copies
// it into shared memory with coalesced 128-bit loads (the blocks themselves are only
// 2-byte aligned), then each lane takes blocks lane, lane+32, ...  Dot products use dp4a
// on the activations quantized above.
#define GEMV_WARPS 4
#define GEMV_STAGE 4608 // bytes of one staged row: Q4_0 K <= 8192, Q8_0 K <= 4096

template <int QT>
__device__ __forceinline__ float gemv_block_dot(const uint8_t *blk, const int8_t *xq, float xd, int xs)
{
    // Blocks are 2-byte aligned: 16-bit loads (9 or 17 per block) keep shared-memory
    // bank conflicts low and never misalign.
    const uint16_t *b16 = (const uint16_t *)blk;
    const float dw = f16_bits_to_f32(b16[0]);
    const int4 *x4 = (const int4 *)xq;
    const int4 xa = __ldg(x4), xb = __ldg(x4 + 1);
    const int xv[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
    int sumi = 0;
    if (QT == 4) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int q = (int)b16[1 + 2 * i] | ((int)b16[2 + 2 * i] << 16);
            sumi = __dp4a(q & 0x0F0F0F0F, xv[i], sumi);
            sumi = __dp4a((q >> 4) & 0x0F0F0F0F, xv[4 + i], sumi);
        }
        return dw * xd * (float)(sumi - 8 * xs);
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = (int)b16[1 + 2 * i] | ((int)b16[2 + 2 * i] << 16);
            sumi = __dp4a(q, xv[i], sumi);
        }
        return dw * xd * (float)sumi;
    }
}

// w: n_expert matrices of nrows x ncols; ids (NULL = expert 0 for the single job);
// n_jobs jobs, each nrows outputs; x_stride: blocks of activations between jobs (0 = shared).
// row_fault: rows added to every row index (fault injection; 0 normally); w_rows: rows
// the allocation holds, for validation.
template <int QT>
__device__ void gemv_q(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                       const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                       long long row_fault, long long w_rows, kval *v)
{
    __shared__ __align__(16) uint8_t stage[GEMV_WARPS][GEMV_STAGE];
    const int bsz = QT == 4 ? 18 : 34;
    const long long nb = ncols / 32;
    const long long row_bytes = nb * bsz;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool staged = (row_bytes & 15) == 0 && row_bytes <= GEMV_STAGE && ((uintptr_t)w & 15) == 0;
    const long long total = (long long)n_jobs * nrows;
    for (long long t = (long long)blockIdx.x * GEMV_WARPS + warp; t < total; t += (long long)gridDim.x * GEMV_WARPS) {
        const int job = (int)(t / nrows);
        const long long r = t % nrows;
        long long e = 0;
        if (ids) {
            e = ids[job];
            if (e < 0 || e >= n_expert) {
                if (v) {
                    kval_report(v, OP_MOE_GEMV, e, n_expert, job);
                    continue;
                }
            }
        }
        const long long wr = e * nrows + r + row_fault;
        if (v && (wr < 0 || wr >= w_rows)) {
            kval_report(v, ids ? OP_MOE_ROW : OP_GEMV, wr, w_rows, r);
            continue;
        }
        const uint8_t *row = w + wr * row_bytes;
        const long long xo = (long long)job * x_stride;
        float acc = 0.0f;
        if (staged) {
            const int4 *src = (const int4 *)row;
            int4 *dst = (int4 *)stage[warp];
            for (long long c = lane; c < row_bytes / 16; c += 32)
                dst[c] = __ldcs(src + c); // streamed: the weights are read once
            __syncwarp();
            for (long long b = lane; b < nb; b += 32)
                acc += gemv_block_dot<QT>(stage[warp] + b * bsz, xq + (xo + b) * 32, xd[xo + b], xs[xo + b]);
            __syncwarp();
        } else {
            for (long long b = lane; b < nb; b += 32)
                acc += gemv_block_dot<QT>(row + b * bsz, xq + (xo + b) * 32, xd[xo + b], xs[xo + b]);
        }
        acc = warp_sum(acc);
        if (lane == 0)
            y[(long long)job * nrows + r] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_gemv_q4_0(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                   const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y, long long row_fault,
                   long long w_rows, kval *v)
{
    gemv_q<4>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v);
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_gemv_q8_0(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                   const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y, long long row_fault,
                   long long w_rows, kval *v)
{
    gemv_q<8>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v);
}

// The same GEMV with up to 4 consecutive rows per warp iteration (experimental,
// kern_cuda_set_gemv_rows): consecutive rows are contiguous, so the warp streams
// R * row_bytes in one go and keeps R times more bytes in flight — what Q4_0's short rows
// (1152 bytes at K = 2048) lack.  The host uses it only when R rows fit the stage and
// rows are 16-byte aligned.
template <int QT>
__device__ void gemv_q_mr(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert,
                          int n_jobs, const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                          long long row_fault, long long w_rows, kval *v, int R)
{
    __shared__ __align__(16) uint8_t stage[GEMV_WARPS][GEMV_STAGE];
    const int bsz = QT == 4 ? 18 : 34;
    const long long nb = ncols / 32;
    const long long row_bytes = nb * bsz;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long gpj = (nrows + R - 1) / R; // row groups per job
    const long long total = (long long)n_jobs * gpj;
    for (long long t = (long long)blockIdx.x * GEMV_WARPS + warp; t < total; t += (long long)gridDim.x * GEMV_WARPS) {
        const int job = (int)(t / gpj);
        const long long r0 = (t % gpj) * R;
        const int nr = (int)(nrows - r0 < R ? nrows - r0 : R);
        long long e = 0;
        if (ids) {
            e = ids[job];
            if (v && (e < 0 || e >= n_expert)) {
                kval_report(v, OP_MOE_GEMV, e, n_expert, job);
                continue;
            }
        }
        const long long wr = e * nrows + r0 + row_fault;
        if (v && (wr < 0 || wr + nr > w_rows)) {
            const long long bad = (wr < 0 || wr >= w_rows) ? wr : w_rows;
            kval_report(v, ids ? OP_MOE_ROW : OP_GEMV, bad, w_rows, r0 + (bad - wr));
            continue;
        }
        const int4 *src = (const int4 *)(w + wr * row_bytes);
        int4 *dst = (int4 *)stage[warp];
        const long long n16 = nr * row_bytes / 16;
        for (long long c = lane; c < n16; c += 32)
            dst[c] = __ldcs(src + c);
        __syncwarp();
        const long long xo = (long long)job * x_stride;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (j < nr) { // nr is the same in every lane
                float acc = 0.0f;
                for (long long b = lane; b < nb; b += 32)
                    acc += gemv_block_dot<QT>(stage[warp] + (j * nb + b) * bsz, xq + (xo + b) * 32, xd[xo + b],
                                              xs[xo + b]);
                acc = warp_sum(acc);
                if (lane == 0)
                    y[(long long)job * nrows + r0 + j] = acc;
            }
        }
        __syncwarp();
    }
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_gemv_q4_0_mr(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                      const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                      long long row_fault, long long w_rows, kval *v, int rows_per_warp)
{
    gemv_q_mr<4>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v, rows_per_warp);
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_gemv_q8_0_mr(const uint8_t *w, long long nrows, long long ncols, const int *ids, int n_expert, int n_jobs,
                      const int8_t *xq, const float *xd, const int *xs, long long x_stride, float *y,
                      long long row_fault, long long w_rows, kval *v, int rows_per_warp)
{
    gemv_q_mr<8>(w, nrows, ncols, ids, n_expert, n_jobs, xq, xd, xs, x_stride, y, row_fault, w_rows, v, rows_per_warp);
}

// The GEMV by super-blocks of 8 blocks (16-byte loads throughout, a persistent grid on
// request): kern_gemv_sb.cuh says why and how; kern_cuda_gemv.c picks between it and the
// row kernels above.  "n": the weights through ld.global.nc.L1::no_allocate.L2::256B;
// "a2"/"a3": through cp.async into a ring of 2 or 3 stages per warp.
#include "kern_gemv_sb.cuh"
GEMV_SB_KERNEL(kern_gemv_q4_0_sb, 4, 0)
GEMV_SB_KERNEL(kern_gemv_q8_0_sb, 8, 0)
GEMV_SB_KERNEL(kern_gemv_q4_0_sbn, 4, 1)
GEMV_SB_KERNEL(kern_gemv_q8_0_sbn, 8, 1)
// The same with the spans copied by cp.async into a ring of 2 or 3 stages per warp.
GEMV_SBA_KERNEL(kern_gemv_q4_0_sba2, 4, 2)
GEMV_SBA_KERNEL(kern_gemv_q8_0_sba2, 8, 2)
GEMV_SBA_KERNEL(kern_gemv_q4_0_sba3, 4, 3)
GEMV_SBA_KERNEL(kern_gemv_q8_0_sba3, 8, 3)

// ---- Prompt GEMM on tensor cores ----------------------------------------------------------
// C[r, n] = sum_k W[r, k] X[n, k], stored as Y[n * m + r].  W (Q4_0, Q8_0 or F16) is
// dequantized to f16 in shared memory one 32-wide k block at a time; X was converted to
// f16 beforehand.  Block tile 128 (rows) x 64 (tokens), 8 warps of 32 x 32, WMMA 16x16x16
// f16 -> f32 (sm_70+, so every target).  Double-buffered: while the tensor cores work on
// one k block, the next one's loads are in flight in registers.
#define GM_BM 128
#define GM_BN 64
#define GM_BK 32
#define GM_PAD 8

template <int WT> // 4 = Q4_0, 8 = Q8_0, 16 = F16
__device__ __forceinline__ void gemm_load_w(const uint8_t *w, long long m, long long k, long long r0, long long kb,
                                            uint32_t out[8])
{
    // 256 threads x 16 elements = 128 rows x 32: thread t takes row t/2, half (t&1).
    const int t = threadIdx.x;
    const long long r = r0 + (t >> 1);
    const int half = t & 1;
    if (r >= m) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            out[i] = 0;
        return;
    }
    if (WT == 16) {
        const uint4 *p = (const uint4 *)((const uint16_t *)w + r * k + kb * 32 + half * 16);
        const uint4 a = __ldg(p), b = __ldg(p + 1);
        out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
        out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
        return;
    }
    const int bsz = WT == 4 ? 18 : 34;
    const uint8_t *blk = w + (r * (k / 32) + kb) * bsz;
    const __half d = __ushort_as_half((uint16_t)blk[0] | ((uint16_t)blk[1] << 8));
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float lo, hi;
        if (WT == 4) {
            // elements half*16 + 2i, +1: half 0 = low nibbles of bytes 2i, 2i+1; half 1 = high.
            const int b0 = blk[2 + 2 * i], b1 = blk[3 + 2 * i];
            lo = (float)((half ? b0 >> 4 : b0 & 15) - 8);
            hi = (float)((half ? b1 >> 4 : b1 & 15) - 8);
        } else {
            lo = (float)(int8_t)blk[2 + half * 16 + 2 * i];
            hi = (float)(int8_t)blk[3 + half * 16 + 2 * i];
        }
        __half2 h = __hmul2(__floats2half2_rn(lo, hi), __halves2half2(d, d));
        out[i] = *(uint32_t *)&h;
    }
}

template <int WT>
__device__ void gemm_f16(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    using namespace nvcuda;
    __shared__ __align__(32) __half ws[GM_BM][GM_BK + GM_PAD];
    __shared__ __align__(32) __half xs[GM_BN][GM_BK + GM_PAD];
    __shared__ __align__(32) float cs[8][16 * 16];
    const int warp = threadIdx.x >> 5;
    const int wr = warp >> 1, wc = warp & 1; // 4 x 2 warps of 32 x 32
    const long long nkb = k / 32;
    const long long tiles_m = (m + GM_BM - 1) / GM_BM, tiles_n = (n + GM_BN - 1) / GM_BN;
    for (long long tile = blockIdx.x; tile < tiles_m * tiles_n; tile += gridDim.x) {
        const long long r0 = (tile % tiles_m) * GM_BM, n0 = (tile / tiles_m) * GM_BN;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::fill_fragment(acc[i][j], 0.0f);
        uint32_t wreg[8];
        uint4 xreg;
        // X tile: 64 tokens x 32 halves = 256 threads x 8 halves.
        const int xt = threadIdx.x >> 2, xq = threadIdx.x & 3;
        auto load_x = [&](long long kb) {
            const long long tok = n0 + xt;
            xreg = tok < n ? __ldg((const uint4 *)(x + tok * k + kb * 32 + xq * 8)) : make_uint4(0, 0, 0, 0);
        };
        gemm_load_w<WT>(w, m, k, r0, 0, wreg);
        load_x(0);
        for (long long kb = 0; kb < nkb; kb++) {
            __syncthreads();
            uint32_t *wdst = (uint32_t *)&ws[threadIdx.x >> 1][(threadIdx.x & 1) * 16];
#pragma unroll
            for (int i = 0; i < 8; i++)
                wdst[i] = wreg[i];
            *(uint4 *)&xs[xt][xq * 8] = xreg;
            __syncthreads();
            if (kb + 1 < nkb) {
                gemm_load_w<WT>(w, m, k, r0, kb + 1, wreg);
                load_x(kb + 1);
            }
#pragma unroll
            for (int kk = 0; kk < GM_BK; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[2];
#pragma unroll
                for (int i = 0; i < 2; i++)
                    wmma::load_matrix_sync(a[i], &ws[wr * 32 + i * 16][kk], GM_BK + GM_PAD);
#pragma unroll
                for (int j = 0; j < 2; j++)
                    wmma::load_matrix_sync(b[j], &xs[wc * 32 + j * 16][kk], GM_BK + GM_PAD);
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 2; j++)
                        wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
            }
        }
        // Store through shared memory so that edges are bounds-checked and Y is written
        // along r (contiguous).
        const int lane = threadIdx.x & 31;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                wmma::store_matrix_sync(cs[warp], acc[i][j], 16, wmma::mem_col_major);
                __syncwarp();
                for (int e = lane; e < 256; e += 32) {
                    const long long rr = r0 + wr * 32 + i * 16 + (e & 15);
                    const long long nn = n0 + wc * 32 + j * 16 + (e >> 4);
                    if (rr < m && nn < n)
                        y[nn * m + rr] = cs[warp][e];
                }
                __syncwarp();
            }
    }
}

extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_q4_0(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16<4>(w, m, k, x, n, y);
}
extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_q8_0(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16<8>(w, m, k, x, n, y);
}
extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_f16(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16<16>(w, m, k, x, n, y);
}

// GEMM with 64-wide k stages (experimental, kern_cuda_set_gemm_bk): the one-device-run
// profile of the kernel above is latency-bound (one 32-wide stage of loads in flight
// covers ~8 MMAs per warp); two quant blocks per stage double the work per round trip and
// the bytes in flight.  Same tiles (128 x 64), same store path.  A k tail of one quant
// block is zero-filled.
#define GM2_BK 64

// One whole quant block (32 elements) of row r, block kb, as 16 half2 (zeros past m or k).
template <int WT>
__device__ __forceinline__ void gemm2_load_w(const uint8_t *w, long long m, long long k, long long r, long long kb,
                                             uint32_t out[16])
{
    if (r >= m || kb >= k / 32) {
#pragma unroll
        for (int i = 0; i < 16; i++)
            out[i] = 0;
        return;
    }
    if (WT == 16) {
        const uint4 *p = (const uint4 *)((const uint16_t *)w + r * k + kb * 32);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const uint4 a = __ldg(p + q);
            out[4 * q] = a.x, out[4 * q + 1] = a.y, out[4 * q + 2] = a.z, out[4 * q + 3] = a.w;
        }
        return;
    }
    const int bsz = WT == 4 ? 18 : 34;
    const uint16_t *b16 = (const uint16_t *)(w + (r * (k / 32) + kb) * bsz);
    const __half d = __ushort_as_half(__ldg(b16));
    const __half2 d2 = __halves2half2(d, d);
    if (WT == 4) {
        uint16_t q[8];
#pragma unroll
        for (int i = 0; i < 8; i++)
            q[i] = __ldg(b16 + 1 + i); // bytes 2i (low half), 2i+1 (high half)
#pragma unroll
        for (int i = 0; i < 8; i++) {
            // elements 2i, 2i+1: low nibbles of bytes 2i, 2i+1; elements 16+2i, 17+2i: high nibbles
            const int b0 = q[i] & 0xff, b1 = q[i] >> 8;
            __half2 lo = __hmul2(__floats2half2_rn((float)((b0 & 15) - 8), (float)((b1 & 15) - 8)), d2);
            __half2 hi = __hmul2(__floats2half2_rn((float)((b0 >> 4) - 8), (float)((b1 >> 4) - 8)), d2);
            out[i] = *(uint32_t *)&lo;
            out[8 + i] = *(uint32_t *)&hi;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const uint16_t q = __ldg(b16 + 1 + i); // elements 2i, 2i+1
            __half2 h = __hmul2(__floats2half2_rn((float)(int8_t)(q & 0xff), (float)(int8_t)(q >> 8)), d2);
            out[i] = *(uint32_t *)&h;
        }
    }
}

template <int WT>
__device__ void gemm_f16_bk64(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    using namespace nvcuda;
    __shared__ __align__(32) __half ws[GM_BM][GM2_BK + GM_PAD];
    __shared__ __align__(32) __half xs[GM_BN][GM2_BK + GM_PAD];
    __shared__ __align__(32) float cs[8][16 * 16];
    const int warp = threadIdx.x >> 5;
    const int wr = warp >> 1, wc = warp & 1;
    const long long nkb = k / 32;
    const long long nstage = (nkb + 1) / 2;
    const long long tiles_m = (m + GM_BM - 1) / GM_BM, tiles_n = (n + GM_BN - 1) / GM_BN;
    // W: thread t takes row t/2, quant block (t&1) of the stage; X: token t/4, 16 halves
    // at (t&3)*16 of the stage.
    const int wrow = threadIdx.x >> 1, wblk = threadIdx.x & 1;
    const int xt = threadIdx.x >> 2, xq = threadIdx.x & 3;
    for (long long tile = blockIdx.x; tile < tiles_m * tiles_n; tile += gridDim.x) {
        const long long r0 = (tile % tiles_m) * GM_BM, n0 = (tile / tiles_m) * GM_BN;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::fill_fragment(acc[i][j], 0.0f);
        uint32_t wreg[16];
        uint4 xreg[2];
        auto load = [&](long long st) {
            gemm2_load_w<WT>(w, m, k, r0 + wrow, st * 2 + wblk, wreg);
            const long long tok = n0 + xt;
            const long long kb = st * 2 + (xq >> 1); // the quant block these 16 halves are in
            if (tok < n && kb < nkb) {
                const uint4 *p = (const uint4 *)(x + tok * k + st * GM2_BK + xq * 16);
                xreg[0] = __ldg(p);
                xreg[1] = __ldg(p + 1);
            } else {
                xreg[0] = xreg[1] = make_uint4(0, 0, 0, 0);
            }
        };
        load(0);
        for (long long st = 0; st < nstage; st++) {
            __syncthreads();
            uint32_t *wdst = (uint32_t *)&ws[wrow][wblk * 32];
#pragma unroll
            for (int i = 0; i < 16; i++)
                wdst[i] = wreg[i];
            *(uint4 *)&xs[xt][xq * 16] = xreg[0];
            *(uint4 *)&xs[xt][xq * 16 + 8] = xreg[1];
            __syncthreads();
            if (st + 1 < nstage)
                load(st + 1);
#pragma unroll
            for (int kk = 0; kk < GM2_BK; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[2];
#pragma unroll
                for (int i = 0; i < 2; i++)
                    wmma::load_matrix_sync(a[i], &ws[wr * 32 + i * 16][kk], GM2_BK + GM_PAD);
#pragma unroll
                for (int j = 0; j < 2; j++)
                    wmma::load_matrix_sync(b[j], &xs[wc * 32 + j * 16][kk], GM2_BK + GM_PAD);
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 2; j++)
                        wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
            }
        }
        const int lane = threadIdx.x & 31;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                wmma::store_matrix_sync(cs[warp], acc[i][j], 16, wmma::mem_col_major);
                __syncwarp();
                for (int e = lane; e < 256; e += 32) {
                    const long long rr = r0 + wr * 32 + i * 16 + (e & 15);
                    const long long nn = n0 + wc * 32 + j * 16 + (e >> 4);
                    if (rr < m && nn < n)
                        y[nn * m + rr] = cs[warp][e];
                }
                __syncwarp();
            }
    }
}

extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_q4_0_bk64(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16_bk64<4>(w, m, k, x, n, y);
}
extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_q8_0_bk64(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16_bk64<8>(w, m, k, x, n, y);
}
extern "C" __global__ void __launch_bounds__(256)
    kern_gemm_f16_bk64(const uint8_t *w, long long m, long long k, const __half *x, long long n, float *y)
{
    gemm_f16_bk64<16>(w, m, k, x, n, y);
}

// ---- Prompt GEMM on int8 tensor cores (sm_80+) ------------------------------------------
// Y[tok, r] = sum_b dW[r, b] * dX[tok, b] * sum_{i < 32} qW[r, 32 b + i] * qX[tok, 32 b + i]:
// W Q4_0 or Q8_0 in ggml's layout, read as stored (no repacked copy of the weights); X the
// q8_0 activations of kern_quantize_q8 (int8 [n][k], f16-valued steps [n][k/32]).  A quant
// block is exactly the k of one mma.m16n8k32.s8, so its int32 result is the block's
// integer dot product, which is scaled in f32 registers the way the CPU reference does
// (kern_ref_gemm_q: t = sumi * dX rounded, acc = fma(t, dW, acc), blocks in order): every
// output is the reference's float, bit for bit.
//
// CTA tile BM weight rows x BN tokens in one of the variants of kern_gemm_i8_map.h (warps
// of 32 x 64, 32 x 32 or 16 x 32; a warp does MT x NT MMAs per quant block, its MT A
// fragments shared by NT MMAs, each ldmatrix'd B pair by 2 MT).  Per result and block the
// scaling is two FMAs (GI8_ACC_BIAS).  k runs in stages of 4 quant blocks through a
// ring of `stages` shared-memory buffers filled with cp.async (layout: kern_gemm_i8_map.h):
// raw W bytes in 8-byte pieces (aligned = 1: k % 128 == 0 and an 8-byte aligned buffer),
// otherwise plain 2-byte loads into the same layout; X rows in 16-byte pieces, read back
// with ldmatrix; the X steps.  Rows past m, tokens past n and blocks past k are zero-filled.
// The grouped expert form (MOE) takes the tokens of a tile from kern_moe_sort's lists.
#include "kern_gemm_i8_map.h"

__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_async8(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 8 : 0));
}
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most n (0..3) groups are pending; n is the same in every thread.
__device__ __forceinline__ void cp_async_wait(int n)
{
    if (n <= 0)
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    else if (n == 1)
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    else if (n == 2)
        asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    else
        asm volatile("cp.async.wait_group 3;\n" ::: "memory");
}
__device__ __forceinline__ void ldsm_x4(unsigned r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
// f = a . b over one k step of 32 (one quant block) as floats: the accumulators start at
// GI8_ACC_BIAS_BITS, so f[i] is GI8_ACC_BIAS plus the block's integer dot product, exactly
// (the kernel folds the bias into its scaling: see GI8_ACC_BIAS in kern_gemm_i8_map.h).
__device__ __forceinline__ void mma_s8(float f[4], const unsigned a[4], const unsigned b[2])
{
    int c[4];
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(GI8_ACC_BIAS_BITS));
#pragma unroll
    for (int i = 0; i < 4; i++)
        f[i] = __int_as_float(c[i]);
}
#endif

// The dynamic shared memory of the int8 kernels (the emulator defines its own).
#define GI8_DYN_SMEM(name) extern __shared__ __align__(16) uint8_t name[]
#include "kern_gemm_i8.cuh"

// One kernel per weight type and tile variant (GI8_VARIANTS: kern_gemm_i8_q4_0_v2 is
// variant 2), registers bounded so that CPS CTAs fit an SM.
#define GI8_DENSE1(WT, Q, I, MT, NT, WM, WN, CPS)                                                                   \
    extern "C" __global__ void __launch_bounds__(32 * WM * WN, CPS)                                                \
        kern_gemm_i8_##Q##_v##I(const uint8_t *w, long long m, long long k, const int8_t *xq, const float *xd,       \
                                long long n, float *y, int stages, int aligned)                                    \
    {                                                                                                              \
        gemm_i8<WT, MT, NT, WM, WN, false>(w, m, k, xq, xd, n, y, stages, aligned, 1, nullptr, nullptr, 1);        \
    }
#define GI8_DENSE(I, MT, NT, WM, WN, CPS)                                                                          \
    GI8_DENSE1(4, q4_0, I, MT, NT, WM, WN, CPS) GI8_DENSE1(8, q8_0, I, MT, NT, WM, WN, CPS)
GI8_VARIANTS(GI8_DENSE)
#undef GI8_DENSE
#undef GI8_DENSE1

// Grouped expert matmul on the same tiles: n_expert matrices of m x k; CTA tile (expert,
// 64 rows), looping over that expert's tokens (kern_moe_sort's list) 64 at a time; the
// X row of a slot is slot / x_div, its Y row the slot.
#define GI8_MOE(NAME, WT)                                                                                          \
    extern "C" __global__ void __launch_bounds__(128, 3)                                                           \
        NAME(const uint8_t *w, long long m, long long k, const int8_t *xq, const float *xd, long long n_slots,     \
             float *y, int stages, int aligned, int n_expert, const int *off, const int *list, int x_div)          \
    {                                                                                                              \
        gemm_i8<WT, 2, 4, 2, 2, true>(w, m, k, xq, xd, n_slots, y, stages, aligned, n_expert, off, list, x_div);          \
    }
GI8_MOE(kern_moe_gemm_i8_q4_0, 4)
GI8_MOE(kern_moe_gemm_i8_q8_0, 8)
#undef GI8_MOE

// The grouped expert matmul by token tiles (GI8M_VARIANTS: kern_moe_gemm_i8_q4_0_g0 is
// tile 0): a CTA per (token tile of an expert, row tile), warps over rows only.
#define GI8M1(WT, Q, I, MT, NT, WM, CPS)                                                                            \
    extern "C" __global__ void __launch_bounds__(32 * WM, CPS)                                                     \
        kern_moe_gemm_i8_##Q##_g##I(const uint8_t *w, long long m, long long k, const int8_t *xq, const float *xd, \
                                    long long n_slots, float *y, int stages, int aligned, int n_expert,           \
                                    const int *off, const int *list, int x_div)                                   \
    {                                                                                                              \
        gemm_i8<WT, MT, NT, WM, 1, 2>(w, m, k, xq, xd, n_slots, y, stages, aligned, n_expert, off, list, x_div);  \
    }
#define GI8M(I, MT, NT, WM, CPS) GI8M1(4, q4_0, I, MT, NT, WM, CPS) GI8M1(8, q8_0, I, MT, NT, WM, CPS)
GI8M_VARIANTS(GI8M)
#undef GI8M
#undef GI8M1

// ---- Prompt GEMM on f16 tensor cores, weights dequantised in shared memory (sm_80+) ----
// kern_gemm_f16mma.cuh, layout and precision in kern_gemm_f16mma_map.h: the weights'
// raw blocks come in by cp.async as for the int8 kernel, are converted once per CTA and
// k stage to f16 (q d, one rounding), and a plain ldmatrix + mma.m16n8k16 loop multiplies
// them with the f16 activations (kern_f32_to_f16_q8's).  No per-block work in the inner
// loop; not bit-exact (the int8 kernel is).
#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ void mma_f16(float c[4], const unsigned a[4], const unsigned b[2])
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
// (h - magic) * d per half, each rounded to nearest: the exact integer q, then q d once.
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
// a k slice's partial sum into y (split-K; the result is not read back, so RED.ADD)
__device__ __forceinline__ void gf_red_add(float *p, float v) { atomicAdd(p, v); }
// four of them at a 16-byte aligned address: one RED.ADD.V4 on sm_90 (each element is still
// added on its own, so two slices stay order-independent)
__device__ __forceinline__ void gf_red_add4(float *p, const float v[4])
{
#if __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4 *>(p), make_float4(v[0], v[1], v[2], v[3]));
#else
    for (int i = 0; i < 4; i++)
        atomicAdd(p + i, v[i]);
#endif
}
__device__ __forceinline__ void gf_ld4f(const float *p, float v[4])
{
    const float4 t = *reinterpret_cast<const float4 *>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
}
// one STG.128 (a float4 assignment came out as four 4-byte stores at sm_90)
__device__ __forceinline__ void gf_st4f(float *p, const float v[4])
{
    asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3])
                 : "memory");
}
#define GF_DYN_SMEM(name) extern __shared__ __align__(16) uint8_t name[]
#include "kern_gemm_f16mma.cuh"

// One kernel per weight type and variant (GF_VARIANTS: kern_gemm_f16mma_q4_0_v0 ...).
#define GF_DENSE1(WT, Q, I, MT, NT, WM, WN, CPS, KB)                                                                \
    extern "C" __global__ void __launch_bounds__(32 * WM * WN, CPS)                                                 \
        kern_gemm_f16mma_##Q##_v##I(const uint8_t *w, long long m, long long k, const uint16_t *x, long long n,      \
                                    float *y, int slots, int flags, int ksplit, long long ldy)                      \
    {                                                                                                               \
        gemm_f16mma<WT, MT, NT, WM, WN, KB>(w, m, k, x, n, y, slots, flags, ksplit, ldy);                           \
    }
// f16 weights (WT 16, kern_gemm_f16mma_f16_v<I>): W pieces straight into the slot, no conversion
#define GF_DENSE(I, MT, NT, WM, WN, CPS, KB)                                                                        \
    GF_DENSE1(4, q4_0, I, MT, NT, WM, WN, CPS, KB) GF_DENSE1(8, q8_0, I, MT, NT, WM, WN, CPS, KB)                    \
    GF_DENSE1(16, f16, I, MT, NT, WM, WN, CPS, KB)
GF_VARIANTS(GF_DENSE)
#undef GF_DENSE
#undef GF_DENSE1

#include "kern_dequant.cuh"
// y[0 .. count) = 0 by CTA `cta` of `ctas` (kern_zero_f32, or a part of the two-pass GEMM's
// prologue)
__device__ __forceinline__ void zero_f32(float *y, long long count, long long cta, long long ctas)
{
    for (long long i = cta * blockDim.x + threadIdx.x; i < count; i += ctas * blockDim.x)
        y[i] = 0.0f;
}
extern "C" __global__ void __launch_bounds__(DQ_THREADS) kern_dequant_q4_0_f16(const uint8_t *w, long long n_blocks,
                                                                                __half *out)
{
    dequant_f16<4>(w, n_blocks, out, blockIdx.x, gridDim.x);
}
extern "C" __global__ void __launch_bounds__(DQ_THREADS) kern_dequant_q8_0_f16(const uint8_t *w, long long n_blocks,
                                                                                __half *out)
{
    dequant_f16<8>(w, n_blocks, out, blockIdx.x, gridDim.x);
}
// The two-pass GEMM's first launch: three independent jobs in one grid, so that they share
// the memory system instead of running one after another, each with its launch gap and its
// tail (attn_o: the weights' 26 MB, X's 12 MB, y's 4 MB).  CTAs [0, w_ctas) turn the first
// slab's weights to f16, the next x_ctas round X to q8_0 and then f16 (kern_f32_to_f16_q8's
// work), the rest zero y for split-K (y_count floats; none where 0).
template <int WT>
__device__ void gemm_prologue(const uint8_t *w, long long n_blocks, __half *wout, long long w_ctas, const float *x,
                              long long x_blocks, __half *xh, long long x_ctas, float *y, long long y_count)
{
    const long long b = blockIdx.x;
    if (b < w_ctas) {
        dequant_f16<WT>(w, n_blocks, wout, b, w_ctas);
    } else if (b < w_ctas + x_ctas) {
        f32_to_f16_q8(x, xh, x_blocks, b - w_ctas, x_ctas);
    } else {
        zero_f32(y, y_count, b - w_ctas - x_ctas, gridDim.x - w_ctas - x_ctas);
    }
}
extern "C" __global__ void __launch_bounds__(DQ_THREADS)
    kern_gemm_prologue_q4_0(const uint8_t *w, long long n_blocks, __half *wout, long long w_ctas, const float *x,
                            long long x_blocks, __half *xh, long long x_ctas, float *y, long long y_count)
{
    gemm_prologue<4>(w, n_blocks, wout, w_ctas, x, x_blocks, xh, x_ctas, y, y_count);
}
extern "C" __global__ void __launch_bounds__(DQ_THREADS)
    kern_gemm_prologue_q8_0(const uint8_t *w, long long n_blocks, __half *wout, long long w_ctas, const float *x,
                            long long x_blocks, __half *xh, long long x_ctas, float *y, long long y_count)
{
    gemm_prologue<8>(w, n_blocks, wout, w_ctas, x, x_blocks, xh, x_ctas, y, y_count);
}

// y = 0 before a split-K GEMM adds its slices (every arch).
extern "C" __global__ void kern_zero_f32(float *y, long long count) { zero_f32(y, count, blockIdx.x, gridDim.x); }

// The MoE router in f32 (kern_gemm_f32.cuh): tiles for a prompt, a warp per output for a
// few tokens.  Every arch.
#include "kern_gemm_f32.cuh"

extern "C" __global__ void __launch_bounds__(GF32_THREADS)
    kern_gemm_f32(const float *w, long long m, long long k, const float *x, long long n, float *y, int splits,
                  long long ks)
{
    gemm_f32_tiles_split(w, m, k, x, n, y, splits, ks);
}

extern "C" __global__ void kern_gemm_f32_sum(const float *part, int splits, long long count, float *y)
{
    gemm_f32_sum(part, splits, count, y);
}

extern "C" __global__ void __launch_bounds__(GF32_THREADS)
    kern_gemm_f32_few(const float *w, long long m, long long k, const float *x, long long n, float *y)
{
    gemm_f32_few(w, m, k, x, n, y);
}

extern "C" __global__ void kern_f32_to_f16(const float *x, __half *y, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

// The new keys or values of n_tok tokens, f32 [n_tok][row], into the f16 cache
// [pos][row] from row pos[0] on (read on the device, so that a CUDA graph's replay stores
// at the current position).
extern "C" __global__ void kern_kv_store(const float *x, __half *cache, const int *pos, long long row, long long n)
{
    __half *y = cache + (long long)pos[0] * row;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

// ---- MoE routing: softmax over the experts, top-k ------------------------------------------
// One warp routes one token: l its n_expert logits, p n_expert floats of shared memory;
// ids/weights its k outputs; ids_gu (optional) its 2k gate-and-up jobs: the k ids then
// the same ids + n_expert, for one grouped GEMV over the gate experts followed by the up
// experts in one buffer.
__device__ void route_token(const float *l, int n_expert, int k, int norm, int *ids, float *weights, int *ids_gu,
                            float *p)
{
    const int lane = threadIdx.x & 31;
    float mx = -INFINITY;
    for (int e = lane; e < n_expert; e += 32)
        mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int e = lane; e < n_expert; e += 32) {
        const float v = __expf(l[e] - mx);
        p[e] = v;
        sum += v;
    }
    sum = warp_sum(sum);
    __syncwarp();
    float wsum = 0.0f, mine = 0.0f;
    int myid = 0;
    for (int j = 0; j < k; j++) {
        float best = -1.0f;
        int bi = 0x7fffffff;
        for (int e = lane; e < n_expert; e += 32)
            if (p[e] > best) // strict: the lowest index wins ties within a lane
                best = p[e], bi = e;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi))
                best = ob, bi = oi;
        }
        if (lane == j) {
            mine = best / sum;
            myid = bi;
        }
        wsum += best / sum;
        __syncwarp();
        if (lane == 0)
            p[bi] = -2.0f;
        __syncwarp();
    }
    if (lane < k) {
        ids[lane] = myid;
        weights[lane] = norm ? mine / wsum : mine;
        if (ids_gu) {
            ids_gu[lane] = myid;
            ids_gu[k + lane] = myid + n_expert;
        }
    }
    __syncwarp();
}

// One warp per token; logits in dynamic shared memory (n_expert floats per warp).
extern "C" __global__ void kern_moe_route(const float *logits, long long n, int n_expert, int k, int norm, int *ids,
                                          float *weights, int *ids_gu)
{
    extern __shared__ float probs[];
    float *p = probs + (threadIdx.x >> 5) * n_expert;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long t = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); t < n; t += warps)
        route_token(logits + t * n_expert, n_expert, k, norm, ids + t * k, weights + t * k,
                    ids_gu ? ids_gu + t * 2 * k : nullptr, p);
}

// A generated token's router and top-k in one launch: blocks of 2 warps, one logit per
// warp with gemm_f32_few's sums (lane i adds w[i] x[i], w[i+32] x[i+32], ... in order, the
// lanes' sums added in lane order: the same logits).  A lane loads 32 of its weights
// before it adds them: one warp per logit on a few SMs with a load at a time read the
// router at ~200 GB/s (6.4 us a token on the H200); spread over n_expert / 2 blocks with
// 4 KB in flight per warp it is latency, not bandwidth.  The last block to finish (a
// counter, which it resets for the next launch or graph replay) routes the token with
// route_token: kern_gemm_f32_few's and kern_moe_route's results in one launch.  Dynamic
// shared memory: 2 * n_expert floats.
#define RT_WARPS 2
#define RT_CHUNK 32
extern "C" __global__ void __launch_bounds__(RT_WARPS * 32)
    kern_router_topk(const float *w, const float *x, long long k, int n_expert, int topk, int norm, float *logits,
                     int *ids, float *weights, int *ids_gu, unsigned *counter)
{
    __shared__ float part[RT_WARPS][33];
    __shared__ bool last;
    extern __shared__ float sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int o = blockIdx.x * RT_WARPS + warp;
    float acc = 0.0f;
    if (o < n_expert) {
        const float *wr = w + (long long)o * k;
        for (long long i0 = lane; i0 < k; i0 += 32 * RT_CHUNK) {
            float wv[RT_CHUNK], xv[RT_CHUNK];
#pragma unroll
            for (int j = 0; j < RT_CHUNK; j++) {
                const long long i = i0 + 32 * j;
                wv[j] = i < k ? wr[i] : 0.0f;
                xv[j] = i < k ? x[i] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < RT_CHUNK; j++)
                if (i0 + 32 * j < k)
                    acc = fmaf(wv[j], xv[j], acc);
        }
    }
    part[warp][lane] = acc;
    __syncthreads();
    if (lane == 0 && o < n_expert) {
        float s = 0.0f;
        for (int j = 0; j < 32; j++)
            s += part[warp][j];
        logits[o] = s;
    }
    __threadfence(); // the logits are visible before the count says so
    __syncthreads();
    if (threadIdx.x == 0)
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last)
        return;
    __threadfence(); // acquire: the other blocks' logits are read after their counts
    float *l = sm + n_expert;
    for (int e = threadIdx.x; e < n_expert; e += blockDim.x)
        l[e] = __ldcg(logits + e); // from L2: other blocks wrote them
    __syncthreads();
    if (threadIdx.x == 0)
        *counter = 0;
    if (warp == 0)
        route_token(l, n_expert, topk, norm, ids, weights, ids_gu, sm);
}

// ---- Elementwise and row ops -------------------------------------------------------------

// Row r of y = xr * rsqrt(ss / d + eps) * w, ss the row's sum of squares (block_sum'd),
// and when q8 is given (d % 32 == 0) quantised for the GEMV that reads it (q8_store): a
// warp's 32 consecutive c are one block.
__device__ __forceinline__ void norm_out(const float *xr, const float *w, float *y, long long r, long long d, float ss,
                                         float eps, const q8_out &q8)
{
    const float s = rsqrtf(ss / (float)d + eps);
    for (long long c = threadIdx.x; c < d; c += blockDim.x) {
        const float v = xr[c] * s * w[c];
        y[r * d + c] = v;
        if (q8.qs)
            q8_store(q8, (r * d + c) >> 5, v);
    }
}

extern "C" __global__ void kern_rmsnorm(const float *x, const float *w, float *y, long long n, long long d, float eps,
                                        q8_out q8)
{
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const float *xr = x + r * d;
        float ss = 0.0f;
        for (long long c = threadIdx.x; c < d; c += blockDim.x)
            ss += xr[c] * xr[c];
        ss = block_sum(ss);
        norm_out(xr, w, y, r, d, ss, eps, q8);
    }
}

// The residual add and the next RMSNorm in one pass: x += o, then y = rmsnorm(x) * w.  Per
// thread the same additions, squares and order as kern_add then kern_rmsnorm (block of
// 256), so the results are theirs bit for bit; one launch instead of two.
extern "C" __global__ void kern_add_rmsnorm(float *x, const float *o, const float *w, float *y, long long n, long long d,
                                            float eps, q8_out q8)
{
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        float *xr = x + r * d;
        const float *orow = o + r * d;
        float ss = 0.0f;
        for (long long c = threadIdx.x; c < d; c += blockDim.x) {
            const float v = xr[c] + orow[c];
            xr[c] = v;
            ss += v * v;
        }
        ss = block_sum(ss);
        norm_out(xr, w, y, r, d, ss, eps, q8);
    }
}

// After the Q/K/V projections of n_tok tokens, one block (256 threads) per head row:
// Q: RMSNorm (q_norm) and NeoX RoPE in place; K: the same with k_norm, then f16 into the K
// cache at row pos[t]; V: f16 into the V cache at row pos[t].  kern_rmsnorm's,
// kern_rope_neox's and kern_kv_store's arithmetic (the norm's sums over the same block),
// so the results are theirs bit for bit; one launch instead of six.  q, k, v: [n_tok]
// rows of n_head*hd, n_kv*hd, n_kv*hd floats; hd even and <= 256.
extern "C" __global__ void __launch_bounds__(256)
    kern_qkv_post(float *q, float *k, const float *v, const float *q_norm, const float *k_norm, const int *pos,
                  __half *kc, __half *vc, long long n_tok, int n_head, int n_kv, int hd, float eps, float base)
{
    __shared__ float row[256];
    const int per_tok = n_head + 2 * n_kv, half = hd / 2;
    const long long kvd = (long long)n_kv * hd;
    for (long long r = blockIdx.x; r < n_tok * per_tok; r += gridDim.x) {
        const long long t = r / per_tok;
        const int j = (int)(r % per_tok);
        const long long p = pos[t];
        if (j >= n_head + n_kv) { // V: straight into the cache
            const float *vr = v + t * kvd + (long long)(j - n_head - n_kv) * hd;
            __half *dst = vc + p * kvd + (long long)(j - n_head - n_kv) * hd;
            for (int c = threadIdx.x; c < hd; c += blockDim.x)
                dst[c] = __float2half_rn(vr[c]);
            continue;
        }
        const bool is_q = j < n_head;
        float *xr = is_q ? q + t * (long long)n_head * hd + (long long)j * hd : k + t * kvd + (long long)(j - n_head) * hd;
        const float *w = is_q ? q_norm : k_norm;
        float ss = 0.0f;
        for (int c = threadIdx.x; c < hd; c += blockDim.x)
            ss += xr[c] * xr[c];
        ss = block_sum(ss);
        const float s = rsqrtf(ss / (float)hd + eps);
        for (int c = threadIdx.x; c < hd; c += blockDim.x)
            row[c] = xr[c] * s * w[c];
        __syncthreads();
        for (int i = threadIdx.x; i < half; i += blockDim.x) {
            const float theta = (float)p * powf(base, -2.0f * (float)i / (float)hd);
            float sn, cs;
            sincosf(theta, &sn, &cs);
            const float x0 = row[i], x1 = row[i + half];
            const float y0 = x0 * cs - x1 * sn, y1 = x0 * sn + x1 * cs;
            if (is_q) {
                xr[i] = y0;
                xr[i + half] = y1;
            } else {
                __half *dst = kc + p * kvd + (long long)(j - n_head) * hd;
                dst[i] = __float2half_rn(y0);
                dst[i + half] = __float2half_rn(y1);
            }
        }
        __syncthreads();
    }
}

// NeoX: pairs (i, i + hd/2) rotate by pos * base^(-2i/hd).
extern "C" __global__ void kern_rope_neox(float *x, const int *pos, long long n_tok, int n_head, int hd, float base)
{
    const long long half = hd / 2;
    const long long total = n_tok * n_head * half;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t % half;
        const long long th = t / half; // token * n_head + head
        const long long tok = th / n_head;
        const float theta = (float)pos[tok] * powf(base, -2.0f * (float)i / (float)hd);
        float s, c;
        sincosf(theta, &s, &c);
        float *v = x + th * hd;
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c - x1 * s;
        v[i + half] = x0 * s + x1 * c;
    }
}

extern "C" __global__ void kern_softmax(float *x, long long n, long long d, float scale)
{
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        float *xr = x + r * d;
        float mx = -INFINITY;
        for (long long c = threadIdx.x; c < d; c += blockDim.x)
            mx = fmaxf(mx, xr[c] * scale);
        mx = block_max(mx);
        float sum = 0.0f;
        for (long long c = threadIdx.x; c < d; c += blockDim.x) {
            const float e = __expf(xr[c] * scale - mx);
            xr[c] = e;
            sum += e;
        }
        sum = block_sum(sum);
        const float inv = 1.0f / sum;
        for (long long c = threadIdx.x; c < d; c += blockDim.x)
            xr[c] *= inv;
    }
}

// Attention, GQA: one block per (token, query head); each warp walks positions w, w+W, ...
// with an online softmax, then the warps' partial states are merged.  hd % 32 == 0,
// hd <= 256.  Every thread of the block calls this with the same arguments.
// W warps: 4 for the prompt's blocks (one per token and head, many blocks), 32 for a
// generated token's (one block per head: the positions are the only parallelism, and
// each warp's walk waits on a load per position).
#define ATT_WARPS 4
#define ATT_DEC_WARPS 32
template <int W>
__device__ __forceinline__ void attn_head(const float *qh, const __half *kc, const __half *vc, float *oh, int kvh,
                                          int n_kv_head, int hd, long long n_kv, float scale, float *sm_m,
                                          float *sm_l, float (*sm_acc)[256], const q8_out *q8 = nullptr,
                                          long long q8_block = 0)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int per = hd / 32;
    float qv[8], acc[8];
    _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per) {
        qv[i] = qh[lane + 32 * i];
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (long long p = warp; p < n_kv; p += W) {
        const long long base = (p * n_kv_head + kvh) * hd;
        float s = 0.0f;
        _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per)
            s += qv[i] * __half2float(kc[base + lane + 32 * i]);
        s = warp_sum(s) * scale;
        const float mn = fmaxf(m, s);
        const float corr = __expf(m - mn), e = __expf(s - mn);
        l = l * corr + e;
        _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per)
            acc[i] = acc[i] * corr + e * __half2float(vc[base + lane + 32 * i]);
        m = mn;
    }
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
    _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per)
        sm_acc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    if (warp == 0) {
        float gm = -INFINITY;
        for (int w2 = 0; w2 < W; w2++)
            gm = fmaxf(gm, sm_m[w2]);
        float gl = 0.0f;
        float o[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int w2 = 0; w2 < W; w2++) {
            if (sm_m[w2] == -INFINITY)
                continue;
            const float c = __expf(sm_m[w2] - gm);
            gl += sm_l[w2] * c;
            _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per)
                o[i] += sm_acc[w2][lane + 32 * i] * c;
        }
        _Pragma("unroll") for (int i = 0; i < 8; i++) if (i < per) {
            const float v = gl > 0.0f ? o[i] / gl : 0.0f;
            oh[lane + 32 * i] = v;
            if (q8)
                q8_store(*q8, q8_block + i, v); // the head's block i: lanes are its 32 values
        }
    }
    __syncthreads();
}

// Decode: one query token over the first n_kv positions, or, when pos is given, over
// positions 0 .. pos[0] (the token's position read on the device: a CUDA graph replays
// this launch at every position).
extern "C" __global__ void __launch_bounds__(ATT_DEC_WARPS * 32)
    kern_attention(const float *q, const __half *kc, const __half *vc, float *out, int n_head, int n_kv_head, int hd,
                   long long n_kv, const int *pos, float scale, q8_out q8)
{
    __shared__ float sm_m[ATT_DEC_WARPS], sm_l[ATT_DEC_WARPS];
    __shared__ float sm_acc[ATT_DEC_WARPS][256];
    if (pos)
        n_kv = (long long)pos[0] + 1;
    for (int h = blockIdx.x; h < n_head; h += gridDim.x)
        attn_head<ATT_DEC_WARPS>(q + (long long)h * hd, kc, vc, out + (long long)h * hd, h / (n_head / n_kv_head), n_kv_head, hd,
                  n_kv, scale, sm_m, sm_l, sm_acc, q8.qs ? &q8 : nullptr, (long long)h * hd / 32);
}

// Prompt: n_tok query tokens at positions pos0 .. pos0+n_tok-1 (their keys and values are
// already in the cache); token t sees positions 0 .. pos0+t (causal).  q and out are
// [n_tok][n_head][hd].
//
// Tiled: a block takes FA_Q consecutive tokens of one head, one warp per token.  The
// keys and values the block needs go through shared memory in tiles of FA_K positions,
// each read once for the FA_Q tokens (K transposed, so that lane j reads key j's
// dimension d next to lane j+1's); per tile a lane scores one key (its dot product over
// hd with the token's q, broadcast from shared memory), the warp's online softmax takes
// the tile at once (one max and one sum per 32 keys), and a lane accumulates hd/32 of
// the output's dimensions.  The per-(token, head) kernel this replaced walked every key
// per token and head from global memory, one warp-wide sum per key: 614 us a layer at
// 512 tokens on the H200, a third of the prompt's GPU time.
#define FA_Q 8
#define FA_K 32
extern "C" __global__ void __launch_bounds__(FA_Q * 32)
    kern_attention_causal(const float *q, const __half *kc, const __half *vc, float *out, int n_head, int n_kv_head,
                          int hd, long long n_tok, long long pos0, float scale)
{
    // Pairs of dimensions (half2): a key's score and a value's update take half the loads
    // and conversions; the sums run over d in the same order.
    __shared__ float2 sq[FA_Q][128];
    __shared__ __half2 skt[128][FA_K + 1]; // [d/2][key]: padded, the tile's stores spread over banks
    __shared__ __half2 sv[FA_K][128];      // [key][d/2]
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, h2 = hd / 2;
    const long long tiles = (n_tok + FA_Q - 1) / FA_Q;
    for (long long b = blockIdx.x; b < tiles * n_head; b += gridDim.x) {
        const int h = (int)(b % n_head), kvh = h / (n_head / n_kv_head);
        const long long t0 = (b / n_head) * FA_Q, t = t0 + warp;
        const bool valid = t < n_tok;
        const long long t_end = t0 + FA_Q < n_tok ? t0 + FA_Q : n_tok;
        const long long last = pos0 + t_end, mine = pos0 + t + 1; // keys < last for the block, < mine for this warp
        __syncthreads(); // the previous item's readers are done with sq
        const float2 *qr = (const float2 *)(q + (t * n_head + h) * (long long)hd);
        for (int d2 = lane; d2 < h2; d2 += 32)
            sq[warp][d2] = valid ? qr[d2] : make_float2(0.0f, 0.0f);
        float m = -INFINITY, l = 0.0f;
        float2 acc[4];
        _Pragma("unroll") for (int i = 0; i < 4; i++) acc[i] = make_float2(0.0f, 0.0f);
        for (long long k0 = 0; k0 < last; k0 += FA_K) {
            __syncthreads(); // the previous tile is consumed
            for (int j = warp; j < FA_K; j += FA_Q) { // a warp per key row, lanes along it
                const long long key = k0 + j;
                const long long off = (key * n_kv_head + kvh) * (long long)hd;
                const __half2 *kr = (const __half2 *)(kc + off), *vr = (const __half2 *)(vc + off);
                const __half2 zero = __float2half2_rn(0.0f);
                for (int d2 = lane; d2 < h2; d2 += 32) {
                    skt[d2][j] = key < last ? kr[d2] : zero;
                    sv[j][d2] = key < last ? vr[d2] : zero;
                }
            }
            __syncthreads();
            if (!valid || k0 >= mine)
                continue;
            const long long key = k0 + lane;
            float sc = -INFINITY;
            if (key < mine) {
                float dot = 0.0f;
#pragma unroll 8
                for (int d2 = 0; d2 < h2; d2++) {
                    const float2 kf = __half22float2(skt[d2][lane]), qf = sq[warp][d2];
                    dot = fmaf(qf.x, kf.x, dot);
                    dot = fmaf(qf.y, kf.y, dot);
                }
                sc = dot * scale;
            }
            const float mn = fmaxf(m, warp_max(sc));
            const float p = key < mine ? __expf(sc - mn) : 0.0f;
            const float corr = __expf(m - mn);
            l = l * corr + warp_sum(p);
            _Pragma("unroll") for (int i = 0; i < 4; i++) {
                acc[i].x *= corr;
                acc[i].y *= corr;
            }
            const int nk = mine - k0 < FA_K ? (int)(mine - k0) : FA_K;
            for (int j = 0; j < nk; j++) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                _Pragma("unroll") for (int i = 0; i < 4; i++) if (lane + 32 * i < h2) {
                    const float2 vf = __half22float2(sv[j][lane + 32 * i]);
                    acc[i].x = fmaf(pj, vf.x, acc[i].x);
                    acc[i].y = fmaf(pj, vf.y, acc[i].y);
                }
            }
            m = mn;
        }
        if (valid) {
            float2 *orow = (float2 *)(out + (t * n_head + h) * (long long)hd);
            _Pragma("unroll") for (int i = 0; i < 4; i++) if (lane + 32 * i < h2)
                orow[lane + 32 * i] = l > 0.0f ? make_float2(acc[i].x / l, acc[i].y / l) : make_float2(0.0f, 0.0f);
        }
    }
}

// ---- MoE over a batch of tokens ------------------------------------------------------------
// Routing-weighted sum of the expert outputs into the residual:
// x[t, c] += sum_j w[t, j] * y[t*k + j, c], j in order (as the CPU engine sums).
extern "C" __global__ void kern_moe_wsum(float *x, const float *y, const float *w, long long n_tok, int k, long long d)
{
    const long long total = n_tok * d;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / d, c = i % d;
        float acc = x[i];
        for (int j = 0; j < k; j++)
            acc += w[t * k + j] * y[(t * k + j) * d + c];
        x[i] = acc;
    }
}

__device__ __forceinline__ int warp_sum_int(int x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Groups the n_slots (token, slot) pairs by expert: list[off[e] .. off[e+1]) are the slots
// routed to expert e, in increasing slot order (deterministic, no atomics).  One warp per
// expert; each scans every id (n_slots is a ubatch times k: a few thousand).  Ids outside
// [0, n_expert) are left out (and recorded with --gpu-validate).
extern "C" __global__ void kern_moe_sort(const int *ids, long long n_slots, int n_expert, int *off, int *list, kval *v)
{
    const int lane = threadIdx.x & 31;
    for (int e = blockIdx.x; e < n_expert; e += gridDim.x) {
        int before = 0;
        for (long long s = lane; s < n_slots; s += 32) {
            const int id = ids[s];
            before += id >= 0 && id < e;
        }
        before = warp_sum_int(before);
        int n = 0;
        for (long long b0 = 0; b0 < n_slots; b0 += 32) {
            const long long s = b0 + lane;
            const int id = s < n_slots ? ids[s] : -1;
            if (v && e == 0 && s < n_slots && (id < 0 || id >= n_expert))
                kval_report(v, OP_MOE_GEMV, id, n_expert, s);
            const unsigned m = __ballot_sync(0xffffffffu, id == e);
            if (id == e)
                list[before + n + __popc(m & ((1u << lane) - 1u))] = (int)s;
            n += __popc(m);
        }
        if (lane == 0) {
            off[e] = before;
            if (e == n_expert - 1)
                off[n_expert] = before + n;
        }
    }
}

// Grouped expert matmul for a batch: y[slot, r] = sum_k W[e][r, k] * x[slot / x_div, k] for
// every slot routed to expert e (kern_moe_sort's lists).  One warp per (expert, row): the
// weight row is read from memory once (staged in shared memory like the GEMV) and reused
// for every token routed to that expert; experts no token chose are not read at all.
template <int QT>
__device__ void moe_gemm_q(const uint8_t *w, long long nrows, long long ncols, int n_expert, const int *off,
                           const int *list, int x_div, const int8_t *xq, const float *xd, const int *xs, float *y,
                           long long row_fault, long long w_rows, kval *v)
{
    __shared__ __align__(16) uint8_t stage[GEMV_WARPS][GEMV_STAGE];
    const int bsz = QT == 4 ? 18 : 34;
    const long long nb = ncols / 32;
    const long long row_bytes = nb * bsz;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool staged = (row_bytes & 15) == 0 && row_bytes <= GEMV_STAGE && ((uintptr_t)w & 15) == 0;
    const long long total = (long long)n_expert * nrows;
    for (long long t = (long long)blockIdx.x * GEMV_WARPS + warp; t < total; t += (long long)gridDim.x * GEMV_WARPS) {
        const int e = (int)(t / nrows);
        const long long r = t % nrows;
        const int s0 = off[e], s1 = off[e + 1];
        if (s0 >= s1)
            continue;
        const long long wr = (long long)e * nrows + r + row_fault;
        if (v && (wr < 0 || wr >= w_rows)) {
            kval_report(v, OP_MOE_ROW, wr, w_rows, r);
            continue;
        }
        const uint8_t *row = w + wr * row_bytes;
        if (staged) {
            const int4 *src = (const int4 *)row;
            int4 *dst = (int4 *)stage[warp];
            for (long long c = lane; c < row_bytes / 16; c += 32)
                dst[c] = __ldcs(src + c);
            __syncwarp();
            row = stage[warp];
        }
        for (int i = s0; i < s1; i++) {
            const int slot = list[i];
            const long long xo = (long long)(slot / x_div) * nb;
            float acc = 0.0f;
            for (long long b = lane; b < nb; b += 32)
                acc += gemv_block_dot<QT>(row + b * bsz, xq + (xo + b) * 32, xd[xo + b], xs[xo + b]);
            acc = warp_sum(acc);
            if (lane == 0)
                y[(long long)slot * nrows + r] = acc;
        }
        __syncwarp();
    }
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_moe_gemm_q4_0(const uint8_t *w, long long nrows, long long ncols, int n_expert, const int *off,
                       const int *list, int x_div, const int8_t *xq, const float *xd, const int *xs, float *y,
                       long long row_fault, long long w_rows, kval *v)
{
    moe_gemm_q<4>(w, nrows, ncols, n_expert, off, list, x_div, xq, xd, xs, y, row_fault, w_rows, v);
}

extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    kern_moe_gemm_q8_0(const uint8_t *w, long long nrows, long long ncols, int n_expert, const int *off,
                       const int *list, int x_div, const int8_t *xq, const float *xd, const int *xs, float *y,
                       long long row_fault, long long w_rows, kval *v)
{
    moe_gemm_q<8>(w, nrows, ncols, n_expert, off, list, x_div, xq, xd, xs, y, row_fault, w_rows, v);
}

// q8 (optional, n % 32 == 0): the output quantised for the GEMV that reads it; a warp's
// 32 consecutive i are one block (blocks of 256 threads, a stride of whole blocks).
extern "C" __global__ void kern_silu_mul(const float *g, const float *u, float *o, long long n, q8_out q8)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float x = g[i];
        const float v = x / (1.0f + __expf(-x)) * u[i];
        o[i] = v;
        if (q8.qs)
            q8_store(q8, i >> 5, v);
    }
}

extern "C" __global__ void kern_add(const float *a, const float *b, float *o, long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        o[i] = a[i] + b[i];
}

// The f32 GEMM of the MoE router (Y[n][m] = X[n][k] W[m][k]^T, weights, activations and
// sums in f32: the CPU's arithmetic up to the order of the sums).  The router picks the
// experts by comparing its logits, so it must not round what the CPU does not: with f16
// weights and activations (the f16 WMMA GEMM) its roundings moved the hidden state until
// a near-tie between the k-th and the next expert went the other way on the GPU, and that
// token's FFN output was another expert's (test_kern_engine's test_gpu_layers with the
// int8 GEMM, 0.69 per logit; test_kern_engine_gpu's test_int8_gemm_forced replays it).
// Included by kern_kernels.cu and
// by the host SIMT emulator (tests/unit/kern_cuda_gemm_simt.cc): only __syncthreads, no
// warp intrinsics, so that the emulator runs this very source.
#ifndef KERN_GEMM_F32_CUH
#define KERN_GEMM_F32_CUH

enum {
    GF32_T = 32,        // weight rows and tokens per tile
    GF32_BK = 64,       // k per shared-memory stage
    GF32_THREADS = 256, // threads per block of either kernel
    GF32_WARPS = 8,     // warps per block of the few-token kernel (the host takes it up to 4 tokens)
};

// Tiles of 32 rows x 32 tokens; thread (tr, tt) of 16 x 16 owns rows tr, tr + 16 and
// tokens tt, tt + 16.  Both operands are staged k-major with a padded row, so the
// coalesced stores (consecutive k) and the reads (one row or token per thread) are free of
// bank conflicts.
//
// splits > 1 (the router of a prompt: 128 rows x 512 tokens are only 64 tiles, each a
// chain of k / 64 dependent stages, 100 us on the H200): work item (tile, s) sums k in
// [s * ks, (s + 1) * ks) (ks a multiple of GF32_BK) into y + s * n * m; gemm_f32_sum then
// adds the splits in order.  splits == 1 is the plain tiled GEMM into y.
__device__ void gemm_f32_tiles_split(const float *w, long long m, long long k, const float *x, long long n, float *y,
                                     int splits, long long ks)
{
    __shared__ float ws[GF32_BK][GF32_T + 1];
    __shared__ float xs[GF32_BK][GF32_T + 1];
    const int tid = threadIdx.x, tr = tid & 15, tt = tid >> 4;
    const long long tiles_m = (m + GF32_T - 1) / GF32_T, tiles = tiles_m * ((n + GF32_T - 1) / GF32_T);
    for (long long item = blockIdx.x; item < tiles * splits; item += gridDim.x) {
        const long long tile = item % tiles, split = item / tiles;
        const long long r0 = (tile % tiles_m) * GF32_T, t0 = (tile / tiles_m) * GF32_T;
        const long long k_lo = split * ks, k_hi = k_lo + ks < k ? k_lo + ks : k;
        float *yo = y + split * n * m;
        float a00 = 0.0f, a01 = 0.0f, a10 = 0.0f, a11 = 0.0f; // [row tr, tr + 16][token tt, tt + 16]
        for (long long k0 = k_lo; k0 < k_hi; k0 += GF32_BK) {
            __syncthreads(); // everyone is done with the previous stage
            for (int c = tid; c < GF32_T * GF32_BK; c += GF32_THREADS) {
                const int i = c / GF32_BK, kk = c % GF32_BK;
                const bool kin = k0 + kk < k_hi;
                ws[kk][i] = kin && r0 + i < m ? w[(r0 + i) * k + k0 + kk] : 0.0f;
                xs[kk][i] = kin && t0 + i < n ? x[(t0 + i) * k + k0 + kk] : 0.0f;
            }
            __syncthreads();
            for (int kk = 0; kk < GF32_BK; kk++) {
                const float w0 = ws[kk][tr], w1 = ws[kk][tr + 16], x0 = xs[kk][tt], x1 = xs[kk][tt + 16];
                a00 = fmaf(w0, x0, a00);
                a01 = fmaf(w0, x1, a01);
                a10 = fmaf(w1, x0, a10);
                a11 = fmaf(w1, x1, a11);
            }
        }
        const long long ra = r0 + tr, rb = ra + 16, ta = t0 + tt, tb = ta + 16;
        if (ra < m && ta < n)
            yo[ta * m + ra] = a00;
        if (ra < m && tb < n)
            yo[tb * m + ra] = a01;
        if (rb < m && ta < n)
            yo[ta * m + rb] = a10;
        if (rb < m && tb < n)
            yo[tb * m + rb] = a11;
    }
}

__device__ void gemm_f32_tiles(const float *w, long long m, long long k, const float *x, long long n, float *y)
{
    gemm_f32_tiles_split(w, m, k, x, n, y, 1, k);
}

// y[i] = sum over s of part[s * count + i], s in order (deterministic).
__device__ void gemm_f32_sum(const float *part, int splits, long long count, float *y)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        float s = part[i];
        for (int j = 1; j < splits; j++)
            s += part[j * count + i];
        y[i] = s;
    }
}

// Few tokens: one warp per output y[o] (o = token * m + row), lanes over k (coalesced),
// the 32 partial sums added in lane order through shared memory.  Every thread runs the
// same number of iterations, so the block-wide barriers are safe.
__device__ void gemm_f32_few(const float *w, long long m, long long k, const float *x, long long n, float *y)
{
    __shared__ float part[GF32_WARPS][33];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long total = m * n;
    for (long long o0 = (long long)blockIdx.x * GF32_WARPS; o0 < total; o0 += (long long)gridDim.x * GF32_WARPS) {
        const long long o = o0 + warp;
        float acc = 0.0f;
        if (o < total) {
            const float *wr = w + (o % m) * k, *xt = x + (o / m) * k;
            for (long long i = lane; i < k; i += 32)
                acc = fmaf(wr[i], xt[i], acc);
        }
        part[warp][lane] = acc;
        __syncthreads();
        if (lane == 0 && o < total) {
            float s = 0.0f;
            for (int j = 0; j < 32; j++)
                s += part[warp][j];
            y[o] = s;
        }
        __syncthreads(); // part[] is reused by the next output
    }
}

#endif

// Shared by the int8 (kern_gemm_i8.cuh), f16-MMA (kern_gemm_f16mma.cuh) and wgmma
// (kern_gemm_wgmma.cuh) prompt GEMMs.
#ifndef KERN_GEMM_COPY_CUH
#define KERN_GEMM_COPY_CUH

// One k stage of raw ggml blocks by 2-byte loads, the path where cp.async cannot take
// them (k not a multiple of the stage, a weight buffer not 8- / 4-byte aligned): blocks
// kb0 .. kb0 + KB - 1 of weight rows r0 .. r0 + BM - 1 (w: the matrix's first row) to
// sb + row * WSTR + block * BSZ, zeros past row m or block nb, the CTA's THREADS threads
// taking (row, block) pairs in turn.
template <int BSZ, int BM, int KB, int WSTR, int THREADS>
__device__ __forceinline__ void gq_copy_blocks_2byte(uint8_t *sb, const uint8_t *w, long long r0, long long m,
                                                     long long kb0, long long nb, long long row_bytes, int tid)
{
    for (int c = tid; c < BM * KB; c += THREADS) {
        const int row = c / KB, bl = c % KB;
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

// One k stage of a thread's XIT 16-byte pieces of f16 X rows (kern_gemm_f16mma.cuh,
// kern_gemm_wgmma.cuh): piece it from src + it xstep (halves) to dst + it STEP (bytes),
// zeros where bit it of xok is clear (a token past n) or !kin (blocks past k).
template <int XIT, int STEP>
__device__ __forceinline__ void gq_copy_x_pieces(uint8_t *dst, const uint16_t *src, long long xstep,
                                                 const uint16_t *x, bool kin, unsigned xok)
{
#pragma unroll
    for (int it = 0; it < XIT; it++) {
        const bool ok = kin && ((xok >> it) & 1);
        cp_async16(dst + it * STEP, ok ? src : x, ok);
        src += xstep;
    }
}

#endif

// The two-pass prompt GEMM's first pass, device code (kern_cuda_ops.c gemm_dequant; the
// kernels in kern_kernels.cu).  Included by kern_kernels.cu after the primitives it uses
// (gf_sub_mul, GF_MAGIC_Q4 / GF_MAGIC_Q8 of kern_gemm_f16mma_map.h) and by the host SIMT
// emulator (tests/unit/kern_cuda_gemm_simt.cc), which supplies its own versions.
#ifndef KERN_DEQUANT_CUH
#define KERN_DEQUANT_CUH

// The two-pass prompt GEMM's first pass (kern_cuda_ops.c gemm_dequant): Q4_0 / Q8_0 weight
// blocks to f16, out[32 b + j] for block b of the (row-contiguous) weights.  The values are
// the fused kernels' own (gf_convert's arithmetic: the quant exactly in f16, times the
// block's f16 scale, one rounding), so the f16-weight GEMM that follows multiplies the same
// operands.  A thread makes 16 bytes of output, a quarter of a block (8 values), so that a
// warp's store writes 512 contiguous bytes; its 8 quant bytes come by 2-byte loads (a block
// of 18 / 34 bytes is 2-byte aligned).  DQ_ITEMS quarters per thread, a grid apart, with
// their loads issued before the first store.  (The first version, a thread per block
// through shared memory with 16-byte stores 64 bytes apart, ran at ~1.3 TB/s on the H100
// at attn_o.)
#define DQ_THREADS 256
#define DQ_ITEMS 4
template <int WT>
__device__ __forceinline__ uint4 dequant_quarter(const uint8_t *blk, int q)
{
    const unsigned dh = __ldg(reinterpret_cast<const uint16_t *>(blk));
    const unsigned d2 = dh | (dh << 16);
    // values 8q .. 8q + 7: Q8_0 bytes 8q ..; Q4_0 the low (q < 2) or high nibbles of bytes 8 (q & 1) ..
    const uint16_t *src = reinterpret_cast<const uint16_t *>(blk + 2 + 8 * (WT == 8 ? q : q & 1));
    unsigned x0 = __ldg(src) | ((unsigned)__ldg(src + 1) << 16), x1 = __ldg(src + 2) | ((unsigned)__ldg(src + 3) << 16);
    unsigned magic;
    if (WT == 8) {
        x0 ^= 0x80808080u; // q + 128 per byte
        x1 ^= 0x80808080u;
        magic = GF_MAGIC_Q8;
    } else {
        const int sh = q < 2 ? 0 : 4;
        x0 = (x0 >> sh) & 0x0F0F0F0Fu;
        x1 = (x1 >> sh) & 0x0F0F0F0Fu;
        magic = GF_MAGIC_Q4;
    }
    return make_uint4(gf_sub_mul(__byte_perm(x0, 0x64646464u, 0x4140u), magic, d2),
                      gf_sub_mul(__byte_perm(x0, 0x64646464u, 0x4342u), magic, d2),
                      gf_sub_mul(__byte_perm(x1, 0x64646464u, 0x4140u), magic, d2),
                      gf_sub_mul(__byte_perm(x1, 0x64646464u, 0x4342u), magic, d2));
}
template <int WT>
__device__ void dequant_f16(const uint8_t *w, long long n_blocks, __half *out, long long cta, long long ctas)
{
    constexpr int BSZ = WT == 4 ? 18 : 34;
    const long long nq = n_blocks * 4, stride = ctas * DQ_THREADS;
    for (long long i0 = cta * DQ_THREADS * DQ_ITEMS + threadIdx.x; i0 < nq; i0 += stride * DQ_ITEMS) {
        uint4 v[DQ_ITEMS];
#pragma unroll
        for (int it = 0; it < DQ_ITEMS; it++) {
            const long long i = i0 + it * (long long)DQ_THREADS;
            if (i < nq)
                v[it] = dequant_quarter<WT>(w + (i >> 2) * BSZ, (int)(i & 3));
        }
#pragma unroll
        for (int it = 0; it < DQ_ITEMS; it++) {
            const long long i = i0 + it * (long long)DQ_THREADS;
            if (i < nq)
                reinterpret_cast<uint4 *>(out)[i] = v[it];
        }
    }
}
#endif

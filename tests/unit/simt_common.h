// The parts of the CUDA surface every host SIMT emulator of a kernel source needs
// (kern_cuda_gemm_simt.cc, kern_cuda_gemv_simt.cc): the thread and block indices, f16 bits
// to f32 as the hardware converts them, and __byte_perm as the PTX ISA defines prmt.
#ifndef SIMT_COMMON_H
#define SIMT_COMMON_H

#include <cstdint>
#include <cstring>

struct sim_dim3 {
    unsigned x, y, z;
};
static thread_local sim_dim3 threadIdx;
static thread_local sim_dim3 blockIdx;
static sim_dim3 gridDim, blockDim;

static float sim_f16_bits_to_f32(uint16_t h)
{
    const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    uint32_t bits;
    if (e == 0 && m == 0)
        bits = s;
    else if (e == 0) { // subnormal: m * 2^-24
        float f = (float)m * 5.9604644775390625e-8f;
        return s ? -f : f;
    } else if (e == 31)
        bits = s | 0x7f800000u | (m << 13);
    else
        bits = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    const uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}

#endif

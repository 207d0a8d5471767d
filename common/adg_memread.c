#include "common/adg_memread.h"

#include <immintrin.h>

/* Why several streams: on the device machine's Emerald Rapids guest one stream per thread
 * read 100-128 GB/s with 16 threads, four to eight streams per thread 112-144 GB/s in the
 * same call (docs/PERFORMANCE.md, session 7); the token-generation GEMV reads four panels
 * side by side.  A ceiling below what a kernel reaches says nothing. */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const char *p, size_t bytes, size_t pf, int streams)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const size_t part = bytes / (size_t)streams / 256 * 256;
    for (size_t i = 0; i < part; i += 256) {
        for (int s = 0; s < streams; s++) {
            const char *q = p + (size_t)s * part + i;
            if (pf) { /* a loop-invariant test, predicted every time */
                for (int l = 0; l < 4; l++)
                    _mm_prefetch(q + pf + 64 * l, _MM_HINT_T0);
            }
            a0 = _mm512_xor_si512(a0, _mm512_load_si512(q));
            a1 = _mm512_xor_si512(a1, _mm512_load_si512(q + 64));
            a2 = _mm512_xor_si512(a2, _mm512_load_si512(q + 128));
            a3 = _mm512_xor_si512(a3, _mm512_load_si512(q + 192));
        }
    }
    for (size_t i = part * (size_t)streams; i + 64 <= bytes; i += 64)   /* the rest, one stream */
        a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    return (uint64_t)_mm512_reduce_or_epi64(a0);   /* OR: an add of the lanes could overflow (UB) */
}

static uint64_t read_scalar(const char *p, size_t bytes)
{
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= bytes / 8; i += 4) {
        s0 ^= q[i];
        s1 ^= q[i + 1];
        s2 ^= q[i + 2];
        s3 ^= q[i + 3];
    }
    for (; i < bytes / 8; i++)
        s0 ^= q[i];
    return s0 ^ s1 ^ s2 ^ s3;
}

uint64_t adg_memread(const void *p, size_t bytes, size_t pf, int streams, bool avx512)
{
    if (!avx512)
        return read_scalar(p, bytes);
    streams = streams < 1 ? 1 : streams > 64 ? 64 : streams;
    return read_avx512(p, bytes, pf, streams);
}

/* The row-scaled int8 tile GEMM (the experiment of amx_rowq.h).  Included by
 * amx_gemm_hw.c and amx_gemm_emu.c after amx_gemm.inc.c, so it shares their tile
 * configuration state: one thread-local record of the loaded configuration per symbol
 * set, or a kernel of one file would run on the other's tile shapes.
 *
 * tmm0/tmm1 = A (two 16-row tiles of 64 int8 of K), tmm2/tmm3 = B (two 16-output panels,
 * 16 rows of 4 k x 16 n), tmm4..tmm7 = the 2x2 block of int32 sums, accumulated by
 * TDPBSSD over the whole K: with one scale per row nothing has to leave the tiles before
 * the end of K.  The epilogue stores the four C tiles once and scales them. */

#include "kernels/amx/amx_rowq.h"

static inline __mmask16 AMX_SYM(rowq_nmask)(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* Lines of B ahead of the tile loads on the first pass over a panel pair (from memory). */
#define ROWQ_PF_CHUNKS 4

/* The 8 tile instructions of one K step of 64 for the 2x2 block. */
#define ROWQ_STEP(c)                                                 \
    do {                                                             \
        _tile_loadd(0, a0 + (c) * KERN_ROWQ_TILE, 64);               \
        _tile_loadd(2, b0 + (c) * KERN_ROWQ_TILE, 64);               \
        _tile_dpbssd(4, 0, 2);                                       \
        _tile_loadd(3, b1 + (c) * KERN_ROWQ_TILE, 64);               \
        _tile_dpbssd(5, 0, 3);                                       \
        _tile_loadd(1, a1 + (c) * KERN_ROWQ_TILE, 64);               \
        _tile_dpbssd(6, 1, 2);                                       \
        _tile_dpbssd(7, 1, 3);                                       \
    } while (0)

/* Loop order per worker: L2 blocks of A rows (mblock) > panel pairs > K blocks of kblock
 * steps (the whole K by default) > 32-row strips > K steps.  With K blocks the pair's B
 * chunk (2 KiB a step) is reused from L1 by every strip of the row block, and the strips'
 * int32 sums wait in scratch between blocks (4 KiB per strip): a knob for the device's
 * sweep, since a whole-K pass reads A and B from L2 (4 KiB per 4 TDPBSSD). */
static void AMX_SYM(rowq_gemm)(const kern_rowq_job *j)
{
    const kern_rowq_weight *w = j->w;
    const int64_t nc = w->nc;
    const int64_t kb = j->kblock > 0 && j->kblock < nc ? j->kblock : nc;
    const int64_t pfd = j->pf_l1;
    const size_t atile = (size_t)nc * KERN_ROWQ_TILE;   /* one 16-row strip of A */
    int32_t *cb = (int32_t *)j->scratch;                /* tmm4, tmm5, tmm6, tmm7 */
    int32_t *cacc = cb + 1024;                          /* K blocks: 4 tiles per strip */
    /* Every tile 16 rows x 64 bytes: the configuration the bf16 kernel loads (A: 16 x 64
     * int8, B: 16 rows of 4 k = 64 k, C: 16 x 16 int32). */
    AMX_SYM(configure)(CFG_BF16);
    for (int64_t mb = 0; mb < j->m; mb += j->mblock) {
        const int64_t me = mb + j->mblock < j->m ? mb + j->mblock : j->m;
        for (int64_t p = j->p0; p < j->p1; p += 2) {
            const bool two = p + 1 < j->p1;
            const uint8_t *b0 = j->wmat + (size_t)p * w->panel_bytes;
            const uint8_t *b1 = two ? b0 + w->panel_bytes : b0;   /* one panel: the second is discarded */
            const int64_t n = p * 16;
            const __m512 dw0 = _mm512_loadu_ps(j->dw + n);
            const __m512 dw1 = two ? _mm512_loadu_ps(j->dw + n + 16) : _mm512_setzero_ps();
            const __mmask16 nm0 = AMX_SYM(rowq_nmask)(w->n - n);
            const __mmask16 nm1 = two ? AMX_SYM(rowq_nmask)(w->n - n - 16) : 0;
            for (int64_t k0 = 0; k0 < nc; k0 += kb) {
                const int64_t k1 = k0 + kb < nc ? k0 + kb : nc;
                for (int64_t m0 = mb; m0 < me; m0 += 32) {
                    /* rows beyond m are zero in the A buffer (32-row padded): always 2 x 2 */
                    const int8_t *a0 = j->at + (size_t)(m0 / 16) * atile;
                    const int8_t *a1 = a0 + atile;
                    int32_t *cs = cacc + (m0 - mb) / 32 * 1024;
                    if (k0 == 0) {
                        _tile_zero(4);
                        _tile_zero(5);
                        _tile_zero(6);
                        _tile_zero(7);
                    } else {
                        _tile_loadd(4, cs, 64);
                        _tile_loadd(5, cs + 256, 64);
                        _tile_loadd(6, cs + 512, 64);
                        _tile_loadd(7, cs + 768, 64);
                    }
                    if (pfd) {   /* every tile line of step c + pfd into L1 (tile loads from L2 stall) */
                        for (int64_t c = k0; c < k1; c++) {
                            const size_t o = (size_t)(c + pfd < nc ? c + pfd : c) * KERN_ROWQ_TILE;
                            AMX_SYM(prefetch)((const uint8_t *)a0 + o, KERN_ROWQ_TILE);
                            AMX_SYM(prefetch)((const uint8_t *)a1 + o, KERN_ROWQ_TILE);
                            AMX_SYM(prefetch)(b0 + o, KERN_ROWQ_TILE);
                            if (two)
                                AMX_SYM(prefetch)(b1 + o, KERN_ROWQ_TILE);
                            if (m0 == mb) {
                                AMX_SYM(prefetch)(b0 + (size_t)(c + ROWQ_PF_CHUNKS) * KERN_ROWQ_TILE, KERN_ROWQ_TILE);
                                if (two)
                                    AMX_SYM(prefetch)(b1 + (size_t)(c + ROWQ_PF_CHUNKS) * KERN_ROWQ_TILE, KERN_ROWQ_TILE);
                            }
                            ROWQ_STEP(c);
                        }
                    } else if (m0 == mb) {   /* the first strip reads the pair's B from memory */
                        for (int64_t c = k0; c < k1; c++) {
                            AMX_SYM(prefetch)(b0 + (size_t)(c + ROWQ_PF_CHUNKS) * KERN_ROWQ_TILE, KERN_ROWQ_TILE);
                            if (two)
                                AMX_SYM(prefetch)(b1 + (size_t)(c + ROWQ_PF_CHUNKS) * KERN_ROWQ_TILE, KERN_ROWQ_TILE);
                            ROWQ_STEP(c);
                        }
                    } else {
                        for (int64_t c = k0; c < k1; c++)
                            ROWQ_STEP(c);
                    }
                    if (k1 < nc) {
                        _tile_stored(4, cs, 64);
                        _tile_stored(5, cs + 256, 64);
                        _tile_stored(6, cs + 512, 64);
                        _tile_stored(7, cs + 768, 64);
                        continue;
                    }
                    _tile_stored(4, cb, 64);
                    _tile_stored(5, cb + 256, 64);
                    _tile_stored(6, cb + 512, 64);
                    _tile_stored(7, cb + 768, 64);
                    __asm__ volatile("" ::: "memory");   /* the loads below read what the tile stores wrote */
                    const int rows = me - m0 >= 32 ? 32 : (int)(me - m0);
                    for (int r = 0; r < rows; r++) {
                        const int64_t i = m0 + r;
                        float *y = j->y + (j->yrow ? j->yrow[i] : i) * j->ldy + n;
                        const __m512 da = _mm512_set1_ps(j->da[i]);
                        const int32_t *cr = cb + (r >= 16 ? 512 : 0) + (r & 15) * 16;
                        const __m512 v0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cr)), da), dw0);
                        _mm512_mask_storeu_ps(y, nm0, v0);
                        if (nm1) {
                            const __m512 v1 =
                                _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cr + 256)), da), dw1);
                            _mm512_mask_storeu_ps(y + 16, nm1, v1);
                        }
                    }
                }
            }
        }
    }
}
#undef ROWQ_STEP

/* d = amax/127, q = RNE(x/d) clamped to +-127: VDIVPS and VCVTPS2DQ round as the scalar
 * division and lrintf do, so the bytes equal kern_rowq_quant_row_ref's. */
static void AMX_SYM(rowq_quant_row)(const float *x, int64_t k, int64_t k_pad, int8_t *dst, float *d)
{
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    /* |x| first: VMAXPS returns its second operand when one is NaN, so a NaN input is
     * skipped as the scalar reference's `a > mx ? a : mx` skips it */
    __m512 mx = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16)
        mx = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(x + i), absm), mx);
    if (i < k)
        mx = _mm512_max_ps(_mm512_and_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (k - i)) - 1), x + i), absm), mx);
    const float amax = _mm512_reduce_max_ps(mx);
    const float dd = amax / 127.0f;
    *d = dd;
    const __m512 vd = _mm512_set1_ps(dd);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (i = 0; i < k_pad; i += 16) {
        int8_t *o = dst + (i / 64) * KERN_ROWQ_TILE + i % 64;
        if (dd == 0.0f || i >= k) {
            _mm_storeu_si128((__m128i *)o, _mm_setzero_si128());
            continue;
        }
        const __mmask16 km = k - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - i)) - 1);
        __m512i q = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(km, x + i), vd));
        q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
        _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(q));
    }
}

/* Prompt attention on BF16 tiles.  Included after amx_gemm.inc.c by amx_gemm_hw.c (real
 * tiles) and amx_gemm_emu.c (emulator); same work item as the AVX-512 block kernel
 * (kern_avx512_attn_block): the query rows of one KV head for a block of tokens, keys in
 * blocks of KERN_FA_BK with an online softmax.
 *
 * Per key block: S = Q K^T with TDPBF16PS (A = Q rows in bf16, pre-scaled, 16 rows x 32 d;
 * B = 32 d x 16 keys as d pairs), the mask and the online softmax in AVX-512 over rows of
 * S (fp32), P rounded to bf16 as A tiles, O += P V (B = 32 keys as pairs x 16 d) stored
 * to memory, where AVX-512 applies the row's rescale factor.  Tile usage: tmm0 = A,
 * tmm1 = B, tmm2..tmm5 = C (every tile 16 rows x 64 bytes: the CFG_BF16 configuration).
 *
 * Numerics: Q (times scale), K, V and P are rounded to bf16, products accumulate in
 * fp32; the softmax itself (max, exp, sums) is fp32.  The default for prompts in amx
 * contexts (AMXDIAG_ATTN_KERNEL=flash opts out): its error is that of bf16 inputs
 * (docs/kernels.md), larger than the fp32 kernels', and checked teacher-forced against the
 * reference (test_kern_engine, `amxdiag run --greedy --compare ref`). */

#include <math.h>

#include "kernels/kern_avx512_math.h"

static inline void AMX_SYM(bf16_pair)(__m512 lo, __m512 hi, __m512i *out)
{
    /* 16 pairs (lo[i], hi[i]) as dwords: the VNNI order of a B tile row */
    const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
    const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
    *out = _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

/* In-place transpose of a 16 x 16 matrix of dwords (r[i] = row i). */
static inline void AMX_SYM(transpose16)(__m512i *r)
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4q + e], 128-bit lane L: element 4L + e of rows 4q .. 4q+3 */
    for (int e = 0; e < 4; e++) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44), x1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
        const __m512i y0 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
        const __m512i y1 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
        r[e] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        r[4 + e] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        r[8 + e] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        r[12 + e] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
}

static inline __m512 AMX_SYM(kv16)(const kern_attn_args *a, const void *base, size_t idx, int64_t left)
{
    const __mmask16 mk = AMX_SYM(nmask)(left > 0 ? left : 0);
    if (a->kv_type == KERN_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)base + idx));
    return _mm512_maskz_loadu_ps(mk, (const float *)base + idx);
}

static size_t AMX_SYM(attn_scratch)(int64_t rows, int64_t hd)
{
    const int64_t rp = (rows + 15) & ~(int64_t)15, h32 = (hd + 31) & ~(int64_t)31, h16 = (hd + 15) & ~(int64_t)15;
    const int64_t BK = KERN_FA_BK;
    return (size_t)(rp * h32 * 2 + h32 * BK * 2 + rp * BK * 4 + rp * BK * 2 + BK * h16 * 2 + 2 * rp * h16 * 4 +
                    4 * rp * 4) + 256;
}

static void AMX_SYM(attn_block)(const kern_attn_args *a, int64_t kvh, int64_t t0, int64_t t1, void *scratch)
{
    const int64_t G = a->n_head / a->n_head_kv, hd = a->head_dim, BK = KERN_FA_BK;
    const int64_t R = (t1 - t0) * G, rp = (R + 15) & ~(int64_t)15, nrt = rp / 16;
    const int64_t h32 = (hd + 31) & ~(int64_t)31, ndc = h32 / 32, h16 = (hd + 15) & ~(int64_t)15, ndt = h16 / 16;
    const size_t kv_stride = (size_t)a->n_head_kv * (size_t)hd;
    /* every array a multiple of 64 bytes long, from a 64-byte aligned start */
    uint16_t *qa = (uint16_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);   /* [nrt][ndc][16][32] */
    uint16_t *kbt = qa + rp * h32;                  /* [ndc][BK/16][16 pairs][16 keys x 2] */
    float *s = (float *)(kbt + h32 * BK);           /* [rp][BK] */
    uint16_t *pa = (uint16_t *)(s + rp * BK);       /* [nrt][BK/32][16][32] */
    uint16_t *vb = pa + rp * BK;                    /* [BK/32][ndt][16 key pairs][16 d x 2] */
    float *pv = (float *)(vb + BK * h16);           /* [rp][h16] */
    float *o = pv + rp * h16;                       /* [rp][h16] */
    float *mrow = o + rp * h16, *lrow = mrow + rp, *alpha = lrow + rp;
    int32_t *qpos = (int32_t *)(alpha + rp);

    AMX_SYM(configure)(CFG_BF16);
    for (int64_t r = 0; r < rp; r++) {
        const int64_t ti = r / G, g = r % G, rt = r / 16;
        const float *qr = r < R ? a->q + ((t0 + ti) * a->n_head + kvh * G + g) * hd : NULL;
        for (int64_t d = 0; d < h32; d++) {
            const float v = qr && d < hd ? qr[d] * a->scale : 0.0f;
            qa[((rt * ndc + d / 32) * 16 + (r & 15)) * 32 + (d & 31)] = kern_fp32_to_bf16(v);
        }
        qpos[r] = r < R ? (int32_t)(a->pos0 + t0 + ti) : INT32_MAX;
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    memset(o, 0, (size_t)(rp * h16) * sizeof(float));

    const int64_t n_keys = a->pos0 + t1;
    for (int64_t kb = 0; kb < n_keys; kb += BK) {
        const int64_t nk = n_keys - kb < BK ? n_keys - kb : BK;
        /* K as B tiles: key j's 32 d of chunk dc are 16 pairs (dwords); a B tile row is
         * one pair for 16 keys, so each 16 keys x 16 pairs block is transposed in registers */
        for (int64_t kt = 0; kt < BK / 16; kt++)
            for (int64_t dc = 0; dc < ndc; dc++) {
                __m512i rows[16];
                for (int jj = 0; jj < 16; jj++) {
                    const int64_t j = kt * 16 + jj;
                    rows[jj] = _mm512_setzero_si512();
                    if (j < nk) {
                        const size_t idx = (size_t)(kb + j) * kv_stride + (size_t)kvh * (size_t)hd + (size_t)(dc * 32);
                        const __m512 x0 = AMX_SYM(kv16)(a, a->k, idx, hd - dc * 32);
                        const __m512 x1 = AMX_SYM(kv16)(a, a->k, idx + 16, hd - dc * 32 - 16);
                        /* pairs (d, d+1): even and odd d of the chunk */
                        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
                        const __m512 lo = _mm512_permutex2var_ps(x0, even, x1);
                        const __m512 hi = _mm512_permutex2var_ps(x0, _mm512_add_epi32(even, _mm512_set1_epi32(1)), x1);
                        AMX_SYM(bf16_pair)(lo, hi, &rows[jj]);
                    }
                }
                AMX_SYM(transpose16)(rows);
                uint16_t *tile = kbt + (dc * (BK / 16) + kt) * 512;
                for (int pp = 0; pp < 16; pp++)
                    _mm512_store_si512(tile + pp * 32, rows[pp]);
            }
        /* V as B tiles: rows are key pairs (2p, 2p+1), 16 d per tile */
        for (int64_t p = 0; p < BK / 2; p++) {
            const size_t i0 = (size_t)(kb + 2 * p) * kv_stride + (size_t)kvh * (size_t)hd;
            for (int64_t dt = 0; dt < ndt; dt++) {
                const __m512 v0 = 2 * p < nk ? AMX_SYM(kv16)(a, a->v, i0 + (size_t)(dt * 16), hd - dt * 16)
                                             : _mm512_setzero_ps();
                const __m512 v1 = 2 * p + 1 < nk ? AMX_SYM(kv16)(a, a->v, i0 + kv_stride + (size_t)(dt * 16), hd - dt * 16)
                                                 : _mm512_setzero_ps();
                __m512i pr;
                AMX_SYM(bf16_pair)(v0, v1, &pr);
                _mm512_store_si512(vb + (((p / 16) * ndt + dt) * 16 + (p & 15)) * 32, pr);
            }
        }
        /* S = Q K^T: the 4 key tiles of a row tile accumulate in tmm2..tmm5, so each Q
         * tile is loaded once per block */
        _Static_assert(KERN_FA_BK == 64, "S = QK^T below is unrolled for 4 key tiles");
        for (int64_t rt = 0; rt < nrt; rt++) {
            _tile_zero(2);
            _tile_zero(3);
            _tile_zero(4);
            _tile_zero(5);
            for (int64_t dc = 0; dc < ndc; dc++) {
                const uint16_t *kd = kbt + dc * (BK / 16) * 512;
                _tile_loadd(0, qa + (rt * ndc + dc) * 512, 64);
                _tile_loadd(1, kd, 64);
                _tile_dpbf16ps(2, 0, 1);
                _tile_loadd(1, kd + 512, 64);
                _tile_dpbf16ps(3, 0, 1);
                _tile_loadd(1, kd + 1024, 64);
                _tile_dpbf16ps(4, 0, 1);
                _tile_loadd(1, kd + 1536, 64);
                _tile_dpbf16ps(5, 0, 1);
            }
            _tile_stored(2, s + rt * 16 * BK, BK * 4);
            _tile_stored(3, s + rt * 16 * BK + 16, BK * 4);
            _tile_stored(4, s + rt * 16 * BK + 32, BK * 4);
            _tile_stored(5, s + rt * 16 * BK + 48, BK * 4);
        }
        /* mask, online softmax per row, P as bf16 A tiles */
        const __m512 ninf = _mm512_set1_ps(-INFINITY);
        for (int64_t r = 0; r < rp; r++) {
            __m512 sv[KERN_FA_BK / 16];
            __m512 mx = ninf;
            for (int64_t c = 0; c < BK / 16; c++) {
                const __m512i kpos = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(kb + c * 16)),
                                                      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
                const __mmask16 ok = _mm512_cmp_epi32_mask(kpos, _mm512_set1_epi32(qpos[r]), _MM_CMPINT_LE) &
                                     AMX_SYM(nmask)(nk - c * 16 > 0 ? nk - c * 16 : 0);
                sv[c] = _mm512_mask_blend_ps(ok, ninf, _mm512_load_ps(s + r * BK + c * 16));
                mx = _mm512_max_ps(mx, sv[c]);
            }
            const float mold = mrow[r], mb = _mm512_reduce_max_ps(mx);
            const float mnew = mold > mb ? mold : mb;   /* finite: key 0 is in every row's first block */
            const float al = mold == -INFINITY ? 0.0f : expf(mold - mnew);
            __m512 sum = _mm512_setzero_ps();
            const __m512 vm = _mm512_set1_ps(mnew);
            for (int64_t c = 0; c < BK / 16; c += 2) {
                __m512 pr[2];
                for (int h = 0; h < 2; h++) {
                    const __mmask16 live = _mm512_cmp_ps_mask(sv[c + h], ninf, _CMP_NEQ_OQ);
                    pr[h] = _mm512_maskz_mov_ps(live, kern_exp512(_mm512_sub_ps(sv[c + h], vm)));
                    sum = _mm512_add_ps(sum, pr[h]);
                }
                /* 32 keys of row r: one A-tile row */
                _mm512_store_si512(pa + (((r / 16) * (BK / 32) + c / 2) * 16 + (r & 15)) * 32,
                                   (__m512i)_mm512_cvtne2ps_pbh(pr[1], pr[0]));
            }
            lrow[r] = lrow[r] * al + _mm512_reduce_add_ps(sum);
            mrow[r] = mnew;
            alpha[r] = al;
        }
        /* PV = P V into memory, O = O * alpha + PV */
        for (int64_t rt = 0; rt < nrt; rt++) {
            int64_t dt = 0;
            for (; dt + 4 <= ndt; dt += 4) {   /* 4 d tiles per P tile load */
                _tile_zero(2);
                _tile_zero(3);
                _tile_zero(4);
                _tile_zero(5);
                for (int64_t kc = 0; kc < BK / 32; kc++) {
                    const uint16_t *vd = vb + (kc * ndt + dt) * 512;
                    _tile_loadd(0, pa + (rt * (BK / 32) + kc) * 512, 64);
                    _tile_loadd(1, vd, 64);
                    _tile_dpbf16ps(2, 0, 1);
                    _tile_loadd(1, vd + 512, 64);
                    _tile_dpbf16ps(3, 0, 1);
                    _tile_loadd(1, vd + 1024, 64);
                    _tile_dpbf16ps(4, 0, 1);
                    _tile_loadd(1, vd + 1536, 64);
                    _tile_dpbf16ps(5, 0, 1);
                }
                float *pd = pv + rt * 16 * h16 + dt * 16;
                _tile_stored(2, pd, h16 * 4);
                _tile_stored(3, pd + 16, h16 * 4);
                _tile_stored(4, pd + 32, h16 * 4);
                _tile_stored(5, pd + 48, h16 * 4);
            }
            for (; dt < ndt; dt++) {
                _tile_zero(2);
                for (int64_t kc = 0; kc < BK / 32; kc++) {
                    _tile_loadd(0, pa + (rt * (BK / 32) + kc) * 512, 64);
                    _tile_loadd(1, vb + (kc * ndt + dt) * 512, 64);
                    _tile_dpbf16ps(2, 0, 1);
                }
                _tile_stored(2, pv + rt * 16 * h16 + dt * 16, h16 * 4);
            }
        }
        for (int64_t r = 0; r < rp; r++) {
            const __m512 al = _mm512_set1_ps(alpha[r]);
            for (int64_t d = 0; d < h16; d += 16)
                _mm512_store_ps(o + r * h16 + d, _mm512_fmadd_ps(_mm512_load_ps(o + r * h16 + d), al,
                                                                 _mm512_load_ps(pv + r * h16 + d)));
        }
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t ti = r / G, g = r % G;
        float *out = a->out + ((t0 + ti) * a->n_head + kvh * G + g) * hd;
        const __m512 inv = _mm512_set1_ps(1.0f / lrow[r]);
        for (int64_t d = 0; d < hd; d += 16)
            _mm512_mask_storeu_ps(out + d, AMX_SYM(nmask)(hd - d), _mm512_mul_ps(_mm512_load_ps(o + r * h16 + d), inv));
    }
}

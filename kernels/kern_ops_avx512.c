/* AVX-512 kernels (F/BW/VL/VNNI/BF16).  This file alone is compiled with the AVX-512
 * flags (kernels/CMakeLists.txt); nothing here runs unless kern_impl_check() said the CPU
 * and OS have these features.
 *
 * Integer matmul: the weights are unsigned (q + o) in VNNI order, the activation bytes
 * are signed and broadcast 4 at a time, so one VPDPBUSD does 16 outputs x 4 k.  Per K
 * block the int32 sums are scaled into fp32 accumulators with two FMAs (see kern_cpu.h
 * for the exact formula, which the reference repeats). */
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "kernels/kern_avx512_math.h"
#include "kernels/kern_internal.h"

/* The micro-kernels' loops are unrolled by pragma (see mk_q).  Clang instrumenting the
 * unrolled blocks for the sanitizers (the fuzz build) took over ten minutes for this file:
 * there the loops stay loops — the same operations in the same order, so the same bits,
 * in code nobody times. */
#define KERN_PRAGMA_(x) _Pragma(#x)
#if defined(__clang__) && defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KERN_NO_UNROLL 1
#endif
#endif
#ifdef KERN_NO_UNROLL
#define KERN_UNROLL(n)
#else
#define KERN_UNROLL(n) KERN_PRAGMA_(GCC unroll n)
#endif

/* ---- activation quantization, bit-identical to ggml's quantize_row_q8_0_ref ------- */

/* roundf(): half away from zero.  |v| - trunc(|v|) is exact, so the tie test is too. */
static inline __m512i round_away(__m512 v)
{
    const __m512 av = _mm512_abs_ps(v);
    const __m512 t = _mm512_roundscale_ps(av, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(av, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 r = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
    const __m512 signed_r = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(r), _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_cvttps_epi32(signed_r);
}

void kern_avx512_quantize_row_q8_0(const float *x, int8_t *q, float *d, int32_t *s, int64_t k)
{
    for (int64_t b = 0; b < k / KERN_KB; b++) {
        const __m512 v0 = _mm512_loadu_ps(x + b * KERN_KB), v1 = _mm512_loadu_ps(x + b * KERN_KB + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float dd = amax / ((1 << 7) - 1);
        const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i q0 = round_away(_mm512_mul_ps(v0, vid)), q1 = round_away(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)(q + b * KERN_KB), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + b * KERN_KB + 16), _mm512_cvtepi32_epi8(q1));
        d[b] = kern_fp16_to_fp32(kern_fp32_to_fp16(dd));
        s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- integer matmul ---------------------------------------------------------------- */

static inline int32_t load_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __mmask16 tail_mask(int64_t n_left)
{
    return n_left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n_left) - 1);
}

/* MR rows (1..6) x NP panels (1..2) of outputs over the whole K.  Every loop is unrolled
 * by pragma: GCC -O2 does not unroll these small constant loops on its own, and until
 * session 4 (the same kernel without the pragmas) it kept them as loops with the int32
 * sums c and the accumulators acc on the stack; Q8_0, eight dependent weight-vector
 * rounds per block against Q4_0's four, paid most (device, 16 threads, M = 512: attn_q
 * 6.13 -> 2.60 ms in Q8_0, 4.86 -> 2.75 in Q4_0; qwen3-moe-small pp512 1442 -> 2382 t/s
 * in Q8_0, 1771 -> 2329 in Q4_0, with the one-line prefetch; docs/kernels.md).  Registers: MR x NP int32 sums, as
 * many fp32 accumulators, NP weight vectors (Q4_0: 2 NP + the nibble mask) and a
 * broadcast: 6 x 2 uses 28 of the 32 zmm. */
#define MK_MR_MAX 6
static inline __attribute__((always_inline)) void mk_q(const kern_gemm_job *j, const kern_qact *a, int64_t m0,
                                                       const int MR, int64_t p, const int NP, const bool I4,
                                                       const bool PF_BLOCK)
{
    const kern_weight *w = j->w;
    const size_t bb = I4 ? 288 : 544;
    const int64_t nb = a->nb;
    __m512 acc[MK_MR_MAX][2];
KERN_UNROLL(8)
    for (int m = 0; m < MR; m++)
KERN_UNROLL(2)
        for (int pp = 0; pp < NP; pp++)
            acc[m][pp] = _mm512_setzero_ps();
    const uint8_t *wp[2];
KERN_UNROLL(2)
    for (int pp = 0; pp < NP; pp++)
        wp[pp] = j->wmat + (size_t)(p + pp) * w->panel_bytes;
    const int8_t *ap = a->q + m0 * a->k;
    const float *ad = a->d + m0 * nb, *ano = a->negoff + m0 * nb;
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++) {
        __m512i c[MK_MR_MAX][2];
KERN_UNROLL(8)
        for (int m = 0; m < MR; m++)
KERN_UNROLL(2)
            for (int pp = 0; pp < NP; pp++)
                c[m][pp] = _mm512_setzero_si512();
        /* PF_BLOCK: every line of block b + 8, for the MoE experts whose panels are read by
         * a few row blocks only, so arrive from L3 or memory (10-20 % on MoE gate/up and
         * down at M = 64 and 512 on the development machine, even on attention).  Blocks
         * start at 0 or 32 mod 64, so 9 (Q8_0) or 5 prefetches cover one.  Else one line
         * of block b + 4, the earlier kernel's prefetch. */
        if (PF_BLOCK) {
KERN_UNROLL(2)
            for (int pp = 0; pp < NP; pp++)
KERN_UNROLL(9)
                for (size_t off = 0; off < bb; off += 64)
                    _mm_prefetch((const char *)(wp[pp] + (b + 8) * bb + off), _MM_HINT_T0);
        } else {
KERN_UNROLL(2)
            for (int pp = 0; pp < NP; pp++)
                _mm_prefetch((const char *)(wp[pp] + (b + 4) * bb), _MM_HINT_T0);
        }
        const int8_t *ab = ap + b * KERN_KB;
        if (!I4) {
KERN_UNROLL(8)
            for (int g = 0; g < 8; g++) {
                __m512i wv[2];
KERN_UNROLL(2)
                for (int pp = 0; pp < NP; pp++)
                    wv[pp] = _mm512_loadu_si512(wp[pp] + b * bb + g * 64);
KERN_UNROLL(8)
                for (int m = 0; m < MR; m++) {
                    const __m512i av = _mm512_set1_epi32(load_i32(ab + m * a->k + g * 4));
KERN_UNROLL(2)
                    for (int pp = 0; pp < NP; pp++)
                        c[m][pp] = _mm512_dpbusd_epi32(c[m][pp], wv[pp], av);
                }
            }
        } else {
KERN_UNROLL(4)
            for (int g = 0; g < 4; g++) {
                __m512i wl[2], wh[2];
KERN_UNROLL(2)
                for (int pp = 0; pp < NP; pp++) {
                    const __m512i v = _mm512_loadu_si512(wp[pp] + b * bb + g * 64);
                    wl[pp] = _mm512_and_si512(v, lo4);
                    wh[pp] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
                }
KERN_UNROLL(8)
                for (int m = 0; m < MR; m++) {
                    const __m512i al = _mm512_set1_epi32(load_i32(ab + m * a->k + g * 4));
                    const __m512i ah = _mm512_set1_epi32(load_i32(ab + m * a->k + 16 + g * 4));
KERN_UNROLL(2)
                    for (int pp = 0; pp < NP; pp++) {
                        c[m][pp] = _mm512_dpbusd_epi32(c[m][pp], wl[pp], al);
                        c[m][pp] = _mm512_dpbusd_epi32(c[m][pp], wh[pp], ah);
                    }
                }
            }
        }
        __m512 dw[2];
KERN_UNROLL(2)
        for (int pp = 0; pp < NP; pp++)
            dw[pp] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wp[pp] + b * bb + (I4 ? 256 : 512))));
KERN_UNROLL(8)
        for (int m = 0; m < MR; m++) {
            const __m512 da = _mm512_set1_ps(ad[m * nb + b]);
            const __m512 no = _mm512_set1_ps(ano[m * nb + b]);
KERN_UNROLL(2)
            for (int pp = 0; pp < NP; pp++) {
                const __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c[m][pp]), da, no);
                acc[m][pp] = _mm512_fmadd_ps(t, dw[pp], acc[m][pp]);
            }
        }
    }
KERN_UNROLL(8)
    for (int m = 0; m < MR; m++) {
        float *y = kern_yrow(j, m0 + m);
KERN_UNROLL(2)
        for (int pp = 0; pp < NP; pp++) {
            const int64_t n = (p + pp) * KERN_PANEL;
            _mm512_mask_storeu_ps(y + n, tail_mask(w->n - n), acc[m][pp]);
        }
    }
}


static inline __attribute__((always_inline)) void pf_block(const uint8_t *p, size_t bb, const bool L2)
{
    for (size_t off = 0; off < bb; off += 64) {
        if (L2)   /* two calls: the hint must be a constant even at -O0 */
            _mm_prefetch((const char *)(p + off), _MM_HINT_T1);
        else
            _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
    }
}

/* M = 1 (token generation): NP (1..4) panels at once with two int32 chains per panel, so
 * eight independent VPDPBUSD chains hide its latency and the loop streams at memory speed.
 *
 * Software prefetch (PF, KERN_GEMV_PF_*): the hardware streamer alone leaves this loop
 * latency-bound on one core (Q4_0 blocks are only 4.5 lines).  PANEL prefetches every line
 * of block b + 8 of each panel while it is inside the panel; past the panel's end it
 * prefetches the same blocks of the call's next group of panels, and the call's first
 * group starts with its first 8 blocks.  So a call (one item of the fused schedule: an
 * expert's chunk of only 16 to 24 blocks per panel) never starts its panels cold and never
 * fetches lines of panels outside [p0, p1), which belong to another worker.  AHEAD is the
 * earlier scheme (block b + 8 whatever it is), kept for A/B runs.  L2 is PANEL with the
 * lines brought to L2 only (PREFETCHT1): 8 blocks of 4 Q4_0 panels are 144 lines, far
 * more than a core's L1 fill buffers, so T0 prefetches may be dropped or hold up the
 * demand loads; an L1 miss that hits L2 is hidden by the eight chains.  Untested on the
 * device as written. */
static inline __attribute__((always_inline)) void gemv_q(const kern_gemm_job *j, const kern_qact *a, int64_t p,
                                                         const int NP, const bool I4, const int PF_)
{
    const bool L2 = PF_ == KERN_GEMV_PF_L2;
    const int PF = L2 ? KERN_GEMV_PF_PANEL : PF_;
    const kern_weight *w = j->w;
    __m512 acc[4];
    const uint8_t *wp[4];
    for (int pp = 0; pp < NP; pp++) {
        acc[pp] = _mm512_setzero_ps();
        wp[pp] = j->wmat + (size_t)(p + pp) * w->panel_bytes;
    }
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    const size_t bb = w->blk_bytes;
    const int64_t nb = a->nb, dist = j->gemv_pf_dist > 0 ? j->gemv_pf_dist : KERN_GEMV_PF_DIST;
    /* panels of the call's next group, and how many */
    const uint8_t *wn = j->wmat + (size_t)(p + NP) * w->panel_bytes;
    const int64_t nn = j->p1 - (p + NP) < NP ? j->p1 - (p + NP) : NP;
    if (PF == KERN_GEMV_PF_PANEL && (p == j->p0 || nb <= dist))
        for (int64_t b = 0; b < nb && b < dist; b++)
            for (int pp = 0; pp < NP; pp++)
                pf_block(wp[pp] + b * bb, bb, L2);
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *ab = a->q + b * KERN_KB;
        __m512i c0[4], c1[4];
        for (int pp = 0; pp < NP; pp++) {
            c0[pp] = _mm512_setzero_si512();
            c1[pp] = _mm512_setzero_si512();
        }
        if (PF == KERN_GEMV_PF_AHEAD) {
            for (int pp = 0; pp < NP; pp++)
                for (size_t off = 0; off < bb; off += 64)
                    _mm_prefetch((const char *)(wp[pp] + (b + 8) * bb + off), _MM_HINT_T0);
        } else if (PF == KERN_GEMV_PF_PANEL) {
            const int64_t bn = b + dist;
            if (bn < nb) {
                for (int pp = 0; pp < NP; pp++)
                    pf_block(wp[pp] + bn * bb, bb, L2);
            } else if (bn - nb < nb) {
                for (int64_t pp = 0; pp < nn; pp++)
                    pf_block(wn + (size_t)pp * w->panel_bytes + (bn - nb) * bb, bb, L2);
            }
        }
        if (!I4) {
            for (int g = 0; g < 8; g += 2) {
                const __m512i a0 = _mm512_set1_epi32(load_i32(ab + g * 4));
                const __m512i a1 = _mm512_set1_epi32(load_i32(ab + g * 4 + 4));
                for (int pp = 0; pp < NP; pp++) {
                    c0[pp] = _mm512_dpbusd_epi32(c0[pp], _mm512_loadu_si512(wp[pp] + b * bb + g * 64), a0);
                    c1[pp] = _mm512_dpbusd_epi32(c1[pp], _mm512_loadu_si512(wp[pp] + b * bb + g * 64 + 64), a1);
                }
            }
        } else {
            for (int g = 0; g < 4; g++) {
                const __m512i al = _mm512_set1_epi32(load_i32(ab + g * 4));
                const __m512i ah = _mm512_set1_epi32(load_i32(ab + 16 + g * 4));
                for (int pp = 0; pp < NP; pp++) {
                    const __m512i v = _mm512_loadu_si512(wp[pp] + b * bb + g * 64);
                    c0[pp] = _mm512_dpbusd_epi32(c0[pp], _mm512_and_si512(v, lo4), al);
                    c1[pp] = _mm512_dpbusd_epi32(c1[pp], _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4), ah);
                }
            }
        }
        const __m512 da = _mm512_set1_ps(a->d[b]);
        const __m512 no = _mm512_set1_ps(a->negoff[b]);
        for (int pp = 0; pp < NP; pp++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wp[pp] + b * bb + (I4 ? 256 : 512))));
            const __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c0[pp], c1[pp])), da, no);
            acc[pp] = _mm512_fmadd_ps(t, dw, acc[pp]);
        }
    }
    float *y = kern_yrow(j, 0);
    for (int pp = 0; pp < NP; pp++) {
        const int64_t n = (p + pp) * KERN_PANEL;
        _mm512_mask_storeu_ps(y + n, tail_mask(w->n - n), acc[pp]);
    }
}

static inline __attribute__((always_inline)) void gemv_q_range_pf(const kern_gemm_job *j, const kern_qact *a,
                                                                  const bool I4, const int PF)
{
    int64_t p = j->p0;
    for (; p + 4 <= j->p1; p += 4)
        gemv_q(j, a, p, 4, I4, PF);
    const int left = (int)(j->p1 - p);
    if (left == 3)
        gemv_q(j, a, p, 3, I4, PF);
    else if (left == 2)
        gemv_q(j, a, p, 2, I4, PF);
    else if (left == 1)
        gemv_q(j, a, p, 1, I4, PF);
}

static void gemv_q_range(const kern_gemm_job *j, const kern_qact *a, bool i4)
{
    switch (j->gemv_pf) {
    case KERN_GEMV_PF_AHEAD:
        i4 ? gemv_q_range_pf(j, a, true, KERN_GEMV_PF_AHEAD) : gemv_q_range_pf(j, a, false, KERN_GEMV_PF_AHEAD);
        break;
    case KERN_GEMV_PF_NONE:
        i4 ? gemv_q_range_pf(j, a, true, KERN_GEMV_PF_NONE) : gemv_q_range_pf(j, a, false, KERN_GEMV_PF_NONE);
        break;
    case KERN_GEMV_PF_L2:
        i4 ? gemv_q_range_pf(j, a, true, KERN_GEMV_PF_L2) : gemv_q_range_pf(j, a, false, KERN_GEMV_PF_L2);
        break;
    default:
        i4 ? gemv_q_range_pf(j, a, true, KERN_GEMV_PF_PANEL) : gemv_q_range_pf(j, a, false, KERN_GEMV_PF_PANEL);
        break;
    }
}

/* Rows of the prompt GEMM's register block per weight type, 4 or 6 (x 2 panels), and its
 * weight prefetch: AMXDIAG_AVX512_Q8_MR / AMXDIAG_AVX512_Q4_MR (4|6) and
 * AMXDIAG_AVX512_GEMM_PF (block|line), read once (kern_avx512_gemm_q_env_reset() reads
 * them again, for tests).
 * 6 rows by default: on the device (05:46 UTC, 16 threads, medians of 3 alternated
 * rounds, one-line prefetch) 6x2 against 4x2 took 2.60 / 2.71 ms on attn_q Q8_0 at
 * M = 512, 3.04 / 3.19 attn_o, 5.36 / 5.59 MoE gate/up, 5.46 / 5.20 MoE down; Q4_0
 * 2.75 / 2.74, 3.17 / 3.39, 4.63 / 5.10, 4.34 / 4.51; pp512 2382 / 2235 t/s (Q8_0) and
 * 2329 / 2426 (Q4_0, one sample each).  8x1 was slower than both everywhere and is gone.
 * The second run (06:03, same protocol, pp512 two rounds) confirmed 6 rows: pp512 Q8_0
 * 2332 (6, block) / 2256 (6, line) / 2284 (4, block) / 2231 (4, line) t/s, Q4_0 2343 /
 * 2423 / 2305 / 2283; 6 rows ahead of 4 at M = 512 on every shape but MoE down Q8_0.
 * The prefetch is a tie there (block ahead on attn_o and MoE gate/up, line on attn_q Q8_0
 * and MoE down, each within the rounds' spread); block stays the default because on the
 * development machine (AMD EPYC) it was 10-20 % faster on the MoE shapes. */
enum { KERN_QB_UNREAD = -1 };
#define KERN_QB_DEFAULT 6
static _Atomic int qb_q8 = KERN_QB_UNREAD, qb_q4 = KERN_QB_UNREAD, qb_pf = KERN_QB_UNREAD;

static int qb_parse(const char *name, int def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    if (!strcmp(v, "4") || !strcmp(v, "6"))
        return v[0] - '0';
    adg_warn("kernels: ignoring %s=%s (want 4 or 6); using %d", name, v, def);
    return def;
}

static int pf_parse(void)
{
    const char *v = getenv("AMXDIAG_AVX512_GEMM_PF");
    if (!v || !*v || !strcmp(v, "block"))
        return 1;
    if (!strcmp(v, "line"))
        return 0;
    adg_warn("kernels: ignoring AMXDIAG_AVX512_GEMM_PF=%s (want block or line); using block", v);
    return 1;
}

static int qb_get(_Atomic int *slot, int which)
{
    int v = atomic_load_explicit(slot, memory_order_relaxed);
    if (v == KERN_QB_UNREAD) {   /* workers racing here store the same value */
        v = which == 0 ? qb_parse("AMXDIAG_AVX512_Q8_MR", KERN_QB_DEFAULT)
          : which == 1 ? qb_parse("AMXDIAG_AVX512_Q4_MR", KERN_QB_DEFAULT) : pf_parse();
        atomic_store_explicit(slot, v, memory_order_relaxed);
    }
    return v;
}

void kern_avx512_gemm_q_env_reset(void)
{
    atomic_store(&qb_q8, KERN_QB_UNREAD);
    atomic_store(&qb_q4, KERN_QB_UNREAD);
    atomic_store(&qb_pf, KERN_QB_UNREAD);
}

/* mr rows (1..6) x np panels (1..2). */
#define MK_Q_CASES(I4, PF)                                                 \
    switch (mr * 2 + np - 1) {                                             \
    case 2: mk_q(j, a, m0, 1, p, 1, I4, PF); break;                        \
    case 3: mk_q(j, a, m0, 1, p, 2, I4, PF); break;                        \
    case 4: mk_q(j, a, m0, 2, p, 1, I4, PF); break;                        \
    case 5: mk_q(j, a, m0, 2, p, 2, I4, PF); break;                        \
    case 6: mk_q(j, a, m0, 3, p, 1, I4, PF); break;                        \
    case 7: mk_q(j, a, m0, 3, p, 2, I4, PF); break;                        \
    case 8: mk_q(j, a, m0, 4, p, 1, I4, PF); break;                        \
    case 9: mk_q(j, a, m0, 4, p, 2, I4, PF); break;                        \
    case 10: mk_q(j, a, m0, 5, p, 1, I4, PF); break;                       \
    case 11: mk_q(j, a, m0, 5, p, 2, I4, PF); break;                       \
    case 12: mk_q(j, a, m0, 6, p, 1, I4, PF); break;                       \
    default: mk_q(j, a, m0, 6, p, 2, I4, PF); break;                       \
    }

/* Panels in groups that fit L2 (weights reused across every m step), m in steps of MR. */
void kern_avx512_gemm_q(const kern_gemm_job *j, const kern_qact *a)
{
    const bool i4 = j->w->fmt == KERN_WFMT_I4;
    if (a->m == 1) {
        gemv_q_range(j, a, i4);
        return;
    }
    const int MR = i4 ? qb_get(&qb_q4, 1) : qb_get(&qb_q8, 0);
    const bool pfb = qb_get(&qb_pf, 2) != 0;
    int64_t group = (int64_t)((512 * 1024) / (j->w->panel_bytes ? j->w->panel_bytes : 1));
    group = group < 2 ? 2 : group & ~(int64_t)1;
    for (int64_t pg = j->p0; pg < j->p1; pg += group) {
        const int64_t pe = pg + group < j->p1 ? pg + group : j->p1;
        for (int64_t m0 = 0; m0 < a->m; m0 += MR) {
            const int mr = a->m - m0 >= MR ? MR : (int)(a->m - m0);
            for (int64_t p = pg; p < pe; p += 2) {
                const int np = pe - p >= 2 ? 2 : 1;
                if (i4) {
                    if (pfb) {
                        MK_Q_CASES(true, true)
                    } else {
                        MK_Q_CASES(true, false)
                    }
                } else if (pfb) {
                    MK_Q_CASES(false, true)
                } else {
                    MK_Q_CASES(false, false)
                }
            }
        }
    }
}

/* ---- BF16 matmul --------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void mk_bf16(const kern_gemm_job *j, const kern_bact *a, int64_t m0,
                                                          const int MR, int64_t p, const int NP)
{
    const kern_weight *w = j->w;
    __m512 acc[4][2];
    for (int m = 0; m < MR; m++)
        for (int pp = 0; pp < NP; pp++)
            acc[m][pp] = _mm512_setzero_ps();
    const uint8_t *wp[2];
    for (int pp = 0; pp < NP; pp++)
        wp[pp] = j->wmat + (size_t)(p + pp) * w->panel_bytes;
    for (int64_t c = 0; c < w->nb; c++) {
        for (int pp = 0; pp < NP; pp++)
            _mm_prefetch((const char *)(wp[pp] + (c + 2) * 1024), _MM_HINT_T0);
        for (int jp = 0; jp < 16; jp++) {
            __m512i wv[2];
            for (int pp = 0; pp < NP; pp++)
                wv[pp] = _mm512_loadu_si512(wp[pp] + c * 1024 + jp * 64);
            for (int m = 0; m < MR; m++) {
                int32_t pair;
                memcpy(&pair, a->x + (m0 + m) * a->k_pad + c * KERN_KB + jp * 2, 4);
                const __m512i xv = _mm512_set1_epi32(pair);
                for (int pp = 0; pp < NP; pp++)
                    acc[m][pp] = _mm512_dpbf16_ps(acc[m][pp], (__m512bh)wv[pp], (__m512bh)xv);
            }
        }
    }
    for (int m = 0; m < MR; m++) {
        float *y = kern_yrow(j, m0 + m);
        for (int pp = 0; pp < NP; pp++) {
            const int64_t n = (p + pp) * KERN_PANEL;
            _mm512_mask_storeu_ps(y + n, tail_mask(w->n - n), acc[m][pp]);
        }
    }
}

void kern_avx512_gemm_bf16(const kern_gemm_job *j, const kern_bact *a)
{
    int64_t group = (int64_t)((512 * 1024) / (j->w->panel_bytes ? j->w->panel_bytes : 1));
    group = group < 2 ? 2 : group & ~(int64_t)1;
    for (int64_t pg = j->p0; pg < j->p1; pg += group) {
        const int64_t pe = pg + group < j->p1 ? pg + group : j->p1;
        for (int64_t m0 = 0; m0 < a->m; m0 += 4) {
            const int mr = a->m - m0 >= 4 ? 4 : (int)(a->m - m0);
            for (int64_t p = pg; p < pe; p += 2) {
                const int np = pe - p >= 2 ? 2 : 1;
                switch (mr * 2 + np - 1) {
                case 2: mk_bf16(j, a, m0, 1, p, 1); break;
                case 3: mk_bf16(j, a, m0, 1, p, 2); break;
                case 4: mk_bf16(j, a, m0, 2, p, 1); break;
                case 5: mk_bf16(j, a, m0, 2, p, 2); break;
                case 6: mk_bf16(j, a, m0, 3, p, 1); break;
                case 7: mk_bf16(j, a, m0, 3, p, 2); break;
                case 8: mk_bf16(j, a, m0, 4, p, 1); break;
                default: mk_bf16(j, a, m0, 4, p, 2); break;
                }
            }
        }
    }
}

/* ---- F32 matmul (small weights such as routers kept in f32) -------------------------
 * W stays in ggml's row layout, so x rows and W rows both run along k: a tile of MR rows x
 * NR outputs keeps MR*NR vector dot products (16 zmm) and reduces them once at the end.
 * The NR weight rows stay in L1 while the MR-row steps sweep the caller's block of x (L2):
 * one weight load and one activation load feed four FMAs each.  The old path (one dot
 * product per output, two chains) was latency-bound and reread every x row per output. */
static inline __attribute__((always_inline)) void mk_f32(const float *x, int64_t ldx, const float *wr, size_t ldw,
                                                         int64_t k, float *const *y, const int MR, const int NR)
{
    __m512 acc[4][4];
    for (int m = 0; m < MR; m++)
        for (int n = 0; n < NR; n++)
            acc[m][n] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16) {
        const __mmask16 mk = tail_mask(k - i);
        __m512 wv[4];
        for (int n = 0; n < NR; n++)
            wv[n] = _mm512_maskz_loadu_ps(mk, wr + (size_t)n * ldw + i);
        for (int m = 0; m < MR; m++) {
            const __m512 xv = _mm512_maskz_loadu_ps(mk, x + m * ldx + i);
            for (int n = 0; n < NR; n++)
                acc[m][n] = _mm512_fmadd_ps(xv, wv[n], acc[m][n]);
        }
    }
    for (int m = 0; m < MR; m++)
        for (int n = 0; n < NR; n++)
            y[m][n] = _mm512_reduce_add_ps(acc[m][n]);
}

void kern_avx512_gemm_f32(const kern_gemm_job *j, const float *x, int64_t m_rows)
{
    const kern_weight *w = j->w;
    const int64_t k = w->k;
    const size_t ldw = w->row_bytes / sizeof(float);
    const int64_t n0 = j->p0 * KERN_PANEL, n1 = j->p1 * KERN_PANEL < w->n ? j->p1 * KERN_PANEL : w->n;
    for (int64_t n = n0; n < n1; n += 4) {
        const int nr = n1 - n >= 4 ? 4 : (int)(n1 - n);
        const float *wr = (const float *)(j->wmat + (size_t)n * w->row_bytes);
        for (int64_t m = 0; m < m_rows; m += 4) {
            const int mr = m_rows - m >= 4 ? 4 : (int)(m_rows - m);
            const float *xm = x + m * k;
            float *y[4];   /* MoE jobs scatter rows (yrow) */
            for (int r = 0; r < mr; r++)
                y[r] = kern_yrow(j, m + r) + n;
            switch ((mr - 1) * 4 + (nr - 1)) {
            case 0: mk_f32(xm, k, wr, ldw, k, y, 1, 1); break;
            case 1: mk_f32(xm, k, wr, ldw, k, y, 1, 2); break;
            case 2: mk_f32(xm, k, wr, ldw, k, y, 1, 3); break;
            case 3: mk_f32(xm, k, wr, ldw, k, y, 1, 4); break;
            case 4: mk_f32(xm, k, wr, ldw, k, y, 2, 1); break;
            case 5: mk_f32(xm, k, wr, ldw, k, y, 2, 2); break;
            case 6: mk_f32(xm, k, wr, ldw, k, y, 2, 3); break;
            case 7: mk_f32(xm, k, wr, ldw, k, y, 2, 4); break;
            case 8: mk_f32(xm, k, wr, ldw, k, y, 3, 1); break;
            case 9: mk_f32(xm, k, wr, ldw, k, y, 3, 2); break;
            case 10: mk_f32(xm, k, wr, ldw, k, y, 3, 3); break;
            case 11: mk_f32(xm, k, wr, ldw, k, y, 3, 4); break;
            case 12: mk_f32(xm, k, wr, ldw, k, y, 4, 1); break;
            case 13: mk_f32(xm, k, wr, ldw, k, y, 4, 2); break;
            case 14: mk_f32(xm, k, wr, ldw, k, y, 4, 3); break;
            default: mk_f32(xm, k, wr, ldw, k, y, 4, 4); break;
            }
        }
    }
}

/* ---- elementwise ------------------------------------------------------------------- */

void kern_avx512_rmsnorm(const float *x, const float *w, int64_t r0, int64_t r1, int64_t k, float eps, float *y)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * k;
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int64_t i = 0; i < k; i += 16) {
            const __m512 v = _mm512_maskz_loadu_ps(tail_mask(k - i), xr + i);
            const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            s0 = _mm512_fmadd_pd(lo, lo, s0);
            s1 = _mm512_fmadd_pd(hi, hi, s1);
        }
        const double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
        const __m512 sc = _mm512_set1_ps((float)(1.0 / sqrt(ss / (double)k + eps)));
        float *yr = y + r * k;
        for (int64_t i = 0; i < k; i += 16) {
            const __mmask16 mk = tail_mask(k - i);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + i), sc);
            if (w)
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, w + i));
            _mm512_mask_storeu_ps(yr + i, mk, v);
        }
    }
}

void kern_avx512_softmax(float *x, int64_t r0, int64_t r1, int64_t n, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    for (int64_t r = r0; r < r1; r++) {
        float *xr = x + r * n;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t i = 0; i < n; i += 16)
            mx = _mm512_mask_max_ps(mx, tail_mask(n - i), mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail_mask(n - i), xr + i), vs));
        const __m512 vmx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 mk = tail_mask(n - i);
            const __m512 e = kern_exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, xr + i), vs, vmx));
            sum = _mm512_mask_add_ps(sum, mk, sum, e);
            _mm512_mask_storeu_ps(xr + i, mk, e);
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 mk = tail_mask(n - i);
            _mm512_mask_storeu_ps(xr + i, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + i), inv));
        }
    }
}

void kern_avx512_silu_mul(const float *g, const float *u, int64_t i0, int64_t i1, float *out)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 mk = tail_mask(i1 - i);
        const __m512 gv = _mm512_maskz_loadu_ps(mk, g + i);
        const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, kern_exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(_mm512_mul_ps(gv, sig), _mm512_maskz_loadu_ps(mk, u + i)));
    }
}

/* ---- attention (one query head of one token) --------------------------------------- */

static inline __m512 kv_load(const kern_attn_args *a, const void *base, size_t idx, __mmask16 mk)
{
    if (a->kv_type == KERN_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)base + idx));
    return _mm512_maskz_loadu_ps(mk, (const float *)base + idx);
}

void kern_avx512_attn_row(const kern_attn_args *a, int64_t t, int64_t h, float *scores)
{
    const int64_t kvh = h / (a->n_head / a->n_head_kv);
    const int64_t n_kv = a->pos0 + t + 1, hd = a->head_dim;
    const float *q = a->q + (t * a->n_head + h) * hd;
    const size_t kv_stride = (size_t)a->n_head_kv * (size_t)hd;
    float mx = -INFINITY;
    for (int64_t jj = 0; jj < n_kv; jj++) {
        __m512 s = _mm512_setzero_ps();
        const size_t base = (size_t)jj * kv_stride + (size_t)kvh * (size_t)hd;
        for (int64_t d = 0; d < hd; d += 16) {
            const __mmask16 mk = tail_mask(hd - d);
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, q + d), kv_load(a, a->k, base + (size_t)d, mk), s);
        }
        scores[jj] = _mm512_reduce_add_ps(s) * a->scale;
        mx = scores[jj] > mx ? scores[jj] : mx;
    }
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t jj = 0; jj < n_kv; jj += 16) {
        const __mmask16 mk = tail_mask(n_kv - jj);
        const __m512 e = kern_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, scores + jj), vmx));
        sum = _mm512_mask_add_ps(sum, mk, sum, e);
        _mm512_mask_storeu_ps(scores + jj, mk, e);
    }
    const float inv = 1.0f / _mm512_reduce_add_ps(sum);
    float *o = a->out + (t * a->n_head + h) * hd;
    for (int64_t d = 0; d < hd; d += 16) {
        const __mmask16 mk = tail_mask(hd - d);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t jj = 0; jj < n_kv; jj++)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(scores[jj]),
                                  kv_load(a, a->v, (size_t)jj * kv_stride + (size_t)kvh * (size_t)hd + (size_t)d, mk), acc);
        _mm512_mask_storeu_ps(o + d, mk, _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
    }
}

/* ---- attention for prompt evaluation (flash-attention style) --------------------------
 * One work item is a block of query tokens of one KV head: its R = tokens x G query rows
 * (the G heads that share the KV head) walk the keys in blocks of KERN_FA_BK with an
 * online softmax, so each key and value is converted from the cache once per block of
 * R rows instead of once per row, and no n_ctx score row is ever written.
 * Layouts (scratch, f32): Q^T [hd][Rp] pre-scaled, so a key broadcast times one vector of
 * Q^T gives 16 rows' scores; the scores S^T [BK][Rp] keep the 16 rows of a vector side by
 * side, so the softmax of 16 rows is elementwise; O [Rp][hdp] with rows = query rows. */
static inline int64_t fa_rows_pad(int64_t r) { return (r + 15) & ~(int64_t)15; }
static inline int64_t fa_hd_pad(int64_t hd) { return (hd + 15) & ~(int64_t)15; }

size_t kern_avx512_attn_block_scratch(int64_t rows, int64_t hd)
{
    const int64_t rp = fa_rows_pad(rows), hp = fa_hd_pad(hd);
    return (size_t)(hd * rp + KERN_FA_BK * hd + KERN_FA_BK * hp + KERN_FA_BK * rp + rp * hp + 4 * rp) * sizeof(float) + 256;
}

/* S^T[j][r..] for 4 keys x NV vectors of 16 rows. */
static inline __attribute__((always_inline)) void fa_qk(const float *qt, int64_t rp, const float *kf, int64_t hd,
                                                        int64_t j, int64_t rv, float *st, const int NV)
{
    __m512 acc[4][4];
    for (int jj = 0; jj < 4; jj++)
        for (int v = 0; v < NV; v++)
            acc[jj][v] = _mm512_setzero_ps();
    const float *k0 = kf + j * hd;
    for (int64_t d = 0; d < hd; d++) {
        __m512 qv[4];
        for (int v = 0; v < NV; v++)
            qv[v] = _mm512_load_ps(qt + d * rp + (rv + v) * 16);
        for (int jj = 0; jj < 4; jj++) {
            const __m512 kb = _mm512_set1_ps(k0[jj * hd + d]);
            for (int v = 0; v < NV; v++)
                acc[jj][v] = _mm512_fmadd_ps(kb, qv[v], acc[jj][v]);
        }
    }
    for (int jj = 0; jj < 4; jj++)
        for (int v = 0; v < NV; v++)
            _mm512_store_ps(st + (j + jj) * rp + (rv + v) * 16, acc[jj][v]);
}

/* O[r..r+3][dv*16 ..] = O * alpha + P V for 4 rows x ND vectors of 16 dims. */
static inline __attribute__((always_inline)) void fa_pv(const float *st, int64_t rp, const float *vf, int64_t hp,
                                                        int64_t nk, int64_t r, int64_t dv, const float *alpha,
                                                        float *o, const int ND)
{
    __m512 acc[4][4];
    for (int rr = 0; rr < 4; rr++)
        for (int v = 0; v < ND; v++)
            acc[rr][v] = _mm512_setzero_ps();
    for (int64_t j = 0; j < nk; j++) {
        __m512 vv[4];
        for (int v = 0; v < ND; v++)
            vv[v] = _mm512_load_ps(vf + j * hp + (dv + v) * 16);
        for (int rr = 0; rr < 4; rr++) {
            const __m512 p = _mm512_set1_ps(st[j * rp + r + rr]);
            for (int v = 0; v < ND; v++)
                acc[rr][v] = _mm512_fmadd_ps(p, vv[v], acc[rr][v]);
        }
    }
    for (int rr = 0; rr < 4; rr++) {
        const __m512 al = _mm512_set1_ps(alpha[r + rr]);
        float *orow = o + (r + rr) * hp + dv * 16;
        for (int v = 0; v < ND; v++)
            _mm512_store_ps(orow + v * 16, _mm512_fmadd_ps(_mm512_load_ps(orow + v * 16), al, acc[rr][v]));
    }
}

/* One cached row, converted to f32, into dst[0 .. lim) (zeros beyond hd). */
static inline void fa_load_row(const kern_attn_args *a, const void *base, size_t idx, float *dst, int64_t hd, int64_t lim)
{
    for (int64_t d = 0; d < lim; d += 16) {
        const __mmask16 mk = tail_mask(hd - d > 0 ? hd - d : 0);
        _mm512_mask_storeu_ps(dst + d, tail_mask(lim - d), kv_load(a, base, idx + (size_t)d, mk));
    }
}

void kern_avx512_attn_block(const kern_attn_args *a, int64_t kvh, int64_t t0, int64_t t1, void *scratch)
{
    const int64_t G = a->n_head / a->n_head_kv, hd = a->head_dim, hp = fa_hd_pad(hd);
    const int64_t R = (t1 - t0) * G, rp = fa_rows_pad(R), BK = KERN_FA_BK;
    const size_t kv_stride = (size_t)a->n_head_kv * (size_t)hd;
    float *qt = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *vf = qt + hd * rp;              /* hp and rp are multiples of 16: every array stays 64-byte aligned */
    float *st = vf + BK * hp;
    float *o = st + BK * rp;
    float *mrow = o + rp * hp, *lrow = mrow + rp, *alpha = lrow + rp;
    int32_t *qpos = (int32_t *)(alpha + rp);
    float *kf = (float *)(qpos + rp);      /* [BK][hd], read by scalar broadcasts only */

    for (int64_t r = 0; r < rp; r++) {
        const int64_t ti = r / G, g = r % G;
        if (r < R) {
            const float *qr = a->q + ((t0 + ti) * a->n_head + kvh * G + g) * hd;
            for (int64_t d = 0; d < hd; d++)
                qt[d * rp + r] = qr[d] * a->scale;
        } else {
            for (int64_t d = 0; d < hd; d++)
                qt[d * rp + r] = 0.0f;
        }
        /* padding rows see every key: finite values, never used */
        qpos[r] = r < R ? (int32_t)(a->pos0 + t0 + ti) : INT32_MAX;
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    memset(o, 0, (size_t)(rp * hp) * sizeof(float));

    const int64_t n_keys = a->pos0 + t1, first_q = a->pos0 + t0;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t kb = 0; kb < n_keys; kb += BK) {
        const int64_t nk = n_keys - kb < BK ? n_keys - kb : BK, nk4 = (nk + 3) & ~(int64_t)3;
        for (int64_t j = 0; j < nk4; j++) {
            const size_t idx = (size_t)(kb + j) * kv_stride + (size_t)kvh * (size_t)hd;
            if (j < nk) {
                fa_load_row(a, a->k, idx, kf + j * hd, hd, hd);
                fa_load_row(a, a->v, idx, vf + j * hp, hd, hp);
            } else {   /* zero keys and values: masked to probability 0, and 0 * V must not be NaN */
                memset(kf + j * hd, 0, (size_t)hd * sizeof(float));
                memset(vf + j * hp, 0, (size_t)hp * sizeof(float));
            }
        }
        for (int64_t j = 0; j < nk4; j += 4)
            for (int64_t rv = 0; rv < rp / 16; rv += 4) {
                switch (rp / 16 - rv >= 4 ? 4 : rp / 16 - rv) {
                case 1: fa_qk(qt, rp, kf, hd, j, rv, st, 1); break;
                case 2: fa_qk(qt, rp, kf, hd, j, rv, st, 2); break;
                case 3: fa_qk(qt, rp, kf, hd, j, rv, st, 3); break;
                default: fa_qk(qt, rp, kf, hd, j, rv, st, 4); break;
                }
            }
        /* causal mask (only the blocks that reach past the first query) and online softmax */
        const bool need_mask = kb + nk4 - 1 > first_q;
        for (int64_t rv = 0; rv < rp; rv += 16) {
            const __m512i qp = _mm512_load_si512(qpos + rv);
            __m512 mx = ninf;
            for (int64_t j = 0; j < nk4; j++) {
                __m512 s = _mm512_load_ps(st + j * rp + rv);
                if (need_mask || j >= nk) {
                    const __mmask16 ok = j < nk ? _mm512_cmp_epi32_mask(_mm512_set1_epi32((int32_t)(kb + j)), qp, _MM_CMPINT_LE)
                                                : (__mmask16)0;
                    s = _mm512_mask_blend_ps(ok, ninf, s);
                    _mm512_store_ps(st + j * rp + rv, s);
                }
                mx = _mm512_max_ps(mx, s);
            }
            const __m512 mold = _mm512_load_ps(mrow + rv);
            const __m512 mnew = _mm512_max_ps(mold, mx);   /* finite: key 0 is in every row's first block */
            const __mmask16 had = _mm512_cmp_ps_mask(mold, ninf, _CMP_NEQ_OQ);
            const __m512 al = _mm512_maskz_mov_ps(had, kern_exp512(_mm512_sub_ps(mold, mnew)));
            __m512 sum = _mm512_setzero_ps();
            for (int64_t j = 0; j < nk4; j++) {
                const __m512 s = _mm512_load_ps(st + j * rp + rv);
                const __mmask16 live = _mm512_cmp_ps_mask(s, ninf, _CMP_NEQ_OQ);
                const __m512 p = _mm512_maskz_mov_ps(live, kern_exp512(_mm512_sub_ps(s, mnew)));
                sum = _mm512_add_ps(sum, p);
                _mm512_store_ps(st + j * rp + rv, p);
            }
            _mm512_store_ps(lrow + rv, _mm512_fmadd_ps(_mm512_load_ps(lrow + rv), al, sum));
            _mm512_store_ps(mrow + rv, mnew);
            _mm512_store_ps(alpha + rv, al);
        }
        for (int64_t r = 0; r < rp; r += 4)
            for (int64_t dv = 0; dv < hp / 16; dv += 4) {
                switch (hp / 16 - dv >= 4 ? 4 : hp / 16 - dv) {
                case 1: fa_pv(st, rp, vf, hp, nk4, r, dv, alpha, o, 1); break;
                case 2: fa_pv(st, rp, vf, hp, nk4, r, dv, alpha, o, 2); break;
                case 3: fa_pv(st, rp, vf, hp, nk4, r, dv, alpha, o, 3); break;
                default: fa_pv(st, rp, vf, hp, nk4, r, dv, alpha, o, 4); break;
                }
            }
    }
    for (int64_t r = 0; r < R; r++) {
        const int64_t ti = r / G, g = r % G;
        float *out = a->out + ((t0 + ti) * a->n_head + kvh * G + g) * hd;
        const __m512 inv = _mm512_set1_ps(1.0f / lrow[r]);
        for (int64_t d = 0; d < hd; d += 16)
            _mm512_mask_storeu_ps(out + d, tail_mask(hd - d), _mm512_mul_ps(_mm512_load_ps(o + r * hp + d), inv));
    }
}

/* ---- rope (angles given) ------------------------------------------------------------ */

/* Products and sums rounded one at a time (no FMA), as the scalar rotation under
 * -ffp-contract=off: the same bits. */
void kern_avx512_rope_neox_rotate(float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float *cs)
{
    const int64_t half = rot_dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i += 16) {
            const __mmask16 mk = tail_mask(half - i);
            const __m512 c = _mm512_maskz_loadu_ps(mk, cs + i), s = _mm512_maskz_loadu_ps(mk, cs + half + i);
            const __m512 x0 = _mm512_maskz_loadu_ps(mk, v + i), x1 = _mm512_maskz_loadu_ps(mk, v + half + i);
            _mm512_mask_storeu_ps(v + i, mk, _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s)));
            _mm512_mask_storeu_ps(v + half + i, mk, _mm512_add_ps(_mm512_mul_ps(x0, s), _mm512_mul_ps(x1, c)));
        }
    }
}

/* ---- f32 -> f16 ---------------------------------------------------------------------- */

void kern_avx512_fp32_to_fp16(const float *x, uint16_t *y, int64_t i0, int64_t i1)
{
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 mk = tail_mask(i1 - i);
        const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        _mm256_mask_storeu_epi16(y + i, mk, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __mmask16 nan = _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
        while (nan) {   /* the hardware keeps the payload; the reference does not */
            const int l = __builtin_ctz(nan);
            y[i + l] = kern_fp32_to_fp16(x[i + l]);
            nan &= (__mmask16)(nan - 1);
        }
    }
}


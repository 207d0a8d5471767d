/* AMX matmul kernels.  Included twice: by amx_gemm_hw.c with the real tile intrinsics
 * and by amx_gemm_emu.c with the emulator's (AMX_SYM names the two symbol sets).
 *
 * int8 (Q8_0/Q4_0, gemm_q_ring): one K block of 32 per TDPBSUD (A = signed activations
 * 16 x 32 bytes, B = unsigned weights q + o, 8 rows x 64 bytes, already in VNNI order in
 * the panel); each block's C tile is stored and AVX-512 applies the block's scales into
 * fp32 accumulators (the per-block scales forbid accumulating across blocks in the tile).
 * Q4_0 panels are unpacked to bytes once per panel into scratch, reused for every 16-row
 * step of M.
 * bf16 (gemm_bf16): tmm0/tmm1 = A (two 16-row activation tiles), tmm2/tmm3 = B (two
 * 16-column weight tiles), tmm4..tmm7 = the 2x2 block of 16x16 accumulators; K chunks of
 * 32 (16 pairs) accumulate in the C tiles over the whole K. */

#include <string.h>

typedef struct amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

enum { CFG_NONE, CFG_INT8, CFG_BF16 };
static __thread int AMX_SYM(cur_cfg) = CFG_NONE;

static void AMX_SYM(configure)(int kind)
{
    if (AMX_SYM(cur_cfg) == kind)
        return;
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    if (kind == CFG_INT8) {
        cfg.colsb[0] = cfg.colsb[1] = 32;   /* A: 16 rows x one K block of 32 bytes */
        cfg.rows[2] = cfg.rows[3] = 8;      /* B: 8 rows of 4 k x 16 n */
    }
    AMX_LOADCFG(&cfg);
    AMX_SYM(cur_cfg) = kind;
}

static inline __mmask16 AMX_SYM(nmask)(int64_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* Rows of A per cache block: the block's A tiles (rows x row_bytes) stay in L2 (256 KiB)
 * while every panel of the worker's range streams past them; without it each panel re-read
 * all of A (1-2 MiB at M = 512) from L3.  A multiple of 32. */
static inline int64_t AMX_SYM(mblock)(int64_t row_bytes)
{
    int64_t r = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1) / 32 * 32;
    return r < 32 ? 32 : r;
}

static inline void AMX_SYM(prefetch)(const uint8_t *p, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

/* Unpacks the Q4_0 nibbles of panel p into [nb][8 groups][64] bytes of u4 values. */
static void AMX_SYM(unpack_i4)(const kern_weight *w, const uint8_t *panel, uint8_t *out)
{
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    for (int64_t b = 0; b < w->nb; b++)
        for (int g = 0; g < 4; g++) {
            const __m512i v = _mm512_loadu_si512(panel + b * 288 + g * 64);
            _mm512_store_si512(out + b * 512 + g * 64, _mm512_and_si512(v, lo4));
            _mm512_store_si512(out + b * 512 + (g + 4) * 64, _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4));
        }
}

/* The default int8 kernel ("ring"): one 16x16 C tile per step, its fp32 accumulators in 16
 * zmm registers for the whole K, and the tile work run several K blocks ahead of the
 * vector work.  Block j uses A/B tiles tmm(j&1)/tmm(2+(j&1)),
 * C tile tmm(4+(j&3)) and slot j&3 of a 4 KiB ring in scratch: it is issued (loads, zero,
 * TDPBSUD) `ahead` iterations before it is scaled, and stored `store_ahead` iterations
 * before.  Why: a vector load of memory that a TILESTORED just wrote waits until that
 * store retires and drains (tile stores are not forwarded), and the store itself waits on
 * its TDPBSUD; in the 1x1 kernel both sit in the same iteration as the load, so every
 * block paid the whole TDPBSUD -> store -> load latency (~120 cycles measured per block
 * step against ~24 cycles of vector work).  Here the stores a load reads are one or more
 * iterations old.  Needs store_ahead < ahead <= 3 (four C tiles); ahead 1, store_ahead 0
 * is the schedule of the earlier "1x1" kernel. */
static inline void AMX_SYM(ring_issue)(int64_t j, const int8_t *a0, const uint8_t *bsrc, size_t bstep)
{
    const int8_t *ap = a0 + j * 512;
    const uint8_t *bp = bsrc + (size_t)j * bstep;
    switch (j & 3) {
    case 0: _tile_loadd(0, ap, 32); _tile_loadd(2, bp, 64); _tile_zero(4); _tile_dpbsud(4, 0, 2); break;
    case 1: _tile_loadd(1, ap, 32); _tile_loadd(3, bp, 64); _tile_zero(5); _tile_dpbsud(5, 1, 3); break;
    case 2: _tile_loadd(0, ap, 32); _tile_loadd(2, bp, 64); _tile_zero(6); _tile_dpbsud(6, 0, 2); break;
    default: _tile_loadd(1, ap, 32); _tile_loadd(3, bp, 64); _tile_zero(7); _tile_dpbsud(7, 1, 3); break;
    }
}

static inline void AMX_SYM(ring_store)(int64_t j, int32_t *ring)
{
    int32_t *slot = ring + (j & 3) * 256;
    switch (j & 3) {
    case 0: _tile_stored(4, slot, 64); break;
    case 1: _tile_stored(5, slot, 64); break;
    case 2: _tile_stored(6, slot, 64); break;
    default: _tile_stored(7, slot, 64); break;
    }
}

#define AMX_RING_ROW(r)                                                                              \
    do {                                                                                             \
        const __m512 t_ = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb + (r) * 16)),       \
                                          _mm512_set1_ps(dap[(r) * nb]), _mm512_set1_ps(nop[(r) * nb])); \
        acc##r = _mm512_fmadd_ps(t_, dw, acc##r);                                                    \
    } while (0)

static void AMX_SYM(gemm_q_ring)(const kern_gemm_job *j, const kern_qact *a, int ahead, int store_ahead)
{
    const kern_weight *w = j->w;
    const bool i4 = w->fmt == KERN_WFMT_I4;
    uint8_t *sc = j->scratch;
    int32_t *ring = (int32_t *)sc;                 /* 4 slots x 16 x 16 int32 */
    uint8_t *unp = sc + 8192;                      /* nb x 512 */
    AMX_SYM(configure)(CFG_INT8);
    const int64_t nb = a->nb;
    const size_t doff = i4 ? 256 : 512;
    const int64_t MB = AMX_SYM(mblock)(a->k);
    for (int64_t mb = 0; mb < a->m; mb += MB) {
    const int64_t me = mb + MB < a->m ? mb + MB : a->m;
    for (int64_t p = j->p0; p < j->p1; p++) {
        const uint8_t *wp = j->wmat + (size_t)p * w->panel_bytes;
        const uint8_t *bsrc = wp;
        size_t bstep = w->blk_bytes;
        if (i4) {
            AMX_SYM(unpack_i4)(w, wp, unp);
            bsrc = unp;
            bstep = 512;
        }
        const int64_t n = p * KERN_PANEL;
        const __mmask16 nm = AMX_SYM(nmask)(w->n - n);
        for (int64_t m0 = mb; m0 < me; m0 += 16) {
            const bool first = m0 == mb && !i4;   /* the panel comes from memory: prefetch it */
            __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, acc4 = acc0, acc5 = acc0,
                   acc6 = acc0, acc7 = acc0, acc8 = acc0, acc9 = acc0, acc10 = acc0, acc11 = acc0, acc12 = acc0,
                   acc13 = acc0, acc14 = acc0, acc15 = acc0;
            const int8_t *a0 = a->qt + (size_t)(m0 / 16) * (size_t)nb * 512;
            for (int64_t b = 0; b < ahead && b < nb; b++)
                AMX_SYM(ring_issue)(b, a0, bsrc, bstep);
            for (int64_t b = 0; b < store_ahead && b < nb; b++)
                AMX_SYM(ring_store)(b, ring);
            for (int64_t b = 0; b < nb; b++) {
                if (first)   /* ahead of the tile loads, which run `ahead` blocks early */
                    AMX_SYM(prefetch)(wp + (b + 4 + ahead) * w->blk_bytes, w->blk_bytes);
                if (b + store_ahead < nb)
                    AMX_SYM(ring_store)(b + store_ahead, ring);
                if (b + ahead < nb)
                    AMX_SYM(ring_issue)(b + ahead, a0, bsrc, bstep);
                const int32_t *cb = ring + (b & 3) * 256;
                const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(wp + b * w->blk_bytes + doff)));
                const float *dap = a->d + m0 * nb + b, *nop = a->negoff + m0 * nb + b;
                AMX_RING_ROW(0); AMX_RING_ROW(1); AMX_RING_ROW(2); AMX_RING_ROW(3);
                AMX_RING_ROW(4); AMX_RING_ROW(5); AMX_RING_ROW(6); AMX_RING_ROW(7);
                AMX_RING_ROW(8); AMX_RING_ROW(9); AMX_RING_ROW(10); AMX_RING_ROW(11);
                AMX_RING_ROW(12); AMX_RING_ROW(13); AMX_RING_ROW(14); AMX_RING_ROW(15);
            }
            /* Rows beyond M hold zeros (scales 0) and are not stored. */
            const int rows = me - m0 >= 16 ? 16 : (int)(me - m0);
            const __m512 accs[16] = {acc0, acc1, acc2,  acc3,  acc4,  acc5,  acc6,  acc7,
                                     acc8, acc9, acc10, acc11, acc12, acc13, acc14, acc15};
            for (int r = 0; r < rows; r++)
                _mm512_mask_storeu_ps(kern_yrow(j, m0 + r) + n, nm, accs[r]);
        }
    }
    }
}
#undef AMX_RING_ROW

static void AMX_SYM(gemm_bf16)(const kern_gemm_job *j, const kern_bact *a)
{
    const kern_weight *w = j->w;
    float *cbuf = (float *)j->scratch;   /* 4 tiles x 16 x 16 */
    AMX_SYM(configure)(CFG_BF16);
    const int64_t MB = AMX_SYM(mblock)(a->k_pad * 2);
    for (int64_t mb = 0; mb < a->m; mb += MB) {
    const int64_t me = mb + MB < a->m ? mb + MB : a->m;
    for (int64_t p = j->p0; p < j->p1; p += 2) {
        const int np = j->p1 - p >= 2 ? 2 : 1;
        const uint8_t *wp0 = j->wmat + (size_t)p * w->panel_bytes;
        const uint8_t *wp1 = np == 2 ? wp0 + w->panel_bytes : wp0;
        for (int64_t m0 = mb; m0 < me; m0 += 32) {
            const int mt = me - m0 > 16 ? 2 : 1;
            const int rows_valid = me - m0 >= 32 ? 32 : (int)(me - m0);
            const uint16_t *a0 = a->xt + (size_t)(m0 / 16) * (size_t)w->nb * 512;
            const uint16_t *a1 = a0 + (size_t)w->nb * 512;
            _tile_zero(4);
            _tile_zero(5);
            _tile_zero(6);
            _tile_zero(7);
            for (int64_t c = 0; c < w->nb; c++) {
                if (m0 == mb) {
                    AMX_SYM(prefetch)(wp0 + (c + 2) * 1024, 1024);
                    if (np == 2)
                        AMX_SYM(prefetch)(wp1 + (c + 2) * 1024, 1024);
                }
                _tile_loadd(0, a0 + c * 512, 64);
                _tile_loadd(2, wp0 + c * 1024, 64);
                _tile_dpbf16ps(4, 0, 2);
                if (np == 2) {
                    _tile_loadd(3, wp1 + c * 1024, 64);
                    _tile_dpbf16ps(5, 0, 3);
                }
                if (mt == 2) {
                    _tile_loadd(1, a1 + c * 512, 64);
                    _tile_dpbf16ps(6, 1, 2);
                    if (np == 2)
                        _tile_dpbf16ps(7, 1, 3);
                }
            }
            _tile_stored(4, cbuf, 64);
            _tile_stored(5, cbuf + 256, 64);
            _tile_stored(6, cbuf + 512, 64);
            _tile_stored(7, cbuf + 768, 64);
            for (int r = 0; r < rows_valid; r++) {
                float *y = kern_yrow(j, m0 + r);
                const int64_t n = p * KERN_PANEL;
                const float *cr = cbuf + (r >= 16 ? 512 : 0) + (r & 15) * 16;
                _mm512_mask_storeu_ps(y + n, AMX_SYM(nmask)(w->n - n), _mm512_load_ps(cr));
                if (np == 2)
                    _mm512_mask_storeu_ps(y + n + 16, AMX_SYM(nmask)(w->n - n - 16), _mm512_load_ps(cr + 256));
            }
        }
    }
}
}

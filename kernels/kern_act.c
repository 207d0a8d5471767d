/* Activation buffers for the matmul kernels: Q8_0 rows (int8 + fp16-valued scales + block
 * sums) for the integer paths, BF16 rows for the BF16 paths. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kern_internal.h"

/* Not zeroed: the writers fill every row (padding included), so a large buffer's pages
 * are first touched by the workers that fill them, in parallel. */
static void *alloc64(size_t n)
{
    size_t r = (n + 63) & ~(size_t)63;
    return aligned_alloc(64, r ? r : 64);
}

void kern_qact_zero_rows(kern_qact *a, int64_t r0, int64_t r1)
{
    if (r1 <= r0)
        return;
    memset(a->q + r0 * a->k, 0, (size_t)(r1 - r0) * (size_t)a->k);
    memset(a->d + r0 * a->nb, 0, (size_t)(r1 - r0) * (size_t)a->nb * sizeof(float));
    memset(a->negoff + r0 * a->nb, 0, (size_t)(r1 - r0) * (size_t)a->nb * sizeof(float));
    memset(a->s + r0 * a->nb, 0, (size_t)(r1 - r0) * (size_t)a->nb * sizeof(int32_t));
}

void kern_bact_zero_rows(kern_bact *a, int64_t r0, int64_t r1)
{
    if (r1 > r0)
        memset(a->x + r0 * a->k_pad, 0, (size_t)(r1 - r0) * (size_t)a->k_pad * sizeof(uint16_t));
}

void *kern_ws_get(kern_ws *ws, int slot, size_t bytes)
{
    if (slot < 0 || slot >= KERN_WS_SLOTS)
        return NULL;
    if (ws->p[slot] && ws->n[slot] >= bytes)
        return ws->p[slot];
    free(ws->p[slot]);
    ws->n[slot] = 0;
    size_t want = bytes + bytes / 4;   /* some headroom: sizes vary from call to call */
    ws->p[slot] = alloc64(want);
    if (ws->p[slot])
        ws->n[slot] = want;
    return ws->p[slot];
}

void kern_ws_free(kern_ws *ws)
{
    for (int i = 0; i < KERN_WS_SLOTS; i++)
        free(ws->p[i]);
    memset(ws, 0, sizeof *ws);
}

static void *get(kern_ws *ws, int slot, size_t bytes)
{
    return ws ? kern_ws_get(ws, slot, bytes) : alloc64(bytes);
}

adg_error *kern_qact_alloc_ws(kern_qact *a, int64_t m, int64_t k, kern_ws *ws, int slot)
{
    memset(a, 0, sizeof *a);
    a->m = m;
    a->m_pad = (m + 31) / 32 * 32;
    a->k = k;
    a->nb = k / KERN_KB;
    a->ws = ws;
    a->slot = slot;
    size_t rows = (size_t)a->m_pad;
    a->q = get(ws, slot, rows * (size_t)k);
    a->d = get(ws, slot + 1, rows * (size_t)a->nb * sizeof(float));
    a->negoff = get(ws, slot + 2, rows * (size_t)a->nb * sizeof(float));
    a->s = get(ws, slot + 3, rows * (size_t)a->nb * sizeof(int32_t));
    if (!a->q || !a->d || !a->negoff || !a->s) {
        kern_qact_free(a);
        return adg_error_new(ADG_E_NOMEM, "out of memory for %lld activation rows of %lld", (long long)m, (long long)k);
    }
    kern_qact_zero_rows(a, m, a->m_pad);
    return NULL;
}

adg_error *kern_qact_alloc(kern_qact *a, int64_t m, int64_t k)
{
    return kern_qact_alloc_ws(a, m, k, NULL, 0);
}

void kern_qact_free(kern_qact *a)
{
    if (!a->ws) {
        free(a->qt);
        free(a->q);
        free(a->d);
        free(a->negoff);
        free(a->s);
    }
    memset(a, 0, sizeof *a);
}

static void quantize_row_scalar(const float *x, int8_t *q, float *d, int32_t *s, int64_t k)
{
    for (int64_t b = 0; b < k / KERN_KB; b++) {
        kern_block_q8_0 blk;
        kern_quantize_row_q8_0(x + b * KERN_KB, &blk, KERN_KB);
        int32_t sum = 0;
        for (int j = 0; j < KERN_KB; j++) {
            q[b * KERN_KB + j] = blk.qs[j];
            sum += blk.qs[j];
        }
        d[b] = kern_fp16_to_fp32(blk.d);
        s[b] = sum;
    }
}

void kern_qact_rows(kern_qact *a, const float *x, int64_t r0, int64_t r1, int off, bool use_avx512)
{
    a->off = off;
    for (int64_t r = r0; r < r1; r++) {
        int8_t *q = a->q + r * a->k;
        float *d = a->d + r * a->nb;
        int32_t *s = a->s + r * a->nb;
        if (use_avx512)
            kern_avx512_quantize_row_q8_0(x + r * a->k, q, d, s, a->k);
        else
            quantize_row_scalar(x + r * a->k, q, d, s, a->k);
        float *no = a->negoff + r * a->nb;
        for (int64_t b = 0; b < a->nb; b++)
            no[b] = (float)(-off * s[b]) * d[b];
    }
}

adg_error *kern_bact_alloc_ws(kern_bact *a, int64_t m, int64_t k, int64_t k_pad, kern_ws *ws, int slot)
{
    memset(a, 0, sizeof *a);
    a->m = m;
    a->m_pad = (m + 31) / 32 * 32;
    a->k = k;
    a->k_pad = k_pad;
    a->ws = ws;
    a->slot = slot;
    a->x = get(ws, slot, (size_t)a->m_pad * (size_t)k_pad * sizeof(uint16_t));
    if (!a->x)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %lld activation rows of %lld", (long long)m, (long long)k);
    kern_bact_zero_rows(a, m, a->m_pad);
    return NULL;
}

adg_error *kern_bact_alloc(kern_bact *a, int64_t m, int64_t k, int64_t k_pad)
{
    return kern_bact_alloc_ws(a, m, k, k_pad, NULL, 0);
}

void kern_bact_free(kern_bact *a)
{
    if (!a->ws) {
        free(a->xt);
        free(a->x);
    }
    memset(a, 0, sizeof *a);
}

void kern_bact_rows(kern_bact *a, const float *x, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        kern_fp32_to_bf16_row(x + r * a->k, a->x + r * a->k_pad, a->k);
        memset(a->x + r * a->k_pad + a->k, 0, (size_t)(a->k_pad - a->k) * sizeof(uint16_t));
    }
}

adg_error *kern_qact_alloc_tiles(kern_qact *a)
{
    if (!a->qt && !(a->qt = get(a->ws, a->slot + 4, (size_t)a->m_pad * (size_t)a->k)))
        return adg_error_new(ADG_E_NOMEM, "out of memory for %lld activation rows in tile order", (long long)a->m_pad);
    return NULL;
}

void kern_qact_pack_tiles(kern_qact *a, int64_t t0, int64_t t1)
{
    for (int64_t t = t0; t < t1; t++)
        for (int64_t b = 0; b < a->nb; b++) {
            int8_t *dst = a->qt + ((size_t)t * (size_t)a->nb + (size_t)b) * 512;
            for (int r = 0; r < 16; r++)
                memcpy(dst + r * 32, a->q + (t * 16 + r) * a->k + b * KERN_KB, 32);
        }
}

adg_error *kern_bact_alloc_tiles(kern_bact *a)
{
    if (!a->xt && !(a->xt = get(a->ws, a->slot + 1, (size_t)a->m_pad * (size_t)a->k_pad * sizeof(uint16_t))))
        return adg_error_new(ADG_E_NOMEM, "out of memory for %lld activation rows in tile order", (long long)a->m_pad);
    return NULL;
}

void kern_bact_pack_tiles(kern_bact *a, int64_t t0, int64_t t1)
{
    const int64_t nc = a->k_pad / KERN_KB;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t c = 0; c < nc; c++) {
            uint16_t *dst = a->xt + ((size_t)t * (size_t)nc + (size_t)c) * 512;
            for (int r = 0; r < 16; r++)
                memcpy(dst + r * 32, a->x + (t * 16 + r) * a->k_pad + c * KERN_KB, 64);
        }
}

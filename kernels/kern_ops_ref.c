/* Scalar reference kernels: the ground truth the other implementations are tested
 * against.  They read weights in ggml's own layout (RAW), never the repacked panels, so
 * a repacking bug cannot hide in both sides of a comparison. */
#include <math.h>
#include <string.h>

#include "kernels/kern_internal.h"

void kern_ref_gemm_q(const kern_gemm_job *j, const kern_qact *a)
{
    const kern_weight *w = j->w;
    const int64_t n0 = j->p0 * KERN_PANEL, n1 = j->p1 * KERN_PANEL < w->n ? j->p1 * KERN_PANEL : w->n;
    const size_t rs = w->row_bytes;
    const int off = a->off;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = j->wmat + (size_t)n * rs;
        for (int64_t m = 0; m < a->m; m++) {
            const int8_t *qa = a->q + m * a->k;
            float acc = 0.0f;
            for (int64_t b = 0; b < a->nb; b++) {
                int32_t sum = 0;
                float dw;
                if (w->ctype == KERN_TYPE_Q8_0) {
                    const kern_block_q8_0 *blk = (const kern_block_q8_0 *)row + b;
                    for (int i = 0; i < KERN_KB; i++)
                        sum += qa[b * KERN_KB + i] * blk->qs[i];
                    dw = kern_fp16_to_fp32(blk->d);
                } else {
                    const kern_block_q4_0 *blk = (const kern_block_q4_0 *)row + b;
                    for (int i = 0; i < 16; i++) {
                        sum += qa[b * KERN_KB + i] * ((blk->qs[i] & 0x0F) - 8);
                        sum += qa[b * KERN_KB + i + 16] * ((blk->qs[i] >> 4) - 8);
                    }
                    dw = kern_fp16_to_fp32(blk->d);
                }
                const int32_t s = a->s[m * a->nb + b];
                const float t = fmaf((float)(sum + off * s), a->d[m * a->nb + b], a->negoff[m * a->nb + b]);
                acc = fmaf(t, dw, acc);
            }
            kern_yrow(j, m)[n] = acc;
        }
    }
}

void kern_ref_gemm_f(const kern_gemm_job *j, const float *x, int64_t m_rows)
{
    const kern_weight *w = j->w;
    const int64_t n0 = j->p0 * KERN_PANEL, n1 = j->p1 * KERN_PANEL < w->n ? j->p1 * KERN_PANEL : w->n;
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = j->wmat + (size_t)n * w->row_bytes;
        for (int64_t m = 0; m < m_rows; m++) {
            const float *xm = x + m * w->k;
            float acc = 0.0f;
            if (w->ctype == KERN_TYPE_BF16) {
                const uint16_t *wr = (const uint16_t *)row;
                for (int64_t k = 0; k < w->k; k++)
                    acc += kern_bf16_to_fp32(kern_fp32_to_bf16(xm[k])) * kern_bf16_to_fp32(wr[k]);
            } else {
                const float *wr = (const float *)row;
                for (int64_t k = 0; k < w->k; k++)
                    acc += xm[k] * wr[k];
            }
            kern_yrow(j, m)[n] = acc;
        }
    }
}

void kern_ref_rmsnorm(const float *x, const float *w, int64_t r0, int64_t r1, int64_t k, float eps, float *y)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * k;
        double ss = 0;
        for (int64_t i = 0; i < k; i++)
            ss += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(ss / (double)k + eps));
        float *yr = y + r * k;
        for (int64_t i = 0; i < k; i++)
            yr[i] = xr[i] * scale * (w ? w[i] : 1.0f);
    }
}

void kern_ref_softmax(float *x, int64_t r0, int64_t r1, int64_t n, float scale)
{
    for (int64_t r = r0; r < r1; r++) {
        float *xr = x + r * n;
        float mx = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            mx = fmaxf(mx, xr[i] * scale);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) {
            xr[i] = expf(xr[i] * scale - mx);
            sum += xr[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++)
            xr[i] *= inv;
    }
}

void kern_ref_silu_mul(const float *g, const float *u, int64_t i0, int64_t i1, float *out)
{
    for (int64_t i = i0; i < i1; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Angles in double: pos * base^(-2i/d) loses several bits in float at long contexts. */
void kern_ref_rope_neox(float *x, int64_t t0, int64_t t1, int64_t n_heads, int64_t head_dim, int64_t rot_dim,
                        const int32_t *pos, float base)
{
    const int64_t half = rot_dim / 2;
    for (int64_t t = t0; t < t1; t++) {
        for (int64_t i = 0; i < half; i++) {
            const double theta = (double)pos[t] * pow((double)base, -2.0 * (double)i / (double)rot_dim);
            const float c = (float)cos(theta), s = (float)sin(theta);
            for (int64_t h = 0; h < n_heads; h++) {
                float *v = x + (t * n_heads + h) * head_dim;
                const float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * c - x1 * s;
                v[i + half] = x0 * s + x1 * c;
            }
        }
    }
}

/* The angles of one position, as kern_ref_rope_neox computes them: cs[i] = cos, cs[half + i]
 * = sin of pos * base^(-2i/rot_dim). */
void kern_ref_rope_neox_angles(int32_t pos, int64_t rot_dim, float base, float *cs)
{
    const int64_t half = rot_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const double theta = (double)pos * pow((double)base, -2.0 * (double)i / (double)rot_dim);
        cs[i] = (float)cos(theta);
        cs[half + i] = (float)sin(theta);
    }
}

void kern_ref_rope_neox_rotate(float *x, int64_t n_heads, int64_t head_dim, int64_t rot_dim, const float *cs)
{
    const int64_t half = rot_dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            const float c = cs[i], s = cs[half + i];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

static inline float kv_at(const kern_attn_args *a, const void *base, int64_t j, int64_t kvh, int64_t d)
{
    size_t idx = ((size_t)j * (size_t)a->n_head_kv + (size_t)kvh) * (size_t)a->head_dim + (size_t)d;
    return a->kv_type == KERN_TYPE_F16 ? kern_fp16_to_fp32(((const uint16_t *)base)[idx]) : ((const float *)base)[idx];
}

void kern_ref_attn_row(const kern_attn_args *a, int64_t t, int64_t h, float *scores)
{
    const int64_t kvh = h / (a->n_head / a->n_head_kv);
    const int64_t n_kv = a->pos0 + t + 1;
    const float *q = a->q + (t * a->n_head + h) * a->head_dim;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n_kv; j++) {
        float dot = 0;
        for (int64_t d = 0; d < a->head_dim; d++)
            dot += q[d] * kv_at(a, a->k, j, kvh, d);
        scores[j] = dot * a->scale;
        mx = fmaxf(mx, scores[j]);
    }
    double sum = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    float *o = a->out + (t * a->n_head + h) * a->head_dim;
    for (int64_t d = 0; d < a->head_dim; d++)
        o[d] = 0;
    for (int64_t j = 0; j < n_kv; j++) {
        const float p = (float)(scores[j] / sum);
        for (int64_t d = 0; d < a->head_dim; d++)
            o[d] += p * kv_at(a, a->v, j, kvh, d);
    }
}

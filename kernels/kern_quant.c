/* Block quantization formats byte-identical to ggml's reference quantizers.
 * This file is compiled with -ffp-contract=off (kernels/CMakeLists.txt): a fused
 * multiply-add would change x*id + 8.5 in its last bit and break byte identity. */
#include "kernels/kern_quant.h"

#include <assert.h>
#include <math.h>
#include <string.h>
#include <strings.h>

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const struct {
    kern_type type;
    const char *name;
    size_t block, bytes;
} types[] = {
    {KERN_TYPE_F32, "f32", 1, 4},
    {KERN_TYPE_F16, "f16", 1, 2},
    {KERN_TYPE_BF16, "bf16", 1, 2},
    {KERN_TYPE_Q4_0, "q4_0", KERN_QK4_0, sizeof(kern_block_q4_0)},
    {KERN_TYPE_Q8_0, "q8_0", KERN_QK8_0, sizeof(kern_block_q8_0)},
};

static int type_index(int t)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if ((int)types[i].type == t)
            return (int)i;
    return -1;
}

bool kern_type_valid(int type) { return type_index(type) >= 0; }

const char *kern_type_name(kern_type t)
{
    int i = type_index(t);
    return i < 0 ? "unknown" : types[i].name;
}

bool kern_type_parse(const char *s, kern_type *out)
{
    for (size_t i = 0; s && i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(s, types[i].name) == 0) {
            *out = types[i].type;
            return true;
        }
    return false;
}

size_t kern_type_block_size(kern_type t)
{
    int i = type_index(t);
    return i < 0 ? 0 : types[i].block;
}

size_t kern_type_block_bytes(kern_type t)
{
    int i = type_index(t);
    return i < 0 ? 0 : types[i].bytes;
}

bool kern_type_is_quantized(kern_type t) { return t == KERN_TYPE_Q4_0 || t == KERN_TYPE_Q8_0; }

size_t kern_row_size(kern_type t, int64_t k)
{
    int i = type_index(t);
    if (i < 0 || k < 0 || k % (int64_t)types[i].block)
        return 0;
    return (size_t)(k / (int64_t)types[i].block) * types[i].bytes;
}

adg_error *kern_row_check(kern_type t, int64_t k)
{
    int i = type_index(t);
    if (i < 0)
        return adg_error_new(ADG_E_UNSUPPORTED, "tensor type %d is not one of f32, f16, bf16, q4_0, q8_0", (int)t);
    if (k < 0)
        return adg_error_new(ADG_E_USAGE, "row length %lld is negative", (long long)k);
    if (k % (int64_t)types[i].block)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "k = %lld is not a multiple of %s's block of %zu",
                                            (long long)k, types[i].name, types[i].block),
                              "use a row length that is a multiple of %zu, or a float type (f16/bf16/f32)",
                              types[i].block);
    return NULL;
}

/* ggml_compute_fp32_to_fp16 (the FP16 library's bit-exact RNE conversion): scale into the
 * fp16 range with two multiplies so the FPU does the rounding, then rebuild the bits. */
uint16_t kern_fp32_to_fp16(float f)
{
    const float scale_to_inf = f32_from(UINT32_C(0x77800000));
    const float scale_to_zero = f32_from(UINT32_C(0x08800000));
    float base = (fabsf(f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & UINT32_C(0x80000000);
    uint32_t bias = shl1_w & UINT32_C(0xFF000000);
    if (bias < UINT32_C(0x71000000))
        bias = UINT32_C(0x71000000);
    base = f32_from((bias >> 1) + UINT32_C(0x07800000)) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & UINT32_C(0x00007C00);
    const uint32_t mantissa_bits = bits & UINT32_C(0x00000FFF);
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > UINT32_C(0xFF000000) ? UINT16_C(0x7E00) : nonsign));
}

float kern_fp16_to_fp32(uint16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & UINT32_C(0x80000000);
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = UINT32_C(0xE0) << 23;
    const float exp_scale = f32_from(UINT32_C(0x7800000));
    const float normalized = f32_from((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = UINT32_C(126) << 23;
    const float denormalized = f32_from((two_w >> 17) | magic_mask) - 0.5f;
    const uint32_t denormalized_cutoff = UINT32_C(1) << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? f32_bits(denormalized) : f32_bits(normalized));
    return f32_from(result);
}

uint16_t kern_fp32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)      /* NaN: keep the payload's top, force quiet */
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

float kern_bf16_to_fp32(uint16_t h) { return f32_from((uint32_t)h << 16); }

void kern_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = kern_fp32_to_fp16(x[i]);
}

void kern_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = kern_fp16_to_fp32(x[i]);
}

void kern_fp32_to_bf16_row(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = kern_fp32_to_bf16(x[i]);
}

void kern_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = kern_bf16_to_fp32(x[i]);
}

void kern_quantize_row_q8_0(const float *x, kern_block_q8_0 *y, int64_t k)
{
    assert(k % KERN_QK8_0 == 0);
    const int64_t nb = k / KERN_QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * KERN_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < KERN_QK8_0; j++) {
            const float v = fabsf(xb[j]);
            amax = amax > v ? amax : v;     /* ggml's MAX(): a NaN propagates like there */
        }
        const float d = amax / ((1 << 7) - 1);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_fp32_to_fp16(d);
        for (int j = 0; j < KERN_QK8_0; j++) {
            const float x0 = xb[j] * id;
            y[i].qs[j] = (int8_t)roundf(x0);
        }
    }
}

void kern_quantize_row_q4_0(const float *x, kern_block_q4_0 *y, int64_t k)
{
    assert(k % KERN_QK4_0 == 0);
    const int64_t nb = k / KERN_QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * KERN_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < KERN_QK4_0; j++) {
            const float v = xb[j];
            if (amax < fabsf(v)) {
                amax = fabsf(v);
                max = v;
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = kern_fp32_to_fp16(d);
        for (int j = 0; j < KERN_QK4_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[KERN_QK4_0 / 2 + j] * id;
            const int8_t t0 = (int8_t)(x0 + 8.5f);
            const int8_t t1 = (int8_t)(x1 + 8.5f);
            const uint8_t xi0 = (uint8_t)(t0 < 15 ? t0 : 15);
            const uint8_t xi1 = (uint8_t)(t1 < 15 ? t1 : 15);
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

void kern_dequantize_row_q8_0(const kern_block_q8_0 *x, float *y, int64_t k)
{
    const int64_t nb = k / KERN_QK8_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = kern_fp16_to_fp32(x[i].d);
        for (int j = 0; j < KERN_QK8_0; j++)
            y[i * KERN_QK8_0 + j] = x[i].qs[j] * d;
    }
}

void kern_dequantize_row_q4_0(const kern_block_q4_0 *x, float *y, int64_t k)
{
    const int64_t nb = k / KERN_QK4_0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = kern_fp16_to_fp32(x[i].d);
        for (int j = 0; j < KERN_QK4_0 / 2; j++) {
            const int x0 = (x[i].qs[j] & 0x0F) - 8;
            const int x1 = (x[i].qs[j] >> 4) - 8;
            y[i * KERN_QK4_0 + j] = x0 * d;
            y[i * KERN_QK4_0 + j + KERN_QK4_0 / 2] = x1 * d;
        }
    }
}

adg_error *kern_quantize_row(kern_type t, const float *src, void *dst, int64_t k)
{
    adg_error *e = kern_row_check(t, k);
    if (e)
        return e;
    switch (t) {
    case KERN_TYPE_F32: memcpy(dst, src, (size_t)k * sizeof(float)); break;
    case KERN_TYPE_F16: kern_fp32_to_fp16_row(src, dst, k); break;
    case KERN_TYPE_BF16: kern_fp32_to_bf16_row(src, dst, k); break;
    case KERN_TYPE_Q4_0: kern_quantize_row_q4_0(src, dst, k); break;
    case KERN_TYPE_Q8_0: kern_quantize_row_q8_0(src, dst, k); break;
    }
    return NULL;
}

adg_error *kern_dequantize_row(kern_type t, const void *src, float *dst, int64_t k)
{
    adg_error *e = kern_row_check(t, k);
    if (e)
        return e;
    switch (t) {
    case KERN_TYPE_F32: memcpy(dst, src, (size_t)k * sizeof(float)); break;
    case KERN_TYPE_F16: kern_fp16_to_fp32_row(src, dst, k); break;
    case KERN_TYPE_BF16: kern_bf16_to_fp32_row(src, dst, k); break;
    case KERN_TYPE_Q4_0: kern_dequantize_row_q4_0(src, dst, k); break;
    case KERN_TYPE_Q8_0: kern_dequantize_row_q8_0(src, dst, k); break;
    }
    return NULL;
}

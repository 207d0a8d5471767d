/* Tensor element types and block quantization formats, byte-identical to ggml/GGUF.
 *
 * The numeric values of kern_type are ggml's type ids, so GGUF readers and writers can
 * store them directly.  Block layouts:
 *   Q8_0: 32 elements -> { fp16 d; int8 qs[32]; }            34 bytes, d = amax/127,
 *         q = roundf(x/d) (half away from zero).
 *   Q4_0: 32 elements -> { fp16 d; uint8 qs[16]; }           18 bytes, d = max/-8 with max
 *         the signed value of largest magnitude, q = min(15, (int8)(x/d + 8.5)); element j
 *         in the low nibble of byte j, element j+16 in the high nibble; x = d*(q-8).
 *   F16 (IEEE binary16), BF16 (round to nearest even, NaN kept quiet), F32.
 * Quantizers take whole rows: k must be a multiple of the type's block size. */
#ifndef KERN_QUANT_H
#define KERN_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

typedef enum kern_type {
    KERN_TYPE_F32 = 0,
    KERN_TYPE_F16 = 1,
    KERN_TYPE_Q4_0 = 2,
    KERN_TYPE_Q8_0 = 8,
    KERN_TYPE_BF16 = 30,
} kern_type;

#define KERN_QK4_0 32
#define KERN_QK8_0 32

typedef struct kern_block_q8_0 {
    uint16_t d;              /* fp16 scale */
    int8_t qs[KERN_QK8_0];
} kern_block_q8_0;

typedef struct kern_block_q4_0 {
    uint16_t d;              /* fp16 scale */
    uint8_t qs[KERN_QK4_0 / 2];
} kern_block_q4_0;

_Static_assert(sizeof(kern_block_q8_0) == 34, "Q8_0 block must be 34 bytes as in ggml");
_Static_assert(sizeof(kern_block_q4_0) == 18, "Q4_0 block must be 18 bytes as in ggml");

/* True for the five types above. */
bool kern_type_valid(int type);
/* "f32", "f16", "bf16", "q4_0", "q8_0"; "unknown" otherwise. */
const char *kern_type_name(kern_type t);
/* Case-insensitive parse of the names above. */
bool kern_type_parse(const char *s, kern_type *out);
/* Elements per block (32 for Q4_0/Q8_0, 1 for float types); 0 for an unknown type. */
size_t kern_type_block_size(kern_type t);
/* Bytes per block (34, 18, 4, 2, 2); 0 for an unknown type. */
size_t kern_type_block_bytes(kern_type t);
bool kern_type_is_quantized(kern_type t);
/* Bytes of a row of k elements; 0 when k is not a multiple of the block size. */
size_t kern_row_size(kern_type t, int64_t k);
/* Checks that a row of k elements of type t is representable; the error names the
 * constraint ("k = 100 is not a multiple of q4_0's block of 32"). */
adg_error *kern_row_check(kern_type t, int64_t k);

/* Conversions, identical to ggml's portable versions (round to nearest even). */
uint16_t kern_fp32_to_fp16(float f);
float kern_fp16_to_fp32(uint16_t h);
uint16_t kern_fp32_to_bf16(float f);
float kern_bf16_to_fp32(uint16_t h);

void kern_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n);
void kern_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n);
void kern_fp32_to_bf16_row(const float *x, uint16_t *y, int64_t n);
void kern_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n);

/* ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref; k % 32 == 0 (checked by the
 * generic entry points below, asserted here). */
void kern_quantize_row_q8_0(const float *x, kern_block_q8_0 *y, int64_t k);
void kern_quantize_row_q4_0(const float *x, kern_block_q4_0 *y, int64_t k);
void kern_dequantize_row_q8_0(const kern_block_q8_0 *x, float *y, int64_t k);
void kern_dequantize_row_q4_0(const kern_block_q4_0 *x, float *y, int64_t k);

/* Any type: converts k floats into kern_row_size(t, k) bytes at dst, and back. */
adg_error *kern_quantize_row(kern_type t, const float *src, void *dst, int64_t k);
adg_error *kern_dequantize_row(kern_type t, const void *src, float *dst, int64_t k);

#endif

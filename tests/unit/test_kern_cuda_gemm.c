/* The int8 tensor-core prompt GEMM (kern_gemm_i8_*, kern_moe_gemm_i8_*).
 *
 * Without a GPU: the kernel choice (kern_cuda_gemm_plan_make), and a host emulator of the
 * kernel that stages the bytes, builds every lane's mma.m16n8k32 fragments and ldmatrix
 * results through the same index maps as the CUDA source (kern_gemm_i8_map.h), multiplies
 * them with the PTX ISA's fragment layout (written out independently here), scales like
 * the kernel and stores through the kernel's C map.  Its output must equal the CPU
 * reference formula bit for bit; staging buffers start as garbage, so a read of a byte the
 * kernel never staged shows.
 *
 * With a GPU (sm_80 code): the kernels themselves against the same formula, bit for bit,
 * over tiles, pipeline depths, the aligned and the 2-byte-load weight paths, partial tiles
 * and the grouped expert form.  Prints SKIP with the reason elsewhere. */
#include "adg_test.h"

#include <math.h>
#include <string.h>

#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kern_cuda_internal.h"
#include "kernels/cuda/kern_gemm_f16mma_map.h"
#include "kernels/cuda/kern_gemm_i8_map.h"
#include "kernels/cuda/kern_gemm_wgmma_map.h"
#include "probe/fatbin.h"

/* ---- data and the CPU reference ------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rnd(uint64_t *s) { return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* m rows of k in Q4_0 (wt 4) or Q8_0 (wt 8), at `pad` bytes into the returned buffer. */
static uint8_t *make_w(int wt, int64_t m, int64_t k, uint64_t *st, size_t pad)
{
    kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
    size_t rs = kern_row_size(t, k);
    uint8_t *buf = malloc(pad + rs * (size_t)m);
    float *row = malloc((size_t)k * sizeof *row);
    assert_non_null(buf);
    assert_non_null(row);
    memset(buf, 0x5a, pad);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t i = 0; i < k; i++)
            row[i] = rnd(st) * (1.0f + (float)(r % 7));
        ADG_ASSERT_OK(kern_quantize_row(t, row, buf + pad + rs * (size_t)r, k));
    }
    free(row);
    return buf;
}

/* n rows of x quantised to q8_0 as the CPU does: int8 [n][k], steps [n][k/32]. */
static void make_x(int64_t n, int64_t k, uint64_t *st, int8_t **q, float **d)
{
    int64_t nb = k / 32;
    *q = malloc((size_t)(n * k));
    *d = malloc((size_t)(n * nb) * sizeof **d);
    float *x = malloc((size_t)k * sizeof *x);
    kern_block_q8_0 *blk = malloc((size_t)nb * sizeof *blk);
    assert_true(*q && *d && x && blk);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < k; j++)
            x[j] = rnd(st) * (j % 5 == 0 ? 4.0f : 1.0f);
        kern_quantize_row_q8_0(x, blk, k);
        for (int64_t b = 0; b < nb; b++) {
            memcpy(*q + i * k + b * 32, blk[b].qs, 32);
            (*d)[i * nb + b] = kern_fp16_to_fp32(blk[b].d);
        }
    }
    free(x);
    free(blk);
}

/* The CPU reference kernel's arithmetic (kern_ref_gemm_q with q8_0 activations): per
 * block the integer dot product, t = sumi * dX (one rounding), acc = fma(t, dW, acc),
 * blocks in order.  y[n][m]. */
static void ref_gemm(int wt, const uint8_t *w, int64_t m, int64_t k, const int8_t *xq, const float *xd,
                     const int64_t *xrow, int64_t n, float *y)
{
    const int64_t nb = k / 32;
    const size_t bsz = wt == 4 ? 18 : 34;
    for (int64_t i = 0; i < n; i++) {
        const int64_t xi = xrow ? xrow[i] : i;
        for (int64_t r = 0; r < m; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = w + ((size_t)r * (size_t)nb + (size_t)b) * bsz;
                const int8_t *qa = xq + xi * k + b * 32;
                uint16_t h;
                memcpy(&h, blk, 2);
                int32_t sum = 0;
                if (wt == 8) {
                    for (int j = 0; j < 32; j++)
                        sum += qa[j] * (int8_t)blk[2 + j];
                } else {
                    for (int j = 0; j < 16; j++) {
                        sum += qa[j] * ((blk[2 + j] & 15) - 8);
                        sum += qa[j + 16] * ((blk[2 + j] >> 4) - 8);
                    }
                }
                const float t = (float)sum * xd[xi * nb + b];
                acc = fmaf(t, kern_fp16_to_fp32(h), acc);
            }
            y[i * m + r] = acc;
        }
    }
}

/* Exact equality (-0 == +0); prints the first difference. */
static void expect_same(const char *what, const float *got, const float *want, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!(got[i] == want[i])) {
            fail_msg("%s: element %lld is %.9g, the reference %.9g", what, (long long)i, (double)got[i],
                     (double)want[i]);
        }
}

/* ---- the kernel choice ---------------------------------------------------------------- */

static const kern_cuda_gemm_caps h100 = {.code_arch = 90, .sm_count = 132, .smem_optin = 232448,
                                         .can_raise_smem = true};

static void test_plan(void **state)
{
    (void)state;
    kern_cuda_gemm_kind k;
    assert_true(kern_cuda_gemm_kind_parse("mma", &k) && k == KERN_CUDA_GEMM_MMA);
    assert_true(kern_cuda_gemm_kind_parse("wmma", &k) && k == KERN_CUDA_GEMM_WMMA);
    assert_true(kern_cuda_gemm_kind_parse("auto", &k) && k == KERN_CUDA_GEMM_AUTO);
    assert_false(kern_cuda_gemm_kind_parse("MMA", &k));
    assert_false(kern_cuda_gemm_kind_parse(NULL, &k));
    assert_string_equal(kern_cuda_gemm_kind_name(KERN_CUDA_GEMM_MMA), "mma");

    /* tile codes and names */
    assert_int_equal(kern_cuda_gemm_n_tiles(), GI8_NVAR);
    assert_int_equal(kern_cuda_gemm_tile_parse("auto"), 0);
    assert_int_equal(kern_cuda_gemm_tile_parse("64"), 1);
    assert_int_equal(kern_cuda_gemm_tile_parse("128"), 2);
    assert_int_equal(kern_cuda_gemm_tile_parse("v2"), 3);
    assert_int_equal(kern_cuda_gemm_tile_parse("128x64/32x64"), 3);
    assert_int_equal(kern_cuda_gemm_tile_parse("v8"), -1);
    assert_int_equal(kern_cuda_gemm_tile_parse("96"), -1);
    assert_int_equal(kern_cuda_gemm_tile_parse(""), -1);
    assert_int_equal(kern_cuda_gemm_tile_code(64), 1);
    assert_int_equal(kern_cuda_gemm_tile_code(GI8_NVAR + GF_NVAR + GW_NVAR + 1), 0);
    assert_string_equal(kern_cuda_gemm_tile_name(3), "128x64/32x64");
    assert_string_equal(kern_cuda_gemm_tile_name(0), "auto");
    for (int v = 0; v < GI8_NVAR; v++) {
        char name[32];
        gi8_variant t = gi8_var(v);
        snprintf(name, sizeof name, "%dx%d/%dx%d", gi8_var_bm(v), gi8_var_bn(v), 16 * t.mt, 8 * t.nt);
        assert_string_equal(kern_cuda_gemm_tile_name(v + 1), name);
        assert_int_equal(kern_cuda_gemm_tile_parse(name), v + 1);
        /* the kernel's copy loops: whole steps per thread */
        assert_int_equal(gi8_var_threads(v) % gi8_var_bn(v), 0);
        assert_true(gi8_var_bm(v) / (t.wm * t.wn) <= 32);
    }

    /* Qwen3-30B-A3B's prompt shapes on an H100: the cost model's pick fits the stages
     * asked for; attn_q q4_0 takes the 32 x 64 warps. */
    kern_cuda_gemm_plan p =
        kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_Q4_0, 4096, 2048, 512, 0x1000, false);
    assert_true(p.mma);
    assert_int_equal(p.variant, 2);
    assert_int_equal(p.tile, 128);
    assert_int_equal(p.bn, 64);
    assert_int_equal(p.threads, 128);
    assert_int_equal(p.stages, 3);
    assert_true(p.aligned);
    assert_int_equal(p.smem, 3 * kern_cuda_gemm_stage_bytes(4, 3));
    static const int64_t shapes[][3] = {{4096, 2048, 512}, {2048, 4096, 512}, {512, 2048, 512},
                                        {768, 2048, 512},  {2048, 768, 512},  {151936, 2048, 512}};
    for (int wt = 4; wt <= 8; wt += 4)
        for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
            const int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
            p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 0, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0,
                                         m, k, n, 0x1000, false);
            assert_true(p.mma);
            assert_int_equal(p.stages, 3);
            assert_int_equal(p.smem, 3 * kern_cuda_gemm_stage_bytes(wt, p.variant + 1));
            assert_true(p.variant >= 0 && p.variant < GI8_NVAR);
        }
    /* asked for: a session-2 tile by its old name, or a variant */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 128, 4, KERN_TYPE_Q8_0, 768, 2048, 512, 0x1000, false);
    assert_int_equal(p.variant, 1);
    assert_int_equal(p.tile, 128);
    assert_int_equal(p.threads, 256);
    assert_int_equal(p.stages, 4);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 64, 0, KERN_TYPE_Q8_0, 768, 2048, 512, 0x1000, false);
    assert_int_equal(p.variant, 0);
    assert_int_equal(p.tile, 64);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 1 + 6, 2, KERN_TYPE_Q4_0, 768, 2048, 512, 0x1000, false);
    assert_int_equal(p.variant, 6);
    assert_int_equal(p.tile, 32);
    assert_int_equal(p.bn, 32);
    assert_int_equal(p.threads, 32);
    assert_int_equal(p.smem, 2 * kern_cuda_gemm_stage_bytes(4, 7));
    /* grouped experts: the 64 x 64 tile whatever was asked */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 128, 0, KERN_TYPE_Q4_0, 768, 2048, 4096, 0x1000, true);
    assert_true(p.mma);
    assert_int_equal(p.variant, 0);
    assert_int_equal(p.tile, 64);
    assert_int_equal(p.threads, 128);
    /* k % 128 != 0 or a misaligned buffer: 2-byte loads of the weights */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_Q8_0, 131, 96, 37, 0x1000, false);
    assert_true(p.mma);
    assert_false(p.aligned);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0x1002, false);
    assert_true(p.mma);
    assert_false(p.aligned);
    /* what is not the int8 kernel's */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000, false);
    assert_false(p.mma);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_WMMA, 0, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0x1000, false);
    assert_false(p.mma);
    kern_cuda_gemm_caps turing = h100;
    turing.code_arch = 75; /* sm_75, or the forced compute_75 PTX on any GPU */
    p = kern_cuda_gemm_plan_make(&turing, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0x1000, false);
    assert_false(p.mma);
    assert_non_null(strstr(p.why, "sm_80"));
    /* 48 KiB without cuFuncSetAttribute: auto takes a tile whose stages fit; a tile asked
     * for whose two stages do not fit is refused (the f16 kernel runs) */
    kern_cuda_gemm_caps small = h100;
    small.can_raise_smem = false;
    for (int wt = 4; wt <= 8; wt += 4)
        for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
            p = kern_cuda_gemm_plan_make(&small, KERN_CUDA_GEMM_MMA, 0, 0, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0,
                                         shapes[i][0], shapes[i][1], shapes[i][2], 0x1000, false);
            assert_true(p.mma);
            assert_true(p.smem <= 48 * 1024);
            assert_int_equal(p.smem, p.stages * kern_cuda_gemm_stage_bytes(wt, p.variant + 1));
        }
    p = kern_cuda_gemm_plan_make(&small, KERN_CUDA_GEMM_MMA, 128, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0x1000, false);
    assert_false(p.mma);
    assert_non_null(strstr(p.why, "shared memory"));
    /* a 100 KB part (sm_86/89/120): three stages of 128 rows fit */
    kern_cuda_gemm_caps ga102 = {.code_arch = 86, .sm_count = 84, .smem_optin = 101376, .can_raise_smem = true};
    p = kern_cuda_gemm_plan_make(&ga102, KERN_CUDA_GEMM_MMA, 128, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0, false);
    assert_int_equal(p.stages, 3);
    assert_true(p.smem <= 101376);
    /* the f16-MMA kernel: kind, tile codes f0..f8, the plan */
    assert_true(kern_cuda_gemm_kind_parse("f16mma", &k) && k == KERN_CUDA_GEMM_F16MMA);
    assert_string_equal(kern_cuda_gemm_kind_name(KERN_CUDA_GEMM_F16MMA), "f16mma");
    assert_int_equal(kern_cuda_gemm_n_f16_tiles(), GF_NVAR);
    assert_int_equal(kern_cuda_gemm_tile_parse("f0"), 1 + GI8_NVAR);
    assert_int_equal(kern_cuda_gemm_tile_parse("f8"), GI8_NVAR + GF_NVAR);
    assert_int_equal(kern_cuda_gemm_tile_parse("f9"), -1);
    assert_int_equal(kern_cuda_gemm_tile_code(GI8_NVAR + GF_NVAR + GW_NVAR + 1), 0);
    for (int v = 0; v < GF_NVAR; v++) {
        char name[40];
        gi8_variant t = gf_var(v);
        snprintf(name, sizeof name, "f16:%dx%d/%dx%d%s", gf_var_bm(v), gf_var_bn(v), 16 * t.mt, 8 * t.nt,
                 gf_var_kb(v) == 2 ? "k64" : "");
        assert_string_equal(kern_cuda_gemm_tile_name(1 + GI8_NVAR + v), name);
        assert_int_equal(kern_cuda_gemm_tile_parse(name), 1 + GI8_NVAR + v);
        assert_int_equal(kern_cuda_gemm_stage_bytes(8, 1 + GI8_NVAR + v) % 16, 0);
        if (gf_var_kb(v) == 4)
            assert_int_equal(gf_var_bm(v) / (t.wm * t.wn), 16); /* the int8 kernel's W copy scheme */
    }
    for (int wt = 4; wt <= 8; wt += 4)
        for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
            p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0,
                                         shapes[i][0], shapes[i][1], shapes[i][2], 0x1000, false);
            assert_true(p.f16mma);
            assert_false(p.mma);
            assert_true(p.variant >= 0 && p.variant < GF_NVAR);
            assert_true(p.stages >= 3 && p.smem <= h100.smem_optin);
            assert_int_equal(p.smem, gf_smem_bytes(wt, p.tile, p.bn, p.stages, gf_var_kb(p.variant)));
            assert_true(p.aligned);
        }
    /* the LM head takes the largest tile; attn_k (512 rows) a small one */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, 151936, 2048, 512, 0x1000, false);
    assert_int_equal(p.tile * p.bn, 256 * 128);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, 512, 2048, 512, 0x1000, false);
    assert_true(p.tile * p.bn <= 64 * 64);
    /* asked for: f2 with 2 stages runs 3 (its minimum); an int8 tile means auto here */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR + 2, 2, KERN_TYPE_Q8_0, 768, 2048, 512,
                                 0x1000, false);
    assert_true(p.f16mma);
    assert_int_equal(p.variant, 2);
    assert_int_equal(p.tile, 128);
    assert_int_equal(p.bn, 64);
    assert_int_equal(p.threads, 256);
    assert_int_equal(p.stages, 3);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 3, 4, KERN_TYPE_Q8_0, 768, 2048, 512, 0x1001, false);
    assert_true(p.f16mma);
    assert_false(p.aligned);
    assert_int_equal(p.stages, 4);
    /* an f16-MMA tile asked of the int8 kernel: its auto pick */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 1 + GI8_NVAR, 0, KERN_TYPE_Q8_0, 768, 2048, 512, 0x1000,
                                 false);
    assert_true(p.mma);
    assert_false(p.f16mma);
    assert_true(p.variant < GI8_NVAR);
    /* the k64 variants: four slots fit; 4-byte aligned weights by cp.async, k % 64 != 0 not */
    for (int wt = 4; wt <= 8; wt += 4)
        for (int v = 5; v < GF_NVAR; v++) {
            p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR + v, 4,
                                         wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, 151936, 2048, 512, 0x1004, false);
            assert_true(p.f16mma);
            assert_int_equal(p.variant, v);
            assert_int_equal(p.stages, 4);
            assert_true(p.aligned);
            assert_int_equal(p.smem, gf_smem_bytes(wt, p.tile, p.bn, 4, 2));
            p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR + v, 4,
                                         wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, 4096, 2080, 512, 0x1000, false);
            assert_true(p.f16mma);
            assert_false(p.aligned);
        }
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR, 3, KERN_TYPE_Q8_0, 4096, 2048, 512,
                                 0x1004, false);
    assert_false(p.aligned); /* 128-stages copy 8-byte pieces */
    /* AUTO: the H200 sweep's fastest f16-MMA tile and k slices per shape (512 tokens), int8
     * where not measured (64 tokens) */
    {
        static const struct {
            int64_t m, k, n;
            int f16_variant[2]; /* Q4_0, Q8_0; -1: int8 */
            int ksplit;
        } autos[] = {{4096, 2048, 512, {0, 0}, 1},  {2048, 4096, 512, {0, 0}, 2},   {151936, 2048, 512, {8, 8}, 1},
                     {512, 2048, 512, {3, 3}, 2},   {768, 2048, 512, {3, 3}, 1},    {2048, 768, 512, {3, 2}, 1},
                     {4096, 2048, 64, {-1, -1}, 1}};
        for (int wt = 4; wt <= 8; wt += 4)
            for (size_t i = 0; i < ADG_ARRAY_LEN(autos); i++) {
                const int want = autos[i].f16_variant[wt / 8];
                p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 0, 0, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0,
                                             autos[i].m, autos[i].k, autos[i].n, 0x1000, false);
                assert_int_equal(p.f16mma, want >= 0);
                assert_int_equal(p.mma, want < 0);
                if (p.f16mma) {
                    assert_int_equal(p.variant, want);
                    assert_int_equal(p.stages, 3);
                    assert_true(p.aligned);
                }
                assert_int_equal(kern_cuda_gemm_ksplit(&p, 0, autos[i].k), autos[i].ksplit);
                assert_int_equal(kern_cuda_gemm_ksplit(&p, 1, autos[i].k), 1); /* asked: one slice */
                /* the same pick when the f16-MMA kernel is asked for without a tile */
                kern_cuda_gemm_plan q = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0,
                                                                 wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, autos[i].m,
                                                                 autos[i].k, autos[i].n, 0x1000, false);
                if (want >= 0) {
                    assert_int_equal(q.variant, want);
                    assert_int_equal(q.ksplit, p.ksplit);
                }
            }
        /* an f16-MMA tile asked under AUTO runs that kernel; the grouped experts stay int8 */
        p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 1 + GI8_NVAR + 5, 0, KERN_TYPE_Q4_0, 512, 2048, 512,
                                     0x1000, false);
        assert_true(p.f16mma);
        assert_int_equal(p.variant, 5);
        p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_Q4_0, 4096, 2048, 4096, 0x1000, true);
        assert_true(p.mma);
    }
    /* split-K: only asked for (2), only the f16-MMA kernel, only with >= 4 x stages of k */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR + 3, 3, KERN_TYPE_Q4_0, 2048, 4096, 512,
                                 0x1000, false);
    assert_int_equal(p.ksplit, 1);
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 0, 4096), 1);
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 1, 4096), 1);
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 4096), 2);      /* 32 stages of 128 */
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 12 * 128), 2);  /* 12 = 4 x 3 */
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 11 * 128), 1);
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_MMA, 0, 3, KERN_TYPE_Q4_0, 2048, 4096, 512, 0x1000, false);
    assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 4096), 1);
    /* four stages of 128 x 128 do not fit 227 KiB: three */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 1 + GI8_NVAR, 4, KERN_TYPE_Q8_0, 4096, 2048, 512,
                                 0x1000, false);
    assert_int_equal(p.stages, 3);
    /* grouped experts and 48 KiB parts: the int8 kernel */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, 768, 2048, 4096, 0x1000, true);
    assert_true(p.mma);
    assert_false(p.f16mma);
    p = kern_cuda_gemm_plan_make(&small, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, 768, 2048, 512, 0x1000, false);
    assert_true(p.mma);
    assert_false(p.f16mma);
    p = kern_cuda_gemm_plan_make(&turing, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, 768, 2048, 512, 0x1000, false);
    assert_false(p.mma || p.f16mma);
    /* f16 weights take the f16-MMA kernel (test_f16_weights_plan) */
    p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_F16, 768, 2048, 512, 0x1000, false);
    assert_true(!p.mma && p.f16mma && !p.wgmma);

    /* stage sizes: 16-byte multiples (cp.async destinations stay aligned across stages) */
    for (int wt = 4; wt <= 8; wt += 4)
        for (int c = 1; c <= GI8_NVAR; c++)
            assert_int_equal(kern_cuda_gemm_stage_bytes(wt, c) % 16, 0);
}

/* GI8_ACC_BIAS: the MMA's result read as a float is 1.5 * 2^23 + d; with an f16 step dx,
 * fmaf(f, dx, -1.5 * 2^23 * dx) must be the CPU's (float)d * dx bit for bit.  Every
 * finite f16 step (both signs, subnormals included) against dot products at the ends of
 * the range, around powers of two and at random. */
static void test_scale_fma(void **state)
{
    (void)state;
    int32_t ds[160];
    int nd = 0;
    const int32_t lim = 32 * 128 * 128; /* |d| <= 32 * 128 * 128 (Q8_0: -128 never occurs in X) */
    ds[nd++] = 0;
    ds[nd++] = lim;
    ds[nd++] = -lim;
    for (int e = 0; e < 20; e++)
        for (int s = -1; s <= 1; s += 2) {
            ds[nd++] = s * (1 << e);
            ds[nd++] = s * ((1 << e) + 1);
            ds[nd++] = s * ((1 << (e + 1)) - 1);
        }
    uint64_t st = 99;
    while (nd < (int)ADG_ARRAY_LEN(ds))
        ds[nd++] = (int32_t)(rng_next(&st) % (uint64_t)(2 * lim + 1)) - lim;
    long checked = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue; /* inf, NaN: not a step kern_quantize_q8 writes with nonzero quants */
        const float dx = kern_fp16_to_fp32((uint16_t)h);
        const float nx = dx * -GI8_ACC_BIAS;
        for (int i = 0; i < nd; i++) {
            int32_t bits = GI8_ACC_BIAS_BITS + ds[i];
            float f;
            memcpy(&f, &bits, 4);
            const float got = fmaf(f, dx, nx), want = (float)ds[i] * dx;
            if (memcmp(&got, &want, 4) != 0 && !(got == 0 && want == 0))
                fail_msg("d %d, dx %a: fma %a, the CPU %a", ds[i], (double)dx, (double)got, (double)want);
            checked++;
        }
    }
    assert_true(checked > 60000L * 100);
}

/* ---- the host emulator ------------------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* __byte_perm(x, y, s): byte i of the result is byte (s >> 4i) & 7 of y:x. */
static uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s)
{
    uint64_t v = (uint64_t)y << 32 | x;
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r |= (uint32_t)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}

static uint32_t vsub4(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 4; i++)
        r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xff) << (8 * i);
    return r;
}

/* mma.m16n8k32.row.col.s32.s8.s8.s32 for a whole warp, from the PTX ISA's fragment
 * description: a_i (i = 0..15, byte i & 3 of register i >> 2) is row groupID for
 * i < 4 and 8 <= i < 12, groupID + 8 otherwise, column tig*4 + (i & 3) (+16 for i >= 8);
 * b_i (byte i & 3 of register i >> 2) is row tig*4 + (i & 3) (+16 for i >= 4), column
 * groupID; c_i is row groupID (+8 for i >= 2), column tig*2 + (i & 1). */
static void mma_warp(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4])
{
    int8_t A[16][32], B[32][8];
    for (int l = 0; l < 32; l++) {
        int gid = l >> 2, tig = l & 3;
        for (int i = 0; i < 16; i++) {
            int row = (i < 4 || (i >= 8 && i < 12)) ? gid : gid + 8;
            int col = tig * 4 + (i & 3) + (i >= 8 ? 16 : 0);
            A[row][col] = (int8_t)(a[l][i >> 2] >> (8 * (i & 3)));
        }
        for (int i = 0; i < 8; i++)
            B[tig * 4 + (i & 3) + (i >= 4 ? 16 : 0)][gid] = (int8_t)(b[l][i >> 2] >> (8 * (i & 3)));
    }
    for (int l = 0; l < 32; l++) {
        int gid = l >> 2, tig = l & 3;
        for (int i = 0; i < 4; i++) {
            int row = gid + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
            int32_t s = GI8_ACC_BIAS_BITS; /* the kernel's accumulator start */
            for (int kk = 0; kk < 32; kk++)
                s += A[row][kk] * B[kk][col];
            c[l][i] = s;
        }
    }
}

/* One dense kernel launch, tile by tile, stage by stage (the cp.async ring only changes
 * when bytes arrive, not which).  w_bytes bounds every weight read. */
static void emu_gemm(int wt, int bm, bool aligned, const uint8_t *w, size_t w_bytes, int64_t m, int64_t k,
                     const int8_t *xq, const float *xd, int64_t n, float *y)
{
    const int bsz = gi8_bsz(wt), wstr = gi8_wstr(wt), ch = gi8_wchunks(wt);
    const int xo = gi8_x_off(wt, bm), dof = gi8_d_off(wt, bm), sbytes = gi8_stage_bytes(wt, bm);
    const int64_t nb = k / 32, row_bytes = nb * bsz, nst = (nb + GI8_KBS - 1) / GI8_KBS;
    const int warps = bm / 32 * 2;
    uint8_t *sb = malloc((size_t)sbytes);
    float(*acc)[32][2][4][4] = malloc((size_t)warps * sizeof *acc);
    assert_true(sb && acc);
    if (aligned)
        assert_int_equal(nb % GI8_KBS, 0);
    for (int64_t r0 = 0; r0 < m; r0 += bm)
        for (int64_t n0 = 0; n0 < n; n0 += GI8_BN) {
            const int cnt = (int)(n - n0 < GI8_BN ? n - n0 : GI8_BN);
            memset(acc, 0, (size_t)warps * sizeof *acc);
            for (int64_t st = 0; st < nst; st++) {
                const int64_t kb0 = st * GI8_KBS;
                memset(sb, 0xa5, (size_t)sbytes); /* garbage where nothing is staged */
                if (aligned) {
                    for (int c = 0; c < bm * ch; c++) {
                        int row = c / ch, j = c % ch;
                        if (r0 + row < m) {
                            size_t off = (size_t)((r0 + row) * row_bytes + kb0 * bsz + j * 8);
                            assert_true(off % 8 == 0 && off + 8 <= w_bytes);
                            memcpy(sb + row * wstr + j * 8, w + off, 8);
                        } else {
                            memset(sb + row * wstr + j * 8, 0, 8);
                        }
                    }
                } else {
                    for (int c = 0; c < bm * GI8_KBS; c++) {
                        int row = c / GI8_KBS, bl = c % GI8_KBS;
                        uint8_t *dst = sb + row * wstr + bl * bsz;
                        if (r0 + row < m && kb0 + bl < nb) {
                            size_t off = (size_t)((r0 + row) * row_bytes + (kb0 + bl) * bsz);
                            assert_true(off + (size_t)bsz <= w_bytes);
                            memcpy(dst, w + off, (size_t)bsz);
                        } else {
                            memset(dst, 0, (size_t)bsz);
                        }
                    }
                }
                for (int c = 0; c < GI8_BN * 8; c++) {
                    int i = c >> 3, j = c & 7;
                    bool ok = i < cnt && kb0 + (j >> 1) < nb;
                    uint8_t *dst = sb + xo + i * GI8_XSTR + j * 16;
                    if (ok)
                        memcpy(dst, xq + (n0 + i) * k + kb0 * 32 + j * 16, 16);
                    else
                        memset(dst, 0, 16);
                }
                for (int c = 0; c < GI8_KBS * GI8_BN; c++) {
                    int bl = c / GI8_BN, i = c % GI8_BN;
                    float v = i < cnt && kb0 + bl < nb ? xd[(n0 + i) * nb + kb0 + bl] : 0.0f;
                    memcpy(sb + dof + c * 4, &v, 4);
                }
                for (int warp = 0; warp < warps; warp++) {
                    const int wm = warp >> 1, wn = warp & 1;
                    for (int bl = 0; bl < GI8_KBS; bl++) {
                        const bool a4 = ((bl * bsz + 2) & 3) == 0;
                        uint32_t a[2][32][4], b[4][32][2];
                        float dw[2][32][2];
                        for (int mt = 0; mt < 2; mt++)
                            for (int l = 0; l < 32; l++) {
                                const int row0 = wm * 32 + mt * 16;
                                for (int h = 0; h < 2; h++) {
                                    uint16_t hv;
                                    memcpy(&hv, sb + gi8_w_scale_off(wt, row0, bl, (l >> 2) + 8 * h), 2);
                                    dw[mt][l][h] = kern_fp16_to_fp32(hv);
                                }
                                for (int r = 0; r < (wt == 8 ? 4 : 2); r++) {
                                    const int off = gi8_a_off(wt, row0, bl, l, r);
                                    uint32_t q;
                                    if (a4) {
                                        assert_int_equal(off & 3, 0);
                                        q = rd32(sb + off);
                                    } else {
                                        assert_int_equal(off & 3, 2);
                                        q = byte_perm(rd32(sb + off - 2), rd32(sb + off + 2), GI8_PERM_2MOD4);
                                    }
                                    if (wt == 8) {
                                        a[mt][l][r] = q;
                                    } else {
                                        a[mt][l][r] = vsub4(q & 0x0f0f0f0fu, 0x08080808u);
                                        a[mt][l][r + 2] = vsub4((q >> 4) & 0x0f0f0f0fu, 0x08080808u);
                                    }
                                }
                            }
                        /* ldmatrix.x4: lane L's register j is word L & 3 of the row whose
                         * address lane 8j + (L >> 2) gave. */
                        for (int p = 0; p < 2; p++) {
                            int addr[32];
                            for (int l = 0; l < 32; l++) {
                                addr[l] = xo + gi8_ldsm_off(wn * 32 + p * 16, bl, l);
                                assert_int_equal(addr[l] % 16, 0);
                            }
                            for (int l = 0; l < 32; l++)
                                for (int j = 0; j < 4; j++) {
                                    uint32_t v = rd32(sb + addr[8 * j + (l >> 2)] + 4 * (l & 3));
                                    b[2 * p + (j >> 1)][l][j & 1] = v;
                                }
                        }
                        for (int nt = 0; nt < 4; nt++)
                            for (int mt = 0; mt < 2; mt++) {
                                int32_t c[32][4];
                                mma_warp(a[mt], b[nt], c);
                                for (int l = 0; l < 32; l++) {
                                    float dx[2];
                                    memcpy(dx, sb + dof + (bl * GI8_BN + wn * 32 + nt * 8 + 2 * (l & 3)) * 4, 8);
                                    for (int i = 0; i < 4; i++) {
                                        float f;
                                        memcpy(&f, &c[l][i], 4);
                                        float t = (f - GI8_ACC_BIAS) * dx[i & 1];
                                        acc[warp][l][mt][nt][i] = fmaf(t, dw[mt][l][i >> 1], acc[warp][l][mt][nt][i]);
                                    }
                                }
                            }
                    }
                }
            }
            for (int warp = 0; warp < warps; warp++)
                for (int l = 0; l < 32; l++)
                    for (int mt = 0; mt < 2; mt++)
                        for (int nt = 0; nt < 4; nt++)
                            for (int i = 0; i < 4; i++) {
                                int64_t row = r0 + (warp >> 1) * 32 + mt * 16 + gi8_c_row(l, i);
                                int ti = (warp & 1) * 32 + nt * 8 + gi8_c_tok(l, i);
                                if (row < m && ti < cnt)
                                    y[(n0 + ti) * m + row] = acc[warp][l][mt][nt][i];
                            }
        }
    free(sb);
    free(acc);
}

static void emu_case(int wt, int bm, bool aligned, size_t pad, int64_t m, int64_t k, int64_t n, uint64_t seed)
{
    uint64_t st = seed;
    uint8_t *wbuf = make_w(wt, m, k, &st, pad);
    int8_t *xq;
    float *xd;
    make_x(n, k, &st, &xq, &xd);
    float *got = malloc((size_t)(n * m) * sizeof *got), *want = malloc((size_t)(n * m) * sizeof *want);
    assert_true(got && want);
    for (int64_t i = 0; i < n * m; i++)
        got[i] = NAN;
    size_t wb = kern_row_size(wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, k) * (size_t)m;
    ref_gemm(wt, wbuf + pad, m, k, xq, xd, NULL, n, want);
    emu_gemm(wt, bm, aligned, wbuf + pad, wb, m, k, xq, xd, n, got);
    char what[96];
    snprintf(what, sizeof what, "emulated %s %lldx%lld x %lld, tile %d, %s", wt == 4 ? "q4_0" : "q8_0", (long long)m,
             (long long)k, (long long)n, bm, aligned ? "cp.async" : "2-byte loads");
    expect_same(what, got, want, n * m);
    free(wbuf);
    free(xq);
    free(xd);
    free(got);
    free(want);
}

static void test_emulated_kernel(void **state)
{
    (void)state;
    for (int wt = 4; wt <= 8; wt += 4) {
        emu_case(wt, 64, true, 0, 96, 256, 64, 11);   /* whole tiles */
        emu_case(wt, 128, true, 0, 200, 512, 70, 12); /* partial m and n tiles, 4 stages */
        emu_case(wt, 64, false, 0, 131, 96, 37, 13);  /* k % 128 != 0: a 3-block stage */
        emu_case(wt, 128, false, 2, 40, 384, 5, 14);  /* a buffer only 2-byte aligned */
        emu_case(wt, 64, false, 0, 17, 32, 1, 15);    /* one block, one token */
    }
}

/* ---- the wgmma kernel's host side --------------------------------------------------------- */

static const kern_cuda_gemm_caps h100w = {.code_arch = 90, .sm_count = 132, .smem_optin = 232448,
                                          .can_raise_smem = true, .wgmma = true};

/* Its tile codes and names, the layout claims of kern_gemm_wgmma_map.h (the f16-MMA k64
 * layout is the 128-byte swizzle; descriptors; the accumulator map covers its tile once). */
static void test_wgmma_map(void **state)
{
    (void)state;
    const int w0 = 1 + GI8_NVAR + GF_NVAR;
    kern_cuda_gemm_kind k;
    assert_true(kern_cuda_gemm_kind_parse("wgmma", &k) && k == KERN_CUDA_GEMM_WGMMA);
    assert_string_equal(kern_cuda_gemm_kind_name(KERN_CUDA_GEMM_WGMMA), "wgmma");
    assert_int_equal(kern_cuda_gemm_n_wgmma_tiles(), GW_NVAR);
    assert_int_equal(kern_cuda_gemm_tile_parse("w0"), w0);
    assert_int_equal(kern_cuda_gemm_tile_parse("w3"), w0 + 3);
    assert_int_equal(kern_cuda_gemm_tile_parse("w4"), -1);
    assert_int_equal(kern_cuda_gemm_tile_parse("wg:128x256"), w0);
    assert_int_equal(kern_cuda_gemm_tile_code(w0 + GW_NVAR - 1), w0 + GW_NVAR - 1);
    for (int v = 0; v < GW_NVAR; v++) {
        char name[32];
        snprintf(name, sizeof name, "wg:%dx%d", gw_var_bm(v), gw_var_bn(v));
        assert_string_equal(kern_cuda_gemm_tile_name(w0 + v), name);
        assert_int_equal(kern_cuda_gemm_tile_parse(name), w0 + v);
        /* every part of the shared memory starts on 1024 bytes */
        for (int wt = 4; wt <= 8; wt += 4) {
            assert_int_equal(gw_slot_bytes(wt, gw_var_bm(v), gw_var_bn(v)) % GW_ALIGN, 0);
            assert_int_equal(kern_cuda_gemm_stage_bytes(wt, w0 + v), gw_slot_bytes(wt, gw_var_bm(v), gw_var_bn(v)));
        }
        assert_int_equal(gw_var_bm(v) * GW_ROW % GW_ALIGN, 0);
        /* the wgmma N: a multiple of 8 up to 256; whole X pieces and conversion units per thread */
        assert_true(gw_var_bn(v) % 8 == 0 && gw_var_bn(v) <= 256);
        assert_int_equal(gw_var_bn(v) * 8 % gw_var_threads(v), 0);
        assert_int_equal(gw_var_bm(v) * GW_KB % gw_var_threads(v), 0);
        /* the accumulator map: the 128 threads of a warpgroup cover its 64 x BN tile once */
        const int bn = gw_var_bn(v);
        unsigned char *seen = calloc((size_t)(64 * bn), 1);
        assert_non_null(seen);
        for (int w = 0; w < 4; w++)
            for (int lane = 0; lane < 32; lane++)
                for (int i = 0; i < bn / 2; i++) {
                    const int r = gw_d_row(w, lane, i), t = gw_d_tok(lane, i);
                    assert_true(r >= 0 && r < 64 && t >= 0 && t < bn);
                    seen[r * bn + t]++;
                }
        for (int i = 0; i < 64 * bn; i++)
            assert_int_equal(seen[i], 1);
        free(seen);
    }
    /* PTX ISA, wgmma D fragment: d0, d1 row g columns 2t, 2t+1; d2, d3 row g + 8; next 8 columns */
    assert_int_equal(gw_d_row(1, 5, 0), 16 + 1);
    assert_int_equal(gw_d_tok(5, 0), 2);
    assert_int_equal(gw_d_row(0, 5, 3), 1 + 8);
    assert_int_equal(gw_d_tok(5, 3), 3);
    assert_int_equal(gw_d_tok(5, 4), 8 + 2);
    /* the f16-MMA k64 layout (gf_offr with 128-byte rows) is the 128-byte swizzle of a
     * 1024-byte aligned tile: address bits 4..6 XOR bits 7..9 */
    for (int r = 0; r < 256; r++)
        for (int c = 0; c < 8; c++) {
            const unsigned a = (unsigned)(r * 128 + c * 16);
            assert_int_equal(gf_offr(r, c, GW_ROW), (int)(a ^ (((a >> 7) & 7) << 4)));
        }
    /* descriptor: start >> 4, leading byte offset 1, stride 1024 >> 4, 128-byte swizzle */
    const unsigned long long d = gw_desc(0x2400);
    assert_int_equal(d & 0x3FFF, 0x2400 >> 4);
    assert_int_equal((d >> 16) & 0x3FFF, 1);
    assert_int_equal((d >> 32) & 0x3FFF, 64);
    assert_int_equal((d >> 49) & 7, 0);
    assert_int_equal(d >> 62, 1);
    assert_int_equal(gw_desc(0x3FFF0) & 0x3FFF, 0x3FFF); /* the highest 16-byte unit of 256 KiB */
}

/* The plan: the kind and its tiles where the module is loaded, the f16-MMA kernel (saying
 * why) where not, AUTO unchanged while its wgmma table is empty. */
static void test_wgmma_plan(void **state)
{
    (void)state;
    const int w0 = 1 + GI8_NVAR + GF_NVAR;
    static const int64_t shapes[][3] = {{4096, 2048, 512}, {2048, 4096, 512}, {512, 2048, 512},
                                        {768, 2048, 512},  {2048, 768, 512},  {151936, 2048, 512}};
    kern_cuda_gemm_plan p;
    for (int wt = 4; wt <= 8; wt += 4) {
        const kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
        for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
            const int64_t m = shapes[i][0], kk = shapes[i][1], n = shapes[i][2];
            p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, m, kk, n, 0x1000, false);
            assert_true(p.wgmma && p.f16mma && !p.mma);
            assert_true(p.variant >= 0 && p.variant < GW_NVAR);
            assert_int_equal(p.tile, gw_var_bm(p.variant));
            assert_int_equal(p.bn, gw_var_bn(p.variant));
            assert_int_equal(p.threads, gw_var_threads(p.variant));
            assert_true(p.stages >= 3 && p.stages <= GW_MAX_SLOTS);
            assert_int_equal(p.smem, gw_smem_bytes(wt, p.tile, p.bn, p.stages));
            assert_true(p.smem <= h100w.smem_optin);
            assert_true(p.aligned);
            assert_non_null(strstr(p.why, "wgmma"));
            /* AUTO: the wgmma tile measured fastest (H200, 05:03) for the LM head, attn_q and
             * attn_o; the f16-MMA kernel's pick for the small shapes, and without the module */
            kern_cuda_gemm_plan a = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, t, m, kk, n, 0x1000,
                                                             false);
            kern_cuda_gemm_plan b = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 0, 0, t, m, kk, n, 0x1000,
                                                             false);
            static const int want_w[6][2] = {{0, 0}, {1, 2}, {-1, -1}, {-1, -1}, {-1, -1}, {0, 0}};
            static const int want_k[6] = {2, 2, 1, 1, 1, 1};
            const int ww = want_w[i][wt == 8];
            assert_int_equal(a.wgmma, ww >= 0);
            assert_false(b.wgmma);
            if (ww >= 0) {
                assert_true(a.f16mma);
                assert_int_equal(a.variant, ww);
                assert_int_equal(kern_cuda_gemm_ksplit(&a, 0, kk), want_k[i]);
                assert_non_null(strstr(a.why, "auto"));
                /* x3 (H200, 08:21): padded raw W rows, the slots compiled in */
                assert_int_equal(a.xv, 3);
                assert_int_equal(a.stages, gw_fix_slots(ww, wt, 1));
                assert_int_equal(a.smem, gw_smem_bytes_x(wt, a.tile, a.bn, a.stages, 0, 1));
            } else {
                assert_int_equal(a.f16mma, b.f16mma);
                assert_int_equal(a.variant, b.variant);
                assert_int_equal(a.ksplit, b.ksplit);
            }
            /* without the module: the f16-MMA kernel's own pick, saying why */
            kern_cuda_gemm_plan f = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_WGMMA, 0, 0, t, m, kk, n, 0x1000,
                                                             false);
            kern_cuda_gemm_plan g = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, t, m, kk, n, 0x1000,
                                                             false);
            assert_true(f.f16mma && !f.wgmma);
            assert_int_equal(f.variant, g.variant);
            assert_non_null(strstr(f.why, "not loaded"));
        }
        /* the largest tile for the LM head; a small one where 128 x 256 tiles leave SMs idle */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, 151936, 2048, 512, 0x1000, false);
        assert_int_equal(p.variant, 0);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, 512, 2048, 512, 0x1000, false);
        assert_int_equal(p.variant, 3);
        /* CTAs per SM: the one-warpgroup tiles keep to their share of the SM */
        for (int v = 0; v < GW_NVAR; v++) {
            p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + v, 0, t, 4096, 2048, 512, 0x1000, false);
            assert_true(p.wgmma);
            assert_int_equal(p.variant, v);
            assert_true((int64_t)gw_var_cps(v) * (p.smem + 1024) <= h100w.smem_optin + 1024);
        }
        /* a wgmma tile under AUTO or f16mma runs the wgmma kernel; under mma the int8 one;
         * the grouped experts never */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, w0 + 1, 0, t, 4096, 2048, 512, 0x1000, false);
        assert_true(p.wgmma && p.variant == 1);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_F16MMA, w0 + 2, 0, t, 4096, 2048, 512, 0x1000, false);
        assert_true(p.wgmma && p.variant == 2);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_MMA, w0 + 2, 0, t, 4096, 2048, 512, 0x1000, false);
        assert_true(p.mma && !p.wgmma);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0, 0, t, 768, 2048, 64, 0x1000, true);
        assert_false(p.wgmma || p.f16mma);
        /* a wgmma tile without the module: the f16-MMA auto pick */
        p = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, w0, 0, t, 4096, 2048, 512, 0x1000, false);
        assert_false(p.wgmma);
        /* weights by 2-byte loads: k % 64 != 0, a buffer not 4-byte aligned */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, 300, 96, 37, 0x1000, false);
        assert_true(p.wgmma && !p.aligned);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, 300, 768, 37, 0x1002, false);
        assert_true(p.wgmma && !p.aligned);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, t, 300, 768, 37, 0x1004, false);
        assert_true(p.wgmma && p.aligned);
        /* split-K by 2 where each slice keeps >= 8 stages of 64 */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + 1, 0, t, 2048, 1024, 512, 0x1000, false);
        assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 1024), 2);
        assert_int_equal(kern_cuda_gemm_ksplit(&p, 2, 960), 1);
        assert_int_equal(kern_cuda_gemm_ksplit(&p, 0, 4096), 1);
        /* ring slots asked for ($AMXDIAG_GPU_GEMM_WGMMA_SLOTS): as many as fit */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + 1, 0, t, 4096, 2048, 512, 0x1000, false);
        kern_cuda_gemm_plan q = p;
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "3", NULL, NULL, 4096, 512);
        assert_int_equal(q.stages, 3);
        assert_int_equal(q.smem, gw_smem_bytes(wt, q.tile, q.bn, 3));
        q = p;
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "junk", NULL, NULL, 4096, 512);
        assert_int_equal(q.stages, p.stages);
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "9", NULL, NULL, 4096, 512);
        assert_int_equal(q.stages, p.stages);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0, 0, t, 4096, 2048, 512, 0x1000, false);
        q = p;
        /* 128 x 256: 8 slots do not fit, the most that do */
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "8", NULL, NULL, 4096, 512);
        assert_true(q.stages >= 3 && q.stages < 8 && q.smem <= h100w.smem_optin);
        assert_false(q.deep);
        /* the deep pipeline ($AMXDIAG_GPU_GEMM_WGMMA_PIPE=2): a third f16 buffer, >= 4 slots */
        for (int v = 0; v < GW_NVAR; v++) {
            p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + v, 0, t, 4096, 2048, 512, 0x1000, false);
            q = p;
            kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, "2", NULL, 4096, 512);
            assert_true(q.deep);
            assert_true(q.stages >= 4 && q.smem <= h100w.smem_optin);
            assert_int_equal(q.smem, gw_smem_bytes_p(wt, q.tile, q.bn, q.stages, 1));
            assert_int_equal(gw_smem_bytes_p(wt, q.tile, q.bn, q.stages, 1),
                             gw_smem_bytes(wt, q.tile, q.bn, q.stages) + q.tile * GW_ROW);
            kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "4", "1", NULL, 4096, 512);
            assert_false(q.deep);
            assert_int_equal(q.stages, 4);
            assert_int_equal(q.smem, gw_smem_bytes(wt, q.tile, q.bn, 4));
        }
        /* the persistent grid ($AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1): the CTAs resident at once
         * where the shape has more tiles (the LM head: 1187 x 2 tiles of 128 x 256, one CTA
         * per SM), one CTA per tile where it has no more (attn_q at 64 x 128: 256 tiles, 2
         * CTAs per SM); off by default and with "0" */
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0, 0, t, 151936, 2048, 512, 0x1000, false);
        assert_int_equal(p.grid, 0);
        q = p;
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, NULL, "1", 151936, 512);
        assert_int_equal(q.grid, 132);
        assert_int_equal(q.stages, p.stages);
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, NULL, "0", 151936, 512);
        assert_int_equal(q.grid, 0);
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + 2, 0, t, 4096, 2048, 512, 0x1000, false);
        q = p;
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, NULL, "1", 4096, 512);
        assert_int_equal(q.grid, 0);
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, NULL, "1", 8192, 512); /* 512 tiles */
        assert_int_equal(q.grid, 264);
        q.ksplit = 2; /* the k slices count */
        kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, NULL, "1", 4096, 512);
        assert_int_equal(q.grid, 264);
        /* no room for 4 slots and 3 buffers (64 KiB): the flat pipeline */
        const kern_cuda_gemm_caps tiny = {.code_arch = 90, .sm_count = 132, .smem_optin = 64 * 1024,
                                          .can_raise_smem = true, .wgmma = true};
        p = kern_cuda_gemm_plan_make(&tiny, KERN_CUDA_GEMM_WGMMA, w0 + 3, 0, t, 4096, 2048, 512, 0x1000, false);
        q = p;
        kern_cuda_gemm_wgmma_tune(&tiny, &q, t, NULL, "2", NULL, 4096, 512);
        assert_true(q.wgmma && !q.deep && q.stages == p.stages && q.smem <= tiny.smem_optin);
    }
    /* an A100-class part (164 KiB): still three slots of every tile */
    const kern_cuda_gemm_caps small = {.code_arch = 90, .sm_count = 108, .smem_optin = 166912, .can_raise_smem = true,
                                       .wgmma = true};
    for (int v = 0; v < GW_NVAR; v++) {
        p = kern_cuda_gemm_plan_make(&small, KERN_CUDA_GEMM_WGMMA, w0 + v, 0, KERN_TYPE_Q8_0, 4096, 2048, 512, 0x1000,
                                     false);
        assert_true(p.wgmma && p.stages >= 3 && p.smem <= small.smem_optin);
    }
}

/* F16 weights: the wgmma kernel on compute capability 9.0 (auto's table, third column),
 * the f16-MMA kernel on sm_80+ code otherwise, the WMMA kernel where asked, below sm_80,
 * for grouped experts and where the 16-byte pieces cannot go by cp.async. */
static void test_f16_weights_plan(void **state)
{
    (void)state;
    const int f0 = 1 + GI8_NVAR, w0 = 1 + GI8_NVAR + GF_NVAR;
    static const int64_t shapes[][3] = {{4096, 2048, 512}, {2048, 4096, 512}, {512, 2048, 512},
                                        {768, 2048, 512},  {2048, 768, 512},  {151936, 2048, 512}};
    /* auto's wgmma picks (H200, 08:21): the LM head w0, attn_q w2, attn_o w2 in two k
     * slices; the small shapes on the f16-MMA kernel's rule (-1) */
    static const int want_w[6] = {2, 2, -1, -1, -1, 0}, want_k[6] = {1, 2, 1, 1, 1, 1};
    kern_cuda_gemm_plan p;
    for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
        const int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, m, k, n, 0x1000, false);
        /* mma means the same for f16 weights (no int8 kernel for them) */
        kern_cuda_gemm_plan q =
            kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_MMA, 0, 0, KERN_TYPE_F16, m, k, n, 0x1000, false);
        assert_true(p.f16mma && !p.mma && p.aligned && p.xv == 0);
        assert_non_null(strstr(p.why, "f16 weights"));
        assert_true(q.wgmma == p.wgmma && q.variant == p.variant);
        if (want_w[i] < 0) { /* the f16-MMA kernel's measured rule, as for q4_0 without the module */
            kern_cuda_gemm_plan r =
                kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_Q4_0, m, k, n, 0x1000, false);
            assert_false(p.wgmma);
            assert_int_equal(p.variant, r.variant);
            assert_int_equal(kern_cuda_gemm_ksplit(&p, 0, k), kern_cuda_gemm_ksplit(&r, 0, k));
            continue;
        }
        assert_true(p.wgmma);
        assert_int_equal(p.variant, want_w[i]);
        assert_int_equal(kern_cuda_gemm_ksplit(&p, 0, k), want_k[i]);
        assert_int_equal(p.smem, gw_smem_bytes(16, p.tile, p.bn, p.stages));
        assert_true(p.smem <= h100w.smem_optin && p.stages >= 3);
        /* without the module: the f16-MMA kernel's measured rule, as for q4_0 */
        q = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, m, k, n, 0x1000, false);
        kern_cuda_gemm_plan r =
            kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_F16MMA, 0, 0, KERN_TYPE_Q4_0, m, k, n, 0x1000, false);
        assert_true(q.f16mma && !q.wgmma && !q.mma);
        assert_int_equal(q.variant, r.variant);
        assert_int_equal(q.smem, gf_smem_bytes(16, q.tile, q.bn, q.stages, gf_var_kb(q.variant)));
        /* wgmma asked without the module: the f16-MMA kernel, saying why */
        q = kern_cuda_gemm_plan_make(&h100, KERN_CUDA_GEMM_WGMMA, 0, 0, KERN_TYPE_F16, m, k, n, 0x1000, false);
        assert_true(q.f16mma && !q.wgmma);
        assert_non_null(strstr(q.why, "not loaded"));
    }
    /* tiles asked for: every wgmma and f16-MMA tile; an int8 tile means none */
    for (int v = 0; v < GW_NVAR; v++) {
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + v, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000,
                                     false);
        assert_true(p.wgmma && p.variant == v && p.smem <= h100w.smem_optin);
        /* the slots' share of the SM: 3 CTAs of 64 x 64 fit */
        assert_true((int64_t)gw_var_cps(v) * (p.smem + 1024) <= h100w.smem_optin + 1024);
    }
    for (int v = 0; v < GF_NVAR; v++) {
        p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_F16MMA, f0 + v, 3, KERN_TYPE_F16, 4096, 2048, 512, 0x1000,
                                     false);
        assert_true(p.f16mma && !p.wgmma && p.variant == v && p.stages == 3 && p.aligned);
        assert_int_equal(p.smem, gf_smem_bytes(16, p.tile, p.bn, 3, gf_var_kb(v)));
    }
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_F16MMA, 3, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000, false);
    assert_true(p.f16mma && !p.wgmma);
    /* part stages: k % 64 != 0 (whole pieces: k % 8 == 0) */
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, 0, 0, KERN_TYPE_F16, 300, 96, 37, 0x1000, false);
    assert_true(p.wgmma && !p.aligned);
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_F16MMA, f0, 0, KERN_TYPE_F16, 300, 192, 37, 0x1000, false);
    assert_true(p.f16mma && !p.aligned);
    /* the WMMA kernel: asked, grouped experts, sm_75 code, a buffer not 16-byte aligned,
     * k % 8 != 0, --gemm-bk 64 (kern_cuda_gemm_plan_for) */
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WMMA, 0, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000, false);
    assert_false(p.mma || p.f16mma || p.wgmma);
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, 768, 2048, 64, 0x1000, true);
    assert_false(p.f16mma || p.wgmma);
    kern_cuda_gemm_caps turing = h100;
    turing.code_arch = 75;
    p = kern_cuda_gemm_plan_make(&turing, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000, false);
    assert_false(p.f16mma || p.wgmma);
    assert_non_null(strstr(p.why, "sm_80"));
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1008, false);
    assert_false(p.f16mma || p.wgmma);
    assert_non_null(strstr(p.why, "16-byte"));
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F16, 4096, 2044, 512, 0x1000, false);
    assert_false(p.f16mma || p.wgmma);
    /* the wgmma tuning knobs with f16 weights: slots and the deep pipeline (no f16 buffers) */
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + 1, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000,
                                 false);
    kern_cuda_gemm_plan q = p;
    kern_cuda_gemm_wgmma_tune(&h100w, &q, KERN_TYPE_F16, "4", "2", NULL, 4096, 512);
    assert_true(q.deep && q.stages == 4);
    assert_int_equal(q.smem, gw_smem_bytes_p(16, q.tile, q.bn, 4, 1));
    assert_int_equal(gw_smem_bytes_p(16, q.tile, q.bn, 4, 1), gw_smem_bytes_p(16, q.tile, q.bn, 4, 0));
    /* the f32 router's weights stay off all of these */
    p = kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, KERN_TYPE_F32, 128, 2048, 512, 0x1000, false);
    assert_false(p.mma || p.f16mma || p.wgmma);
}

/* The experimental wgmma variants ($AMXDIAG_GPU_GEMM_WGMMA_X): the slot counts compiled
 * into the fixed ones are the plan's fit on a 227 KiB part; padded rows refit the slots;
 * "fixed" dropped where the plan's slots differ (slots asked, the deep pipeline); none for
 * f16 weights, the 64 x 64 tile or anything but 1..3. */
/* The two-pass plan of a shape on caps c under `kind`, from its fused plan. */
static kern_cuda_gemm_plan dq_plan(const kern_cuda_gemm_caps *c, kern_cuda_gemm_kind kind, kern_type t, int64_t m,
                                   int64_t k, int64_t n, int want, size_t cap)
{
    const kern_cuda_gemm_plan f = kern_cuda_gemm_plan_make(c, kind, 0, 0, t, m, k, n, 0x1000, false);
    return kern_cuda_gemm_plan_dq(c, kind, 0, 0, t, m, k, n, want, cap, &f);
}

/* The two-pass plan (kern_cuda_gemm_plan_dq): auto's shapes (512 tokens and more, outside
 * the LM head's class), the f16 kernel of a slab's shape, slabs from the workspace bound,
 * and where it never applies. */
static void test_dequant_plan(void **state)
{
    (void)state;
    const size_t cap = (size_t)KERN_CUDA_GEMM_DQ_MIB << 20;
    const kern_cuda_gemm_kind A = KERN_CUDA_GEMM_AUTO;
    static const int64_t shapes[][3] = {{4096, 2048, 512}, {2048, 4096, 512}, {512, 2048, 512},
                                        {768, 2048, 512},  {2048, 768, 512},  {151936, 2048, 512}};
    static const bool want_dq[6] = {true, true, true, true, true, false};
    kern_cuda_gemm_plan p;
    for (int wt = 4; wt <= 8; wt += 4) {
        const kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
        for (size_t i = 0; i < ADG_ARRAY_LEN(shapes); i++) {
            const int64_t m = shapes[i][0], k = shapes[i][1], n = shapes[i][2];
            const kern_cuda_gemm_plan f = kern_cuda_gemm_plan_make(&h100w, A, 0, 0, t, m, k, n, 0x1000, false);
            p = dq_plan(&h100w, A, t, m, k, n, -1, cap);
            assert_int_equal(p.dequant, want_dq[i]);
            if (!p.dequant) {
                /* the fused plan as it was */
                assert_true(p.mma == f.mma && p.f16mma == f.f16mma && p.wgmma == f.wgmma && p.xv == f.xv);
                assert_true(p.variant == f.variant && p.ksplit == f.ksplit && p.stages == f.stages && p.why == f.why);
                continue;
            }
            /* the f16-weight plan of the same shape (one slab: 16 MiB at most here) */
            const kern_cuda_gemm_plan h = kern_cuda_gemm_plan_make(&h100w, A, 0, 0, KERN_TYPE_F16, m, k, n, 256, false);
            assert_int_equal(p.dq_rows, m);
            assert_true(p.f16mma);
            assert_int_equal(p.wgmma, h.wgmma);
            assert_int_equal(p.variant, h.variant);
            assert_int_equal(p.ksplit, h.ksplit);
            assert_non_null(strstr(p.why, "two passes; auto"));
            /* no sm_90a module (compute capability 8.x / 12.0): auto keeps the fused kernel
             * (the two-pass path was timed on the wgmma kernel only); asked, the f16-MMA one */
            assert_false(dq_plan(&h100, A, t, m, k, n, -1, cap).dequant);
            p = dq_plan(&h100, A, t, m, k, n, 1, cap);
            assert_true(p.dequant && p.f16mma && !p.wgmma);
            /* an int8 tile asked for under auto: that tile, fused */
            kern_cuda_gemm_plan i8 = kern_cuda_gemm_plan_make(&h100w, A, 1 + 1, 0, t, m, k, n, 0x1000, false);
            p = kern_cuda_gemm_plan_dq(&h100w, A, 1 + 1, 0, t, m, k, n, -1, cap, &i8);
            assert_false(p.dequant);
            assert_int_equal(p.mma, i8.mma);
        }
        /* weights larger than the workspace: auto keeps the fused kernels (slabs were not
         * measured faster); asked, slabs of 2048 rows (32 MiB / 16 KiB) */
        assert_false(dq_plan(&h100w, A, t, 14336, 8192, 512, -1, cap).dequant);
        assert_int_equal(dq_plan(&h100w, A, t, 14336, 8192, 512, 1, cap).dq_rows, 2048);
        /* fewer than 512 tokens: auto keeps the fused kernels; asked (1) it applies */
        assert_false(dq_plan(&h100w, A, t, 2048, 4096, 64, -1, cap).dequant);
        assert_true(dq_plan(&h100w, A, t, 2048, 4096, 64, 1, cap).dequant);
        /* the LM head asked: slabs of the rows that fit 32 MiB of f16, a multiple of 256 */
        p = dq_plan(&h100w, A, t, 151936, 2048, 512, 1, cap);
        assert_true(p.dequant);
        assert_int_equal(p.dq_rows, 8192);
        assert_non_null(strstr(p.why, "asked"));
        assert_int_equal(dq_plan(&h100w, A, t, 151936, 2048, 512, 1, 3u << 20).dq_rows, 768); /* 3 MiB / 4 KiB */
        /* under 256 rows per slab: none */
        assert_false(dq_plan(&h100w, A, t, 4096, 8192, 512, 1, 1u << 20).dequant);
        /* the kinds that name a fused kernel, asked off, old code: never */
        assert_false(dq_plan(&h100w, KERN_CUDA_GEMM_WMMA, t, 2048, 4096, 512, 1, cap).dequant);
        assert_false(dq_plan(&h100w, KERN_CUDA_GEMM_MMA, t, 2048, 4096, 512, 1, cap).dequant);
        assert_false(dq_plan(&h100w, A, t, 2048, 4096, 512, 0, cap).dequant);
        kern_cuda_gemm_caps t4 = h100;
        t4.code_arch = 75;
        assert_false(dq_plan(&t4, A, t, 2048, 4096, 512, 1, cap).dequant);
        /* the kinds f16mma and wgmma: auto's rule is AUTO's only; asked, that kernel */
        assert_false(dq_plan(&h100w, KERN_CUDA_GEMM_F16MMA, t, 2048, 4096, 512, -1, cap).dequant);
        p = dq_plan(&h100w, KERN_CUDA_GEMM_F16MMA, t, 2048, 4096, 512, 1, cap);
        assert_true(p.dequant && p.f16mma && !p.wgmma);
        p = dq_plan(&h100w, KERN_CUDA_GEMM_WGMMA, t, 512, 2048, 512, 1, cap);
        assert_true(p.dequant && p.wgmma);
    }
    /* f16 weights: no first pass to make */
    assert_false(dq_plan(&h100w, A, KERN_TYPE_F16, 2048, 4096, 512, 1, cap).dequant);
}

static void test_wgmma_xv(void **state)
{
    (void)state;
    const int w0 = 1 + GI8_NVAR + GF_NVAR;
    for (int wt = 4; wt <= 8; wt += 4) {
        const kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
        for (int v = 0; v < GW_XV_TILES; v++) {
            const kern_cuda_gemm_plan p =
                kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + v, 0, t, 151936, 2048, 512, 0x1000, false);
            assert_true(p.wgmma && !p.deep && p.xv == 0);
            assert_int_equal(p.stages, gw_fix_slots(v, wt, 0));
            for (int xv = 1; xv <= GW_NXV; xv++) {
                kern_cuda_gemm_plan q = p;
                char s[2] = {(char)('0' + xv), 0};
                kern_cuda_gemm_wgmma_xv(&h100w, &q, t, s);
                assert_int_equal(q.xv, xv);
                const int pad = xv & GW_XV_PAD;
                assert_int_equal(q.stages, pad ? gw_fix_slots(v, wt, 1) : p.stages);
                assert_int_equal(q.smem, gw_smem_bytes_x(wt, q.tile, q.bn, q.stages, 0, pad));
                assert_true((int64_t)gw_var_cps(v) * (q.smem + 1024) <= h100w.smem_optin + 1024);
                /* the kernel's name in the module's table */
                const char *nm = kern_cuda_kernel_names[KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + gw_xk_index(v, wt, xv)];
                char want[64];
                snprintf(want, sizeof want, "kern_gemm_wgmma_q%d_0_w%d_x%d", wt, v, xv);
                assert_string_equal(nm, want);
            }
            /* fixed slots dropped where the plan's differ: 3 slots asked, the deep pipeline */
            kern_cuda_gemm_plan q = p;
            kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "3", NULL, NULL, 151936, 512);
            kern_cuda_gemm_wgmma_xv(&h100w, &q, t, "2");
            assert_int_equal(q.xv, 0);
            q = p;
            kern_cuda_gemm_wgmma_tune(&h100w, &q, t, "3", NULL, NULL, 151936, 512);
            kern_cuda_gemm_wgmma_xv(&h100w, &q, t, "3");
            assert_int_equal(q.xv, GW_XV_PAD);
            assert_int_equal(q.stages, 3);
            q = p;
            kern_cuda_gemm_wgmma_tune(&h100w, &q, t, NULL, "2", NULL, 151936, 512);
            assert_true(q.deep);
            kern_cuda_gemm_wgmma_xv(&h100w, &q, t, "2");
            assert_int_equal(q.xv, 0);
            /* nothing else is a variant */
            static const char *const bad[] = {"0", "4", "12", "x", ""};
            for (size_t i = 0; i < ADG_ARRAY_LEN(bad); i++) {
                q = p;
                kern_cuda_gemm_wgmma_xv(&h100w, &q, t, bad[i]);
                assert_int_equal(q.xv, 0);
                assert_int_equal(q.smem, p.smem);
            }
        }
        /* NULL (the variable unset) keeps the plan's own: auto's x3 where it takes wgmma;
         * "0" turns it off (the measured kernel, its slots refitted by the tune) */
        for (int v = 0; v < 6; v++) {
            static const int64_t sh[6][2] = {{4096, 2048}, {2048, 4096}, {512, 2048},
                                             {768, 2048},  {2048, 768},  {151936, 2048}};
            kern_cuda_gemm_plan a =
                kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_AUTO, 0, 0, t, sh[v][0], sh[v][1], 512, 0x1000, false);
            assert_int_equal(a.xv, a.wgmma ? 3 : 0);
            kern_cuda_gemm_plan b = a;
            kern_cuda_gemm_wgmma_xv(&h100w, &b, t, NULL);
            assert_int_equal(b.xv, a.xv);
            assert_int_equal(b.smem, a.smem);
            if (a.wgmma) {
                kern_cuda_gemm_wgmma_xv(&h100w, &b, t, "0");
                assert_int_equal(b.xv, 0);
                /* the measured kernel's rows: the slots of the plan without auto's variant */
                assert_int_equal(b.stages, gw_fix_slots(b.variant, wt, 0));
                assert_int_equal(b.smem, gw_smem_bytes(wt, b.tile, b.bn, b.stages));
            }
        }
        /* the 64 x 64 tile has none */
        kern_cuda_gemm_plan p =
            kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0 + 3, 0, t, 4096, 2048, 512, 0x1000, false);
        kern_cuda_gemm_wgmma_xv(&h100w, &p, t, "1");
        assert_int_equal(p.xv, 0);
    }
    /* f16 weights: none */
    kern_cuda_gemm_plan p =
        kern_cuda_gemm_plan_make(&h100w, KERN_CUDA_GEMM_WGMMA, w0, 0, KERN_TYPE_F16, 4096, 2048, 512, 0x1000, false);
    kern_cuda_gemm_wgmma_xv(&h100w, &p, KERN_TYPE_F16, "3");
    assert_int_equal(p.xv, 0);
}

/* The sm_90a module embedded in this binary: an sm_90a cubin (EM_CUDA, e_flags saying
 * sm_90 with the arch-specific bit, as cuobjdump and the loader read them) holding every
 * kernel the host looks up. */
static void test_wgmma_module(void **state)
{
    (void)state;
    const void *img;
    size_t len;
    kern_cuda_wgmma_image(&img, &len);
    if (!len)
        ADG_SKIP("this build has no sm_90a module (no nvcc, or AMXDIAG_CUDA_ARCHS without 90)");
    const uint8_t *b = img;
    assert_true(len > 64 && memcmp(b, "\x7f" "ELF", 4) == 0);
    assert_int_equal(b[18] | (b[19] << 8), 190); /* EM_CUDA */
    fatbin_entry e;
    memset(&e, 0, sizeof e);
    ADG_ASSERT_OK(fatbin_read_cubin(b, len, &e));
    assert_int_equal(e.elf_sm, 90);
    assert_int_equal(e.elf_variant, 'a');
    for (int i = KF_GEMM_WGMMA_FIRST; i <= KF_GEMM_WGMMA_LAST; i++) {
        const char *nm = kern_cuda_kernel_names[i];
        assert_non_null(nm);
        assert_non_null(memmem(b, len, nm, strlen(nm) + 1));
        assert_true(kern_cuda_fn_in_wgmma(i));
    }
    assert_false(kern_cuda_fn_in_wgmma(KF_GEMM_F16MMA_LAST));
    print_message("sm_90a module: %zu bytes, %d kernels\n", len, KF_GEMM_WGMMA_LAST - KF_GEMM_WGMMA_FIRST + 1);
}

/* ---- on the GPU ------------------------------------------------------------------------ */

#include "cuda_test_ctx.h"

static void need_mma(void)
{
    if (!ctx)
        ADG_SKIP("%s", skip_reason);
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_MMA, 0, 0);
    /* the fused kernels, as the cases name them (test_gpu_gemm_dequant: the two-pass path) */
    kern_cuda_set_gemm_dq(ctx, 0, 0);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_Q8_0, 256, 256, 64, 0, false);
    if (!p.mma)
        ADG_SKIP("no int8 GEMM on this GPU: %s", p.why);
}

typedef struct dev {
    kern_cu_deviceptr w, x, y, s, ids;
} dev;

static void dev_free(dev *d)
{
    kern_cu_deviceptr *p[] = {&d->w, &d->x, &d->y, &d->s, &d->ids};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (*p[i])
            kern_cuda_free(ctx, *p[i]);
}

/* x in f32 whose q8_0 quantisation is (xq, xd): the dequantised values themselves (the
 * device quantiser then reproduces them exactly: amax is a multiple of the step). */
static float *x_from_q8(const int8_t *xq, const float *xd, int64_t n, int64_t k)
{
    float *x = malloc((size_t)(n * k) * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < n * k; i++)
        x[i] = (float)xq[i] * xd[i / 32];
    return x;
}

/* Device-quantised X, read back from the scratch (layout of kern_cuda_gemv_scratch:
 * int8 [n*k] then steps, each 256-byte aligned), so that the reference uses exactly the
 * GEMM's input even if the quantiser and the CPU ever disagreed (test_cuda_kernels
 * checks that separately). */
static void download_xq(dev *d, int64_t n, int64_t k, int8_t *xq, float *xd)
{
    ADG_ASSERT_OK(kern_cuda_sync(ctx, "gemm"));
    size_t a = ((size_t)(n * k) + 255) & ~(size_t)255;
    ADG_ASSERT_OK(kern_cuda_download(ctx, xq, d->s, (size_t)(n * k)));
    ADG_ASSERT_OK(kern_cuda_download(ctx, xd, d->s + a, (size_t)(n * k / 32) * sizeof(float)));
}

static void gpu_case(int wt, int tile, int stages, size_t pad, int64_t m, int64_t k, int64_t n, uint64_t seed)
{
    kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
    uint64_t st = seed;
    uint8_t *wbuf = make_w(wt, m, k, &st, pad);
    int8_t *xq;
    float *xd;
    make_x(n, k, &st, &xq, &xd);
    float *x = x_from_q8(xq, xd, n, k);
    size_t wb = kern_row_size(t, k) * (size_t)m;
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, wb + pad, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_gemm_scratch(n, k), &d.s));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, wbuf, wb + pad));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n * k) * 4));
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_MMA, tile, stages);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, t, m, k, n, d.w + pad, false);
    assert_true(p.mma);
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, t, d.w + pad, m, k, d.x, n, d.y, d.s));
    float *got = malloc((size_t)(n * m) * sizeof *got), *want = malloc((size_t)(n * m) * sizeof *want);
    assert_true(got && want);
    download_xq(&d, n, k, xq, xd);
    ADG_ASSERT_OK(kern_cuda_download(ctx, got, d.y, (size_t)(n * m) * 4));
    ref_gemm(wt, wbuf + pad, m, k, xq, xd, NULL, n, want);
    char what[128];
    snprintf(what, sizeof what, "gpu %s %lldx%lld x %lld, tile v%d %s, %d stages, %s", kern_type_name(t),
             (long long)m, (long long)k, (long long)n, p.variant, kern_cuda_gemm_tile_name(p.variant + 1), p.stages,
             p.aligned ? "cp.async" : "2-byte loads");
    expect_same(what, got, want, n * m);
    print_message("%s: bit-exact\n", what);
    dev_free(&d);
    free(wbuf);
    free(xq);
    free(xd);
    free(x);
    free(got);
    free(want);
}

static void test_gpu_gemm(void **state)
{
    (void)state;
    need_mma();
    for (int wt = 4; wt <= 8; wt += 4) {
        for (int tile = 64; tile <= 128; tile *= 2)
            for (int stages = 2; stages <= 4; stages++)
                gpu_case(wt, tile, stages, 0, 300, 768, 130, 21); /* partial tiles, 6 stages of k */
        for (int c = 3; c <= kern_cuda_gemm_n_tiles(); c++) /* the other tile variants */
            gpu_case(wt, c, 2 + c % 3, 0, 300, 768, 130, 21);
        gpu_case(wt, 0, 0, 0, 1024, 2048, 256, 22);                /* attn_q's k, auto tile */
        gpu_case(wt, 0, 0, 0, 512, 4096, 77, 23);
        gpu_case(wt, 64, 3, 0, 131, 96, 37, 24);  /* k % 128 != 0 */
        gpu_case(wt, 128, 2, 2, 200, 512, 9, 25); /* misaligned weights */
        gpu_case(wt, 3, 3, 2, 200, 512, 9, 25);   /* the same, 32 x 64 warps */
        gpu_case(wt, 8, 3, 0, 131, 96, 37, 24);   /* k % 128 != 0, 16 x 32 warps */
        gpu_case(wt, 0, 0, 0, 64, 4096, 1, 26);   /* one token */
    }
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
}

/* The f16-MMA kernel against the same CPU formula within its stated bound, the one
 * `--check` applies to every tensor-core GEMM: each product carries the f16 roundings of
 * q d and of x (2^-11 relative each), the sums are f32, so |y - ref| <= 1.1 * 2^-10 *
 * sum_i |w_i x_i| (docs/cuda-kernels.md).  Also prints the largest error seen in units of
 * that sum. */
/* For a result outside the bound: which rows (mod 64) and tokens (mod 64) are wrong, and
 * whether a wrong value is another output's correct one (results stored to the wrong
 * place: the accumulator map) or none (operands read from the wrong place: the shared
 * layout, a descriptor, a stage) -- what a kernel that cannot run here needs to be fixed
 * from a device log. */
static void explain_wrong(const float *got, const float *want, const float *wf, const float *x, int64_t m, int64_t k,
                          int64_t n)
{
    char rows[65], toks[65];
    memset(rows, '.', 64);
    memset(toks, '.', 64);
    rows[64] = toks[64] = 0;
    int64_t wrong = 0, shown = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < m; r++) {
            double mag = 0;
            for (int64_t j = 0; j < k; j++)
                mag += fabs((double)wf[r * k + j] * x[i * k + j]);
            const double tol = 1.1 * ldexp(mag, -10) + 1e-30;
            if (fabs((double)got[i * m + r] - want[i * m + r]) <= tol)
                continue;
            wrong++;
            rows[r % 64] = 'x';
            toks[i % 64] = 'x';
            if (shown < 6) {
                shown++;
                int64_t hit = -1;
                for (int64_t e = 0; e < n * m && hit < 0; e++)
                    if (fabs((double)got[i * m + r] - want[e]) <= tol && e != i * m + r)
                        hit = e;
                if (hit >= 0)
                    print_message("  token %lld row %lld holds the result of token %lld row %lld\n", (long long)i,
                                  (long long)r, (long long)(hit / m), (long long)(hit % m));
                else
                    print_message("  token %lld row %lld is %.6g, the reference %.6g: no output's value\n",
                                  (long long)i, (long long)r, (double)got[i * m + r], (double)want[i * m + r]);
            }
        }
    print_message("  %lld of %lld outputs wrong; rows mod 64 wrong: %s\n  tokens mod 64 wrong: %s\n", (long long)wrong,
                  (long long)(n * m), rows, toks);
}

/* the kernel gpu_f16_case runs: the f16-MMA one, or its wgmma form (test_gpu_gemm_wgmma) */
static kern_cuda_gemm_kind f16_kind = KERN_CUDA_GEMM_F16MMA;
/* gpu_f16_case's plan must be the two-pass one (test_gpu_gemm_dequant) */
static bool f16_want_dq;

/* A device buffer filled with 0xff bytes (f32 NaN): what a kernel fails to write, or a
 * split-K sum whose y was not zeroed, shows. */
static void poison(kern_cu_deviceptr p, size_t bytes)
{
    uint8_t *h = malloc(bytes);
    assert_non_null(h);
    memset(h, 0xff, bytes);
    ADG_ASSERT_OK(kern_cuda_upload(ctx, p, h, bytes));
    free(h);
}

static void gpu_f16_case(int wt, int tile, int stages, size_t pad, int64_t m, int64_t k, int64_t n, uint64_t seed)
{
    kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
    uint64_t st = seed;
    uint8_t *wbuf = make_w(wt, m, k, &st, pad);
    int8_t *xq;
    float *xd;
    make_x(n, k, &st, &xq, &xd);
    float *x = x_from_q8(xq, xd, n, k);
    size_t rs = kern_row_size(t, k), wb = rs * (size_t)m;
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, wb + pad, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_gemm_scratch(n, k), &d.s));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, wbuf, wb + pad));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n * k) * 4));
    poison(d.y, (size_t)(n * m) * 4);
    poison(d.s, kern_cuda_gemm_scratch(n, k));
    kern_cuda_set_gemm_kernel(ctx, f16_kind, tile, stages);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, t, m, k, n, d.w + pad, false);
    assert_true(p.f16mma);
    assert_int_equal(p.dequant, f16_want_dq);
    if (f16_kind != KERN_CUDA_GEMM_AUTO)
        assert_int_equal(p.wgmma, f16_kind == KERN_CUDA_GEMM_WGMMA);
    const char *kn = p.wgmma ? "wgmma" : "f16mma";
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, t, d.w + pad, m, k, d.x, n, d.y, d.s));
    float *got = malloc((size_t)(n * m) * sizeof *got), *want = malloc((size_t)(n * m) * sizeof *want);
    float *wf = malloc((size_t)(m * k) * sizeof *wf);
    assert_true(got && want && wf);
    ADG_ASSERT_OK(kern_cuda_download(ctx, got, d.y, (size_t)(n * m) * 4));
    ref_gemm(wt, wbuf + pad, m, k, xq, xd, NULL, n, want);
    for (int64_t r = 0; r < m; r++)
        ADG_ASSERT_OK(kern_dequantize_row(t, wbuf + pad + rs * (size_t)r, wf + r * k, k));
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < m; r++) {
            double mag = 0;
            for (int64_t j = 0; j < k; j++)
                mag += fabs((double)wf[r * k + j] * x[i * k + j]);
            const double err = fabs((double)got[i * m + r] - want[i * m + r]);
            if (!(err <= 1.1 * ldexp(mag, -10) + 1e-30)) {
                explain_wrong(got, want, wf, x, m, k, n);
                fail_msg("gpu %s %s %lldx%lld x %lld: token %lld row %lld is %.9g, the reference %.9g (sum |w x| "
                         "%.4g)",
                         kn, kern_type_name(t), (long long)m, (long long)k, (long long)n, (long long)i, (long long)r,
                         (double)got[i * m + r], (double)want[i * m + r], mag);
            }
            if (mag > 0 && err / mag > worst)
                worst = err / mag;
        }
    print_message("gpu %s %s %lldx%lld x %lld, tile %c%d%s %s, %d stages%s%s, %d k slice(s), %s: within 1.1 * "
                  "2^-10 sum |w x| (largest %.2e)\n",
                  kn, kern_type_name(t), (long long)m, (long long)k, (long long)n, p.wgmma ? 'w' : 'f', p.variant,
                  p.xv == 1 ? " x1" : p.xv == 2 ? " x2" : p.xv == 3 ? " x3" : "",
                  kern_cuda_gemm_tile_name(1 + kern_cuda_gemm_n_tiles() + (p.wgmma ? kern_cuda_gemm_n_f16_tiles() : 0) +
                                           p.variant),
                  p.stages, !p.wgmma ? "" : p.deep ? " (pipe 2)" : " (pipe 1)", p.grid ? ", persistent" : "", p.ksplit,
                  p.aligned ? "cp.async" : "2-byte loads", worst);
    dev_free(&d);
    free(wbuf);
    free(xq);
    free(xd);
    free(x);
    free(got);
    free(want);
    free(wf);
}

static void test_gpu_gemm_f16mma(void **state)
{
    (void)state;
    need_mma();
    const int f0 = 1 + kern_cuda_gemm_n_tiles();
    for (int wt = 4; wt <= 8; wt += 4) {
        for (int v = 0; v < kern_cuda_gemm_n_f16_tiles(); v++)
            for (int stages = 3; stages <= 4; stages++)
                gpu_f16_case(wt, f0 + v, stages, 0, 300, 768, 130, 51); /* partial tiles, 6 k stages */
        gpu_f16_case(wt, 0, 0, 0, 1024, 2048, 256, 52);   /* attn_q's k, auto tile */
        gpu_f16_case(wt, 0, 0, 0, 512, 4096, 77, 53);
        gpu_f16_case(wt, f0 + 3, 3, 0, 131, 96, 37, 54);  /* k % 128 != 0: 2-byte weight loads */
        gpu_f16_case(wt, f0 + 2, 3, 2, 200, 512, 9, 55);  /* misaligned weights */
        gpu_f16_case(wt, 0, 0, 0, 64, 4096, 1, 56);       /* one token */
        gpu_f16_case(wt, f0 + 5, 4, 0, 300, 832, 130, 57); /* k64 tiles: k % 128 == 64, whole 64-stages */
        gpu_f16_case(wt, f0 + 6, 4, 4, 200, 512, 70, 58);  /* 4-byte aligned: cp.async for the k64 tiles */
        gpu_f16_case(wt, f0 + 7, 3, 0, 131, 96, 37, 59);   /* an odd block count: 2-byte loads */
        kern_cuda_set_gemm_ksplit(ctx, 2); /* split-K: slices added into a zeroed y */
        gpu_f16_case(wt, f0 + 3, 3, 0, 300, 1664, 130, 60); /* 13 stages: 7 + 6 */
        gpu_f16_case(wt, f0 + 5, 4, 0, 600, 2048, 256, 61);
        kern_cuda_set_gemm_ksplit(ctx, 0);
        /* the staged epilogue: 16-byte row pieces (m % 4 == 0), 4-byte ones (131 rows),
         * RED.ADD.V4 under split-K, the LM head's tile */
        print_message("gpu f16mma: staged epilogue (AMXDIAG_GPU_GEMM_STORE=staged) from here\n");
        kern_cuda_set_gemm_staged(ctx, true);
        gpu_f16_case(wt, f0 + 0, 3, 0, 300, 768, 130, 62);
        gpu_f16_case(wt, f0 + 5, 3, 0, 300, 832, 130, 63);
        gpu_f16_case(wt, f0 + 3, 3, 0, 131, 96, 37, 64);
        kern_cuda_set_gemm_ksplit(ctx, 2);
        gpu_f16_case(wt, f0 + 0, 3, 0, 300, 1664, 130, 65);
        gpu_f16_case(wt, f0 + 5, 4, 0, 600, 2048, 256, 66);
        kern_cuda_set_gemm_ksplit(ctx, 0);
        kern_cuda_set_gemm_staged(ctx, false);
    }
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
}

/* y of one GEMM of weights wbuf (host) on x (host f32) under the context's settings. */
static float *gemm_once(kern_type t, const uint8_t *wbuf, int64_t m, int64_t k, const float *x, int64_t n)
{
    const size_t wb = kern_row_size(t, k) * (size_t)m;
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, wb, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_gemm_scratch(n, k), &d.s));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, wbuf, wb));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n * k) * 4));
    poison(d.y, (size_t)(n * m) * 4);
    poison(d.s, kern_cuda_gemm_scratch(n, k));
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, t, d.w, m, k, d.x, n, d.y, d.s));
    float *y = malloc((size_t)(n * m) * sizeof *y);
    assert_non_null(y);
    ADG_ASSERT_OK(kern_cuda_download(ctx, y, d.y, (size_t)(n * m) * 4));
    dev_free(&d);
    return y;
}

/* The two-pass path (weights to f16 in the workspace, then the f16-weight kernel): within
 * the tensor-core bound at auto's picks, one slab and several (a 1 MiB workspace: slabs of
 * 512 or 256 rows and a shorter last one, split-K over slabs); and bit for bit the fused
 * kernel's result where both run the same tile with one k slice (the same f16 operands in
 * the same MMA order: what the first pass writes is what the fused conversion makes). */
static void test_gpu_gemm_dequant(void **state)
{
    (void)state;
    need_mma();
    kern_cuda_set_gemm_dq(ctx, 1, 0);
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_Q8_0, 512, 2048, 512, 0, false);
    if (!p.dequant) {
        kern_cuda_set_gemm_dq(ctx, 0, 0);
        ADG_SKIP("no two-pass GEMM here: %s", p.why);
    }
    f16_kind = KERN_CUDA_GEMM_AUTO;
    f16_want_dq = true;
    for (int wt = 4; wt <= 8; wt += 4) {
        kern_cuda_set_gemm_dq(ctx, 1, (size_t)KERN_CUDA_GEMM_DQ_MIB << 20);
        gpu_f16_case(wt, 0, 0, 0, 1024, 2048, 512, 141); /* one slab */
        gpu_f16_case(wt, 0, 0, 0, 300, 768, 130, 142);   /* partial tiles */
        gpu_f16_case(wt, 0, 0, 0, 64, 4096, 1, 143);     /* one token */
        kern_cuda_set_gemm_dq(ctx, 1, 1u << 20);
        p = kern_cuda_gemm_plan_for(ctx, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, 1300, 768, 130, 0, false);
        assert_true(p.dequant);
        assert_int_equal(p.dq_rows, 512);
        gpu_f16_case(wt, 0, 0, 0, 1300, 768, 130, 144);  /* slabs of 512, 512, 276 rows */
        kern_cuda_set_gemm_ksplit(ctx, 2);
        gpu_f16_case(wt, 0, 0, 0, 600, 2048, 256, 145);  /* 256, 256, 88 rows, split-K */
        kern_cuda_set_gemm_ksplit(ctx, 0);
        /* k slices as the plans suggest: 1024-row slabs in one, the 100-row last one in two
         * (y zeroed once by the first launch, the first slab written, the last added) */
        kern_cuda_set_gemm_dq(ctx, 1, 4u << 20);
        p = kern_cuda_gemm_plan_for(ctx, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, 1124, 2048, 512, 0, false);
        assert_int_equal(p.dq_rows, 1024);
        kern_cuda_gemm_plan tp = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_F16, 100, 2048, 512, 0, false);
        print_message("gpu two-pass mixed k slices: slabs of 1024 rows in %d, the last 100 rows in %d\n", p.ksplit,
                      tp.ksplit);
        assert_int_not_equal(p.ksplit, tp.ksplit); /* the case this is for */
        gpu_f16_case(wt, 0, 0, 0, 1124, 2048, 512, 146);
    }
    f16_want_dq = false;
    /* bit for bit against the fused kernel at the same tile */
    const int first = 1 + kern_cuda_gemm_n_tiles();
    const kern_cuda_gemm_kind kinds[2] = {KERN_CUDA_GEMM_F16MMA, KERN_CUDA_GEMM_WGMMA};
    for (int ki = 0; ki < 2; ki++)
        for (int wt = 4; wt <= 8; wt += 4) {
            const kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
            const int64_t m = 700, k = 1024, n = 300;
            const int tile = ki == 0 ? first + 0 : first + kern_cuda_gemm_n_f16_tiles() + 1;
            kern_cuda_set_gemm_kernel(ctx, kinds[ki], tile, 0);
            kern_cuda_set_gemm_dq(ctx, 0, 0);
            kern_cuda_gemm_plan pf = kern_cuda_gemm_plan_for(ctx, t, m, k, n, 0, false);
            kern_cuda_set_gemm_dq(ctx, 1, 1u << 20);
            kern_cuda_gemm_plan pd = kern_cuda_gemm_plan_for(ctx, t, m, k, n, 0, false);
            if (ki == 1 && !pf.wgmma)
                continue; /* no sm_90a module: the f16-MMA pair covers the path */
            assert_true(pd.dequant && pd.f16mma && !pf.dequant && pf.f16mma);
            assert_int_equal(pd.wgmma, pf.wgmma);
            assert_int_equal(pd.variant, pf.variant);
            assert_int_equal(pd.ksplit, 1);
            uint64_t st = 150 + (uint64_t)wt + 10 * (uint64_t)ki;
            uint8_t *wbuf = make_w(wt, m, k, &st, 0);
            int8_t *xq;
            float *xd;
            make_x(n, k, &st, &xq, &xd);
            float *x = x_from_q8(xq, xd, n, k);
            kern_cuda_set_gemm_dq(ctx, 0, 0);
            float *fused = gemm_once(t, wbuf, m, k, x, n);
            kern_cuda_set_gemm_dq(ctx, 1, 1u << 20); /* 512 rows per slab: 512 + 188 */
            float *two = gemm_once(t, wbuf, m, k, x, n);
            assert_memory_equal(fused, two, (size_t)(n * m) * sizeof *two);
            print_message("gpu two-pass %s %s tile %s, slabs of %lld rows: bit for bit the fused kernel's result\n",
                          pd.wgmma ? "wgmma" : "f16mma", kern_type_name(t),
                          kern_cuda_gemm_tile_name(tile), (long long)pd.dq_rows);
            free(fused);
            free(two);
            free(wbuf);
            free(xq);
            free(xd);
            free(x);
        }
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
    kern_cuda_set_gemm_dq(ctx, 0, (size_t)KERN_CUDA_GEMM_DQ_MIB << 20);
    f16_kind = KERN_CUDA_GEMM_F16MMA;
}

/* The wgmma kernel (the sm_90a module, compute capability 9.0) within the same bound:
 * every variant, partial tiles in rows and tokens, the 2-byte weight path (k % 64 != 0,
 * misaligned), split-K, one token. */
static void test_gpu_gemm_wgmma(void **state)
{
    (void)state;
    need_mma();
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_WGMMA, 0, 0);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_Q8_0, 256, 256, 64, 0, false);
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
    if (!p.wgmma)
        ADG_SKIP("no wgmma GEMM here: %s", p.why);
    const int w0 = 1 + kern_cuda_gemm_n_tiles() + kern_cuda_gemm_n_f16_tiles();
    f16_kind = KERN_CUDA_GEMM_WGMMA;
    /* both pipelines: MMAs waited for within their stage, and one stage left in flight */
    for (int pipe = 1; pipe <= 2; pipe++) {
        setenv("AMXDIAG_GPU_GEMM_WGMMA_PIPE", pipe == 2 ? "2" : "1", 1);
        print_message("gpu wgmma: pipeline %d (AMXDIAG_GPU_GEMM_WGMMA_PIPE=%d)\n", pipe, pipe);
        for (int wt = 4; wt <= 8; wt += 4) {
            for (int v = 0; v < kern_cuda_gemm_n_wgmma_tiles(); v++) {
                gpu_f16_case(wt, w0 + v, 0, 0, 300, 768, 300, 71 + v); /* partial tiles, 12 k stages */
                gpu_f16_case(wt, w0 + v, 0, 0, 131, 96, 37, 75 + v);   /* 3 blocks: 2-byte loads, half a stage */
            }
            gpu_f16_case(wt, 0, 0, 0, 512, 2048, 256, 80);     /* attn_q's k, auto tile */
            gpu_f16_case(wt, w0 + 0, 0, 2, 200, 512, 70, 81); /* misaligned weights: 2-byte loads */
            gpu_f16_case(wt, w0 + 1, 0, 4, 200, 512, 70, 82); /* 4-byte aligned: cp.async */
            gpu_f16_case(wt, w0 + 2, 0, 0, 64, 4096, 1, 83);  /* one token */
            kern_cuda_set_gemm_ksplit(ctx, 2);                  /* split-K: slices added into a zeroed y */
            gpu_f16_case(wt, w0 + 1, 0, 0, 300, 1664, 130, 84); /* 26 stages: 13 + 13 */
            gpu_f16_case(wt, w0 + 0, 0, 0, 600, 2048, 256, 85);
            kern_cuda_set_gemm_ksplit(ctx, 0);
        }
    }
    unsetenv("AMXDIAG_GPU_GEMM_WGMMA_PIPE");
    /* the persistent grid: more tiles than CTAs resident at once (64 x 64: 512 tiles on
     * 3 x SMs CTAs; 128 x 256: 160 tiles on one CTA per SM), each CTA's tiles one stream */
    setenv("AMXDIAG_GPU_GEMM_WGMMA_PERSIST", "1", 1);
    print_message("gpu wgmma: persistent grid (AMXDIAG_GPU_GEMM_WGMMA_PERSIST=1)\n");
    for (int wt = 4; wt <= 8; wt += 4) {
        gpu_f16_case(wt, w0 + 3, 0, 0, 4096, 256, 512, 86);
        gpu_f16_case(wt, w0 + 0, 0, 0, 4096, 128, 1280, 87);
    }
    unsetenv("AMXDIAG_GPU_GEMM_WGMMA_PERSIST");
    /* the experimental variants (AMXDIAG_GPU_GEMM_WGMMA_X=1..3: padded raw W rows, fixed
     * slots, both): tiles w0..w2, partial tiles, the 2-byte path, split-K */
    for (int xv = 1; xv <= 3; xv++) {
        char s[2] = {(char)('0' + xv), 0};
        setenv("AMXDIAG_GPU_GEMM_WGMMA_X", s, 1);
        print_message("gpu wgmma: variant x%d (AMXDIAG_GPU_GEMM_WGMMA_X=%d)\n", xv, xv);
        for (int wt = 4; wt <= 8; wt += 4)
            for (int v = 0; v < 3; v++) {
                gpu_f16_case(wt, w0 + v, 0, 0, 300, 768, 300, 131 + v);
                if (v == 2)
                    gpu_f16_case(wt, w0 + v, 0, 2, 131, 96, 37, 134); /* 2-byte loads, half a stage */
            }
        kern_cuda_set_gemm_ksplit(ctx, 2);
        gpu_f16_case(8, w0 + 0, 0, 0, 600, 2048, 256, 135);
        kern_cuda_set_gemm_ksplit(ctx, 0);
    }
    unsetenv("AMXDIAG_GPU_GEMM_WGMMA_X");
    /* auto's own variant (x3 where it takes wgmma): an attn_o-like shape (k 4096, few tiles) */
    f16_kind = KERN_CUDA_GEMM_AUTO;
    for (int wt = 4; wt <= 8; wt += 4) {
        kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
        kern_cuda_gemm_plan a = kern_cuda_gemm_plan_for(ctx, wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0, 128, 4096,
                                                        512, 0, false);
        print_message("gpu wgmma auto %s 128x4096 x 512: w%d x%d, %d k slice(s) (%s)\n", wt == 4 ? "q4_0" : "q8_0",
                      a.variant, a.xv, a.ksplit, a.why);
        assert_true(a.wgmma && a.xv == 3);
        gpu_f16_case(wt, 0, 0, 0, 128, 4096, 512, 136 + wt);
    }
    f16_kind = KERN_CUDA_GEMM_F16MMA;
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
}

/* F16 weights through the kernel kind `kind` (tile code `tile`, 0: its pick) against the
 * exact sum of the f16 inputs (weights as stored, x rounded to f16 as the device does):
 * within 2^-14 sum |w x| (f32 accumulation on the tensor cores over at most a few
 * thousand k; the WMMA kernel's bound too), the kernel the plan names checked as `want`
 * ("wgmma", "f16mma", "wmma"). */
static void gpu_f16w_case(kern_cuda_gemm_kind kind, int tile, const char *want, size_t pad, int64_t m, int64_t k,
                          int64_t n, uint64_t seed)
{
    uint64_t st = seed;
    const size_t wb = (size_t)(m * k) * 2;
    uint16_t *wh = malloc(wb + pad);
    float *x = malloc((size_t)(n * k) * sizeof *x), *got = malloc((size_t)(n * m) * sizeof *got);
    double *xr = malloc((size_t)(n * k) * sizeof *xr), *wr = malloc((size_t)k * sizeof *wr);
    assert_true(wh && x && got && xr && wr);
    uint16_t *w = (uint16_t *)((uint8_t *)wh + pad);
    for (int64_t i = 0; i < m * k; i++) {
        const uint16_t h = kern_fp32_to_fp16(rnd(&st) * 2.0f);
        memcpy((uint8_t *)w + 2 * i, &h, 2);
    }
    for (int64_t i = 0; i < n * k; i++) {
        x[i] = rnd(&st) * 8.0f;
        xr[i] = kern_fp16_to_fp32(kern_fp32_to_fp16(x[i]));
    }
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, wb + pad, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_gemm_scratch(n, k), &d.s));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, wh, wb + pad));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n * k) * 4));
    kern_cuda_set_gemm_kernel(ctx, kind, tile, 0);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_F16, m, k, n, d.w + pad, false);
    const char *kn = p.wgmma ? "wgmma" : p.f16mma ? "f16mma" : "wmma";
    if (strcmp(kn, want) != 0)
        fail_msg("gpu f16 weights %lldx%lld x %lld: the plan gives %s (%s), not %s", (long long)m, (long long)k,
                 (long long)n, kn, p.why, want);
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, KERN_TYPE_F16, d.w + pad, m, k, d.x, n, d.y, d.s));
    ADG_ASSERT_OK(kern_cuda_download(ctx, got, d.y, (size_t)(n * m) * 4));
    double worst = 0;
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < k; j++) {
            uint16_t h;
            memcpy(&h, (uint8_t *)w + 2 * (r * k + j), 2);
            wr[j] = kern_fp16_to_fp32(h);
        }
        for (int64_t i = 0; i < n; i++) {
            double acc = 0, mag = 0;
            for (int64_t j = 0; j < k; j++) {
                acc += wr[j] * xr[i * k + j];
                mag += fabs(wr[j] * xr[i * k + j]);
            }
            const double err = fabs((double)got[i * m + r] - acc);
            if (!(err <= ldexp(mag, -14) + 1e-30))
                fail_msg("gpu %s f16 weights %lldx%lld x %lld: token %lld row %lld is %.9g, the exact sum %.9g "
                         "(sum |w x| %.4g)",
                         kn, (long long)m, (long long)k, (long long)n, (long long)i, (long long)r,
                         (double)got[i * m + r], acc, mag);
            if (mag > 0 && err / mag > worst)
                worst = err / mag;
        }
    }
    print_message("gpu %s f16 weights %lldx%lld x %lld, variant %d, %d slots/stages%s, %d k slice(s), %s: within "
                  "2^-14 sum |w x| (largest %.2e)\n",
                  kn, (long long)m, (long long)k, (long long)n, p.variant, p.stages,
                  !p.wgmma ? "" : p.deep ? " (pipe 2)" : " (pipe 1)", p.ksplit,
                  p.f16mma ? (p.aligned ? "whole k stages" : "a part stage") : p.why, worst);
    dev_free(&d);
    free(wh);
    free(x);
    free(got);
    free(xr);
    free(wr);
}

/* F16 weights on the GPU: the f16-MMA kernel's every tile (sm_80+), the wgmma kernel's
 * every tile and both pipelines (compute capability 9.0), auto, split-K, part stages
 * (k % 64 == 32), partial tiles, one token, and the WMMA kernel where asked. */
static void test_gpu_gemm_f16_weights(void **state)
{
    (void)state;
    need_mma();
    const int f0 = 1 + kern_cuda_gemm_n_tiles(), w0 = f0 + kern_cuda_gemm_n_f16_tiles();
    for (int v = 0; v < kern_cuda_gemm_n_f16_tiles(); v++)
        gpu_f16w_case(KERN_CUDA_GEMM_F16MMA, f0 + v, "f16mma", 0, 300, 768, 130, 91 + v);
    gpu_f16w_case(KERN_CUDA_GEMM_F16MMA, f0 + 3, "f16mma", 16, 131, 96, 37, 101); /* part stage, 16-byte pad */
    gpu_f16w_case(KERN_CUDA_GEMM_F16MMA, f0 + 5, "f16mma", 0, 200, 544, 70, 102); /* k % 64 == 32 */
    gpu_f16w_case(KERN_CUDA_GEMM_F16MMA, 0, "f16mma", 0, 64, 4096, 1, 103);      /* one token */
    kern_cuda_set_gemm_ksplit(ctx, 2);
    gpu_f16w_case(KERN_CUDA_GEMM_F16MMA, f0 + 3, "f16mma", 0, 300, 1664, 130, 104);
    kern_cuda_set_gemm_ksplit(ctx, 0);
    /* the WMMA kernel as asked (its 16-byte loads take no buffer off 16 bytes: the plan's
     * rule for a misaligned one is test_f16_weights_plan's) */
    gpu_f16w_case(KERN_CUDA_GEMM_WMMA, 0, "wmma", 0, 200, 512, 70, 106);
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_WGMMA, 0, 0);
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_for(ctx, KERN_TYPE_F16, 256, 256, 64, 0, false);
    if (p.wgmma) {
        for (int pipe = 1; pipe <= 2; pipe++) {
            setenv("AMXDIAG_GPU_GEMM_WGMMA_PIPE", pipe == 2 ? "2" : "1", 1);
            for (int v = 0; v < kern_cuda_gemm_n_wgmma_tiles(); v++) {
                gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + v, "wgmma", 0, 300, 768, 300, 111 + v);
                gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + v, "wgmma", 16, 131, 96, 37, 115 + v); /* part stage */
            }
            kern_cuda_set_gemm_ksplit(ctx, 2);
            gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + 1, "wgmma", 0, 300, 1664, 130, 120);
            gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + 0, "wgmma", 0, 600, 2080, 256, 121); /* k % 64 == 32 */
            kern_cuda_set_gemm_ksplit(ctx, 0);
            gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + 2, "wgmma", 0, 64, 4096, 1, 122); /* one token */
        }
        unsetenv("AMXDIAG_GPU_GEMM_WGMMA_PIPE");
        /* auto at the bench's shapes that are cheap to check: attn_k-like (the small shapes
         * stay on the f16-MMA rule: wgmma lost there in the H200 sweep of 08:21) and a wide one */
        gpu_f16w_case(KERN_CUDA_GEMM_AUTO, 0, "f16mma", 0, 512, 2048, 512, 123);
        gpu_f16w_case(KERN_CUDA_GEMM_AUTO, 0, "wgmma", 0, 4096, 2048, 512, 124);
        setenv("AMXDIAG_GPU_GEMM_WGMMA_PERSIST", "1", 1);
        gpu_f16w_case(KERN_CUDA_GEMM_WGMMA, w0 + 3, "wgmma", 0, 4096, 256, 512, 125);
        unsetenv("AMXDIAG_GPU_GEMM_WGMMA_PERSIST");
    } else {
        print_message("gpu f16 weights: no wgmma here (%s); the f16-MMA kernel under auto\n", p.why);
        gpu_f16w_case(KERN_CUDA_GEMM_AUTO, 0, "f16mma", 0, 512, 2048, 512, 123);
    }
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
}

/* The grouped expert matmul: y[slot] = W[ids[slot]] . x[slot / n_used or slot], with every
 * grouped tile (AMXDIAG_GPU_MOE_TILE: the old one and g0..g5) against one reference.
 * uniform: each token's experts distinct and uniform (a prompt's routing), else uneven. */
static void moe_case(int wt, int n_expert, int64_t m, int64_t k, int64_t n_tok, int n_used, bool per_slot,
                     uint64_t seed, bool uniform)
{
    kern_type t = wt == 4 ? KERN_TYPE_Q4_0 : KERN_TYPE_Q8_0;
    uint64_t st = seed;
    uint8_t *wbuf = make_w(wt, m * n_expert, k, &st, 0);
    const int64_t n_slots = n_tok * n_used, n_x = per_slot ? n_slots : n_tok;
    int8_t *xq;
    float *xd;
    make_x(n_x, k, &st, &xq, &xd);
    float *x = x_from_q8(xq, xd, n_x, k);
    int32_t *ids = malloc((size_t)n_slots * sizeof *ids);
    assert_non_null(ids);
    for (int64_t i = 0; i < n_tok; i++) /* uneven: some experts get many tokens, most few or none */
        for (int j = 0; j < n_used; j++) {
            int32_t id = (int32_t)((rng_next(&st) % 3 == 0 ? i * 7 + j : j * 3 + i % 2) % n_expert);
            for (int dup = 1; uniform && dup;) {
                id = (int32_t)(rng_next(&st) % (uint64_t)n_expert);
                dup = 0;
                for (int q = 0; q < j; q++)
                    dup |= ids[i * n_used + q] == id;
            }
            ids[i * n_used + j] = id;
        }
    size_t rs = kern_row_size(t, k), wb = rs * (size_t)(m * n_expert);
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, wb, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n_x * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n_slots * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_moe_gemm_scratch(n_tok, n_used, n_expert, k, per_slot), &d.s));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)n_slots * 4, &d.ids));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, wbuf, wb));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n_x * k) * 4));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.ids, ids, (size_t)n_slots * 4));
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_MMA, 0, 0);
    assert_true(kern_cuda_gemm_plan_for(ctx, t, m, k, n_slots, d.w, true).mma);
    float *got = malloc((size_t)(n_slots * m) * sizeof *got), *want = malloc((size_t)(n_slots * m) * sizeof *want);
    assert_true(got && want);
    static const char *const tiles[] = {"old", "g0", "g1", "g2", "g3", "g4", "g5"};
    for (size_t ti = 0; ti < ADG_ARRAY_LEN(tiles); ti++) {
        setenv("AMXDIAG_GPU_MOE_TILE", tiles[ti], 1);
        memset(got, 0xff, (size_t)(n_slots * m) * 4); /* NaN where the kernel writes nothing */
        ADG_ASSERT_OK(kern_cuda_upload(ctx, d.y, got, (size_t)(n_slots * m) * 4));
        ADG_ASSERT_OK(kern_cuda_moe_gemm(ctx, t, d.w, n_expert, m, k, d.ids, n_tok, n_used, d.x, per_slot, d.y, d.s));
        if (ti == 0) { /* the quantised X the kernels read, for the reference */
            download_xq(&d, n_x, k, xq, xd);
            for (int64_t s = 0; s < n_slots; s++) {
                int64_t xr = per_slot ? s : s / n_used;
                ref_gemm(wt, wbuf + rs * (size_t)(ids[s] * m), m, k, xq, xd, &xr, 1, want + s * m);
            }
        }
        ADG_ASSERT_OK(kern_cuda_download(ctx, got, d.y, (size_t)(n_slots * m) * 4));
        char what[160];
        snprintf(what, sizeof what, "gpu moe %s %d experts of %lldx%lld, %lld tokens x %d, %s, %s, tile %s",
                 kern_type_name(t), n_expert, (long long)m, (long long)k, (long long)n_tok, n_used,
                 per_slot ? "x per slot" : "x per token", uniform ? "uniform" : "uneven", tiles[ti]);
        expect_same(what, got, want, n_slots * m);
        print_message("%s: bit-exact\n", what);
    }
    unsetenv("AMXDIAG_GPU_MOE_TILE");
    dev_free(&d);
    free(wbuf);
    free(xq);
    free(xd);
    free(x);
    free(ids);
    free(got);
    free(want);
}

/* AMXDIAG_GPU_MOE_TILE's values, and the grid bound of a grouped launch: every expert's
 * token tiles (ceil(tokens / bn)) fit gi8m_items for routings from even to one-sided. */
static void test_moe_tile_choice(void **state)
{
    (void)state;
    assert_int_equal(gi8m_parse(NULL), GI8M_AUTO);
    assert_int_equal(gi8m_parse(""), GI8M_AUTO);
    assert_int_equal(gi8m_parse("auto"), GI8M_AUTO);
    /* auto picks a token-tile variant at every shape */
    for (int wt = 4; wt <= 8; wt += 4)
        for (int64_t n_slots = 1; n_slots <= 65536; n_slots *= 8) {
            int g = gi8m_auto(wt, 768, 2048, n_slots, 128);
            assert_true(g >= 0 && g < GI8M_NVAR);
            g = gi8m_auto(wt, 2048, 768, n_slots, 128);
            assert_true(g >= 0 && g < GI8M_NVAR);
        }
    assert_int_equal(gi8m_parse("old"), -1);
    assert_int_equal(gi8m_parse("g0"), 0);
    assert_int_equal(gi8m_parse("g5"), 5);
    assert_int_equal(gi8m_parse("3"), 3);
    assert_int_equal(gi8m_parse("g6"), -2);
    assert_int_equal(gi8m_parse("g"), -2);
    assert_int_equal(gi8m_parse("old2"), -2);
    assert_int_equal(gi8m_parse("autox"), -2);
    assert_int_equal(gi8m_parse("g12"), -2);
    for (int g = 0; g < GI8M_NVAR; g++) {
        assert_int_equal(gi8m_var(g).wn, 1);
        assert_int_equal(gi8m_var_threads(g) % gi8m_var_bn(g), 0); /* the token tables: a thread per token */
    }
    uint64_t st = 7;
    for (int trial = 0; trial < 200; trial++) {
        const int n_expert = 1 + (int)(rng_next(&st) % 160), g = trial % GI8M_NVAR;
        const int64_t n_slots = 1 + (int64_t)(rng_next(&st) % 5000), m = 1 + (int64_t)(rng_next(&st) % 3000);
        const int skew = trial % 3; /* 0 uniform, 1 a few experts, 2 one expert */
        int cnt[160] = {0};
        for (int64_t s = 0; s < n_slots; s++)
            cnt[skew == 2 ? 0 : (int)(rng_next(&st) % (uint64_t)(skew ? (n_expert + 3) / 4 : n_expert))]++;
        int64_t tt = 0;
        for (int e = 0; e < n_expert; e++)
            tt += (cnt[e] + gi8m_var_bn(g) - 1) / gi8m_var_bn(g);
        const int bm = gi8m_var_bm(g);
        assert_true(tt * ((m + bm - 1) / bm) <= gi8m_items(n_slots, n_expert, m, bm, gi8m_var_bn(g)));
    }
}

static void test_gpu_moe_gemm(void **state)
{
    (void)state;
    need_mma();
    for (int wt = 4; wt <= 8; wt += 4) {
        moe_case(wt, 128, 768, 2048, 64, 8, false, 31, false); /* gate/up of Qwen3-30B-A3B */
        moe_case(wt, 128, 2048, 768, 40, 8, true, 32, false);  /* down */
        moe_case(wt, 16, 96, 96, 9, 3, true, 33, false);        /* k % 128 != 0, partial tiles */
        /* a prompt's routing: ~16 tokens an expert (and up to ~30) */
        moe_case(wt, 128, 768, 2048, 256, 8, false, 34, true);
        moe_case(wt, 128, 2048, 768, 256, 8, true, 35, true);
    }
    kern_cuda_set_gemm_kernel(ctx, KERN_CUDA_GEMM_AUTO, 0, 0);
}

/* ---- the f32 router GEMM (kern_gemm_f32.cuh, every arch) -------------------------------- */

/* GPU time of one kern_cuda_gemm: the mean of 20 after a warm-up, in microseconds. */
static double time_gemm(kern_type t, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr x, int64_t n,
                        kern_cu_deviceptr y, kern_cu_deviceptr s)
{
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, t, w, m, k, x, n, y, s));
    ADG_ASSERT_OK(kern_cuda_sync(ctx, "gemm"));
    uint64_t t0 = adg_now_ns();
    for (int i = 0; i < 20; i++)
        ADG_ASSERT_OK(kern_cuda_gemm(ctx, t, w, m, k, x, n, y, s));
    ADG_ASSERT_OK(kern_cuda_sync(ctx, "gemm"));
    return (double)(adg_now_ns() - t0) / 20e3;
}

/* Y = X W^T in f32 against a double reference: within 1e-5 of the sum of |w x| (the f32
 * sums' own order); the few-token kernel (n <= 4) and the tiles, partial tiles, the
 * router of Qwen3-30B-A3B (128 x 2048) for a 512-token prompt and for decode.  Prints
 * its time next to the f16 WMMA GEMM it replaced in the engine. */
static void f32_case(int64_t m, int64_t k, int64_t n, uint64_t seed, bool timed)
{
    uint64_t st = seed;
    float *w = malloc((size_t)(m * k) * sizeof *w), *x = malloc((size_t)(n * k) * sizeof *x),
          *got = malloc((size_t)(n * m) * sizeof *got);
    assert_true(w && x && got);
    for (int64_t i = 0; i < m * k; i++)
        w[i] = rnd(&st) * 0.05f;
    for (int64_t i = 0; i < n * k; i++)
        x[i] = rnd(&st) * 3.0f;
    dev d = {0};
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(m * k) * 4, &d.w));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * k) * 4, &d.x));
    ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(n * m) * 4, &d.y));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.w, w, (size_t)(m * k) * 4));
    ADG_ASSERT_OK(kern_cuda_upload(ctx, d.x, x, (size_t)(n * k) * 4));
    ADG_ASSERT_OK(kern_cuda_gemm(ctx, KERN_TYPE_F32, d.w, m, k, d.x, n, d.y, 0));
    ADG_ASSERT_OK(kern_cuda_download(ctx, got, d.y, (size_t)(n * m) * 4));
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < m; r++) {
            double want = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                want += (double)w[r * k + i] * x[t * k + i];
                mag += fabs((double)w[r * k + i] * x[t * k + i]);
            }
            if (!(fabs((double)got[t * m + r] - want) <= 1e-5 * mag + 1e-30))
                fail_msg("f32 %lldx%lld x %lld: token %lld row %lld is %.9g, the reference %.9g", (long long)m,
                         (long long)k, (long long)n, (long long)t, (long long)r, (double)got[t * m + r], want);
        }
    if (timed) {
        /* the f16 WMMA GEMM on the same matrix: the engine's router before */
        uint16_t *h = malloc((size_t)(m * k) * sizeof *h);
        assert_non_null(h);
        kern_fp32_to_fp16_row(w, h, m * k);
        ADG_ASSERT_OK(kern_cuda_alloc(ctx, (size_t)(m * k) * 2, &d.ids));
        ADG_ASSERT_OK(kern_cuda_alloc(ctx, kern_cuda_gemm_scratch(n, k), &d.s));
        ADG_ASSERT_OK(kern_cuda_upload(ctx, d.ids, h, (size_t)(m * k) * 2));
        double us32 = time_gemm(KERN_TYPE_F32, d.w, m, k, d.x, n, d.y, 0);
        double us16 = time_gemm(KERN_TYPE_F16, d.ids, m, k, d.x, n, d.y, d.s);
        print_message("gpu f32 router %lldx%lld x %lld: within 1e-5; %.1f us (f16 wmma %.1f us)\n", (long long)m,
                      (long long)k, (long long)n, us32, us16);
        free(h);
    } else {
        print_message("gpu f32 router %lldx%lld x %lld: within 1e-5\n", (long long)m, (long long)k, (long long)n);
    }
    dev_free(&d);
    free(w);
    free(x);
    free(got);
}

static void test_gpu_gemm_f32(void **state)
{
    (void)state;
    if (!ctx)
        ADG_SKIP("%s", skip_reason);
    f32_case(8, 256, 20, 41, false);   /* test_kern_engine's tiny model, 20-token prompt */
    f32_case(8, 256, 1, 42, false);    /* its decode */
    f32_case(8, 256, 4, 43, false);    /* the last few-token size */
    f32_case(8, 256, 5, 44, false);    /* the first tiled one */
    f32_case(40, 288, 37, 45, false);  /* partial tiles, k % 64 != 0 */
    f32_case(128, 2048, 512, 46, true); /* Qwen3-30B-A3B's router, pp512 */
    f32_case(128, 2048, 1, 47, true);   /* and decode */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_scale_fma),
        cmocka_unit_test(test_wgmma_map),
        cmocka_unit_test(test_wgmma_plan),
        cmocka_unit_test(test_f16_weights_plan),
        cmocka_unit_test(test_dequant_plan),
        cmocka_unit_test(test_wgmma_xv),
        cmocka_unit_test(test_wgmma_module),
        cmocka_unit_test(test_emulated_kernel),
        cmocka_unit_test(test_gpu_gemm),
        cmocka_unit_test(test_gpu_gemm_f16mma),
        cmocka_unit_test(test_gpu_gemm_f16_weights),
        cmocka_unit_test(test_moe_tile_choice),
        cmocka_unit_test(test_gpu_moe_gemm),
        cmocka_unit_test(test_gpu_gemm_f32),
        cmocka_unit_test(test_gpu_gemm_dequant),
        /* last: a fault in the new kernel would leave the context unusable for the others */
        cmocka_unit_test(test_gpu_gemm_wgmma),
    };
    /* a device script may run a part: AMXDIAG_TEST_FILTER=*moe* (cmocka's wildcards) */
    if (getenv("AMXDIAG_TEST_FILTER"))
        cmocka_set_test_filter(getenv("AMXDIAG_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}

/* Which prompt GEMM runs, with which tile and pipeline depth: pure host logic, so that
 * every branch is unit-tested on machines without a GPU. */
#include "kernels/cuda/kern_cuda_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kern_gemm_f16mma_map.h"
#include "kernels/cuda/kern_gemm_i8_map.h"
#include "kernels/cuda/kern_gemm_wgmma_map.h"

/* Whether AUTO takes the int8 tensor-core kernels (sm_80 and newer).  On the H200
 * (2026-11-26): bit-exact with the CPU formula in every unit case, the engine's GPU layers
 * equal to the CPU reference teacher-forced (0.00000 at --ngl 2/4/99 with the f32 router),
 * 2.9x the f16 WMMA kernel at pp512 --ngl 99 (docs/PERFORMANCE.md).  AMXDIAG_GPU_GEMM=wmma
 * keeps the older kernel. */
#define GEMM_AUTO_MMA 1

static const char *const kind_names[] = {"auto", "wmma", "mma", "f16mma", "wgmma"};
#define N_KINDS 5
/* Tile codes: 1 + v int8, 1 + GI8_NVAR + v f16-MMA, GW_CODE0 + v wgmma. */
#define GW_CODE0 (1 + GI8_NVAR + GF_NVAR)
#define N_CODES (GI8_NVAR + GF_NVAR + GW_NVAR)

bool kern_cuda_gemm_kind_parse(const char *s, kern_cuda_gemm_kind *out)
{
    for (int i = 0; i < N_KINDS; i++)
        if (s && strcmp(s, kind_names[i]) == 0) {
            *out = (kern_cuda_gemm_kind)i;
            return true;
        }
    return false;
}

const char *kern_cuda_gemm_kind_name(kern_cuda_gemm_kind k)
{
    return (unsigned)k < N_KINDS ? kind_names[k] : "?";
}

int kern_cuda_gemm_n_tiles(void) { return GI8_NVAR; }
int kern_cuda_gemm_n_f16_tiles(void) { return GF_NVAR; }
int kern_cuda_gemm_n_wgmma_tiles(void) { return GW_NVAR; }

int kern_cuda_gemm_tile_code(int tile)
{
    if (tile == 64)
        return 1;
    if (tile == 128)
        return 2;
    return tile >= 1 && tile <= N_CODES ? tile : 0;
}

const char *kern_cuda_gemm_tile_name(int code)
{
    static const char *const names[GI8_NVAR] = {"64x64/32x32",  "128x64/32x32", "128x64/32x64", "64x64/32x64",
                                                 "64x128/32x64", "64x32/32x32",  "32x32/32x32",  "64x32/16x32"};
    static const char *const fnames[GF_NVAR] = {
        "f16:128x128/64x32",    "f16:128x128/32x64",    "f16:128x64/32x32",   "f16:64x64/32x32",
        "f16:64x32/32x16",      "f16:256x128/64x64k64", "f16:128x128/64x32k64", "f16:128x64/64x32k64",
        "f16:128x256/64x64k64"};
    static const char *const wnames[GW_NVAR] = {"wg:128x256", "wg:128x128", "wg:64x128", "wg:64x64"};
    code = kern_cuda_gemm_tile_code(code);
    if (code >= GW_CODE0)
        return wnames[code - GW_CODE0];
    if (code > GI8_NVAR)
        return fnames[code - 1 - GI8_NVAR];
    return code ? names[code - 1] : "auto";
}

int kern_cuda_gemm_tile_parse(const char *s)
{
    if (!s || !*s)
        return -1;
    if (strcmp(s, "auto") == 0 || strcmp(s, "0") == 0)
        return 0;
    if (strcmp(s, "64") == 0 || strcmp(s, "128") == 0)
        return kern_cuda_gemm_tile_code(atoi(s));
    if (s[0] == 'v' && s[1] >= '0' && s[1] < '0' + GI8_NVAR && !s[2])
        return 1 + (s[1] - '0');
    if (s[0] == 'f' && s[1] >= '0' && s[1] < '0' + GF_NVAR && !s[2])
        return 1 + GI8_NVAR + (s[1] - '0');
    if (s[0] == 'w' && s[1] >= '0' && s[1] < '0' + GW_NVAR && !s[2])
        return GW_CODE0 + (s[1] - '0');
    for (int c = 1; c <= N_CODES; c++)
        if (strcmp(s, kern_cuda_gemm_tile_name(c)) == 0)
            return c;
    return -1;
}

int kern_cuda_gemm_stage_bytes(int wt, int tile)
{
    int v = kern_cuda_gemm_tile_code(tile);
    if (v >= GW_CODE0) {
        v -= GW_CODE0;
        return gw_slot_bytes(wt, gw_var_bm(v), gw_var_bn(v));
    }
    if (v > GI8_NVAR) {
        v -= 1 + GI8_NVAR;
        return gf_slot_bytes(wt, gf_var_bm(v), gf_var_bn(v), gf_var_kb(v));
    }
    v = v ? v - 1 : 0;
    return gi8_stage_bytes_n(wt, gi8_var_bm(v), gi8_var_bn(v));
}

/* CTAs of variant v an SM holds with `smem` bytes each: the registers its launch bounds
 * allow, threads, shared memory (+ the token tables and the driver's reserve). */
static int gemm_ctas_per_sm(const kern_cuda_gemm_caps *caps, int v, int smem)
{
    gi8_variant t = gi8_var(v);
    int per_sm = t.cps, by_threads = 2048 / gi8_var_threads(v);
    int by_smem = (caps->smem_optin + 1024) / (smem + 2048);
    if (by_threads < per_sm)
        per_sm = by_threads;
    if (by_smem < per_sm)
        per_sm = by_smem;
    return per_sm < 1 ? 1 : per_sm;
}

/* Issued instructions per warp and k stage (4 quant blocks), counted from the kernel's
 * source: per block MT NT MMAs with 8 FMAs each, MT A fragments (scales, 2-byte-aligned
 * loads, Q4_0's unpacking), NT X steps, NT/2 ldmatrix; per stage the cp.async copies,
 * the barrier and the loop. */
static double gemm_warp_stage_instr(int wt, int v)
{
    gi8_variant t = gi8_var(v);
    const int bm = gi8_var_bm(v), bn = gi8_var_bn(v), thr = gi8_var_threads(v), nw = t.wm * t.wn;
    const int lpr = gi8_wchunks(wt) - 1, rpi = 32 / lpr;
    double block = t.mt * t.nt * 9.0 + t.mt * (wt == 4 ? 22.0 : 14.0) + t.nt * 3.0 + t.nt / 2.0;
    double copies = (bm / nw / rpi + 1) * 4.0 + (bn * 8.0 / thr) * 6.0 + (GI8_KBS * bn * 1.0 / thr) * 6.0 + 20.0;
    return GI8_KBS * block + copies;
}

/* Warp instructions an SM issues per cycle with `warps` resident (2.72 measured by
 * Nsight Compute with 16 warps of variant 1 on an H200; fewer warps hide less latency). */
static double gemm_ipc(int warps) { return 3.4 * warps / (warps + 4.0); }

/* Relative time of variant v at this shape: the waves of CTAs, each SM's CTAs issuing at
 * the rate its resident warps allow. */
static double gemm_cost(const kern_cuda_gemm_caps *caps, int wt, int v, int64_t m, int64_t k, int64_t n, int smem)
{
    const int bm = gi8_var_bm(v), bn = gi8_var_bn(v), nw = gi8_var(v).wm * gi8_var(v).wn;
    const int64_t tiles = ((m + bm - 1) / bm) * ((n + bn - 1) / bn);
    const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 1;
    const int cps = gemm_ctas_per_sm(caps, v, smem);
    const double cta = gemm_warp_stage_instr(wt, v) * nw * (double)((k / 32 + GI8_KBS - 1) / GI8_KBS);
    const int64_t slots = sms * cps, full = tiles / slots, rest = tiles % slots;
    double t = (double)full * cps * cta / gemm_ipc(cps * nw);
    if (rest) {
        int64_t c = (rest + sms - 1) / sms;
        t += (double)c * cta / gemm_ipc((int)c * nw);
    }
    return t;
}

/* The f16-MMA kernel's variant for a shape: the fewest CTA waves times a tile's work,
 * smaller tiles weighted by what they lose (more conversion and ldmatrix per MMA, less
 * reuse).  A guess to be replaced by measured picks (tests/device/gemm_sweep.sh). */
static const double gf_eff[GF_NVAR] = {1.0, 1.0, 1.1, 1.25, 1.5, 1.0, 1.0, 1.25};

static int gf_slots_fit(int wt, int v, int want, int limit)
{
    int s = want < 3 ? 3 : want;
    const int kb = gf_var_kb(v);
    while (s > 3 && gf_smem_bytes(wt, gf_var_bm(v), gf_var_bn(v), s, kb) > limit)
        s--;
    return gf_smem_bytes(wt, gf_var_bm(v), gf_var_bn(v), s, kb) <= limit ? s : 0;
}

/* The tile (and k slices) measured fastest per shape, for an f16-MMA run without a tile
 * asked for.  H200, tests/device/gemm_sweep.sh, 2026-11-26 02:59 UTC (build 758fc57), 512
 * tokens, us of the best f16-MMA tiles over 2/3/4 stages and split-K 2 (cuBLAS f16 | best
 * int8 q4_0 / q8_0):
 *   attn_q   4096x2048: q4_0 f0 s3 49.3, f1 49.6      q8_0 f0 s3 56.7   (23.9 | v1 63.8 / 64.0)
 *   attn_o   2048x4096: q4_0 f1 k2 57.5, f0 k2 57.6   q8_0 f0 k2 65.1   (26.4 | v1 84.0 / 87.5)
 *   attn_k   512x2048:  q4_0 f3 k2 26.1, f4 27.9      q8_0 f3 k2 27.6   (15.2 | v7 32.4 / 34.1)
 *   ffn_up   768x2048:  q4_0 f2 k2 30.8, f3 s2 30.9   q8_0 f3 k2 32.1   (16.5 | v7 36.3 / 38.3)
 *   ffn_down 2048x768:  q4_0 f3 s3 21.8, f2 22.5      q8_0 f2 s3 22.7, f3 23.8 (14.2 | v1 24.2 / 25.1)
 *   lm_head  151936x2048: q4_0 f5 s3 1221, f0 1346    q8_0 f5 s2 1345, s3 1357 (410 | v2 1588 / 1696)
 * f16-MMA won at every shape; 3 stages are within 1 % of the best everywhere.  At 03:35
 * (build 238cdf1) the 128 x 256 tile f8 beat f5 at the LM head: q4_0 1143 vs 1205 us,
 * q8_0 1291 vs 1413 (cuBLAS 406).  As a rule over the shape: many waves of large tiles
 * (>= 8 per SM): f8; 128 x 128 tiles filling
 * >= 3/4 of the SMs: f0; half of them or fewer with a long k (attn_o): f0 in two k slices;
 * else 64 x 64 f3 (f2 for Q8_0 where k is short: ffn_down), in two k slices where its
 * tiles fill half the SMs or fewer (attn_k; ffn_up's 96 tiles measured even either way).
 * The weights go through the f16-MMA kernel's precision (within 1.1 * 2^-10 sum |w x|; at
 * 02:59 the engine within 0.17 of the CPU reference teacher-forced, every decisive step of
 * `run --compare ref` the reference's token); AMXDIAG_GPU_GEMM=mma keeps the bit-exact int8
 * kernel everywhere.  Returns the tile code and sets *ksplit; 0 where nothing was measured
 * (< 512 tokens). */
static int measured_f16_code(const kern_cuda_gemm_caps *caps, int wt, int64_t m, int64_t k, int64_t n, int *ksplit)
{
    *ksplit = 1;
    if (n < 512 || k < 256)
        return 0;
    const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 132;
    const int64_t t128 = ((m + 127) / 128) * ((n + 127) / 128);
    const int64_t t256 = ((m + 255) / 256) * ((n + 127) / 128);
    const int64_t t64 = ((m + 63) / 64) * ((n + 63) / 64);
    if (t256 >= 8 * sms)
        return 1 + GI8_NVAR + 8;
    if (4 * t128 >= 3 * sms)
        return 1 + GI8_NVAR + 0;
    if (k >= 4096 && 2 * t128 <= sms) {
        *ksplit = 2;
        return 1 + GI8_NVAR + 0;
    }
    if (k >= 2048 && 2 * t64 <= sms)
        *ksplit = 2;
    return 1 + GI8_NVAR + (wt == 8 && k < 2048 ? 2 : 3);
}

static kern_cuda_gemm_plan plan_f16mma(const kern_cuda_gemm_caps *caps, int code, int stages, int wt, int64_t m,
                                       int64_t k, int64_t n, uint64_t w_addr)
{
    kern_cuda_gemm_plan p = {.mma = false, .why = ""};
    const int limit = caps->can_raise_smem ? caps->smem_optin : 48 * 1024;
    const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 1;
    int v = -1, ksplit = 1;
    if (code > GI8_NVAR)
        v = code - 1 - GI8_NVAR;
    else if ((code = measured_f16_code(caps, wt, m, k, n, &ksplit)) != 0 &&
             gf_slots_fit(wt, code - 1 - GI8_NVAR, stages, limit))
        v = code - 1 - GI8_NVAR;
    else {
        ksplit = 1;
        double best = 0;
        for (int c = 0; c < GF_NVAR; c++) {
            if (gf_var_kb(c) != 4) /* the k64 variants: chosen by name until measured */
                continue;
            if (!gf_slots_fit(wt, c, stages, limit))
                continue;
            const int cps = gf_var(c).cps;
            const int64_t tiles = ((m + gf_var_bm(c) - 1) / gf_var_bm(c)) * ((n + gf_var_bn(c) - 1) / gf_var_bn(c));
            const double t = (double)((tiles + sms * cps - 1) / (sms * cps)) * cps * gf_var_bm(c) * gf_var_bn(c) *
                             gf_eff[c];
            if (v < 0 || t < best)
                best = t, v = c;
        }
    }
    const int slots = v >= 0 ? gf_slots_fit(wt, v, stages, limit) : 0;
    if (!slots) {
        p.why = "not enough shared memory for three stages of the f16-MMA kernel";
        return p;
    }
    p.f16mma = true;
    p.ksplit = ksplit; /* the measured pick's suggestion; kern_cuda_gemm_ksplit decides */
    p.variant = v;
    p.tile = gf_var_bm(v);
    p.bn = gf_var_bn(v);
    p.threads = gf_var_threads(v);
    p.stages = slots;
    const int kb = gf_var_kb(v);
    p.smem = gf_smem_bytes(wt, p.tile, p.bn, slots, kb);
    if (wt == 16) { /* f16 weights (gf_f16_ok checked by the caller): whole k stages or not */
        p.aligned = k % (32 * kb) == 0;
        p.why = "f16 tensor cores (f16 weights straight to shared memory)";
        return p;
    }
    /* the k64 variants' copies take 32-bit offsets within a tile */
    p.aligned = gf_aligned(kb, k / 32, w_addr) && (kb == 4 || (int64_t)p.tile * (k / 32) * (wt == 4 ? 18 : 34) < INT32_MAX);
    p.why = p.aligned ? "f16 tensor cores (weights dequantised in shared memory)"
                      : (kb == 4 ? "f16 tensor cores (weights by 2-byte loads: k % 128 != 0 or unaligned)"
                                 : "f16 tensor cores (weights by 2-byte loads: k % 64 != 0 or unaligned)");
    return p;
}

/* The shape classes of measured_f16_code's rules (512 tokens and more): many waves of
 * large tiles (the LM head), 128 x 128 tiles filling >= 3/4 of the SMs (attn_q), half of
 * them or fewer with a long k (attn_o), the rest (attn_k, ffn_up, ffn_down). */
enum { GS_NONE = -1, GS_LARGE, GS_FULL, GS_LONGK, GS_SMALL, GS_N };
static int shape_class(const kern_cuda_gemm_caps *caps, int64_t m, int64_t k, int64_t n)
{
    if (n < 512 || k < 256)
        return GS_NONE;
    const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 132;
    const int64_t t128 = ((m + 127) / 128) * ((n + 127) / 128);
    const int64_t t256 = ((m + 255) / 256) * ((n + 127) / 128);
    if (t256 >= 8 * sms)
        return GS_LARGE;
    if (4 * t128 >= 3 * sms)
        return GS_FULL;
    if (k >= 4096 && 2 * t128 <= sms)
        return GS_LONGK;
    return GS_SMALL;
}

/* AUTO's wgmma picks per shape class and weight type (q4_0, q8_0): {variant, k slices};
 * variant -1 keeps the f16-MMA kernel's measured pick.  Used only where the sm_90a module
 * is loaded (compute capability 9.0).  From the H200 sweep of 2026-11-26 05:03 UTC
 * (tests/device/gemm_sweep.sh, first wgmma version, flat pipeline; us, 512 tokens; the
 * f16-MMA kernel's best tile in brackets; cuBLAS f16 varied 23-31 us at attn_q/attn_o
 * between the runs of the sweep, 406-423 at the LM head):
 *   LM head  151936x2048: q4_0 w0 734-756 [f8 1138]      q8_0 w0 904-914 [f8 1280]
 *   attn_q   4096x2048:   q4_0 w0 k2 44.3 [f1 51.7]      q8_0 w0 k2 48.4 [f0 59.1]
 *   attn_o   2048x4096:   q4_0 w1 k2 54.7 [f1 k2 59.9]   q8_0 w2 k2 63.8 [f0 k2 67.5]
 *   attn_k, ffn_up, ffn_down: within +-10 % either way, the f16-MMA kernel mostly ahead
 *   (attn_k q4_0 f3 k2 26.7 against w3 k2 28.7; ffn_down q8_0 f2 24.0 against w2 26.6). */
/* The third column, f16 weights (no conversion: the kernel's SIMT work is the copies
 * alone), and xv (the experimental variant, kern_cuda_gemm_wgmma_xv; 0 when left out)
 * from the H200 sweep of 2026-11-26 08:21 UTC (gemm_sweep.sh, build e798813; us, 512
 * tokens, cuBLAS f16 23.5 / 27.0 / 15.7 / 15.0 / 14.0 / 406 us in that run):
 *   f16 weights: LM head w0 564 (f16-MMA's best f5 862); attn_q w2 32.4, w1 32.7 (w0 k2
 *     39.1; f7 37.1); attn_o w2 k2 40.5, w2 41.5 (w1 k2 42.0; f3 43.3); the small shapes
 *     on the f16-MMA kernel's rule: attn_k f3 k2 20.5 (w3 k2 23.3), ffn_up f3 21.8 (w2 k2
 *     23.6), ffn_down f3 18.0 (w2 17.4: within noise).
 *   x3 (raw W rows 52 / 84 bytes apart and the slots compiled in) against the measured
 *     kernel, same tile and k slices: LM head w0 q4_0 712.9 / 747.9, q8_0 879.5 / 894.5;
 *     attn_q w0 k2 43.0 / 44.5, 47.8 / 48.7; attn_o q4_0 w1 k2 53.9 / 56.4, q8_0 w2 k2
 *     59.9 / 62.7; faster at 60 of the 66 (shape, type, tile, k slices) pairs, by up to
 *     11 % (ffn_down), slower by <= 3 % at the other 6.  x1 or x2 alone gained less. */
static const struct {
    int variant, ksplit, xv;
} auto_wgmma[GS_N][3] = {
    [GS_LARGE] = {{0, 1, 3}, {0, 1, 3}, {0, 1, 0}},
    [GS_FULL] = {{0, 2, 3}, {0, 2, 3}, {2, 1, 0}},
    [GS_LONGK] = {{1, 2, 3}, {2, 2, 3}, {2, 2, 0}},
    [GS_SMALL] = {{-1, 1, 0}, {-1, 1, 0}, {-1, 1, 0}},
};

/* AUTO's wgmma tile code for this shape (0: none) and its k slices. */
static int auto_wgmma_code(const kern_cuda_gemm_caps *caps, int wt, int64_t m, int64_t k, int64_t n, int *ksplit,
                           int *xv)
{
    const int c = shape_class(caps, m, k, n), col = wt == 4 ? 0 : wt == 8 ? 1 : 2;
    *ksplit = 1;
    *xv = 0;
    if (c == GS_NONE || !caps->wgmma || auto_wgmma[c][col].variant < 0)
        return 0;
    *ksplit = auto_wgmma[c][col].ksplit;
    *xv = auto_wgmma[c][col].xv;
    return GW_CODE0 + auto_wgmma[c][col].variant;
}

/* Shared memory one CTA of wgmma variant v may take: its share of an SM where the launch
 * bounds aim at several CTAs per SM (the driver reserves 1 KiB per CTA), else all a
 * block may opt in to. */
static int gw_smem_limit(const kern_cuda_gemm_caps *caps, int v)
{
    const int optin = caps->can_raise_smem ? caps->smem_optin : 48 * 1024;
    const int cps = gw_var_cps(v), share = (optin + 1024) / cps - 1024;
    return cps > 1 && share < optin ? share : optin;
}

/* The wgmma kernel's pipeline by default: 1 = MMAs waited for at the end of their stage,
 * 2 = one stage of MMAs left in flight across the barrier (GW_FLAG_DEEP: a third f16
 * buffer, slots >= 4).  Neither measured yet: gemm_sweep.sh times both
 * (AMXDIAG_GPU_GEMM_WGMMA_PIPE); the faster becomes this default. */
#define GW_PIPE_DEFAULT 1
/* Persistent grid by default (1: as many CTAs as are resident at once, each running its
 * tiles as one stream of k stages, the next tile's copies and conversion under the last
 * MMAs of the one before; 0: one CTA per tile).  Not measured yet either
 * (AMXDIAG_GPU_GEMM_WGMMA_PERSIST). */
#define GW_PERSIST_DEFAULT 0

/* CTAs of wgmma variant v resident on an SM with `smem` bytes each: its launch bounds'
 * aim, shared memory (the driver keeps 1 KiB per CTA) and 2048 threads. */
static int gw_ctas_per_sm(const kern_cuda_gemm_caps *caps, int v, int smem)
{
    const int optin = caps->can_raise_smem ? caps->smem_optin : 48 * 1024;
    int c = gw_var_cps(v);
    if ((optin + 1024) / (smem + 1024) < c)
        c = (optin + 1024) / (smem + 1024);
    if (2048 / gw_var_threads(v) < c)
        c = 2048 / gw_var_threads(v);
    return c < 1 ? 1 : c;
}

/* The persistent grid for this plan and shape (0: one CTA per tile is no more). */
static int gw_grid(const kern_cuda_gemm_caps *caps, const kern_cuda_gemm_plan *p, int64_t m, int64_t n)
{
    const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 132;
    const int64_t tiles = ((m + p->tile - 1) / p->tile) * ((n + p->bn - 1) / p->bn) * (p->ksplit > 1 ? p->ksplit : 1);
    const int64_t g = sms * gw_ctas_per_sm(caps, p->variant, p->smem);
    return tiles > g ? (int)g : 0;
}

/* Ring slots of wgmma variant v (<= want) with the deep pipeline or not: within its CTAs'
 * share of an SM where it fits, else alone on the SM; 0 if the minimum does not fit. */
static int gw_fit(const kern_cuda_gemm_caps *caps, int wt, int v, int want, int deep)
{
    int slots = gw_slots_fit_p(wt, v, want, gw_smem_limit(caps, v), deep);
    if (!slots)
        slots = gw_slots_fit_p(wt, v, want, caps->can_raise_smem ? caps->smem_optin : 48 * 1024, deep);
    return slots;
}

/* The wgmma plan for tile code `code` (0: the variant a small rule picks by CTA waves):
 * ring slots as many as fit (<= max_slots), k stages of 64 (kern_gemm_wgmma_map.h). */
static kern_cuda_gemm_plan plan_wgmma(const kern_cuda_gemm_caps *caps, int code, int max_slots, int ksplit, int wt,
                                      int64_t m, int64_t k, int64_t n, uint64_t w_addr)
{
    kern_cuda_gemm_plan p = {.mma = false, .why = ""};
    int v;
    if (code >= GW_CODE0)
        v = code - GW_CODE0;
    else {
        /* no measurement yet: the largest tile that gives every SM a CTA, else the
         * smallest (the f16-MMA sweep: a full wave of large tiles wins, small shapes want
         * CTAs) */
        const int64_t sms = caps->sm_count > 0 ? caps->sm_count : 132;
        v = GW_NVAR - 1;
        for (int c = 0; c < GW_NVAR; c++)
            if (((m + gw_var_bm(c) - 1) / gw_var_bm(c)) * ((n + gw_var_bn(c) - 1) / gw_var_bn(c)) >= sms) {
                v = c;
                break;
            }
    }
    int deep = GW_PIPE_DEFAULT == 2;
    int slots = gw_fit(caps, wt, v, max_slots, deep);
    if (!slots && deep) /* no room for the third buffer: the flat pipeline */
        slots = gw_fit(caps, wt, v, max_slots, deep = 0);
    if (!slots) {
        p.why = "not enough shared memory for three stages of the wgmma kernel";
        return p;
    }
    p.f16mma = true;
    p.wgmma = true;
    p.ksplit = ksplit;
    p.variant = v;
    p.tile = gw_var_bm(v);
    p.bn = gw_var_bn(v);
    p.threads = gw_var_threads(v);
    p.stages = slots;
    p.deep = deep;
    p.smem = gw_smem_bytes_p(wt, p.tile, p.bn, slots, deep);
    p.grid = GW_PERSIST_DEFAULT ? gw_grid(caps, &p, m, n) : 0;
    if (wt == 16) { /* f16 weights (gf_f16_ok checked by the caller): whole k stages or not */
        p.aligned = k % 64 == 0;
        p.why = "wgmma (sm_90a: f16 weights straight to shared memory, warpgroup MMA)";
        return p;
    }
    /* the 4-byte copies take 32-bit offsets within a tile, as the f16-MMA k64 tiles' */
    p.aligned = gf_aligned(GW_KB, k / 32, w_addr) && (int64_t)p.tile * (k / 32) * (wt == 4 ? 18 : 34) < INT32_MAX;
    p.why = p.aligned ? "wgmma (sm_90a: weights dequantised in shared memory, warpgroup MMA)"
                      : "wgmma (sm_90a; weights by 2-byte loads: k % 64 != 0 or unaligned)";
    return p;
}

/* F16 weights: the wgmma kernel (compute capability 9.0) or the f16-MMA kernel (sm_80
 * code), both taking the weights' f16 pieces straight into shared memory; the WMMA kernel
 * (KF_GEMM_F16) where asked (wmma, --gemm-bk 64), below sm_80, for grouped experts or
 * where the pieces cannot go by cp.async.  No int8 kernel exists for them, so the kind mma
 * ("tensor cores") takes auto's choice (the wgmma kernel where loaded and auto's table
 * has the shape, else the f16-MMA one); f16mma pins the f16-MMA kernel, wgmma the wgmma
 * one where loaded. */
static kern_cuda_gemm_plan plan_f16_weights(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int code,
                                            int stages, int64_t m, int64_t k, int64_t n, uint64_t w_addr, bool moe)
{
    kern_cuda_gemm_plan p = {.mma = false, .why = ""};
    if (moe || kind == KERN_CUDA_GEMM_WMMA) {
        p.why = moe ? "f16 weights of grouped experts: the f16 WMMA kernel" : "selected (wmma)";
        return p;
    }
    if (caps->code_arch < 80) {
        p.why = "f16 weights: the f16 WMMA kernel (the f16-MMA kernel needs sm_80 code: cp.async, mma.m16n8k16)";
        return p;
    }
    if (m <= 0 || n <= 0 || k <= 0) {
        p.why = "bad shape";
        return p;
    }
    if (!gf_f16_ok(256, k, w_addr)) {
        p.why = "f16 weights: the f16 WMMA kernel (the tensor-core kernels take k % 8 == 0 and 16-byte aligned "
                "weights)";
        return p;
    }
    const int want_stages = stages >= 2 && stages <= 4 ? stages : 3;
    const char *w_fallback = NULL;
    if (code >= 1 && code <= GI8_NVAR)
        code = 0; /* an int8 tile: no int8 kernel for f16 weights */
    int ks = 1, axv = 0, wc = code >= GW_CODE0 ? code : 0;
    if (!wc && code == 0 && (kind == KERN_CUDA_GEMM_AUTO || kind == KERN_CUDA_GEMM_MMA))
        wc = auto_wgmma_code(caps, 16, m, k, n, &ks, &axv);
    if (wc || kind == KERN_CUDA_GEMM_WGMMA) {
        if (caps->wgmma) {
            kern_cuda_gemm_plan f = plan_wgmma(caps, wc, GW_MAX_SLOTS, ks, 16, m, k, n, w_addr);
            if (f.wgmma) {
                if (wc && code < GW_CODE0 && kind != KERN_CUDA_GEMM_WGMMA)
                    f.why = "wgmma (auto: f16 weights straight to shared memory, warpgroup MMA)";
                return f;
            }
            w_fallback = "f16 tensor cores (f16 weights; wgmma asked: its tile does not fit this device's shared "
                         "memory)";
        } else if (kind == KERN_CUDA_GEMM_WGMMA || code >= GW_CODE0) {
            w_fallback = "f16 tensor cores (f16 weights; wgmma asked: the sm_90a module is not loaded here; compute "
                         "capability 9.0 only)";
        }
        if (code >= GW_CODE0)
            code = 0;
    }
    kern_cuda_gemm_plan f = plan_f16mma(caps, code, want_stages, 16, m, k, n, w_addr);
    if (f.f16mma && w_fallback)
        f.why = w_fallback;
    if (!f.f16mma)
        f.why = "f16 weights: the f16 WMMA kernel (no room for three stages of the f16-MMA kernel)";
    return f;
}

kern_cuda_gemm_plan kern_cuda_gemm_plan_make(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int tile,
                                             int stages, kern_type type, int64_t m, int64_t k, int64_t n,
                                             uint64_t w_addr, bool moe)
{
    kern_cuda_gemm_plan p = {.mma = false, .why = ""};
    if (type == KERN_TYPE_F16)
        return plan_f16_weights(caps, kind, kern_cuda_gemm_tile_code(tile), stages, m, k, n, w_addr, moe);
    if (type != KERN_TYPE_Q4_0 && type != KERN_TYPE_Q8_0) {
        p.why = "f32 weights: the f32 kernel";
        return p;
    }
    if (kind == KERN_CUDA_GEMM_WMMA || (kind == KERN_CUDA_GEMM_AUTO && !GEMM_AUTO_MMA)) {
        p.why = kind == KERN_CUDA_GEMM_WMMA ? "selected (wmma)"
                                            : "default: the int8 kernel is opt-in (AMXDIAG_GPU_GEMM=mma) until "
                                              "verified on a GPU";
        return p;
    }
    if (caps->code_arch < 80) {
        p.why = "the int8 kernel needs sm_80 code (mma.m16n8k32, cp.async); this module runs older code";
        return p;
    }
    if (m <= 0 || n <= 0 || k <= 0 || k % 32) {
        p.why = "bad shape";
        return p;
    }
    const int wt = type == KERN_TYPE_Q4_0 ? 4 : 8;
    const int limit = caps->can_raise_smem ? caps->smem_optin : 48 * 1024;
    const int want_stages = stages >= 2 && stages <= 4 ? stages : 3;
    int code = kern_cuda_gemm_tile_code(tile);
    /* wgmma: asked as the kind, by a wgmma tile code (under any kind but wmma/mma), or
     * AUTO's table; where the sm_90a module is not loaded or its tile does not fit, the
     * f16-MMA kernel as that kind would run it, saying so */
    const char *w_fallback = NULL;
    if (!moe && kind != KERN_CUDA_GEMM_MMA) {
        int ks = 1, axv = 0, wc = code >= GW_CODE0 ? code : 0;
        if (!wc && kind == KERN_CUDA_GEMM_AUTO && code == 0)
            wc = auto_wgmma_code(caps, wt, m, k, n, &ks, &axv);
        if (wc || kind == KERN_CUDA_GEMM_WGMMA) {
            if (caps->wgmma) {
                kern_cuda_gemm_plan f = plan_wgmma(caps, wc, GW_MAX_SLOTS, ks, wt, m, k, n, w_addr);
                if (f.wgmma) {
                    if (wc && !(code >= GW_CODE0) && kind == KERN_CUDA_GEMM_AUTO) {
                        f.why = "wgmma (auto: measured faster than the f16-MMA kernel at this shape)";
                        if (axv > 0 && axv <= GW_NXV) /* auto's variant of this shape class */
                            kern_cuda_gemm_wgmma_xv(caps, &f, type, (const char[]){(char)('0' + axv), 0});
                    }
                    return f;
                }
                w_fallback = "f16 tensor cores (wgmma asked: its tile does not fit this device's shared memory)";
            } else {
                w_fallback = "f16 tensor cores (wgmma asked: the sm_90a module is not loaded here; "
                             "compute capability 9.0 only)";
            }
            if (code >= GW_CODE0)
                code = 0;
            if (kind == KERN_CUDA_GEMM_WGMMA)
                kind = KERN_CUDA_GEMM_F16MMA;
        }
    } else if (code >= GW_CODE0) {
        code = 0; /* a wgmma tile asked of the int8 kernel */
    }
    if (kind == KERN_CUDA_GEMM_F16MMA && !moe) {
        kern_cuda_gemm_plan f = plan_f16mma(caps, code, want_stages, wt, m, k, n, w_addr);
        if (f.f16mma && w_fallback)
            f.why = w_fallback;
        if (f.f16mma)
            return f;
        /* no room for its stages: the int8 kernel, saying why */
        code = 0;
    }
    /* AUTO: the kernel measured faster at this kind of shape (an f16-MMA tile asked for
     * picks that kernel) */
    if (kind == KERN_CUDA_GEMM_AUTO && !moe && (code == 0 || code > GI8_NVAR)) {
        int ks;
        if (code || measured_f16_code(caps, wt, m, k, n, &ks)) {
            kern_cuda_gemm_plan f = plan_f16mma(caps, code, want_stages, wt, m, k, n, w_addr);
            if (f.f16mma) {
                if (!code)
                    f.why = f.aligned ? "f16 tensor cores (auto: measured faster than int8 at this shape)"
                                      : "f16 tensor cores (auto: measured faster than int8 at this shape; weights by "
                                        "2-byte loads)";
                return f;
            }
        }
        code = 0;
    }
    if (code > GI8_NVAR)
        code = 0; /* an f16-MMA tile asked of the int8 kernel */
    int v;
    if (moe)
        v = 0; /* the grouped kernel's tile (a few dozen tokens per expert: many small tiles) */
    else if (code)
        v = code - 1;
    else {
        /* The variant the cost model says is fastest among those whose stages fit. */
        double best = 0;
        v = -1;
        for (int c = 0; c < GI8_NVAR; c++) {
            int sb = gi8_stage_bytes_n(wt, gi8_var_bm(c), gi8_var_bn(c)), st = want_stages;
            while (st > 2 && st * sb > limit)
                st--;
            if (st * sb > limit)
                continue;
            double t = gemm_cost(caps, wt, c, m, k, n, st * sb);
            if (v < 0 || t < best)
                best = t, v = c;
        }
        if (v < 0)
            v = 0;
    }
    int sb = gi8_stage_bytes_n(wt, gi8_var_bm(v), gi8_var_bn(v));
    p.stages = want_stages;
    while (p.stages > 2 && p.stages * sb > limit)
        p.stages--;
    if (p.stages * sb > limit) {
        p.why = "not enough shared memory for two stages of the int8 kernel";
        p.stages = 0;
        return p;
    }
    p.variant = v;
    p.tile = gi8_var_bm(v);
    p.bn = gi8_var_bn(v);
    p.threads = gi8_var_threads(v);
    p.smem = p.stages * sb;
    p.aligned = (k / 32) % GI8_KBS == 0 && (w_addr & 7) == 0;
    p.mma = true;
    p.why = p.aligned ? "int8 tensor cores" : "int8 tensor cores (weights by 2-byte loads: k % 128 != 0 or unaligned)";
    return p;
}

int kern_cuda_gemm_ksplit(const kern_cuda_gemm_plan *p, int want, int64_t k)
{
    /* 0: auto, the measured pick's suggestion (plan_f16mma) */
    if (want == 0)
        want = p->ksplit;
    if (!p->f16mma || want != 2 || p->variant < 0 || p->variant >= (p->wgmma ? GW_NVAR : GF_NVAR))
        return 1;
    const int kb = p->wgmma ? GW_KB : gf_var_kb(p->variant);
    const int64_t nst = (k / 32 + kb - 1) / kb;
    /* the wgmma ring's slots (up to 8) count as 4: its stages are cheap to refill */
    return nst >= 4 * (int64_t)(p->wgmma && p->stages > 4 ? 4 : p->stages) ? 2 : 1;
}

void kern_cuda_gemm_wgmma_tune(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_plan *p, kern_type type,
                               const char *slots, const char *pipe, const char *persist, int64_t m, int64_t n)
{
    if (!p->wgmma)
        return;
    if (slots || pipe) {
        p->xv = 0; /* the slots refitted for the measured kernel's rows */
        char *end;
        long s = slots && *slots ? strtol(slots, &end, 10) : 0;
        if (!s || *end || s < 3 || s > GW_MAX_SLOTS)
            s = GW_MAX_SLOTS;
        int deep = p->deep;
        if (pipe && (strcmp(pipe, "1") == 0 || strcmp(pipe, "2") == 0))
            deep = pipe[0] == '2';
        const int wt = type == KERN_TYPE_Q4_0 ? 4 : type == KERN_TYPE_F16 ? 16 : 8;
        int fit = gw_fit(caps, wt, p->variant, (int)s, deep);
        if (!fit && deep)
            fit = gw_fit(caps, wt, p->variant, (int)s, deep = 0);
        if (fit) {
            p->stages = fit;
            p->deep = deep;
            p->smem = gw_smem_bytes_p(wt, p->tile, p->bn, fit, deep);
        }
    }
    /* the grid after the slots (CTAs per SM) and the k slices */
    const bool on = persist && (strcmp(persist, "0") == 0 || strcmp(persist, "1") == 0) ? persist[0] == '1'
                                                                                         : GW_PERSIST_DEFAULT;
    p->grid = on ? gw_grid(caps, p, m, n) : 0;
}

void kern_cuda_gemm_wgmma_xv(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_plan *p, kern_type type,
                             const char *xv)
{
    if (!p->wgmma || !xv) /* not asked: the plan's own (auto's table) */
        return;
    const int old = p->xv, wt = type == KERN_TYPE_Q4_0 ? 4 : 8;
    int x = xv[0] >= '1' && xv[0] <= '0' + GW_NXV && !xv[1] ? xv[0] - '0' : 0;
    if ((type != KERN_TYPE_Q4_0 && type != KERN_TYPE_Q8_0) || p->variant < 0 || p->variant >= GW_XV_TILES)
        x = 0; /* f16 weights and the 64 x 64 tile: no variants */
    p->xv = 0;
    const int pad = x & GW_XV_PAD;
    if ((old & GW_XV_PAD) && !pad) {
        /* back to the measured kernel's rows: as many slots as fit them */
        const int fit = gw_fit(caps, wt, p->variant, GW_MAX_SLOTS, p->deep);
        if (fit) {
            p->stages = fit;
            p->smem = gw_smem_bytes_p(wt, p->tile, p->bn, fit, p->deep);
        }
    }
    if (!x)
        return;
    if (pad) {
        /* the padded rows' slots: as many as fit, no more than the plan had */
        int fit = gw_slots_fit_x(wt, p->variant, p->stages, gw_smem_limit(caps, p->variant), p->deep, pad);
        if (!fit)
            fit = gw_slots_fit_x(wt, p->variant, p->stages, caps->can_raise_smem ? caps->smem_optin : 48 * 1024,
                                 p->deep, pad);
        if (!fit)
            return;
        p->stages = fit;
        p->smem = gw_smem_bytes_x(wt, p->tile, p->bn, fit, p->deep, pad);
    }
    if ((x & GW_XV_FIX) && (p->deep || p->stages != gw_fix_slots(p->variant, wt, pad)))
        x &= ~GW_XV_FIX; /* its compiled slot count is not this plan's */
    p->xv = x;
}

/* Where AUTO takes the two-pass path.  The fused kernels convert each weight block in
 * shared memory once per CTA column of tokens, between the copies and the MMAs of a stage;
 * the two-pass path converts each block once (a pass of ~3 bytes per weight, in the same
 * launch as X's rounding and split-K's zeroing of y) and then runs the f16-weight kernel,
 * which has no conversion in its loop.  Measured on the H100 (tests/device/gemm_dq.sh,
 * 2026-11-26 10:59 UTC, build cb0836b, 512 tokens, medians of 3 runs; us, two-pass /
 * fused):
 *   attn_q   4096x2048: q4_0 41.9 / 46.7   q8_0 43.6 / 51.3
 *   attn_o   2048x4096: q4_0 50.0 / 56.7   q8_0 50.9 / 63.2
 *   ffn_up   768x2048:  q4_0 24.7 / 31.7   q8_0 24.8 / 33.2
 *   ffn_down 2048x768:  q4_0 20.5 / 22.9   q8_0 20.4 / 23.9
 *   LM head  151936x2048: q4_0 844 / 699  q8_0 890 / 851 (one slab; slabs of 4096-32768
 *     rows 1104-1394: each slab's GEMM has too few tiles)
 * (build a910252, the first pass a launch of its own, lost ffn_down: 26.9 / 24.2.)  So:
 * every class of 512 tokens and more but the LM head's (many waves of large tiles, where
 * the fused wgmma kernel hides its conversion). */
static bool auto_dq(const kern_cuda_gemm_caps *caps, int64_t m, int64_t k, int64_t n)
{
    const int c = shape_class(caps, m, k, n);
    return c != GS_NONE && c != GS_LARGE;
}

kern_cuda_gemm_plan kern_cuda_gemm_plan_dq(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int tile,
                                           int stages, kern_type type, int64_t m, int64_t k, int64_t n, int want,
                                           size_t cap, const kern_cuda_gemm_plan *fused)
{
    if ((type != KERN_TYPE_Q4_0 && type != KERN_TYPE_Q8_0) || want == 0 || kind == KERN_CUDA_GEMM_WMMA ||
        kind == KERN_CUDA_GEMM_MMA || caps->code_arch < 80 || m <= 0 || n <= 0 || k <= 0 || k % 32)
        return *fused;
    /* auto: only what was measured: the wgmma kernel's shapes (compute capability 9.0; on
     * other cards the f16-MMA two-pass path is opt-in until timed there), whole in one
     * slab (slabs lost at the LM head), not where an int8 tile was asked for */
    if (want < 0) {
        const int code = kern_cuda_gemm_tile_code(tile);
        if (kind != KERN_CUDA_GEMM_AUTO || !caps->wgmma || fused->mma || (code >= 1 && code <= GI8_NVAR) ||
            (uint64_t)m * (uint64_t)k * 2 > (uint64_t)cap || !auto_dq(caps, m, k, n))
            return *fused;
    }
    int64_t rows = (int64_t)(cap / (2 * (size_t)k)) / 256 * 256;
    if (rows < 256)
        return *fused; /* not even 256 rows fit the workspace */
    if (rows > m)
        rows = m;
    /* the f16-weight kernel of the slab's shape; the workspace is 256-byte aligned */
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_make(caps, kind, tile, stages, KERN_TYPE_F16, rows, k, n, 256, false);
    if (!p.wgmma && !p.f16mma)
        return *fused;
    p.dequant = true;
    p.dq_rows = rows;
    p.why = want > 0 ? (p.wgmma ? "wgmma on weights dequantised to f16 first (two passes, asked)"
                                : "f16 tensor cores on weights dequantised to f16 first (two passes, asked)")
                     : (p.wgmma ? "wgmma on weights dequantised to f16 first (two passes; auto: measured faster)"
                                : "f16 tensor cores on weights dequantised to f16 first (two passes; auto: measured "
                                  "faster)");
    return p;
}

kern_cuda_gemm_plan kern_cuda_gemm_plan_for(const kern_cuda_ctx *c, kern_type type, int64_t m, int64_t k, int64_t n,
                                            kern_cu_deviceptr w, bool moe)
{
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_make(&c->caps, c->gemm_kind, c->gemm_tile, c->gemm_stages, type, m, k,
                                                     n, (uint64_t)w, moe);
    if ((p.mma || p.f16mma) && !moe && c->gemm_bk == 64) {
        p = (kern_cuda_gemm_plan){.mma = false, .why = "--gemm-bk 64 selects the 64-wide f16 WMMA kernel"};
    } else if (!moe) {
        p = kern_cuda_gemm_plan_dq(&c->caps, c->gemm_kind, c->gemm_tile, c->gemm_stages, type, m, k, n, c->gemm_dq,
                                   c->gemm_dq_cap, &p);
        if (p.dequant) { /* the rest tunes the f16-weight kernel of a slab */
            type = KERN_TYPE_F16;
            m = p.dq_rows;
        }
    }
    if (p.wgmma) {
        kern_cuda_gemm_wgmma_tune(&c->caps, &p, type, getenv("AMXDIAG_GPU_GEMM_WGMMA_SLOTS"),
                                  getenv("AMXDIAG_GPU_GEMM_WGMMA_PIPE"), NULL, m, n);
        kern_cuda_gemm_wgmma_xv(&c->caps, &p, type, getenv("AMXDIAG_GPU_GEMM_WGMMA_X"));
    }
    p.ksplit = kern_cuda_gemm_ksplit(&p, c->gemm_ksplit, k);
    if (p.wgmma) /* the grid counts the k slices */
        kern_cuda_gemm_wgmma_tune(&c->caps, &p, type, NULL, NULL, getenv("AMXDIAG_GPU_GEMM_WGMMA_PERSIST"), m, n);
    return p;
}

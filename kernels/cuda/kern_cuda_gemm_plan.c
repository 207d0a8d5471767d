/* Which prompt GEMM runs, with which tile and pipeline depth: pure host logic, so that
 * every branch is unit-tested on machines without a GPU. */
#include "kernels/cuda/kern_cuda_internal.h"

#include <string.h>

#include "kernels/cuda/kern_gemm_i8_map.h"

/* Whether AUTO takes the int8 tensor-core kernels (sm_80 and newer).  On the H200
 * (2026-11-26): bit-exact with the CPU formula in every unit case, the engine's GPU layers
 * equal to the CPU reference teacher-forced (0.00000 at --ngl 2/4/99 with the f32 router),
 * 2.9x the f16 WMMA kernel at pp512 --ngl 99 (docs/PERFORMANCE.md).  AMXDIAG_GPU_GEMM=wmma
 * keeps the older kernel. */
#define GEMM_AUTO_MMA 1

static const char *const kind_names[] = {"auto", "wmma", "mma"};

bool kern_cuda_gemm_kind_parse(const char *s, kern_cuda_gemm_kind *out)
{
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, kind_names[i]) == 0) {
            *out = (kern_cuda_gemm_kind)i;
            return true;
        }
    return false;
}

const char *kern_cuda_gemm_kind_name(kern_cuda_gemm_kind k)
{
    return (unsigned)k < 3 ? kind_names[k] : "?";
}

int kern_cuda_gemm_stage_bytes(int wt, int tile) { return gi8_stage_bytes(wt, tile); }

/* How full the last wave of `tiles` CTAs is (1 = every slot busy), with as many CTAs
 * per SM as registers (128 per thread, 2 threads per tile row) and shared memory allow. */
static double gemm_wave_fill(const kern_cuda_gemm_caps *caps, int64_t tiles, int bm, int smem)
{
    int per_sm = 65536 / (128 * bm * 2);
    int by_smem = (caps->smem_optin + 1024) / (smem + 2048); /* + tables and the driver's reserve */
    if (by_smem < per_sm)
        per_sm = by_smem;
    if (per_sm < 1)
        per_sm = 1;
    int64_t slots = (int64_t)(caps->sm_count > 0 ? caps->sm_count : 1) * per_sm;
    int64_t waves = (tiles + slots - 1) / slots;
    return (double)tiles / (double)(waves * slots);
}

kern_cuda_gemm_plan kern_cuda_gemm_plan_make(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int tile,
                                             int stages, kern_type type, int64_t m, int64_t k, int64_t n,
                                             uint64_t w_addr, bool moe)
{
    kern_cuda_gemm_plan p = {.mma = false, .tile = 0, .stages = 0, .smem = 0, .aligned = false, .why = ""};
    if (type != KERN_TYPE_Q4_0 && type != KERN_TYPE_Q8_0) {
        p.why = "f16 weights: the f16 tensor-core kernel";
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
    if (moe)
        p.tile = 64; /* a few dozen tokens per expert: many small tiles */
    else if (tile == 64 || tile == 128)
        p.tile = tile;
    else {
        /* The tile whose last wave is fuller: 128-row tiles do twice the MMAs per byte
         * staged, so they win ties (attn_q 4096 x 512 tokens: 256 tiles of 128 fill the
         * H100's 264 slots once; attn_o 2048: 128 tiles of 128 would leave half idle). */
        double eff[2];
        for (int i = 0; i < 2; i++) {
            int bm = i ? 128 : 64, st = stages >= 2 && stages <= 4 ? stages : 3;
            int64_t tiles = ((m + bm - 1) / bm) * ((n + GI8_BN - 1) / GI8_BN);
            eff[i] = gemm_wave_fill(caps, tiles, bm, st * gi8_stage_bytes(wt, bm));
        }
        p.tile = eff[0] > eff[1] * 1.15 ? 64 : 128;
    }
    const int limit = caps->can_raise_smem ? caps->smem_optin : 48 * 1024;
    int sb = gi8_stage_bytes(wt, p.tile);
    p.stages = stages >= 2 && stages <= 4 ? stages : 3;
    if (!moe && tile != 64 && tile != 128 && p.tile == 128 && 2 * sb > limit) {
        p.tile = 64;
        sb = gi8_stage_bytes(wt, 64);
    }
    while (p.stages > 2 && p.stages * sb > limit)
        p.stages--;
    if (p.stages * sb > limit) {
        p.why = "not enough shared memory for two stages of the int8 kernel";
        p.tile = p.stages = 0;
        return p;
    }
    p.smem = p.stages * sb;
    p.aligned = (k / 32) % GI8_KBS == 0 && (w_addr & 7) == 0;
    p.mma = true;
    p.why = p.aligned ? "int8 tensor cores" : "int8 tensor cores (weights by 2-byte loads: k % 128 != 0 or unaligned)";
    return p;
}

kern_cuda_gemm_plan kern_cuda_gemm_plan_for(const kern_cuda_ctx *c, kern_type type, int64_t m, int64_t k, int64_t n,
                                            kern_cu_deviceptr w, bool moe)
{
    kern_cuda_gemm_plan p = kern_cuda_gemm_plan_make(&c->caps, c->gemm_kind, c->gemm_tile, c->gemm_stages, type, m, k,
                                                     n, (uint64_t)w, moe);
    if (p.mma && !moe && c->gemm_bk == 64) {
        p = (kern_cuda_gemm_plan){.mma = false, .why = "--gemm-bk 64 selects the 64-wide f16 WMMA kernel"};
    }
    return p;
}

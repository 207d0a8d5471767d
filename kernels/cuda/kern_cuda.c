/* The CUDA context of the kernels: device, primary context, module, stream, launches. */
#include "kernels/cuda/kern_cuda_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda_image.h"
#include "kernels/cuda/kern_gemm_f16mma_map.h"
#include "kernels/cuda/kern_gemm_i8_map.h"
#include "kernels/cuda/kern_gemm_wgmma_map.h"

_Static_assert(KF_GEMM_I8_LAST - KF_GEMM_I8_FIRST + 1 == 2 * GI8_NVAR, "one q4_0 and one q8_0 kernel per variant");
_Static_assert(KF_GEMM_F16MMA_LAST - KF_GEMM_F16MMA_FIRST + 1 == 3 * GF_NVAR, "a q4_0, q8_0 and f16 kernel per variant");
_Static_assert(KF_GEMM_WGMMA_LAST - KF_GEMM_WGMMA_FIRST + 1 == 3 * GW_NVAR + GW_NXK,
               "a q4_0, q8_0 and f16 kernel per variant, and the experimental ones");
_Static_assert(KF_MOE_GEMM_I8G_LAST - KF_MOE_GEMM_I8G_FIRST + 1 == 2 * GI8M_NVAR, "one q4_0 and one q8_0 kernel per variant");

const char *const kern_cuda_kernel_names[KF_COUNT] = {
    [KF_GET_ROWS_F32] = "kern_get_rows_f32", [KF_GET_ROWS_F16] = "kern_get_rows_f16",
    [KF_GET_ROWS_BF16] = "kern_get_rows_bf16", [KF_GET_ROWS_Q4_0] = "kern_get_rows_q4_0",
    [KF_GET_ROWS_Q8_0] = "kern_get_rows_q8_0", [KF_QUANTIZE_Q8] = "kern_quantize_q8",
    [KF_GEMV_Q4_0] = "kern_gemv_q4_0",         [KF_GEMV_Q8_0] = "kern_gemv_q8_0",
    [KF_GEMM_Q4_0] = "kern_gemm_q4_0",         [KF_GEMM_Q8_0] = "kern_gemm_q8_0",
    [KF_GEMM_F16] = "kern_gemm_f16",           [KF_F32_TO_F16] = "kern_f32_to_f16",
    [KF_MOE_ROUTE] = "kern_moe_route",         [KF_RMSNORM] = "kern_rmsnorm",
    [KF_ROPE_NEOX] = "kern_rope_neox",         [KF_SOFTMAX] = "kern_softmax",
    [KF_ATTENTION] = "kern_attention",         [KF_SILU_MUL] = "kern_silu_mul",
    [KF_ADD] = "kern_add",                     [KF_GEMV_Q4_0_MR] = "kern_gemv_q4_0_mr",
    [KF_GEMV_Q8_0_MR] = "kern_gemv_q8_0_mr",
    [KF_GEMV_SB_FIRST] = "kern_gemv_q4_0_sb", [KF_GEMV_SB_FIRST + 1] = "kern_gemv_q8_0_sb",
    [KF_GEMV_SB_FIRST + 2] = "kern_gemv_q4_0_sbn", [KF_GEMV_SB_FIRST + 3] = "kern_gemv_q8_0_sbn",
    [KF_GEMV_SB_FIRST + 4] = "kern_gemv_q4_0_sba2", [KF_GEMV_SB_FIRST + 5] = "kern_gemv_q8_0_sba2",
    [KF_GEMV_SB_FIRST + 6] = "kern_gemv_q4_0_sba3", [KF_GEMV_SB_FIRST + 7] = "kern_gemv_q8_0_sba3",
    [KF_DEQUANT_Q4_0_F16] = "kern_dequant_q4_0_f16", [KF_DEQUANT_Q8_0_F16] = "kern_dequant_q8_0_f16",
    [KF_GEMM_PROLOGUE_Q4_0] = "kern_gemm_prologue_q4_0", [KF_GEMM_PROLOGUE_Q8_0] = "kern_gemm_prologue_q8_0",
    [KF_GEMM_Q4_0_BK64] = "kern_gemm_q4_0_bk64",
    [KF_GEMM_Q8_0_BK64] = "kern_gemm_q8_0_bk64", [KF_GEMM_F16_BK64] = "kern_gemm_f16_bk64",
    [KF_ATTENTION_CAUSAL] = "kern_attention_causal", [KF_MOE_WSUM] = "kern_moe_wsum",
    [KF_MOE_SORT] = "kern_moe_sort", [KF_MOE_GEMM_Q4_0] = "kern_moe_gemm_q4_0",
    [KF_MOE_GEMM_Q8_0] = "kern_moe_gemm_q8_0", [KF_F32_TO_F16_Q8] = "kern_f32_to_f16_q8",
#define GI8_NAMES(I, MT, NT, WM, WN, CPS) \
    [KF_GEMM_I8_FIRST + 2 * I] = "kern_gemm_i8_q4_0_v" #I, [KF_GEMM_I8_FIRST + 2 * I + 1] = "kern_gemm_i8_q8_0_v" #I,
    GI8_VARIANTS(GI8_NAMES)
#undef GI8_NAMES
    [KF_MOE_GEMM_I8_Q4_0] = "kern_moe_gemm_i8_q4_0", [KF_MOE_GEMM_I8_Q8_0] = "kern_moe_gemm_i8_q8_0",
    [KF_GEMM_F32] = "kern_gemm_f32", [KF_GEMM_F32_FEW] = "kern_gemm_f32_few",
#define GF_NAMES(I, MT, NT, WM, WN, CPS, KB)                                                            \
    [KF_GEMM_F16MMA_FIRST + 2 * I] = "kern_gemm_f16mma_q4_0_v" #I,                                    \
    [KF_GEMM_F16MMA_FIRST + 2 * I + 1] = "kern_gemm_f16mma_q8_0_v" #I,                                \
    [KF_GEMM_F16MMA_FIRST + 2 * GF_NVAR + I] = "kern_gemm_f16mma_f16_v" #I,
    GF_VARIANTS(GF_NAMES)
#undef GF_NAMES
    [KF_ZERO_F32] = "kern_zero_f32",
    [KF_KV_STORE] = "kern_kv_store",
    [KF_QKV_POST] = "kern_qkv_post",
    [KF_ADD_RMSNORM] = "kern_add_rmsnorm",
    [KF_ROUTER_TOPK] = "kern_router_topk",
    [KF_GEMM_F32_SUM] = "kern_gemm_f32_sum",
#define GW_NAMES(I, WG, BN, CPS)                                                                        \
    [KF_GEMM_WGMMA_FIRST + 2 * I] = "kern_gemm_wgmma_q4_0_w" #I,                                        \
    [KF_GEMM_WGMMA_FIRST + 2 * I + 1] = "kern_gemm_wgmma_q8_0_w" #I,                                    \
    [KF_GEMM_WGMMA_FIRST + 2 * GW_NVAR + I] = "kern_gemm_wgmma_f16_w" #I,
    GW_VARIANTS(GW_NAMES)
#undef GW_NAMES
#define GW_XNAMES(I)                                                                                    \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I) * 3] = "kern_gemm_wgmma_q4_0_w" #I "_x1",               \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I) * 3 + 1] = "kern_gemm_wgmma_q4_0_w" #I "_x2",           \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I) * 3 + 2] = "kern_gemm_wgmma_q4_0_w" #I "_x3",           \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I + 1) * 3] = "kern_gemm_wgmma_q8_0_w" #I "_x1",           \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I + 1) * 3 + 1] = "kern_gemm_wgmma_q8_0_w" #I "_x2",       \
    [KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR + (2 * I + 1) * 3 + 2] = "kern_gemm_wgmma_q8_0_w" #I "_x3",
    GW_XNAMES(0) GW_XNAMES(1) GW_XNAMES(2)
#undef GW_XNAMES
#define GI8M_NAMES(I, MT, NT, WM, CPS)                                                                  \
    [KF_MOE_GEMM_I8G_FIRST + 2 * I] = "kern_moe_gemm_i8_q4_0_g" #I,                                     \
    [KF_MOE_GEMM_I8G_FIRST + 2 * I + 1] = "kern_moe_gemm_i8_q8_0_g" #I,
    GI8M_VARIANTS(GI8M_NAMES)
#undef GI8M_NAMES
};

#define CU_TRY(ctxp, call, ...)                                 \
    do {                                                        \
        kern_cu_result r_ = (call);                             \
        if (r_ != KERN_CU_SUCCESS)                              \
            return kern_cuda_errf(r_, __VA_ARGS__);             \
    } while (0)

/* The context is current per thread: an op called from another thread than
 * kern_cuda_open's (a worker, a TUI thread) makes it current there first. */
static adg_error *ensure_current(kern_cuda_ctx *c)
{
    return kern_cuda_make_current(c);
}

adg_error *kern_cuda_make_current(kern_cuda_ctx *c)
{
    kern_cu_context cur = NULL;
    if (c->d->cuCtxGetCurrent(&cur) == KERN_CU_SUCCESS && cur == c->cu)
        return NULL;
    kern_cu_result r = c->d->cuCtxSetCurrent(c->cu);
    return r ? kern_cuda_errf(r, "making the CUDA context of %s current", c->info.name) : NULL;
}

static adg_error *load_module(kern_cuda_ctx *c, kern_cuda_load_mode mode)
{
    const kern_cuda_driver *d = c->d;
    const void *image;
    size_t len;
    if (mode == KERN_CUDA_LOAD_FORCE_PTX) {
        const char *ptx;
        kern_cuda_embedded_ptx(&ptx, &len);
        image = ptx;
    } else {
        kern_cuda_embedded_fatbin(&image, &len);
    }
    c->info.image_bytes = len;

    /* What the driver should pick: from the fatbin's own table of contents. */
    const void *fb;
    size_t fblen, n = 0;
    kern_cuda_embedded_fatbin(&fb, &fblen);
    kern_fatbin_entry ents[64];
    adg_error *e = kern_fatbin_parse(fb, fblen, ents, ADG_ARRAY_LEN(ents), &n);
    if (e)
        return adg_error_prefix(e, "embedded CUDA kernels");
    int sass = 0, ptx_arch = 0;
    kern_fatbin_pick(ents, n < ADG_ARRAY_LEN(ents) ? n : ADG_ARRAY_LEN(ents), c->info.cc_major, c->info.cc_minor,
                     &sass, &ptx_arch);
    c->info.sass_arch = sass;
    c->info.ptx_arch = mode == KERN_CUDA_LOAD_FORCE_PTX ? kern_cuda_built_jit_ptx_arch() : kern_cuda_built_ptx_arch();
    c->info.used_ptx_jit = mode == KERN_CUDA_LOAD_FORCE_PTX || sass == 0;
    if (mode == KERN_CUDA_LOAD_AUTO && sass == 0 && ptx_arch == 0)
        return adg_error_hint(
            adg_error_new(ADG_E_UNSUPPORTED,
                          "amxdiag's CUDA kernels have no code for %s (compute capability %d.%d): SASS is built for "
                          "sm_%s, PTX for compute_%d",
                          c->info.name, c->info.cc_major, c->info.cc_minor, kern_cuda_built_archs(),
                          kern_cuda_built_ptx_arch()),
            "rebuild amxdiag with AMXDIAG_CUDA_ARCHS including %d%d", c->info.cc_major, c->info.cc_minor);

    char errlog[4096] = "";
    float walltime = 0;
    int opts[] = {KERN_CU_JIT_ERROR_LOG_BUFFER, KERN_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, KERN_CU_JIT_WALL_TIME};
    void *vals[] = {errlog, (void *)(uintptr_t)sizeof errlog, NULL};
    uint64_t t0 = adg_now_ns();
    kern_cu_result r = d->cuModuleLoadDataEx(&c->mod, image, 3, opts, vals);
    c->info.module_load_ms = (double)(adg_now_ns() - t0) / 1e6;
    /* CU_JIT_WALL_TIME comes back as a float stored in the option value itself. */
    memcpy(&walltime, &vals[2], sizeof walltime);
    c->info.jit_ms = c->info.used_ptx_jit ? walltime : 0.0;
    if (r != KERN_CU_SUCCESS) {
        c->mod = NULL;
        e = kern_cuda_errf(r, "loading the CUDA kernels (%s, %zu bytes) on %s (compute capability %d.%d)",
                           mode == KERN_CUDA_LOAD_FORCE_PTX ? "PTX for JIT" : "fatbin", len, c->info.name,
                           c->info.cc_major, c->info.cc_minor);
        if (errlog[0])
            adg_error_prefix(e, "JIT log: %.300s", adg_rstrip(errlog));
        return e;
    }
    for (int i = 0; i < KF_COUNT; i++)
        if (!kern_cuda_fn_in_wgmma(i))
            CU_TRY(c, d->cuModuleGetFunction(&c->fn[i], c->mod, kern_cuda_kernel_names[i]),
                   "CUDA kernel %s missing from the module", kern_cuda_kernel_names[i]);
    int v = 0;
    if (d->cuFuncGetAttribute(&v, KERN_CU_FUNC_ATTR_BINARY_VERSION, c->fn[KF_GET_ROWS_F32]) == KERN_CU_SUCCESS)
        c->info.image_arch = v;
    if (d->cuFuncGetAttribute(&v, KERN_CU_FUNC_ATTR_PTX_VERSION, c->fn[KF_GET_ROWS_F32]) == KERN_CU_SUCCESS)
        c->info.ptx_version = v;
    return NULL;
}

static adg_error *open_device(kern_cuda_ctx *c, int ordinal)
{
    const kern_cuda_driver *d = c->d;
    int count = 0;
    CU_TRY(c, d->cuDeviceGetCount(&count), "counting CUDA devices");
    if (count == 0)
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "no CUDA device is visible"),
                              "check nvidia-smi and CUDA_VISIBLE_DEVICES");
    if (ordinal < 0 || ordinal >= count)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "GPU %d does not exist: %d CUDA device%s visible", ordinal,
                                            count, count == 1 ? " is" : "s are"),
                              "pick a GPU from 0 to %d", count - 1);
    CU_TRY(c, d->cuDeviceGet(&c->dev, ordinal), "opening CUDA device %d", ordinal);
    kern_cuda_load_info *in = &c->info;
    in->ordinal = ordinal;
    in->driver_version = d->driver_version;
    CU_TRY(c, d->cuDeviceGetName(in->name, sizeof in->name, c->dev), "naming CUDA device %d", ordinal);
    if (d->cuDeviceGetPCIBusId(in->pci_bus_id, sizeof in->pci_bus_id, c->dev) != KERN_CU_SUCCESS)
        snprintf(in->pci_bus_id, sizeof in->pci_bus_id, "unknown");
    CU_TRY(c, d->cuDeviceGetAttribute(&in->cc_major, KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MAJOR, c->dev),
           "reading the compute capability of GPU %d", ordinal);
    CU_TRY(c, d->cuDeviceGetAttribute(&in->cc_minor, KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MINOR, c->dev),
           "reading the compute capability of GPU %d", ordinal);
    CU_TRY(c, d->cuDeviceGetAttribute(&in->sm_count, KERN_CU_DEV_ATTR_MULTIPROCESSOR_COUNT, c->dev),
           "reading the SM count of GPU %d", ordinal);
    int gx = 0;
    CU_TRY(c, d->cuDeviceGetAttribute(&gx, KERN_CU_DEV_ATTR_MAX_GRID_DIM_X, c->dev), "reading grid limits");
    c->max_grid_x = gx > 0 ? (unsigned)gx : 65535u;
    CU_TRY(c, d->cuDeviceTotalMem(&in->total_mem, c->dev), "reading the memory size of GPU %d", ordinal);
    CU_TRY(c, d->cuDevicePrimaryCtxRetain(&c->cu, c->dev), "creating a context on %s", in->name);
    c->ctx_retained = true;
    CU_TRY(c, d->cuCtxSetCurrent(c->cu), "making the context of %s current", in->name);
    /* A blocking stream: it waits for the legacy stream, where cuMemcpyHtoD's DMA from
     * pageable memory and cuMemset* run.  cuMemcpyHtoD returns once the data is staged,
     * not written; a non-blocking stream let kernels read indices before they arrived
     * (seen on the H100: GET_ROWS faulted on stale ids). */
    CU_TRY(c, d->cuStreamCreate(&c->stream, 0), "creating a stream on %s", in->name);
    return NULL;
}

/* What the prompt GEMM may use on this device, and the $AMXDIAG_GPU_GEMM* overrides. */
static adg_error *init_gemm_caps(kern_cuda_ctx *c)
{
    kern_cuda_gemm_caps *k = &c->caps;
    /* The code that runs: the SASS the driver picks, or the PTX it JITs (forced: the
     * compute_75 image, where the int8 kernels are compiled out). */
    k->code_arch = c->info.used_ptx_jit ? c->info.ptx_arch : c->info.sass_arch;
    k->sm_count = c->info.sm_count;
    int v = 0;
    if (c->d->cuDeviceGetAttribute(&v, KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, c->dev) != KERN_CU_SUCCESS ||
        v <= 0)
        v = 48 * 1024;
    k->smem_optin = v;
    k->can_raise_smem = c->d->cuFuncSetAttribute != NULL;
    const char *env = getenv("AMXDIAG_GPU_GEMM");
    if (env && *env && !kern_cuda_gemm_kind_parse(env, &c->gemm_kind))
        adg_warn("AMXDIAG_GPU_GEMM=%s ignored: use auto, wmma, mma, f16mma or wgmma", env);
    env = getenv("AMXDIAG_GPU_GEMM_SPLITK");
    if (env && *env) {
        if (strcmp(env, "0") == 0 || strcmp(env, "1") == 0 || strcmp(env, "2") == 0)
            c->gemm_ksplit = env[0] - '0';
        else
            adg_warn("AMXDIAG_GPU_GEMM_SPLITK=%s ignored: use 0 (auto), 1 or 2", env);
    }
    c->gemm_dq = -1;
    c->gemm_dq_cap = (size_t)KERN_CUDA_GEMM_DQ_MIB << 20;
    env = getenv("AMXDIAG_GPU_GEMM_DQ");
    if (env && *env) {
        if (strcmp(env, "auto") == 0 || strcmp(env, "0") == 0 || strcmp(env, "1") == 0)
            c->gemm_dq = env[0] == 'a' ? -1 : env[0] - '0';
        else
            adg_warn("AMXDIAG_GPU_GEMM_DQ=%s ignored: use auto, 0 or 1", env);
    }
    env = getenv("AMXDIAG_GPU_GEMM_DQ_MIB");
    if (env && *env) {
        char *end;
        long mib = strtol(env, &end, 10);
        if (*end == 0 && mib >= 1 && mib <= 65536)
            c->gemm_dq_cap = (size_t)mib << 20;
        else
            adg_warn("AMXDIAG_GPU_GEMM_DQ_MIB=%s ignored: use 1 .. 65536 (MiB)", env);
    }
    env = getenv("AMXDIAG_GPU_GEMM_STORE");
    if (env && *env) {
        if (strcmp(env, "staged") == 0 || strcmp(env, "fragment") == 0)
            c->gemm_staged = env[0] == 's';
        else
            adg_warn("AMXDIAG_GPU_GEMM_STORE=%s ignored: use fragment or staged", env);
    }
    const char *names[2] = {"AMXDIAG_GPU_GEMM_TILE", "AMXDIAG_GPU_GEMM_STAGES"};
    int *dst[2] = {&c->gemm_tile, &c->gemm_stages};
    for (int i = 0; i < 2; i++) {
        env = getenv(names[i]);
        if (!env || !*env)
            continue;
        char *end;
        long n = strtol(env, &end, 10);
        bool ok;
        if (i == 0) {
            n = kern_cuda_gemm_tile_parse(env);
            ok = n >= 0;
        } else {
            ok = *end == 0 && (n == 0 || (n >= 2 && n <= 4));
        }
        if (ok)
            *dst[i] = (int)n;
        else
            adg_warn("%s=%s ignored: use %s", names[i], env,
                     i == 0 ? "a tile variant (v0..v7, f0..f8, w0..w3, 64 or 128; docs/cuda-kernels.md)" : "2, 3 or 4");
    }
    return NULL;
}

adg_error *kern_cuda_open(int ordinal, kern_cuda_load_mode mode, kern_cuda_ctx **out)
{
    *out = NULL;
    if (!kern_cuda_built_with_kernels())
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "this amxdiag was built without CUDA kernels"),
                              "rebuild with the CUDA toolkit (nvcc) installed, or -DAMXDIAG_CUDA=ON");
    kern_cuda_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    c->info.mode = mode;
    adg_error *e = kern_cuda_driver_get(&c->d);
    if (!e)
        e = open_device(c, ordinal);
    if (!e)
        e = load_module(c, mode);
    if (!e)
        e = kern_cuda_alloc(c, sizeof(kern_cuda_valrec), &c->valrec);
    if (!e && (c->d->cuMemsetD8(c->valrec, 0, sizeof(kern_cuda_valrec)) != KERN_CU_SUCCESS ||
               c->d->cuCtxSynchronize() != KERN_CU_SUCCESS))
        e = adg_error_new(ADG_E_CUDA, "clearing the validation record failed");
    if (!e)
        e = init_gemm_caps(c);
    if (!e)
        kern_cuda_wgmma_load(c);
    if (!e)
        kern_cuda_gemv_init(c);
    if (e) {
        kern_cuda_close(c);
        return e;
    }
    adg_debug("cuda: %s cc %d.%d, %s, image sm_%d, load %.1f ms", c->info.name, c->info.cc_major, c->info.cc_minor,
              c->info.used_ptx_jit ? "PTX JIT" : "SASS", c->info.image_arch, c->info.module_load_ms);
    *out = c;
    return NULL;
}

void kern_cuda_close(kern_cuda_ctx *c)
{
    if (!c)
        return;
    if (c->d) {
        /* After a sticky error these fail too; there is nothing more to report then. */
        if (c->cu)
            c->d->cuCtxSetCurrent(c->cu);
        if (c->capturing) {
            kern_cuda_graph *g = NULL;
            adg_error_free(kern_cuda_graph_end(c, false, &g));
        }
        for (size_t i = 0; i < c->n_allocs; i++)
            c->d->cuMemFree(c->allocs[i].p);
        if (c->stream)
            c->d->cuStreamDestroy(c->stream);
        if (c->mod)
            c->d->cuModuleUnload(c->mod);
        if (c->mod_wgmma)
            c->d->cuModuleUnload(c->mod_wgmma);
        if (c->ctx_retained)
            c->d->cuDevicePrimaryCtxRelease(c->dev);
    }
    free(c->allocs);
    free(c);
}

const kern_cuda_load_info *kern_cuda_info(const kern_cuda_ctx *c) { return &c->info; }
const kern_cuda_driver *kern_cuda_drv(const kern_cuda_ctx *c) { return c->d; }
void kern_cuda_set_validate(kern_cuda_ctx *c, bool on) { c->validate = on; }
void kern_cuda_set_sync_each(kern_cuda_ctx *c, bool on) { c->sync_each = on; }
void kern_cuda_set_gemv_rows(kern_cuda_ctx *c, int rows) { c->gemv_rows = rows < 1 ? 0 : rows > 4 ? 4 : rows; }
void kern_cuda_set_gemm_bk(kern_cuda_ctx *c, int bk) { c->gemm_bk = bk == 64 ? 64 : 32; }
void kern_cuda_set_gemm_ksplit(kern_cuda_ctx *c, int ksplit) { c->gemm_ksplit = ksplit == 1 || ksplit == 2 ? ksplit : 0; }
void kern_cuda_set_gemm_dq(kern_cuda_ctx *c, int dq, size_t cap_bytes)
{
    c->gemm_dq = dq == 0 || dq == 1 ? dq : -1;
    if (cap_bytes)
        c->gemm_dq_cap = cap_bytes;
}
void kern_cuda_set_gemm_staged(kern_cuda_ctx *c, bool staged) { c->gemm_staged = staged; }
void kern_cuda_set_gemm_kernel(kern_cuda_ctx *c, kern_cuda_gemm_kind kind, int tile, int stages)
{
    c->gemm_kind = kind;
    c->gemm_tile = kern_cuda_gemm_tile_code(tile);
    c->gemm_stages = stages >= 2 && stages <= 4 ? stages : 0;
}
kern_cu_deviceptr kern_cuda_valptr(const kern_cuda_ctx *c) { return c->validate ? c->valrec : 0; }

json_t *kern_cuda_info_json(const kern_cuda_load_info *in)
{
    char ver[16], cc[16];
    snprintf(cc, sizeof cc, "%d.%d", in->cc_major, in->cc_minor);
    return json_pack("{s:s, s:b, s:i, s:i, s:i, s:i, s:f, s:f, s:I, s:i, s:s, s:s, s:s, s:i, s:I, s:s, s:s}", "mode",
                     in->mode == KERN_CUDA_LOAD_FORCE_PTX ? "force-ptx" : "auto", "used_ptx_jit", in->used_ptx_jit,
                     "image_arch", in->image_arch, "sass_arch", in->sass_arch, "ptx_arch", in->ptx_arch, "ptx_version",
                     in->ptx_version, "module_load_ms", in->module_load_ms, "jit_ms", in->jit_ms, "image_bytes",
                     (json_int_t)in->image_bytes, "ordinal", in->ordinal, "name", in->name, "pci_bus_id",
                     in->pci_bus_id, "compute_capability", cc,
                     "sm_count", in->sm_count, "total_mem_bytes", (json_int_t)in->total_mem, "driver_version",
                     kern_cuda_version_str(in->driver_version, ver, sizeof ver), "built_archs",
                     kern_cuda_built_archs());
}

/* ---- Memory ------------------------------------------------------------------------ */

adg_error *kern_cuda_alloc(kern_cuda_ctx *c, size_t bytes, kern_cu_deviceptr *out)
{
    char b[32];
    *out = 0;
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    if (c->n_allocs == c->cap_allocs) {
        size_t cap = c->cap_allocs ? c->cap_allocs * 2 : 16;
        kern_cuda_alloc_rec *a = realloc(c->allocs, cap * sizeof *a);
        if (!a)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        c->allocs = a;
        c->cap_allocs = cap;
    }
    kern_cu_result r = c->d->cuMemAlloc(out, bytes ? bytes : 1);
    if (r != KERN_CU_SUCCESS) {
        size_t fr = 0, tot = 0;
        c->d->cuMemGetInfo(&fr, &tot);
        char f[32];
        return kern_cuda_errf(r, "allocating %s on %s (%s free)", adg_fmt_bytes((double)bytes, b, sizeof b),
                              c->info.name, adg_fmt_bytes((double)fr, f, sizeof f));
    }
    c->allocs[c->n_allocs++] = (kern_cuda_alloc_rec){*out, bytes};
    return NULL;
}

void kern_cuda_free(kern_cuda_ctx *c, kern_cu_deviceptr p)
{
    if (!p)
        return;
    adg_error_free(ensure_current(c));
    for (size_t i = 0; i < c->n_allocs; i++)
        if (c->allocs[i].p == p) {
            c->d->cuMemFree(p);
            c->allocs[i] = c->allocs[--c->n_allocs];
            return;
        }
}

static size_t alloc_size(const kern_cuda_ctx *c, kern_cu_deviceptr p)
{
    for (size_t i = 0; i < c->n_allocs; i++)
        if (p >= c->allocs[i].p && p < c->allocs[i].p + c->allocs[i].bytes)
            return (size_t)(c->allocs[i].p + c->allocs[i].bytes - p);
    return 0;
}

/* A synchronous copy or wait would invalidate a graph capture (and wait for nothing). */
static adg_error *not_while_capturing(const char *what)
{
    return adg_error_new(ADG_E_USAGE, "%s cannot be made while a CUDA graph is being captured", what);
}

adg_error *kern_cuda_upload(kern_cuda_ctx *c, kern_cu_deviceptr dst, const void *src, size_t bytes)
{
    if (c->capturing)
        return not_while_capturing("a copy to the device");
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    CU_TRY(c, c->d->cuMemcpyHtoD(dst, src, bytes), "copying %zu bytes to %s", bytes, c->info.name);
    return NULL;
}

adg_error *kern_cuda_download(kern_cuda_ctx *c, void *dst, kern_cu_deviceptr src, size_t bytes)
{
    if (c->capturing)
        return not_while_capturing("a copy from the device");
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    /* Explicit, so that the error names the copy's wait, not a later call. */
    CU_TRY(c, c->d->cuStreamSynchronize(c->stream), "waiting for %s before a copy back", c->info.name);
    CU_TRY(c, c->d->cuMemcpyDtoH(dst, src, bytes), "copying %zu bytes from %s", bytes, c->info.name);
    return NULL;
}

static const char *val_op_name(int op)
{
    switch (op) {
    case KERN_VAL_GET_ROWS: return "get_rows";
    case KERN_VAL_GEMV: return "gemv";
    case KERN_VAL_MOE_GEMV:
    case KERN_VAL_MOE_ROW: return "moe_gemv";
    case KERN_VAL_GEMM: return "gemm";
    default: return "kernel";
    }
}

adg_error *kern_cuda_sync(kern_cuda_ctx *c, const char *what)
{
    if (c->capturing)
        return not_while_capturing("a wait for the device");
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    CU_TRY(c, c->d->cuStreamSynchronize(c->stream), "%s", what);
    if (!c->validate)
        return NULL;
    kern_cuda_valrec v;
    CU_TRY(c, c->d->cuMemcpyDtoH(&v, c->valrec, sizeof v), "%s: reading the validation record", what);
    if (!v.flag)
        return NULL;
    CU_TRY(c, c->d->cuMemsetD8(c->valrec, 0, sizeof v), "%s: clearing the validation record", what);
    CU_TRY(c, c->d->cuCtxSynchronize(), "%s: clearing the validation record", what);
    const char *op = val_op_name(v.op);
    adg_error *e;
    if (v.op == KERN_VAL_GET_ROWS)
        e = adg_error_new(ADG_E_FORMAT,
                          "--gpu-validate: %s: row index %lld at position %lld is out of range (the table has %lld "
                          "rows); the access was skipped",
                          op, v.index, v.pos, v.limit);
    else if (v.op == KERN_VAL_MOE_ROW)
        e = adg_error_new(ADG_E_FORMAT, "--gpu-validate: %s: weight row %lld (output row %lld) is past the %lld rows of "
                          "the stacked expert weights; the access was skipped", op, v.index, v.pos, v.limit);
    else if (v.op == KERN_VAL_MOE_GEMV && v.limit > 0 && v.index >= 0 && v.index < v.limit)
        e = adg_error_new(ADG_E_FORMAT, "--gpu-validate: %s: weight row %lld (output row %lld) is past the %lld "
                          "rows of the weight buffer; the access was skipped", op, v.index, v.pos, v.limit);
    else if (v.op == KERN_VAL_MOE_GEMV)
        e = adg_error_new(ADG_E_FORMAT, "--gpu-validate: %s: expert id %lld for slot %lld is out of range (%lld "
                          "experts) or its rows are past the weight buffer; the access was skipped",
                          op, v.index, v.pos, v.limit);
    else
        e = adg_error_new(ADG_E_FORMAT,
                          "--gpu-validate: %s: weight row %lld (output row %lld) is past the %lld rows of the weight "
                          "buffer; the access was skipped",
                          op, v.index, v.pos, v.limit);
    return adg_error_hint(e, "without --gpu-validate this access reads outside the buffer and ends in CUDA error 700 "
                             "(illegal address); check where the index or the buffer size comes from");
}

adg_error *kern_cuda_op_done(kern_cuda_ctx *c, const char *op)
{
    return c->validate ? kern_cuda_sync(c, op) : NULL;
}

/* ---- Launches ---------------------------------------------------------------------- */

adg_error *kern_cuda_launch_fn(kern_cuda_ctx *c, const char *op, enum kern_cuda_fn fn, kern_cuda_geom g,
                               unsigned shmem, void **params, const kern_cu_deviceptr ptrs[4])
{
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    /* Captured launches are recorded, not run: they reach the ring when a replay runs them
     * (kern_cuda_graph_launch), never from here. */
    kern_cuda_launch rec, *l = c->capturing ? &rec : &c->ring[c->seq % KERN_CUDA_LAUNCH_RING];
    memset(l, 0, sizeof *l);
    if (!c->capturing)
        l->seq = ++c->seq;
    snprintf(l->kernel, sizeof l->kernel, "%s", kern_cuda_kernel_names[fn]);
    memcpy(l->grid, g.grid, sizeof l->grid);
    memcpy(l->block, g.block, sizeof l->block);
    l->shmem = shmem;
    for (int i = 0; ptrs && i < 4; i++) {
        l->ptr[i] = ptrs[i];
        l->ptr_bytes[i] = ptrs[i] ? alloc_size(c, ptrs[i]) : 0;
    }
    kern_cu_result r = c->d->cuLaunchKernel(c->fn[fn], g.grid[0], g.grid[1], g.grid[2], g.block[0], g.block[1],
                                            g.block[2], shmem, c->stream, params, NULL);
    if (r != KERN_CU_SUCCESS)
        return kern_cuda_errf(r, "%s: %s of %s (grid %u, block %u)", op, c->capturing ? "capture" : "launch",
                              kern_cuda_kernel_names[fn], g.grid[0], g.block[0]);
    if (c->capturing)
        return kern_cuda_graph_record(c->capturing, l);
    if (c->sync_each) {
        r = c->d->cuStreamSynchronize(c->stream);
        if (r != KERN_CU_SUCCESS)
            return kern_cuda_errf(r, "%s: kernel %s failed (synchronous mode: this kernel is the one that faulted)",
                                  op, kern_cuda_kernel_names[fn]);
    }
    return NULL;
}

size_t kern_cuda_launch_ring(const kern_cuda_ctx *c, kern_cuda_launch *out, size_t max)
{
    size_t n = c->seq < KERN_CUDA_LAUNCH_RING ? (size_t)c->seq : KERN_CUDA_LAUNCH_RING;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++)
        out[i] = c->ring[(c->seq - n + i) % KERN_CUDA_LAUNCH_RING];
    return n;
}

kern_cuda_geom kern_cuda_geom_rows(int64_t rows, unsigned rows_per_block, unsigned block_x, unsigned max_grid_x)
{
    kern_cuda_geom g = {{1, 1, 1}, {block_x ? block_x : 1, 1, 1}};
    if (rows_per_block == 0)
        rows_per_block = 1;
    if (max_grid_x == 0)
        max_grid_x = 65535;
    int64_t blocks = rows <= 0 ? 1 : (rows + rows_per_block - 1) / rows_per_block;
    g.grid[0] = blocks > (int64_t)max_grid_x ? max_grid_x : (unsigned)blocks;
    return g;
}

kern_cuda_geom kern_cuda_geom_1d(const kern_cuda_ctx *c, int64_t n)
{
    /* Enough blocks to fill the GPU several times; the kernels stride over the rest. */
    unsigned cap = (unsigned)(c->info.sm_count > 0 ? c->info.sm_count * 32 : 4096);
    return kern_cuda_geom_rows(n, 256, 256, cap < c->max_grid_x ? cap : c->max_grid_x);
}

/* ---- Faults ------------------------------------------------------------------------ */

static const char *const fault_names[] = {
    [KERN_CUDA_FAULT_NONE] = "none",
    [KERN_CUDA_FAULT_GET_ROWS_OOB] = "get_rows-oob",
    [KERN_CUDA_FAULT_MATVEC_OOB] = "matvec-oob",
    [KERN_CUDA_FAULT_ASYNC_BEFORE_GET_ROWS] = "async-before-get_rows",
};

bool kern_cuda_fault_parse(const char *name, kern_cuda_fault *out)
{
    for (size_t i = 1; i < ADG_ARRAY_LEN(fault_names); i++)
        if (name && strcmp(name, fault_names[i]) == 0) {
            *out = (kern_cuda_fault)i;
            return true;
        }
    return false;
}

const char *kern_cuda_fault_name(kern_cuda_fault f)
{
    return (size_t)f < ADG_ARRAY_LEN(fault_names) ? fault_names[f] : "unknown";
}

const char *kern_cuda_fault_names(void) { return "get_rows-oob, matvec-oob, async-before-get_rows"; }

void kern_cuda_inject(kern_cuda_ctx *c, kern_cuda_fault f) { c->armed = f; }

/* ---- Timing marks ------------------------------------------------------------------ */

struct kern_cuda_marks {
    int n;
    kern_cu_event ev[];
};

adg_error *kern_cuda_marks_new(kern_cuda_ctx *c, int n, kern_cuda_marks **out)
{
    *out = NULL;
    if (n <= 0)
        return adg_error_new(ADG_E_USAGE, "marks: need at least one");
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    kern_cuda_marks *m = calloc(1, sizeof *m + (size_t)n * sizeof m->ev[0]);
    if (!m)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    m->n = n;
    for (int i = 0; i < n; i++) {
        kern_cu_result r = c->d->cuEventCreate(&m->ev[i], KERN_CU_EVENT_DEFAULT);
        if (r != KERN_CU_SUCCESS) {
            kern_cuda_marks_free(c, m);
            return kern_cuda_errf(r, "creating %d CUDA events", n);
        }
    }
    *out = m;
    return NULL;
}

adg_error *kern_cuda_mark(kern_cuda_ctx *c, kern_cuda_marks *m, int i)
{
    if (!m || i < 0 || i >= m->n)
        return adg_error_new(ADG_E_USAGE, "mark %d out of range", i);
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    if (c->capturing) {
        /* Captured as an event-record node, so the replays record it too. */
        if (!c->d->cuEventRecordWithFlags)
            return adg_error_new(ADG_E_UNSUPPORTED, "the driver cannot record events inside a CUDA graph");
        CU_TRY(c, c->d->cuEventRecordWithFlags(m->ev[i], c->stream, KERN_CU_EVENT_RECORD_EXTERNAL),
               "capturing a CUDA event record");
        return NULL;
    }
    CU_TRY(c, c->d->cuEventRecord(m->ev[i], c->stream), "recording a CUDA event");
    return NULL;
}

adg_error *kern_cuda_marks_ms(kern_cuda_ctx *c, kern_cuda_marks *m, int i, int j, double *ms)
{
    *ms = 0;
    if (!m || i < 0 || j < 0 || i >= m->n || j >= m->n)
        return adg_error_new(ADG_E_USAGE, "marks %d, %d out of range", i, j);
    adg_error *ce = ensure_current(c);
    if (ce)
        return ce;
    float f = 0;
    CU_TRY(c, c->d->cuEventElapsedTime(&f, m->ev[i], m->ev[j]), "reading the time between two CUDA events");
    *ms = f;
    return NULL;
}

void kern_cuda_marks_free(kern_cuda_ctx *c, kern_cuda_marks *m)
{
    if (!m)
        return;
    adg_error_free(ensure_current(c));
    for (int i = 0; i < m->n; i++)
        if (m->ev[i])
            c->d->cuEventDestroy(m->ev[i]);
    free(m);
}

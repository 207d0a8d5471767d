/* The ops: argument checks, launch geometry, kernel parameters, fault planting. */
#include "kernels/cuda/kern_cuda_internal.h"
#include "kernels/cuda/kern_gemm_f16mma_map.h"
#include "kernels/cuda/kern_gemm_i8_map.h"
#include "kernels/cuda/kern_gemm_wgmma_map.h"

#include <math.h>
#include <stdlib.h>

#include "common/adg_log.h"

/* Far enough past any buffer to leave the mapped address range: a planted fault must
 * really fault, not land in a neighbouring allocation. */
#define FAULT_DISTANCE (64ull << 30)

static adg_error *bad_arg(const char *op, const char *what)
{
    return adg_error_new(ADG_E_USAGE, "%s: %s", op, what);
}

adg_error *kern_cuda_get_rows(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr src, int64_t nrows, int64_t ncols,
                              kern_cu_deviceptr ids, int64_t n_ids, kern_cu_deviceptr dst)
{
    const char *op = "get_rows";
    enum kern_cuda_fn fn;
    switch (type) {
    case KERN_TYPE_F32: fn = KF_GET_ROWS_F32; break;
    case KERN_TYPE_F16: fn = KF_GET_ROWS_F16; break;
    case KERN_TYPE_BF16: fn = KF_GET_ROWS_BF16; break;
    case KERN_TYPE_Q4_0: fn = KF_GET_ROWS_Q4_0; break;
    case KERN_TYPE_Q8_0: fn = KF_GET_ROWS_Q8_0; break;
    default: return bad_arg(op, "unsupported tensor type");
    }
    adg_error *e = kern_row_check(type, ncols);
    if (e)
        return adg_error_prefix(e, "%s", op);
    if (n_ids <= 0 || nrows <= 0)
        return bad_arg(op, "empty table or index list");

    if (c->armed == KERN_CUDA_FAULT_GET_ROWS_OOB) {
        /* A real bad index in the caller's index buffer, as a corrupt batch would carry. */
        c->armed = KERN_CUDA_FAULT_NONE;
        int64_t far = (int64_t)(FAULT_DISTANCE / kern_row_size(type, ncols));
        int32_t bad = (int32_t)(nrows + (far > 0x7fff0000 - nrows ? 0x7fff0000 - nrows : far));
        e = kern_cuda_upload(c, ids + (kern_cu_deviceptr)((n_ids / 2) * 4), &bad, sizeof bad);
        if (e)
            return e;
    } else if (c->armed == KERN_CUDA_FAULT_ASYNC_BEFORE_GET_ROWS) {
        /* An earlier op writes far past its output; its launch succeeds, the fault is
         * only seen by whatever checks next — this GET_ROWS. */
        c->armed = KERN_CUDA_FAULT_NONE;
        kern_cu_deviceptr a = dst, out = dst + FAULT_DISTANCE;
        long long n = 1024;
        void *p[] = {&a, &a, &out, &n};
        kern_cu_deviceptr ptrs[4] = {a, a, out, 0};
        e = kern_cuda_launch_fn(c, "add", KF_ADD, kern_cuda_geom_1d(c, n), 0, p, ptrs);
        if (e)
            return e;
    }

    /* Quantized rows: one thread per quarter block; float rows: one per 4 elements. */
    int64_t per_row = kern_type_is_quantized(type) ? ncols / 8 : (ncols + 3) / 4;
    unsigned bx = per_row >= 256 ? 256 : per_row > 64 ? 128 : 64;
    kern_cuda_geom g = kern_cuda_geom_rows(n_ids, 1, bx, c->max_grid_x);
    long long nr = nrows, nc = ncols, ni = n_ids;
    kern_cu_deviceptr v = kern_cuda_valptr(c);
    void *p[] = {&src, &nr, &nc, &ids, &ni, &dst, &v};
    kern_cu_deviceptr ptrs[4] = {src, ids, dst, 0};
    e = kern_cuda_launch_fn(c, op, fn, g, 0, p, ptrs);
    if (e)
        return e;
    return kern_cuda_op_done(c, op);
}

size_t kern_cuda_gemv_scratch(int64_t ncols)
{
    /* int8 qs[k], float d[k/32], int s[k/32], each 256-byte aligned */
    size_t nb = (size_t)(ncols / 32);
    size_t a = ((size_t)ncols + 255) & ~(size_t)255;
    size_t b = (nb * 4 + 255) & ~(size_t)255;
    return a + 2 * b;
}

/* Where the quantised activations of n_elems values live in scratch (kern_cuda_gemv_scratch):
 * int8 qs[n], float d[n/32], int s[n/32], each 256-byte aligned.  The kernels take them as
 * one struct (q8_out in kern_kernels.cu: three pointers). */
typedef struct q8_slots {
    kern_cu_deviceptr qs, d, s;
} q8_slots;

static q8_slots q8_at(kern_cu_deviceptr scratch, int64_t n_elems)
{
    size_t nb = (size_t)(n_elems / 32);
    size_t a = ((size_t)n_elems + 255) & ~(size_t)255;
    size_t b = (nb * 4 + 255) & ~(size_t)255;
    return (q8_slots){scratch, scratch + a, scratch + a + b};
}

static adg_error *quantize_x(kern_cuda_ctx *c, const char *op, kern_cu_deviceptr x, int64_t n_elems,
                             kern_cu_deviceptr scratch, kern_cu_deviceptr *qs, kern_cu_deviceptr *d,
                             kern_cu_deviceptr *s)
{
    q8_slots q = q8_at(scratch, n_elems);
    *qs = q.qs;
    *d = q.d;
    *s = q.s;
    long long n_blocks = (long long)(n_elems / 32);
    void *p[] = {&x, &n_blocks, qs, d, s};
    kern_cu_deviceptr ptrs[4] = {x, scratch, 0, 0};
    /* 8 warps per block, one per block of 32 activations */
    kern_cuda_geom g = kern_cuda_geom_rows(n_blocks, 8, 256, c->max_grid_x);
    return kern_cuda_launch_fn(c, op, KF_QUANTIZE_Q8, g, 0, p, ptrs);
}

/* The q4_0 or the q8_0 variant of a quantised-weight kernel, after the row-length check. */
static adg_error *quant_kernel(const char *op, kern_type type, int64_t ncols, enum kern_cuda_fn q4, enum kern_cuda_fn q8,
                               enum kern_cuda_fn *fn)
{
    if (type != KERN_TYPE_Q4_0 && type != KERN_TYPE_Q8_0)
        return bad_arg(op, "weights must be q4_0 or q8_0");
    *fn = type == KERN_TYPE_Q4_0 ? q4 : q8;
    adg_error *e = kern_row_check(type, ncols);
    return e ? adg_error_prefix(e, "%s", op) : NULL;
}

static adg_error *want_smem(kern_cuda_ctx *c, const char *op, enum kern_cuda_fn fn, int bytes);

/* pre: x was quantised into scratch by the op that produced it (the _q8 ops). */
static adg_error *gemv_common(kern_cuda_ctx *c, const char *op, kern_type type, kern_cu_deviceptr w, int n_expert,
                              int64_t nrows, int64_t ncols, kern_cu_deviceptr ids, int n_jobs, kern_cu_deviceptr x,
                              int n_x, kern_cu_deviceptr y, kern_cu_deviceptr scratch, bool pre)
{
    enum kern_cuda_fn fn;
    adg_error *e = quant_kernel(op, type, ncols, KF_GEMV_Q4_0, KF_GEMV_Q8_0, &fn);
    if (e)
        return e;
    if (nrows <= 0 || n_jobs <= 0 || n_x <= 0)
        return bad_arg(op, "empty matrix");
    kern_cu_deviceptr qs, d, s;
    if (pre && !scratch)
        return bad_arg(op, "the _q8 GEMVs read their input from the scratch its producer wrote: none given");
    if (pre) {
        q8_slots q = q8_at(scratch, ncols * n_x);
        qs = q.qs, d = q.d, s = q.s;
    } else if ((e = quantize_x(c, op, x, ncols * n_x, scratch, &qs, &d, &s))) {
        return e;
    }
    long long row_fault = 0;
    if (c->armed == KERN_CUDA_FAULT_MATVEC_OOB) {
        c->armed = KERN_CUDA_FAULT_NONE;
        row_fault = (long long)(((unsigned long long)n_expert * (unsigned long long)nrows) +
                                FAULT_DISTANCE / kern_row_size(type, ncols));
    }
    long long nr = nrows, nc = ncols, x_stride = n_x > 1 ? ncols / 32 : 0;
    long long w_rows = (long long)n_expert * nrows;
    int ne = n_expert, nj = n_jobs;
    kern_cu_deviceptr v = kern_cuda_valptr(c);
    kern_cu_deviceptr ptrs[4] = {w, x, y, ids};
    kern_cuda_gemv_cfg cfg = kern_cuda_gemv_resolve(&c->gemv, &c->gemv_dev, type);
    kern_cuda_gemv_plan pl = kern_cuda_gemv_plan_for(&cfg, &c->gemv_dev, c->gemv_rows, type, nrows, ncols, n_jobs,
                                                     (w & 15) == 0, c->max_grid_x);
    kern_cuda_geom g = {{pl.grid, 1, 1}, {pl.block, 1, 1}};
    if (pl.sb) {
        enum kern_cuda_fn f = (enum kern_cuda_fn)(KF_GEMV_SB_FIRST + pl.fn_index);
        if ((e = want_smem(c, op, f, (int)pl.smem)))
            return e;
        void *p[] = {&w, &nr, &nc, &ids, &ne, &nj, &qs, &d, &s, &x_stride, &y, &row_fault, &w_rows, &v};
        e = kern_cuda_launch_fn(c, op, f, g, pl.smem, p, ptrs);
    } else if (pl.rows > 1) {
        int rows = pl.rows;
        void *p[] = {&w, &nr, &nc, &ids, &ne, &nj, &qs, &d, &s, &x_stride, &y, &row_fault, &w_rows, &v, &rows};
        e = kern_cuda_launch_fn(c, op, fn == KF_GEMV_Q4_0 ? KF_GEMV_Q4_0_MR : KF_GEMV_Q8_0_MR, g, 0, p, ptrs);
    } else {
        void *p[] = {&w, &nr, &nc, &ids, &ne, &nj, &qs, &d, &s, &x_stride, &y, &row_fault, &w_rows, &v};
        e = kern_cuda_launch_fn(c, op, fn, g, 0, p, ptrs);
    }
    if (e)
        return e;
    return kern_cuda_op_done(c, op);
}

adg_error *kern_cuda_gemv(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int64_t nrows, int64_t ncols,
                          kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    return gemv_common(c, "gemv", type, w, 1, nrows, ncols, 0, 1, x, 1, y, scratch, false);
}

adg_error *kern_cuda_gemv_q8(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int64_t nrows, int64_t ncols,
                             kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    return gemv_common(c, "gemv", type, w, 1, nrows, ncols, 0, 1, x, 1, y, scratch, true);
}

static adg_error *moe_gemv(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                           int64_t ncols, kern_cu_deviceptr ids, int n_used, kern_cu_deviceptr x, int n_x,
                           kern_cu_deviceptr y, kern_cu_deviceptr scratch, bool pre)
{
    if (n_x != 1 && n_x != n_used)
        return bad_arg("moe_gemv", "the input must have 1 row (shared) or one row per used expert");
    if (n_expert <= 0 || !ids)
        return bad_arg("moe_gemv", "no experts or no expert ids");
    return gemv_common(c, "moe_gemv", type, w, n_expert, nrows, ncols, ids, n_used, x, n_x, y, scratch, pre);
}

adg_error *kern_cuda_moe_gemv(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                              int64_t ncols, kern_cu_deviceptr ids, int n_used, kern_cu_deviceptr x, int n_x,
                              kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    return moe_gemv(c, type, w, n_expert, nrows, ncols, ids, n_used, x, n_x, y, scratch, false);
}

adg_error *kern_cuda_moe_gemv_q8(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                                 int64_t ncols, kern_cu_deviceptr ids, int n_used, kern_cu_deviceptr x, int n_x,
                                 kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    return moe_gemv(c, type, w, n_expert, nrows, ncols, ids, n_used, x, n_x, y, scratch, true);
}

/* The q8 slots a producer writes for n values, or none (scratch 0); the GEMV's rule
 * (whole blocks of 32) is checked here, where the producer is called. */
static adg_error *q8_for(const char *op, kern_cu_deviceptr scratch, int64_t n, q8_slots *q)
{
    *q = (q8_slots){0, 0, 0};
    if (!scratch)
        return NULL;
    if (n % 32)
        return bad_arg(op, "quantising the output for a GEMV needs a multiple of 32 values");
    *q = q8_at(scratch, n);
    return NULL;
}

/* X in f16 (the WMMA kernel) or quantised (int8, steps, sums: the int8 kernel). */
size_t kern_cuda_gemm_scratch(int64_t n, int64_t k)
{
    size_t f16 = (size_t)(n * k) * 2 + 256, q8 = kern_cuda_gemv_scratch(n * k);
    return f16 > q8 ? f16 : q8;
}

/* Opens a kernel up to `bytes` of dynamic shared memory (above 48 KiB it must ask). */
static adg_error *want_smem(kern_cuda_ctx *c, const char *op, enum kern_cuda_fn fn, int bytes)
{
    if (bytes <= 48 * 1024 || c->fn_smem[fn] >= bytes)
        return NULL;
    if (!c->d->cuFuncSetAttribute)
        return adg_error_new(ADG_E_UNSUPPORTED, "%s: the driver lacks cuFuncSetAttribute", op);
    kern_cu_result r = c->d->cuFuncSetAttribute(c->fn[fn], KERN_CU_FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    if (r != KERN_CU_SUCCESS)
        return kern_cuda_errf(r, "%s: allowing %s %d bytes of shared memory", op, kern_cuda_kernel_names[fn], bytes);
    c->fn_smem[fn] = bytes;
    return NULL;
}

/* Launches int8 kernel fn (a dense GEMM: n_expert 0, or a grouped expert matmul) over
 * `items` CTAs, with the plan's stages, shared memory and threads. */
static adg_error *launch_i8(kern_cuda_ctx *c, const char *op, const kern_cuda_gemm_plan *pl, enum kern_cuda_fn fn,
                            int64_t items, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr qs,
                            kern_cu_deviceptr d, int64_t n, kern_cu_deviceptr y, int n_expert, kern_cu_deviceptr off,
                            kern_cu_deviceptr list, int x_div)
{
    adg_error *e = want_smem(c, op, fn, pl->smem);
    if (e)
        return e;
    long long mm = m, kk = k, nn = n;
    int stages = pl->stages, aligned = pl->aligned ? 1 : 0, ne = n_expert;
    kern_cu_deviceptr ptrs[4] = {w, qs, y, list};
    kern_cuda_geom g = kern_cuda_geom_rows(items, 1, (unsigned)pl->threads, c->max_grid_x);
    if (n_expert > 0) {
        void *p[] = {&w, &mm, &kk, &qs, &d, &nn, &y, &stages, &aligned, &ne, &off, &list, &x_div};
        return kern_cuda_launch_fn(c, op, fn, g, (unsigned)pl->smem, p, ptrs);
    }
    void *p[] = {&w, &mm, &kk, &qs, &d, &nn, &y, &stages, &aligned};
    return kern_cuda_launch_fn(c, op, fn, g, (unsigned)pl->smem, p, ptrs);
}

/* The int8 tensor-core GEMM (dense: n_expert 0) or grouped expert matmul (one CTA per
 * expert and row tile) on X already quantised (qs, d). */
static adg_error *launch_gemm_i8(kern_cuda_ctx *c, const char *op, const kern_cuda_gemm_plan *pl, kern_type type,
                                 kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr qs, kern_cu_deviceptr d,
                                 int64_t n, kern_cu_deviceptr y, int n_expert, kern_cu_deviceptr off,
                                 kern_cu_deviceptr list, int x_div)
{
    const bool q4 = type == KERN_TYPE_Q4_0;
    enum kern_cuda_fn fn;
    int64_t tiles = (m + pl->tile - 1) / pl->tile;
    if (n_expert > 0) {
        fn = q4 ? KF_MOE_GEMM_I8_Q4_0 : KF_MOE_GEMM_I8_Q8_0;
        tiles *= n_expert;
    } else {
        fn = (enum kern_cuda_fn)(KF_GEMM_I8_FIRST + 2 * pl->variant + (q4 ? 0 : 1));
        tiles *= (n + pl->bn - 1) / pl->bn;
    }
    return launch_i8(c, op, pl, fn, tiles, w, m, k, qs, d, n, y, n_expert, off, list, x_div);
}

/* The f16-MMA GEMM on X already in f16 (xh, kern_f32_to_f16_q8's). */
/* ldy: y's row length (m, or the whole matrix's where w is a slab of its rows); zero_y: a
 * split-K plan zeroes y (n x m, contiguous) first, else y was zeroed by the caller. */
static adg_error *launch_gemm_f16mma(kern_cuda_ctx *c, const char *op, const kern_cuda_gemm_plan *pl, kern_type type,
                                     kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr xh, int64_t n,
                                     kern_cu_deviceptr y, int64_t ldy, bool zero_y)
{
    /* the wgmma kernel (sm_90a module) takes the same arguments; q4_0 / q8_0 at FIRST + 2v
     * (+ 1), f16 weights at FIRST + 2 NVAR + v */
    const int first = pl->wgmma ? KF_GEMM_WGMMA_FIRST : KF_GEMM_F16MMA_FIRST;
    const int nvar = pl->wgmma ? GW_NVAR : GF_NVAR;
    enum kern_cuda_fn fn =
        (enum kern_cuda_fn)(type == KERN_TYPE_F16 ? first + 2 * nvar + pl->variant
                                                  : first + 2 * pl->variant + (type == KERN_TYPE_Q4_0 ? 0 : 1));
    if (pl->wgmma && pl->xv > 0) /* an experimental variant (kern_cuda_gemm_wgmma_xv) */
        fn = (enum kern_cuda_fn)(KF_GEMM_WGMMA_FIRST + 3 * GW_NVAR +
                                 gw_xk_index(pl->variant, type == KERN_TYPE_Q4_0 ? 4 : 8, pl->xv));
    const int64_t tiles = ((m + pl->tile - 1) / pl->tile) * ((n + pl->bn - 1) / pl->bn);
    adg_error *e = want_smem(c, op, fn, pl->smem);
    if (e)
        return e;
    long long mm = m, kk = k, nn = n, ld = ldy;
    int slots = pl->stages, ksplit = pl->ksplit > 1 ? pl->ksplit : 1;
    int flags = (pl->aligned ? GF_FLAG_ALIGNED : 0) | (c->gemm_staged && !pl->wgmma ? GF_FLAG_STAGED : 0) |
                (pl->wgmma && pl->deep ? GW_FLAG_DEEP : 0);
    if (ksplit > 1 && zero_y) { /* split-K: the slices add into y */
        long long count = n * m;
        void *pz[] = {&y, &count};
        kern_cu_deviceptr zptrs[4] = {y, 0, 0, 0};
        e = kern_cuda_launch_fn(c, op, KF_ZERO_F32, kern_cuda_geom_rows(count, 1024, 256, c->max_grid_x), 0, pz,
                                zptrs);
        if (e)
            return e;
    }
    kern_cu_deviceptr ptrs[4] = {w, xh, y, 0};
    /* a persistent wgmma grid (pl->grid CTAs, each running its tiles as one stream) */
    const unsigned cap = pl->grid > 0 && (unsigned)pl->grid < c->max_grid_x ? (unsigned)pl->grid : c->max_grid_x;
    kern_cuda_geom g = kern_cuda_geom_rows(tiles * ksplit, 1, (unsigned)pl->threads, cap);
    void *p[] = {&w, &mm, &kk, &xh, &nn, &y, &slots, &flags, &ksplit, &ld};
    return kern_cuda_launch_fn(c, op, fn, g, (unsigned)pl->smem, p, ptrs);
}

/* The two-pass path's workspace: at least `bytes`, grown on first need.  A buffer it
 * outgrows stays allocated until the context closes: a CUDA graph captured with it may
 * still replay into it.  False where it cannot be had now: during a graph capture (the
 * capturing stream cannot take an allocation) or out of memory, which is warned about
 * once and bounds later slabs to the buffer there is (the fused kernels where none). */
static bool dq_workspace(kern_cuda_ctx *c, size_t bytes)
{
    if (c->dq_ws_bytes >= bytes)
        return true;
    if (c->capturing)
        return false;
    kern_cu_deviceptr p = 0;
    adg_error *e = kern_cuda_alloc(c, bytes, &p);
    if (e) {
        if (!c->dq_warned)
            adg_warn("gemm: no room for the two-pass GEMM's %.1f MiB of f16 weights (%s); it keeps to %.1f MiB "
                     "(the fused kernels where that is too small). AMXDIAG_GPU_GEMM_DQ_MIB sets the size, "
                     "AMXDIAG_GPU_GEMM_DQ=0 turns the two passes off",
                     (double)bytes / (1 << 20), adg_error_msg(e), (double)c->dq_ws_bytes / (1 << 20));
        c->dq_warned = true;
        adg_error_free(e);
        c->gemm_dq_cap = c->dq_ws_bytes;
        return false;
    }
    c->dq_ws = p;
    c->dq_ws_bytes = bytes;
    return true;
}

/* The plan of a two-pass GEMM's last, shorter slab (the plan itself where the slabs are
 * even). */
static kern_cuda_gemm_plan dq_tail_plan(const kern_cuda_ctx *c, const kern_cuda_gemm_plan *pl, int64_t m, int64_t k,
                                        int64_t n)
{
    const int64_t last = m % pl->dq_rows;
    return last ? kern_cuda_gemm_plan_for(c, KERN_TYPE_F16, last, k, n, c->dq_ws, false) : *pl;
}

/* Whether two-pass plan pl can run now: its workspace is there (dq_workspace) and its last
 * slab has an f16 tensor-core kernel (*tail, that slab's plan). */
static bool dq_ready(kern_cuda_ctx *c, const kern_cuda_gemm_plan *pl, int64_t m, int64_t k, int64_t n,
                     kern_cuda_gemm_plan *tail)
{
    if (!dq_workspace(c, (size_t)pl->dq_rows * (size_t)k * 2))
        return false;
    *tail = dq_tail_plan(c, pl, m, k, n);
    return tail->f16mma;
}

/* The plan with the two passes off (the fused kernels), for one call. */
static kern_cuda_gemm_plan fused_plan(kern_cuda_ctx *c, kern_type type, int64_t m, int64_t k, int64_t n,
                                      kern_cu_deviceptr w)
{
    const int want = c->gemm_dq;
    c->gemm_dq = 0;
    kern_cuda_gemm_plan pl = kern_cuda_gemm_plan_for(c, type, m, k, n, w, false);
    c->gemm_dq = want;
    return pl;
}

/* The two-pass prompt GEMM (plan.dequant): for each slab of pl->dq_rows weight rows, the
 * rows to f16 in the workspace, then the f16-weight kernel on them into the slab's rows of
 * y (ldy m).  The first launch (kern_gemm_prologue_*) also rounds X into xh (q8_0, then
 * f16, as the fused kernels take it) and zeroes y where a slab adds into it (split-K); the
 * later slabs' first pass is kern_dequant_*_f16.  The last, shorter slab takes `tail`, the
 * plan of its own shape (dq_ready's). */
static adg_error *gemm_dequant(kern_cuda_ctx *c, const char *op, const kern_cuda_gemm_plan *pl,
                               const kern_cuda_gemm_plan *tail, kern_type type, kern_cu_deviceptr w, int64_t m,
                               int64_t k, kern_cu_deviceptr x, kern_cu_deviceptr xh, int64_t n, kern_cu_deviceptr y)
{
    const bool q4 = type == KERN_TYPE_Q4_0;
    const int64_t row_bytes = k / 32 * (q4 ? 18 : 34), rows = pl->dq_rows;
    adg_error *e = NULL;
    for (int64_t r0 = 0; !e && r0 < m; r0 += rows) {
        const int64_t nr = m - r0 < rows ? m - r0 : rows;
        kern_cu_deviceptr src = w + (kern_cu_deviceptr)(r0 * row_bytes), ws = c->dq_ws;
        long long nb = nr * (k / 32);
        /* a CTA of 256 threads per 256 blocks: 1024 quarters, 4 per thread */
        long long w_ctas = (nb + 255) / 256;
        if (r0 == 0) {
            long long x_blocks = n * k / 32, x_ctas = (x_blocks + 7) / 8; /* a warp per block */
            long long y_count = pl->ksplit > 1 || tail->ksplit > 1 ? n * m : 0, y_ctas = (y_count + 4095) / 4096;
            const long long cap = (long long)c->max_grid_x / 3; /* each part strides over its work */
            w_ctas = w_ctas < cap ? w_ctas : cap;
            x_ctas = x_ctas < cap ? x_ctas : cap;
            y_ctas = y_ctas < cap ? y_ctas : cap;
            kern_cuda_geom g = {{(unsigned)(w_ctas + x_ctas + y_ctas), 1, 1}, {256, 1, 1}};
            void *p0[] = {&src, &nb, &ws, &w_ctas, &x, &x_blocks, &xh, &x_ctas, &y, &y_count};
            kern_cu_deviceptr ptrs0[4] = {src, ws, x, y};
            e = kern_cuda_launch_fn(c, op, q4 ? KF_GEMM_PROLOGUE_Q4_0 : KF_GEMM_PROLOGUE_Q8_0, g, 0, p0, ptrs0);
        } else {
            void *p1[] = {&src, &nb, &ws};
            kern_cu_deviceptr ptrs1[4] = {src, ws, 0, 0};
            e = kern_cuda_launch_fn(c, op, q4 ? KF_DEQUANT_Q4_0_F16 : KF_DEQUANT_Q8_0_F16,
                                    kern_cuda_geom_rows(nb, 256, 256, c->max_grid_x), 0, p1, ptrs1);
        }
        if (!e)
            e = launch_gemm_f16mma(c, op, nr == rows ? pl : tail, KERN_TYPE_F16, ws, nr, k, xh, n,
                                   y + (kern_cu_deviceptr)(r0 * 4), m, false);
    }
    return e;
}

/* f32 weights (the MoE router): f32 sums on the SIMT cores, no scratch (kern_gemm_f32.cuh). */
/* With a scratch (kern_cuda_gemm_scratch(n, k) bytes) the tiled kernel splits k so that
 * the GPU has ~4 work items per SM: the router of a prompt is 64 tiles of 32 dependent k
 * stages (100 us on the H200 for 128 x 512 x 2048); the splits' partial sums go to the
 * scratch and kern_gemm_f32_sum adds them in order.  Splits average >= 4 stages (the last
 * may be shorter, or empty: it then adds zeros), and the partials (splits * n * m floats)
 * fit the scratch whenever splits <= k / (2 m). */
static adg_error *gemm_f32(kern_cuda_ctx *c, const char *op, kern_cu_deviceptr w, int64_t m, int64_t k,
                           kern_cu_deviceptr x, int64_t n, kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    long long mm = m, kk = k, nn = n;
    kern_cu_deviceptr ptrs[4] = {w, x, y, 0};
    adg_error *e;
    if (n <= KERN_CUDA_GEMM_F32_FEW) {
        void *p[] = {&w, &mm, &kk, &x, &nn, &y};
        e = kern_cuda_launch_fn(c, op, KF_GEMM_F32_FEW, kern_cuda_geom_rows(m * n, 8, 256, c->max_grid_x), 0, p, ptrs);
        return e ? e : kern_cuda_op_done(c, op);
    }
    int64_t tiles = ((m + 31) / 32) * ((n + 31) / 32), want = 4 * (c->info.sm_count > 0 ? c->info.sm_count : 1);
    int64_t stages = (k + 63) / 64, splits = scratch ? (want + tiles - 1) / tiles : 1;
    if (splits > stages / 4)
        splits = stages / 4;
    if (splits > k / (2 * m))
        splits = k / (2 * m);
    if (splits < 2)
        splits = 1;
    long long ks = ((stages + splits - 1) / splits) * 64;
    int sp = (int)splits;
    kern_cu_deviceptr out = splits > 1 ? scratch : y;
    void *p[] = {&w, &mm, &kk, &x, &nn, &out, &sp, &ks};
    e = kern_cuda_launch_fn(c, op, KF_GEMM_F32, kern_cuda_geom_rows(tiles * splits, 1, 256, c->max_grid_x), 0, p,
                            ptrs);
    if (!e && splits > 1) {
        long long count = nn * mm;
        void *ps[] = {&scratch, &sp, &count, &y};
        kern_cu_deviceptr sptrs[4] = {scratch, y, 0, 0};
        e = kern_cuda_launch_fn(c, op, KF_GEMM_F32_SUM, kern_cuda_geom_1d(c, count), 0, ps, sptrs);
    }
    return e ? e : kern_cuda_op_done(c, op);
}

adg_error *kern_cuda_gemm(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int64_t m, int64_t k,
                          kern_cu_deviceptr x, int64_t n, kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    const char *op = "gemm";
    enum kern_cuda_fn fn;
    switch (type) {
    case KERN_TYPE_Q4_0: fn = KF_GEMM_Q4_0; break;
    case KERN_TYPE_Q8_0: fn = KF_GEMM_Q8_0; break;
    case KERN_TYPE_F16: fn = KF_GEMM_F16; break;
    case KERN_TYPE_F32: fn = KF_GEMM_F32; break;
    default: return bad_arg(op, "weights must be q4_0, q8_0, f16 or f32");
    }
    if (m <= 0 || n <= 0 || k <= 0 || k % 32)
        return bad_arg(op, "m, n and k must be positive and k a multiple of 32");
    if (fn == KF_GEMM_F32)
        return gemm_f32(c, op, w, m, k, x, n, y, scratch);
    kern_cuda_gemm_plan pl = kern_cuda_gemm_plan_for(c, type, m, k, n, w, false);
    /* the two passes where their workspace can be had (after a failed growth: within the
     * one there is), else the fused kernels for this call */
    kern_cuda_gemm_plan tail = {.mma = false}; /* set by dq_ready */
    if (pl.dequant && !dq_ready(c, &pl, m, k, n, &tail))
        pl = kern_cuda_gemm_plan_for(c, type, m, k, n, w, false);
    if (pl.dequant && !dq_ready(c, &pl, m, k, n, &tail))
        pl = fused_plan(c, type, m, k, n, w);
    if (pl.mma) {
        kern_cu_deviceptr qs, d, s;
        adg_error *e = quantize_x(c, op, x, n * k, scratch, &qs, &d, &s);
        if (!e)
            e = launch_gemm_i8(c, op, &pl, type, w, m, k, qs, d, n, y, 0, 0, 0, 1);
        return e ? e : kern_cuda_op_done(c, op);
    }
    long long ne = n * k;
    kern_cu_deviceptr ptrs1[4] = {x, scratch, 0, 0};
    adg_error *e;
    if (pl.f16mma && type == KERN_TYPE_F16) {
        /* f16 weights: the activations rounded to f16, as the WMMA kernel takes them */
        void *p1[] = {&x, &scratch, &ne};
        e = kern_cuda_launch_fn(c, op, KF_F32_TO_F16, kern_cuda_geom_1d(c, ne), 0, p1, ptrs1);
        if (!e)
            e = launch_gemm_f16mma(c, op, &pl, type, w, m, k, scratch, n, y, m, true);
        return e ? e : kern_cuda_op_done(c, op);
    }
    if (pl.dequant) {
        e = gemm_dequant(c, op, &pl, &tail, type, w, m, k, x, scratch, n, y);
        return e ? e : kern_cuda_op_done(c, op);
    }
    if (pl.f16mma) {
        /* the activations as the WMMA kernel takes them (q8_0-rounded, then f16) */
        long long nb = ne / 32;
        void *p1[] = {&x, &scratch, &nb};
        e = kern_cuda_launch_fn(c, op, KF_F32_TO_F16_Q8, kern_cuda_geom_rows(nb, 8, 256, c->max_grid_x), 0, p1,
                                ptrs1);
        if (!e)
            e = launch_gemm_f16mma(c, op, &pl, type, w, m, k, scratch, n, y, m, true);
        return e ? e : kern_cuda_op_done(c, op);
    }
    if (type == KERN_TYPE_F16) {
        void *p1[] = {&x, &scratch, &ne};
        e = kern_cuda_launch_fn(c, op, KF_F32_TO_F16, kern_cuda_geom_1d(c, ne), 0, p1, ptrs1);
    } else {
        /* Quantized weights meet q8_0 activations, as on the CPU and in the GEMV. */
        long long nb = ne / 32;
        void *p1[] = {&x, &scratch, &nb};
        e = kern_cuda_launch_fn(c, op, KF_F32_TO_F16_Q8, kern_cuda_geom_rows(nb, 8, 256, c->max_grid_x), 0, p1,
                                ptrs1);
    }
    if (e)
        return e;
    long long mm = m, kk = k, nn = n;
    int64_t tiles = ((m + 127) / 128) * ((n + 63) / 64);
    kern_cuda_geom g = kern_cuda_geom_rows(tiles, 1, 256, c->max_grid_x);
    void *p[] = {&w, &mm, &kk, &scratch, &nn, &y};
    kern_cu_deviceptr ptrs[4] = {w, scratch, y, 0};
    if (c->gemm_bk == 64)
        fn = fn == KF_GEMM_Q4_0 ? KF_GEMM_Q4_0_BK64 : fn == KF_GEMM_Q8_0 ? KF_GEMM_Q8_0_BK64 : KF_GEMM_F16_BK64;
    e = kern_cuda_launch_fn(c, op, fn, g, 0, p, ptrs);
    if (e)
        return e;
    return kern_cuda_op_done(c, op);
}

adg_error *kern_cuda_moe_route(kern_cuda_ctx *c, kern_cu_deviceptr logits, int64_t n, int n_expert, int k, bool norm,
                               kern_cu_deviceptr ids, kern_cu_deviceptr weights)
{
    return kern_cuda_moe_route_gu(c, logits, n, n_expert, k, norm, ids, weights, 0);
}

adg_error *kern_cuda_moe_route_gu(kern_cuda_ctx *c, kern_cu_deviceptr logits, int64_t n, int n_expert, int k,
                                  bool norm, kern_cu_deviceptr ids, kern_cu_deviceptr weights,
                                  kern_cu_deviceptr ids_gu)
{
    if (n <= 0 || n_expert <= 0 || n_expert > 3072 || k <= 0 || k > 32 || k > n_expert)
        return bad_arg("moe_route", "need 1 <= k <= min(32, n_expert) and n_expert <= 3072");
    long long nn = n;
    int ne = n_expert, kk = k, nm = norm ? 1 : 0;
    void *p[] = {&logits, &nn, &ne, &kk, &nm, &ids, &weights, &ids_gu};
    kern_cu_deviceptr ptrs[4] = {logits, ids, weights, 0};
    kern_cuda_geom g = kern_cuda_geom_rows(n, 4, 128, c->max_grid_x);
    return kern_cuda_launch_fn(c, "moe_route", KF_MOE_ROUTE, g, (unsigned)(4 * n_expert * sizeof(float)), p, ptrs);
}

adg_error *kern_cuda_router_topk(kern_cuda_ctx *c, kern_cu_deviceptr w, kern_cu_deviceptr x, int64_t d, int n_expert,
                                 int k, bool norm, kern_cu_deviceptr logits, kern_cu_deviceptr ids,
                                 kern_cu_deviceptr weights, kern_cu_deviceptr ids_gu, kern_cu_deviceptr counter)
{
    if (d <= 0 || n_expert <= 0 || n_expert > 3072 || k <= 0 || k > 32 || k > n_expert || !counter)
        return bad_arg("router_topk", "need 1 <= k <= min(32, n_expert), n_expert <= 3072 and a counter");
    long long kk = d;
    int ne = n_expert, tk = k, nm = norm ? 1 : 0;
    void *p[] = {&w, &x, &kk, &ne, &tk, &nm, &logits, &ids, &weights, &ids_gu, &counter};
    kern_cu_deviceptr ptrs[4] = {w, x, logits, ids};
    /* 2 warps a block, one logit a warp (RT_WARPS in kern_kernels.cu). */
    kern_cuda_geom g = {{(unsigned)((n_expert + 1) / 2), 1, 1}, {64, 1, 1}};
    return kern_cuda_launch_fn(c, "router_topk", KF_ROUTER_TOPK, g, (unsigned)(2 * n_expert * sizeof(float)), p, ptrs);
}

adg_error *kern_cuda_rmsnorm(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr w, kern_cu_deviceptr y,
                             int64_t n, int64_t d, float eps)
{
    return kern_cuda_rmsnorm_q8(c, x, w, y, n, d, eps, 0);
}

/* kern_rmsnorm and kern_add_rmsnorm (o != 0): a block of 256 threads per row (their sums
 * depend on it), the row's output optionally quantised for a GEMV (whole blocks of 32 per
 * row). */
static adg_error *norm_rows(kern_cuda_ctx *c, const char *op, kern_cu_deviceptr x, kern_cu_deviceptr o,
                            kern_cu_deviceptr w, kern_cu_deviceptr y, int64_t n, int64_t d, float eps,
                            kern_cu_deviceptr q8_scratch)
{
    if (n <= 0 || d <= 0)
        return bad_arg(op, "empty tensor");
    q8_slots q8;
    adg_error *e = q8_for(op, q8_scratch, d % 32 ? 1 : n * d, &q8); /* a row of whole blocks (1: refused) */
    if (e)
        return e;
    long long nn = n, dd = d;
    kern_cuda_geom g = kern_cuda_geom_rows(n, 1, 256, c->max_grid_x);
    if (!o) {
        void *p[] = {&x, &w, &y, &nn, &dd, &eps, &q8};
        kern_cu_deviceptr ptrs[4] = {x, w, y, 0};
        return kern_cuda_launch_fn(c, op, KF_RMSNORM, g, 0, p, ptrs);
    }
    void *p[] = {&x, &o, &w, &y, &nn, &dd, &eps, &q8};
    kern_cu_deviceptr ptrs[4] = {x, o, w, y};
    return kern_cuda_launch_fn(c, op, KF_ADD_RMSNORM, g, 0, p, ptrs);
}

adg_error *kern_cuda_rmsnorm_q8(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr w, kern_cu_deviceptr y,
                                int64_t n, int64_t d, float eps, kern_cu_deviceptr q8_scratch)
{
    return norm_rows(c, "rmsnorm", x, 0, w, y, n, d, eps, q8_scratch);
}

adg_error *kern_cuda_add_rmsnorm(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr o, kern_cu_deviceptr w,
                                 kern_cu_deviceptr y, int64_t n, int64_t d, float eps)
{
    return kern_cuda_add_rmsnorm_q8(c, x, o, w, y, n, d, eps, 0);
}

adg_error *kern_cuda_add_rmsnorm_q8(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr o, kern_cu_deviceptr w,
                                    kern_cu_deviceptr y, int64_t n, int64_t d, float eps, kern_cu_deviceptr q8_scratch)
{
    if (!o)
        return bad_arg("add_rmsnorm", "no residual to add");
    return norm_rows(c, "add_rmsnorm", x, o, w, y, n, d, eps, q8_scratch);
}

adg_error *kern_cuda_qkv_post(kern_cuda_ctx *c, kern_cu_deviceptr q, kern_cu_deviceptr k, kern_cu_deviceptr v,
                              kern_cu_deviceptr q_norm, kern_cu_deviceptr k_norm, kern_cu_deviceptr pos,
                              kern_cu_deviceptr k_cache, kern_cu_deviceptr v_cache, int64_t cache_rows, int64_t pos0,
                              int64_t n_tok, int n_head, int n_kv_head, int hd, float eps, float freq_base)
{
    if (n_tok <= 0 || n_head <= 0 || n_kv_head <= 0 || hd <= 0 || hd % 2 || hd > 256 || !pos)
        return bad_arg("qkv_post", "need tokens, heads, an even head dimension up to 256 and positions");
    if (pos0 < 0 || pos0 + n_tok > cache_rows)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "qkv_post: positions %lld..%lld do not fit the %lld-position "
                                                         "KV cache", (long long)pos0, (long long)(pos0 + n_tok - 1),
                                            (long long)cache_rows),
                              "use a larger context (--ctx)");
    long long nt = n_tok;
    void *p[] = {&q, &k, &v, &q_norm, &k_norm, &pos, &k_cache, &v_cache, &nt, &n_head, &n_kv_head, &hd, &eps,
                 &freq_base};
    kern_cu_deviceptr ptrs[4] = {q, k, k_cache, v_cache};
    return kern_cuda_launch_fn(c, "qkv_post", KF_QKV_POST,
                               kern_cuda_geom_rows(n_tok * (n_head + 2 * n_kv_head), 1, 256, c->max_grid_x), 0, p,
                               ptrs);
}

adg_error *kern_cuda_rope_neox(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr pos, int64_t n_tok, int n_head,
                               int head_dim, float freq_base)
{
    if (n_tok <= 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2)
        return bad_arg("rope", "need tokens, heads and an even head dimension");
    long long nt = n_tok;
    void *p[] = {&x, &pos, &nt, &n_head, &head_dim, &freq_base};
    kern_cu_deviceptr ptrs[4] = {x, pos, 0, 0};
    return kern_cuda_launch_fn(c, "rope", KF_ROPE_NEOX, kern_cuda_geom_1d(c, n_tok * n_head * (head_dim / 2)), 0, p,
                               ptrs);
}

adg_error *kern_cuda_softmax(kern_cuda_ctx *c, kern_cu_deviceptr x, int64_t n, int64_t d, float scale)
{
    if (n <= 0 || d <= 0)
        return bad_arg("softmax", "empty tensor");
    long long nn = n, dd = d;
    void *p[] = {&x, &nn, &dd, &scale};
    kern_cu_deviceptr ptrs[4] = {x, 0, 0, 0};
    return kern_cuda_launch_fn(c, "softmax", KF_SOFTMAX, kern_cuda_geom_rows(n, 1, 256, c->max_grid_x), 0, p, ptrs);
}

adg_error *kern_cuda_attention(kern_cuda_ctx *c, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                               kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head, int hd,
                               int64_t n_kv, float scale)
{
    return kern_cuda_attention_at(c, q, k_cache, v_cache, out, n_head, n_kv_head, hd, n_kv, 0, scale, 0);
}

adg_error *kern_cuda_attention_at(kern_cuda_ctx *c, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                                  kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head, int hd,
                                  int64_t n_kv, kern_cu_deviceptr pos, float scale, kern_cu_deviceptr q8_scratch)
{
    if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head || hd <= 0 || hd % 32 || hd > 256 || n_kv <= 0)
        return bad_arg("attention", "need n_head a multiple of n_kv_head, head_dim a multiple of 32 up to 256, and "
                                    "a non-empty cache");
    long long nk = n_kv;
    q8_slots q8;
    adg_error *e = q8_for("attention", q8_scratch, (int64_t)n_head * hd, &q8);
    if (e)
        return e;
    void *p[] = {&q, &k_cache, &v_cache, &out, &n_head, &n_kv_head, &hd, &nk, &pos, &scale, &q8};
    kern_cu_deviceptr ptrs[4] = {q, k_cache, v_cache, out};
    /* 32 warps a head (ATT_DEC_WARPS in kern_kernels.cu). */
    return kern_cuda_launch_fn(c, "attention", KF_ATTENTION, kern_cuda_geom_rows(n_head, 1, 1024, c->max_grid_x), 0,
                               p, ptrs);
}

static adg_error *binary(kern_cuda_ctx *c, const char *op, enum kern_cuda_fn fn, kern_cu_deviceptr a,
                         kern_cu_deviceptr b, kern_cu_deviceptr out, int64_t n)
{
    if (n <= 0)
        return bad_arg(op, "empty tensor");
    long long nn = n;
    void *p[] = {&a, &b, &out, &nn};
    kern_cu_deviceptr ptrs[4] = {a, b, out, 0};
    return kern_cuda_launch_fn(c, op, fn, kern_cuda_geom_1d(c, n), 0, p, ptrs);
}

adg_error *kern_cuda_silu_mul(kern_cuda_ctx *c, kern_cu_deviceptr gate, kern_cu_deviceptr up, kern_cu_deviceptr out,
                              int64_t n)
{
    return kern_cuda_silu_mul_q8(c, gate, up, out, n, 0);
}

adg_error *kern_cuda_silu_mul_q8(kern_cuda_ctx *c, kern_cu_deviceptr gate, kern_cu_deviceptr up, kern_cu_deviceptr out,
                                 int64_t n, kern_cu_deviceptr q8_scratch)
{
    if (n <= 0)
        return bad_arg("silu_mul", "empty tensor");
    q8_slots q8;
    adg_error *e = q8_for("silu_mul", q8_scratch, n, &q8);
    if (e)
        return e;
    long long nn = n;
    void *p[] = {&gate, &up, &out, &nn, &q8};
    kern_cu_deviceptr ptrs[4] = {gate, up, out, 0};
    /* Blocks of 256 (kern_cuda_geom_1d): a warp's 32 values are one q8 block. */
    return kern_cuda_launch_fn(c, "silu_mul", KF_SILU_MUL, kern_cuda_geom_1d(c, n), 0, p, ptrs);
}

adg_error *kern_cuda_add(kern_cuda_ctx *c, kern_cu_deviceptr a, kern_cu_deviceptr b, kern_cu_deviceptr out, int64_t n)
{
    return binary(c, "add", KF_ADD, a, b, out, n);
}

/* ---- The batch ops of the GPU layers (kept on the device between layers) ------------- */

adg_error *kern_cuda_kv_store(kern_cuda_ctx *c, kern_cu_deviceptr src, kern_cu_deviceptr cache, int64_t cache_rows,
                              int64_t pos0, int64_t n_tok, int64_t row_elems)
{
    return kern_cuda_kv_store_at(c, src, cache, cache_rows, pos0, 0, n_tok, row_elems);
}

adg_error *kern_cuda_kv_store_at(kern_cuda_ctx *c, kern_cu_deviceptr src, kern_cu_deviceptr cache, int64_t cache_rows,
                                 int64_t pos0, kern_cu_deviceptr pos, int64_t n_tok, int64_t row_elems)
{
    if (n_tok <= 0 || row_elems <= 0 || pos0 < 0 || cache_rows <= 0)
        return bad_arg("kv_store", "need tokens, a row size, a position >= 0 and a cache");
    if (pos0 + n_tok > cache_rows)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "kv_store: positions %lld..%lld do not fit the %lld-position "
                                                         "KV cache", (long long)pos0, (long long)(pos0 + n_tok - 1),
                                            (long long)cache_rows),
                              "use a larger context (--ctx)");
    /* The layout [pos][kv_head][d] makes the store one contiguous f32 -> f16 conversion. */
    long long ne = n_tok * row_elems;
    if (pos) {
        long long row = row_elems;
        void *p[] = {&src, &cache, &pos, &row, &ne};
        kern_cu_deviceptr ptrs[4] = {src, cache, pos, 0};
        return kern_cuda_launch_fn(c, "kv_store", KF_KV_STORE, kern_cuda_geom_1d(c, ne), 0, p, ptrs);
    }
    kern_cu_deviceptr dst = cache + (kern_cu_deviceptr)(pos0 * row_elems * 2);
    void *p[] = {&src, &dst, &ne};
    kern_cu_deviceptr ptrs[4] = {src, dst, 0, 0};
    return kern_cuda_launch_fn(c, "kv_store", KF_F32_TO_F16, kern_cuda_geom_1d(c, ne), 0, p, ptrs);
}

adg_error *kern_cuda_moe_wsum(kern_cuda_ctx *c, kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr w,
                              int64_t n_tok, int k, int64_t d)
{
    if (n_tok <= 0 || k <= 0 || d <= 0)
        return bad_arg("moe_wsum", "empty tensor");
    long long nt = n_tok, dd = d;
    void *p[] = {&x, &y, &w, &nt, &k, &dd};
    kern_cu_deviceptr ptrs[4] = {x, y, w, 0};
    return kern_cuda_launch_fn(c, "moe_wsum", KF_MOE_WSUM, kern_cuda_geom_1d(c, n_tok * d), 0, p, ptrs);
}

adg_error *kern_cuda_attention_causal(kern_cuda_ctx *c, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                                      kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head,
                                      int hd, int64_t n_tok, int64_t pos0, float scale)
{
    if (n_head <= 0 || n_kv_head <= 0 || n_head % n_kv_head || hd <= 0 || hd % 32 || hd > 256 || n_tok <= 0 ||
        pos0 < 0)
        return bad_arg("attention_causal", "need n_head a multiple of n_kv_head, head_dim a multiple of 32 up to 256, "
                                           "tokens and a position >= 0");
    long long nt = n_tok, p0 = pos0;
    void *p[] = {&q, &k_cache, &v_cache, &out, &n_head, &n_kv_head, &hd, &nt, &p0, &scale};
    kern_cu_deviceptr ptrs[4] = {q, k_cache, v_cache, out};
    /* 8 tokens of one head a block, a warp each (FA_Q in kern_kernels.cu). */
    return kern_cuda_launch_fn(c, "attention_causal", KF_ATTENTION_CAUSAL,
                               kern_cuda_geom_rows(((n_tok + 7) / 8) * n_head, 1, 256, c->max_grid_x), 0, p, ptrs);
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

size_t kern_cuda_moe_gemm_scratch(int64_t n_tok, int n_used, int n_expert, int64_t ncols, bool x_per_slot)
{
    int64_t n_x = x_per_slot ? n_tok * n_used : n_tok;
    return kern_cuda_gemv_scratch(ncols * n_x) + align256((size_t)(n_expert + 1) * 4) +
           align256((size_t)(n_tok * n_used) * 4);
}

/* The grouped int8 GEMM's tile for this call: AMXDIAG_GPU_MOE_TILE (gi8m_parse: old, g0..g5,
 * auto) and AMXDIAG_GPU_MOE_STAGES (2..4; default the plan's), read per call so that one
 * process can A/B them.  Returns the GI8M index with *pl set up for it (variant, tile,
 * bn, threads, stages, smem), or -1: the old tile, *pl as planned. */
static int moe_tile(const kern_cuda_ctx *c, kern_type type, int64_t m, int64_t k, int64_t n_slots, int n_expert,
                    kern_cuda_gemm_plan *pl)
{
    static bool warned;
    const char *env = getenv("AMXDIAG_GPU_MOE_TILE");
    const int wt = type == KERN_TYPE_Q4_0 ? 4 : 8;
    int g = gi8m_parse(env);
    if (g == -2) {
        if (!warned)
            adg_warn("AMXDIAG_GPU_MOE_TILE=%s: not one of old, auto, g0..g%d; using auto", env, GI8M_NVAR - 1);
        warned = true;
        g = GI8M_AUTO;
    }
    if (g == GI8M_AUTO)
        g = gi8m_auto(wt, m, k, n_slots, n_expert);
    if (g < 0)
        return -1;
    const int limit = c->caps.can_raise_smem ? c->caps.smem_optin : 48 * 1024;
    const int sb = gi8_stage_bytes_n(wt, gi8m_var_bm(g), gi8m_var_bn(g));
    const char *st_env = getenv("AMXDIAG_GPU_MOE_STAGES");
    int stages = st_env && st_env[0] >= '2' && st_env[0] <= '4' && !st_env[1] ? st_env[0] - '0' : pl->stages;
    if (stages < 2 || stages > 4)
        stages = 3;
    while (stages > 2 && stages * sb > limit)
        stages--;
    if (stages * sb > limit)
        return -1; /* not even two stages: the old tile (64 x 64) as planned */
    pl->variant = g;
    pl->tile = gi8m_var_bm(g);
    pl->bn = gi8m_var_bn(g);
    pl->threads = gi8m_var_threads(g);
    pl->stages = stages;
    pl->smem = stages * sb;
    return g;
}

/* The grouped int8 GEMM by token tiles (gemm_i8 with MOE = 2): a CTA per (token tile of an
 * expert, row tile); the grid covers the most token tiles n_slots can make (the kernel
 * counts the real ones from `off`). */
static adg_error *launch_moe_i8g(kern_cuda_ctx *c, const char *op, const kern_cuda_gemm_plan *pl, int g,
                                 kern_type type, kern_cu_deviceptr w, int64_t m, int64_t k, kern_cu_deviceptr qs,
                                 kern_cu_deviceptr d, int64_t n_slots, kern_cu_deviceptr y, int n_expert,
                                 kern_cu_deviceptr off, kern_cu_deviceptr list, int x_div)
{
    const enum kern_cuda_fn fn =
        (enum kern_cuda_fn)(KF_MOE_GEMM_I8G_FIRST + 2 * g + (type == KERN_TYPE_Q4_0 ? 0 : 1));
    return launch_i8(c, op, pl, fn, gi8m_items(n_slots, n_expert, m, pl->tile, pl->bn), w, m, k, qs, d, n_slots, y,
                     n_expert, off, list, x_div);
}

adg_error *kern_cuda_moe_gemm(kern_cuda_ctx *c, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                              int64_t ncols, kern_cu_deviceptr ids, int64_t n_tok, int n_used, kern_cu_deviceptr x,
                              bool x_per_slot, kern_cu_deviceptr y, kern_cu_deviceptr scratch)
{
    const char *op = "moe_gemm";
    enum kern_cuda_fn fn;
    adg_error *e = quant_kernel(op, type, ncols, KF_MOE_GEMM_Q4_0, KF_MOE_GEMM_Q8_0, &fn);
    if (e)
        return e;
    if (nrows <= 0 || n_tok <= 0 || n_used <= 0 || n_expert <= 0 || !ids)
        return bad_arg(op, "empty matrix, no tokens or no expert ids");
    int64_t n_slots = n_tok * n_used, n_x = x_per_slot ? n_slots : n_tok;
    if (n_slots > 0x7fffffff / 2)
        return bad_arg(op, "too many (token, expert) slots");
    kern_cu_deviceptr qs, d, s;
    e = quantize_x(c, op, x, ncols * n_x, scratch, &qs, &d, &s);
    if (e)
        return e;
    kern_cu_deviceptr off = scratch + kern_cuda_gemv_scratch(ncols * n_x);
    kern_cu_deviceptr list = off + align256((size_t)(n_expert + 1) * 4);
    long long ns = n_slots;
    int ne = n_expert;
    kern_cu_deviceptr v = kern_cuda_valptr(c);
    void *ps[] = {&ids, &ns, &ne, &off, &list, &v};
    kern_cu_deviceptr ptrs_s[4] = {ids, off, list, 0};
    kern_cuda_geom gs = kern_cuda_geom_rows(n_expert, 1, 32, c->max_grid_x);
    if ((e = kern_cuda_launch_fn(c, op, KF_MOE_SORT, gs, 0, ps, ptrs_s)))
        return e;
    long long row_fault = 0;
    if (c->armed == KERN_CUDA_FAULT_MATVEC_OOB) {
        c->armed = KERN_CUDA_FAULT_NONE;
        row_fault = (long long)(((unsigned long long)n_expert * (unsigned long long)nrows) +
                                FAULT_DISTANCE / kern_row_size(type, ncols));
    }
    int x_div = x_per_slot ? 1 : n_used;
    /* The int8 kernel has no validate record or planted fault: those keep the dp4a one. */
    kern_cuda_gemm_plan pl = kern_cuda_gemm_plan_for(c, type, nrows, ncols, n_slots, w, true);
    if (pl.mma && !row_fault && !c->validate) {
        const int g = moe_tile(c, type, nrows, ncols, n_slots, n_expert, &pl);
        if (g >= 0)
            e = launch_moe_i8g(c, op, &pl, g, type, w, nrows, ncols, qs, d, n_slots, y, n_expert, off, list, x_div);
        else
            e = launch_gemm_i8(c, op, &pl, type, w, nrows, ncols, qs, d, n_slots, y, n_expert, off, list, x_div);
        if (e)
            return e;
        return kern_cuda_op_done(c, op);
    }
    long long nr = nrows, nc = ncols, w_rows = (long long)n_expert * nrows;
    void *p[] = {&w, &nr, &nc, &ne, &off, &list, &x_div, &qs, &d, &s, &y, &row_fault, &w_rows, &v};
    kern_cu_deviceptr ptrs[4] = {w, x, y, ids};
    kern_cuda_geom g = kern_cuda_geom_rows((int64_t)n_expert * nrows, 4, 128, c->max_grid_x);
    if ((e = kern_cuda_launch_fn(c, op, fn, g, 0, p, ptrs)))
        return e;
    return kern_cuda_op_done(c, op);
}

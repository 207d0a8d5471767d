/* Shared by the host-side files of kernels/cuda; not part of the public surface. */
#ifndef KERN_CUDA_INTERNAL_H
#define KERN_CUDA_INTERNAL_H

#include "kernels/cuda/kern_cuda.h"

/* The kernels, in the order of kern_cuda_kernel_names[]. */
enum kern_cuda_fn {
    KF_GET_ROWS_F32,
    KF_GET_ROWS_F16,
    KF_GET_ROWS_BF16,
    KF_GET_ROWS_Q4_0,
    KF_GET_ROWS_Q8_0,
    KF_QUANTIZE_Q8,
    KF_GEMV_Q4_0,
    KF_GEMV_Q8_0,
    KF_GEMM_Q4_0,
    KF_GEMM_Q8_0,
    KF_GEMM_F16,
    KF_F32_TO_F16,
    KF_MOE_ROUTE,
    KF_RMSNORM,
    KF_ROPE_NEOX,
    KF_SOFTMAX,
    KF_ATTENTION,
    KF_SILU_MUL,
    KF_ADD,
    KF_GEMV_Q4_0_MR,
    KF_GEMV_Q8_0_MR,
    KF_GEMM_Q4_0_BK64,
    KF_GEMM_Q8_0_BK64,
    KF_GEMM_F16_BK64,
    KF_ATTENTION_CAUSAL,
    KF_MOE_WSUM,
    KF_MOE_SORT,
    KF_MOE_GEMM_Q4_0,
    KF_MOE_GEMM_Q8_0,
    KF_F32_TO_F16_Q8,
    KF_GEMM_I8_FIRST, /* the int8 GEMM's tile variants v (kern_gemm_i8_map.h): q4_0 at FIRST + 2v, q8_0 next */
    KF_GEMM_I8_LAST = KF_GEMM_I8_FIRST + 2 * 8 - 1,
    KF_MOE_GEMM_I8_Q4_0,
    KF_MOE_GEMM_I8_Q8_0,
    KF_GEMM_F32,
    KF_GEMM_F32_FEW,
    KF_GEMM_F16MMA_FIRST, /* the f16-MMA GEMM's variants v (kern_gemm_f16mma_map.h): q4_0 at FIRST + 2v, q8_0 next;
                             f16 weights at FIRST + 2 * 9 + v */
    KF_GEMM_F16MMA_LAST = KF_GEMM_F16MMA_FIRST + 3 * 9 - 1,
    KF_ZERO_F32, /* y = 0 before a split-K GEMM */
    KF_KV_STORE, /* f32 -> f16 at the cache row read from device memory */
    KF_QKV_POST,    /* q/k norm, RoPE and the K/V cache store in one launch */
    KF_ADD_RMSNORM, /* residual add and RMSNorm in one launch */
    KF_ROUTER_TOPK, /* a generated token's router GEMV and top-k in one launch */
    KF_GEMM_F32_SUM, /* the split-k f32 GEMM's sum of its splits */
    KF_GEMM_WGMMA_FIRST, /* the sm_90a module's wgmma GEMM variants v (kern_gemm_wgmma_map.h): q4_0 at FIRST + 2v,
                            q8_0 next, f16 weights at FIRST + 2 * 4 + v, the experimental variants at FIRST +
                            3 * 4 + gw_xk_index; from ctx->mod_wgmma, not ctx->mod (kern_gemm_wgmma_load.c) */
    KF_GEMM_WGMMA_LAST = KF_GEMM_WGMMA_FIRST + 3 * 4 + 18 - 1,
    KF_MOE_GEMM_I8G_FIRST, /* the grouped int8 GEMM's token-tile variants g (GI8M_VARIANTS): q4_0 at FIRST + 2g */
    KF_MOE_GEMM_I8G_LAST = KF_MOE_GEMM_I8G_FIRST + 2 * 6 - 1,
    KF_GEMV_SB_FIRST, /* the super-block GEMV (kern_gemv_sb.cuh), q4_0 then q8_0 of: ld.global.cs, .nc, a 2-stage
                         cp.async ring, a 3-stage one (kern_cuda_gemv_fn) */
    KF_GEMV_SB_LAST = KF_GEMV_SB_FIRST + 7,
    KF_DEQUANT_Q4_0_F16, /* the two-pass prompt GEMM's first pass: weights to f16 (kern_cuda_ops.c gemm_dequant) */
    KF_DEQUANT_Q8_0_F16,
    KF_GEMM_PROLOGUE_Q4_0, /* its first launch: the first slab to f16, X to f16, y zeroed (split-K) */
    KF_GEMM_PROLOGUE_Q8_0,
    KF_COUNT
};
extern const char *const kern_cuda_kernel_names[KF_COUNT];
/* kern_cuda_gemm with f32 weights: up to this many tokens one warp per output
 * (kern_gemm_f32_few), more in 32 x 32 tiles (kern_gemm_f32). */
#define KERN_CUDA_GEMM_F32_FEW 4

/* The device-side validation record (struct kval in kern_kernels.cu). */
typedef struct kern_cuda_valrec {
    unsigned int flag;
    int op;
    long long index, limit, pos;
} kern_cuda_valrec;
/* KERN_VAL_MOE_GEMV: an expert id out of range; KERN_VAL_MOE_ROW: an expert weight row past the buffer. */
enum { KERN_VAL_GET_ROWS = 1, KERN_VAL_GEMV = 2, KERN_VAL_MOE_GEMV = 3, KERN_VAL_GEMM = 4, KERN_VAL_MOE_ROW = 5 };

typedef struct kern_cuda_alloc_rec {
    kern_cu_deviceptr p;
    size_t bytes;
} kern_cuda_alloc_rec;

struct kern_cuda_ctx {
    const kern_cuda_driver *d;
    kern_cu_device dev;
    kern_cu_context cu;
    bool ctx_retained;
    kern_cu_module mod;
    kern_cu_stream stream;
    kern_cu_function fn[KF_COUNT];
    kern_cuda_load_info info;
    unsigned max_grid_x;
    bool validate, sync_each;
    int gemv_rows; /* rows per warp of the multi-row GEMV; 1: the single-row kernel; 0: auto (Q4_0 4, Q8_0 1) */
    int gemm_bk;   /* 64: the 64-wide-stage GEMM; otherwise the 32-wide one */
    kern_cuda_gemm_kind gemm_kind; /* the prompt GEMM (kern_cuda_set_gemm_kernel) */
    int gemm_tile, gemm_stages;    /* 0 = auto */
    int gemm_ksplit;               /* f16-MMA k slices: 0 = auto (measured), 1 or 2 ($AMXDIAG_GPU_GEMM_SPLITK) */
    bool gemm_staged;              /* f16-MMA epilogue through shared memory ($AMXDIAG_GPU_GEMM_STORE=staged) */
    kern_cuda_gemm_caps caps;
    int fn_smem[KF_COUNT];         /* dynamic shared memory each kernel was opened up to */
    kern_cu_deviceptr valrec;
    kern_cuda_fault armed;
    kern_cuda_launch ring[KERN_CUDA_LAUNCH_RING];
    uint64_t seq;
    kern_cuda_alloc_rec *allocs;
    size_t n_allocs, cap_allocs;
    kern_cuda_graph *capturing;    /* between kern_cuda_graph_begin and _end */
    kern_cu_module mod_wgmma;      /* the sm_90a wgmma module, NULL when not loaded (caps.wgmma_off says why) */
    char wgmma_off[200];
    kern_cuda_gemv_cfg gemv;       /* the decode GEMV's configuration as asked (kern_cuda_gemv.c) */
    kern_cuda_gemv_dev gemv_dev;   /* the device facts its auto pick and grid use */
    int gemm_dq;                   /* two-pass prompt GEMM: -1 auto (measured), 0 off, 1 wherever it can
                                      ($AMXDIAG_GPU_GEMM_DQ, kern_cuda_set_gemm_dq) */
    size_t gemm_dq_cap;            /* its f16 weights' workspace at most, bytes ($AMXDIAG_GPU_GEMM_DQ_MIB) */
    kern_cu_deviceptr dq_ws;       /* that workspace (grown on first need, never while capturing; an outgrown one
                                      stays allocated until close, for graphs captured with it) */
    size_t dq_ws_bytes;
    bool dq_warned;                /* the workspace's allocation failed once (warned) */
};
/* Reads the device facts and the super-block kernels' registers, and $AMXDIAG_GPU_GEMV
 * (kern_cuda_gemv.c); never fails (a bad variable is warned about and ignored). */
void kern_cuda_gemv_init(kern_cuda_ctx *ctx);
/* Loads the sm_90a wgmma module on a compute capability 9.0 device (after the main module
 * and init_gemm_caps); never fails: where it cannot, caps.wgmma stays false and
 * caps.wgmma_off says why (kern_gemm_wgmma_load.c). */
void kern_cuda_wgmma_load(kern_cuda_ctx *ctx);
/* Whether kernel fn lives in the sm_90a module (not looked up in the main one). */
bool kern_cuda_fn_in_wgmma(int fn);
/* The embedded sm_90a cubin (NULL, 0 in a build without it). */
void kern_cuda_wgmma_image(const void **data, size_t *len);

/* Makes the context current on the calling thread. */
adg_error *kern_cuda_make_current(kern_cuda_ctx *ctx);
/* During a capture: keeps a copy of launch record l for the graph's replays. */
adg_error *kern_cuda_graph_record(kern_cuda_graph *g, const kern_cuda_launch *l);

/* Launches fn with the given geometry and kernel parameters; records it in the ring
 * (ptrs: up to 4 buffer arguments, for reports), checks the launch result, and in
 * sync-each mode the kernel's completion.  `op` names the op in errors. */
adg_error *kern_cuda_launch_fn(kern_cuda_ctx *ctx, const char *op, enum kern_cuda_fn fn, kern_cuda_geom g,
                               unsigned shmem, void **params, const kern_cu_deviceptr ptrs[4]);
/* The validation record pointer to pass to kernels (0 when validation is off). */
kern_cu_deviceptr kern_cuda_valptr(const kern_cuda_ctx *ctx);
/* In validate mode: waits and turns a recorded bad index into the op's error. */
adg_error *kern_cuda_op_done(kern_cuda_ctx *ctx, const char *op);
/* 1-D geometry for n elements, 256 threads. */
kern_cuda_geom kern_cuda_geom_1d(const kern_cuda_ctx *ctx, int64_t n);

#endif

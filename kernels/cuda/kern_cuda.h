/* The CUDA kernels of amxdiag's hybrid path: public surface.
 *
 * The kernels are compiled by nvcc at build time into one fatbin (SASS for sm_75 ...
 * sm_121 plus PTX for the newest architecture) and a separate PTX image, both embedded
 * in the amxdiag binary, and loaded through the dlopen'ed driver API (cuda_driver.h).
 * A build without nvcc still links: kern_cuda_open then reports "built without CUDA
 * kernels".  A context is used by one thread at a time. */
#ifndef KERN_CUDA_H
#define KERN_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "kernels/cuda/cuda_driver.h"
#include "kernels/kern_quant.h"

typedef enum kern_cuda_load_mode {
    KERN_CUDA_LOAD_AUTO = 0,      /* the fatbin: the driver picks SASS, or JITs the PTX */
    KERN_CUDA_LOAD_FORCE_PTX = 1, /* only the PTX image: the driver must JIT it */
} kern_cuda_load_mode;

/* How the kernels got onto the device: what `probe` reports. */
typedef struct kern_cuda_load_info {
    kern_cuda_load_mode mode;
    bool used_ptx_jit;      /* the driver compiled PTX (forced, or no matching SASS) */
    int image_arch;         /* arch of the code that runs, e.g. 90 (CU_FUNC_ATTRIBUTE_BINARY_VERSION) */
    int sass_arch;          /* the embedded SASS the driver should pick for this device, 0 = none */
    int ptx_arch;           /* arch of the embedded PTX (the newest target), e.g. 120 */
    int ptx_version;        /* PTX ISA the kernels were compiled from, e.g. 90 = 9.0 */
    double module_load_ms;  /* wall time of cuModuleLoadDataEx (includes any JIT) */
    double jit_ms;          /* CU_JIT_WALL_TIME reported by the driver, 0 without JIT */
    size_t image_bytes;     /* size of the image handed to the driver */
    /* the device */
    int ordinal;
    char name[128];
    char pci_bus_id[32];
    int cc_major, cc_minor;
    int sm_count;
    size_t total_mem;
    int driver_version;     /* 13000 = 13.0 */
} kern_cuda_load_info;

typedef struct kern_cuda_ctx kern_cuda_ctx;

/* Whether this binary carries the CUDA kernels (nvcc was present at build time). */
bool kern_cuda_built_with_kernels(void);
/* The embedded images (NULL/0 when built without them): the fatbin (the same bytes that
 * the ".nv_fatbin" section holds, so `cuobjdump --list-elf amxdiag` lists them) and the
 * PTX text (NUL-terminated; len excludes the NUL). */
void kern_cuda_embedded_fatbin(const void **data, size_t *len);
void kern_cuda_embedded_ptx(const char **text, size_t *len);

/* Loads the driver, retains the primary context of device `ordinal`, loads the module and
 * resolves every kernel.  Errors: no driver / no device (ADG_E_HARDWARE), built without
 * kernels or no code for this GPU (ADG_E_UNSUPPORTED), any CUDA failure (ADG_E_CUDA,
 * with the CUDA error name). */
adg_error *kern_cuda_open(int ordinal, kern_cuda_load_mode mode, kern_cuda_ctx **out);
void kern_cuda_close(kern_cuda_ctx *ctx);
const kern_cuda_load_info *kern_cuda_info(const kern_cuda_ctx *ctx);
/* The driver table the context uses (for callers that time or copy on their own). */
const kern_cuda_driver *kern_cuda_drv(const kern_cuda_ctx *ctx);
/* The load facts as JSON (keys as in kern_cuda_load_info).  New reference. */
json_t *kern_cuda_info_json(const kern_cuda_load_info *info);

/* Runs GET_ROWS (F32, F16, Q4_0 and Q8_0 tables, a row count past 65,535) and a Q4_0
 * matrix-vector product on random data and compares them with the CPU reference.
 * Returns NULL when everything matched; a failed comparison is an ADG_E_HARDWARE error
 * naming the kernel, the element and both values.  *details (optional, new reference)
 * gets {"tests":[{"kernel","n","max_abs_err","tolerance","ms","pass"}], "load":{...}}
 * in both cases. */
adg_error *kern_cuda_selftest(kern_cuda_ctx *ctx, json_t **details);

/* ---- Modes -------------------------------------------------------------------------- */

/* --gpu-validate: GET_ROWS and the matmuls check every index on the device; the first
 * bad one is recorded and the access skipped, and the op's check returns an error
 * naming the kernel, the index, the bound and the position, instead of error 700. */
void kern_cuda_set_validate(kern_cuda_ctx *ctx, bool on);
/* Synchronise after every launch (like CUDA_LAUNCH_BLOCKING=1): an asynchronous fault
 * is then reported by the kernel that caused it.  Slower. */
void kern_cuda_set_sync_each(kern_cuda_ctx *ctx, bool on);

/* The GEMVs process up to `rows` (2..4) consecutive rows per warp where the rows are
 * 16-byte aligned and that many fit the 4608-byte stage; 1 selects the single-row kernel
 * (the one measured on the H100); 0 (the default) is auto: 4 for Q4_0, 1 for Q8_0.  See
 * docs/cuda-kernels.md for why and for the verification status. */
void kern_cuda_set_gemv_rows(kern_cuda_ctx *ctx, int rows);

/* ---- Which decode GEMV (kern_cuda_gemv.c, docs/cuda-kernels.md) ------------------------
 * The row kernels (kern_gemv_*, kern_gemv_*_mr: rows staged in shared memory and read back
 * 2 bytes at a time; the H100's 91 %) or the super-block kernel (kern_gemv_*_sb: 16-byte
 * loads throughout, the activations kept in registers, optionally a persistent grid whose
 * warps fetch their next span while they sum the current one).  Set by
 * $AMXDIAG_GPU_GEMV or kern_cuda_set_gemv, e.g. "rows", "sb", "sb,load=nc,warps=8,waves=2",
 * "sb,load=async,stages=3"; anything left out (or "auto") is the device's default for the
 * weight type (kern_cuda_gemv_resolve).
 * `--gemv-rows N` (N > 0) still selects the row kernels with N rows. */
enum { KERN_CUDA_GEMV_AUTO = 0, KERN_CUDA_GEMV_ROWS = 1, KERN_CUDA_GEMV_SB = 2 };
typedef struct kern_cuda_gemv_cfg {
    int kernel; /* KERN_CUDA_GEMV_* */
    int load;   /* sb: 0 ld.global.cs, 1 ld.global.nc.L1::no_allocate.L2::256B (both through registers),
                   2 cp.async into a ring of `stages` stages a warp (sm_80+; plain copies before); -1 auto */
    int warps;  /* sb: warps per block, 4 or 8; 0 auto */
    int waves;  /* sb: a persistent grid of `waves` x the blocks the SMs hold at once; 0: a block
                   per 4 or 8 spans (no persistence); -1 auto */
    int stages; /* sb with load=async: 2 or 3; 0 auto */
} kern_cuda_gemv_cfg;
#define KERN_CUDA_GEMV_CFG_AUTO ((kern_cuda_gemv_cfg){KERN_CUDA_GEMV_AUTO, -1, 0, -1, 0})
/* Parses a spec as above into *out (starting from auto).  ADG_E_USAGE with the accepted
 * forms for anything else. */
adg_error *kern_cuda_gemv_parse(const char *spec, kern_cuda_gemv_cfg *out);
/* "sb,load=nc,warps=4,waves=1" (",stages=N" with load=async; "rows"; "auto" parts as
 * "auto") into buf. */
const char *kern_cuda_gemv_cfg_str(const kern_cuda_gemv_cfg *cfg, char *buf, size_t len);
void kern_cuda_set_gemv(kern_cuda_ctx *ctx, const kern_cuda_gemv_cfg *cfg);
/* The specs `bench --gemv sweep` times, *n of them. */
const char *const *kern_cuda_gemv_sweep(size_t *n);

/* The device facts the choice uses (driver attributes; 0 = unknown). */
typedef struct kern_cuda_gemv_dev {
    int sm_count, cc_major;
    int mem_clock_khz, bus_width_bits; /* peak DRAM GB/s = 2 x clock x width / 8 */
    int regs_per_sm, threads_per_sm, smem_per_sm;
    int smem_optin; /* shared memory one block may opt in to (attribute 97; 48 KiB without
                       cuFuncSetAttribute); 0: unknown, not checked */
    int sb_regs[8]; /* registers per thread of the super-block kernels (KF_GEMV_SB_FIRST order) */
} kern_cuda_gemv_dev;
/* Peak DRAM bandwidth in GB/s from the memory clock and bus width (0 when unknown). */
double kern_cuda_gemv_peak_gbps(const kern_cuda_gemv_dev *dev);
/* cfg with every auto part decided for this device and weight type (pure; unit-tested). */
kern_cuda_gemv_cfg kern_cuda_gemv_resolve(const kern_cuda_gemv_cfg *cfg, const kern_cuda_gemv_dev *dev, kern_type type);
/* What a super-block configuration gave up to fit the device's shared memory a block
 * (smem_optin), in the order kern_cuda_gemv_fit tries them; 0: it runs as asked. */
enum {
    KERN_CUDA_GEMV_FIT_STAGES = 1, /* the cp.async ring's 3 stages -> 2 */
    KERN_CUDA_GEMV_FIT_WARPS = 2,  /* 8 warps a block -> 4 */
    KERN_CUDA_GEMV_FIT_REGS = 4,   /* the cp.async ring -> the register path (load=cs) */
    KERN_CUDA_GEMV_FIT_ROWS = 8,   /* the super-block kernel -> the row kernels */
};
/* Steps a resolved configuration down in place until every kernel it may launch fits
 * dev->smem_optin (with Q4_0's load left auto, both the ring and the register path, so
 * that the choice by shape never meets a configuration that does not fit): 3 -> 2 stages,
 * 8 -> 4 warps, the register path, the row kernels.  Returns the KERN_CUDA_GEMV_FIT_*
 * steps taken (pure; unit-tested). */
unsigned kern_cuda_gemv_fit(kern_cuda_gemv_cfg *cfg, const kern_cuda_gemv_dev *dev, kern_type type);
/* "3 -> 2 stages, 8 -> 4 warps, ..." for KERN_CUDA_GEMV_FIT_* steps into buf ("" for 0). */
const char *kern_cuda_gemv_fit_str(unsigned fit, char *buf, size_t len);
/* The configuration a context runs for a weight type: resolved and fitted (what --json
 * reports; Q4_0's load may stay auto: chosen per shape by kern_cuda_gemv_plan_for).
 * *fit (may be NULL) gets the steps kern_cuda_gemv_fit took. */
kern_cuda_gemv_cfg kern_cuda_gemv_effective(const kern_cuda_ctx *ctx, kern_type type, unsigned *fit);
/* The kernel a GEMV of this shape runs with the context's configuration. */
const char *kern_cuda_gemv_kernel(const kern_cuda_ctx *ctx, kern_type type, int64_t nrows, int64_t ncols, int n_jobs,
                                  bool w_aligned16);

/* One GEMV launch as planned (pure; unit-tested). */
typedef struct kern_cuda_gemv_plan {
    bool sb;          /* the super-block kernel; else the row kernels */
    int rows;         /* row kernels: rows per warp iteration (1: kern_gemv_*, else _mr) */
    int load, warps;  /* sb */
    int stages;       /* sb, load 2 (cp.async): ring stages */
    int fn_index;     /* sb: the kernel, 0..7 after KF_GEMV_SB_FIRST */
    int nsb;          /* sb: super-blocks per row */
    int64_t spans;    /* sb: work items (32 super-blocks each) */
    unsigned grid, block, smem;
    unsigned fit;     /* why it is not what was asked: KERN_CUDA_GEMV_FIT_* (kern_cuda_gemv_fit) */
} kern_cuda_gemv_plan;
/* For type (Q4_0/Q8_0) weights of nrows x ncols, n_jobs jobs, weights 16-byte aligned or
 * not; gemv_rows as kern_cuda_set_gemv_rows.  The super-block kernel needs ncols % 256 == 0,
 * ncols <= 8192 and aligned weights; else the row kernels run.  A configuration whose
 * shared memory exceeds dev->smem_optin is stepped down first (kern_cuda_gemv_fit; the
 * steps in .fit).  A load left auto (-1) is decided here by shape: the cp.async ring where
 * each warp of the register path's resident grid would have 4 spans or more, the register
 * path below. */
kern_cuda_gemv_plan kern_cuda_gemv_plan_for(const kern_cuda_gemv_cfg *resolved, const kern_cuda_gemv_dev *dev,
                                            int gemv_rows, kern_type type, int64_t nrows, int64_t ncols, int n_jobs,
                                            bool w_aligned16, unsigned max_grid_x);
/* Experimental: 64 selects the prompt GEMM with 64-wide k stages; 32 (the default) the
 * 32-wide one. */
void kern_cuda_set_gemm_bk(kern_cuda_ctx *ctx, int bk);

/* ---- Which prompt GEMM ------------------------------------------------------------------
 * Q4_0/Q8_0 weights have two prompt GEMMs (kern_cuda_gemm, and kern_cuda_moe_gemm for the
 * grouped experts): the int8 tensor-core kernel (mma.m16n8k32.s8, cp.async stages; sm_80
 * code and up) whose results are the CPU reference's bit for bit, and the older ones
 * (WMMA f16 for the GEMM, dp4a for the grouped experts) that run on every arch.  AUTO is
 * the default; see docs/cuda-kernels.md for what it picks and why. */
typedef enum kern_cuda_gemm_kind {
    KERN_CUDA_GEMM_AUTO = 0,
    KERN_CUDA_GEMM_WMMA = 1, /* the f16 WMMA GEMM / dp4a grouped experts */
    KERN_CUDA_GEMM_MMA = 2,  /* the int8 tensor-core kernels where the arch has them */
    KERN_CUDA_GEMM_F16MMA = 3, /* weights dequantised to f16 in shared memory, mma.m16n8k16 (sm_80+; dense GEMM
                                  only: the grouped experts take the int8 kernel); within 1.1 * 2^-10 sum |w x| */
    KERN_CUDA_GEMM_WGMMA = 4,  /* the same dequantised weights on Hopper's wgmma (the sm_90a module, compute
                                  capability 9.0 only; elsewhere the f16-MMA kernel, saying why); same tolerance */
} kern_cuda_gemm_kind;
/* Parses "auto", "wmma", "mma", "f16mma"; false otherwise. */
bool kern_cuda_gemm_kind_parse(const char *s, kern_cuda_gemm_kind *out);
const char *kern_cuda_gemm_kind_name(kern_cuda_gemm_kind k);
/* tile: the tile variant as a code (0 = auto, 1 + v = int8 variant v of
 * kern_gemm_i8_map.h; 64 and 128 also mean variants 0 and 1, session 2's 64- and 128-row
 * tiles; 1 + GI8_NVAR + v = f16-MMA variant v of kern_gemm_f16mma_map.h, which applies
 * to that kernel only); stages: k stages in flight, 2..4 (0 = auto; the f16-MMA kernel
 * takes at least 3).  kern_cuda_open applies
 * $AMXDIAG_GPU_GEMM (auto|wmma|mma|f16mma), $AMXDIAG_GPU_GEMM_TILE (a name that
 * kern_cuda_gemm_tile_parse takes) and $AMXDIAG_GPU_GEMM_STAGES, so that every tool (run,
 * bench) can be switched without an option of its own. */
void kern_cuda_set_gemm_kernel(kern_cuda_ctx *ctx, kern_cuda_gemm_kind kind, int tile, int stages);
/* k slices of the f16-MMA GEMM: 0 auto (the measured pick's), 1, or 2 (split-K; kern_cuda_gemm_ksplit); also
 * $AMXDIAG_GPU_GEMM_SPLITK. */
void kern_cuda_set_gemm_ksplit(kern_cuda_ctx *ctx, int ksplit);
/* The two-pass prompt GEMM for Q4_0 / Q8_0 weights (dequantise the weights to f16 in a
 * workspace, then the f16-weight tensor-core kernel): -1 auto (where measured faster), 0
 * off (the fused kernels), 1 wherever an f16-weight kernel can run.  Also
 * $AMXDIAG_GPU_GEMM_DQ=auto|0|1; the workspace is at most $AMXDIAG_GPU_GEMM_DQ_MIB MiB
 * (default KERN_CUDA_GEMM_DQ_MIB), larger weights go through it in slabs of rows; cap_bytes
 * sets that bound (0 keeps it). */
void kern_cuda_set_gemm_dq(kern_cuda_ctx *ctx, int dq, size_t cap_bytes);
#define KERN_CUDA_GEMM_DQ_MIB 32
/* The f16-MMA GEMM's epilogue: false (default) each MMA fragment's 4-byte stores; true the
 * tile through shared memory and out as 16-byte row pieces (RED.ADD.V4 under split-K on
 * sm_90).  Also $AMXDIAG_GPU_GEMM_STORE=fragment|staged. */
void kern_cuda_set_gemm_staged(kern_cuda_ctx *ctx, bool staged);
/* Number of int8 GEMM tile variants. */
int kern_cuda_gemm_n_tiles(void);
/* Number of f16-MMA GEMM tile variants (codes 1 + n_tiles() .. n_tiles() + this). */
int kern_cuda_gemm_n_f16_tiles(void);
/* Number of wgmma GEMM tile variants (codes 1 + n_tiles() + n_f16_tiles() .. ; "w0".."w3"). */
int kern_cuda_gemm_n_wgmma_tiles(void);
/* A tile code from "auto" / "0" (0), "v0".."v7" or "64" / "128" (variants 0 / 1),
 * "f0".."f4" (the f16-MMA variants), or a variant's name such as "128x64/32x64" (CTA rows
 * x tokens / warp rows x tokens; "f16:128x128/64x32" for an f16-MMA one); -1 if none. */
int kern_cuda_gemm_tile_parse(const char *s);
/* The code for an int: 0, 1 + v, 64 or 128 as above; anything else is 0 (auto). */
int kern_cuda_gemm_tile_code(int tile);
/* "128x64/32x64" for code 1 + v, "f16:128x128/64x32" for an f16-MMA code ("auto" for 0). */
const char *kern_cuda_gemm_tile_name(int code);

/* What a device can run (filled by kern_cuda_open; in tests by hand). */
typedef struct kern_cuda_gemm_caps {
    int code_arch;       /* the PTX arch the loaded kernels were compiled from (80+ for mma) */
    int sm_count;
    int smem_optin;      /* dynamic shared memory a block may opt in to, bytes */
    bool can_raise_smem; /* cuFuncSetAttribute exists (else 48 KiB at most) */
    bool wgmma;          /* the sm_90a wgmma module is loaded (compute capability 9.0) */
    const char *wgmma_off; /* else why not (NULL: not asked) */
} kern_cuda_gemm_caps;
/* The choice for one GEMM (pure host logic, unit-tested). */
typedef struct kern_cuda_gemm_plan {
    bool mma;         /* the int8 tensor-core kernel */
    bool f16mma;      /* the f16-MMA kernel (then mma is false) */
    bool wgmma;       /* f16mma on the sm_90a wgmma kernel: variant, tile, bn, threads, stages (its ring slots),
                         smem from kern_gemm_wgmma_map.h; the rest of the f16-MMA path (X in f16, split-K) as is */
    bool deep;        /* wgmma: one stage of MMAs in flight across the barrier (GW_FLAG_DEEP) */
    int grid;         /* wgmma: CTAs to launch, each running its tiles as one stream of k stages (persistent:
                         as many as are resident at once); 0: one CTA per tile */
    int variant;      /* its tile variant (kern_gemm_i8_map.h, or kern_gemm_f16mma_map.h for f16mma) */
    int tile;         /* its weight rows per CTA */
    int bn;           /* its tokens per CTA */
    int threads;      /* its threads per CTA */
    int stages;       /* its k stages in flight */
    int smem;         /* its dynamic shared memory, bytes */
    bool aligned;     /* raw weight blocks by cp.async (k % 128 == 0, 8-byte aligned buffer) */
    int ksplit;       /* f16-MMA: k slices per tile (2: split-K, y zeroed and the slices added); else 1.
                         From kern_cuda_gemm_plan_make: the auto tile's measured suggestion */
    int xv;           /* wgmma: experimental variant (kern_gemm_wgmma_map.h GW_XV_*: 1 padded raw W rows, 2
                         fixed ring slots, 3 both; 0 the measured kernel), kern_cuda_gemm_wgmma_xv */
    bool dequant;     /* two passes: the Q4_0 / Q8_0 weights to f16 in a workspace, dq_rows rows at a time, then
                         the f16-weight kernel this plan describes (wgmma or f16mma) on each slab */
    int64_t dq_rows;  /* rows per slab (all m where they fit the workspace) */
    const char *why;  /* one line: why this kernel */
} kern_cuda_gemm_plan;
/* The k slices an f16-MMA plan takes when `want` (0 = auto, 1, 2; $AMXDIAG_GPU_GEMM_SPLITK)
 * asks: 2 only where each slice keeps at least twice the plan's stages of k; auto takes the
 * plan's suggestion (2 where the H200 sweep measured it faster: attn_o, attn_k). */
int kern_cuda_gemm_ksplit(const kern_cuda_gemm_plan *p, int want, int64_t k);
/* A wgmma plan's ring slots and pipeline as asked: `slots` ($AMXDIAG_GPU_GEMM_WGMMA_SLOTS:
 * 3..8 at most; NULL, empty or anything else: as many as fit, <= 8), `pipe`
 * ($AMXDIAG_GPU_GEMM_WGMMA_PIPE: "1" MMAs waited for within their stage, "2" one stage
 * left in flight (plan.deep); else the plan's), within the device's shared memory; and
 * `persist` ($AMXDIAG_GPU_GEMM_WGMMA_PERSIST: "1" plan.grid = the CTAs resident at once
 * (SMs x CTAs per SM) where the shape has more tiles, "0" one CTA per tile). */
/* A wgmma plan's experimental variant as asked ($AMXDIAG_GPU_GEMM_WGMMA_X: "1" raw W rows
 * 52 / 84 bytes apart, "2" the ring's slots fixed at compile time, "3" both; "0" or
 * anything else: none; NULL: the plan's own, i.e. auto's table): q4_0 / q8_0 tiles w0..w2
 * only; the slots refitted to the padded rows; "fixed" only where the plan's slots are the
 * variant's (as many as fit, the flat pipeline), else dropped.  Slots or a pipeline asked
 * of kern_cuda_gemm_wgmma_tune clear it. */
void kern_cuda_gemm_wgmma_xv(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_plan *p, kern_type type,
                             const char *xv);
void kern_cuda_gemm_wgmma_tune(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_plan *p, kern_type type,
                               const char *slots, const char *pipe, const char *persist, int64_t m, int64_t n);
/* Shared memory of one k stage of the int8 kernel (wt 4 = Q4_0, 8 = Q8_0). */
int kern_cuda_gemm_stage_bytes(int wt, int tile);
kern_cuda_gemm_plan kern_cuda_gemm_plan_make(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int tile,
                                             int stages, kern_type type, int64_t m, int64_t k, int64_t n,
                                             uint64_t w_addr, bool moe);
/* The two-pass plan for Q4_0 / Q8_0 weights, or `fused` as it is: `want` -1 (auto: the
 * shapes where it was measured faster, on the wgmma kernel (compute capability 9.0), whole
 * in one slab, not where an int8 tile is asked for), 0 (never) or 1 (wherever an f16-weight
 * tensor-core kernel runs); not under the kinds wmma and mma (they name a fused kernel),
 * nor below sm_80 code.  Its slabs are the most rows of k values whose f16 fit `cap` bytes, a
 * multiple of 256 (at least 256 rows, or no two-pass plan); the f16 kernel and tile are
 * those kern_cuda_gemm_plan_make gives f16 weights of a slab's shape. */
kern_cuda_gemm_plan kern_cuda_gemm_plan_dq(const kern_cuda_gemm_caps *caps, kern_cuda_gemm_kind kind, int tile,
                                           int stages, kern_type type, int64_t m, int64_t k, int64_t n, int want,
                                           size_t cap, const kern_cuda_gemm_plan *fused);
/* The plan kern_cuda_gemm (moe false) or kern_cuda_moe_gemm (moe true) follows for these
 * arguments on this context. */
kern_cuda_gemm_plan kern_cuda_gemm_plan_for(const kern_cuda_ctx *ctx, kern_type type, int64_t m, int64_t k, int64_t n,
                                            kern_cu_deviceptr w, bool moe);

/* Faults planted on purpose (--inject-fault NAME), for the illegal-access reports. */
typedef enum kern_cuda_fault {
    KERN_CUDA_FAULT_NONE = 0,
    KERN_CUDA_FAULT_GET_ROWS_OOB,          /* "get_rows-oob": a row index past the table */
    KERN_CUDA_FAULT_MATVEC_OOB,            /* "matvec-oob": weights read 1 GiB past their buffer */
    KERN_CUDA_FAULT_ASYNC_BEFORE_GET_ROWS, /* "async-before-get_rows": an OOB write in a kernel
                                            * launched before GET_ROWS, whose check reports 700 */
} kern_cuda_fault;
/* Parses a fault name; false for an unknown one. */
bool kern_cuda_fault_parse(const char *name, kern_cuda_fault *out);
const char *kern_cuda_fault_name(kern_cuda_fault f);
/* A comma-separated list of the names, for --help and error messages. */
const char *kern_cuda_fault_names(void);
/* Arms a fault: the next op of the matching kind plants it (once). */
void kern_cuda_inject(kern_cuda_ctx *ctx, kern_cuda_fault f);
/* Runs a small GET_ROWS + GEMV sequence with the fault armed, and returns the error the
 * checks reported (NULL would mean the fault went unnoticed).  After error 700 the
 * context is unusable: close it. */
adg_error *kern_cuda_run_fault(kern_cuda_ctx *ctx, kern_cuda_fault f);

/* The last launches (oldest first), for illegal-access reports: the op that reports an
 * asynchronous error is often not the kernel that faulted. */
typedef struct kern_cuda_launch {
    uint64_t seq;
    char kernel[48];
    unsigned grid[3], block[3];
    unsigned shmem;
    kern_cu_deviceptr ptr[4];  /* buffer arguments (0 = unused) */
    size_t ptr_bytes[4];       /* their allocation sizes when known */
} kern_cuda_launch;
#define KERN_CUDA_LAUNCH_RING 16
/* Copies up to max launches into out; returns the count. */
size_t kern_cuda_launch_ring(const kern_cuda_ctx *ctx, kern_cuda_launch *out, size_t max);

/* ---- Memory ------------------------------------------------------------------------- */

adg_error *kern_cuda_alloc(kern_cuda_ctx *ctx, size_t bytes, kern_cu_deviceptr *out);
void kern_cuda_free(kern_cuda_ctx *ctx, kern_cu_deviceptr p);
adg_error *kern_cuda_upload(kern_cuda_ctx *ctx, kern_cu_deviceptr dst, const void *src, size_t bytes);
adg_error *kern_cuda_download(kern_cuda_ctx *ctx, void *dst, kern_cu_deviceptr src, size_t bytes);
/* Waits for the context's stream; `what` names the op in the error (and the validate
 * record, when one was written, becomes the error). */
adg_error *kern_cuda_sync(kern_cuda_ctx *ctx, const char *what);

/* ---- Ops ---------------------------------------------------------------------------
 * All asynchronous on the context's stream; every launch is checked.  Tensors are
 * row-major, quantized rows are ggml blocks, activations f32, indices int32. */

/* dst[i, :] = float(src[ids[i], :]); src has nrows rows of ncols elements of `type`
 * (F32, F16, BF16, Q4_0, Q8_0).  n_ids may exceed 65,535 (rows run on grid.x). */
adg_error *kern_cuda_get_rows(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr src, int64_t nrows,
                              int64_t ncols, kern_cu_deviceptr ids, int64_t n_ids, kern_cu_deviceptr dst);

/* y[r] = sum_k W[r, k] * x[k] for W in Q4_0 or Q8_0 (nrows x ncols), x and y f32.
 * x is quantized to Q8 blocks on the device (as ggml does) and the dot products use
 * dp4a.  `scratch` must hold kern_cuda_gemv_scratch(ncols) bytes. */
size_t kern_cuda_gemv_scratch(int64_t ncols);
adg_error *kern_cuda_gemv(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int64_t nrows, int64_t ncols,
                          kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr scratch);

/* Prompt GEMM: Y[n, r] = sum_k W[r, k] * X[n, k]; W Q4_0/Q8_0/F16/F32 (M x K), X f32
 * (N x K), Y f32 (N x M).  Tensor cores on every supported arch: for Q4_0/Q8_0 W, X is
 * quantised to q8_0 as on the CPU, then either int8 MMA (the CPU reference's arithmetic
 * exactly) or f16 WMMA (X and W rounded to f16, f32 sums), see kern_cuda_set_gemm_kernel.
 * F32 W (the MoE router, whose logits pick experts) is multiplied in f32 on the SIMT
 * cores, nothing rounded, for any N (decode too) and without scratch.
 * `scratch` must hold kern_cuda_gemm_scratch(N, K) bytes (X quantised or in f16). */
size_t kern_cuda_gemm_scratch(int64_t n, int64_t k);
adg_error *kern_cuda_gemm(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int64_t m, int64_t k,
                          kern_cu_deviceptr x, int64_t n, kern_cu_deviceptr y, kern_cu_deviceptr scratch);

/* MoE routing: for each of n tokens, softmax over n_expert logits, the top k experts
 * (ids int32 n x k, weights f32 n x k, renormalised when `norm`); k <= 32, n_expert <= 3072. */
adg_error *kern_cuda_moe_route(kern_cuda_ctx *ctx, kern_cu_deviceptr logits, int64_t n, int n_expert, int k,
                               bool norm, kern_cu_deviceptr ids, kern_cu_deviceptr weights);
/* The same, and when ids_gu is not 0 also, per token, the k ids followed by the same ids
 * + n_expert (int32 n x 2k): the jobs of one grouped matvec over the gate experts and the
 * up experts stacked in one buffer (gate's n_expert matrices, then up's). */
adg_error *kern_cuda_moe_route_gu(kern_cuda_ctx *ctx, kern_cu_deviceptr logits, int64_t n, int n_expert, int k,
                                  bool norm, kern_cu_deviceptr ids, kern_cu_deviceptr weights,
                                  kern_cu_deviceptr ids_gu);
/* One token's router and top-k in one launch, with kern_cuda_gemm's (f32, n = 1) logits
 * and kern_cuda_moe_route_gu's choices: logits [n_expert] = W x (W f32 n_expert x d), then
 * ids, weights and (when not 0) ids_gu as there.  counter: a device uint32 that is 0
 * before the first call (the launch leaves it 0 again); one per stream of calls. */
adg_error *kern_cuda_router_topk(kern_cuda_ctx *ctx, kern_cu_deviceptr w, kern_cu_deviceptr x, int64_t d,
                                 int n_expert, int k, bool norm, kern_cu_deviceptr logits, kern_cu_deviceptr ids,
                                 kern_cu_deviceptr weights, kern_cu_deviceptr ids_gu, kern_cu_deviceptr counter);
/* Grouped expert matvec for one token: y[j, r] = sum_k W[ids[j]][r, k] * x[j or 0, k] for
 * j < n_used; W is n_expert stacked Q4_0/Q8_0 matrices of nrows x ncols; x is n_x rows
 * (1: shared input, n_used: one per expert). */
adg_error *kern_cuda_moe_gemv(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                              int64_t ncols, kern_cu_deviceptr ids, int n_used, kern_cu_deviceptr x, int n_x,
                              kern_cu_deviceptr y, kern_cu_deviceptr scratch);

/* y = x / sqrt(mean(x^2) + eps) * w, per row (n rows of d). */
adg_error *kern_cuda_rmsnorm(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr w, kern_cu_deviceptr y,
                             int64_t n, int64_t d, float eps);
/* x += o, then y = rmsnorm(x) * w (n rows of d): kern_cuda_add then kern_cuda_rmsnorm in
 * one launch, with their results. */
adg_error *kern_cuda_add_rmsnorm(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr o, kern_cu_deviceptr w,
                                 kern_cu_deviceptr y, int64_t n, int64_t d, float eps);
/* What follows the Q/K/V projections of n_tok tokens, in one launch with the results of
 * the separate ops: q and k RMSNorm per head (q_norm, k_norm [hd]) and NeoX RoPE at the
 * positions pos (device int32 [n_tok]), q in place; k and v (f32 [n_tok][n_kv_head*hd])
 * stored in f16 into the caches at rows pos[t].  pos0 is the first position, checked on
 * the host against cache_rows (a CUDA graph replay's positions are the caller's to
 * check).  hd even, <= 256. */
adg_error *kern_cuda_qkv_post(kern_cuda_ctx *ctx, kern_cu_deviceptr q, kern_cu_deviceptr k, kern_cu_deviceptr v,
                              kern_cu_deviceptr q_norm, kern_cu_deviceptr k_norm, kern_cu_deviceptr pos,
                              kern_cu_deviceptr k_cache, kern_cu_deviceptr v_cache, int64_t cache_rows, int64_t pos0,
                              int64_t n_tok, int n_head, int n_kv_head, int hd, float eps, float freq_base);
/* NeoX RoPE in place on x [n_tok, n_head, head_dim]; pos int32 [n_tok]. */
adg_error *kern_cuda_rope_neox(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr pos, int64_t n_tok,
                               int n_head, int head_dim, float freq_base);
/* Row softmax in place: n rows of d, scaled by `scale` first. */
adg_error *kern_cuda_softmax(kern_cuda_ctx *ctx, kern_cu_deviceptr x, int64_t n, int64_t d, float scale);
/* Decode attention with GQA: q [n_head, hd], K/V cache f16 [n_kv, n_kv_head, hd],
 * out [n_head, hd]; softmax(q.k * scale) over the first n_kv positions. */
adg_error *kern_cuda_attention(kern_cuda_ctx *ctx, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                               kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head, int hd,
                               int64_t n_kv, float scale);
/* The same over positions 0 .. pos[0] when pos (a device int32) is not 0: the length is
 * read on the device, so a CUDA graph's replay attends over the current cache.  n_kv is
 * then only checked (> 0). */
adg_error *kern_cuda_attention_at(kern_cuda_ctx *ctx, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                                  kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head, int hd,
                                  int64_t n_kv, kern_cu_deviceptr pos, float scale, kern_cu_deviceptr q8_scratch);

/* ---- Quantised on the way out ---------------------------------------------------------
 * A generated token's GEMVs take q8_0 activations, which kern_cuda_gemv makes in its
 * `scratch` with a launch of its own.  The ops that produce a GEMV's input can write them
 * instead (q8_scratch: that GEMV's scratch; 0: not), with kern_quantize_q8's values, and
 * the GEMV's _q8 variant then reads them: one launch fewer per GEMV.  The _q8 GEMVs'
 * `x` must be what the last _q8 producer into that scratch wrote (it names the input in
 * the launch ring; the values come from scratch).  n (or a row) a multiple of 32. */
adg_error *kern_cuda_rmsnorm_q8(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr w, kern_cu_deviceptr y,
                                int64_t n, int64_t d, float eps, kern_cu_deviceptr q8_scratch);
adg_error *kern_cuda_add_rmsnorm_q8(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr o, kern_cu_deviceptr w,
                                    kern_cu_deviceptr y, int64_t n, int64_t d, float eps, kern_cu_deviceptr q8_scratch);
adg_error *kern_cuda_silu_mul_q8(kern_cuda_ctx *ctx, kern_cu_deviceptr gate, kern_cu_deviceptr up,
                                 kern_cu_deviceptr out, int64_t n, kern_cu_deviceptr q8_scratch);
adg_error *kern_cuda_gemv_q8(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int64_t nrows, int64_t ncols,
                             kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr scratch);
adg_error *kern_cuda_moe_gemv_q8(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int n_expert,
                                 int64_t nrows, int64_t ncols, kern_cu_deviceptr ids, int n_used, kern_cu_deviceptr x,
                                 int n_x, kern_cu_deviceptr y, kern_cu_deviceptr scratch);
/* out = silu(gate) * up, n elements. */
adg_error *kern_cuda_silu_mul(kern_cuda_ctx *ctx, kern_cu_deviceptr gate, kern_cu_deviceptr up,
                              kern_cu_deviceptr out, int64_t n);
/* out = a + b, n elements. */
adg_error *kern_cuda_add(kern_cuda_ctx *ctx, kern_cu_deviceptr a, kern_cu_deviceptr b, kern_cu_deviceptr out,
                         int64_t n);

/* ---- Batch ops of the GPU layers --------------------------------------------------
 * What keeps a transformer layer on the device from one layer to the next. */

/* Stores n_tok rows of row_elems f32 values (src) into an f16 cache of cache_rows rows at
 * rows pos0 .. pos0+n_tok-1.  With the KV layout [pos][kv_head][d], row_elems =
 * n_kv_head * d and one call stores a ubatch's keys (or values). */
adg_error *kern_cuda_kv_store(kern_cuda_ctx *ctx, kern_cu_deviceptr src, kern_cu_deviceptr cache, int64_t cache_rows,
                              int64_t pos0, int64_t n_tok, int64_t row_elems);
/* The same with the first row read on the device from pos[0] (a device int32) when pos is
 * not 0, so that a CUDA graph's replay stores at the current position; pos0 is the
 * position the host checks against cache_rows (the caller checks every replay's). */
adg_error *kern_cuda_kv_store_at(kern_cuda_ctx *ctx, kern_cu_deviceptr src, kern_cu_deviceptr cache,
                                 int64_t cache_rows, int64_t pos0, kern_cu_deviceptr pos, int64_t n_tok,
                                 int64_t row_elems);
/* x[t, :] += sum_j w[t, j] * y[t*k + j, :] for t < n_tok, j < k (in order of j): the
 * routing-weighted sum of the expert outputs into the residual. */
adg_error *kern_cuda_moe_wsum(kern_cuda_ctx *ctx, kern_cu_deviceptr x, kern_cu_deviceptr y, kern_cu_deviceptr w,
                              int64_t n_tok, int k, int64_t d);
/* Causal GQA attention for n_tok query tokens at positions pos0 .. pos0+n_tok-1, whose
 * keys and values are already in the f16 cache [pos][n_kv_head][hd]: token t attends to
 * positions 0 .. pos0+t.  q and out are [n_tok][n_head][hd]. */
adg_error *kern_cuda_attention_causal(kern_cuda_ctx *ctx, kern_cu_deviceptr q, kern_cu_deviceptr k_cache,
                                      kern_cu_deviceptr v_cache, kern_cu_deviceptr out, int n_head, int n_kv_head,
                                      int hd, int64_t n_tok, int64_t pos0, float scale);
/* Grouped expert matmul for a batch of n_tok tokens with n_used experts each (ids int32
 * [n_tok][n_used]): y[t*n_used + j, r] = sum_k W[ids[t, j]][r, k] * x[row, k], where row is
 * t (x_per_slot false: the gate/up input, one row per token) or t*n_used + j (x_per_slot
 * true: the down input, one row per slot).  The slots are grouped by expert on the device,
 * so each expert's weights are read once per batch.  W: Q4_0/Q8_0, n_expert stacked
 * nrows x ncols matrices.  With the int8 kernel selected (kern_cuda_set_gemm_kernel) the
 * experts run on int8 tensor cores (the CPU reference's floats exactly), except under
 * --gpu-validate or a planted fault (the dp4a kernel keeps the validate record).
 * `scratch` must hold kern_cuda_moe_gemm_scratch(...) bytes. */
size_t kern_cuda_moe_gemm_scratch(int64_t n_tok, int n_used, int n_expert, int64_t ncols, bool x_per_slot);
adg_error *kern_cuda_moe_gemm(kern_cuda_ctx *ctx, kern_type type, kern_cu_deviceptr w, int n_expert, int64_t nrows,
                              int64_t ncols, kern_cu_deviceptr ids, int64_t n_tok, int n_used, kern_cu_deviceptr x,
                              bool x_per_slot, kern_cu_deviceptr y, kern_cu_deviceptr scratch);

/* ---- Timing marks on the stream -----------------------------------------------------
 * n CUDA events recorded between launches, so that a caller that never waits per op
 * (the engine's GPU layers) can still say how long each part took on the GPU once the
 * stream has been waited for. */
typedef struct kern_cuda_marks kern_cuda_marks;
adg_error *kern_cuda_marks_new(kern_cuda_ctx *ctx, int n, kern_cuda_marks **out);
/* Records mark i (0 <= i < n) after everything launched so far. */
adg_error *kern_cuda_mark(kern_cuda_ctx *ctx, kern_cuda_marks *m, int i);
/* Milliseconds between marks i and j; both recorded and complete (wait first). */
adg_error *kern_cuda_marks_ms(kern_cuda_ctx *ctx, kern_cuda_marks *m, int i, int j, double *ms);
void kern_cuda_marks_free(kern_cuda_ctx *ctx, kern_cuda_marks *m);

/* ---- CUDA graphs: a sequence of launches captured once, replayed by one call ---------
 * A token of generation is ~20 launches a layer; launched one by one, the host's launch
 * cost (a few µs each) is most of a small model's token time.  Between
 * kern_cuda_graph_begin and kern_cuda_graph_end the context's launches (and marks) are
 * recorded, not run; kern_cuda_graph_launch then replays them all.  Everything a replay
 * must see change (positions, token ids) has to be read by the kernels from device
 * memory, and no copy or wait may be made while capturing.  Each replay puts the
 * captured launches back into the launch ring (the last KERN_CUDA_LAUNCH_RING of them),
 * so a fault report still lists what ran last.  Not available (ADG_E_UNSUPPORTED) under
 * --gpu-validate, --sync-each or a planted fault (they act per launch), or with a driver
 * that lacks the graph calls. */
typedef struct kern_cuda_graph kern_cuda_graph;
/* Why graphs cannot be used with this context now (NULL: they can). */
const char *kern_cuda_graph_unavailable(const kern_cuda_ctx *ctx);
adg_error *kern_cuda_graph_begin(kern_cuda_ctx *ctx);
/* Ends the capture and instantiates it.  After a failed launch during capture, call it
 * with keep = false: the capture is ended and discarded (*out stays NULL). */
adg_error *kern_cuda_graph_end(kern_cuda_ctx *ctx, bool keep, kern_cuda_graph **out);
adg_error *kern_cuda_graph_launch(kern_cuda_ctx *ctx, kern_cuda_graph *g);
/* Launches the graph holds (captured kernels). */
size_t kern_cuda_graph_nodes(const kern_cuda_graph *g);
void kern_cuda_graph_free(kern_cuda_ctx *ctx, kern_cuda_graph *g);

/* ---- Launch geometry (pure host logic, unit-tested) --------------------------------- */

typedef struct kern_cuda_geom {
    unsigned grid[3], block[3];
} kern_cuda_geom;
/* One block row per item on grid.x, clamped to max_grid_x (items beyond it are covered
 * by the kernels' grid-stride loops); grid.y and grid.z stay 1. */
kern_cuda_geom kern_cuda_geom_rows(int64_t rows, unsigned rows_per_block, unsigned block_x, unsigned max_grid_x);

#endif

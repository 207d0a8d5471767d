/* `amxdiag bench kernels --gpu`: the CUDA kernels at Qwen3-30B-A3B's shapes, against the
 * device's measured copy bandwidth and cuBLAS; plus --check (kernels vs CPU reference)
 * and --inject-fault (planted faults, for the illegal-access reports). */
#include "kernels/cuda/kern_cuda_bench.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/cuda_cublas.h"
#include "kernels/cuda/kern_cuda_check.h"
#include "kernels/cuda/kern_cuda_internal.h"

#define BENCH_SCHEMA "amxdiag.bench.gpu/1"

typedef struct bopts {
    int device, iters, tokens, gemv_rows, gemm_bk, gemm_tile, gemm_stages;
    int gemm_dq; /* --gemm-dq: -1 auto, 0 off, 1 on; -2 not given ($AMXDIAG_GPU_GEMM_DQ or auto) */
    bool json, quick, check, validate, sync_each, force_ptx, no_cublas, no_bench;
    bool gemm_kind_set, gemm_sweep; /* gemm_sweep: --gemm-tile all */
    kern_cuda_gemm_kind gemm_kind;
    unsigned only; /* bit per group (ONLY_*); 0 = all */
    const char *output;
    kern_cuda_fault fault;
    kern_cuda_gemv_cfg gemv[16]; /* --gemv: the GEMV group runs once per configuration; the first one is the
                                    context's (checks, goals) */
    int n_gemv;
    bool gemv_q8; /* --gemv-q8: time the _q8 GEMVs (input quantised beforehand, as in generation) */
} bopts;

enum { ONLY_GEMV = 1, ONLY_GET_ROWS = 2, ONLY_GEMM = 4, ONLY_MISC = 8, ONLY_MOE = 16 };
static const char *const only_names[] = {"gemv", "get_rows", "gemm", "misc", "moe"};

typedef struct bench {
    bopts *o;
    kern_cuda_ctx *c;
    const kern_cuda_driver *d;
    kern_cu_event ev[2];
    kern_cu_deviceptr flush;
    size_t flush_bytes;
    double copy_gbps;
    kern_cublas *blas;
    json_t *rows;
} bench;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag bench kernels --gpu [options]\n"
            "\n"
            "Times amxdiag's CUDA kernels at Qwen3-30B-A3B's shapes (decode GEMV, grouped expert GEMV,\n"
            "GET_ROWS, prompt GEMM on tensor cores, routing, norms, attention) and reports GB/s against\n"
            "the device's measured device-to-device copy bandwidth and TFLOP/s against cuBLAS.\n"
            "\n"
            "options:\n"
            "  --device N            GPU ordinal (default 0)\n"
            "  --iters N             timed runs per kernel, median reported (default 20)\n"
            "  --tokens N            prompt tokens for the GEMMs (default 512)\n"
            "  --quick               small shapes (seconds; for tests)\n"
            "  --check               first compare every kernel with the CPU reference (odd shapes too)\n"
            "  --check-only          --check without the benchmark\n"
            "  --gpu-validate        bounds-check indices on the device; report the first bad one\n"
            "  --sync-each           synchronise after every launch (like CUDA_LAUNCH_BLOCKING=1)\n"
            "  --inject-fault NAME   plant a fault and report what the checks see: %s\n"
            "  --force-ptx           load the PTX image (driver JIT) instead of the fatbin's SASS\n"
            "  --no-cublas           do not load cuBLAS for the GEMM comparison\n"
            "  --gemv-rows N         the row GEMV kernels with N rows per warp iteration, 1..4; 0 = auto\n"
            "                        (--gemv decides; the row kernels' auto is 4 for Q4_0, 1 for Q8_0)\n"
            "  --gemv SPEC           decode GEMV configuration: auto, rows (the row kernels) or sb (the\n"
            "                        super-block kernel) with ,load=cs|nc|async ,warps=4|8 ,waves=N\n"
            "                        ,stages=2|3 (default auto, or $AMXDIAG_GPU_GEMV); repeatable: the GEMV\n"
            "                        rows are timed once per SPEC, the first one is used by --check and the\n"
            "                        goals; sweep: auto, rows and ten sb variants\n"
            "  --gemv-q8             time the GEMVs as a generated token runs them: the _q8 variants (input\n"
            "                        quantised beforehand), back to back over copies of the weights\n"
            "                        spanning 192 MiB (never from L2); the time per call\n"
            "  --gemm-bk N           experimental: prompt GEMM k stage, 32 or 64 (default 32)\n"
            "  --gemm-kernel K       prompt GEMM: auto, wmma (f16), mma (int8 tensor cores, sm_80+,\n"
            "                        bit-exact; q4_0/q8_0 only), f16mma (weights dequantised to f16 in\n"
            "                        shared memory, sm_80+) or wgmma (the same on Hopper's warpgroup MMA,\n"
            "                        compute capability 9.0 only); f16 weights take f16mma or wgmma\n"
            "                        unless wmma is asked; default auto, or $AMXDIAG_GPU_GEMM. The\n"
            "                        benchmark times every kernel that runs; this picks the one the\n"
            "                        goals and the checks use\n"
            "  --gemm-tile T         GEMM tile variant: int8 v0..v7 or its name (128x64/32x64: CTA rows x\n"
            "                        tokens / warp rows x tokens), 64 or 128 (v0, v1), f16mma f0..f8\n"
            "                        (f16:128x128/64x32), wgmma w0..w3 (wg:128x256), auto (default);\n"
            "                        all: time every int8, f16mma and wgmma variant (no f16 WMMA rows;\n"
            "                        with --gemm-kernel mma, f16mma or wgmma: that kernel's only)\n"
            "  --gemm-stages N       GEMM k stages in flight, 2 to 4 (default 3; f16mma at least 3)\n"
            "  --gemm-dq WHEN        Q4_0/Q8_0 prompt GEMM in two passes (the weights to f16 in a\n"
            "                        workspace, then the f16-weight kernel): auto (where measured faster:\n"
            "                        compute capability 9.0, >= 512 tokens, not the LM head), on, off;\n"
            "                        default auto, or $AMXDIAG_GPU_GEMM_DQ (auto|0|1)\n"
            "  --only LIST           time only these groups: gemv, get_rows, gemm, moe (the grouped expert\n"
            "                        GEMM of a prompt; with --gemm-tile all every grouped tile), misc\n"
            "                        (comma-separated)\n"
            "  --json                JSON on stdout (schema " BENCH_SCHEMA ")\n"
            "  -o, --output FILE     also write the JSON to FILE (atomically)\n"
            "  -h, --help            this text\n"
            "\n"
            "exit codes: 0 ran; 1 a --check comparison failed, or an injected fault was reported (as\n"
            "expected); 2 usage error, no GPU/driver, CUDA error, or an injected fault went unnoticed.\n"
            "See docs/cuda-kernels.md.\n",
            kern_cuda_fault_names());
}

static int parse(int argc, char **argv, bopts *o)
{
    enum { O_DEVICE = 256, O_ITERS, O_TOKENS, O_QUICK, O_CHECK, O_CHECK_ONLY, O_VALIDATE, O_SYNC, O_FAULT, O_PTX,
           O_NOBLAS, O_JSON, O_GPU, O_ROWS, O_BK, O_GKIND, O_GTILE, O_GSTAGES, O_ONLY, O_GEMV, O_GEMV_Q8, O_GDQ };
    static const struct option longopts[] = {
        {"device", required_argument, 0, O_DEVICE}, {"iters", required_argument, 0, O_ITERS},
        {"tokens", required_argument, 0, O_TOKENS}, {"quick", no_argument, 0, O_QUICK},
        {"check", no_argument, 0, O_CHECK},         {"check-only", no_argument, 0, O_CHECK_ONLY},
        {"gpu-validate", no_argument, 0, O_VALIDATE}, {"sync-each", no_argument, 0, O_SYNC},
        {"inject-fault", required_argument, 0, O_FAULT}, {"force-ptx", no_argument, 0, O_PTX},
        {"no-cublas", no_argument, 0, O_NOBLAS},    {"json", no_argument, 0, O_JSON},
        {"gpu", no_argument, 0, O_GPU},             {"gemv-rows", required_argument, 0, O_ROWS},
        {"gemm-bk", required_argument, 0, O_BK},             {"output", required_argument, 0, 'o'},
        {"gemm-kernel", required_argument, 0, O_GKIND}, {"gemm-tile", required_argument, 0, O_GTILE},
        {"gemm-stages", required_argument, 0, O_GSTAGES}, {"only", required_argument, 0, O_ONLY},
        {"gemm-dq", required_argument, 0, O_GDQ},
        {"gemv", required_argument, 0, O_GEMV},    {"gemv-q8", no_argument, 0, O_GEMV_Q8},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    *o = (bopts){.iters = 20, .tokens = 512, .gemv_rows = 0, .gemm_bk = 32, .gemm_dq = -2};
    optind = 0;
    opterr = 1;
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_DEVICE:
        case O_ITERS:
        case O_TOKENS:
            if (!adg_parse_u64(optarg, &v) || v > 1000000 || (ch != O_DEVICE && v == 0)) {
                fprintf(stderr, "amxdiag: error: bench: bad number '%s' for --%s\n", optarg,
                        ch == O_DEVICE ? "device" : ch == O_ITERS ? "iters" : "tokens");
                return ADG_EXIT_USAGE;
            }
            if (ch == O_DEVICE)
                o->device = (int)v;
            else if (ch == O_ITERS)
                o->iters = (int)v;
            else
                o->tokens = (int)v;
            break;
        case O_ROWS:
            if (!adg_parse_u64(optarg, &v) || v > 4) {
                fprintf(stderr, "amxdiag: error: bench: --gemv-rows takes 0 (auto) to 4, not '%s'\n", optarg);
                return ADG_EXIT_USAGE;
            }
            o->gemv_rows = (int)v;
            break;
        case O_BK:
            if (!adg_parse_u64(optarg, &v) || (v != 32 && v != 64)) {
                fprintf(stderr, "amxdiag: error: bench: --gemm-bk takes 32 or 64, not '%s'\n", optarg);
                return ADG_EXIT_USAGE;
            }
            o->gemm_bk = (int)v;
            break;
        case O_GKIND:
            if (!kern_cuda_gemm_kind_parse(optarg, &o->gemm_kind)) {
                fprintf(stderr, "amxdiag: error: bench: --gemm-kernel takes auto, wmma, mma, f16mma or wgmma, not '%s'\n",
                        optarg);
                return ADG_EXIT_USAGE;
            }
            o->gemm_kind_set = true;
            break;
        case O_GTILE: {
            int code = strcmp(optarg, "all") == 0 ? 0 : kern_cuda_gemm_tile_parse(optarg);
            if (code < 0) {
                fprintf(stderr,
                        "amxdiag: error: bench: --gemm-tile takes v0..v%d, f0..f%d, w0..w%d, a variant's name "
                        "(128x64/32x64, f16:128x128/64x32, wg:128x256), 64, 128, auto or all, not '%s'\n",
                        kern_cuda_gemm_n_tiles() - 1, kern_cuda_gemm_n_f16_tiles() - 1,
                        kern_cuda_gemm_n_wgmma_tiles() - 1, optarg);
                return ADG_EXIT_USAGE;
            }
            o->gemm_tile = code;
            o->gemm_sweep = strcmp(optarg, "all") == 0;
            break;
        }
        case O_GDQ:
            if (strcmp(optarg, "auto") == 0 || strcmp(optarg, "on") == 0 || strcmp(optarg, "off") == 0)
                o->gemm_dq = optarg[0] == 'a' ? -1 : optarg[1] == 'n' ? 1 : 0;
            else {
                fprintf(stderr, "amxdiag: error: bench: --gemm-dq takes auto, on or off, not '%s'\n", optarg);
                return ADG_EXIT_USAGE;
            }
            break;
        case O_GSTAGES:
            if (!adg_parse_u64(optarg, &v) || (v != 0 && (v < 2 || v > 4))) {
                fprintf(stderr, "amxdiag: error: bench: --gemm-stages takes 2, 3 or 4, not '%s'\n", optarg);
                return ADG_EXIT_USAGE;
            }
            o->gemm_stages = (int)v;
            break;
        case O_ONLY: {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *save = NULL;
            for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                size_t i = 0;
                while (i < ADG_ARRAY_LEN(only_names) && strcmp(tok, only_names[i]))
                    i++;
                if (i == ADG_ARRAY_LEN(only_names)) {
                    fprintf(stderr, "amxdiag: error: bench: --only: unknown group '%s'\n"
                                    "  hint: choose from gemv, get_rows, gemm, moe, misc\n", tok);
                    return ADG_EXIT_USAGE;
                }
                o->only |= 1u << i;
            }
            if (!o->only) {
                fprintf(stderr, "amxdiag: error: bench: --only needs a group\n");
                return ADG_EXIT_USAGE;
            }
            break;
        }
        case O_GEMV: {
            size_t n_sweep = 0;
            const char *const *sweep = kern_cuda_gemv_sweep(&n_sweep);
            const bool all = !strcmp(optarg, "sweep");
            const size_t n = all ? n_sweep : 1;
            for (size_t i = 0; i < n; i++) {
                if (o->n_gemv == (int)ADG_ARRAY_LEN(o->gemv)) {
                    fprintf(stderr, "amxdiag: error: bench: at most %d --gemv configurations\n", o->n_gemv);
                    return ADG_EXIT_USAGE;
                }
                adg_error *pe = kern_cuda_gemv_parse(all ? sweep[i] : optarg, &o->gemv[o->n_gemv]);
                if (pe) {
                    fprintf(stderr, "amxdiag: error: bench: --gemv: %s\n  hint: %s\n", adg_error_msg(pe),
                            adg_error_remedy(pe));
                    adg_error_free(pe);
                    return ADG_EXIT_USAGE;
                }
                o->n_gemv++;
            }
            break;
        }
        case O_GEMV_Q8: o->gemv_q8 = true; break;
        case O_QUICK: o->quick = true; break;
        case O_CHECK: o->check = true; break;
        case O_CHECK_ONLY: o->check = o->no_bench = true; break;
        case O_VALIDATE: o->validate = true; break;
        case O_SYNC: o->sync_each = true; break;
        case O_PTX: o->force_ptx = true; break;
        case O_NOBLAS: o->no_cublas = true; break;
        case O_JSON: o->json = true; break;
        case O_GPU: break;
        case 'o': o->output = optarg; break;
        case O_FAULT:
            if (!kern_cuda_fault_parse(optarg, &o->fault)) {
                fprintf(stderr, "amxdiag: error: bench: unknown fault '%s'\n  hint: choose one of: %s\n", optarg,
                        kern_cuda_fault_names());
                return ADG_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return -1;
        default: return adg_cmd_usage_error("bench kernels --gpu");
        }
    }
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "kernels") && strcmp(argv[i], "bench")) {
            fprintf(stderr, "amxdiag: error: bench kernels --gpu: unexpected argument '%s'\n"
                            "  hint: see 'amxdiag bench kernels --gpu --help'\n", argv[i]);
            return ADG_EXIT_USAGE;
        }
    return 0;
}

/* ---- timing ------------------------------------------------------------------------- */

typedef adg_error *(*op_fn)(void *arg);

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median kernel time of o->iters runs; the L2 cache is flushed before each (the
 * weights of a real model are never L2-resident between two uses). */
static adg_error *time_op(bench *b, op_fn fn, void *arg, double *median_ms)
{
    const kern_cuda_driver *d = b->d;
    kern_cu_stream s = b->c->stream;
    adg_error *e = fn(arg); /* warm-up (and module first-use costs) */
    if (e)
        return e;
    double *t = calloc((size_t)b->o->iters, sizeof *t);
    if (!t)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    kern_cu_result r = 0;
    for (int i = 0; i < b->o->iters && !e; i++) {
        r = d->cuStreamSynchronize(s);
        if (!r && b->flush)
            r = d->cuMemsetD32(b->flush, (unsigned)i, b->flush_bytes / 4);
        if (!r)
            r = d->cuCtxSynchronize();
        if (!r)
            r = d->cuEventRecord(b->ev[0], s);
        if (r)
            break;
        e = fn(arg);
        if (e)
            break;
        float ms = 0;
        r = d->cuEventRecord(b->ev[1], s);
        if (!r)
            r = d->cuEventSynchronize(b->ev[1]);
        if (!r)
            r = d->cuEventElapsedTime(&ms, b->ev[0], b->ev[1]);
        t[i] = ms;
    }
    if (!e && r)
        e = kern_cuda_errf(r, "timing a kernel");
    if (!e) {
        qsort(t, (size_t)b->o->iters, sizeof *t, cmp_double);
        *median_ms = t[b->o->iters / 2];
    }
    free(t);
    return e;
}

static void add_row(bench *b, const char *group, const char *name, const char *type, const char *shape, double ms,
                    double bytes, double flops, double ref_tflops)
{
    double gbps = bytes > 0 ? bytes / (ms * 1e-3) / 1e9 : 0;
    double tflops = flops > 0 ? flops / (ms * 1e-3) / 1e12 : 0;
    json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f}", "group", group, "name", name, "type", type, "shape",
                            shape, "us", ms * 1e3, "bytes", bytes);
    if (bytes > 0) {
        json_object_set_new(row, "gbps", json_real(gbps));
        json_object_set_new(row, "pct_copy", json_real(100.0 * gbps / b->copy_gbps));
    }
    if (flops > 0) {
        json_object_set_new(row, "tflops", json_real(tflops));
        if (ref_tflops > 0) {
            json_object_set_new(row, "cublas_tflops", json_real(ref_tflops));
            json_object_set_new(row, "pct_cublas", json_real(100.0 * tflops / ref_tflops));
        }
    }
    json_array_append_new(b->rows, row);
    if (!b->o->json) {
        char g[16] = "", pc[16] = "", tf[16] = "", cb[16] = "", pb[16] = "";
        if (bytes > 0) {
            snprintf(g, sizeof g, "%.0f", gbps);
            snprintf(pc, sizeof pc, "%.0f%%", 100.0 * gbps / b->copy_gbps);
        }
        if (flops > 0)
            snprintf(tf, sizeof tf, "%.1f", tflops);
        if (ref_tflops > 0) {
            snprintf(cb, sizeof cb, "%.1f", ref_tflops);
            snprintf(pb, sizeof pb, "%.0f%%", 100.0 * tflops / ref_tflops);
        }
        printf("%-9s %-14s %-5s %-26s %10.1f %7s %6s %8s %8s %7s\n", group, name, type, shape, ms * 1e3, g, pc, tf, cb,
               pb);
    }
}

/* ---- the cases ---------------------------------------------------------------------- */

/* " (stepped down to fit N bytes of shared memory a block: ...)" for a configuration
 * kern_cuda_gemv_fit changed, "" for one that runs as asked. */
static const char *gemv_fit_note(const kern_cuda_ctx *c, unsigned fit, char *buf, size_t len)
{
    char steps[128];
    if (!fit)
        snprintf(buf, len, "%s", "");
    else
        snprintf(buf, len, " (stepped down to fit %d bytes of shared memory a block: %s)", c->gemv_dev.smem_optin,
                 kern_cuda_gemv_fit_str(fit, steps, sizeof steps));
    return buf;
}

typedef struct gemv_arg {
    kern_cuda_ctx *c;
    kern_type t;
    kern_cu_deviceptr w, x, y, s, ids;
    int64_t m, k;
    int n_expert, n_used, n_x;
    bool pre;     /* the _q8 variants: x already quantised into s */
    int copies;   /* calls per timed op, each on its own copy of the weights ... */
    size_t wstep; /* ... this many bytes apart */
} gemv_arg;

static adg_error *run_gemv(void *p)
{
    gemv_arg *a = p;
    adg_error *e = NULL;
    for (int i = 0; i < (a->copies > 0 ? a->copies : 1) && !e; i++) {
        kern_cu_deviceptr w = a->w + (kern_cu_deviceptr)i * a->wstep;
        if (a->ids)
            e = (a->pre ? kern_cuda_moe_gemv_q8 : kern_cuda_moe_gemv)(a->c, a->t, w, a->n_expert, a->m, a->k, a->ids,
                                                                     a->n_used, a->x, a->n_x, a->y, a->s);
        else
            e = (a->pre ? kern_cuda_gemv_q8 : kern_cuda_gemv)(a->c, a->t, w, a->m, a->k, a->x, a->y, a->s);
    }
    return e;
}

static adg_error *alloc_fill(bench *b, size_t bytes, unsigned pattern, kern_cu_deviceptr *p)
{
    adg_error *e = kern_cuda_alloc(b->c, bytes, p);
    /* cuMemsetD32 runs on the legacy stream, which ours does not wait for */
    if (!e && (b->d->cuMemsetD32(*p, pattern, bytes / 4) != KERN_CU_SUCCESS ||
               b->d->cuCtxSynchronize() != KERN_CU_SUCCESS))
        e = adg_error_new(ADG_E_CUDA, "filling a benchmark buffer failed");
    return e;
}

/* A pattern that is a valid f16 1.0 in every 16-bit half: quantized blocks get scale 1. */
#define PAT_F16 0x3C003C00u
#define PAT_F32 0x3F800000u

static adg_error *bench_gemv(bench *b, const char *name, kern_type t, int64_t m, int64_t k, int n_expert, int n_used,
                             int n_x)
{
    gemv_arg a = {.c = b->c, .t = t, .m = m, .k = k, .n_expert = n_expert, .n_used = n_used, .n_x = n_x};
    size_t rs = kern_row_size(t, k);
    size_t wbytes = rs * (size_t)m * (size_t)(n_expert ? n_expert : 1);
    int jobs = n_expert ? n_used : 1, nx = n_expert ? n_x : 1;
    /* --gemv-q8 times a GEMV as generation runs it: back to back with others (one launch
     * after another, as in a token's graph) and never from L2: calls over copies of the
     * weights spanning 192 MiB (several times any L2), the time per call */
    a.copies = 1;
    a.wstep = (wbytes + 255) & ~(size_t)255;
    if (b->o->gemv_q8 && a.wstep < (192u << 20)) {
        size_t n = ((192u << 20) + a.wstep - 1) / a.wstep;
        a.copies = n > 64 ? 64 : (int)n;
    }
    adg_error *e = alloc_fill(b, a.wstep * (size_t)a.copies, PAT_F16, &a.w);
    if (!e)
        e = alloc_fill(b, (size_t)(k * nx) * 4, PAT_F32, &a.x);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)(m * jobs) * 4, &a.y);
    if (!e)
        e = kern_cuda_alloc(b->c, kern_cuda_gemv_scratch(k * nx), &a.s);
    if (!e && n_expert) {
        int32_t ids[64];
        for (int j = 0; j < n_used; j++)
            ids[j] = (j * 37 + 5) % n_expert;
        e = kern_cuda_alloc(b->c, (size_t)n_used * 4, &a.ids);
        if (!e)
            e = kern_cuda_upload(b->c, a.ids, ids, (size_t)n_used * 4);
    }
    double ms = 0;
    if (!e && b->o->gemv_q8)
        e = run_gemv(&a); /* quantises x into the scratch the timed _q8 calls read */
    a.pre = b->o->gemv_q8;
    if (!e)
        e = time_op(b, run_gemv, &a, &ms);
    ms /= a.copies;
    if (!e) {
        char shape[64];
        if (n_expert)
            snprintf(shape, sizeof shape, "%dx(%lldx%lld) top-%d", n_expert, (long long)m, (long long)k, n_used);
        else
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)m, (long long)k);
        double bytes = (double)rs * (double)m * jobs + (double)(k * nx) * 4 + (double)(m * jobs) * 4;
        add_row(b, n_expert ? "moe_gemv" : "gemv", name, kern_type_name(t), shape, ms, bytes, 2.0 * m * k * jobs, 0);
        json_object_set_new(json_array_get(b->rows, json_array_size(b->rows) - 1), "gemv_kernel",
                            json_string(kern_cuda_gemv_kernel(b->c, t, m, k, jobs, (a.w & 15) == 0)));
    }
    kern_cuda_free(b->c, a.w);
    kern_cuda_free(b->c, a.x);
    kern_cuda_free(b->c, a.y);
    kern_cuda_free(b->c, a.s);
    kern_cuda_free(b->c, a.ids);
    return e;
}

typedef struct rows_arg {
    kern_cuda_ctx *c;
    kern_type t;
    kern_cu_deviceptr src, ids, dst;
    int64_t nrows, ncols, n_ids;
} rows_arg;

static adg_error *run_rows(void *p)
{
    rows_arg *a = p;
    return kern_cuda_get_rows(a->c, a->t, a->src, a->nrows, a->ncols, a->ids, a->n_ids, a->dst);
}

static adg_error *bench_get_rows(bench *b, kern_type t, int64_t nrows, int64_t ncols, int64_t n_ids)
{
    rows_arg a = {.c = b->c, .t = t, .nrows = nrows, .ncols = ncols, .n_ids = n_ids};
    size_t rs = kern_row_size(t, ncols);
    int32_t *ids = malloc((size_t)n_ids * 4);
    if (!ids)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    uint64_t st = 88172645463325252ull;
    for (int64_t i = 0; i < n_ids; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        ids[i] = (int32_t)(st % (uint64_t)nrows);
    }
    adg_error *e = alloc_fill(b, rs * (size_t)nrows, PAT_F16, &a.src);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)n_ids * 4, &a.ids);
    if (!e)
        e = kern_cuda_upload(b->c, a.ids, ids, (size_t)n_ids * 4);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)(n_ids * ncols) * 4, &a.dst);
    free(ids);
    double ms = 0;
    if (!e)
        e = time_op(b, run_rows, &a, &ms);
    if (!e) {
        char shape[64];
        snprintf(shape, sizeof shape, "%lld of %lldx%lld", (long long)n_ids, (long long)nrows, (long long)ncols);
        add_row(b, "get_rows", "token_embd", kern_type_name(t), shape, ms,
                (double)n_ids * ((double)rs + 4 + (double)ncols * 4), 0, 0);
    }
    kern_cuda_free(b->c, a.src);
    kern_cuda_free(b->c, a.ids);
    kern_cuda_free(b->c, a.dst);
    return e;
}

typedef struct gemm_arg {
    kern_cuda_ctx *c;
    kern_cublas *blas;
    kern_type t;
    kern_cu_deviceptr w, x, y, s;
    int64_t m, k, n;
} gemm_arg;

static adg_error *run_cublas_i8(void *p)
{
    gemm_arg *a = p;
    /* int8 W is the f16 buffer's first m*k bytes, int8 X the scratch's; Y taken as int32 */
    return kern_cublas_gemm_i8(a->blas, a->w, a->m, a->k, a->s, a->n, a->y);
}

static adg_error *run_gemm(void *p)
{
    gemm_arg *a = p;
    return kern_cuda_gemm(a->c, a->t, a->w, a->m, a->k, a->x, a->n, a->y, a->s);
}

static adg_error *run_cublas(void *p)
{
    gemm_arg *a = p;
    return kern_cublas_gemm_f16(a->blas, a->w, a->m, a->k, a->s, a->n, a->y);
}

/* cuBLAS's f16 GEMM as an op on f32 activations, the op amxdiag's GEMMs are timed as: X
 * converted to f16 first (by kern_f32_to_f16, the pass amxdiag's own GEMMs run before
 * their MMAs), then the GEMM.  The like-for-like denominator of pct_cublas_op. */
static adg_error *run_cublas_cvt(void *p)
{
    gemm_arg *a = p;
    long long ne = a->n * a->k;
    void *pa[] = {&a->x, &a->s, &ne};
    kern_cu_deviceptr ptrs[4] = {a->x, a->s, 0, 0};
    adg_error *e = kern_cuda_launch_fn(a->c, "cublas_x_to_f16", KF_F32_TO_F16, kern_cuda_geom_1d(a->c, ne), 0, pa, ptrs);
    return e ? e : kern_cublas_gemm_f16(a->blas, a->w, a->m, a->k, a->s, a->n, a->y);
}

/* ---- the grouped expert GEMM of a prompt (kern_cuda_moe_gemm) ---- */

typedef struct moe_arg {
    kern_cuda_ctx *c;
    kern_type t;
    kern_cu_deviceptr w, x, y, s, ids;
    int64_t m, k, n_tok;
    int n_expert, n_used;
    bool per_slot;
} moe_arg;

static adg_error *run_moe(void *p)
{
    moe_arg *a = p;
    return kern_cuda_moe_gemm(a->c, a->t, a->w, a->n_expert, a->m, a->k, a->ids, a->n_tok, a->n_used, a->x,
                              a->per_slot, a->y, a->s);
}

/* One grouped GEMM of n_tok tokens, each routed to n_used distinct experts drawn uniformly
 * (a fixed sequence), timed with every grouped tile under --gemm-tile all (the tile is
 * AMXDIAG_GPU_MOE_TILE, which kern_cuda_moe_gemm reads per call), else with the one the
 * environment selects.  Bytes: the weights of the experts some token chose, X and Y. */
static adg_error *bench_moe(bench *b, const char *name, kern_type t, int64_t m, int64_t k, int n_expert, int n_used,
                            int64_t n_tok, bool per_slot)
{
    moe_arg a = {.c = b->c, .t = t, .m = m, .k = k, .n_tok = n_tok, .n_expert = n_expert, .n_used = n_used,
                 .per_slot = per_slot};
    const int64_t n_slots = n_tok * n_used, n_x = per_slot ? n_slots : n_tok;
    const size_t rs = kern_row_size(t, k);
    int32_t *ids = malloc((size_t)n_slots * sizeof *ids);
    bool *used = calloc((size_t)n_expert, 1);
    adg_error *e = ids && used ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
    uint64_t st = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; !e && i < n_tok; i++)
        for (int j = 0; j < n_used; j++) {
            int id, dup;
            do {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                id = (int)((st >> 33) % (uint64_t)n_expert);
                dup = 0;
                for (int q = 0; q < j; q++)
                    dup |= ids[i * n_used + q] == id;
            } while (dup);
            ids[i * n_used + j] = id;
            used[id] = true;
        }
    int n_hit = 0;
    for (int i = 0; !e && i < n_expert; i++)
        n_hit += used[i];
    if (!e)
        e = alloc_fill(b, rs * (size_t)(m * n_expert), PAT_F16, &a.w);
    if (!e)
        e = alloc_fill(b, (size_t)(n_x * k) * 4, PAT_F32, &a.x);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)(n_slots * m) * 4, &a.y);
    if (!e)
        e = kern_cuda_alloc(b->c, kern_cuda_moe_gemm_scratch(n_tok, n_used, n_expert, k, per_slot), &a.s);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)n_slots * 4, &a.ids);
    if (!e)
        e = kern_cuda_upload(b->c, a.ids, ids, (size_t)n_slots * 4);
    static const char *const tiles[] = {"old", "g0", "g1", "g2", "g3", "g4", "g5"};
    const char *env = getenv("AMXDIAG_GPU_MOE_TILE");
    char *saved = env ? strdup(env) : NULL;
    const size_t n_tiles = b->o->gemm_sweep ? ADG_ARRAY_LEN(tiles) : 1;
    for (size_t i = 0; i < n_tiles && !e; i++) {
        if (b->o->gemm_sweep)
            setenv("AMXDIAG_GPU_MOE_TILE", tiles[i], 1);
        const char *tile = b->o->gemm_sweep ? tiles[i] : saved && *saved ? saved : "auto";
        double ms = 0;
        e = time_op(b, run_moe, &a, &ms);
        if (!e) {
            char shape[64], nm[32];
            snprintf(shape, sizeof shape, "%dx(%lldx%lld) %lldx%d", n_expert, (long long)m, (long long)k,
                     (long long)n_tok, n_used);
            snprintf(nm, sizeof nm, "%s %s", name, tile);
            double bytes = (double)rs * (double)m * n_hit + (double)(k * n_x) * 4 + (double)(m * n_slots) * 4;
            add_row(b, "moe_gemm", nm, kern_type_name(t), shape, ms, bytes, 2.0 * (double)m * (double)k * n_slots, 0);
            json_object_set_new(json_array_get(b->rows, json_array_size(b->rows) - 1), "moe_tile", json_string(tile));
        }
    }
    if (b->o->gemm_sweep) {
        if (saved)
            setenv("AMXDIAG_GPU_MOE_TILE", saved, 1);
        else
            unsetenv("AMXDIAG_GPU_MOE_TILE");
    }
    free(saved);
    free(ids);
    free(used);
    kern_cuda_free(b->c, a.w);
    kern_cuda_free(b->c, a.x);
    kern_cuda_free(b->c, a.y);
    kern_cuda_free(b->c, a.s);
    kern_cuda_free(b->c, a.ids);
    return e;
}

static adg_error *bench_gemm(bench *b, const char *name, int64_t m, int64_t k, int64_t n)
{
    static const kern_type types[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0, KERN_TYPE_F16};
    gemm_arg a = {.c = b->c, .blas = b->blas, .m = m, .k = k, .n = n};
    adg_error *e = alloc_fill(b, kern_row_size(KERN_TYPE_F16, k) * (size_t)m, PAT_F16, &a.w);
    if (!e)
        e = alloc_fill(b, (size_t)(n * k) * 4, PAT_F32, &a.x);
    if (!e)
        e = kern_cuda_alloc(b->c, (size_t)(n * m) * 4, &a.y);
    if (!e)
        e = alloc_fill(b, kern_cuda_gemm_scratch(n, k), PAT_F16, &a.s);
    double ref = 0, ref_op = 0, ms = 0, flops = 2.0 * (double)m * (double)n * (double)k;
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lld, %lld tok", (long long)m, (long long)k, (long long)n);
    double ref_i8 = 0;
    if (!e && b->blas) {
        /* cuBLAS gets X already in f16 (the scratch holds it) */
        e = time_op(b, run_cublas, &a, &ms);
        if (!e) {
            ref = flops / (ms * 1e-3) / 1e12;
            add_row(b, "gemm", name, "cublas", shape, ms, 0, flops, 0);
            e = time_op(b, run_cublas_cvt, &a, &ms);
        }
        if (!e) {
            ref_op = flops / (ms * 1e-3) / 1e12;
            add_row(b, "gemm", name, "cublas+cvt", shape, ms, 0, flops, ref);
        }
        /* int8 cuBLAS (s8 x s8 -> s32, CUBLAS_COMPUTE_32I): the same precision as the
         * int8 kernel's MMAs, without its per-block scaling.  Informational. */
        if (!e && kern_cublas_has_i8(b->blas) && m % 4 == 0 && k % 4 == 0) {
            adg_error *ie = time_op(b, run_cublas_i8, &a, &ms);
            if (ie) {
                adg_warn("bench: int8 cuBLAS at %s: %s", shape, adg_error_msg(ie));
                adg_error_free(ie);
            } else {
                ref_i8 = flops / (ms * 1e-3) / 1e12;
                add_row(b, "gemm", name, "cublas-i8", shape, ms, 0, flops, ref);
            }
        }
    }
    /* f16 weights are the largest type, so the buffer holds every format.  Q4_0/Q8_0 run
     * with each prompt GEMM this device has; the one the context would pick is marked. */
    /* --gemm-tile all: every int8 tile variant instead (the default marked). */
    const kern_cuda_gemm_kind saved = b->c->gemm_kind;
    const int saved_tile = b->c->gemm_tile;
    for (size_t i = 0; i < ADG_ARRAY_LEN(types) && !e; i++) {
        a.t = types[i];
        kern_cuda_gemm_plan def = kern_cuda_gemm_plan_for(b->c, a.t, m, k, n, a.w, false);
        const int n_i8 = kern_cuda_gemm_n_tiles(), n_f16 = kern_cuda_gemm_n_f16_tiles();
        /* the wgmma rows only where the sm_90a module is loaded (compute capability 9.0) */
        const int n_w = b->c->caps.wgmma ? kern_cuda_gemm_n_wgmma_tiles() : 0;
        /* and a last row: without --gemm-tile all the default's other form (two passes
         * where it is fused, fused where it is two passes: kern_cuda_set_gemm_dq); with it,
         * the default itself where that is two passes (the sweep's rows are the kinds'
         * kernels as AMXDIAG_GPU_GEMM_DQ says: fused unless it is 1) */
        const int n_runs = (b->o->gemm_sweep ? n_i8 + n_f16 + n_w : 3 + (n_w > 0)) + 1;
        const int saved_dq = b->c->gemm_dq;
        const bool t_f16 = saved_tile > n_i8 && saved_tile <= n_i8 + n_f16, t_w = saved_tile > n_i8 + n_f16;
        /* --gemm-tile all with --gemm-kernel mma, f16mma or wgmma: that kernel's tiles only */
        const kern_cuda_gemm_kind only_kind = b->o->gemm_kind_set ? b->o->gemm_kind : KERN_CUDA_GEMM_AUTO;
        for (int run = 0; run < n_runs && !e; run++) {
            b->c->gemm_dq = saved_dq; /* the other-form row below sets its own */
            if (b->o->gemm_sweep && run == n_runs - 1) {
                if (!def.dequant)
                    continue;
                b->c->gemm_kind = saved;
                b->c->gemm_tile = saved_tile;
            } else if (b->o->gemm_sweep) {
                b->c->gemm_kind = run < n_i8 ? KERN_CUDA_GEMM_MMA
                                  : run < n_i8 + n_f16 ? KERN_CUDA_GEMM_F16MMA
                                                       : KERN_CUDA_GEMM_WGMMA;
                b->c->gemm_tile = run + 1;
                if ((only_kind == KERN_CUDA_GEMM_MMA || only_kind == KERN_CUDA_GEMM_F16MMA ||
                     only_kind == KERN_CUDA_GEMM_WGMMA) &&
                    b->c->gemm_kind != only_kind)
                    continue;
            } else if (run == n_runs - 1) {
                b->c->gemm_kind = saved;
                b->c->gemm_tile = saved_tile;
                b->c->gemm_dq = def.dequant ? 0 : 1;
            } else {
                static const kern_cuda_gemm_kind kinds[4] = {KERN_CUDA_GEMM_WMMA, KERN_CUDA_GEMM_MMA,
                                                             KERN_CUDA_GEMM_F16MMA, KERN_CUDA_GEMM_WGMMA};
                b->c->gemm_kind = kinds[run];
                /* a tile asked for applies to its own kernel's row */
                b->c->gemm_tile = run == 2 ? (t_f16 ? saved_tile : 0)
                                  : run == 3 ? (t_w ? saved_tile : 0)
                                             : (t_f16 || t_w ? 0 : saved_tile);
                /* the wgmma row is the default itself where the default is wgmma (auto's
                 * measured tile and k slices, not --gemm-kernel wgmma's own pick); so is the
                 * f16-MMA row where the default is that kernel on two passes */
                if ((run == 3 && def.wgmma && !t_w) ||
                    (run == 2 && def.f16mma && !def.wgmma && def.dequant && !t_f16)) {
                    b->c->gemm_kind = saved;
                    b->c->gemm_tile = saved_tile;
                }
            }
            const bool other_form = !b->o->gemm_sweep && run == n_runs - 1;
            const bool sweep_default = b->o->gemm_sweep && run == n_runs - 1;
            const kern_cuda_gemm_kind row_kind = b->o->gemm_sweep || other_form
                                                     ? b->c->gemm_kind
                                                     : (kern_cuda_gemm_kind[]){KERN_CUDA_GEMM_WMMA, KERN_CUDA_GEMM_MMA,
                                                                               KERN_CUDA_GEMM_F16MMA,
                                                                               KERN_CUDA_GEMM_WGMMA}[run];
            kern_cuda_gemm_plan pl = kern_cuda_gemm_plan_for(b->c, a.t, m, k, n, a.w, false);
            if (sweep_default ? false
                : other_form  ? pl.dequant == def.dequant || !pl.f16mma
                              : (row_kind == KERN_CUDA_GEMM_MMA && !pl.mma) ||
                                 (row_kind == KERN_CUDA_GEMM_F16MMA && (!pl.f16mma || pl.wgmma)) ||
                                 (row_kind == KERN_CUDA_GEMM_WGMMA && !pl.wgmma))
                continue;
            /* the kinds' rows follow AMXDIAG_GPU_GEMM_DQ (auto: fused, a kind being asked),
             * unless the default is that row */
            const bool sel = pl.mma == def.mma && pl.f16mma == def.f16mma && pl.wgmma == def.wgmma &&
                             pl.dequant == def.dequant && (!(pl.mma || pl.f16mma) || pl.variant == def.variant);
            const char *kname = pl.wgmma ? (pl.dequant ? "wgmma+dq" : "wgmma")
                                : pl.f16mma ? (pl.dequant ? "f16mma+dq" : "f16mma")
                                : pl.mma    ? "mma"
                                            : "wmma";
            const int code = pl.wgmma ? 1 + n_i8 + n_f16 + pl.variant : pl.f16mma ? 1 + n_i8 + pl.variant
                                                                                  : pl.variant + 1;
            e = time_op(b, run_gemm, &a, &ms);
            if (!e) {
                add_row(b, "gemm", name, kern_type_name(a.t), shape, ms, 0, flops, ref);
                json_t *row = json_array_get(b->rows, json_array_size(b->rows) - 1);
                json_object_set_new(row, "kernel", json_string(kname));
                json_object_set_new(row, "selected", json_boolean(sel));
                json_object_set_new(row, "dequant", json_boolean(pl.dequant)); /* two passes (AMXDIAG_GPU_GEMM_DQ) */
                if (pl.dequant)
                    json_object_set_new(row, "dq_rows", json_integer(pl.dq_rows));
                if (pl.mma || pl.f16mma) {
                    json_object_set_new(row, "tile", json_integer(pl.tile));
                    json_object_set_new(row, "variant", json_integer(pl.variant));
                    json_object_set_new(row, "tile_name", json_string(kern_cuda_gemm_tile_name(code)));
                    json_object_set_new(row, "stages", json_integer(pl.stages));
                }
                if (pl.f16mma) {
                    json_object_set_new(row, "ksplit", json_integer(pl.ksplit));
                    /* the wgmma kernel has the fragment stores only */
                    json_object_set_new(row, "store",
                                        json_string(b->c->gemm_staged && !pl.wgmma ? "staged" : "fragment"));
                }
                if (pl.wgmma) {
                    json_object_set_new(row, "xv", json_integer(pl.xv)); /* AMXDIAG_GPU_GEMM_WGMMA_X */
                    json_object_set_new(row, "pipe", json_integer(pl.deep ? 2 : 1));
                    json_object_set_new(row, "grid", json_integer(pl.grid)); /* 0: one CTA per tile */
                }
                if (ref_i8 > 0)
                    json_object_set_new(row, "pct_cublas_i8", json_real(100.0 * (flops / (ms * 1e-3) / 1e12) / ref_i8));
                if (ref_op > 0)
                    json_object_set_new(row, "pct_cublas_op", json_real(100.0 * (flops / (ms * 1e-3) / 1e12) / ref_op));
                if (!b->o->json) { /* (f16 weights take the same kernels since session 5) */
                    char dq[64] = "";
                    if (pl.dequant)
                        snprintf(dq, sizeof dq, ", weights to f16 first (slabs of %lld rows)", (long long)pl.dq_rows);
                    if (pl.wgmma)
                        printf("%-9s %-14s   ^ wgmma w%d%s %s, %d slots, pipe %d, %d k slice(s), %s%s%s\n", "", "",
                               pl.variant, pl.xv == 1 ? "x1" : pl.xv == 2 ? "x2" : pl.xv == 3 ? "x3" : "",
                               kern_cuda_gemm_tile_name(code), pl.stages, pl.deep ? 2 : 1, pl.ksplit,
                               pl.grid ? "persistent grid" : "a CTA per tile", dq, sel ? " (selected)" : "");
                    else if (pl.f16mma)
                        printf("%-9s %-14s   ^ f16mma f%d %s, %d stages, %d k slice(s), %s stores%s%s\n", "", "",
                               pl.variant, kern_cuda_gemm_tile_name(code), pl.stages, pl.ksplit,
                               b->c->gemm_staged ? "staged" : "fragment", dq, sel ? " (selected)" : "");
                    else if (pl.mma)
                        printf("%-9s %-14s   ^ int8 mma v%d %s, %d stages%s\n", "", "", pl.variant,
                               kern_cuda_gemm_tile_name(code), pl.stages, sel ? " (selected)" : "");
                    else
                        printf("%-9s %-14s   ^ f16 wmma%s\n", "", "", sel ? " (selected)" : "");
                    if (sel && ref_op > 0)
                        printf("%-9s %-14s   ^ %.0f%% of cuBLAS with X converted to f16 first (cublas+cvt)\n", "", "",
                               100.0 * (flops / (ms * 1e-3) / 1e12) / ref_op);
                }
            }
        }
        b->c->gemm_kind = saved;
        b->c->gemm_tile = saved_tile;
        b->c->gemm_dq = saved_dq;
    }
    kern_cuda_free(b->c, a.w);
    kern_cuda_free(b->c, a.x);
    kern_cuda_free(b->c, a.y);
    kern_cuda_free(b->c, a.s);
    return e;
}

typedef struct misc_arg {
    kern_cuda_ctx *c;
    int which;
    kern_cu_deviceptr a, b2, o, p, q;
    int64_t n, d;
} misc_arg;

static adg_error *run_misc(void *p)
{
    misc_arg *a = p;
    switch (a->which) {
    case 0: return kern_cuda_moe_route(a->c, a->a, a->n, 128, 8, true, a->p, a->o);
    case 1: return kern_cuda_rmsnorm(a->c, a->a, a->b2, a->o, a->n, 2048, 1e-6f);
    case 2: return kern_cuda_rope_neox(a->c, a->a, a->p, a->n, 32, 128, 1e6f);
    case 3: return kern_cuda_softmax(a->c, a->a, a->n * 32, a->d, 0.088f);
    case 4: return kern_cuda_attention(a->c, a->a, a->b2, a->q, a->o, 32, 4, 128, a->d, 0.088f);
    case 5: return kern_cuda_silu_mul(a->c, a->a, a->b2, a->o, a->n * 768 * 8);
    default: return kern_cuda_add(a->c, a->a, a->b2, a->o, a->n * 2048);
    }
}

static adg_error *bench_misc(bench *b, int64_t tokens, int64_t n_kv)
{
    static const char *names[] = {"moe_route", "rmsnorm", "rope_neox", "softmax", "attention", "silu_mul", "add"};
    misc_arg a = {.c = b->c, .n = tokens, .d = n_kv};
    size_t big = (size_t)(tokens * 32 * (n_kv > 6144 ? n_kv : 6144)) * 4 + (size_t)(n_kv * 4 * 128) * 2;
    adg_error *e = alloc_fill(b, big, PAT_F16, &a.a);
    if (!e)
        e = alloc_fill(b, big, PAT_F16, &a.b2);
    if (!e)
        e = alloc_fill(b, big, PAT_F16, &a.q);
    if (!e)
        e = kern_cuda_alloc(b->c, big, &a.o);
    if (!e)
        e = alloc_fill(b, (size_t)tokens * 8 * 4, 0, &a.p);
    for (int i = 0; i < 7 && !e; i++) {
        a.which = i;
        /* f32 1.0 everywhere: finite values whatever the op did to the buffer before */
        if (b->d->cuMemsetD32(a.a, PAT_F32, big / 4) != KERN_CU_SUCCESS || b->d->cuCtxSynchronize()) {
            e = adg_error_new(ADG_E_CUDA, "filling a benchmark buffer failed");
            break;
        }
        double ms = 0, bytes = 0;
        char shape[64];
        e = time_op(b, run_misc, &a, &ms);
        if (e)
            break;
        switch (i) {
        case 0: bytes = (double)tokens * (128 * 4 + 8 * 8); snprintf(shape, sizeof shape, "%lld tok, 128 exp, top-8", (long long)tokens); break;
        case 1: bytes = (double)tokens * 2048 * 8; snprintf(shape, sizeof shape, "%lldx2048", (long long)tokens); break;
        case 2: bytes = (double)tokens * 32 * 128 * 8; snprintf(shape, sizeof shape, "%lld tok x 32 x 128", (long long)tokens); break;
        case 3: bytes = (double)tokens * 32 * (double)n_kv * 8; snprintf(shape, sizeof shape, "%lldx%lld", (long long)tokens * 32, (long long)n_kv); break;
        case 4: bytes = (double)n_kv * 4 * 128 * 2 * 2; snprintf(shape, sizeof shape, "32/4 heads x 128, %lld kv", (long long)n_kv); break;
        case 5: bytes = (double)tokens * 768 * 8 * 12; snprintf(shape, sizeof shape, "%lld", (long long)tokens * 768 * 8); break;
        default: bytes = (double)tokens * 2048 * 12; snprintf(shape, sizeof shape, "%lld", (long long)tokens * 2048); break;
        }
        add_row(b, "misc", names[i], "f32", shape, ms, bytes, 0, 0);
    }
    kern_cuda_free(b->c, a.a);
    kern_cuda_free(b->c, a.b2);
    kern_cuda_free(b->c, a.q);
    kern_cuda_free(b->c, a.o);
    kern_cuda_free(b->c, a.p);
    return e;
}

typedef struct copy_arg {
    const kern_cuda_driver *d;
    kern_cu_deviceptr a, b;
    size_t bytes;
    kern_cu_stream s;
} copy_arg;

static adg_error *run_copy(void *p)
{
    copy_arg *a = p;
    kern_cu_result r = a->d->cuMemcpyDtoDAsync(a->b, a->a, a->bytes, a->s);
    return r ? kern_cuda_errf(r, "cuMemcpyDtoDAsync") : NULL;
}

static adg_error *measure_copy(bench *b, size_t bytes)
{
    copy_arg a = {.d = b->d, .bytes = bytes, .s = b->c->stream};
    adg_error *e = alloc_fill(b, bytes, 0, &a.a);
    if (!e)
        e = kern_cuda_alloc(b->c, bytes, &a.b);
    double ms = 0;
    if (!e)
        e = time_op(b, run_copy, &a, &ms);
    if (!e) {
        /* read + write, the same accounting as the kernels' bytes */
        b->copy_gbps = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
        char sz[32];
        if (!b->o->json)
            printf("copy bandwidth (cuMemcpyDtoD of %s, read+write): %.0f GB/s\n\n", adg_fmt_bytes((double)bytes, sz,
                                                                                                   sizeof sz),
                   b->copy_gbps);
    }
    kern_cuda_free(b->c, a.a);
    kern_cuda_free(b->c, a.b);
    return e;
}

/* ---- --check ------------------------------------------------------------------------ */

static adg_error *run_checks(bench *b, json_t *out, int *failed)
{
    kern_cuda_ctx *c = b->c;
    kern_cuda_check_result r;
    adg_error *e = NULL;
    uint64_t seed = 100;
#define CHECK(call)                                                                                     \
    do {                                                                                                \
        if (!e && (e = (call)) == NULL) {                                                               \
            json_array_append_new(out, kern_cuda_check_json(&r));                                       \
            if (!r.pass)                                                                                \
                (*failed)++;                                                                            \
            if (!b->o->json)                                                                            \
                printf("  %-4s %-62s max err %.3g (%.2f of allowed)%s%s\n", r.pass ? "ok" : "FAIL", r.name, \
                       r.max_abs_err, r.worst_ratio, r.pass ? "" : ": ", r.pass ? "" : r.worst);        \
        }                                                                                               \
        seed++;                                                                                         \
    } while (0)
    static const kern_type rt[] = {KERN_TYPE_F32, KERN_TYPE_F16, KERN_TYPE_BF16, KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    if (!b->o->json)
        printf("checks against the CPU reference (allowed = atol + rtol x magnitude, see docs/cuda-kernels.md):\n");
    for (size_t i = 0; i < ADG_ARRAY_LEN(rt); i++) {
        CHECK(kern_cuda_check_get_rows(c, rt[i], 1000, 96, 70001, seed, &r)); /* > 65,535 rows */
        CHECK(kern_cuda_check_get_rows(c, rt[i], 37, 32 * 5, 3, seed, &r));
        if (!kern_type_is_quantized(rt[i]))
            CHECK(kern_cuda_check_get_rows(c, rt[i], 7, 33, 11, seed, &r)); /* odd width, no float4 */
    }
    static const kern_type qt[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    for (size_t i = 0; i < ADG_ARRAY_LEN(qt); i++) {
        CHECK(kern_cuda_check_gemv(c, qt[i], 512, 2048, seed, &r));
        CHECK(kern_cuda_check_gemv(c, qt[i], 77, 32 * 7, seed, &r));   /* unaligned rows: unstaged path */
        CHECK(kern_cuda_check_gemv(c, qt[i], 3, 32 * 320, seed, &r));  /* rows too long to stage */
        CHECK(kern_cuda_check_moe(c, qt[i], 16, 96, 256, 4, 1, seed, &r));
        CHECK(kern_cuda_check_moe(c, qt[i], 16, 64, 96, 3, 3, seed, &r));
        CHECK(kern_cuda_check_gemm(c, qt[i], 256, 512, 64, seed, &r));
        CHECK(kern_cuda_check_gemm(c, qt[i], 131, 96, 37, seed, &r)); /* partial tiles */
    }
    CHECK(kern_cuda_check_gemm(c, KERN_TYPE_F16, 200, 160, 70, seed, &r));
    CHECK(kern_cuda_check_moe_route(c, 300, 128, 8, seed, &r));
    CHECK(kern_cuda_check_moe_route(c, 5, 60, 4, seed, &r));
    CHECK(kern_cuda_check_rmsnorm(c, 33, 2048, seed, &r));
    CHECK(kern_cuda_check_rmsnorm(c, 5, 1000, seed, &r));
    CHECK(kern_cuda_check_rope(c, 9, 32, 128, seed, &r));
    CHECK(kern_cuda_check_rope(c, 3, 4, 64, seed, &r));
    CHECK(kern_cuda_check_softmax(c, 40, 4096, seed, &r));
    CHECK(kern_cuda_check_softmax(c, 3, 77, seed, &r));
    CHECK(kern_cuda_check_attention(c, 32, 4, 128, 1000, seed, &r));
    CHECK(kern_cuda_check_attention(c, 4, 1, 64, 3, seed, &r));
    /* The batch ops that keep the --ngl layers on the device. */
    CHECK(kern_cuda_check_kv_store(c, 64, 5, 20, 4 * 128, seed, &r));
    CHECK(kern_cuda_check_moe_wsum(c, 37, 8, 2048, seed, &r));
    CHECK(kern_cuda_check_attention_causal(c, 32, 4, 128, 70, 300, seed, &r)); /* a second ubatch */
    CHECK(kern_cuda_check_attention_causal(c, 4, 1, 64, 5, 0, seed, &r));
    for (int i = 0; i < 2; i++) {
        CHECK(kern_cuda_check_moe_gemm(c, qt[i], 128, 96, 512, 64, 8, false, seed, &r));
        CHECK(kern_cuda_check_moe_gemm(c, qt[i], 16, 64, 96, 9, 3, true, seed, &r)); /* unstaged rows */
    }
    CHECK(kern_cuda_check_silu_mul(c, 100003, seed, &r));
    CHECK(kern_cuda_check_add(c, 100003, seed, &r));
#undef CHECK
    return e;
}

/* ---- --inject-fault ----------------------------------------------------------------- */

static void print_ring(const kern_cuda_ctx *c, FILE *f, json_t *arr)
{
    kern_cuda_launch l[KERN_CUDA_LAUNCH_RING];
    size_t n = kern_cuda_launch_ring(c, l, KERN_CUDA_LAUNCH_RING);
    if (f)
        fprintf(f, "last launches (oldest first):\n");
    for (size_t i = 0; i < n; i++) {
        if (f) {
            fprintf(f, "  #%llu %-20s grid %u block %u", (unsigned long long)l[i].seq, l[i].kernel, l[i].grid[0],
                    l[i].block[0]);
            for (int j = 0; j < 4; j++)
                if (l[i].ptr[j])
                    fprintf(f, "  0x%llx%s", l[i].ptr[j], l[i].ptr_bytes[j] ? "" : " (outside every allocation)");
            fprintf(f, "\n");
        }
        if (arr) {
            json_t *ptrs = json_array();
            for (int j = 0; j < 4; j++)
                if (l[i].ptr[j]) {
                    char hex[32];
                    snprintf(hex, sizeof hex, "0x%llx", l[i].ptr[j]);
                    json_array_append_new(ptrs, json_pack("{s:s, s:I, s:b}", "ptr", hex, "bytes_to_end",
                                                          (json_int_t)l[i].ptr_bytes[j], "in_allocation",
                                                          l[i].ptr_bytes[j] != 0));
                }
            json_array_append_new(arr, json_pack("{s:I, s:s, s:[i,i,i], s:[i,i,i], s:o}", "seq", (json_int_t)l[i].seq,
                                                 "kernel", l[i].kernel, "grid", l[i].grid[0], l[i].grid[1],
                                                 l[i].grid[2], "block", l[i].block[0], l[i].block[1], l[i].block[2],
                                                 "ptrs", ptrs));
        }
    }
}

static int run_fault(bench *b, json_t *root)
{
    adg_error *e = kern_cuda_run_fault(b->c, b->o->fault);
    json_t *ring = json_array();
    print_ring(b->c, b->o->json ? NULL : stdout, ring);
    json_t *fj = json_pack("{s:s, s:b, s:b, s:o}", "name", kern_cuda_fault_name(b->o->fault), "validate",
                           b->o->validate, "sync_each", b->o->sync_each, "launches", ring);
    json_object_set_new(root, "fault", fj);
    if (!e) {
        json_object_set_new(fj, "reported", json_false());
        fprintf(stderr, "amxdiag: error: the injected fault %s went unnoticed by every check\n"
                        "  hint: this is a bug in amxdiag's fault injection; please report it\n",
                kern_cuda_fault_name(b->o->fault));
        return ADG_EXIT_USAGE;
    }
    json_object_set_new(fj, "reported", json_true());
    json_object_set_new(fj, "error", json_string(adg_error_msg(e)));
    json_object_set_new(fj, "error_kind", json_string(adg_error_kind_name(adg_error_kind(e))));
    if (adg_error_remedy(e))
        json_object_set_new(fj, "hint", json_string(adg_error_remedy(e)));
    if (!b->o->json)
        printf("\ninjected fault %s was reported:\n", kern_cuda_fault_name(b->o->fault));
    adg_error_print(e, b->o->json ? stderr : stdout);
    adg_error_free(e);
    return ADG_EXIT_CHECK_FAILED;
}

/* ---- the command -------------------------------------------------------------------- */

static adg_error *run_bench(bench *b)
{
    const bopts *o = b->o;
    const bool q = o->quick;
    adg_error *e = measure_copy(b, q ? (64u << 20) : (1u << 30));
    if (e)
        return e;
    if (!o->no_cublas) {
        adg_error *be = kern_cublas_open(b->c, b->c->stream, &b->blas);
        if (be) {
            adg_warn("bench: no cuBLAS comparison: %s", adg_error_msg(be));
            adg_error_free(be);
        }
    }
    if (!o->json)
        printf("%-9s %-14s %-5s %-26s %10s %7s %6s %8s %8s %7s\n", "op", "name", "type", "shape", "time(us)", "GB/s",
               "%copy", "TFLOP/s", "cuBLAS", "%cuBLAS");
    static const kern_type qt[] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0};
    const int64_t vocab = q ? 8192 : 151936, large = q ? 65536 : 2097152;
    const unsigned only = o->only ? o->only : ~0u;
    const int n_cfg = o->n_gemv > 0 ? o->n_gemv : 1;
    for (int ci = 0; ci < n_cfg && !e && (only & ONLY_GEMV); ci++) {
        if (o->n_gemv > 0)
            kern_cuda_set_gemv(b->c, &o->gemv[ci]);
        char spec[64], cs[2][64], fits[2][160];
        /* as asked: --gemv's, else what the context runs ($AMXDIAG_GPU_GEMV or auto) */
        kern_cuda_gemv_cfg asked = o->n_gemv > 0 ? o->gemv[ci] : b->c->gemv;
        kern_cuda_gemv_cfg_str(&asked, spec, sizeof spec);
        unsigned fit[2] = {0, 0};
        for (int i = 0; i < 2; i++) {
            kern_cuda_gemv_cfg eff = kern_cuda_gemv_effective(b->c, qt[i], &fit[i]);
            kern_cuda_gemv_cfg_str(&eff, cs[i], sizeof cs[i]);
            if (o->gemv_rows > 0) {
                snprintf(cs[i], sizeof cs[i], "rows=%d", o->gemv_rows);
                fit[i] = 0;
            }
            gemv_fit_note(b->c, fit[i], fits[i], sizeof fits[i]);
        }
        if (!o->json)
            printf("GEMV %s: q4_0 %s%s, q8_0 %s%s%s\n", spec, cs[0], fits[0], cs[1], fits[1],
                   o->gemv_q8 ? " (as in generation: the _q8 GEMVs, back to back, never from L2)" : "");
        for (size_t i = 0; i < ADG_ARRAY_LEN(qt) && !e; i++) {
            kern_type t = qt[i];
            size_t first = json_array_size(b->rows);
            if (!e) e = bench_gemv(b, "attn_q", t, 4096, 2048, 0, 0, 0);
            if (!e) e = bench_gemv(b, "attn_k", t, 512, 2048, 0, 0, 0);
            if (!e) e = bench_gemv(b, "attn_o", t, 2048, 4096, 0, 0, 0);
            if (!e) e = bench_gemv(b, "router", t, 128, 2048, 0, 0, 0);
            if (!e) e = bench_gemv(b, "ffn_gate_exps", t, 768, 2048, 128, 8, 1);
            if (!e) e = bench_gemv(b, "ffn_down_exps", t, 2048, 768, 128, 8, 8);
            if (!e) e = bench_gemv(b, "lm_head", t, vocab, 2048, 0, 0, 0);
            if (!e) e = bench_gemv(b, "large", t, large, 2048, 0, 0, 0);
            /* which configuration timed each row (as asked, as run); the goals read the
             * first one's */
            for (size_t r = first; r < json_array_size(b->rows); r++) {
                json_t *row = json_array_get(b->rows, r);
                json_object_set_new(row, "gemv_spec", json_string(spec));
                json_object_set_new(row, "gemv", json_string(cs[i]));
                json_object_set_new(row, "gemv_index", json_integer(ci));
                if (fit[i]) {
                    char steps[128];
                    json_object_set_new(row, "gemv_fit", json_string(kern_cuda_gemv_fit_str(fit[i], steps, sizeof steps)));
                }
            }
        }
    }
    if (o->n_gemv > 0)
        kern_cuda_set_gemv(b->c, &o->gemv[0]);
    static const kern_type rt[] = {KERN_TYPE_F32, KERN_TYPE_F16, KERN_TYPE_BF16, KERN_TYPE_Q8_0, KERN_TYPE_Q4_0};
    for (size_t i = 0; i < ADG_ARRAY_LEN(rt) && !e && (only & ONLY_GET_ROWS); i++)
        e = bench_get_rows(b, rt[i], vocab, 2048, q ? 70000 : 131072);
    const int64_t n = o->tokens;
    if (only & ONLY_GEMM) {
        if (!e) e = bench_gemm(b, "attn_q", 4096, 2048, n);
        if (!e) e = bench_gemm(b, "attn_o", 2048, 4096, n);
        if (!e) e = bench_gemm(b, "attn_k", 512, 2048, n);
        if (!e) e = bench_gemm(b, "ffn_up_exps", 768, 2048, n);
        if (!e) e = bench_gemm(b, "ffn_down_exps", 2048, 768, n);
        if (!e && !q) e = bench_gemm(b, "lm_head", vocab, 2048, n);
    }
    /* the grouped experts of a prompt: gate/up (one X row per token), down (one per slot) */
    for (size_t i = 0; i < ADG_ARRAY_LEN(qt) && !e && (only & ONLY_MOE); i++) {
        if (!e) e = bench_moe(b, "gate_exps", qt[i], 768, 2048, q ? 16 : 128, 8, n, false);
        if (!e) e = bench_moe(b, "down_exps", qt[i], 2048, 768, q ? 16 : 128, 8, n, true);
    }
    if (!e && (only & ONLY_MISC)) e = bench_misc(b, n, q ? 1024 : 4096);
    return e;
}

/* The best % of cuBLAS seen for a shape (--gemm-tile all). */
typedef struct shape_best {
    const char *name;
    double pct;
} shape_best;

static void best_of(shape_best *t, int *n, const char *name, double pct)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(t[i].name, name)) {
            if (pct > t[i].pct)
                t[i].pct = pct;
            return;
        }
    if (*n < 8)
        t[(*n)++] = (shape_best){name, pct};
}

/* Goals of docs/cuda-kernels.md, evaluated on this run's rows. */
static json_t *goals(bench *b)
{
    /* gemv q4_0/q8_0, get_rows: % of copy; gemm f16/q4_0/q8_0: worst shape, % of cuBLAS
     * f16 (q4_0/q8_0: the kernel the context selects).  Only groups that ran. */
    double gemv[2] = {-1, -1}, rows = -1, gemm[3] = {1e9, 1e9, 1e9}, gemm_op[3] = {1e9, 1e9, 1e9};
    shape_best best[3][8];
    int n_best[3] = {0, 0, 0};
    static const char *const gt[3] = {"f16", "q4_0", "q8_0"};
    size_t i;
    json_t *row;
    json_array_foreach(b->rows, i, row)
    {
        const char *g = json_string_value(json_object_get(row, "group"));
        const char *nm = json_string_value(json_object_get(row, "name"));
        const char *ty = json_string_value(json_object_get(row, "type"));
        double pc = json_real_value(json_object_get(row, "pct_copy"));
        if (!strcmp(g, "gemv") && !strcmp(nm, "large") && json_integer_value(json_object_get(row, "gemv_index")) == 0)
            gemv[strcmp(ty, "q4_0") == 0 ? 0 : 1] = pc;
        if (!strcmp(g, "get_rows") && pc > rows)
            rows = pc;
        json_t *pb = json_object_get(row, "pct_cublas");
        json_t *sel = json_object_get(row, "selected");
        if (pb && b->o->gemm_sweep && !strcmp(g, "gemm"))
            for (int j = 0; j < 3; j++)
                if (!strcmp(ty, gt[j]))
                    best_of(best[j], &n_best[j], nm, json_real_value(pb));
        if (!pb || (sel && !json_is_true(sel)) || !strcmp(ty, "cublas-i8"))
            continue;
        json_t *po = json_object_get(row, "pct_cublas_op");
        for (int j = 0; j < 3; j++) {
            if (!strcmp(ty, gt[j]) && json_real_value(pb) < gemm[j])
                gemm[j] = json_real_value(pb);
            if (po && !strcmp(ty, gt[j]) && json_real_value(po) < gemm_op[j])
                gemm_op[j] = json_real_value(po);
        }
    }
    json_t *gl = json_array();
#define GOAL(name, v, target)                                                                                       \
    json_array_append_new(gl, json_pack("{s:s, s:f, s:f, s:b}", "goal", name, "value", v, "target", target, "met", \
                                        (v) >= (target)))
    if (gemv[0] >= 0)
        GOAL("gemv q4_0 large, % of copy bandwidth", gemv[0], 85.0);
    if (gemv[1] >= 0)
        GOAL("gemv q8_0 large, % of copy bandwidth", gemv[1], 85.0);
    if (rows >= 0)
        GOAL("get_rows best type, % of copy bandwidth", rows, 80.0);
    if (gemm[0] < 1e9)
        GOAL("gemm f16 worst shape, % of cuBLAS", gemm[0], 50.0);
    if (gemm[1] < 1e9)
        GOAL("gemm q4_0 worst shape, % of cuBLAS f16", gemm[1], 50.0);
    if (gemm[2] < 1e9)
        GOAL("gemm q8_0 worst shape, % of cuBLAS f16", gemm[2], 50.0);
    /* the same ops on both sides: cuBLAS also converting X from f32 (cublas+cvt rows) */
    static const char *const op_goal[3] = {"gemm f16 worst shape, % of cuBLAS+cvt", "gemm q4_0 worst shape, % of cuBLAS+cvt",
                                           "gemm q8_0 worst shape, % of cuBLAS+cvt"};
    for (int j = 0; j < 3; j++)
        if (gemm_op[j] < 1e9)
            GOAL(op_goal[j], gemm_op[j], 50.0);
    /* --gemm-tile all: what the best variant per shape would give (the tile choice's bound) */
    static const char *const best_goal[3] = {"gemm f16 worst shape, best tile per shape",
                                             "gemm q4_0 worst shape, best tile per shape",
                                             "gemm q8_0 worst shape, best tile per shape"};
    for (int j = 0; j < 3; j++) {
        double worst = 1e9;
        for (int s = 0; s < n_best[j]; s++)
            if (best[j][s].pct < worst)
                worst = best[j][s].pct;
        if (n_best[j])
            GOAL(best_goal[j], worst, 50.0);
    }
#undef GOAL
    if (!b->o->json) {
        printf("\ngoals:\n");
        json_array_foreach(gl, i, row)
            printf("  %-4s %-42s %5.1f%% (target %.0f%%)\n", json_is_true(json_object_get(row, "met")) ? "met" : "MISS",
                   json_string_value(json_object_get(row, "goal")), json_real_value(json_object_get(row, "value")),
                   json_real_value(json_object_get(row, "target")));
    }
    return gl;
}

int kern_cuda_bench_cmd(int argc, char **argv)
{
    bopts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? ADG_EXIT_OK : rc;
    bench b = {.o = &o};
    adg_error *e = kern_cuda_open(o.device, o.force_ptx ? KERN_CUDA_LOAD_FORCE_PTX : KERN_CUDA_LOAD_AUTO, &b.c);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    b.d = kern_cuda_drv(b.c);
    kern_cuda_set_validate(b.c, o.validate);
    kern_cuda_set_sync_each(b.c, o.sync_each);
    kern_cuda_set_gemv_rows(b.c, o.gemv_rows);
    if (o.n_gemv > 0)
        kern_cuda_set_gemv(b.c, &o.gemv[0]);
    kern_cuda_set_gemm_bk(b.c, o.gemm_bk);
    if (o.gemm_dq != -2)
        kern_cuda_set_gemm_dq(b.c, o.gemm_dq, 0);
    if (o.gemm_kind_set || o.gemm_tile || o.gemm_stages || o.gemm_sweep)
        kern_cuda_set_gemm_kernel(b.c, o.gemm_kind_set ? o.gemm_kind : b.c->gemm_kind,
                                  o.gemm_tile ? o.gemm_tile : b.c->gemm_tile,
                                  o.gemm_stages ? o.gemm_stages : b.c->gemm_stages);
    const kern_cuda_load_info *in = kern_cuda_info(b.c);
    char ts[32], ver[16];
    adg_utc_iso8601(ts, sizeof ts);
    json_t *root = json_pack("{s:s, s:s, s:o, s:b, s:i, s:i}", "schema", BENCH_SCHEMA, "time", ts, "load",
                             kern_cuda_info_json(in), "quick", o.quick, "gemv_rows", o.gemv_rows, "gemm_bk",
                             o.gemm_bk);
    json_object_set_new(root, "gemm_kernel", json_string(kern_cuda_gemm_kind_name(b.c->gemm_kind)));
    {
        /* the decode GEMV's configuration and the device facts its auto pick read */
        unsigned f4 = 0, f8 = 0;
        kern_cuda_gemv_cfg e4 = kern_cuda_gemv_effective(b.c, KERN_TYPE_Q4_0, &f4);
        kern_cuda_gemv_cfg e8 = kern_cuda_gemv_effective(b.c, KERN_TYPE_Q8_0, &f8);
        const kern_cuda_gemv_dev *gd = &b.c->gemv_dev;
        char c4[64], c8[64], n4[160], n8[160], s4[128], s8[128];
        json_t *regs = json_array();
        for (int i = 0; i < 8; i++)
            json_array_append_new(regs, json_integer(gd->sb_regs[i]));
        json_object_set_new(root, "gemv",
                            json_pack("{s:{s:s, s:s}, s:b, s:f, s:i, s:i, s:o}", "config", "q4_0",
                                      kern_cuda_gemv_cfg_str(&e4, c4, sizeof c4), "q8_0",
                                      kern_cuda_gemv_cfg_str(&e8, c8, sizeof c8), "q8_input", o.gemv_q8,
                                      "peak_dram_gbps", kern_cuda_gemv_peak_gbps(gd), "mem_clock_khz",
                                      gd->mem_clock_khz, "bus_width_bits", gd->bus_width_bits, "sb_registers", regs));
        json_t *gj = json_object_get(root, "gemv");
        json_object_set_new(gj, "smem_optin", json_integer(gd->smem_optin));
        json_object_set_new(gj, "fit", json_pack("{s:s, s:s}", "q4_0", kern_cuda_gemv_fit_str(f4, s4, sizeof s4),
                                                 "q8_0", kern_cuda_gemv_fit_str(f8, s8, sizeof s8)));
        if (!o.json)
            printf("decode GEMV: q4_0 %s%s, q8_0 %s%s (peak DRAM %.0f GB/s from the memory clock and bus width)\n", c4,
                   gemv_fit_note(b.c, f4, n4, sizeof n4), c8, gemv_fit_note(b.c, f8, n8, sizeof n8),
                   kern_cuda_gemv_peak_gbps(gd));
    }
    /* the sm_90a wgmma module: loaded, or why not */
    json_object_set_new(root, "wgmma", json_pack("{s:b, s:s?}", "loaded", b.c->caps.wgmma, "off", b.c->caps.wgmma_off));
    if (!o.json)
        printf("%s (cc %d.%d, %d SMs), driver %s; kernels: %s sm_%d, module load %.1f ms%s\n", in->name, in->cc_major,
               in->cc_minor, in->sm_count, kern_cuda_version_str(in->driver_version, ver, sizeof ver),
               in->used_ptx_jit ? "PTX JIT for" : "SASS", in->image_arch, in->module_load_ms,
               o.validate ? ", --gpu-validate" : "");
    if (!o.json)
        printf("wgmma GEMM (sm_90a module): %s\n",
               b.c->caps.wgmma ? "loaded" : b.c->caps.wgmma_off ? b.c->caps.wgmma_off : "not loaded");
    if (!o.json && o.gemv_rows > 0)
        printf("GEMV with up to %d row%s per warp iteration for every type (not auto)\n", o.gemv_rows,
               o.gemv_rows == 1 ? "" : "s");
    if (!o.json && o.gemm_bk == 64)
        printf("experimental: GEMM with 64-wide k stages\n");
    rc = ADG_EXIT_OK;
    if (o.fault) {
        rc = run_fault(&b, root);
        goto done;
    }
    if (b.d->cuEventCreate(&b.ev[0], 0) || b.d->cuEventCreate(&b.ev[1], 0)) {
        e = adg_error_new(ADG_E_CUDA, "creating CUDA events failed");
        goto done;
    }
    if (o.check) {
        json_t *checks = json_array();
        int failed = 0;
        json_object_set_new(root, "checks", checks);
        e = run_checks(&b, checks, &failed);
        if (!e && failed) {
            rc = ADG_EXIT_CHECK_FAILED;
            if (!o.json)
                printf("%d check%s FAILED\n", failed, failed == 1 ? "" : "s");
        }
        if (!o.json)
            printf("\n");
    }
    if (!e && !o.no_bench) {
        b.flush_bytes = o.quick ? (16u << 20) : (256u << 20);
        e = kern_cuda_alloc(b.c, b.flush_bytes, &b.flush);
        b.rows = json_array();
        json_object_set_new(root, "rows", b.rows);
        if (!e)
            e = run_bench(&b);
        if (!e) {
            json_object_set_new(root, "copy_gbps", json_real(b.copy_gbps));
            json_object_set_new(root, "goals", goals(&b));
            if (b.blas)
                json_object_set_new(root, "cublas", json_string(kern_cublas_path(b.blas)));
        }
    }
done:
    if (e) {
        adg_error_print(e, stderr);
        if (adg_error_kind(e) == ADG_E_CUDA)
            print_ring(b.c, stderr, NULL);
        adg_error_free(e);
        rc = ADG_EXIT_USAGE;
    }
    if (rc != ADG_EXIT_USAGE || o.fault) {
        if (o.json) {
            adg_error *pe = adg_json_print(stdout, root);
            if (pe) {
                adg_error_print(pe, stderr);
                adg_error_free(pe);
            }
        }
        if (o.output) {
            adg_error *we = adg_json_write_atomic(o.output, root);
            if (we) {
                adg_error_print(we, stderr);
                adg_error_free(we);
                rc = ADG_EXIT_USAGE;
            }
        }
    }
    json_decref(root);
    kern_cublas_close(b.blas);
    for (int i = 0; i < 2; i++)
        if (b.ev[i])
            b.d->cuEventDestroy(b.ev[i]);
    kern_cuda_close(b.c);
    return rc;
}

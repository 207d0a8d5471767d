/* `amxdiag bench kernels`: the CPU kernels at Qwen3-30B-A3B's shapes, per implementation,
 * type and M, against the machine's measured ceilings; the AMX/VNNI crossover it finds can
 * be stored for the dispatcher.  `--gpu` hands over to the CUDA benchmark. */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/adg_ceilings.h"
#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_memread.h"
#include "common/adg_util.h"
#include "kernels/amx/amx_rowq.h"
#include "kernels/cuda/kern_cuda_bench.h"
#include "kernels/kern_cmds.h"
#include "kernels/kern_cpu.h"
#include "kernels/kern_internal.h"

#define BENCH_SCHEMA "amxdiag.bench.kernels/1"

typedef struct shape {
    const char *name;
    const char *what;
    int64_t n, k;
    int experts;      /* 0: dense; else MoE with top-k 8 */
    int max_m;        /* default M limit (LM head: last token only) */
} shape;

static const shape shapes[] = {
    {"attn_q", "attention q 2048->4096", 4096, 2048, 0, 0},
    {"attn_kv", "attention k/v 2048->512", 512, 2048, 0, 0},
    {"attn_o", "attention o 4096->2048", 2048, 4096, 0, 0},
    {"router", "MoE router 2048->128", 128, 2048, 0, 0},
    {"moe_gate_up", "experts gate/up 2048->768, 128 experts, top-8", 768, 2048, 128, 0},
    {"moe_down", "experts down 768->2048, 128 experts, top-8", 2048, 768, 128, 0},
    {"lm_head", "LM head 2048->151936", 151936, 2048, 0, 16},
};
#define NSHAPES ((int)ADG_ARRAY_LEN(shapes))
#define TOPK 8

typedef struct opts {
    bool impl[5];          /* by kern_impl */
    bool type_q4, type_q8, type_bf16;
    bool shape[NSHAPES];
    int ms[32];
    int nm;
    bool m_given;
    int threads;
    bool json, quick, all_m, check_goals;
    double min_time;
    double weight_mib;     /* replicate weights to at least this many MiB */
    double mem_gbs;        /* given read bandwidth (0: cached or measured) */
    const char *output;
    const char *save_xo;   /* "" = default path */
    bool save;
    bool rowq;             /* --amx-scales row: the row-scaled experiment's rows too */
    /* M = 1 batched rows: the memory read measured just before and just after each one
     * (the machine's bandwidth moves between calls and with its neighbours), in the buffer
     * of the run's first read; NULL when --mem-gbs fixes the divisor or no buffer was had */
    struct mem_reader *reader;
} opts;

typedef struct row {
    const char *shape;
    kern_type type;
    kern_impl impl;
    int m;
    char variant[48];
    double ms, flops, bytes;  /* median time, work of one call */
    int reps;
    /* M = 1, int8 on VNNI: `batch` distinct products (weight copies; experts of a routing)
     * in one pool region by kern_gemv_batch, as the fused generation schedule runs them:
     * median time of one region and the bytes it reads.  batch 0: not measured. */
    int batch;
    double batch_ms, batch_bytes;
    double pair_gbs;      /* the larger of the reads just before and after it, 0: not measured */
    /* --amx-scales row: a row of the row-scaled experiment (amx_rowq.h), kept out of the
     * goals and the crossover; acc: its error against the block format on random data */
    bool rowq;
    struct rowq_acc {
        bool have;
        int m, n;
        double rms, max;                 /* row-scaled vs block-scaled result, relative */
        double rowq_exact, block_exact;  /* each against the exact product, relative RMS */
    } acc;
} row;

typedef struct ceil_info {
    double mem_gbs;          /* 0 unknown: the denominator of %bw */
    const char *mem_src;
    double probe_mem_gbs;    /* `probe --bench`'s cached figure */
    double bench_mem_gbs;    /* measured by this run */
    double amx_int8_ops, amx_bf16_ops, vnni_ops;   /* measured all-core ops/s, 0 unknown */
    double amx_int8_theory;  /* 2048 ops/cycle/core x clock x threads */
    double amx_int8_core_ops;   /* the probe's TDPBSSD loop on one thread, 0 unknown */
    int amx_int8_all_threads;   /* threads of its all-core figure */
    int threads;                /* this run's */
    double clock_ghz;
    const char *clock_src;   /* where clock_ghz came from */
    bool from_probe;
} ceil_info;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag bench kernels [options]\n"
            "       amxdiag bench kernels --gpu [options]   (the CUDA kernels: see --gpu --help)\n"
            "\n"
            "Times amxdiag's CPU kernels at Qwen3-30B-A3B's shapes for each implementation, weight type\n"
            "and batch size M, and compares them with this machine's ceilings (memory read bandwidth,\n"
            "AMX/VNNI peaks from `amxdiag probe --bench`).  Weights are replicated beyond the last-level\n"
            "cache so that small-M figures measure memory, as in real token generation.\n"
            "\n"
            "options:\n"
            "  --impl LIST        amx,avx512,ref,amx-emu (default: amx and avx512 where usable)\n"
            "  --type LIST        q4_0,q8_0,bf16 (default: all three)\n"
            "  --shape LIST       attn_q,attn_kv,attn_o,router,moe_gate_up,moe_down,lm_head (default: all)\n"
            "  --m LIST           batch sizes (default 1,2,4,8,16,32,64,128,256,512); the LM head stops at\n"
            "                     16 unless --all-m (engines compute logits for the last token only)\n"
            "  --threads N        worker threads (default: every CPU this process may use)\n"
            "  --quick            M 1,16,512; attn_q, moe_gate_up, lm_head; shorter timing\n"
            "  --min-time S       seconds of timed calls per point (default 0.2, quick 0.05)\n"
            "  --weights-mib N    replicate weights to at least N MiB (default 1024, quick 512)\n"
            "  --save-crossover[=FILE]  store the measured AMX/VNNI crossover (default: the file the\n"
            "                     kernels read, see docs/kernels.md)\n"
            "  --mem-gbs X        memory read bandwidth to compare with (default: measured at start, all\n"
            "                     threads, 4x the L3; `probe --bench`'s cached figure is shown beside it)\n"
            "  --check-goals      exit 1 when a performance goal of docs/bench.md is missed\n"
            "  --amx-scales row   also time the row-scaled int8 experiment (one scale per weight row and\n"
            "                     per token instead of per 32 values; not what inference runs): extra\n"
            "                     rows, impl amx, variant rowq, with %% of the AMX int8 peak, ratios to the\n"
            "                     same run's avx512 and amx rows, and its error (docs/kernels.md)\n"
            "  --json             JSON on stdout (schema " BENCH_SCHEMA ")\n"
            "  -o, --output FILE  also write the JSON to FILE (atomically)\n"
            "  -h, --help         this text\n"
            "\n"
            "exit codes: 0 ran, 1 --check-goals and a goal missed, 2 usage error or no usable kernels.\n"
            "See docs/bench.md.\n");
}

static bool parse_list(const char *s, bool (*one)(const char *, void *), void *ctx)
{
    char *dup = strdup(s), *save = NULL;
    bool ok = dup != NULL;
    for (char *t = dup ? strtok_r(dup, ",", &save) : NULL; ok && t; t = strtok_r(NULL, ",", &save))
        ok = one(t, ctx);
    free(dup);
    return ok;
}

static bool one_impl(const char *t, void *ctx)
{
    kern_impl i;
    if (!kern_impl_parse(t, &i) || i == KERN_IMPL_AUTO) {
        fprintf(stderr, "amxdiag: error: bench kernels: unknown implementation '%s' (amx, avx512, ref, amx-emu)\n", t);
        return false;
    }
    ((opts *)ctx)->impl[i] = true;
    return true;
}

static bool one_type(const char *t, void *ctx)
{
    opts *o = ctx;
    kern_type ty;
    if (!kern_type_parse(t, &ty) || (ty != KERN_TYPE_Q4_0 && ty != KERN_TYPE_Q8_0 && ty != KERN_TYPE_BF16)) {
        fprintf(stderr, "amxdiag: error: bench kernels: type '%s' is not benchmarked (q4_0, q8_0, bf16)\n", t);
        return false;
    }
    if (ty == KERN_TYPE_Q4_0)
        o->type_q4 = true;
    else if (ty == KERN_TYPE_Q8_0)
        o->type_q8 = true;
    else
        o->type_bf16 = true;
    return true;
}

static bool one_shape(const char *t, void *ctx)
{
    for (int i = 0; i < NSHAPES; i++)
        if (!strcmp(t, shapes[i].name)) {
            ((opts *)ctx)->shape[i] = true;
            return true;
        }
    fprintf(stderr, "amxdiag: error: bench kernels: unknown shape '%s'\n", t);
    return false;
}

static bool one_m(const char *t, void *ctx)
{
    opts *o = ctx;
    uint64_t v;
    if (!adg_parse_u64(t, &v) || v < 1 || v > 65536 || o->nm >= (int)ADG_ARRAY_LEN(o->ms)) {
        fprintf(stderr, "amxdiag: error: bench kernels: M '%s' must be an integer in 1..65536 (at most 32 values)\n", t);
        return false;
    }
    o->ms[o->nm++] = (int)v;
    return true;
}

/* ---- ceilings ---- */

typedef struct rd_args {
    const uint64_t *buf;
    size_t words;
    bool avx512;
    size_t pf;            /* the AVX-512 loop's prefetch distance, bytes (0: none) */
    int streams;          /* streams per thread (adg_memread) */
    uint64_t sink[64];
} rd_args;

static void read_worker(void *arg, int ith, int nth)
{
    rd_args *a = arg;
    long lo, hi;
    kern_split((long)(a->words / 32), ith, nth, &lo, &hi);   /* 256-byte units */
    a->sink[ith & 63] += adg_memread(a->buf + lo * 32, (size_t)(hi - lo) * 256, a->pf, a->streams, a->avx512);
}

static void touch_worker(void *arg, int ith, int nth)
{
    rd_args *a = arg;
    long lo, hi;
    kern_split((long)(a->words / 512), ith, nth, &lo, &hi);
    uint64_t *b = (uint64_t *)a->buf;
    for (long i = lo * 512; i < hi * 512; i++)
        b[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
}

/* The memory read the bandwidth figures are divided by: probe --bench's loops (one stream
 * per thread plain and prefetching adg_read_pf_bytes() ahead, ADG_MEMREAD_STREAMS streams
 * per thread both ways; the fastest counts) over four times the last-level cache (256 MiB
 * .. 2 GiB), so the read comes from memory. */
typedef struct mem_reader {
    rd_args a;
    size_t bytes;
} mem_reader;

static bool reader_open(mem_reader *r, kern_pool *p)
{
    memset(r, 0, sizeof *r);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t bytes = l3 > 0 ? (size_t)l3 * 4 : (size_t)1 << 30;
    bytes = bytes < ((size_t)256 << 20) ? (size_t)256 << 20 : bytes > ((size_t)2 << 30) ? (size_t)2 << 30 : bytes;
    bytes &= ~(size_t)4095;
    /* huge pages where the kernel gives them, as the probe's buffer and the weights have */
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return false;
    madvise(m, bytes, MADV_HUGEPAGE);
    uint64_t *buf = m;
    adg_error *ae = kern_impl_check(KERN_IMPL_AVX512);
    r->a = (rd_args){buf, bytes / 8, ae == NULL, 0, 1, {0}};
    adg_error_free(ae);
    r->bytes = bytes;
    kern_pool_run(p, touch_worker, &r->a);   /* first touch by the threads that read */
    return true;
}

/* The fastest loop's best of `passes` passes, GB/s. */
static double reader_gbs(mem_reader *r, kern_pool *p, int passes)
{
    const size_t pf = r->a.avx512 ? adg_read_pf_bytes() : 0;
    double best = 0;
    for (int l = 0; l < 4; l++) {
        if ((l & 1 && !pf) || (l >= 2 && !r->a.avx512))
            continue;
        r->a.pf = l & 1 ? pf : 0;
        r->a.streams = l >= 2 ? ADG_MEMREAD_STREAMS : 1;
        for (int i = 0; i < passes; i++) {
            const uint64_t t0 = adg_now_ns();
            kern_pool_run(p, read_worker, &r->a);
            const double gbs = (double)r->bytes / ((double)(adg_now_ns() - t0) * 1e-9) / 1e9;
            best = gbs > best ? gbs : best;
        }
    }
    return best;
}

static void reader_close(mem_reader *r)
{
    munmap((void *)r->a.buf, r->bytes);
    memset(r, 0, sizeof *r);
}

/* The run's all-thread memory read at the start.  The buffer stays open in r (r->bytes 0
 * when it could not be had) for the reads beside the M = 1 batched lines, so it is
 * allocated and first touched once per run. */
static double measure_read_gbs(int threads, mem_reader *r)
{
    kern_pool *p = NULL;
    adg_error *e = kern_pool_new(threads, false, &p);
    if (e) {
        adg_error_free(e);
        return 0;
    }
    const double best = reader_open(r, p) ? reader_gbs(r, p, 4) : 0;
    kern_pool_free(p);
    return best;
}

static double cpuinfo_mhz(void)
{
    char *data = NULL;
    size_t len;
    adg_error *e = adg_read_file("/proc/cpuinfo", 1 << 22, &data, &len);
    if (e) {
        adg_error_free(e);
        return 0;
    }
    double mhz = 0;
    const char *p = strstr(data, "cpu MHz");
    if (p && (p = strchr(p, ':')))
        mhz = strtod(p + 1, NULL);
    free(data);
    return mhz;
}

/* The ceilings of the run; without given_gbs the read is measured here, into r. */
static void load_ceilings(ceil_info *ci, int threads, double given_gbs, mem_reader *r)
{
    memset(ci, 0, sizeof *ci);
    adg_ceilings c;
    bool found = false;
    adg_error *e = adg_ceilings_load_current(&c, &found);
    if (e) {
        adg_warn("bench: ignoring cached ceilings: %s", adg_error_msg(e));
        adg_error_free(e);
        found = false;
    }
    if (found) {
        ci->from_probe = true;
        for (size_t i = 0; i < c.nnodes; i++)
            ci->probe_mem_gbs += c.nodes[i].read_gbs;
        ci->amx_int8_ops = c.amx_int8_all.ops_per_s;
        ci->amx_int8_core_ops = c.amx_int8_core.ops_per_s;
        ci->amx_int8_all_threads = c.amx_int8_all.threads;
        ci->amx_bf16_ops = c.amx_bf16_all.ops_per_s;
        ci->vnni_ops = c.vnni_all.ops_per_s;
        ci->clock_ghz = c.clock_all_ghz > 0 ? c.clock_all_ghz : c.clock_ghz;
    }
    if (given_gbs > 0) {
        ci->mem_gbs = given_gbs;
        ci->mem_src = "given with --mem-gbs";
    } else {
        /* Measured here, in the same process and conditions as the kernels (a VM's
         * bandwidth varies between boots and with its neighbours). */
        ci->bench_mem_gbs = measure_read_gbs(threads, r);
        ci->mem_gbs = ci->bench_mem_gbs;
        ci->mem_src = "measured by bench: probe --bench's read loops over 4x the L3 cache, all threads";
        if (ci->probe_mem_gbs > ci->mem_gbs) {   /* the larger: %bw is never flattered */
            ci->mem_gbs = ci->probe_mem_gbs;
            ci->mem_src = "amxdiag probe --bench (cached), larger than this run's read";
        }
    }
    ci->clock_src = "probe --bench";
    if (ci->clock_ghz <= 0) {
        ci->clock_ghz = cpuinfo_mhz() / 1000.0;
        ci->clock_src = found && c.clock_note[0] ? "/proc/cpuinfo's nominal MHz: probe --bench's clock was rejected"
                                                 : "/proc/cpuinfo's nominal MHz";
    }
    ci->amx_int8_theory = ci->clock_ghz > 0 ? 2048.0 * ci->clock_ghz * 1e9 * threads : 0;
    ci->threads = threads;
}

/* ---- weights and timing ---- */

static uint64_t rs = 0x243F6A8885A308D3ull;
static inline uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* Random weights directly in ggml layout (quantizing floats would dominate the run). */
static void *gen_weights(kern_type t, int64_t rows, int64_t k)
{
    size_t rsz = kern_row_size(t, k), total = rsz * (size_t)rows;
    uint8_t *w = malloc(total + 8);
    if (!w)
        return NULL;
    for (size_t i = 0; i < total; i += 8) {
        uint64_t v = rnd();
        memcpy(w + i, &v, 8);
    }
    if (t == KERN_TYPE_BF16) {
        uint16_t *h = (uint16_t *)w;
        for (size_t i = 0; i < total / 2; i++)   /* |w| in [2^-7, 1): finite, normal */
            h[i] = (uint16_t)((h[i] & 0x807F) | ((120u + (h[i] >> 7) % 7) << 7));
    } else {
        size_t bb = kern_type_block_bytes(t);
        for (size_t i = 0; i + bb <= total; i += bb) {
            uint16_t d = kern_fp32_to_fp16(0.001f + (float)(w[i] & 0xF) * 1e-4f);
            memcpy(w + i, &d, 2);
        }
    }
    return w;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench_set {
    const shape *sh;
    kern_type type;
    kern_weight **w;     /* R copies */
    kern_rowq_weight **rq;   /* instead of w: R row-scaled copies (--amx-scales row) */
    int R;
    size_t copy_bytes;   /* one copy, repacked */
} bench_set;

/* M = 1 the way the fused generation schedule runs it: B products in one pool region, the
 * activation quantized once (kern_gemv_batch).  A region per product (time_point) costs a
 * dispatch and a quantization of x per call: for a 0.5 MiB attn_kv or a router that is
 * most of the call, and not what a decode step pays.  B distinct weight copies (and each
 * copy's routing for MoE shapes) of at least 16 MiB in all, rotating through every copy. */
static adg_error *time_batch(kern_cpu *c, const bench_set *bs, const float *x, const int32_t *ids, int nsets,
                             double mat_bytes, const opts *o, row *out)
{
    const shape *sh = bs->sh;
    const int per = sh->experts ? TOPK : 1;
    const double call = mat_bytes * per;
    int B = (int)ceil(16.0 * 1048576.0 / (call > 0 ? call : 1));
    B = B < 2 ? 2 : B > 64 ? 64 : B;
    if (B > bs->R)
        B = bs->R;
    if (B < 2)
        return NULL;   /* one copy: a batch would read it from cache */
    const int nw = B * per;
    const kern_weight **ws = calloc((size_t)nw, sizeof *ws);
    int64_t *mats = calloc((size_t)nw, sizeof *mats);
    float **ys = calloc((size_t)nw, sizeof *ys);
    float *y = malloc((size_t)nw * (size_t)sh->n * sizeof(float));
    adg_error *e = NULL;
    if (!ws || !mats || !ys || !y) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory for a batch of %d GEMVs", nw);
        goto out;
    }
    for (int i = 0; i < nw; i++)
        ys[i] = y + (size_t)i * (size_t)sh->n;
    double times[64], spent = 0, before = 0;
    if (o->reader)
        before = reader_gbs(o->reader, c->pool, 2);   /* on the workers that run the GEMVs */
    int reps = 0, copy = 0, set = 0;
    for (int it = -8; reps < (int)ADG_ARRAY_LEN(times); it++) {   /* 8 untimed regions first */
        for (int b = 0; b < B; b++) {
            const int32_t *is = ids ? ids + (size_t)set * TOPK : NULL;
            for (int j = 0; j < per; j++) {
                ws[b * per + j] = bs->w[copy];
                mats[b * per + j] = is ? is[j] : 0;
            }
            copy = (copy + 1) % bs->R;
            set = (set + 1) % nsets;
        }
        const uint64_t t0 = adg_now_ns();
        if ((e = kern_gemv_batch(c, ws, mats, nw, x, ys, NULL)))
            goto out;
        const double s = (double)(adg_now_ns() - t0) * 1e-9;
        if (it < 0)
            continue;
        times[reps++] = s;
        spent += s;
        if (reps >= 3 && spent >= o->min_time)
            break;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp_d);
    out->batch = B;
    out->batch_ms = (reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2])) * 1e3;
    out->batch_bytes = (double)nw * mat_bytes + (double)sh->k * 4 + (double)nw * (double)sh->n * 4;
    if (before > 0) {   /* the larger of the two: the fraction is never flattered */
        const double after = reader_gbs(o->reader, c->pool, 2);
        out->pair_gbs = after > before ? after : before;
    }
out:
    free(ws);
    free(mats);
    free(ys);
    free(y);
    return e;
}

/* One timed call of copy `copy`: the shipped kernels, or the row-scaled experiment's. */
static adg_error *bench_call(kern_cpu *c, const bench_set *bs, int copy, const float *x, const int32_t *ids, int m,
                             float *y, kern_op_info *info)
{
    if (bs->rq)
        return bs->sh->experts ? kern_rowq_moe_matmul(c, bs->rq[copy], x, false, ids, m, TOPK, y, info)
                               : kern_rowq_matmul(c, bs->rq[copy], x, m, y, info);
    return bs->sh->experts ? kern_moe_matmul(c, bs->w[copy], x, false, ids, m, TOPK, y, info)
                           : kern_matmul(c, bs->w[copy], x, m, y, info);
}

static adg_error *time_point(kern_cpu *c, const bench_set *bs, int m, const opts *o, row *out)
{
    const shape *sh = bs->sh;
    const int64_t k = sh->k, n = sh->n;
    float *x = malloc((size_t)m * (size_t)k * sizeof(float));
    float *y = malloc((size_t)m * (size_t)n * (sh->experts ? TOPK : 1) * sizeof(float));
    /* MoE: several routings, cycled with the weight copies, so each call's experts are
     * mostly not in cache (a decode step routes each token anew). */
    enum { NSETS = 16 };
    int32_t *ids = sh->experts ? malloc((size_t)m * TOPK * NSETS * sizeof(int32_t)) : NULL;
    adg_error *e = NULL;
    if (!x || !y || (sh->experts && !ids)) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory for M = %d", m);
        goto out;
    }
    for (int64_t i = 0; i < m * k; i++)
        x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
    double distinct = 0;
    if (ids) {
        for (int set = 0; set < NSETS; set++) {
            bool used[1024] = {false};
            int32_t *is = ids + (size_t)set * (size_t)m * TOPK;
            for (int t = 0; t < m; t++)
                for (int j = 0; j < TOPK; j++) {
                    int32_t ex;
                    bool dup;
                    do {   /* top-k experts of a token are distinct */
                        ex = (int32_t)(rnd() % (uint64_t)sh->experts);
                        dup = false;
                        for (int q = 0; q < j; q++)
                            dup |= is[t * TOPK + q] == ex;
                    } while (dup);
                    is[t * TOPK + j] = ex;
                    if (!used[ex]) {
                        used[ex] = true;
                        distinct += 1.0 / NSETS;
                    }
                }
        }
    }
    const double mat_bytes = (double)bs->copy_bytes / (sh->experts ? sh->experts : 1);
    out->bytes = (sh->experts ? distinct : 1) * mat_bytes + (double)m * (double)k * 4 +
                 (double)m * (double)n * 4 * (sh->experts ? TOPK : 1);
    out->flops = 2.0 * m * (double)n * (double)k * (sh->experts ? TOPK : 1);
    double times[64];
    int reps = 0, copy = 0, set = 0;
    double spent = 0, warm = 0;
    kern_op_info info;
    /* Warm-up (thread wake-up, scratch, page tables of the copies) for at least 20 ms and
     * up to 200 calls: the first calls after a context starts were seen several times
     * slower on a VM. */
    for (int it = 0; it < 200 && warm < 0.02; it++) {
        const int32_t *is = ids ? ids + (size_t)set * (size_t)m * TOPK : NULL;
        uint64_t t0 = adg_now_ns();
        e = bench_call(c, bs, copy, x, is, m, y, &info);
        warm += (double)(adg_now_ns() - t0) * 1e-9;
        if (e)
            goto out;
        copy = (copy + 1) % bs->R;
        set = (set + 1) % NSETS;
    }
    while (reps < (int)ADG_ARRAY_LEN(times)) {
        const int cp = copy;
        copy = (copy + 1) % bs->R;   /* each call reads a copy that is not in cache */
        const int32_t *is = ids ? ids + (size_t)set * (size_t)m * TOPK : NULL;
        set = (set + 1) % NSETS;
        uint64_t t0 = adg_now_ns();
        e = bench_call(c, bs, cp, x, is, m, y, &info);
        double s = (double)(adg_now_ns() - t0) * 1e-9;
        if (e)
            goto out;
        times[reps++] = s;
        spent += s;
        if (reps >= 3 && spent >= o->min_time)
            break;
    }
    qsort(times, (size_t)reps, sizeof times[0], cmp_d);
    out->ms = (reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2])) * 1e3;
    out->reps = reps;
    snprintf(out->variant, sizeof out->variant, "%s", bs->rq ? "rowq" : info.variant);
    if (!bs->rq && m == 1 && out->impl == KERN_IMPL_AVX512 && bs->type != KERN_TYPE_BF16 && kern_gemv_ok(c, bs->w[0]))
        e = time_batch(c, bs, x, ids, NSETS, mat_bytes, o, out);
out:
    free(x);
    free(y);
    free(ids);
    return e;
}

static adg_error *make_ctx(kern_impl impl, const opts *o, int force_m, kern_cpu **c)
{
    kern_cpu_opts co = {.impl = impl, .threads = o->threads};
    adg_error *e = kern_cpu_new(&co, c);
    if (e)
        return e;
    if (force_m) {   /* amx: tiles for every M; avx512 on an AMX context: never */
        kern_crossover x = {force_m, force_m, force_m, false};
        kern_cpu_set_crossover(*c, &x);
    }
    return NULL;
}

static void free_set(bench_set *bs)
{
    for (int i = 0; bs->w && i < bs->R; i++)
        kern_weight_free(bs->w[i]);
    for (int i = 0; bs->rq && i < bs->R; i++)
        kern_rowq_weight_free(bs->rq[i]);
    free(bs->w);
    free(bs->rq);
    bs->w = NULL;
    bs->rq = NULL;
}

static adg_error *build_set(kern_cpu *c, const shape *sh, kern_type t, double min_mib, bench_set *bs)
{
    memset(bs, 0, sizeof *bs);
    bs->sh = sh;
    bs->type = t;
    const int64_t mats = sh->experts ? sh->experts : 1;
    void *src = gen_weights(t, mats * sh->n, sh->k);
    if (!src)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %s %s weights", sh->name, kern_type_name(t));
    const double one = (double)kern_row_size(t, sh->k) * (double)(mats * sh->n);
    bs->R = (int)ceil(min_mib * 1048576.0 / one);
    if (bs->R < 1)
        bs->R = 1;
    bs->w = calloc((size_t)bs->R, sizeof *bs->w);
    adg_error *e = bs->w ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
    for (int i = 0; !e && i < bs->R; i++)
        e = kern_weight_new(c, t, mats, sh->n, sh->k, src, &bs->w[i]);
    free(src);
    if (e) {
        free_set(bs);
        return adg_error_prefix(e, "%s %s", sh->name, kern_type_name(t));
    }
    bs->copy_bytes = kern_weight_bytes(bs->w[0]);
    return NULL;
}

/* ---- the row-scaled experiment (--amx-scales row) ---- */

/* The row-scaled copies, from weights of a random stream of their own, so the shipped
 * rows get the same data with and without the option. */
static adg_error *build_rowq_set(kern_cpu *c, const shape *sh, kern_type t, double min_mib, bench_set *bs)
{
    memset(bs, 0, sizeof *bs);
    bs->sh = sh;
    bs->type = t;
    const int64_t mats = sh->experts ? sh->experts : 1;
    const uint64_t saved = rs;
    rs = 0x452821E638D01377ull;
    void *src = gen_weights(t, mats * sh->n, sh->k);
    rs = saved;
    if (!src)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %s %s weights", sh->name, kern_type_name(t));
    const double one = (double)(mats * sh->n) * (double)((sh->k + KERN_ROWQ_KC - 1) / KERN_ROWQ_KC * KERN_ROWQ_KC);
    bs->R = (int)ceil(min_mib * 1048576.0 / one);
    if (bs->R < 1)
        bs->R = 1;
    bs->rq = calloc((size_t)bs->R, sizeof *bs->rq);
    adg_error *e = bs->rq ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
    for (int i = 0; !e && i < bs->R; i++)
        e = kern_rowq_weight_new(c, t, mats, sh->n, sh->k, src, &bs->rq[i]);
    free(src);
    if (e) {
        free_set(bs);
        return adg_error_prefix(e, "%s %s row-scaled", sh->name, kern_type_name(t));
    }
    bs->copy_bytes = kern_rowq_weight_bytes(bs->rq[0]);
    return NULL;
}

static float urand(void)   /* uniform in [-1, 1) */
{
    return (float)(rnd() >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static double rel_rms(const float *y, const float *ref, const double *exact, int64_t cnt, double *max_rel)
{
    double se = 0, sr = 0, me = 0, mr = 0;
    for (int64_t i = 0; i < cnt; i++) {
        const double r = exact ? exact[i] : (double)ref[i], d = (double)y[i] - r;
        se += d * d;
        sr += r * r;
        me = fabs(d) > me ? fabs(d) : me;
        mr = fabs(r) > mr ? fabs(r) : mr;
    }
    if (max_rel)
        *max_rel = me / (mr > 0 ? mr : 1);
    return sqrt(se / (sr > 0 ? sr : 1));
}

/* What the contract costs in accuracy at this shape's K: m rows of uniform random input
 * times n rows of weights quantised by ggml's quantiser from uniform values (one
 * magnitude per row), row-scaled against block-scaled (the shipped kernels), and each
 * against the exact product of the dequantised weights.  tests/unit/test_kern_amx_rowq.c
 * covers outliers and wide block scales. */
static adg_error *rowq_accuracy(kern_cpu *c, const shape *sh, kern_type t, bool small, struct rowq_acc *acc)
{
    const int64_t m = small ? 8 : 32, k = sh->k, n = sh->n < (small ? 64 : 1024) ? sh->n : (small ? 64 : 1024);
    const size_t rsz = kern_row_size(t, k);
    float *wf = malloc((size_t)(n * k) * sizeof(float)), *x = malloc((size_t)(m * k) * sizeof(float));
    float *yb = malloc((size_t)(m * n) * sizeof(float)), *yr = malloc((size_t)(m * n) * sizeof(float));
    double *ex = malloc((size_t)(m * n) * sizeof(double));
    uint8_t *wq = malloc(rsz * (size_t)n);
    kern_weight *bw = NULL;
    kern_rowq_weight *rw = NULL;
    adg_error *e = NULL;
    if (!wf || !x || !yb || !yr || !ex || !wq) {
        e = adg_error_new(ADG_E_NOMEM, "out of memory for the accuracy check");
        goto out;
    }
    const uint64_t saved = rs;
    rs = 0x13198A2E03707344ull;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < k; i++)
            wf[r * k + i] = urand() * (0.5f + (float)(r % 7));
    for (int64_t r = 0; r < m; r++)
        for (int64_t i = 0; i < k; i++)
            x[r * k + i] = urand() * (0.5f + (float)(r % 3));
    rs = saved;
    for (int64_t r = 0; r < n && !e; r++)   /* wf becomes the dequantised weights */
        if (!(e = kern_quantize_row(t, wf + r * k, wq + rsz * (size_t)r, k)))
            e = kern_dequantize_row(t, wq + rsz * (size_t)r, wf + r * k, k);
    if (e || (e = kern_weight_new(c, t, 1, n, k, wq, &bw)) || (e = kern_rowq_weight_new(c, t, 1, n, k, wq, &rw)) ||
        (e = kern_matmul(c, bw, x, m, yb, NULL)) || (e = kern_rowq_matmul(c, rw, x, m, yr, NULL)))
        goto out;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0;
            for (int64_t q = 0; q < k; q++)
                sum += (double)x[i * k + q] * (double)wf[j * k + q];
            ex[i * n + j] = sum;
        }
    acc->have = true;
    acc->m = (int)m;
    acc->n = (int)n;
    acc->rms = rel_rms(yr, yb, NULL, m * n, &acc->max);
    acc->rowq_exact = rel_rms(yr, NULL, ex, m * n, NULL);
    acc->block_exact = rel_rms(yb, NULL, ex, m * n, NULL);
out:
    kern_weight_free(bw);
    kern_rowq_weight_free(rw);
    free(wf);
    free(x);
    free(yb);
    free(yr);
    free(ex);
    free(wq);
    return e ? adg_error_prefix(e, "%s %s row-scaled accuracy", sh->name, kern_type_name(t)) : NULL;
}

/* ---- output ---- */

static double gbs(const row *r) { return r->bytes / (r->ms * 1e-3) / 1e9; }
static double opsps(const row *r) { return r->flops / (r->ms * 1e-3); }

static double peak_for(const ceil_info *ci, const row *r)
{
    if (r->impl == KERN_IMPL_AMX)
        return r->type == KERN_TYPE_BF16 ? ci->amx_bf16_ops : ci->amx_int8_ops;
    if (r->impl == KERN_IMPL_AVX512 && r->type != KERN_TYPE_BF16)
        return ci->vnni_ops;
    return 0;
}

/* The shipped kernels' row (never an --amx-scales row one). */
static const row *find(const row *rows, int nr, const char *shape, kern_type t, kern_impl impl, int m)
{
    for (int i = 0; i < nr; i++)
        if (!rows[i].rowq && rows[i].type == t && rows[i].impl == impl && rows[i].m == m && !strcmp(rows[i].shape, shape))
            return &rows[i];
    return NULL;
}

/* The probe's bare TDPBSSD loop at this run's thread count (one thread, or the all-core
 * figure when the run uses as many threads), 0 when not measured: on a VM whose vCPUs
 * share AMX units the all-core loop stays far below 16 x 2048 ops/cycle. */
static double tdpbssd_loop(const ceil_info *ci)
{
    if (ci->threads == 1)
        return ci->amx_int8_core_ops;
    return ci->threads == ci->amx_int8_all_threads ? ci->amx_int8_ops : 0;
}

/* A row-scaled row against the theoretical int8 peak (2048 ops/cycle/core) and the same
 * run's avx512 and block-scaled amx rows (0: not measured). */
static void rowq_cmp(const row *rows, int nr, const row *r, const ceil_info *ci, double *frac, double *vs_avx,
                     double *vs_amx)
{
    const row *v = find(rows, nr, r->shape, r->type, KERN_IMPL_AVX512, r->m);
    const row *a = find(rows, nr, r->shape, r->type, r->impl, r->m);
    *frac = ci->amx_int8_theory > 0 ? opsps(r) / ci->amx_int8_theory : 0;
    *vs_avx = v ? v->ms / r->ms : 0;
    *vs_amx = a ? a->ms / r->ms : 0;
}

typedef struct goal {
    char name[96];
    double target, measured;
    bool pass;
    const char *unit;
} goal;

static int eval_goals(const row *rows, int nr, const ceil_info *ci, goal *g, int max)
{
    int ng = 0;
    for (int s = 0; s < NSHAPES; s++)
        for (int ti = 0; ti < 2; ti++) {
            kern_type t = ti ? KERN_TYPE_Q8_0 : KERN_TYPE_Q4_0;
            /* M = 1 bandwidth: the faster of the implementations */
            const row *a = find(rows, nr, shapes[s].name, t, KERN_IMPL_AMX, 1);
            const row *b = find(rows, nr, shapes[s].name, t, KERN_IMPL_AVX512, 1);
            const row *best = a && b ? (a->ms < b->ms ? a : b) : a ? a : b;
            if (best && ci->mem_gbs > 0 && ng < max && strcmp(shapes[s].name, "router")) {
                /* judged as generation runs it: products back to back in one region
                 * (batched) where measured, not one dispatch and quantization per call */
                const bool bt = best->batch > 0, pair = bt && best->pair_gbs > 0;
                snprintf(g[ng].name, sizeof g[ng].name, "%s %s M=1%s: >= 90%% of memory read bandwidth%s",
                         shapes[s].name, kern_type_name(t), bt ? " batched" : "", pair ? " (read beside it)" : "");
                g[ng].target = 0.9;
                g[ng].measured = (bt ? best->batch_bytes / (best->batch_ms * 1e-3) / 1e9 : gbs(best)) /
                                 (pair ? best->pair_gbs : ci->mem_gbs);
                g[ng].unit = "fraction of read bandwidth";
                g[ng].pass = g[ng].measured >= 0.9;
                ng++;
            }
            const row *x = find(rows, nr, shapes[s].name, t, KERN_IMPL_AMX, 512);
            const row *v = find(rows, nr, shapes[s].name, t, KERN_IMPL_AVX512, 512);
            if (x && ci->amx_int8_theory > 0 && ng < max && !shapes[s].experts && strcmp(shapes[s].name, "router")) {
                snprintf(g[ng].name, sizeof g[ng].name, "%s %s M=512 AMX: >= 40%% of AMX int8 peak", shapes[s].name,
                         kern_type_name(t));
                g[ng].target = 0.4;
                g[ng].measured = opsps(x) / ci->amx_int8_theory;
                g[ng].unit = "fraction of 2048 ops/cycle/core";
                g[ng].pass = g[ng].measured >= 0.4;
                ng++;
            }
            if (x && v && ng < max && strcmp(shapes[s].name, "router")) {
                const double need = shapes[s].experts ? 3.0 : 4.0;
                snprintf(g[ng].name, sizeof g[ng].name, "%s %s M=512: AMX >= %.0fx AVX-512", shapes[s].name,
                         kern_type_name(t), need);
                g[ng].target = need;
                g[ng].measured = v->ms / x->ms;
                g[ng].unit = "speed-up";
                g[ng].pass = g[ng].measured >= need;
                ng++;
            }
        }
    return ng;
}

/* Smallest M from which AMX beats VNNI at that M and every larger measured M; the largest
 * over shapes (conservative: tiles only where they win everywhere).  When AMX never wins,
 * twice the largest measured M.  Dense shapes only: the dispatcher compares the crossover
 * with the rows of one GEMM, and an MoE row's M (tokens) is not that (an expert gets about
 * M x 8 / 128 rows). */
static int crossover(const row *rows, int nr, kern_type t, bool *found)
{
    int worst = 0;
    *found = false;
    for (int s = 0; s < NSHAPES; s++) {
        if (shapes[s].experts)
            continue;
        int ms[64], nms = 0;
        for (int i = 0; i < nr && nms < 64; i++)
            if (rows[i].impl == KERN_IMPL_AMX && !rows[i].rowq && rows[i].type == t && !strcmp(rows[i].shape, shapes[s].name) &&
                find(rows, nr, rows[i].shape, t, KERN_IMPL_AVX512, rows[i].m))
                ms[nms++] = rows[i].m;
        if (nms < 2)
            continue;   /* one M says nothing about where the lines cross */
        for (int i = 1; i < nms; i++)
            for (int j = i; j > 0 && ms[j - 1] > ms[j]; j--) {
                int tmp = ms[j];
                ms[j] = ms[j - 1];
                ms[j - 1] = tmp;
            }
        int cand = ms[nms - 1] * 2;
        for (int i = nms - 1; i >= 0; i--) {
            const row *a = find(rows, nr, shapes[s].name, t, KERN_IMPL_AMX, ms[i]);
            const row *v = find(rows, nr, shapes[s].name, t, KERN_IMPL_AVX512, ms[i]);
            if (a->ms >= v->ms)
                break;
            cand = ms[i];
        }
        *found = true;
        worst = cand > worst ? cand : worst;
    }
    return worst;
}

static json_t *rows_json(const row *rows, int nr, const ceil_info *ci)
{
    json_t *a = json_array();
    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        const double pk = peak_for(ci, r);
        json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:s,s:f,s:f,s:f,s:f,s:o,s:o,s:i}", "shape", r->shape, "type",
                         kern_type_name(r->type), "impl", kern_impl_name(r->impl), "m", r->m, "variant", r->variant,
                         "median_ms", r->ms, "gflops", opsps(r) / 1e9, "gbs", gbs(r), "bytes", r->bytes,
                         "fraction_of_read_bw", ci->mem_gbs > 0 ? json_real(gbs(r) / ci->mem_gbs) : json_null(),
                         "fraction_of_peak", pk > 0 ? json_real(opsps(r) / pk) : json_null(), "reps", r->reps);
        if (o && r->batch > 0) {
            const double bg = r->batch_bytes / (r->batch_ms * 1e-3) / 1e9;
            json_object_set_new(o, "batch", json_integer(r->batch));
            json_object_set_new(o, "batched_ms", json_real(r->batch_ms));
            json_object_set_new(o, "batched_gbs", json_real(bg));
            json_object_set_new(o, "batched_fraction_of_read_bw", ci->mem_gbs > 0 ? json_real(bg / ci->mem_gbs) : json_null());
            json_object_set_new(o, "paired_read_gbs", r->pair_gbs > 0 ? json_real(r->pair_gbs) : json_null());
            json_object_set_new(o, "batched_fraction_of_paired_read",
                                r->pair_gbs > 0 ? json_real(bg / r->pair_gbs) : json_null());
        }
        if (o && r->rowq) {
            double frac, va, vx;
            rowq_cmp(rows, nr, r, ci, &frac, &va, &vx);
            json_t *q = json_pack("{s:s,s:f,s:o,s:o,s:o}", "contract", "one scale per weight row and per token",
                                  "tops", opsps(r) / 1e12, "fraction_of_amx_int8_theoretical",
                                  frac > 0 ? json_real(frac) : json_null(), "speedup_vs_avx512",
                                  va > 0 ? json_real(va) : json_null(), "speedup_vs_amx_block",
                                  vx > 0 ? json_real(vx) : json_null());
            if (q)
                json_object_set_new(q, "fraction_of_tdpbssd_loop",
                                    tdpbssd_loop(ci) > 0 ? json_real(opsps(r) / tdpbssd_loop(ci)) : json_null());
            if (q && r->acc.have)
                json_object_set_new(q, "accuracy",
                                    json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:s}", "m", r->acc.m, "n", r->acc.n,
                                              "rel_rms_vs_block", r->acc.rms, "rel_max_vs_block", r->acc.max,
                                              "rowq_rel_rms_vs_exact", r->acc.rowq_exact, "block_rel_rms_vs_exact",
                                              r->acc.block_exact, "data", "uniform random, one magnitude per row"));
            json_object_set_new(o, "rowq", q);
        }
        json_array_append_new(a, o);
    }
    return a;
}

static void print_header(void)
{
    printf("%-12s %-5s %-7s %5s %10s %10s %8s %7s %7s  %s\n", "shape", "type", "impl", "M", "median ms", "GFLOP/s",
           "GB/s", "%bw", "%peak", "variant");
}

static void print_table(const row *rows, int nr, const ceil_info *ci)
{
    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        const double pk = peak_for(ci, r);
        char bw[16] = "-", pkb[16] = "-";
        if (ci->mem_gbs > 0)
            snprintf(bw, sizeof bw, "%.0f%%", 100 * gbs(r) / ci->mem_gbs);
        if (pk > 0)
            snprintf(pkb, sizeof pkb, "%.0f%%", 100 * opsps(r) / pk);
        printf("%-12s %-5s %-7s %5d %10.3f %10.1f %8.1f %7s %7s  %s\n", r->shape, kern_type_name(r->type),
               kern_impl_name(r->impl), r->m, r->ms, opsps(r) / 1e9, gbs(r), bw, pkb, r->variant);
        if (r->batch > 0) {
            const double bg = r->batch_bytes / (r->batch_ms * 1e-3) / 1e9;
            char bb[16] = "-", pr[64] = "";
            if (ci->mem_gbs > 0)
                snprintf(bb, sizeof bb, "%.0f%%", 100 * bg / ci->mem_gbs);
            if (r->pair_gbs > 0)
                snprintf(pr, sizeof pr, "; %.0f%% of the read beside it (%.1f GB/s)", 100 * bg / r->pair_gbs,
                         r->pair_gbs);
            printf("%-12s %-5s %-7s %5s %10.3f %10s %8.1f %7s %7s  %d in one region (ms per product)%s\n", "",
                   "", "batched", "", r->batch_ms / r->batch, "", bg, bb, "", r->batch, pr);
        }
    }
}

static void print_rowq(const row *rows, int nr, const row *r, const ceil_info *ci)
{
    double frac, va, vx;
    rowq_cmp(rows, nr, r, ci, &frac, &va, &vx);
    printf("%-12s %-5s %-7s %5s  row-scaled: %.2f TOPS", "", "", "", "", opsps(r) / 1e12);
    if (frac > 0)
        printf(" = %.1f%% of the int8 peak", 100 * frac);
    if (tdpbssd_loop(ci) > 0)
        printf(" (%.0f%% of the bare TDPBSSD loop at %d thread%s)", 100 * opsps(r) / tdpbssd_loop(ci), ci->threads,
               ci->threads == 1 ? "" : "s");
    if (va > 0)
        printf(", %.2fx avx512", va);
    if (vx > 0)
        printf(", %.2fx amx (block scales)", vx);
    if (r->acc.have)
        printf("; error vs block %.2f%% rms, %.2f%% max (to exact: %.2f%% vs %.2f%%)", 100 * r->acc.rms, 100 * r->acc.max,
               100 * r->acc.rowq_exact, 100 * r->acc.block_exact);
    printf("\n");
}

static bool wants_gpu(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--gpu"))
            return true;
    return false;
}

int kern_bench_cmd_main(int argc, char **argv)
{
    if (wants_gpu(argc, argv))
        return kern_cuda_bench_cmd(argc, argv);
    opts o = {0};
    o.min_time = -1;
    o.weight_mib = -1;
    bool any_impl = false, any_type = false, any_shape = false;
    static const struct option lo[] = {
        {"impl", required_argument, 0, 'i'},   {"type", required_argument, 0, 't'},
        {"shape", required_argument, 0, 's'},  {"m", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 'T'}, {"quick", no_argument, 0, 'q'},
        {"min-time", required_argument, 0, 'R'}, {"weights-mib", required_argument, 0, 'W'},
        {"save-crossover", optional_argument, 0, 'X'}, {"check-goals", no_argument, 0, 'G'},
        {"all-m", no_argument, 0, 'A'},         {"mem-gbs", required_argument, 0, 'B'},         {"json", no_argument, 0, 'j'},
        {"output", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
        {"amx-scales", required_argument, 0, 'S'},
        {0, 0, 0, 0}};
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'i':
            if (!parse_list(optarg, one_impl, &o))
                return adg_cmd_usage_error("bench kernels");
            any_impl = true;
            break;
        case 't':
            if (!parse_list(optarg, one_type, &o))
                return adg_cmd_usage_error("bench kernels");
            any_type = true;
            break;
        case 's':
            if (!parse_list(optarg, one_shape, &o))
                return adg_cmd_usage_error("bench kernels");
            any_shape = true;
            break;
        case 'm':
            if (!parse_list(optarg, one_m, &o))
                return adg_cmd_usage_error("bench kernels");
            o.m_given = true;
            break;
        case 'T': {
            uint64_t v;
            if (!adg_parse_u64(optarg, &v) || v < 1 || v > 4096) {
                fprintf(stderr, "amxdiag: error: bench kernels: --threads '%s' must be in 1..4096\n", optarg);
                return adg_cmd_usage_error("bench kernels");
            }
            o.threads = (int)v;
            break;
        }
        case 'R':
            if (!adg_parse_double(optarg, &o.min_time) || !(o.min_time > 0 && o.min_time <= 60)) {
                fprintf(stderr, "amxdiag: error: bench kernels: --min-time '%s' must be in (0, 60] seconds\n", optarg);
                return adg_cmd_usage_error("bench kernels");
            }
            break;
        case 'W':
            if (!adg_parse_double(optarg, &o.weight_mib) || !(o.weight_mib >= 0 && o.weight_mib <= 65536)) {
                fprintf(stderr, "amxdiag: error: bench kernels: --weights-mib '%s' must be in 0..65536\n", optarg);
                return adg_cmd_usage_error("bench kernels");
            }
            break;
        case 'B':
            if (!adg_parse_double(optarg, &o.mem_gbs) || !(o.mem_gbs > 0 && o.mem_gbs < 1e5)) {
                fprintf(stderr, "amxdiag: error: bench kernels: --mem-gbs '%s' must be a positive GB/s figure\n", optarg);
                return adg_cmd_usage_error("bench kernels");
            }
            break;
        case 'X':
            o.save = true;
            o.save_xo = optarg ? optarg : "";
            break;
        case 'G': o.check_goals = true; break;
        case 'S':
            if (!kern_amx_scales_parse(optarg, &o.rowq)) {
                fprintf(stderr, "amxdiag: error: bench kernels: --amx-scales '%s' must be block (the shipped kernels "
                                "only) or row (also the row-scaled experiment)\n", optarg);
                return adg_cmd_usage_error("bench kernels");
            }
            break;
        case 'A': o.all_m = true; break;
        case 'q': o.quick = true; break;
        case 'j': o.json = true; break;
        case 'o': o.output = optarg; break;
        case 'h': usage(stdout); return ADG_EXIT_OK;
        default: return adg_cmd_usage_error("bench kernels");
        }
    }
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "kernels")) {
            fprintf(stderr, "amxdiag: error: bench: unexpected argument '%s'\n", argv[i]);
            return adg_cmd_usage_error("bench kernels");
        }
    if (!any_impl) {
        adg_error *e = kern_impl_check(KERN_IMPL_AMX);
        o.impl[KERN_IMPL_AMX] = e == NULL;
        adg_error_free(e);
        e = kern_impl_check(KERN_IMPL_AVX512);
        o.impl[KERN_IMPL_AVX512] = e == NULL;
        adg_error_free(e);
        if (!o.impl[KERN_IMPL_AMX] && !o.impl[KERN_IMPL_AVX512])
            o.impl[KERN_IMPL_REF] = true;
    }
    for (int i = KERN_IMPL_REF; i <= KERN_IMPL_AMX_EMU; i++)
        if (o.impl[i]) {
            adg_error *e = kern_impl_check((kern_impl)i);
            if (e) {
                adg_error_prefix(e, "bench kernels --impl %s", kern_impl_name((kern_impl)i));
                adg_error_print(e, stderr);
                adg_error_free(e);
                return ADG_EXIT_USAGE;
            }
        }
    if (o.rowq && !o.impl[KERN_IMPL_AMX] && !o.impl[KERN_IMPL_AMX_EMU]) {
        fprintf(stderr, "amxdiag: error: bench kernels: --amx-scales row times AMX tiles, and no tile implementation "
                        "is selected\n  hint: run it on an AMX machine with --impl amx,avx512 (or --impl amx-emu,avx512 "
                        "for a slow check of the code path)\n");
        return ADG_EXIT_USAGE;
    }
    if (!any_type)
        o.type_q4 = o.type_q8 = o.type_bf16 = true;
    if (!any_shape)
        for (int s = 0; s < NSHAPES; s++)
            o.shape[s] = !o.quick || !strcmp(shapes[s].name, "attn_q") || !strcmp(shapes[s].name, "moe_gate_up") ||
                         !strcmp(shapes[s].name, "lm_head");
    if (!o.m_given) {
        if (o.quick) {
            o.ms[0] = 1, o.ms[1] = 16, o.ms[2] = 512, o.nm = 3;
        } else {
            for (int m = 1; m <= 512; m *= 2)
                o.ms[o.nm++] = m;
        }
    }
    if (o.min_time < 0)
        o.min_time = o.quick ? 0.05 : 0.2;
    if (o.weight_mib < 0)
        o.weight_mib = o.quick ? 512 : 1024;
    if (o.threads == 0) {
        kern_cpu *tmp = NULL;
        kern_cpu_opts co = {.impl = KERN_IMPL_REF};
        adg_error *e = kern_cpu_new(&co, &tmp);
        if (e) {
            adg_error_print(e, stderr);
            adg_error_free(e);
            return ADG_EXIT_USAGE;
        }
        o.threads = kern_cpu_threads(tmp);
        kern_cpu_free(tmp);
    }

    ceil_info ci;
    mem_reader reader = {0};
    load_ceilings(&ci, o.threads, o.mem_gbs, &reader);
    if (reader.bytes)
        o.reader = &reader;
    if (!o.json) {
        printf("amxdiag bench kernels: %d threads; memory read %.1f GB/s (%s)", o.threads, ci.mem_gbs, ci.mem_src);
        if (ci.bench_mem_gbs > 0)
            printf("; this run read %.1f GB/s", ci.bench_mem_gbs);
        if (ci.probe_mem_gbs > 0)
            printf("; probe --bench cached %.1f GB/s", ci.probe_mem_gbs);
        printf("\n");
        if (ci.from_probe)
            printf("ceilings: AMX int8 %.1f TOPS, AMX bf16 %.1f TFLOP/s, VNNI %.2f TOPS measured; AMX int8 theoretical "
                   "%.1f TOPS (2048 ops/cycle/core at %.2f GHz, %s)\n",
                   ci.amx_int8_ops / 1e12, ci.amx_bf16_ops / 1e12, ci.vnni_ops / 1e12, ci.amx_int8_theory / 1e12,
                   ci.clock_ghz, ci.clock_src);
        else
            printf("compute ceilings unknown: run `amxdiag probe --bench` to measure them (AMX int8 theoretical "
                   "%.1f TOPS at %.2f GHz, %s)\n",
                   ci.amx_int8_theory / 1e12, ci.clock_ghz, ci.clock_src);
        fflush(stdout);
    }

    row *rows = NULL;
    int nr = 0, cap = 0;
    adg_error *e = NULL;
    const kern_type types[3] = {KERN_TYPE_Q4_0, KERN_TYPE_Q8_0, KERN_TYPE_BF16};
    const bool type_on[3] = {o.type_q4, o.type_q8, o.type_bf16};
    for (int s = 0; s < NSHAPES && !e; s++) {
        if (!o.shape[s])
            continue;
        const shape *sh = &shapes[s];
        for (int ti = 0; ti < 3 && !e; ti++) {
            if (!type_on[ti])
                continue;
            bench_set packed = {0}, raw = {0}, rowq = {0};
            bool have_packed = false, have_raw = false, have_rowq = false;
            struct rowq_acc acc = {0};
            /* amx and avx512 together run on one AMX context, the dispatcher's crossover set
             * to force tiles or VNNI call by call, alternating at each M: the two share the
             * repacked weights and the moment, so their ratio is not a drift between runs.
             * With --save-crossover each pair is measured twice and the faster kept. */
            const kern_impl tile_impl = o.impl[KERN_IMPL_AMX]       ? KERN_IMPL_AMX
                                        : o.impl[KERN_IMPL_AMX_EMU] ? KERN_IMPL_AMX_EMU
                                                                    : KERN_IMPL_AUTO;
            const bool paired = tile_impl != KERN_IMPL_AUTO && o.impl[KERN_IMPL_AVX512];
            const kern_impl order[4] = {KERN_IMPL_AMX, KERN_IMPL_AVX512, KERN_IMPL_AMX_EMU, KERN_IMPL_REF};
            for (int oi = 0; oi < 4 && !e; oi++) {
                const kern_impl impl = order[oi];
                if (!o.impl[impl] || (paired && impl == KERN_IMPL_AVX512))
                    continue;
                kern_cpu *c = NULL;
                const int force = impl == KERN_IMPL_AMX || impl == KERN_IMPL_AMX_EMU ? 1 : 0;
                if ((e = make_ctx(impl, &o, force, &c)))
                    break;
                bench_set *bs = impl == KERN_IMPL_REF ? &raw : &packed;
                bool *have = impl == KERN_IMPL_REF ? &have_raw : &have_packed;
                if (!*have) {
                    const double mib = impl == KERN_IMPL_REF || impl == KERN_IMPL_AMX_EMU ? 0 : o.weight_mib;
                    adg_info("bench: %s %s: building weights", sh->name, kern_type_name(types[ti]));
                    if ((e = build_set(c, sh, types[ti], mib, bs))) {
                        kern_cpu_free(c);
                        break;
                    }
                    *have = true;
                }
                /* --amx-scales row: the row-scaled copies on the tile context, timed third */
                const bool with_rowq = o.rowq && types[ti] != KERN_TYPE_BF16 && impl == tile_impl;
                if (with_rowq && !have_rowq) {
                    adg_info("bench: %s %s: building row-scaled weights", sh->name, kern_type_name(types[ti]));
                    if ((e = build_rowq_set(c, sh, types[ti], impl == KERN_IMPL_AMX_EMU ? 0 : o.weight_mib, &rowq)) ||
                        (e = rowq_accuracy(c, sh, types[ti], impl == KERN_IMPL_AMX_EMU, &acc))) {
                        kern_cpu_free(c);
                        break;
                    }
                    have_rowq = true;
                }
                const bool pair = paired && impl == tile_impl;
                const int passes = pair && o.save ? 2 : 1;
                for (int mi = 0; mi < o.nm && !e; mi++) {
                    const int m = o.ms[mi];
                    if (sh->max_m && m > sh->max_m && !o.all_m)
                        continue;
                    if ((impl == KERN_IMPL_REF || impl == KERN_IMPL_AMX_EMU) && m > 8 && !o.all_m)
                        continue;   /* correctness implementations: a few small points only */
                    row got[3];
                    const int nimpl = (pair ? 2 : 1) + (with_rowq ? 1 : 0);
                    for (int pass = 0; pass < passes && !e; pass++)
                        for (int q = 0; q < nimpl && !e; q++) {
                            const bool rq = with_rowq && q == nimpl - 1;
                            row t;
                            memset(&t, 0, sizeof t);
                            t.shape = sh->name;
                            t.type = types[ti];
                            t.impl = q == 0 || rq ? impl : KERN_IMPL_AVX512;
                            t.m = m;
                            t.rowq = rq;
                            if (rq)
                                t.acc = acc;
                            if (pair && !rq) {
                                const int x = q == 0 ? 1 : INT_MAX;
                                kern_crossover xo = {x, x, x, false};
                                kern_cpu_set_crossover(c, &xo);
                            }
                            if ((e = time_point(c, rq ? &rowq : bs, m, &o, &t)))
                                break;
                            if (pass == 0 || t.ms < got[q].ms)
                                got[q] = t;
                        }
                    for (int q = 0; q < nimpl && !e; q++) {
                        if (nr == cap) {
                            cap = cap ? cap * 2 : 64;
                            row *nrw = realloc(rows, (size_t)cap * sizeof *rows);
                            if (!nrw) {
                                e = adg_error_new(ADG_E_NOMEM, "out of memory");
                                break;
                            }
                            rows = nrw;
                        }
                        rows[nr++] = got[q];
                        if (!o.json) {
                            if (nr == 1)
                                print_header();
                            print_table(&rows[nr - 1], 1, &ci);
                            if (rows[nr - 1].rowq)
                                print_rowq(rows, nr, &rows[nr - 1], &ci);
                            fflush(stdout);
                        }
                    }
                }
                kern_cpu_free(c);
            }
            free_set(&packed);
            free_set(&raw);
            free_set(&rowq);
        }
    }
    if (e) {
        adg_error_prefix(e, "bench kernels");
        adg_error_print(e, stderr);
        adg_error_free(e);
        free(rows);
        return ADG_EXIT_USAGE;
    }

    goal goals[64];
    int ng = eval_goals(rows, nr, &ci, goals, (int)ADG_ARRAY_LEN(goals));
    kern_crossover xo;
    kern_crossover_defaults(&xo);
    bool f8, f4, fb;
    int c8 = crossover(rows, nr, KERN_TYPE_Q8_0, &f8), c4 = crossover(rows, nr, KERN_TYPE_Q4_0, &f4),
        cb = crossover(rows, nr, KERN_TYPE_BF16, &fb);
    if (f8)
        xo.q8_0 = c8;
    if (f4)
        xo.q4_0 = c4;
    if (fb)
        xo.bf16 = cb;
    xo.measured = f8 || f4 || fb;
    char *xo_path = NULL;
    int rc = ADG_EXIT_OK;
    if (o.save) {
        xo_path = o.save_xo[0] ? strdup(o.save_xo) : kern_crossover_default_path();
        if (!xo.measured) {
            fprintf(stderr, "amxdiag: error: bench kernels: no crossover measured (needs amx and avx512 rows at "
                            "the same shapes and M)\n  hint: run with --impl amx,avx512 and several --m values\n");
            rc = ADG_EXIT_USAGE;
        } else if (!xo_path) {
            fprintf(stderr, "amxdiag: error: bench kernels: no place to store the crossover (HOME unset)\n"
                            "  hint: pass --save-crossover=FILE\n");
            rc = ADG_EXIT_USAGE;
        } else if ((e = kern_crossover_save(xo_path, &xo))) {
            adg_error_print(e, stderr);
            adg_error_free(e);
            rc = ADG_EXIT_USAGE;
        }
    }

    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string(BENCH_SCHEMA));
    char now[32];
    adg_utc_iso8601(now, sizeof now);
    json_object_set_new(root, "created", json_string(now));
    json_object_set_new(root, "threads", json_integer(o.threads));
    json_object_set_new(
        root, "ceilings",
        json_pack("{s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:b}", "mem_read_gbs", ci.mem_gbs > 0 ? json_real(ci.mem_gbs) : json_null(),
                  "mem_source", ci.mem_src ? ci.mem_src : "unknown", "probe_mem_read_gbs",
                  ci.probe_mem_gbs > 0 ? json_real(ci.probe_mem_gbs) : json_null(), "bench_mem_read_gbs",
                  ci.bench_mem_gbs > 0 ? json_real(ci.bench_mem_gbs) : json_null(), "amx_int8_ops", ci.amx_int8_ops > 0 ? json_real(ci.amx_int8_ops) : json_null(),
                  "amx_bf16_ops", ci.amx_bf16_ops > 0 ? json_real(ci.amx_bf16_ops) : json_null(), "vnni_ops",
                  ci.vnni_ops > 0 ? json_real(ci.vnni_ops) : json_null(), "amx_int8_theoretical_ops",
                  ci.amx_int8_theory > 0 ? json_real(ci.amx_int8_theory) : json_null(), "clock_ghz",
                  ci.clock_ghz > 0 ? json_real(ci.clock_ghz) : json_null(), "clock_source", ci.clock_src,
                  "from_probe", ci.from_probe));
    json_object_set_new(root, "rows", rows_json(rows, nr, &ci));
    json_t *gj = json_array();
    for (int i = 0; i < ng; i++)
        json_array_append_new(gj, json_pack("{s:s,s:f,s:f,s:s,s:b}", "goal", goals[i].name, "target", goals[i].target,
                                            "measured", goals[i].measured, "unit", goals[i].unit, "pass", goals[i].pass));
    json_object_set_new(root, "goals", gj);
    json_object_set_new(root, "crossover",
                        json_pack("{s:i,s:i,s:i,s:b,s:o}", "q8_0", xo.q8_0, "q4_0", xo.q4_0, "bf16", xo.bf16, "measured",
                                  xo.measured, "saved_to", xo_path && rc == 0 ? json_string(xo_path) : json_null()));
    if (o.json) {
        e = adg_json_print(stdout, root);
    } else {
        if (ng)
            printf("\ngoals (docs/bench.md):\n");
        for (int i = 0; i < ng; i++)
            printf("  %-4s %-58s %.2f (target %.2f, %s)\n", goals[i].pass ? "PASS" : "MISS", goals[i].name,
                   goals[i].measured, goals[i].target, goals[i].unit);
        printf("\nAMX/VNNI crossover (AMX for M >= ...): q8_0 %d, q4_0 %d, bf16 %d (%s)%s%s\n", xo.q8_0, xo.q4_0, xo.bf16,
               xo.measured ? "measured" : "defaults: no amx+avx512 pairs measured", xo_path && rc == 0 ? "; saved to " : "",
               xo_path && rc == 0 ? xo_path : "");
    }
    if (!e && o.output)
        e = adg_json_write_atomic(o.output, root);
    json_decref(root);
    free(xo_path);
    free(rows);
    if (reader.bytes)
        reader_close(&reader);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    if (rc == ADG_EXIT_OK && o.check_goals)
        for (int i = 0; i < ng; i++)
            if (!goals[i].pass)
                rc = ADG_EXIT_CHECK_FAILED;
    return rc;
}

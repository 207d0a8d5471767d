/* Which decode GEMV runs, and with what grid: the row kernels (kern_gemv_*, _mr) or the
 * super-block kernel (kern_gemv_*_sb{,n}, kern_gemv_sb.cuh).  Pure host logic apart from
 * kern_cuda_gemv_init, which reads the driver's facts once per context. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/kern_cuda_internal.h"

/* Peak DRAM bandwidth at or above which the super-block kernel is the default.  The row
 * kernels reached 91 % (Q4_0) / 90 % (Q8_0) of the H100's copy bandwidth (3.35 TB/s peak)
 * but only 69 % / 68 % of the H200's (4.8 TB/s): their shared-memory reads cap them near
 * 2.9 TB/s whatever the DRAM.  On the H100 too (tests/device/gemv_sweep.sh, 09:02 UTC)
 * the super-block kernel won: Q8_0 large 99.3 % of copy against 90.1 %, Q4_0 large on the
 * ring 95.6 % against 91.5 %, generation (qwen3-moe-small tg128 --ngl 99) q4_0 1169.6 /
 * q8_0 1145.9 t/s with it against 1154.0 / 1113.3 with the row kernels.  Cards below the
 * H100's 3.35 TB/s were not measured with it: they keep the row kernels. */
#define SB_DEFAULT_MIN_GBPS 3000.0
/* Q4_0 with load auto: the cp.async ring where each warp of the register path's resident
 * grid would have at least this many spans (the LM head: 18-36; the large shape: 500),
 * the register path below (a layer's GEMVs: at most one or two spans a warp). */
#define RING_MIN_SPANS 4

static const char *const load_names[] = {"cs", "nc", "async"};

/* bench --gemv sweep: auto, rows and ten super-block variants (a device whose shared
 * memory a block cannot hold one runs it stepped down: kern_cuda_gemv_fit). */
static const char *const sweep_specs[] = {"auto",
                                          "rows",
                                          "sb,load=cs,warps=4,waves=1",
                                          "sb,load=nc,warps=4,waves=1",
                                          "sb,load=async,stages=2,warps=4,waves=1",
                                          "sb,load=async,stages=2,warps=8,waves=1",
                                          "sb,load=async,stages=3,warps=4,waves=1",
                                          "sb,load=async,stages=3,warps=8,waves=1",
                                          "sb,load=async,stages=2,warps=4,waves=2",
                                          "sb,load=async,stages=3,warps=4,waves=2",
                                          "sb,load=cs,warps=4,waves=0",
                                          "sb,load=async,stages=2,warps=4,waves=0"};

const char *const *kern_cuda_gemv_sweep(size_t *n)
{
    *n = ADG_ARRAY_LEN(sweep_specs);
    return sweep_specs;
}

static adg_error *bad_spec(const char *spec, const char *what)
{
    return adg_error_hint(adg_error_new(ADG_E_USAGE, "GEMV configuration '%s': %s", spec, what),
                          "use auto, rows or sb, optionally followed by ,load=cs|nc|async ,warps=4|8 ,waves=N "
                          "(0..64; 0: no persistent grid) ,stages=2|3 (load=async), e.g. sb,load=nc,warps=4,waves=1");
}

adg_error *kern_cuda_gemv_parse(const char *spec, kern_cuda_gemv_cfg *out)
{
    kern_cuda_gemv_cfg c = KERN_CUDA_GEMV_CFG_AUTO;
    char buf[128];
    if (!spec)
        spec = "";
    if (strlen(spec) >= sizeof buf)
        return bad_spec(spec, "too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (!strcmp(tok, "auto"))
                c.kernel = KERN_CUDA_GEMV_AUTO;
            else if (!strcmp(tok, "rows") || !strcmp(tok, "old"))
                c.kernel = KERN_CUDA_GEMV_ROWS;
            else if (!strcmp(tok, "sb"))
                c.kernel = KERN_CUDA_GEMV_SB;
            else
                return bad_spec(spec, "unknown kernel");
            continue;
        }
        *eq = 0;
        const char *val = eq + 1;
        const bool is_auto = !strcmp(val, "auto");
        char *end = NULL;
        long n = strtol(val, &end, 10);
        const bool num = *val && end && *end == 0;
        if (!strcmp(tok, "load")) {
            if (is_auto)
                c.load = -1;
            else if (!strcmp(val, "cs") || !strcmp(val, "nc") || !strcmp(val, "async"))
                c.load = val[0] == 'c' ? 0 : val[0] == 'n' ? 1 : 2;
            else
                return bad_spec(spec, "load takes cs, nc, async or auto");
        } else if (!strcmp(tok, "warps")) {
            if (is_auto)
                c.warps = 0;
            else if (num && (n == 4 || n == 8))
                c.warps = (int)n;
            else
                return bad_spec(spec, "warps takes 4, 8 or auto");
        } else if (!strcmp(tok, "waves")) {
            if (is_auto)
                c.waves = -1;
            else if (num && n >= 0 && n <= 64)
                c.waves = (int)n;
            else
                return bad_spec(spec, "waves takes 0 to 64 or auto");
        } else if (!strcmp(tok, "stages")) {
            if (is_auto)
                c.stages = 0;
            else if (num && (n == 2 || n == 3))
                c.stages = (int)n;
            else
                return bad_spec(spec, "stages takes 2, 3 or auto");
        } else {
            return bad_spec(spec, "unknown key (load, warps, waves, stages)");
        }
    }
    *out = c;
    return NULL;
}

const char *kern_cuda_gemv_cfg_str(const kern_cuda_gemv_cfg *c, char *buf, size_t len)
{
    if (c->kernel == KERN_CUDA_GEMV_ROWS) {
        snprintf(buf, len, "rows");
        return buf;
    }
    char w[16] = "auto", g[16] = "auto";
    if (c->warps > 0)
        snprintf(w, sizeof w, "%d", c->warps);
    if (c->waves >= 0)
        snprintf(g, sizeof g, "%d", c->waves);
    int n = snprintf(buf, len, "%s,load=%s,warps=%s,waves=%s", c->kernel == KERN_CUDA_GEMV_SB ? "sb" : "auto",
                     c->load >= 0 && c->load <= 2 ? load_names[c->load] : "auto", w, g);
    if (c->stages > 0 && n > 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, ",stages=%d", c->stages);
    return buf;
}

double kern_cuda_gemv_peak_gbps(const kern_cuda_gemv_dev *d)
{
    if (d->mem_clock_khz <= 0 || d->bus_width_bits <= 0)
        return 0;
    return 2.0 * d->mem_clock_khz * 1e3 * (d->bus_width_bits / 8.0) / 1e9;
}

kern_cuda_gemv_cfg kern_cuda_gemv_resolve(const kern_cuda_gemv_cfg *cfg, const kern_cuda_gemv_dev *d, kern_type type)
{
    kern_cuda_gemv_cfg c = *cfg;
    if (c.kernel == KERN_CUDA_GEMV_AUTO)
        c.kernel = kern_cuda_gemv_peak_gbps(d) >= SB_DEFAULT_MIN_GBPS ? KERN_CUDA_GEMV_SB : KERN_CUDA_GEMV_ROWS;
    /* The H200 (tests/device/gemv_sweep.sh, 08:08 and 08:22 UTC): Q8_0 through registers
     * with ld.global.cs, 4-warp blocks and one resident wave: 98.8 % of copy on the large
     * shape (8.7 KB spans, 8 warps an SM: 70 KB in flight), and the fastest at every decode
     * shape too.  Q4_0 the same way stopped at 75 % on the large shape (4.6 KB spans: 37 KB
     * in flight at the same 8 warps, held there by 170 registers); the cp.async ring (no
     * registers held for the spans: 128, 16 warps an SM, 2 spans in flight a warp) reached
     * 95.8 % there and won the LM head (56.6 against 64.0 us), but lost every per-layer
     * shape, where a warp has one span and the ring only adds the copy's latency (attn_q
     * 7.9 against 7.3 us; generation 1103 against 1246 t/s).  So Q4_0's load stays auto
     * here: kern_cuda_gemv_plan_for picks by shape (RING_MIN_SPANS). */
    if (c.load < 0 && type != KERN_TYPE_Q4_0)
        c.load = 0;
    if (c.warps <= 0)
        c.warps = 4;
    if (c.waves < 0)
        c.waves = 1;
    if (c.load == 2 && c.stages <= 0)
        c.stages = 2;
    if (c.load >= 0 && c.load != 2)
        c.stages = 0;
    return c;
}

/* A super-block block's shared memory: per warp `stages` stages of a span (32 super-blocks
 * of `chunks` 16-byte chunks) and 32 floats for the row sums; the register path stages one
 * span. */
static unsigned sb_smem(int warps, int stages, int chunks)
{
    return (unsigned)warps * 32 * ((unsigned)stages * (unsigned)chunks * 16 + 4);
}

unsigned kern_cuda_gemv_fit(kern_cuda_gemv_cfg *c, const kern_cuda_gemv_dev *d, kern_type type)
{
    if (c->kernel != KERN_CUDA_GEMV_SB || d->smem_optin <= 0)
        return 0;
    const int chunks = type == KERN_TYPE_Q4_0 ? 9 : 17;
    unsigned fit = 0;
    for (;;) {
        /* the kernels this configuration may launch: load auto (Q4_0) takes either */
        const bool ring = c->load == 2 || c->load < 0, regs = c->load != 2;
        const int warps = c->warps == 8 ? 8 : 4, stages = c->stages == 3 ? 3 : 2;
        unsigned need = regs ? sb_smem(warps, 1, chunks) : 0;
        if (ring && sb_smem(warps, stages, chunks) > need)
            need = sb_smem(warps, stages, chunks);
        if (need <= (unsigned)d->smem_optin)
            return fit;
        if (ring && stages == 3) {
            c->stages = 2;
            fit |= KERN_CUDA_GEMV_FIT_STAGES;
        } else if (warps == 8) {
            c->warps = 4;
            fit |= KERN_CUDA_GEMV_FIT_WARPS;
        } else if (ring) {
            c->load = 0;
            c->stages = 0;
            fit |= KERN_CUDA_GEMV_FIT_REGS;
        } else {
            c->kernel = KERN_CUDA_GEMV_ROWS;
            return fit | KERN_CUDA_GEMV_FIT_ROWS;
        }
    }
}

const char *kern_cuda_gemv_fit_str(unsigned fit, char *buf, size_t len)
{
    static const char *const steps[] = {"3 -> 2 stages", "8 -> 4 warps", "the register path instead of the ring",
                                        "the row kernels"};
    size_t n = 0;
    if (len)
        buf[0] = 0;
    for (size_t i = 0; i < ADG_ARRAY_LEN(steps); i++)
        if (fit & (1u << i) && n < len) {
            int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", steps[i]);
            n += w > 0 ? (size_t)w : 0;
        }
    return buf;
}

kern_cuda_gemv_cfg kern_cuda_gemv_effective(const kern_cuda_ctx *ctx, kern_type type, unsigned *fit)
{
    kern_cuda_gemv_cfg c = kern_cuda_gemv_resolve(&ctx->gemv, &ctx->gemv_dev, type);
    const unsigned f = kern_cuda_gemv_fit(&c, &ctx->gemv_dev, type);
    if (fit)
        *fit = f;
    return c;
}

void kern_cuda_set_gemv(kern_cuda_ctx *ctx, const kern_cuda_gemv_cfg *cfg)
{
    ctx->gemv = cfg ? *cfg : KERN_CUDA_GEMV_CFG_AUTO;
}

/* Blocks of `threads` threads using `regs` registers each and `smem` bytes an SM holds at
 * once (the per-warp register allocation is rounded to 256; a block reserves 1 KiB of
 * shared memory on sm_80 and later). */
static int blocks_per_sm(const kern_cuda_gemv_dev *d, int regs, int threads, unsigned smem)
{
    const int regs_sm = d->regs_per_sm > 0 ? d->regs_per_sm : 65536;
    const int thr_sm = d->threads_per_sm > 0 ? d->threads_per_sm : 2048;
    const int smem_sm = d->smem_per_sm > 0 ? d->smem_per_sm : 228 * 1024;
    const int warps = threads / 32;
    int b = thr_sm / threads;
    if (regs > 0) {
        const int per_warp = (regs * 32 + 255) / 256 * 256;
        const int by_regs = regs_sm / per_warp / warps;
        if (by_regs < b)
            b = by_regs;
    }
    const int by_smem = smem_sm / (int)(smem + 1024);
    if (by_smem < b)
        b = by_smem;
    if (b > 32)
        b = 32;
    return b < 1 ? 1 : b;
}

kern_cuda_gemv_plan kern_cuda_gemv_plan_for(const kern_cuda_gemv_cfg *c, const kern_cuda_gemv_dev *d, int gemv_rows,
                                            kern_type type, int64_t nrows, int64_t ncols, int n_jobs,
                                            bool w_aligned16, unsigned max_grid_x)
{
    kern_cuda_gemv_plan p = {0};
    if (max_grid_x == 0)
        max_grid_x = 65535;
    const int64_t nb = ncols / 32;
    const size_t rb = kern_row_size(type, ncols);
    const bool sb_shape = w_aligned16 && nb % 8 == 0 && nb / 8 >= 1 && nb / 8 <= 32;
    kern_cuda_gemv_cfg fitted = *c;
    if (gemv_rows <= 0 && c->kernel == KERN_CUDA_GEMV_SB && sb_shape) {
        /* a configuration too large for a block's shared memory would fail every launch
         * (cuFuncSetAttribute refuses it): step down before the choice by shape, which
         * then only meets kernels that fit */
        p.fit = kern_cuda_gemv_fit(&fitted, d, type);
        c = &fitted;
    }
    if (gemv_rows <= 0 && c->kernel == KERN_CUDA_GEMV_SB && sb_shape) {
        const int nsb = (int)(nb / 8), rpi = 32 / nsb, chunks = type == KERN_TYPE_Q4_0 ? 9 : 17;
        p.sb = true;
        p.rows = rpi;
        p.nsb = nsb;
        p.warps = c->warps == 8 ? 8 : 4;
        p.block = (unsigned)p.warps * 32;
        p.spans = (int64_t)n_jobs * ((nrows + rpi - 1) / rpi);
        p.load = c->load == 1 || c->load == 2 ? c->load : 0;
        if (c->load < 0) { /* by shape: the ring where the register path's warps would loop */
            const int ti = type == KERN_TYPE_Q4_0 ? 0 : 1;
            const unsigned reg_smem = sb_smem(p.warps, 1, chunks);
            const int64_t reg_warps =
                (int64_t)blocks_per_sm(d, d->sb_regs[ti], (int)p.block, reg_smem) * (d->sm_count > 0 ? d->sm_count : 1) *
                p.warps;
            p.load = p.spans >= RING_MIN_SPANS * reg_warps ? 2 : 0;
        }
        p.stages = p.load == 2 ? (c->stages == 3 ? 3 : 2) : 1;
        p.fn_index = (type == KERN_TYPE_Q4_0 ? 0 : 1) + (p.load < 2 ? 2 * p.load : 2 * p.stages);
        p.smem = sb_smem(p.warps, p.stages, chunks);
        int64_t blocks = (p.spans + p.warps - 1) / p.warps;
        if (c->waves > 0 && d->sm_count > 0) {
            const int64_t resident =
                (int64_t)blocks_per_sm(d, d->sb_regs[p.fn_index], (int)p.block, p.smem) * d->sm_count;
            if (resident * c->waves < blocks)
                blocks = resident * c->waves;
        }
        if (blocks > (int64_t)max_grid_x)
            blocks = max_grid_x;
        p.grid = blocks < 1 ? 1 : (unsigned)blocks;
        return p;
    }
    /* The row kernels: auto (0) is 4 rows for Q4_0, whose 1152-byte rows at K = 2048 left
     * one row per warp iteration too few bytes in flight (63 % of copy on the H100, while
     * Q8_0's 2176-byte rows reached 90 %); Q8_0 keeps the single-row kernel.  The
     * multi-row kernel needs R whole rows in its 4608-byte stage, 16-byte aligned. */
    int rows = gemv_rows > 0 ? gemv_rows : type == KERN_TYPE_Q4_0 ? 4 : 1;
    if (rows > 1 && (rb % 16 != 0 || !w_aligned16))
        rows = 1;
    if (rows > 1 && (size_t)rows * rb > 4608)
        rows = (int)(4608 / rb);
    if (rows < 1)
        rows = 1;
    p.rows = rows;
    p.block = 128;
    const int64_t items = (int64_t)n_jobs * ((nrows + rows - 1) / rows);
    const int64_t blocks = (items + 3) / 4;
    p.grid = blocks > (int64_t)max_grid_x ? max_grid_x : blocks < 1 ? 1 : (unsigned)blocks;
    return p;
}

const char *kern_cuda_gemv_kernel(const kern_cuda_ctx *c, kern_type type, int64_t nrows, int64_t ncols, int n_jobs,
                                  bool w_aligned16)
{
    kern_cuda_gemv_cfg cfg = kern_cuda_gemv_resolve(&c->gemv, &c->gemv_dev, type);
    kern_cuda_gemv_plan p = kern_cuda_gemv_plan_for(&cfg, &c->gemv_dev, c->gemv_rows, type, nrows, ncols, n_jobs,
                                                    w_aligned16, c->max_grid_x);
    if (p.sb)
        return kern_cuda_kernel_names[KF_GEMV_SB_FIRST + p.fn_index];
    const bool q4 = type == KERN_TYPE_Q4_0;
    return kern_cuda_kernel_names[p.rows > 1 ? (q4 ? KF_GEMV_Q4_0_MR : KF_GEMV_Q8_0_MR) : (q4 ? KF_GEMV_Q4_0 : KF_GEMV_Q8_0)];
}

static int dev_attr(kern_cuda_ctx *c, int attr)
{
    int v = 0;
    if (c->d->cuDeviceGetAttribute(&v, attr, c->dev) != KERN_CU_SUCCESS)
        return 0;
    return v;
}

void kern_cuda_gemv_init(kern_cuda_ctx *c)
{
    kern_cuda_gemv_dev *d = &c->gemv_dev;
    memset(d, 0, sizeof *d);
    d->sm_count = c->info.sm_count;
    d->cc_major = c->info.cc_major;
    d->mem_clock_khz = dev_attr(c, KERN_CU_DEV_ATTR_MEMORY_CLOCK_RATE);
    d->bus_width_bits = dev_attr(c, KERN_CU_DEV_ATTR_GLOBAL_MEMORY_BUS_WIDTH);
    d->regs_per_sm = dev_attr(c, KERN_CU_DEV_ATTR_MAX_REGISTERS_PER_MULTIPROCESSOR);
    d->threads_per_sm = dev_attr(c, KERN_CU_DEV_ATTR_MAX_THREADS_PER_MULTIPROCESSOR);
    d->smem_per_sm = dev_attr(c, KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR);
    /* as the prompt GEMM's caps: without cuFuncSetAttribute (or the attribute) a block
     * gets the 48 KiB every device gives without opting in */
    d->smem_optin = c->d->cuFuncSetAttribute ? dev_attr(c, KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN) : 0;
    if (d->smem_optin <= 0)
        d->smem_optin = 48 * 1024;
    /* AMXDIAG_GPU_GEMV_SMEM=BYTES lowers it: a large GPU then plans (and runs) the GEMV as a
     * smaller one would, which is how the step-down is checked on an H100/H200 */
    const char *cap = getenv("AMXDIAG_GPU_GEMV_SMEM");
    if (cap && *cap) {
        char *end = NULL;
        long v = strtol(cap, &end, 10);
        if (end && *end == 0 && v >= 16384 && v <= d->smem_optin)
            d->smem_optin = (int)v;
        else
            adg_warn("AMXDIAG_GPU_GEMV_SMEM=%s ignored: give bytes from 16384 to this device's %d", cap, d->smem_optin);
    }
    for (int i = 0; i < 8; i++) {
        int regs = 0;
        if (c->fn[KF_GEMV_SB_FIRST + i] &&
            c->d->cuFuncGetAttribute(&regs, KERN_CU_FUNC_ATTR_NUM_REGS, c->fn[KF_GEMV_SB_FIRST + i]) == KERN_CU_SUCCESS)
            d->sb_regs[i] = regs;
    }
    c->gemv = KERN_CUDA_GEMV_CFG_AUTO;
    const char *env = getenv("AMXDIAG_GPU_GEMV");
    if (env && *env) {
        adg_error *e = kern_cuda_gemv_parse(env, &c->gemv);
        if (e) {
            adg_warn("AMXDIAG_GPU_GEMV ignored: %s (%s)", adg_error_msg(e), adg_error_remedy(e));
            adg_error_free(e);
        }
    }
    char b4[64], b8[64];
    unsigned f4 = 0, f8 = 0;
    kern_cuda_gemv_cfg r4 = kern_cuda_gemv_effective(c, KERN_TYPE_Q4_0, &f4);
    kern_cuda_gemv_cfg r8 = kern_cuda_gemv_effective(c, KERN_TYPE_Q8_0, &f8);
    kern_cuda_gemv_cfg_str(&r4, b4, sizeof b4);
    kern_cuda_gemv_cfg_str(&r8, b8, sizeof b8);
    adg_debug("cuda: GEMV q4_0 %s, q8_0 %s (peak DRAM %.0f GB/s; %d bytes of shared memory a block; sb registers "
              "%d %d %d %d %d %d %d %d)",
              b4, b8, kern_cuda_gemv_peak_gbps(d), d->smem_optin, d->sb_regs[0], d->sb_regs[1], d->sb_regs[2],
              d->sb_regs[3], d->sb_regs[4], d->sb_regs[5], d->sb_regs[6], d->sb_regs[7]);
    /* the user asked for this configuration: say once what runs instead (every GEMV
     * still runs; the plan steps down the same way) */
    for (int i = 0; i < 2 && env && *env; i++) {
        const unsigned f = i ? f8 : f4;
        char steps[128];
        if (f)
            adg_warn("AMXDIAG_GPU_GEMV=%s: %s GEMVs run %s (%s: it needs more than the %d bytes of shared memory "
                     "a block this device allows)",
                     env, i ? "q8_0" : "q4_0", i ? b8 : b4, kern_cuda_gemv_fit_str(f, steps, sizeof steps),
                     d->smem_optin);
    }
}

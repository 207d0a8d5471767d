/* The findings rules, as a table: id, severity, documented threshold, the evidence each
 * cites with its numbers, and what to try (docs/reports.md lists the same table; `amxdiag
 * report --rules` prints it).  Adding a rule is adding a row and its function. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "reports/rep_internal.h"

/* Thresholds (documented in docs/reports.md; keep both in step). */
#define AMX_NEVER_PCT 0.5       /* below this share of CPU time, AMX "never ran" */
#define AMX_NEVER_MIN_SAMPLES 100
#define AMX_PROMPT_MIN_PCT 5.0  /* AMX share in prompt that counts as "used" */
#define AMX_GEN_MAX_PCT 1.0     /* ... and in generation that counts as "not used" */
#define AMX_ELIGIBLE_SMALL 0.25 /* eligible share of the CPU weights */
#define MEM_BOUND_FRAC 0.80     /* of the probe's bandwidth ceiling */
#define NUMA_NODE_MIN_PCT 10.0  /* thread time on a node that counts as "ran there" */
#define REMOTE_THREAD_PCT 20.0
#define REMOTE_LOCAL_PCT 50.0
#define GPU_IDLE_PCT 30.0
#define COPY_VS_KERNEL 0.5
#define COPY_MIN_SHARE 0.10
#define SPEED_NOTE_PCT 3.0
#define SPEED_CRIT_PCT 10.0
#define SMALL_M_SLOWER_PCT 5.0
#define TILES_PROMPT_MIN_GAIN 1.2  /* tiles per call at least this many times faster in prompt */

const char *rep_severity_name(rep_severity s)
{
    return s == REP_SEV_CRITICAL ? "critical" : s == REP_SEV_WARNING ? "warning" : "info";
}

/* ---- helpers filling a finding ---- */

static void num(json_t *f, const char *k, double v)
{
    json_t *n = json_object_get(f, "numbers");
    if (!n) {
        n = json_object();
        json_object_set_new(f, "numbers", n);
    }
    json_object_set_new(n, k, json_real(v));
}

__attribute__((format(printf, 3, 4))) static void text(json_t *f, const char *key, const char *fmt, ...)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    const char *old = json_string_value(json_object_get(f, key));
    if (old) {
        adg_sb_puts(&sb, old);
        adg_sb_puts(&sb, " ");
    }
    va_list ap;
    va_start(ap, fmt);
    adg_sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    json_object_set_new(f, key, json_string(sb.buf ? sb.buf : ""));
    adg_sb_free(&sb);
}

static const char *gbs(double bps, char *buf, size_t len)
{
    snprintf(buf, len, "%.1f GB/s", bps / 1e9);
    return buf;
}

/* The tile emulator (amx-emu) runs the tile kernels' code but no AMX instruction. */
static bool emulated(const rep_run *r)
{
    char k[32];
    return rep_setting_cpu_kernels(r, k, sizeof k) && strstr(k, "emu");
}

static bool amx_requested(const rep_run *r)
{
    char k[32];
    return rep_setting_cpu_kernels(r, k, sizeof k) && strstr(k, "amx") && !emulated(r);
}

/* "16.3% slower", "61.6x faster" */
static const char *speed_words(double new_over_base, char *buf, size_t len)
{
    if (new_over_base >= 2)
        snprintf(buf, len, "%.1fx faster", new_over_base);
    else if (new_over_base > 0 && new_over_base <= 0.5)
        snprintf(buf, len, "%.1fx slower", 1 / new_over_base);
    else
        snprintf(buf, len, "%.1f%% %s", fabs(100 * (new_over_base - 1)), new_over_base < 1 ? "slower" : "faster");
    return buf;
}

/* ---- rules ---- */

static bool r_run_failed(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    const char *st = json_string_value(json_object_get(r->rec, "status"));
    if (!st || !strcmp(st, "complete"))
        return false;
    json_t *cr = json_object_get(r->rec, "crash");
    if (json_is_object(cr) && json_is_object(json_object_get(cr, "error")))
        return false; /* cuda-error says more */
    json_t *wl = json_object_get(r->rec, "workload");
    text(f, "evidence", "The record's status is '%s'", st);
    if (json_is_integer(json_object_get(wl, "exit_code"))) {
        num(f, "exit_code", (double)json_integer_value(json_object_get(wl, "exit_code")));
        text(f, "evidence", "(the workload exited with code %lld)", (long long)json_integer_value(json_object_get(wl, "exit_code")));
    }
    if (json_string_value(json_object_get(wl, "signal_name")))
        text(f, "evidence", "(the workload was killed by %s)", json_string_value(json_object_get(wl, "signal_name")));
    text(f, "evidence", ": its figures cover only the part that ran, and a comparison with it says little.");
    if (!strcmp(st, "workload-crashed") || !strcmp(st, "workload-failed"))
        json_object_set_new(f, "severity", json_string("critical"));
    return true;
}

static bool r_amx_never(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    if (!amx_requested(r))
        return false;
    rep_val isa = rep_fact(r, "isa.amx"), busy = rep_fact(r, "amx.busy"), samples = rep_fact(r, "isa.samples");
    double ops_amx = rep_ops_seconds(r, "", NULL, REP_ANY_LAYER, "amx");
    /* a handful of samples (a run that died at start) proves nothing */
    if (isa.ok && (!samples.ok || samples.v < AMX_NEVER_MIN_SAMPLES))
        isa.ok = false;
    bool isa_none = isa.ok && isa.v < AMX_NEVER_PCT;
    bool busy_none = busy.ok && busy.v < AMX_NEVER_PCT;
    if (!(isa_none || busy_none) || (isa.ok && !isa_none) || (busy.ok && !busy_none) || ops_amx > 0)
        return false;
    char k[32];
    rep_setting_cpu_kernels(r, k, sizeof k);
    if (isa.ok) {
        num(f, "amx_share_pct", isa.v);
        text(f, "evidence", "AMX was asked for (cpu kernels '%s') but %.1f%% of the sampled CPU time", k, isa.v);
        if (samples.ok)
            text(f, "evidence", "(%.0f cpu-clock samples)", samples.v);
        text(f, "evidence", "was in functions with AMX tile instructions.");
    }
    if (busy.ok) {
        num(f, "amx_busy_pct", busy.v);
        text(f, "evidence", "The PMU's EXE.AMX_BUSY was %.1f%% of core cycles.", busy.v);
    }
    /* The built-in engine's op records show a generation-only run: every matmul there has
     * one row, where the dispatcher picks VNNI by design (below the measured AMX/VNNI
     * crossover), so no tile code is the expected outcome, not a fallback. */
    if (r->nops && rep_ops_seconds(r, "prompt", NULL, REP_ANY_LAYER, NULL) == 0 &&
        rep_ops_seconds(r, "generation", NULL, REP_ANY_LAYER, NULL) > 0) {
        json_object_set_new(f, "severity", json_string("info"));
        text(f, "evidence",
             "Expected here: the run evaluated no prompt, and generation's matmuls have one row (M = 1), where the "
             "dispatcher picks AVX-512 VNNI because it beats AMX tiles below the measured crossover (`amxdiag bench "
             "kernels --save-crossover`); AMX runs in prompt evaluation (`--n-prompt N`).");
    }
    return true;
}

static bool r_amx_prompt_only(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    rep_val p = rep_fact(r, "isa.amx.prompt"), g = rep_fact(r, "isa.amx.generation");
    if (!p.ok || !g.ok || p.v < AMX_PROMPT_MIN_PCT || g.v >= AMX_GEN_MAX_PCT)
        return false;
    num(f, "amx_prompt_pct", p.v);
    num(f, "amx_generation_pct", g.v);
    text(f, "evidence", "AMX took %.1f%% of prompt evaluation but %.1f%% of token generation (%s).", p.v, g.v, p.src);
    rep_val tg = rep_fact(r, "tps.generation");
    if (tg.ok)
        text(f, "evidence", "Generation ran at %.2f t/s on the non-AMX path.", tg.v);
    return true;
}

static bool r_amx_eligible_small(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    rep_val amx = rep_fact(r, "model.amx_bytes"), cpu = rep_fact(r, "model.cpu_bytes");
    if (!amx.ok || !cpu.ok || cpu.v <= 0)
        return false;
    double share = amx.v / cpu.v;
    if (share >= AMX_ELIGIBLE_SMALL)
        return false;
    rep_val isa = rep_fact(r, "isa.amx");
    if (!amx_requested(r) && !(isa.ok && isa.v >= AMX_NEVER_PCT))
        return false;
    char a[32], b[32], e[32];
    num(f, "amx_eligible_bytes", amx.v);
    num(f, "cpu_weight_bytes", cpu.v);
    num(f, "amx_eligible_pct", 100 * share);
    text(f, "evidence", "Only %s of the %s of weights on the CPU (%.1f%%) can take the AMX path.",
         adg_fmt_bytes(amx.v, a, sizeof a), adg_fmt_bytes(cpu.v, b, sizeof b), 100 * share);
    rep_val ex = rep_fact(r, "model.expert_bytes");
    if (ex.ok && ex.v > 0) {
        num(f, "expert_bytes", ex.v);
        text(f, "evidence", "%s are MoE experts, consumed by MUL_MAT_ID, which llama.cpp's AMX backend does not take.",
             adg_fmt_bytes(ex.v, e, sizeof e));
    }
    text(f, "evidence", "At most %.1f%% of the weight traffic can get faster with tiles.", 100 * share);
    return true;
}

static bool r_memory_bound(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    rep_val bw = rep_fact(r, "mem.bw.generation"), peak = rep_fact(r, "mem.ceiling");
    if (!bw.ok || !peak.ok || peak.v <= 0 || bw.v < MEM_BOUND_FRAC * peak.v)
        return false;
    char a[32], b[32];
    num(f, "generation_Bps", bw.v);
    num(f, "ceiling_Bps", peak.v);
    num(f, "ceiling_pct", 100 * bw.v / peak.v);
    text(f, "evidence", "Token generation moved %s, %.0f%% of the %s the probe measured (%s; ceiling from %s).",
         gbs(bw.v, a, sizeof a), 100 * bw.v / peak.v, gbs(peak.v, b, sizeof b), bw.src, peak.src);
    rep_val tg = rep_fact(r, "tps.generation");
    if (tg.ok) {
        num(f, "generation_tps", tg.v);
        text(f, "evidence", "At %.2f t/s that is %.2f GB per token.", tg.v, bw.v / tg.v / 1e9);
    }
    return true;
}

/* Op kinds that are matrix products (the ones tiles could run). */
static bool is_matmul(const char *op)
{
    return strstr(op, "mul_mat") || strstr(op, "MUL_MAT") || strstr(op, "matmul") || strstr(op, "proj") ||
           strstr(op, "ffn") || strstr(op, "attn_") || strstr(op, "output") || strstr(op, "expert");
}

/* Matrix products tiles could run in prompt evaluation: is_matmul's and the engines'
 * grouped experts and LM head (not the experts' weighted sum). */
static bool is_tile_product(const char *op)
{
    return is_matmul(op) || (strstr(op, "moe_") && !strstr(op, "moe_sum")) || strstr(op, "lm_head");
}

typedef struct tile_cmp {
    const rep_run *tiles, *plain;
    double us_tiles, us_plain, pct;   /* pct: how much longer a tile call took, in % (< 0: shorter) */
    char worst[40];
    double worst_pct;
} tile_cmp;

/* Tiles against no tiles in one phase of a comparison: the op kinds (is_op) that ran on
 * AMX in one run and without it in the other, microseconds per call over all of them (the
 * tile run's calls on tiles only), and the op kind whose tiles lost most.  False when no
 * such pair exists, and for the tile emulator (amx-emu runs no AMX instruction). */
static bool tile_compare(const rep_ctx *c, const char *phase, bool (*is_op)(const char *), tile_cmp *out)
{
    memset(out, 0, sizeof *out);
    const rep_run *t = NULL, *v = NULL;
    if (rep_ops_seconds(c->nw, phase, NULL, REP_ANY_LAYER, "amx") > 0 &&
        rep_ops_seconds(c->base, phase, NULL, REP_ANY_LAYER, "amx") <= 0)
        t = c->nw, v = c->base;
    else if (rep_ops_seconds(c->base, phase, NULL, REP_ANY_LAYER, "amx") > 0 &&
             rep_ops_seconds(c->nw, phase, NULL, REP_ANY_LAYER, "amx") <= 0)
        t = c->base, v = c->nw;
    if (!t || emulated(t))
        return false;
    double ta = 0, tb = 0, ca = 0, cb = 0;
    out->worst_pct = -INFINITY;
    for (size_t i = 0; i < t->nops; i++) {
        const rep_op *o = &t->ops[i];
        if (strcmp(o->phase, phase) || !rep_op_impl_match(o, "amx") || strstr(o->impl, "emu") || !is_op(o->op))
            continue;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = !strcmp(t->ops[j].op, o->op) && !strcmp(t->ops[j].phase, phase) &&
                  rep_op_impl_match(&t->ops[j], "amx");
        if (dup)
            continue;
        /* the tile run's calls on tiles (s1 is their time), all of the other run's */
        const double s1 = rep_ops_seconds(t, phase, o->op, REP_ANY_LAYER, "amx");
        const double n1 = rep_ops_calls(t, phase, o->op, "amx");
        const double s2 = rep_ops_seconds(v, phase, o->op, REP_ANY_LAYER, NULL);
        const double n2 = rep_ops_calls(v, phase, o->op, NULL);
        if (s2 <= 0 || n1 <= 0 || n2 <= 0)
            continue;
        ta += s1, tb += s2, ca += n1, cb += n2;
        double pct = 100 * ((s1 / n1) / (s2 / n2) - 1);
        if (pct > out->worst_pct) {
            out->worst_pct = pct;
            snprintf(out->worst, sizeof out->worst, "%s", o->op);
        }
    }
    if (ca <= 0 || cb <= 0)
        return false;
    out->tiles = t, out->plain = v;
    out->us_tiles = ta / ca * 1e6, out->us_plain = tb / cb * 1e6;
    out->pct = 100 * (out->us_tiles / out->us_plain - 1);
    return true;
}

static bool r_tiles_small_m(const rep_ctx *c, json_t *f)
{
    if (!c->base) {
        const rep_run *r = c->run;
        double amx = rep_ops_seconds(r, "generation", NULL, REP_ANY_LAYER, "amx");
        double all = rep_ops_seconds(r, "generation", NULL, REP_ANY_LAYER, NULL);
        if (amx <= 0 || all <= 0 || emulated(r))
            return false;
        num(f, "amx_generation_s", amx);
        num(f, "amx_generation_pct", 100 * amx / all);
        json_object_set_new(f, "severity", json_string("info"));
        text(f, "evidence", "AMX tile kernels took %.3f s, %.1f%% of the op time of token generation, where M (tokens "
                            "per matrix product) is 1.", amx, 100 * amx / all);
        return true;
    }
    /* Comparison: the same op kinds in generation, tiles in one run, not in the other. */
    tile_cmp t;
    if (!tile_compare(c, "generation", is_matmul, &t) || t.pct < SMALL_M_SLOWER_PCT)
        return false;
    num(f, "tiles_us_per_call", t.us_tiles);
    num(f, "vnni_us_per_call", t.us_plain);
    num(f, "slower_pct", t.pct);
    text(f, "evidence", "In token generation (M = 1) the matrix products on AMX tiles (%s) took %.1f us per call, "
                        "%.1f%% more than the same ops without tiles (%s): %.1f us.",
         t.tiles->label, t.us_tiles, t.pct, t.plain->label, t.us_plain);
    if (t.worst[0] && t.worst_pct > 0)
        text(f, "evidence", "Worst: %s, %.1f%% slower.", t.worst, t.worst_pct);
    return true;
}

/* Comparison: in prompt evaluation (large M, where tiles should win) the tile products are
 * not clearly faster per call than the same products without tiles. */
static bool r_tiles_prompt_gain(const rep_ctx *c, json_t *f)
{
    tile_cmp t;
    if (!c->base || !tile_compare(c, "prompt", is_tile_product, &t))
        return false;
    const double speedup = t.us_plain / t.us_tiles;
    if (speedup >= TILES_PROMPT_MIN_GAIN)
        return false;
    num(f, "tiles_us_per_call", t.us_tiles);
    num(f, "plain_us_per_call", t.us_plain);
    num(f, "tiles_speedup", speedup);
    text(f, "evidence", "In prompt evaluation the matrix products on AMX tiles (%s) took %.1f us per call, the same "
                        "op kinds without tiles (%s) %.1f us: %.2fx, where tiles have up to 8x the int8 peak of "
                        "AVX-512 VNNI.",
         t.tiles->label, t.us_tiles, t.plain->label, t.us_plain, speedup);
    if (t.worst[0] && t.worst_pct > 0)
        text(f, "evidence", "Worst: %s, %.1f%% slower on tiles.", t.worst, t.worst_pct);
    return true;
}

static bool r_oversubscribed(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    rep_val t = rep_fact(r, "threads"), n = rep_fact(r, "cpus");
    if (!t.ok || !n.ok || t.v <= n.v)
        return false;
    num(f, "threads", t.v);
    num(f, "cpus", n.v);
    text(f, "evidence", "%.0f threads were asked for (%s) on %.0f online CPUs: %.1f threads per CPU.", t.v, t.src, n.v,
         t.v / n.v);
    rep_val u = rep_fact(r, "cpu.util");
    if (u.ok)
        text(f, "evidence", "The workload used %.0f%% CPU (100%% = one CPU).", u.v);
    return true;
}

static bool r_numa_spread(const rep_ctx *c, json_t *f)
{
    json_t *nodes = json_object_get(json_object_get(c->run->rec, "numa"), "per_node");
    int busy = 0;
    size_t i;
    json_t *x;
    char list[256] = "";
    json_array_foreach(nodes, i, x) {
        double p = json_number_value(json_object_get(x, "thread_time_pct"));
        if (p >= NUMA_NODE_MIN_PCT) {
            busy++;
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%snode%d %.0f%%", l ? ", " : "",
                     (int)json_integer_value(json_object_get(x, "node")), p);
        }
    }
    if (busy < 2)
        return false;
    num(f, "nodes_used", busy);
    text(f, "evidence", "The workload's threads ran on %d NUMA nodes (share of thread time: %s).", busy, list);
    int t = rep_setting_threads(c->run);
    if (t > 0)
        text(f, "evidence", "%d threads were asked for.", t);
    return true;
}

static bool r_remote_memory(const rep_ctx *c, json_t *f)
{
    json_t *numa = json_object_get(c->run->rec, "numa");
    json_t *nodes = json_object_get(numa, "per_node");
    bool hit = false;
    size_t i;
    json_t *x;
    json_array_foreach(nodes, i, x) {
        double tp = json_number_value(json_object_get(x, "thread_time_pct"));
        double mp = json_number_value(json_object_get(x, "memory_pct"));
        if (json_array_size(nodes) > 1 && tp >= REMOTE_THREAD_PCT && mp < REMOTE_LOCAL_PCT) {
            int node = (int)json_integer_value(json_object_get(x, "node"));
            char k[48];
            snprintf(k, sizeof k, "node%d_thread_pct", node);
            num(f, k, tp);
            snprintf(k, sizeof k, "node%d_memory_pct", node);
            num(f, k, mp);
            text(f, "evidence", "%.0f%% of thread time ran on node %d, which holds %.0f%% of the workload's memory, "
                                "so at least %.0f%% of its accesses are remote.", tp, node, mp, 100 - mp);
            hit = true;
        }
    }
    if (!hit && json_array_size(json_object_get(numa, "warnings"))) {
        text(f, "evidence", "%s", json_string_value(json_array_get(json_object_get(numa, "warnings"), 0)));
        hit = true;
    }
    return hit;
}

static json_t *crash(const rep_run *r);

static bool r_gpu_idle(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    if (crash(r))
        return false; /* the GPU stopped: cuda-error says why */
    rep_val busy = rep_fact(r, "gpu.busy"), kt = rep_fact(r, "gpu.kernel_time"), d = rep_fact(r, "duration");
    rep_val ngl = rep_fact(r, "gpu.layers");
    double pct;
    const char *how;
    if (busy.ok) {
        pct = busy.v;
        how = "gpu.busy, mean over the run";
    } else if (kt.ok && d.ok && d.v > 0) {
        pct = 100 * kt.v / d.v;
        how = "GPU kernel time / run time";
    } else
        return false;
    double cpu_ops = 0, gpu_ops = 0;
    for (size_t i = 0; i < r->nops; i++) {
        if (!strstr(r->ops[i].backend, "CUDA") && !strstr(r->ops[i].backend, "GPU"))
            cpu_ops += r->ops[i].seconds;
        else
            gpu_ops += r->ops[i].seconds;
    }
    /* Only a run that used the GPU: layers offloaded, kernels traced or GPU ops recorded.
     * A CPU-only run whose tracer was loaded (0 s of kernels) is not "GPU idle". */
    bool used_gpu = (ngl.ok && ngl.v > 0) || (kt.ok && kt.v > 0) || gpu_ops > 0;
    /* CPU layers: op records on the CPU, or a partial offload (-ngl) */
    if (!used_gpu || pct >= GPU_IDLE_PCT || (cpu_ops <= 0 && !(ngl.ok && ngl.v > 0)))
        return false;
    num(f, "gpu_busy_pct", pct);
    char sent[256];
    int n = snprintf(sent, sizeof sent, "The GPU was busy %.0f%% of the run (%s", pct, how);
    if (kt.ok && n > 0 && (size_t)n < sizeof sent)
        n += snprintf(sent + n, sizeof sent - (size_t)n, "; %.2f s of kernels", kt.v);
    if (d.ok && n > 0 && (size_t)n < sizeof sent)
        snprintf(sent + n, sizeof sent - (size_t)n, " in %.2f s", d.v);
    text(f, "evidence", "%s).", sent);
    if (cpu_ops > 0) {
        num(f, "cpu_op_seconds", cpu_ops);
        text(f, "evidence", "CPU ops took %.2f s in the same run: the GPU waited for the CPU layers.", cpu_ops);
    }
    if (ngl.ok) {
        num(f, "gpu_layers", ngl.v);
        text(f, "evidence", "Only %.0f layers were offloaded; the rest ran on the CPU while the GPU waited.", ngl.v);
    }
    return true;
}

static bool r_transfer_bound(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    rep_val ct = rep_fact(r, "gpu.copy_time"), cb = rep_fact(r, "gpu.copy_bytes"), kt = rep_fact(r, "gpu.kernel_time"),
            d = rep_fact(r, "duration");
    if (!ct.ok || !kt.ok || ct.v <= 0 || ct.v < COPY_VS_KERNEL * kt.v || (d.ok && ct.v < COPY_MIN_SHARE * d.v))
        return false;
    char b[32], x[32];
    num(f, "copy_s", ct.v);
    num(f, "kernel_s", kt.v);
    if (cb.ok && cb.v > 0) {
        num(f, "copy_bytes", cb.v);
        text(f, "evidence", "Host-device copies took %.2f s (%s at %s) against %.2f s of GPU kernels: %.1fx the kernel "
                            "time.", ct.v, adg_fmt_bytes(cb.v, b, sizeof b), gbs(cb.v / ct.v, x, sizeof x), kt.v,
             kt.v > 0 ? ct.v / kt.v : 0.0);
    } else
        text(f, "evidence", "Host-device copies took %.2f s against %.2f s of GPU kernels: %.1fx the kernel time.", ct.v,
             kt.v, kt.v > 0 ? ct.v / kt.v : 0.0);
    if (d.ok && d.v > 0)
        text(f, "evidence", "Copies are %.0f%% of the run time.", 100 * ct.v / d.v);
    return true;
}

static json_t *crash(const rep_run *r)
{
    json_t *c = json_object_get(r->rec, "crash");
    return json_is_object(c) && json_is_object(json_object_get(c, "error")) ? c : NULL;
}

static bool r_cuda_error(const rep_ctx *c, json_t *f)
{
    json_t *cr = crash(c->run);
    if (!cr)
        return false;
    json_t *e = json_object_get(cr, "error");
    int code = (int)json_integer_value(json_object_get(e, "code"));
    if (code == 209 || code == 222 || code == 218 || code == 200)
        return false; /* no-code-for-cc says it better */
    num(f, "code", code);
    const char *fk = json_string_value(json_object_get(json_object_get(cr, "faulting_kernel"), "kernel"));
    text(f, "evidence", "CUDA error %d (%s) was returned by %s.", code,
         json_string_value(json_object_get(e, "name")) ? json_string_value(json_object_get(e, "name")) : "?",
         json_string_value(json_object_get(e, "api")) ? json_string_value(json_object_get(e, "api")) : "a CUDA call");
    if (fk)
        text(f, "evidence", "Faulting kernel: '%s' (%s).", fk,
             json_string_value(json_object_get(json_object_get(cr, "faulting_kernel"), "confidence"))
                 ? json_string_value(json_object_get(json_object_get(cr, "faulting_kernel"), "confidence"))
                 : "?");
    else
        text(f, "evidence", "The faulting kernel is not known from this record.");
    return true;
}

static bool r_reporter_not_faulting(const rep_ctx *c, json_t *f)
{
    json_t *cr = crash(c->run);
    if (!cr || !json_is_false(json_object_get(cr, "reporting_op_faulted")))
        return false;
    json_t *rep = json_object_get(cr, "reporting_op"), *fk = json_object_get(cr, "faulting_kernel");
    json_t *e = json_object_get(cr, "error");
    json_int_t rs = json_integer_value(json_object_get(rep, "seq")), fs = json_integer_value(json_object_get(fk, "seq"));
    num(f, "reporting_launch", (double)rs);
    if (fs)
        num(f, "faulting_launch", (double)fs);
    const char *rk = json_string_value(json_object_get(rep, "kernel")), *k = json_string_value(json_object_get(fk, "kernel"));
    text(f, "evidence", "Error %d was reported after launch #%lld '%s', but the kernel that faulted is '%s'",
         (int)json_integer_value(json_object_get(e, "code")), (long long)rs, rk ? rk : "?", k ? k : "?");
    if (fs)
        text(f, "evidence", "(launch #%lld, %lld launch%s earlier)", (long long)fs, (long long)(rs - fs),
             rs - fs == 1 ? "" : "es");
    const char *conf = json_string_value(json_object_get(fk, "confidence"));
    const char *ev = json_string_value(json_object_get(fk, "evidence"));
    text(f, "evidence", "- %s: %s.", conf ? conf : "?", ev ? ev : "");
    return true;
}

static bool r_no_code_for_cc(const rep_ctx *c, json_t *f)
{
    const rep_run *r = c->run;
    static const int codes[] = {209, 222, 218, 200};
    json_t *hit = NULL;
    json_t *cr = crash(r);
    if (cr)
        hit = json_object_get(cr, "error");
    int code = hit ? (int)json_integer_value(json_object_get(hit, "code")) : 0;
    bool match = false;
    for (size_t i = 0; i < ADG_ARRAY_LEN(codes); i++)
        match |= code == codes[i];
    if (!match) {
        hit = NULL;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(json_object_get(r->rec, "gpu_kernels"), "api_errors"), i, x) {
            int cd = (int)json_integer_value(json_object_get(x, "code"));
            for (size_t k = 0; k < ADG_ARRAY_LEN(codes) && !hit; k++)
                if (cd == codes[k]) {
                    hit = x;
                    code = cd;
                }
            if (hit)
                break;
        }
    }
    if (!hit)
        return false;
    num(f, "code", code);
    const char *name = json_string_value(json_object_get(hit, "name"));
    const char *api = json_string_value(json_object_get(hit, "api"));
    text(f, "evidence", "CUDA error %d (%s) from %s:", code, name ? name : "?", api ? api : "a CUDA call");
    text(f, "evidence", "%s", code == 209   ? "the binary holds neither SASS for this GPU's compute capability nor PTX "
                                              "the driver can compile for it."
                              : code == 222 ? "the binary's PTX is newer than this driver can compile."
                                            : "the driver rejected the binary's code for this GPU.");
    json_t *gpus = json_object_get(json_object_get(r->rec, "machine"), "gpus");
    const char *cc = json_string_value(json_object_get(json_array_get(gpus, 0), "cc"));
    if (cc)
        text(f, "evidence", "The GPU is CC %s.", cc);
    json_t *arch = json_object_get(json_object_get(r->rec, "binary"), "arches");
    if (json_array_size(arch)) {
        char list[256] = "";
        size_t i;
        json_t *a;
        json_array_foreach(arch, i, a) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", json_string_value(a) ? json_string_value(a) : "?");
        }
        text(f, "evidence", "The binary holds code for: %s.", list);
    }
    return true;
}

/* Comparison: tokens/s per phase, with the faster setting. */
static bool r_phase_speed(const rep_ctx *c, json_t *f)
{
    static const char *const phases[] = {"prompt", "generation"};
    bool any = false;
    double worst = 0;
    adg_strbuf title;
    adg_sb_init(&title);
    for (size_t i = 0; i < ADG_ARRAY_LEN(phases); i++) {
        char fact[32];
        snprintf(fact, sizeof fact, "tps.%s", phases[i]);
        rep_val b = rep_fact(c->base, fact), n = rep_fact(c->nw, fact);
        if (!b.ok || !n.ok || b.v <= 0)
            continue;
        double pct = 100 * (n.v / b.v - 1);
        char k[48];
        snprintf(k, sizeof k, "%s_base_tps", phases[i]);
        num(f, k, b.v);
        snprintf(k, sizeof k, "%s_new_tps", phases[i]);
        num(f, k, n.v);
        snprintf(k, sizeof k, "%s_delta_pct", phases[i]);
        num(f, k, pct);
        const rep_run *fast = n.v > b.v ? c->nw : c->base;
        text(f, "evidence", "%s: %s %.2f t/s, %s %.2f t/s (%+.1f%%).", phases[i], c->base->label, b.v, c->nw->label,
             n.v, pct);
        if (fabs(pct) < SPEED_NOTE_PCT)
            text(f, "recommendation", "%s: either setting (within %.0f%%).", phases[i], SPEED_NOTE_PCT);
        else {
            char w[48];
            text(f, "recommendation", "%s: use %s (%s).", phases[i], fast->label,
                 speed_words(n.v > b.v ? n.v / b.v : b.v / n.v, w, sizeof w));
        }
        json_t *faster = json_object_get(f, "faster");
        if (!faster) {
            faster = json_object();
            json_object_set_new(f, "faster", faster);
        }
        json_object_set_new(faster, phases[i], json_string(fabs(pct) < SPEED_NOTE_PCT ? "either" : fast->label));
        if (fabs(pct) >= SPEED_NOTE_PCT) {
            char w[48];
            adg_sb_printf(&title, "%s%s in %s", title.len ? ", " : "", speed_words(n.v / b.v, w, sizeof w),
                          phases[i] == phases[0] ? "prompt evaluation" : "token generation");
        }
        if (pct < worst)
            worst = pct;
        any = true;
    }
    if (!any) {
        adg_sb_free(&title);
        return false;
    }
    char t[400];
    snprintf(t, sizeof t, "%s vs %s: %s", c->nw->label, c->base->label, title.len ? title.buf : "the same speed");
    json_object_set_new(f, "title", json_string(t));
    adg_sb_free(&title);
    rep_severity s = worst <= -SPEED_CRIT_PCT ? REP_SEV_CRITICAL : worst <= -SPEED_NOTE_PCT ? REP_SEV_WARNING : REP_SEV_INFO;
    json_object_set_new(f, "severity", json_string(rep_severity_name(s)));
    return true;
}

/* The ops variant string of a run in a phase ("" when several or none). */
static void variants_of(const rep_run *r, const char *phase, const char *op, char *buf, size_t len)
{
    buf[0] = 0;
    for (size_t i = 0; i < r->nops; i++) {
        const rep_op *o = &r->ops[i];
        if (strcmp(o->op, op) || strcmp(o->phase, phase))
            continue;
        const char *v = o->variant[0] ? o->variant : o->impl;
        if (!strstr(buf, v)) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s%s", l ? "+" : "", v);
        }
    }
}

/* Comparison: which op classes the op-time difference of each phase comes from, and
 * whether they are the ops whose kernels changed. */
static bool r_op_delta(const rep_ctx *c, json_t *f)
{
    static const char *const phases[] = {"prompt", "generation"};
    bool any = false;
    for (size_t p = 0; p < ADG_ARRAY_LEN(phases); p++) {
        double tb = rep_ops_seconds(c->base, phases[p], NULL, REP_ANY_LAYER, NULL);
        double tn = rep_ops_seconds(c->nw, phases[p], NULL, REP_ANY_LAYER, NULL);
        double d = tn - tb;
        if (tb <= 0 || tn <= 0 || fabs(d) < 0.03 * tb)
            continue;
        /* op kinds by their share of the difference, in the direction of the difference */
        char best[2][32] = {"", ""};
        double bd[2] = {0, 0};
        for (size_t i = 0; i < c->nw->nops + c->base->nops; i++) {
            const rep_op *o = i < c->nw->nops ? &c->nw->ops[i] : &c->base->ops[i - c->nw->nops];
            if (strcmp(o->phase, phases[p]) || !strcmp(o->op, best[0]) || !strcmp(o->op, best[1]))
                continue;
            double x = rep_ops_seconds(c->nw, phases[p], o->op, REP_ANY_LAYER, NULL) -
                       rep_ops_seconds(c->base, phases[p], o->op, REP_ANY_LAYER, NULL);
            if (x * d <= 0)
                continue;
            if (fabs(x) > fabs(bd[0])) {
                bd[1] = bd[0];
                memcpy(best[1], best[0], sizeof best[1]);
                bd[0] = x;
                snprintf(best[0], sizeof best[0], "%s", o->op);
            } else if (fabs(x) > fabs(bd[1])) {
                bd[1] = x;
                snprintf(best[1], sizeof best[1], "%s", o->op);
            }
        }
        if (!best[0][0])
            continue;
        char k[128];
        snprintf(k, sizeof k, "%s_op_delta_s", phases[p]);
        num(f, k, d);
        text(f, "evidence", "%s: op time %s by %.3f s (%+.1f%%);", phases[p], d > 0 ? "grew" : "fell", fabs(d),
             100 * d / tb);
        bool same_kernels = true;
        for (int j = 0; j < 2 && best[j][0]; j++) {
            char vb[64], vn[64];
            variants_of(c->base, phases[p], best[j], vb, sizeof vb);
            variants_of(c->nw, phases[p], best[j], vn, sizeof vn);
            bool same = !strcmp(vb, vn);
            same_kernels &= same;
            snprintf(k, sizeof k, "%s_%s_delta_s", phases[p], best[j]);
            num(f, k, bd[j]);
            text(f, "evidence", "%s %+.3f s (%.0f%% of it, %s)%s", best[j], bd[j], 100 * bd[j] / d,
                 same ? vb : "kernels changed", j == 0 && best[1][0] ? "," : ".");
        }
        if (same_kernels)
            text(f, "evidence", "The %s ops that explain it ran the same kernels in both runs: the difference "
                                "is not in the kernels that changed but around them (memory placement, threads, "
                                "weight layout).", phases[p]);
        any = true;
    }
    return any;
}

static const rep_rule rules[] = {
    {"phase-speed", REP_SEV_INFO, REP_MODE_COMPARE, "tokens/s per phase, and the faster setting",
     "a phase slower by >= 10% is critical, by >= 3% a warning; within 3% counts as the same speed",
     "tokens/s of prompt evaluation and token generation in both runs (engine phase events or the workload's output)",
     "use the faster setting per phase (named in the finding)", r_phase_speed},
    {"op-delta", REP_SEV_INFO, REP_MODE_COMPARE, "where the op-time difference comes from",
     "a phase whose op time differs by >= 3% between the runs",
     "the change of op time per phase and the two op classes that account for most of it, with their kernel "
     "variants in both runs",
     "look first at the ops named; when their kernels did not change, compare memory placement, threads and weight "
     "layout of the two runs",
     r_op_delta},
    {"run-incomplete", REP_SEV_WARNING, REP_MODE_RUN, "the run did not complete",
     "status other than complete: interrupted is a warning, workload-failed / workload-crashed are critical (unless "
     "a CUDA crash section explains it: cuda-error)",
     "the record's status, the workload's exit code or signal",
     "read the workload's own error output (amxdiag profile passes it through), fix that first, then record again",
     r_run_failed},
    {"amx-never-ran", REP_SEV_CRITICAL, REP_MODE_RUN, "AMX was asked for but AMX code never ran",
     "cpu kernels name amx, and < 0.5% of sampled CPU time in AMX functions (at least 100 samples) or EXE.AMX_BUSY < "
     "0.5% of cycles, and no op record from an AMX kernel (info, not critical, when the engine's op records show a "
     "generation-only run: M = 1 picks VNNI by design)",
     "ISA share of AMX functions and the number of samples; AMX busy from the PMU",
     "check `amxdiag probe` (CPUID, XCR0, ARCH_REQ_XCOMP_PERM, palette): a layer that fails makes engines fall back "
     "silently; check that the build has the AMX backend and that the weights are AMX-eligible (`amxdiag model "
     "inspect`)",
     r_amx_never},
    {"amx-prompt-only", REP_SEV_WARNING, REP_MODE_RUN, "AMX ran only in prompt evaluation",
     "AMX share >= 5% of prompt time and < 1% of generation time",
     "AMX share per phase (isa.share.amx inside the phase windows, or the AMX kernels' op time)",
     "token generation (batch 1) does not use tiles here (llama.cpp's AMX backend switches to AVX-512 VNNI at M=1): "
     "judge an AMX build by prompt speed, and tune generation as an AVX-512 path (bandwidth, threads, NUMA)",
     r_amx_prompt_only},
    {"amx-eligible-small", REP_SEV_WARNING, REP_MODE_RUN,
     "AMX-eligible weights are a small share of the model",
     "AMX asked for or used, and AMX-eligible bytes < 25% of the weights on the CPU",
     "AMX-eligible bytes, CPU weight bytes, expert (MUL_MAT_ID) bytes from the model section",
     "AMX cannot speed up what it does not run: for MoE models use an engine whose AMX path takes MUL_MAT_ID "
     "(experts), or keep the AVX-512 build; `amxdiag model inspect` shows the split",
     r_amx_eligible_small},
    {"generation-memory-bound", REP_SEV_WARNING, REP_MODE_RUN,
     "token generation is memory-bound: tiles cannot help",
     "memory bandwidth during generation >= 80% of the probe's measured ceiling",
     "bandwidth in generation (IMC/MBM series in the generation windows, or the engine's bytes / op time), the "
     "ceiling (probe --bench), GB per token",
     "faster matrix units do not raise a bandwidth limit: fewer bytes per token (smaller quantisation, fewer active "
     "experts), all memory channels (bind threads and memory to the same nodes), or offload layers to the GPU",
     r_memory_bound},
    {"tiles-small-m", REP_SEV_WARNING, REP_MODE_RUN | REP_MODE_COMPARE, "AMX tiles used at small M where VNNI is faster",
     "a comparison: matrix products on tiles in generation >= 5% slower per call than the same ops without tiles; one "
     "run: any AMX kernel time in generation (info)",
     "microseconds per call of the same op kinds in generation, tiles vs AVX-512 VNNI",
     "use AVX-512 VNNI below the crossover M (`amxdiag bench kernels` measures it) and tiles for prompt batches",
     r_tiles_small_m},
    {"tiles-prompt-gain", REP_SEV_WARNING, REP_MODE_COMPARE, "AMX tiles barely faster than VNNI in prompt evaluation",
     "a comparison: matrix products on tiles in prompt evaluation less than 1.2x faster per call than the same ops "
     "without tiles",
     "microseconds per call of the same op kinds in prompt evaluation, tiles vs without, and the op kind that "
     "lost most",
     "block-quantised weights (Q4_0, Q8_0, K-quants: a scale per 32 or 256 values) make every tile step store its "
     "sums and scale them with vector code, which bounds int8 tiles near AVX-512 VNNI speed (amxdiag measured "
     "0.7-1.2x on Emerald Rapids, docs/kernels.md); two threads of one core share its tile unit (`amxdiag probe "
     "--bench` shows the scaling). Measure this machine with `amxdiag bench kernels --impl amx,avx512 --m 512`; "
     "`amxdiag run --amx-scales row` shows what per-row scales give; keep the faster path per phase",
     r_tiles_prompt_gain},
    {"threads-oversubscribed", REP_SEV_WARNING, REP_MODE_RUN, "more threads than CPUs",
     "threads asked for > online CPUs",
     "threads (config or -t), online CPUs, the workload's CPU use",
     "use at most one thread per physical core of the nodes the process runs on (-t)", r_oversubscribed},
    {"numa-spread", REP_SEV_WARNING, REP_MODE_RUN, "threads spread over NUMA nodes",
     "two or more nodes each with >= 10% of the thread time",
     "share of thread time per NUMA node",
     "bind one process to one node (numactl -N X -m X, threads <= its cores), or use an engine that places weights "
     "per node (--numa distribute)",
     r_numa_spread},
    {"remote-memory", REP_SEV_WARNING, REP_MODE_RUN, "threads read remote memory",
     "a node with >= 20% of the thread time holds < 50% of the workload's resident memory (or the NUMA collector "
     "warned)",
     "thread time and resident memory per node",
     "bind memory with the threads (numactl -m on the same nodes as -N); load weights after pinning so first touch "
     "lands locally",
     r_remote_memory},
    {"gpu-idle", REP_SEV_WARNING, REP_MODE_RUN, "GPU idle while CPU layers run",
     "GPU busy < 30% of the run (gpu.busy, or kernel time / run time) in a run that used the GPU",
     "GPU busy share, GPU kernel time, CPU op time, layers offloaded",
     "offload more layers (-ngl) or keep attention on the GPU and experts on the CPU (-ot exps=CPU); the CPU part "
     "sets the pace",
     r_gpu_idle},
    {"transfer-bound", REP_SEV_WARNING, REP_MODE_RUN, "offload is bound by host-device copies",
     "copy time >= 50% of GPU kernel time and >= 10% of the run, counting only copies made after the first kernel "
     "started (those before it are setup, e.g. the weights going up once; the GPU table shows them apart)",
     "copy time, bytes and rate; kernel time",
     "keep weights resident on the GPU (no per-token uploads), use pinned host memory, check the PCIe link (`amxdiag "
     "probe --only gpu`)",
     r_transfer_bound},
    {"cuda-error", REP_SEV_CRITICAL, REP_MODE_RUN | REP_MODE_CRASH, "a CUDA error stopped the GPU",
     "the record has a crash section with an error",
     "error code, name, the API call that returned it, the faulting kernel and its confidence",
     "`amxdiag report --crash RUN.json` for the launch ring and allocations; rerun with `amxdiag profile --sanitize` "
     "or CUDA_LAUNCH_BLOCKING=1",
     r_cuda_error},
    {"reporter-not-faulting", REP_SEV_CRITICAL, REP_MODE_RUN | REP_MODE_CRASH,
     "the op that reported the CUDA error is not the faulting kernel",
     "crash.reporting_op_faulted is false",
     "the reporting launch and the faulting launch (numbers, names), the evidence and its confidence",
     "fix the faulting kernel, not the op in the error message: errors 700+ are sticky and asynchronous, and the "
     "first check after the fault reports it",
     r_reporter_not_faulting},
    {"no-code-for-cc", REP_SEV_CRITICAL, REP_MODE_RUN | REP_MODE_CRASH,
     "the binary has no code for this GPU's compute capability",
     "CUDA error 209 (NO_BINARY_FOR_GPU), 222 (UNSUPPORTED_PTX_VERSION), 218 (INVALID_PTX) or 200 (INVALID_IMAGE)",
     "the error, the call, the GPU's CC and the binary's architectures where the record has them",
     "rebuild with code for the CC (-gencode arch=compute_XY,code=sm_XY, plus PTX: code=compute_XY) or a newer "
     "toolkit/driver; `amxdiag probe --only gpu --binary FILE` gives the verdict without running it",
     r_no_code_for_cc},
};

size_t rep_rule_count(void)
{
    return ADG_ARRAY_LEN(rules);
}

const rep_rule *rep_rule_at(size_t i)
{
    return i < ADG_ARRAY_LEN(rules) ? &rules[i] : NULL;
}

static int sev_rank(const json_t *f)
{
    const char *s = json_string_value(json_object_get(f, "severity"));
    return s && !strcmp(s, "critical") ? 2 : s && !strcmp(s, "warning") ? 1 : 0;
}

void rep_findings_sort(json_t *findings)
{
    /* stable insertion sort by severity, most severe first */
    size_t n = json_array_size(findings);
    for (size_t i = 1; i < n; i++) {
        json_t *x = json_incref(json_array_get(findings, i));
        size_t k = i;
        while (k > 0 && sev_rank(json_array_get(findings, k - 1)) < sev_rank(x)) {
            json_array_set(findings, k, json_array_get(findings, k - 1));
            k--;
        }
        json_array_set(findings, k, x);
        json_decref(x);
    }
}

void rep_rules_run(unsigned mode, const rep_ctx *c, json_t *findings)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(rules); i++) {
        const rep_rule *r = &rules[i];
        if (!(r->modes & mode))
            continue;
        json_t *f = json_object();
        json_object_set_new(f, "id", json_string(r->id));
        json_object_set_new(f, "severity", json_string(rep_severity_name(r->severity)));
        json_object_set_new(f, "title", json_string(r->title));
        if (c->role)
            json_object_set_new(f, "run", json_string(c->role));
        if (!r->fn(c, f)) {
            json_decref(f);
            continue;
        }
        if (!json_object_get(f, "recommendation"))
            json_object_set_new(f, "recommendation", json_string(r->remedy));
        json_object_set_new(f, "threshold", json_string(r->threshold));
        json_array_append_new(findings, f);
    }
}

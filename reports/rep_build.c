/* The run report and the regression (compare) report: tables, charts and findings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "reports/rep_internal.h"

/* ---- shared pieces ---- */

static const char *fact_cell(const rep_run *r, const char *fact, char *buf, size_t len)
{
    rep_val v = rep_fact(r, fact);
    if (!v.ok) {
        snprintf(buf, len, "%s", v.why);
        return buf;
    }
    return rep_fmt_num(v.v, rep_fact_unit(fact), buf, len);
}

/* Distinct op kinds of a run (in first-seen order). */
static size_t op_kinds(const rep_run *a, const rep_run *b, char kinds[][32], size_t max)
{
    size_t n = 0;
    const rep_run *runs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        if (!runs[k])
            continue;
        for (size_t i = 0; i < runs[k]->nops; i++) {
            bool seen = false;
            for (size_t j = 0; j < n && !seen; j++)
                seen = !strcmp(kinds[j], runs[k]->ops[i].op);
            if (!seen && n < max)
                snprintf(kinds[n++], 32, "%s", runs[k]->ops[i].op);
        }
    }
    return n;
}

static int max_layer(const rep_run *r)
{
    int m = -1;
    for (size_t i = 0; r && i < r->nops; i++)
        if (r->ops[i].layer > m)
            m = r->ops[i].layer;
    return m;
}

/* The variants/impls an op kind ran with in a phase ("amx-int8-1x1", "avx512-vnni"). */
static void op_variants(const rep_run *r, const char *phase, const char *op, char *buf, size_t len)
{
    buf[0] = 0;
    for (size_t i = 0; i < r->nops; i++) {
        const rep_op *o = &r->ops[i];
        if (strcmp(o->op, op) || strcmp(o->phase, phase))
            continue;
        const char *v = o->variant[0] ? o->variant : o->impl;
        if (!v[0] || strstr(buf, v))
            continue;
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, "%s%s", l ? ", " : "", v);
    }
}

static void add_series(json_t *chart, const char *name, const rep_run *r, const char *metric, bool sum, double scale)
{
    int m = adg_bus_find(r->bus, metric);
    if (m < 0)
        return;
    char **names;
    size_t ni = adg_bus_instances(r->bus, m, &names);
    json_t *pts = json_array();
    double *acc = NULL;
    adg_point *first = NULL;
    size_t nfirst = 0;
    for (size_t i = 0; i < ni; i++) {
        adg_point *p;
        size_t np = adg_bus_series_copy(r->bus, m, names[i], &p);
        if (!sum || !first) {
            if (!sum) {
                for (size_t k = 0; k < np; k++)
                    json_array_append_new(pts, json_pack("[f,f]", (double)p[k].t_ns * 1e-9, p[k].value * scale));
                free(p);
                break; /* one instance when not summing */
            }
            first = p;
            nfirst = np;
            acc = calloc(np ? np : 1, sizeof *acc);
            for (size_t k = 0; acc && k < np; k++)
                acc[k] = p[k].value;
            continue;
        }
        for (size_t k = 0; acc && k < np && k < nfirst; k++)
            acc[k] += p[k].value;
        free(p);
    }
    for (size_t k = 0; acc && k < nfirst; k++)
        json_array_append_new(pts, json_pack("[f,f]", (double)first[k].t_ns * 1e-9, acc[k] * scale));
    free(acc);
    free(first);
    adg_bus_free_names(names, ni);
    if (!json_array_size(pts)) {
        json_decref(pts);
        return;
    }
    json_array_append_new(json_object_get(chart, "series"), json_pack("{s:s,s:o}", "name", name, "points", pts));
}

static void add_bands(json_t *chart, const rep_run *r)
{
    json_t *b = json_array();
    for (size_t i = 0; i < r->nwin; i++)
        json_array_append_new(b, json_pack("{s:s,s:f,s:f}", "label", r->win[i].phase, "t0", r->win[i].t0, "t1",
                                           r->win[i].t1));
    json_object_set_new(chart, "bands", b);
}

/* Time-series charts of one run (only those with data). */
static void series_charts(json_t *sec, const rep_run *r, const char *prefix)
{
    char t[160];
    snprintf(t, sizeof t, "%sCPU time by ISA class over time", prefix);
    json_t *c = rep_doc_chart(sec, "lines", t, "%");
    static const char *const cls[] = {"amx", "avx512", "avx2", "scalar"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(cls); i++) {
        char m[48];
        snprintf(m, sizeof m, "isa.share.%s", cls[i]);
        add_series(c, cls[i], r, m, false, 1);
    }
    add_series(c, "AMX busy", r, "amx.busy", false, 1);
    add_bands(c, r);
    snprintf(t, sizeof t, "%sMemory bandwidth over time", prefix);
    c = rep_doc_chart(sec, "lines", t, "GB/s");
    add_series(c, "read", r, "mem.read_bw", true, 1e-9);
    add_series(c, "write", r, "mem.write_bw", true, 1e-9);
    add_series(c, "MBM total", r, "mem.mbm_bw", true, 1e-9);
    add_bands(c, r);
    snprintf(t, sizeof t, "%sGPU busy over time", prefix);
    c = rep_doc_chart(sec, "lines", t, "%");
    add_series(c, "gpu0", r, "gpu.busy", false, 1);
    add_bands(c, r);
    snprintf(t, sizeof t, "%sTokens per second", prefix);
    c = rep_doc_chart(sec, "lines", t, "t/s");
    add_series(c, "workload", r, "workload.tokens_per_s", false, 1);
    add_bands(c, r);
    /* drop the empty ones */
    json_t *blocks = json_object_get(sec, "blocks");
    for (size_t i = json_array_size(blocks); i-- > 0;) {
        json_t *b = json_array_get(blocks, i);
        const char *ty = json_string_value(json_object_get(b, "type"));
        if (ty && !strcmp(ty, "chart") && !json_array_size(json_object_get(b, "series")))
            json_array_remove(blocks, i);
    }
}

static json_t *isa_values(const rep_run *r)
{
    static const char *const cls[] = {"amx", "avx512", "avx2", "sse", "scalar", "unknown"};
    json_t *vals = json_array();
    bool any = false;
    for (size_t i = 0; i < ADG_ARRAY_LEN(cls); i++) {
        char f[32];
        snprintf(f, sizeof f, "isa.%s", cls[i]);
        rep_val v = rep_fact(r, f);
        any |= v.ok;
        json_array_append_new(vals, json_pack("{s:s,s:f}", "label", cls[i], "value", v.ok ? v.v : 0.0));
    }
    if (!any) {
        json_decref(vals);
        return NULL;
    }
    return vals;
}

/* One bar of ISA shares per run that measured them (b may be NULL). */
static void isa_shares_chart(json_t *sec, const rep_run *a, const rep_run *b)
{
    json_t *va = isa_values(a), *vb = b ? isa_values(b) : NULL;
    if (!va && !vb)
        return;
    json_t *c = rep_doc_chart(sec, "shares", "CPU time by ISA class (sampled functions)", "%");
    if (va)
        json_array_append_new(json_object_get(c, "series"), json_pack("{s:s,s:o}", "name", a->label, "values", va));
    if (vb)
        json_array_append_new(json_object_get(c, "series"), json_pack("{s:s,s:o}", "name", b->label, "values", vb));
}

static void hot_functions(json_t *sec, const rep_run *r)
{
    json_t *hot = json_object_get(r->rec, "hot_functions");
    if (!json_array_size(hot))
        return;
    static const char *const cols[] = {"share", "class", "function", "module"};
    json_t *t = rep_doc_table(sec, "hot functions (cpu-clock samples)", cols, 4);
    size_t i;
    json_t *h;
    json_array_foreach(hot, i, h) {
        if (i >= 12)
            break;
        char s[32];
        snprintf(s, sizeof s, "%.1f%%", json_number_value(json_object_get(h, "share")));
        const char *mod = json_string_value(json_object_get(h, "module"));
        const char *base = mod && strrchr(mod, '/') ? strrchr(mod, '/') + 1 : mod;
        rep_table_row(t, 4, s, json_string_value(json_object_get(h, "class")),
                      json_string_value(json_object_get(h, "function")), base);
    }
}

static void numa_table(json_t *sec, const rep_run *r, const char *caption)
{
    json_t *numa = json_object_get(r->rec, "numa");
    json_t *nodes = json_object_get(numa, "per_node");
    if (!json_array_size(nodes)) {
        const char *why = rep_unavailable_reason(r, (const char *const[]){"numa", NULL});
        rep_doc_text(sec, "%s: not measured: %s", caption,
                     why ? why : "the record has no numa section (the NUMA collector did not run)");
        return;
    }
    static const char *const cols[] = {"node", "thread time", "resident memory", "memory share"};
    json_t *t = rep_doc_table(sec, caption, cols, 4);
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n) {
        char a[16], b[32], c[32], d[32];
        snprintf(a, sizeof a, "node%d", (int)json_integer_value(json_object_get(n, "node")));
        snprintf(b, sizeof b, "%.1f%%", json_number_value(json_object_get(n, "thread_time_pct")));
        adg_fmt_bytes(json_number_value(json_object_get(n, "resident_bytes_peak")), c, sizeof c);
        snprintf(d, sizeof d, "%.1f%%", json_number_value(json_object_get(n, "memory_pct")));
        rep_table_row(t, 4, a, b, c, d);
    }
}

static void gpu_kernels_table(json_t *sec, const rep_run *r)
{
    json_t *k = json_object_get(json_object_get(r->rec, "gpu_kernels"), "kernels");
    if (!json_array_size(k))
        return;
    static const char *const cols[] = {"kernel", "launches", "total", "median", "share"};
    json_t *t = rep_doc_table(sec, "GPU kernels by time", cols, 5);
    size_t i;
    json_t *x;
    json_array_foreach(k, i, x) {
        if (i >= 10)
            break;
        char c[32], tot[32], med[32], sh[32];
        snprintf(c, sizeof c, "%lld", (long long)json_integer_value(json_object_get(x, "count")));
        rep_fmt_num(json_number_value(json_object_get(x, "total_s")), "s", tot, sizeof tot);
        snprintf(med, sizeof med, "%.1f us", json_number_value(json_object_get(x, "median_us")));
        snprintf(sh, sizeof sh, "%.1f%%", 100 * json_number_value(json_object_get(x, "share")));
        rep_table_row(t, 5, json_string_value(json_object_get(x, "name")), c, tot, med, sh);
    }
}

/* --gpu-metrics (CUPTI Range Profiler): per kernel, what it moved through device memory
 * and how busy it kept the GPU, in the profiled pass. */
static void gpu_metrics_table(json_t *sec, const rep_run *r)
{
    json_t *gk = json_object_get(r->rec, "gpu_kernels");
    json_t *gm = json_object_get(gk, "metrics");
    if (!json_is_object(gm))
        return;
    static const char *const cols[] = {"kernel", "profiled", "DRAM read/launch", "DRAM write/launch",
                                       "achieved DRAM", "% of peak", "SM throughput", "tensor pipe"};
    json_t *t = rep_doc_table(sec, "GPU kernels: hardware metrics (--gpu-metrics)", cols, 8);
    size_t i, shown = 0;
    json_t *x;
    json_array_foreach(json_object_get(gk, "kernels"), i, x) {
        json_t *m = json_object_get(x, "metrics");
        if (!m)
            continue;
        if (shown++ >= 10)
            break;
        double n = json_number_value(json_object_get(m, "ranges"));
        char c[32], rd[32] = "-", wr[32] = "-", bw[32] = "-", pk[32] = "-", sm[32] = "-", tp[32] = "-";
        snprintf(c, sizeof c, "%.0f", n);
        json_t *v;
        if ((v = json_object_get(m, "dram_read_bytes")) && n > 0)
            adg_fmt_bytes(json_number_value(v) / n, rd, sizeof rd);
        if ((v = json_object_get(m, "dram_write_bytes")) && n > 0)
            adg_fmt_bytes(json_number_value(v) / n, wr, sizeof wr);
        if ((v = json_object_get(m, "dram_Bps")))
            snprintf(bw, sizeof bw, "%.1f GB/s", json_number_value(v) / 1e9);
        if ((v = json_object_get(m, "dram_pct_of_peak_bytes")) || (v = json_object_get(m, "dram_pct_of_peak")))
            snprintf(pk, sizeof pk, "%.1f%%", json_number_value(v));
        if ((v = json_object_get(m, "sm_throughput_pct")))
            snprintf(sm, sizeof sm, "%.1f%%", json_number_value(v));
        static const char *const tk[] = {"tensor_hmma_pct", "tensor_imma_pct", "tensor_gmma_pct"};
        double best = -1;
        for (size_t j = 0; j < ADG_ARRAY_LEN(tk); j++)
            if ((v = json_object_get(m, tk[j])) && json_number_value(v) > best)
                best = json_number_value(v);
        if (best >= 0)
            snprintf(tp, sizeof tp, "%.1f%%", best);
        rep_table_row(t, 8, json_string_value(json_object_get(x, "name")), c, rd, wr, bw, pk, sm, tp);
    }
    json_t *peak = json_object_get(gm, "dram_peak_Bps");
    char pb[64] = "";
    if (peak)
        snprintf(pb, sizeof pb, "; DRAM peak %.0f GB/s", json_number_value(peak) / 1e9);
    rep_doc_text(sec,
                 "Hardware counters from the CUPTI Range Profiler on %s: one range per kernel launch, kernel replay "
                 "with %lld pass(es) (launches are serialised and replayed while profiled, so the figures are of "
                 "the profiled pass, not of the unprofiled run's timing)%s.",
                 json_string_value(json_object_get(gm, "chip")) ? json_string_value(json_object_get(gm, "chip")) : "?",
                 (long long)json_integer_value(json_object_get(gm, "passes")), pb);
}

static const char *first_sentence(const char *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s ? s : "");
    char *dot = strstr(buf, ". ");
    if (dot)
        dot[1] = 0;
    return buf;
}

static void conclude(json_t *doc, json_t *findings, adg_strbuf *sb)
{
    size_t i;
    json_t *f;
    int shown = 0;
    json_array_foreach(findings, i, f) {
        const char *sev = json_string_value(json_object_get(f, "severity"));
        const char *id = json_string_value(json_object_get(f, "id"));
        if (!sev || !strcmp(sev, "info") || !strcmp(id, "phase-speed") || !strcmp(id, "op-delta"))
            continue;
        if (shown++ >= 5)
            break;
        char ev[400];
        const char *run = json_string_value(json_object_get(f, "run"));
        adg_sb_printf(sb, "%s%s", shown == 1 ? " Why: " : "; ", json_string_value(json_object_get(f, "title")));
        if (run)
            adg_sb_printf(sb, " (%s run)", run);
        adg_sb_printf(sb, ": %s", first_sentence(json_string_value(json_object_get(f, "evidence")), ev, sizeof ev));
        size_t l = sb->len;
        if (l && sb->buf[l - 1] == '.')
            sb->buf[--sb->len] = 0;
    }
    if (shown)
        adg_sb_puts(sb, ".");
    else if (!json_array_size(findings))
        adg_sb_puts(sb, " No rule found a problem in what the record measured.");
    rep_doc_finish(doc, findings, sb->buf);
}

/* ---- the run report ---- */

json_t *rep_build_run(rep_run *r)
{
    char title[256];
    snprintf(title, sizeof title, "amxdiag run report: %s", r->label);
    json_t *doc = rep_doc_new("run", title);
    rep_doc_input(doc, r, NULL);
    char b1[400], b2[400];

    json_t *sec = rep_doc_section(doc, "summary", "Run");
    static const char *const c2[] = {"what", "value"};
    json_t *t = rep_doc_table(sec, NULL, c2, 2);
    rep_command_line(r, b1, sizeof b1);
    rep_table_row(t, 2, "command", b1[0] ? b1 : "(none recorded)");
    const char *cpu = json_string_value(json_object_get(json_object_get(r->rec, "machine"), "cpu_model"));
    rep_table_row(t, 2, "CPU", cpu ? cpu : "not measured: the record has no machine section");
    rep_table_row(t, 2, "status", json_string_value(json_object_get(r->rec, "status")));
    static const char *const facts[] = {"duration", "threads", "cpus", "numa.nodes", "model.bytes"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(facts); i++)
        rep_table_row(t, 2, rep_fact_label(facts[i]), fact_cell(r, facts[i], b1, sizeof b1));
    if (rep_setting_cpu_kernels(r, b2, sizeof b2))
        rep_table_row(t, 2, "CPU kernels", b2);

    sec = rep_doc_section(doc, "throughput", "Throughput");
    static const char *const c3[] = {"phase", "tokens/s", "source"};
    t = rep_doc_table(sec, NULL, c3, 3);
    static const char *const ph[] = {"prompt", "generation"};
    for (size_t i = 0; i < 2; i++) {
        char f[32];
        snprintf(f, sizeof f, "tps.%s", ph[i]);
        rep_val v = rep_fact(r, f);
        rep_table_row(t, 3, ph[i], v.ok ? rep_fmt_num(v.v, "t/s", b1, sizeof b1) : v.why, v.ok ? v.src : "");
    }

    sec = rep_doc_section(doc, "ops", "Where the time went (per op)");
    if (!r->nops)
        rep_doc_text(sec, "Per-op times: not measured: the record has no op records (the built-in engine publishes "
                          "them; an external command's ops are not visible to amxdiag).");
    else {
        static const char *const c7[] = {"phase", "op", "kernels", "calls", "time", "share", "GB/s"};
        t = rep_doc_table(sec, "time per op class", c7, 7);
        char kinds[64][32];
        size_t nk = op_kinds(r, NULL, kinds, 64);
        for (size_t p = 0; p < 2; p++) {
            double all = rep_ops_seconds(r, ph[p], NULL, REP_ANY_LAYER, NULL);
            json_t *bars = rep_doc_chart(sec, "bars", ph[p] == ph[0] ? "op time, prompt" : "op time, generation", "s");
            json_t *vals = json_array();
            for (size_t k = 0; k < nk; k++) {
                double s = rep_ops_seconds(r, ph[p], kinds[k], REP_ANY_LAYER, NULL);
                if (s <= 0)
                    continue;
                double calls = 0;
                for (size_t i = 0; i < r->nops; i++)
                    if (!strcmp(r->ops[i].op, kinds[k]) && !strcmp(r->ops[i].phase, ph[p]))
                        calls += r->ops[i].calls;
                char v[80], c[32], tm[32], sh[32], bw[32];
                op_variants(r, ph[p], kinds[k], v, sizeof v);
                snprintf(c, sizeof c, "%.0f", calls);
                rep_fmt_num(s, "s", tm, sizeof tm);
                snprintf(sh, sizeof sh, "%.1f%%", all > 0 ? 100 * s / all : 0.0);
                snprintf(bw, sizeof bw, "%.1f", rep_ops_bytes(r, ph[p], kinds[k], NULL) / s / 1e9);
                rep_table_row(t, 7, ph[p], kinds[k], v, c, tm, sh, bw);
                json_array_append_new(vals, json_pack("{s:s,s:f}", "label", kinds[k], "value", s));
            }
            json_array_append_new(json_object_get(bars, "series"), json_pack("{s:s,s:o}", "name", r->label, "values", vals));
        }
        int ml = max_layer(r);
        if (ml >= 0) {
            static const char *const cl[] = {"layer", "prompt", "generation"};
            t = rep_doc_table(sec, "time per layer", cl, 3);
            for (int l = -1; l <= ml; l++) {
                char a[16], p1[32], p2[32];
                if (l < 0)
                    snprintf(a, sizeof a, "outside");
                else
                    snprintf(a, sizeof a, "%d", l);
                double s1 = rep_ops_seconds(r, "prompt", NULL, l, NULL), s2 = rep_ops_seconds(r, "generation", NULL, l, NULL);
                if (s1 <= 0 && s2 <= 0)
                    continue;
                rep_table_row(t, 3, a, rep_fmt_num(s1, "s", p1, sizeof p1), rep_fmt_num(s2, "s", p2, sizeof p2));
            }
        }
    }

    sec = rep_doc_section(doc, "cpu", "CPU: AMX and AVX-512 use");
    static const char *const cf[] = {"metric", "value", "source"};
    t = rep_doc_table(sec, NULL, cf, 3);
    static const char *const cpu_facts[] = {"isa.amx",    "isa.avx512", "isa.avx2",         "isa.scalar", "isa.unknown",
                                            "isa.amx.prompt", "isa.amx.generation", "amx.busy", "amx.ops", "cpu.util"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(cpu_facts); i++) {
        rep_val v = rep_fact(r, cpu_facts[i]);
        rep_table_row(t, 3, rep_fact_label(cpu_facts[i]),
                      v.ok ? rep_fmt_num(v.v, rep_fact_unit(cpu_facts[i]), b1, sizeof b1) : v.why, v.ok ? v.src : "");
    }
    isa_shares_chart(sec, r, NULL);
    hot_functions(sec, r);

    sec = rep_doc_section(doc, "memory", "Memory and NUMA");
    t = rep_doc_table(sec, NULL, cf, 3);
    static const char *const mem_facts[] = {"mem.bw", "mem.bw.prompt", "mem.bw.generation", "mem.ceiling"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(mem_facts); i++) {
        rep_val v = rep_fact(r, mem_facts[i]);
        rep_table_row(t, 3, rep_fact_label(mem_facts[i]), v.ok ? rep_fmt_num(v.v, "B/s", b1, sizeof b1) : v.why,
                      v.ok ? v.src : "");
    }
    rep_val g = rep_fact(r, "mem.bw.generation"), pk = rep_fact(r, "mem.ceiling");
    if (g.ok && pk.ok && pk.v > 0)
        rep_doc_text(sec, "Token generation used %.0f%% of the measured bandwidth ceiling.", 100 * g.v / pk.v);
    numa_table(sec, r, "NUMA placement");

    sec = rep_doc_section(doc, "gpu", "GPU");
    t = rep_doc_table(sec, NULL, cf, 3);
    static const char *const gpu_facts[] = {"gpu.busy",        "gpu.kernel_time",      "gpu.copy_time",
                                            "gpu.copy_bytes",  "gpu.setup_copy_bytes", "gpu.setup_copy_time",
                                            "gpu.layers"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(gpu_facts); i++) {
        rep_val v = rep_fact(r, gpu_facts[i]);
        rep_table_row(t, 3, rep_fact_label(gpu_facts[i]),
                      v.ok ? rep_fmt_num(v.v, rep_fact_unit(gpu_facts[i]), b1, sizeof b1) : v.why, v.ok ? v.src : "");
    }
    gpu_kernels_table(sec, r);
    gpu_metrics_table(sec, r);
    json_t *cr = json_object_get(r->rec, "crash");
    if (json_is_object(cr))
        rep_doc_text(sec, "Crash: %s (details: amxdiag report --crash %s)",
                     json_string_value(json_object_get(cr, "conclusion")) ? json_string_value(json_object_get(cr, "conclusion"))
                                                                  : "a crash section is present", r->path);

    sec = rep_doc_section(doc, "timeline", "Over time");
    series_charts(sec, r, "");
    if (!json_array_size(json_object_get(sec, "blocks")))
        rep_doc_text(sec, "No time series in this record.");

    rep_doc_not_measured(doc, r, NULL);
    json_t *findings = json_array();
    rep_ctx c = {.run = r};
    rep_rules_run(REP_MODE_RUN, &c, findings);
    rep_findings_sort(findings);

    adg_strbuf sb;
    adg_sb_init(&sb);
    rep_val p = rep_fact(r, "tps.prompt"), gen = rep_fact(r, "tps.generation");
    adg_sb_printf(&sb, "%s:", r->label);
    if (p.ok)
        adg_sb_printf(&sb, " prompt %.2f t/s", p.v);
    if (gen.ok)
        adg_sb_printf(&sb, "%s generation %.2f t/s", p.ok ? "," : "", gen.v);
    if (!p.ok && !gen.ok)
        adg_sb_puts(&sb, " no tokens/s in the record");
    rep_val amx = rep_fact(r, "isa.amx");
    if (amx.ok)
        adg_sb_printf(&sb, "; %.1f%% of CPU time in AMX code", amx.v);
    adg_sb_puts(&sb, ".");
    conclude(doc, findings, &sb);
    adg_sb_free(&sb);
    json_decref(findings);
    return doc;
}

/* ---- the comparison ---- */

/* Adds one fact to the side-by-side table. A fact neither record holds, for the same reason,
 * is left out of the table (two identical "not measured" cells per row buried the figures)
 * and its reason goes once into `unmeasured`; the JSON keeps every fact. */
static void cmp_row(json_t *t, json_t *cmp, const rep_run *b, const rep_run *n, const char *fact, adg_strbuf *unmeasured)
{
    rep_val x = rep_fact(b, fact), y = rep_fact(n, fact);
    const char *unit = rep_fact_unit(fact);
    char cb[400], cn[400], d[48], p[32];
    if (x.ok)
        rep_fmt_num(x.v, unit, cb, sizeof cb);
    else
        snprintf(cb, sizeof cb, "%s", x.why);
    if (y.ok)
        rep_fmt_num(y.v, unit, cn, sizeof cn);
    else
        snprintf(cn, sizeof cn, "%s", y.why);
    json_t *row = json_pack("{s:s,s:s,s:s}", "fact", fact, "label", rep_fact_label(fact), "unit", unit);
    json_object_set_new(row, "base", x.ok ? json_real(x.v) : json_null());
    json_object_set_new(row, "new", y.ok ? json_real(y.v) : json_null());
    if (!x.ok)
        json_object_set_new(row, "base_why", json_string(x.why));
    if (!y.ok)
        json_object_set_new(row, "new_why", json_string(y.why));
    if (x.ok && y.ok) {
        double delta = y.v - x.v;
        if (!strcmp(unit, "%"))
            snprintf(d, sizeof d, "%+.1f pt", delta);
        else {
            char tmp[40];
            rep_fmt_num(fabs(delta), unit, tmp, sizeof tmp);
            snprintf(d, sizeof d, "%s%s", delta < 0 ? "-" : "+", tmp);
        }
        double pct = x.v != 0 ? 100 * delta / fabs(x.v) : NAN;
        rep_fmt_pct(pct, p, sizeof p);
        json_object_set_new(row, "delta", json_real(delta));
        json_object_set_new(row, "pct", isfinite(pct) ? json_real(pct) : json_null());
    } else {
        snprintf(d, sizeof d, "n/a");
        snprintf(p, sizeof p, "n/a");
    }
    json_array_append_new(cmp, row);
    if (!x.ok && !y.ok && !strcmp(x.why, y.why)) {
        const char *why = !strncmp(x.why, "not measured: ", 14) ? x.why + 14 : x.why;
        adg_sb_printf(unmeasured, "%s%s: %s", unmeasured->len ? "\n" : "", rep_fact_label(fact), why);
        return;
    }
    rep_table_row(t, 5, rep_fact_label(fact), cb, cn, d, p);
}

static void delta_cells(double a, double b, char *d, size_t dl, char *p, size_t pl)
{
    char tmp[32];
    rep_fmt_num(fabs(b - a), "s", tmp, sizeof tmp);
    snprintf(d, dl, "%s%s", b < a ? "-" : "+", tmp);
    rep_fmt_pct(a > 0 ? 100 * (b - a) / a : NAN, p, pl);
}

json_t *rep_build_compare(rep_run *base, rep_run *nw)
{
    rep_runs_label(base, nw);
    char title[400];
    snprintf(title, sizeof title, "amxdiag regression report: %s vs %s", nw->label, base->label);
    json_t *doc = rep_doc_new("compare", title);
    rep_doc_input(doc, base, "base");
    rep_doc_input(doc, nw, "new");
    char cmd[600];

    json_t *sec = rep_doc_section(doc, "runs", "Runs");
    static const char *const cr[] = {"run", "setting", "command", "status"};
    json_t *t = rep_doc_table(sec, NULL, cr, 4);
    rep_command_line(base, cmd, sizeof cmd);
    rep_table_row(t, 4, "base", base->label, cmd, json_string_value(json_object_get(base->rec, "status")));
    rep_command_line(nw, cmd, sizeof cmd);
    rep_table_row(t, 4, "new", nw->label, cmd, json_string_value(json_object_get(nw->rec, "status")));

    sec = rep_doc_section(doc, "side-by-side", "Side by side");
    static const char *const cc[] = {"metric", "base", "new", "delta", "%"};
    char cap[400];
    snprintf(cap, sizeof cap, "base = %s, new = %s", base->label, nw->label);
    t = rep_doc_table(sec, cap, cc, 5);
    json_t *cmp = json_array();
    static const char *const facts[] = {
        "tps.prompt",     "tps.generation", "ops.seconds.prompt", "ops.seconds.generation", "isa.amx",
        "isa.avx512",     "isa.avx2",       "isa.scalar",         "isa.amx.prompt",         "isa.amx.generation",
        "amx.busy",       "amx.ops",        "mem.bw",             "mem.bw.prompt",          "mem.bw.generation",
        "mem.ceiling",    "cpu.util",       "threads",            "numa.nodes",             "gpu.busy",
        "gpu.kernel_time", "gpu.copy_time", "gpu.layers"};
    adg_strbuf unmeasured;
    adg_sb_init(&unmeasured);
    for (size_t i = 0; i < ADG_ARRAY_LEN(facts); i++)
        cmp_row(t, cmp, base, nw, facts[i], &unmeasured);
    json_object_set_new(doc, "comparison", cmp);
    if (unmeasured.len) {
        rep_doc_text(sec, "Not measured in either run:");
        for (char *save = NULL, *line = strtok_r(unmeasured.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            rep_doc_text(sec, "- not measured: %s", line);
    }
    adg_sb_free(&unmeasured);
    isa_shares_chart(sec, base, nw);

    sec = rep_doc_section(doc, "ops", "Time per op class and per layer");
    if (!base->nops && !nw->nops)
        rep_doc_text(sec, "Per-op times: not measured in either run: the records have no op records (the built-in "
                          "engine publishes them; an external command's ops are not visible to amxdiag).");
    else {
        if (!base->nops || !nw->nops)
            rep_doc_text(sec, "Per-op times: not measured in the %s run: its record has no op records.",
                         base->nops ? "new" : "base");
        static const char *const co[] = {"phase", "op", "base kernels", "new kernels", "base", "new", "delta", "%"};
        t = rep_doc_table(sec, "time per op class (all layers)", co, 8);
        char kinds[64][32];
        size_t nk = op_kinds(base, nw, kinds, 64);
        static const char *const ph[] = {"prompt", "generation"};
        for (size_t p = 0; p < 2; p++) {
            char ct[64];
            snprintf(ct, sizeof ct, "op time, %s", ph[p]);
            json_t *bars = rep_doc_chart(sec, "bars", ct, "s");
            json_t *vb = json_array(), *vn = json_array();
            for (size_t k = 0; k < nk; k++) {
                double a = rep_ops_seconds(base, ph[p], kinds[k], REP_ANY_LAYER, NULL);
                double b = rep_ops_seconds(nw, ph[p], kinds[k], REP_ANY_LAYER, NULL);
                if (a <= 0 && b <= 0)
                    continue;
                char va[80], vn2[80], sa[32], sb2[32], d[48], pc[32];
                op_variants(base, ph[p], kinds[k], va, sizeof va);
                op_variants(nw, ph[p], kinds[k], vn2, sizeof vn2);
                delta_cells(a, b, d, sizeof d, pc, sizeof pc);
                rep_table_row(t, 8, ph[p], kinds[k], va, vn2, rep_fmt_num(a, "s", sa, sizeof sa),
                              rep_fmt_num(b, "s", sb2, sizeof sb2), d, pc);
                json_array_append_new(vb, json_pack("{s:s,s:f}", "label", kinds[k], "value", a));
                json_array_append_new(vn, json_pack("{s:s,s:f}", "label", kinds[k], "value", b));
            }
            json_array_append_new(json_object_get(bars, "series"), json_pack("{s:s,s:o}", "name", base->label, "values", vb));
            json_array_append_new(json_object_get(bars, "series"), json_pack("{s:s,s:o}", "name", nw->label, "values", vn));
        }
        int ml = max_layer(base) > max_layer(nw) ? max_layer(base) : max_layer(nw);
        if (ml >= 0) {
            static const char *const cl[] = {"layer", "base prompt", "new prompt", "base generation",
                                             "new generation", "generation %"};
            t = rep_doc_table(sec, "time per layer", cl, 6);
            for (int l = -1; l <= ml; l++) {
                double a1 = rep_ops_seconds(base, "prompt", NULL, l, NULL), b1 = rep_ops_seconds(nw, "prompt", NULL, l, NULL);
                double a2 = rep_ops_seconds(base, "generation", NULL, l, NULL),
                       b2 = rep_ops_seconds(nw, "generation", NULL, l, NULL);
                if (a1 <= 0 && b1 <= 0 && a2 <= 0 && b2 <= 0)
                    continue;
                char ly[16], x1[32], y1[32], x2[32], y2[32], d[48], pc[32];
                if (l < 0)
                    snprintf(ly, sizeof ly, "outside");
                else
                    snprintf(ly, sizeof ly, "%d", l);
                delta_cells(a2, b2, d, sizeof d, pc, sizeof pc);
                rep_table_row(t, 6, ly, rep_fmt_num(a1, "s", x1, sizeof x1), rep_fmt_num(b1, "s", y1, sizeof y1),
                              rep_fmt_num(a2, "s", x2, sizeof x2), rep_fmt_num(b2, "s", y2, sizeof y2), pc);
            }
        }
    }

    sec = rep_doc_section(doc, "numa", "NUMA placement");
    char capb[200], capn[200];
    snprintf(capb, sizeof capb, "base (%s)", base->label);
    snprintf(capn, sizeof capn, "new (%s)", nw->label);
    numa_table(sec, base, capb);
    numa_table(sec, nw, capn);

    sec = rep_doc_section(doc, "gpu", "GPU time");
    if (!json_object_get(base->rec, "gpu_kernels") && !json_object_get(nw->rec, "gpu_kernels"))
    {
        const char *why = rep_unavailable_reason(nw, (const char *const[]){"gpu", NULL});
        rep_doc_text(sec, "GPU: not measured in either run: %s",
                     why ? why : "no gpu_kernels section (the command did not use CUDA, or the GPU collector did not run)");
    }
    else {
        gpu_kernels_table(sec, base);
        gpu_metrics_table(sec, base);
        gpu_kernels_table(sec, nw);
        gpu_metrics_table(sec, nw);
    }

    sec = rep_doc_section(doc, "timeline", "Over time");
    char pre[200];
    snprintf(pre, sizeof pre, "base (%s): ", base->label);
    series_charts(sec, base, pre);
    snprintf(pre, sizeof pre, "new (%s): ", nw->label);
    series_charts(sec, nw, pre);
    if (!json_array_size(json_object_get(sec, "blocks")))
        rep_doc_text(sec, "No time series in these records.");

    rep_doc_not_measured(doc, base, "base");
    rep_doc_not_measured(doc, nw, "new");

    json_t *findings = json_array();
    rep_ctx pair = {.base = base, .nw = nw};
    rep_rules_run(REP_MODE_COMPARE, &pair, findings);
    bool pair_tiles = false;
    size_t i;
    json_t *f;
    json_array_foreach(findings, i, f) pair_tiles |= !strcmp(json_string_value(json_object_get(f, "id")), "tiles-small-m");
    rep_ctx cb = {.run = base, .role = "base"}, cn = {.run = nw, .role = "new"};
    json_t *per = json_array();
    rep_rules_run(REP_MODE_RUN, &cn, per); /* the new run's explanations first */
    rep_rules_run(REP_MODE_RUN, &cb, per);
    json_array_foreach(per, i, f) {
        if (pair_tiles && !strcmp(json_string_value(json_object_get(f, "id")), "tiles-small-m"))
            continue;
        json_array_append(findings, f);
    }
    json_decref(per);
    rep_findings_sort(findings);

    adg_strbuf sb;
    adg_sb_init(&sb);
    json_t *speed = NULL;
    json_array_foreach(findings, i, f) if (!strcmp(json_string_value(json_object_get(f, "id")), "phase-speed")) speed = f;
    if (speed) {
        adg_sb_printf(&sb, "%s.", json_string_value(json_object_get(speed, "title")));
        json_t *fast = json_object_get(speed, "faster");
        const char *k;
        json_t *v;
        adg_sb_puts(&sb, " Faster setting:");
        int n = 0;
        json_object_foreach(fast, k, v) adg_sb_printf(&sb, "%s %s → %s", n++ ? "," : "", k, json_string_value(v));
        adg_sb_puts(&sb, ".");
        json_array_foreach(findings, i, f) if (!strcmp(json_string_value(json_object_get(f, "id")), "op-delta"))
            adg_sb_printf(&sb, " Where: %s", json_string_value(json_object_get(f, "evidence")));
    } else
        adg_sb_printf(&sb, "%s vs %s: tokens/s not measured in both runs, so no speed verdict.", nw->label, base->label);
    conclude(doc, findings, &sb);
    adg_sb_free(&sb);
    json_decref(findings);
    return doc;
}

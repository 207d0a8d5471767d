/* THE mapping from what a report needs to where it lives in a run record.
 *
 * Each fact lists its sources in order of preference; the first that has a value wins.
 * A renamed metric or section field is a one-line change here.  Producers:
 *   engine (kernels/engine_bench.c): metric engine.tokens_per_s#prompt|generation, events
 *     "phase" (detail.t_s) and "op" (per op kind and layer);
 *   profiler (profiler/prof_*.c): sections workload (results, duration_s), isa_share
 *     (by_function), memory (read/write/total_Bps_mean, ceiling_Bps), numa, machine;
 *     metrics isa.share.<class>, amx.busy, amx.ops, mem.read_bw, mem.write_bw, mem.mbm_bw,
 *     workload.cpu, workload.tokens_per_s;
 *   GPU collector (profiler/cupti_*.c): section gpu_kernels (kernel_time_s, memcpy[]),
 *     metric gpu.busy;
 *   model inspector (kernels/model_inspect.c, schema amxdiag.model.inspect/1) as a "model"
 *     section: totals.{bytes,cpu_bytes,amx_llamacpp_bytes}, roles[] (experts);
 *   probe ceilings (common/adg_ceilings.h) as a "ceilings" section, else the local cache
 *     when the record was made on a machine with the same CPU and CPU count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_ceilings.h"
#include "common/adg_util.h"
#include "reports/rep_internal.h"

typedef enum { S_NONE, S_SECTION, S_METRIC, S_METRIC_SUM, S_FN } src_kind;

typedef bool (*fact_fn)(const rep_run *r, const char *arg, double *v);

typedef struct src {
    src_kind kind;
    const char *where;   /* dotted section path, or metric[#instance][@phase] */
    fact_fn fn;          /* S_FN */
    const char *text;    /* shown as the source */
} src;

typedef struct fact {
    const char *name, *label, *unit;
    const char *unavail[5]; /* names in the record's unavailable list that explain a gap */
    src s[4];
} fact;

/* ---- computed sources ---- */

static json_t *path_get(const json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *cur = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    return (json_t *)cur;
}

/* The workload's own figures: llama-bench rows ("pp512", "tg128") or llama-cli lines
 * ("prompt", "eval"); several rows of a kind are averaged. */
static bool fn_workload_tps(const rep_run *r, const char *phase, double *v)
{
    bool prompt = !strcmp(phase, "prompt");
    double sum = 0;
    int n = 0;
    size_t i;
    json_t *x;
    json_array_foreach(path_get(r->rec, "workload.results"), i, x) {
        const char *t = json_string_value(json_object_get(x, "test"));
        if (!t || strchr(t, '+'))
            continue;
        bool is_p = !strncmp(t, "pp", 2) || !strcmp(t, "prompt");
        bool is_g = !strncmp(t, "tg", 2) || !strcmp(t, "eval");
        if ((prompt && is_p) || (!prompt && is_g)) {
            sum += json_number_value(json_object_get(x, "tokens_per_s"));
            n++;
        }
    }
    if (!n)
        return false;
    *v = sum / n;
    return true;
}

/* Phase events of the engine: detail.t_s on each "end". */
static bool fn_phase_tps(const rep_run *r, const char *phase, double *v)
{
    double sum = 0;
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r->rec, "events"), i, e) {
        const char *k = json_string_value(json_object_get(e, "kind")), *nm = json_string_value(json_object_get(e, "name"));
        json_t *d = json_object_get(e, "detail");
        if (k && nm && !strcmp(k, "phase") && !strcmp(nm, phase) && json_is_number(json_object_get(d, "t_s"))) {
            sum += json_number_value(json_object_get(d, "t_s"));
            n++;
        }
    }
    if (!n)
        return false;
    *v = sum / n;
    return true;
}

static bool fn_mem_section(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    json_t *m = json_object_get(r->rec, "memory");
    if (json_is_number(json_object_get(m, "read_Bps_mean"))) {
        *v = json_number_value(json_object_get(m, "read_Bps_mean")) +
             json_number_value(json_object_get(m, "write_Bps_mean"));
        return true;
    }
    if (json_is_number(json_object_get(m, "total_Bps_mean"))) {
        *v = json_number_value(json_object_get(m, "total_Bps_mean"));
        return true;
    }
    return false;
}

/* Read + write bandwidth from the series, inside a phase ("" = all). */
static bool fn_mem_series(const rep_run *r, const char *phase, double *v)
{
    double rd, wr;
    if (rep_metric_mean(r, "mem.read_bw", phase, true, &rd)) {
        if (!rep_metric_mean(r, "mem.write_bw", phase, true, &wr))
            wr = 0;
        *v = rd + wr;
        return true;
    }
    return rep_metric_mean(r, "mem.mbm_bw", phase, true, v);
}

/* The engine's own bytes per op over its op time: what the kernels streamed while they ran. */
static bool fn_ops_bw(const rep_run *r, const char *phase, double *v)
{
    double s = rep_ops_seconds(r, phase, NULL, REP_ANY_LAYER, NULL), b = rep_ops_bytes(r, phase, NULL, NULL);
    if (s <= 0 || b <= 0)
        return false;
    *v = b / s;
    return true;
}

static bool fn_ops_seconds(const rep_run *r, const char *phase, double *v)
{
    if (!r->nops)
        return false;
    *v = rep_ops_seconds(r, phase, NULL, REP_ANY_LAYER, NULL);
    return true;
}

/* Share of the op time spent in AMX kernels (impl or variant "amx"), in a phase. */
static bool fn_ops_amx_share(const rep_run *r, const char *phase, double *v)
{
    double all = rep_ops_seconds(r, phase, NULL, REP_ANY_LAYER, NULL);
    if (all <= 0)
        return false;
    *v = 100.0 * rep_ops_seconds(r, phase, NULL, REP_ANY_LAYER, "amx") / all;
    return true;
}

/* The ceiling that applies: the nodes the threads ran on (>= 10% of thread time) when the
 * record says, else every node. */
static double nodes_ceiling(const rep_run *r, const adg_ceilings *c)
{
    json_t *per = path_get(r->rec, "numa.per_node");
    double sum = 0, all = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        all += c->nodes[i].read_gbs;
        size_t k;
        json_t *n;
        json_array_foreach(per, k, n) {
            if (json_integer_value(json_object_get(n, "node")) == c->nodes[i].node &&
                json_number_value(json_object_get(n, "thread_time_pct")) >= 10.0)
                sum += c->nodes[i].read_gbs;
        }
    }
    return (sum > 0 ? sum : all) * 1e9;
}

static bool fn_ceiling_section(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    json_t *c = json_object_get(r->rec, "ceilings");
    if (!json_is_object(c))
        return false;
    adg_ceilings ce;
    adg_error *e = adg_ceilings_from_json(c, "ceilings section", &ce);
    if (e) {
        adg_error_free(e);
        return false;
    }
    *v = nodes_ceiling(r, &ce);
    return *v > 0;
}

/* This machine's cached ceilings, only for a record of a machine with the same key. */
static bool fn_ceiling_cache(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    if (getenv("AMXDIAG_REPORT_NO_CACHE"))
        return false;
    json_t *m = json_object_get(r->rec, "machine");
    const char *cpu = json_string_value(json_object_get(m, "cpu_model"));
    int n = (int)json_integer_value(json_object_get(m, "online_cpus"));
    if (!cpu || n <= 0)
        return false;
    char key[64];
    int here;
    adg_ceilings_key(key, sizeof key, &here);
    if (here != n)
        return false;
    adg_ceilings c;
    bool found = false;
    adg_error *e = adg_ceilings_load(cpu, n, &c, &found);
    adg_error_free(e);
    if (e || !found)
        return false;
    *v = nodes_ceiling(r, &c);
    return *v > 0;
}

static bool fn_copy(const rep_run *r, const char *arg, double *v)
{
    json_t *mc = path_get(r->rec, "gpu_kernels.memcpy");
    if (!json_is_array(mc))
        return false;
    bool setup = !strncmp(arg, "setup_", 6);
    if (setup)
        arg += 6;
    bool bytes = !strncmp(arg, "bytes", 5);
    const char *kind = strchr(arg, ':') ? strchr(arg, ':') + 1 : NULL;
    /* Copies that ended before the first kernel ran (the profiler's memcpy_before_kernels:
     * a model's weights going up once) are setup, not the computation's traffic: the
     * copy facts leave them out, the setup facts are them. */
    json_t *pre = path_get(r->rec, "gpu_kernels.memcpy_before_kernels");
    double pre_v = json_is_object(pre) ? json_number_value(json_object_get(pre, bytes ? "bytes" : "time_s")) : 0;
    if (setup) {
        if (!json_is_object(pre))
            return false;
        *v = pre_v;
        return true;
    }
    double s = kind ? 0 : -pre_v;
    size_t i;
    json_t *x;
    json_array_foreach(mc, i, x) {
        const char *k = json_string_value(json_object_get(x, "kind"));
        if (kind && (!k || strcmp(k, kind)))
            continue;
        s += json_number_value(json_object_get(x, bytes ? "bytes" : "time_s"));
    }
    *v = s > 0 ? s : 0;
    return true;
}

static bool fn_duration(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    double t = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r->rec, "events"), i, e) {
        double x = json_number_value(json_object_get(e, "t_ns")) * 1e-9;
        if (x > t)
            t = x;
    }
    if (t <= 0)
        return false;
    *v = t;
    return true;
}

static bool fn_threads(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    int t = rep_setting_threads(r);
    if (t <= 0)
        return false;
    *v = t;
    return true;
}

static bool fn_expert_bytes(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    size_t i;
    json_t *x;
    json_array_foreach(path_get(r->rec, "model.roles"), i, x) {
        const char *role = json_string_value(json_object_get(x, "role"));
        if (role && !strcmp(role, "experts")) {
            *v = json_number_value(json_object_get(x, "cpu_bytes"));
            return true;
        }
    }
    return false;
}

static bool fn_gpu_layers(const rep_run *r, const char *arg, double *v)
{
    (void)arg;
    json_t *n = path_get(r->rec, "config.ngl");
    if (json_is_integer(n)) {
        *v = (double)json_integer_value(n);
        return true;
    }
    json_t *cmd = path_get(r->rec, "workload.command");
    for (size_t i = 0; i + 1 < json_array_size(cmd); i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        int64_t x;
        if (a && (!strcmp(a, "-ngl") || !strcmp(a, "--ngl") || !strcmp(a, "--n-gpu-layers")) &&
            adg_parse_i64(json_string_value(json_array_get(cmd, i + 1)) ? json_string_value(json_array_get(cmd, i + 1)) : "",
                          &x)) {
            *v = (double)x;
            return true;
        }
    }
    return false;
}

/* ---- the table ---- */

#define SEC(p) {S_SECTION, p, NULL, "section " p}
#define MET(m) {S_METRIC, m, NULL, "metric " m}
#define MSUM(m) {S_METRIC_SUM, m, NULL, "metric " m}
#define FN(f, a, t) {S_FN, a, f, t}

static const fact facts[] = {
    {"tps.prompt", "tokens/s, prompt", "t/s", {"engine", "workload", NULL},
     {MET("engine.tokens_per_s#prompt"), FN(fn_phase_tps, "prompt", "engine phase events"),
      FN(fn_workload_tps, "prompt", "the workload's output (llama-bench / llama-cli)")}},
    {"tps.generation", "tokens/s, generation", "t/s", {"engine", "workload", NULL},
     {MET("engine.tokens_per_s#generation"), FN(fn_phase_tps, "generation", "engine phase events"),
      FN(fn_workload_tps, "generation", "the workload's output (llama-bench / llama-cli)")}},
    {"isa.amx", "CPU time in AMX functions", "%", {"isa.share.amx", "sampler", NULL},
     {SEC("isa_share.by_function.amx"), MET("isa.share.amx")}},
    {"isa.avx512", "CPU time in AVX-512 functions", "%", {"isa.share.avx512", "sampler", NULL},
     {SEC("isa_share.by_function.avx512"), MET("isa.share.avx512")}},
    {"isa.avx2", "CPU time in AVX2 functions", "%", {"isa.share.avx2", "sampler", NULL},
     {SEC("isa_share.by_function.avx2"), MET("isa.share.avx2")}},
    {"isa.sse", "CPU time in SSE functions", "%", {"isa.share.sse", "sampler", NULL},
     {SEC("isa_share.by_function.sse"), MET("isa.share.sse")}},
    {"isa.scalar", "CPU time in scalar functions", "%", {"isa.share.scalar", "sampler", NULL},
     {SEC("isa_share.by_function.scalar"), MET("isa.share.scalar")}},
    {"isa.unknown", "CPU time without symbols", "%", {"isa.share.unknown", "sampler", NULL},
     {SEC("isa_share.by_function.unknown"), MET("isa.share.unknown")}},
    {"isa.amx.prompt", "AMX share during prompt", "%", {"isa.share.amx", "sampler", NULL},
     {MET("isa.share.amx@prompt"), FN(fn_ops_amx_share, "prompt", "engine op records (AMX kernels' time)")}},
    {"isa.amx.generation", "AMX share during generation", "%", {"isa.share.amx", "sampler", NULL},
     {MET("isa.share.amx@generation"), FN(fn_ops_amx_share, "generation", "engine op records (AMX kernels' time)")}},
    {"isa.samples", "cpu-clock samples", "count", {"sampler", NULL}, {SEC("isa_share.samples")}},
    {"amx.busy", "AMX busy (EXE.AMX_BUSY / cycles)", "%", {"amx.busy", "pmu", NULL}, {MET("amx.busy")}},
    {"amx.busy.prompt", "AMX busy during prompt", "%", {"amx.busy", "pmu", NULL}, {MET("amx.busy@prompt")}},
    {"amx.busy.generation", "AMX busy during generation", "%", {"amx.busy", "pmu", NULL},
     {MET("amx.busy@generation")}},
    {"amx.ops", "AMX operations", "ops/s", {"amx.ops", "pmu", NULL}, {MET("amx.ops")}},
    {"mem.bw", "memory bandwidth (read+write)", "B/s", {"mem.read_bw", "uncore", "resctrl", "memory", NULL},
     {FN(fn_mem_section, "", "section memory"), FN(fn_mem_series, "", "metrics mem.read_bw + mem.write_bw"),
      FN(fn_ops_bw, "", "engine op records: bytes / op time (estimate)")}},
    {"mem.bw.prompt", "memory bandwidth, prompt", "B/s", {"mem.read_bw", "uncore", "resctrl", "memory", NULL},
     {FN(fn_mem_series, "prompt", "metrics mem.read_bw + mem.write_bw in prompt phases"),
      FN(fn_ops_bw, "prompt", "engine op records: bytes / op time in prompt (estimate)")}},
    {"mem.bw.generation", "memory bandwidth, generation", "B/s", {"mem.read_bw", "uncore", "resctrl", "memory", NULL},
     {FN(fn_mem_series, "generation", "metrics mem.read_bw + mem.write_bw in generation phases"),
      FN(fn_ops_bw, "generation", "engine op records: bytes / op time in generation (estimate)")}},
    {"mem.ceiling", "memory bandwidth ceiling (probe --bench)", "B/s", {"ceilings", "memory", NULL},
     {SEC("memory.ceiling_Bps"), FN(fn_ceiling_section, "", "section ceilings (probe --bench)"),
      FN(fn_ceiling_cache, "", "this machine's cached probe --bench ceilings")}},
    {"cpu.util", "workload CPU time (100% = one CPU)", "%", {"workload.cpu", "sampler", NULL}, {MET("workload.cpu")}},
    {"threads", "threads requested", "count", {NULL}, {SEC("config.threads"), FN(fn_threads, "", "the command line")}},
    {"cpus", "online CPUs", "count", {"machine", NULL}, {SEC("machine.online_cpus"), SEC("machine.logical_cpus")}},
    {"numa.nodes", "NUMA nodes", "count", {"numa", NULL}, {SEC("numa.nodes"), SEC("machine.numa_nodes")}},
    {"duration", "run time", "s", {NULL}, {SEC("workload.duration_s"), FN(fn_duration, "", "the last event")}},
    {"ops.seconds.prompt", "op time, prompt", "s", {"engine", NULL}, {FN(fn_ops_seconds, "prompt", "engine op records")}},
    {"ops.seconds.generation", "op time, generation", "s", {"engine", NULL},
     {FN(fn_ops_seconds, "generation", "engine op records")}},
    {"gpu.busy", "GPU busy", "%", {"gpu.busy", "gpu", NULL}, {MET("gpu.busy")}},
    {"gpu.kernel_time", "GPU kernel time", "s", {"gpu", NULL}, {SEC("gpu_kernels.kernel_time_s")}},
    {"gpu.copy_time", "host-device copy time (after the first kernel)", "s", {"gpu", "gpu.activity", NULL},
     {FN(fn_copy, "time", "section gpu_kernels.memcpy")}},
    {"gpu.copy_bytes", "host-device bytes copied (after the first kernel)", "B", {"gpu", "gpu.activity", NULL},
     {FN(fn_copy, "bytes", "section gpu_kernels.memcpy")}},
    {"gpu.setup_copy_time", "copy time before the first kernel (setup, e.g. weights)", "s",
     {"gpu", "gpu.activity", NULL}, {FN(fn_copy, "setup_time", "section gpu_kernels.memcpy_before_kernels")}},
    {"gpu.setup_copy_bytes", "bytes copied before the first kernel (setup)", "B", {"gpu", "gpu.activity", NULL},
     {FN(fn_copy, "setup_bytes", "section gpu_kernels.memcpy_before_kernels")}},
    {"gpu.layers", "layers offloaded (-ngl)", "count", {NULL}, {FN(fn_gpu_layers, "", "config.ngl or -ngl")}},
    {"model.bytes", "model weights", "B", {"model", NULL}, {SEC("model.totals.bytes")}},
    {"model.cpu_bytes", "weights on the CPU", "B", {"model", NULL}, {SEC("model.totals.cpu_bytes")}},
    {"model.amx_bytes", "AMX-eligible weights (llama.cpp rules)", "B", {"model", NULL},
     {SEC("model.totals.amx_llamacpp_bytes"), SEC("engine.amx_bytes")}},
    {"model.expert_bytes", "expert weights on the CPU (MUL_MAT_ID)", "B", {"model", NULL},
     {FN(fn_expert_bytes, "", "section model.roles")}},
};

size_t rep_fact_count(void)
{
    return ADG_ARRAY_LEN(facts);
}

const char *rep_fact_name(size_t i)
{
    return i < ADG_ARRAY_LEN(facts) ? facts[i].name : NULL;
}

static const fact *find(const char *name)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(facts); i++)
        if (!strcmp(facts[i].name, name))
            return &facts[i];
    return NULL;
}

const char *rep_fact_unit(const char *name)
{
    const fact *f = find(name);
    return f ? f->unit : "";
}

const char *rep_fact_label(const char *name)
{
    const fact *f = find(name);
    return f ? f->label : name;
}

const char *rep_unavailable_reason(const rep_run *r, const char *const *names)
{
    size_t i;
    json_t *u;
    for (const char *const *n = names; n && *n; n++)
        json_array_foreach(json_object_get(r->rec, "unavailable"), i, u) {
            const char *w = json_string_value(json_object_get(u, "what"));
            const char *c = json_string_value(json_object_get(u, "collector"));
            if ((w && !strcmp(w, *n)) || (c && !strcmp(c, *n)))
                return json_string_value(json_object_get(u, "reason"));
        }
    return NULL;
}

static bool metric_src(const rep_run *r, const char *where, bool sum, double *v)
{
    char m[96];
    snprintf(m, sizeof m, "%s", where);
    char *at = strchr(m, '@');
    const char *phase = "";
    if (at) {
        *at = 0;
        phase = at + 1;
    }
    return rep_metric_mean(r, m, phase, sum, v);
}

rep_val rep_fact(const rep_run *r, const char *name)
{
    rep_val out;
    memset(&out, 0, sizeof out);
    const fact *f = find(name);
    if (!f) {
        snprintf(out.why, sizeof out.why, "not measured: amxdiag knows no fact named %s", name);
        return out;
    }
    for (size_t i = 0; i < ADG_ARRAY_LEN(f->s) && f->s[i].kind != S_NONE; i++) {
        const src *s = &f->s[i];
        double v = 0;
        bool ok = false;
        switch (s->kind) {
        case S_SECTION: {
            json_t *j = path_get(r->rec, s->where);
            ok = json_is_number(j);
            v = json_number_value(j);
            break;
        }
        case S_METRIC: ok = metric_src(r, s->where, false, &v); break;
        case S_METRIC_SUM: ok = metric_src(r, s->where, true, &v); break;
        case S_FN: ok = s->fn(r, s->where, &v); break;
        case S_NONE: break;
        }
        if (ok && isfinite(v)) {
            out.ok = true;
            out.v = v;
            out.src = s->text;
            return out;
        }
    }
    size_t nl = strlen(name);
    bool phased = (nl > 7 && !strcmp(name + nl - 7, ".prompt")) || (nl > 11 && !strcmp(name + nl - 11, ".generation"));
    if (phased && !r->nwin && strncmp(name, "tps.", 4)) {
        snprintf(out.why, sizeof out.why, "not measured: the record has no prompt/generation phase markers (the "
                                          "built-in engine publishes them; an external command's phases are not "
                                          "visible to amxdiag)");
        return out;
    }
    const char *why = rep_unavailable_reason(r, f->unavail);
    if (why) {
        snprintf(out.why, sizeof out.why, "not measured: %s", why);
        return out;
    }
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_puts(&sb, "not measured: the record has none of: ");
    for (size_t i = 0; i < ADG_ARRAY_LEN(f->s) && f->s[i].kind != S_NONE; i++)
        adg_sb_printf(&sb, "%s%s", i ? ", " : "", f->s[i].text);
    snprintf(out.why, sizeof out.why, "%s", sb.buf ? sb.buf : "not measured");
    adg_sb_free(&sb);
    return out;
}

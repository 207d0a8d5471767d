/* A run record loaded for a report: the JSON, the bus rebuilt from it, the phase windows
 * and the per-op records, and the label that tells it apart from another run. */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_json.h"
#include "common/adg_record.h"
#include "common/adg_util.h"
#include "reports/rep_internal.h"

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void add_window(rep_run *r, const char *phase, double t0, double t1)
{
    rep_window *w = realloc(r->win, (r->nwin + 1) * sizeof *w);
    if (!w)
        return;
    r->win = w;
    snprintf(w[r->nwin].phase, sizeof w[r->nwin].phase, "%s", phase);
    w[r->nwin].t0 = t0;
    w[r->nwin].t1 = t1 > t0 ? t1 : t0;
    r->nwin++;
}

/* Phase events come in begin/end pairs per repetition ("phase" name prompt|generation,
 * detail.state).  An unmatched begin runs to the next phase event or the record's end. */
static void read_windows(rep_run *r)
{
    json_t *ev = json_object_get(r->rec, "events");
    size_t i;
    json_t *e;
    double open_t = -1, last_t = 0;
    char open_phase[16] = "";
    json_array_foreach(ev, i, e) {
        double t = (double)json_integer_value(json_object_get(e, "t_ns")) * 1e-9;
        if (json_is_real(json_object_get(e, "t_ns")))
            t = json_real_value(json_object_get(e, "t_ns")) * 1e-9;
        if (t > last_t)
            last_t = t;
        const char *kind = jstr(e, "kind"), *name = jstr(e, "name");
        if (!kind || strcmp(kind, "phase") || !name)
            continue;
        if (strcmp(name, "prompt") && strcmp(name, "generation")) {
            if (open_t >= 0)
                add_window(r, open_phase, open_t, t);
            open_t = -1;
            continue;
        }
        const char *state = jstr(json_object_get(e, "detail"), "state");
        if (state && !strcmp(state, "end")) {
            if (open_t >= 0 && !strcmp(open_phase, name))
                add_window(r, name, open_t, t);
            open_t = -1;
        } else {
            if (open_t >= 0)
                add_window(r, open_phase, open_t, t);
            open_t = t;
            snprintf(open_phase, sizeof open_phase, "%s", name);
        }
    }
    if (open_t >= 0)
        add_window(r, open_phase, open_t, last_t);
}

static double jnum(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static void add_op(rep_run *r, const char *name, const json_t *d)
{
    if (!name || !json_is_object(d))
        return;
    rep_op *o = realloc(r->ops, (r->nops + 1) * sizeof *o);
    if (!o)
        return;
    r->ops = o;
    rep_op *p = &o[r->nops++];
    memset(p, 0, sizeof *p);
    snprintf(p->op, sizeof p->op, "%s", name);
    snprintf(p->phase, sizeof p->phase, "%s", jstr(d, "phase") ? jstr(d, "phase") : "");
    snprintf(p->backend, sizeof p->backend, "%s", jstr(d, "backend") ? jstr(d, "backend") : "CPU");
    snprintf(p->impl, sizeof p->impl, "%s", jstr(d, "impl") ? jstr(d, "impl") : "");
    snprintf(p->variant, sizeof p->variant, "%s", jstr(d, "variant") ? jstr(d, "variant") : "");
    p->layer = json_is_integer(json_object_get(d, "layer")) ? (int)json_integer_value(json_object_get(d, "layer")) : -1;
    p->calls = jnum(d, "calls");
    p->seconds = jnum(d, "seconds");
    p->bytes = jnum(d, "bytes");
    p->flops = jnum(d, "flops");
}

/* Per-op records: the engine's "op" events, or an "ops" section of the same objects. */
static void read_ops(rep_run *r)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r->rec, "events"), i, e) {
        const char *kind = jstr(e, "kind");
        if (kind && !strcmp(kind, "op"))
            add_op(r, jstr(e, "name"), json_object_get(e, "detail"));
    }
    if (r->nops)
        return;
    json_array_foreach(json_object_get(r->rec, "ops"), i, e) add_op(r, jstr(e, "op"), e);
}

adg_error *rep_run_load(const char *path, rep_run **out)
{
    *out = NULL;
    json_t *rec;
    adg_error *e = adg_record_load(path, &rec);
    if (e) {
        /* `amxdiag run --json` (amxdiag.run-result/1) is a benchmark result, not a record */
        json_t *raw = NULL;
        adg_error *e2 = adg_json_load_file(path, "run record", &raw);
        if (!e2 && json_is_array(json_object_get(raw, "tests")) && !json_object_get(raw, "metrics"))
            adg_error_hint(e, "this is the output of `amxdiag run --json`, not a run record: record the run with "
                              "`amxdiag profile --out RUN.json [the run options]` (the built-in path, profiled "
                              "in process) and report on RUN.json");
        adg_error_free(e2);
        json_decref(raw);
        return e;
    }
    adg_bus *bus;
    if ((e = adg_bus_from_record(rec, &bus))) {
        json_decref(rec);
        return adg_error_prefix(e, "run record %s", path);
    }
    rep_run *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        adg_bus_free(bus);
        json_decref(rec);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    r->rec = rec;
    r->bus = bus;
    read_windows(r);
    read_ops(r);
    const char *base = strrchr(path, '/');
    snprintf(r->label, sizeof r->label, "%s", base ? base + 1 : path);
    char kb[32];
    if (rep_setting_cpu_kernels(r, kb, sizeof kb))
        snprintf(r->label, sizeof r->label, "cpu kernels %s", kb);
    *out = r;
    return NULL;
}

void rep_run_free(rep_run *r)
{
    if (!r)
        return;
    free(r->path);
    json_decref(r->rec);
    adg_bus_free(r->bus);
    free(r->win);
    free(r->ops);
    free(r);
}

/* ---- settings read from the config or the command line ---- */

static json_t *command(const rep_run *r)
{
    return json_object_get(json_object_get(r->rec, "workload"), "command");
}

/* The value of an option in the command ("--opt V", "--opt=V"); NULL when absent. */
static const char *opt_value(const rep_run *r, const char *const *names, char *buf, size_t len)
{
    json_t *cmd = command(r);
    for (size_t i = 0; i < json_array_size(cmd); i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        if (!a)
            continue;
        for (const char *const *n = names; *n; n++) {
            size_t l = strlen(*n);
            if (!strcmp(a, *n) && i + 1 < json_array_size(cmd) && json_string_value(json_array_get(cmd, i + 1))) {
                snprintf(buf, len, "%s", json_string_value(json_array_get(cmd, i + 1)));
                return buf;
            }
            if (!strncmp(a, *n, l) && a[l] == '=') {
                snprintf(buf, len, "%s", a + l + 1);
                return buf;
            }
        }
    }
    return NULL;
}

const char *rep_setting_cpu_kernels(const rep_run *r, char *buf, size_t len)
{
    static const char *const secs[] = {"config", "engine", "workload"}; /* workload: the built-in path */
    for (size_t i = 0; i < ADG_ARRAY_LEN(secs); i++) {
        const char *v = jstr(json_object_get(r->rec, secs[i]), "cpu_kernels");
        if (v) {
            /* the built-in path's --amx-scales row: other numbers, other speed; say so */
            const char *sc = jstr(json_object_get(r->rec, secs[i]), "amx_scales");
            snprintf(buf, len, "%s%s", v, sc && !strcmp(sc, "row") ? ", row scales" : "");
            return buf;
        }
    }
    static const char *const names[] = {"--cpu-kernels", NULL};
    if (opt_value(r, names, buf, len))
        return buf;
    json_t *cmd = command(r);
    for (size_t i = 0; i < json_array_size(cmd); i++) {
        const char *a = json_string_value(json_array_get(cmd, i));
        if (a && !strcmp(a, "--amx")) { /* ik_llama.cpp-style forks */
            snprintf(buf, len, "amx");
            return buf;
        }
    }
    return NULL;
}

int rep_setting_threads(const rep_run *r)
{
    static const char *const secs[] = {"config", "engine", "workload"}; /* workload: the built-in path */
    for (size_t i = 0; i < ADG_ARRAY_LEN(secs); i++) {
        json_t *v = json_object_get(json_object_get(r->rec, secs[i]), "threads");
        if (json_is_integer(v))
            return (int)json_integer_value(v);
    }
    static const char *const names[] = {"-t", "--threads", NULL};
    char buf[32];
    int64_t n;
    if (opt_value(r, names, buf, sizeof buf) && adg_parse_i64(buf, &n) && n > 0 && n < INT_MAX)
        return (int)n;
    return 0;
}

void rep_command_line(const rep_run *r, char *buf, size_t len)
{
    buf[0] = 0;
    json_t *cmd = command(r);
    for (size_t i = 0; i < json_array_size(cmd); i++) {
        size_t l = strlen(buf);
        const char *a = json_string_value(json_array_get(cmd, i));
        snprintf(buf + l, len - l, "%s%s", i ? " " : "", a ? a : "?");
    }
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* What differs between the two commands: the option/value pairs of one that the other
 * lacks ("--cpu-kernels avx512" vs "--cpu-kernels amx"). */
static void diff_label(const rep_run *a, const rep_run *b, char *buf, size_t len)
{
    buf[0] = 0;
    json_t *ca = command(a), *cb = command(b);
    for (size_t i = 0; i < json_array_size(ca); i++) {
        const char *x = json_string_value(json_array_get(ca, i));
        if (!x)
            continue;
        bool found = false;
        for (size_t k = 0; k < json_array_size(cb) && !found; k++) {
            const char *y = json_string_value(json_array_get(cb, k));
            found = y && !strcmp(x, y) && (i == 0 || k == 0 || x[0] == '-' ||
                                           !strcmp(nz(json_string_value(json_array_get(ca, i - 1))),
                                                   nz(json_string_value(json_array_get(cb, k - 1)))));
        }
        if (found)
            continue;
        size_t l = strlen(buf);
        const char *prev = i ? json_string_value(json_array_get(ca, i - 1)) : NULL;
        if (prev && prev[0] == '-' && x[0] != '-' && !strstr(buf, prev))
            snprintf(buf + l, len - l, "%s%s %s", l ? " " : "", prev, x);
        else
            snprintf(buf + l, len - l, "%s%s", l ? " " : "", x);
    }
}

void rep_runs_label(rep_run *base, rep_run *nw)
{
    char a[160], b[160];
    diff_label(base, nw, a, sizeof a);
    diff_label(nw, base, b, sizeof b);
    if (a[0] || b[0]) {
        snprintf(base->label, sizeof base->label, "%s", a[0] ? a : "(default)");
        snprintf(nw->label, sizeof nw->label, "%s", b[0] ? b : "(default)");
    }
    if (!strcmp(base->label, nw->label)) {
        snprintf(base->label, sizeof base->label, "base");
        snprintf(nw->label, sizeof nw->label, "new");
    }
}

/* ---- sums and means ---- */

bool rep_op_impl_match(const rep_op *o, const char *impl)
{
    if (!impl)
        return true;
    if (!strcmp(impl, "amx"))
        return strstr(o->impl, "amx") || strstr(o->variant, "amx");
    return !strcmp(o->impl, impl);
}

/* The sum of one field (offsetof into rep_op) over the op records that match. */
static double ops_sum(const rep_run *r, const char *phase, const char *op, int layer, const char *impl, size_t field)
{
    double s = 0;
    for (size_t i = 0; i < r->nops; i++) {
        const rep_op *o = &r->ops[i];
        if ((phase && *phase && strcmp(o->phase, phase)) || (op && strcmp(o->op, op)) ||
            (layer != REP_ANY_LAYER && o->layer != layer) || !rep_op_impl_match(o, impl))
            continue;
        s += *(const double *)((const char *)o + field);
    }
    return s;
}

double rep_ops_seconds(const rep_run *r, const char *phase, const char *op, int layer, const char *impl)
{
    return ops_sum(r, phase, op, layer, impl, offsetof(rep_op, seconds));
}

double rep_ops_bytes(const rep_run *r, const char *phase, const char *op, const char *impl)
{
    return ops_sum(r, phase, op, REP_ANY_LAYER, impl, offsetof(rep_op, bytes));
}

double rep_ops_calls(const rep_run *r, const char *phase, const char *op, const char *impl)
{
    return ops_sum(r, phase, op, REP_ANY_LAYER, impl, offsetof(rep_op, calls));
}

static bool in_phase(const rep_run *r, const char *phase, double t)
{
    if (!phase || !*phase)
        return true;
    for (size_t i = 0; i < r->nwin; i++)
        if (!strcmp(r->win[i].phase, phase) && t >= r->win[i].t0 && t <= r->win[i].t1)
            return true;
    return false;
}

bool rep_metric_mean(const rep_run *r, const char *metric, const char *phase, bool sum_instances, double *out)
{
    char name[96];
    snprintf(name, sizeof name, "%s", metric);
    char *hash = strchr(name, '#'); /* "metric#instance" */
    const char *want = NULL;
    if (hash) {
        *hash = 0;
        want = hash + 1;
    }
    int m = adg_bus_find(r->bus, name);
    if (m < 0)
        return false;
    char **names;
    size_t ni = adg_bus_instances(r->bus, m, &names);
    double sum = 0;
    size_t n = 0;
    double *acc = NULL, *tt = NULL;
    size_t nacc = 0;
    for (size_t i = 0; i < ni; i++) {
        if (want && (!names[i] || strcmp(names[i], want)))
            continue;
        adg_point *pts;
        size_t np = adg_bus_series_copy(r->bus, m, names[i], &pts);
        if (sum_instances) {
            if (!acc) {
                acc = calloc(np ? np : 1, sizeof *acc);
                tt = calloc(np ? np : 1, sizeof *tt);
                nacc = acc && tt ? np : 0;
                for (size_t k = 0; k < nacc; k++)
                    tt[k] = (double)pts[k].t_ns * 1e-9;
            }
            for (size_t k = 0; k < np && k < nacc; k++)
                acc[k] += pts[k].value;
        } else {
            for (size_t k = 0; k < np; k++)
                if (in_phase(r, phase, (double)pts[k].t_ns * 1e-9)) {
                    sum += pts[k].value;
                    n++;
                }
        }
        free(pts);
    }
    for (size_t k = 0; k < nacc; k++)
        if (in_phase(r, phase, tt[k])) {
            sum += acc[k];
            n++;
        }
    free(acc);
    free(tt);
    adg_bus_free_names(names, ni);
    if (!n)
        return false;
    *out = sum / (double)n;
    return true;
}

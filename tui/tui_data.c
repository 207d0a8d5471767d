/* What the panels read: metrics by name from the bus, at the instant the screen shows. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/tui_internal.h"

void tui_app_init(tui_app *a)
{
    memset(a, 0, sizeof *a);
    a->hist_span_ns = 60ull * 1000000000ull;
    a->snapshot_dir = ".";
    a->focus = TUI_P_CPU;
}

void tui_app_free(tui_app *a)
{
    json_decref(a->machine);
    json_decref(a->workload);
    json_decref(a->hot);
    json_decref(a->config);
    json_decref(a->gpus);
    json_decref(a->unavail);
    free(a->values);
    a->machine = a->workload = a->hot = a->config = a->gpus = a->unavail = NULL;
    a->values = NULL;
}

int tui_metric_id(tui_app *a, int key)
{
    if (!a->bus || key < 0 || key >= TUI_NMETRICS)
        return -1;
    return adg_bus_find(a->bus, tui_metrics[key].name);
}

const char *tui_metric_unit(tui_app *a, int key)
{
    int id = tui_metric_id(a, key);
    adg_metric_def d;
    if (id < 0 || !adg_bus_metric(a->bus, (size_t)id, &d, NULL))
        return "";
    return d.unit;
}

bool tui_value_at(tui_app *a, int key, const char *instance, double *v)
{
    int id = tui_metric_id(a, key);
    adg_point p;
    if (id < 0 || !adg_bus_latest(a->bus, id, instance, &p))
        return false;
    if (p.t_ns <= a->t_ns) {
        *v = p.value;
        return true;
    }
    /* Paused: the bus moved on; find the last point at or before the shown instant. */
    adg_point *pts;
    size_t n = adg_bus_series_copy(a->bus, id, instance, &pts);
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pts[mid].t_ns <= a->t_ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool ok = lo > 0;
    if (ok)
        *v = pts[lo - 1].value;
    free(pts);
    return ok;
}

/* "cpu2" < "cpu10": compare digit runs as numbers. */
static int natural_cmp(const void *pa, const void *pb)
{
    const char *a = *(char *const *)pa, *b = *(char *const *)pb;
    if (!a || !b)
        return !a - !b;
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);
            if (x != y)
                return x < y ? -1 : 1;
            a = ea;
            b = eb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a - (unsigned char)*b;
        a++;
        b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}

size_t tui_instances(tui_app *a, int key, char ***names)
{
    *names = NULL;
    int id = tui_metric_id(a, key);
    if (id < 0)
        return 0;
    size_t n = adg_bus_instances(a->bus, id, names);
    if (n > 1)
        qsort(*names, n, sizeof **names, natural_cmp);
    return n;
}

const char *tui_na_reason(tui_app *a, int key, char *buf, size_t len)
{
    const tui_metric_ref *m = &tui_metrics[key];
    json_t *hit = NULL, *coll_hit = NULL, *coll2_hit = NULL;
    size_t i;
    json_t *u;
    json_array_foreach(a->unavail, i, u) {
        const char *what = json_string_value(json_object_get(u, "what"));
        const char *coll = json_string_value(json_object_get(u, "collector"));
        if (what && !strcmp(what, m->name))
            hit = u;
        else if (!coll_hit && coll && !strcmp(coll, m->collector))
            coll_hit = u;
        else if (!coll2_hit && coll && m->collector2 && !strcmp(coll, m->collector2))
            coll2_hit = u;
    }
    if (!hit)
        hit = coll_hit ? coll_hit : coll2_hit;
    if (hit) {
        const char *coll = json_string_value(json_object_get(hit, "collector"));
        const char *reason = json_string_value(json_object_get(hit, "reason"));
        snprintf(buf, len, "%s: %s", coll && *coll ? coll : m->collector, reason && *reason ? reason : "unavailable");
        return buf;
    }
    if (tui_metric_id(a, key) >= 0)
        snprintf(buf, len, "no sample yet");
    else
        snprintf(buf, len, "not measured: no collector in this run publishes %s", m->name);
    return buf;
}

bool tui_history(tui_app *a, int key, const char *instance, double *out, int w, double *maxv)
{
    int id = tui_metric_id(a, key);
    if (id < 0 || w <= 0)
        return false;
    char **names = NULL;
    size_t ni = 0;
    if (instance) {
        names = malloc(sizeof *names);
        if (!names)
            return false;
        names[0] = strdup(instance);
        ni = 1;
    } else
        ni = adg_bus_instances(a->bus, id, &names);
    double *tmp = malloc((size_t)w * sizeof *tmp);
    bool any = false;
    for (int k = 0; k < w; k++)
        out[k] = NAN;
    for (size_t i = 0; tmp && i < ni; i++) {
        adg_point *pts;
        size_t n = adg_bus_series_copy(a->bus, id, names[i], &pts);
        if (!n)
            continue;
        tui_spark_resample(pts, n, a->t_ns, a->hist_span_ns, tmp, w);
        free(pts);
        for (int k = 0; k < w; k++)
            if (!isnan(tmp[k])) {
                out[k] = isnan(out[k]) ? tmp[k] : out[k] + tmp[k];
                any = true;
            }
    }
    free(tmp);
    adg_bus_free_names(names, ni);
    double mx = 0;
    for (int k = 0; k < w; k++)
        if (!isnan(out[k]) && out[k] > mx)
            mx = out[k];
    *maxv = mx;
    return any;
}

void tui_note_value(tui_app *a, int panel, int key, const char *instance, double v)
{
    if (a->nvalues == a->capvalues) {
        size_t cap = a->capvalues ? a->capvalues * 2 : 64;
        tui_value *p = realloc(a->values, cap * sizeof *p);
        if (!p)
            return;
        a->values = p;
        a->capvalues = cap;
    }
    static const char *const pname[] = {"cpu", "memory", "gpu", "history", "hot"};
    tui_value *t = &a->values[a->nvalues++];
    snprintf(t->panel, sizeof t->panel, "%s", panel >= 0 && panel < TUI_NPANELS ? pname[panel] : "header");
    snprintf(t->metric, sizeof t->metric, "%s", tui_metrics[key].name);
    snprintf(t->instance, sizeof t->instance, "%s", instance ? instance : "");
    snprintf(t->unit, sizeof t->unit, "%s", tui_metric_unit(a, key));
    t->value = v;
}

void tui_track_phase(tui_app *a)
{
    if (!a->bus)
        return;
    size_t next;
    json_t *evs = adg_bus_events_since(a->bus, a->events_seen, &next);
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        json_t *t = json_object_get(e, "t_ns");
        if (json_is_integer(t) && (uint64_t)json_integer_value(t) > a->t_ns) {
            /* Paused: leave later events for when the view catches up. */
            next = a->events_seen + i;
            break;
        }
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!kind || !name)
            continue;
        json_t *detail = json_object_get(e, "detail");
        if (!strcmp(kind, "cuda-error") || !strcmp(kind, "crash")) {
            a->gpu_errors++;
            snprintf(a->last_gpu_error, sizeof a->last_gpu_error, "%s%s", !strcmp(kind, "crash") ? "crash in " : "", name);
            continue;
        }
        if (!strcmp(kind, "warning")) {
            const char *msg = json_string_value(json_object_get(detail, "message"));
            snprintf(a->last_warning, sizeof a->last_warning, "%s", msg ? msg : name);
            continue;
        }
        if (strcmp(kind, "phase"))
            continue;
        const char *state = json_string_value(json_object_get(json_object_get(e, "detail"), "state"));
        if (!strcmp(name, "prompt") || !strcmp(name, "generation")) {
            if (state && !strcmp(state, "end"))
                a->phase[0] = 0;
            else
                snprintf(a->phase, sizeof a->phase, "%s", name);
        } else if (!strcmp(name, "end") || !strcmp(name, "interrupted"))
            snprintf(a->phase, sizeof a->phase, "%s", name);
    }
    a->events_seen = next;
    json_decref(evs);
}

/* The latest tokens/s of the engine, else of the workload's output, with its label. */
bool tui_latest_tokens(tui_app *a, char *label, size_t llen, double *v)
{
    static const int keys[] = {TUI_M_ENGINE_TPS, TUI_M_WL_TPS};
    for (size_t k = 0; k < 2; k++) {
        int id = tui_metric_id(a, keys[k]);
        if (id < 0)
            continue;
        char **names;
        size_t n = adg_bus_instances(a->bus, id, &names);
        uint64_t best_t = 0;
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            adg_point p;
            double val;
            if (!adg_bus_latest(a->bus, id, names[i], &p) || !tui_value_at(a, keys[k], names[i], &val))
                continue;
            if (p.t_ns > a->t_ns) /* paused: judge by what is visible */
                p.t_ns = a->t_ns;
            if (!found || p.t_ns >= best_t) {
                best_t = p.t_ns;
                *v = val;
                snprintf(label, llen, "%s", names[i] ? names[i] : "");
                found = true;
            }
        }
        adg_bus_free_names(names, n);
        if (found)
            return true;
    }
    return false;
}

const char *tui_fmt_rate(double bps, char *buf, size_t len)
{
    if (bps >= 1e9)
        snprintf(buf, len, "%.1f GB/s", bps / 1e9);
    else if (bps >= 1e6)
        snprintf(buf, len, "%.1f MB/s", bps / 1e6);
    else if (bps >= 1e3)
        snprintf(buf, len, "%.1f kB/s", bps / 1e3);
    else
        snprintf(buf, len, "%.0f B/s", bps);
    return buf;
}

const char *tui_fmt_ops(double ops, char *buf, size_t len)
{
    if (ops >= 1e12)
        snprintf(buf, len, "%.2f Tops/s", ops / 1e12);
    else if (ops >= 1e9)
        snprintf(buf, len, "%.2f Gops/s", ops / 1e9);
    else if (ops >= 1e6)
        snprintf(buf, len, "%.2f Mops/s", ops / 1e6);
    else
        snprintf(buf, len, "%.0f ops/s", ops);
    return buf;
}

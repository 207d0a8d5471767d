#include "common/adg_metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"

typedef struct series {
    int metric;
    char *instance;          /* NULL for single-valued */
    adg_point *pts;
    size_t n, cap;
} series;

typedef struct metric {
    char *name, *unit, *meaning, *collector;
    adg_scope scope;
} metric;

typedef struct unavail {
    char *collector, *what, *reason;
} unavail;

typedef struct listener {
    adg_bus_listener fn;
    void *ctx;
} listener;

struct adg_bus {
    pthread_mutex_t lock;
    uint64_t start_ns;
    metric *metrics;
    size_t nmetrics, capmetrics;
    series *series;
    size_t nseries, capseries;
    unavail *unavail;
    size_t nunavail, capunavail;
    json_t *events;
    listener listeners[8];
    size_t nlisteners;
    json_t *snapshots;          /* name -> {"v": version, "value": ...} */
    uint64_t snapshot_version;
};

static const char *scope_names[] = {"machine", "process", "thread", "cpu", "numa_node", "socket", "gpu", "kernel"};

const char *adg_scope_name(adg_scope s)
{
    return (unsigned)s < ADG_ARRAY_LEN(scope_names) ? scope_names[s] : "unknown";
}

bool adg_scope_parse(const char *s, adg_scope *out)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(scope_names); i++)
        if (!strcmp(s, scope_names[i])) {
            *out = (adg_scope)i;
            return true;
        }
    return false;
}

/* Grows *arr (of elem-size items) to hold at least need items. */
static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

adg_bus *adg_bus_new(void)
{
    adg_bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    b->start_ns = adg_now_ns();
    b->events = json_array();
    return b;
}

void adg_bus_free(adg_bus *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nmetrics; i++) {
        free(b->metrics[i].name);
        free(b->metrics[i].unit);
        free(b->metrics[i].meaning);
        free(b->metrics[i].collector);
    }
    for (size_t i = 0; i < b->nseries; i++) {
        free(b->series[i].instance);
        free(b->series[i].pts);
    }
    for (size_t i = 0; i < b->nunavail; i++) {
        free(b->unavail[i].collector);
        free(b->unavail[i].what);
        free(b->unavail[i].reason);
    }
    free(b->metrics);
    free(b->series);
    free(b->unavail);
    json_decref(b->events);
    json_decref(b->snapshots);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

uint64_t adg_bus_start_ns(const adg_bus *b) { return b->start_ns; }
uint64_t adg_bus_elapsed_ns(const adg_bus *b) { return adg_now_ns() - b->start_ns; }

static int find_locked(adg_bus *b, const char *name)
{
    for (size_t i = 0; i < b->nmetrics; i++)
        if (!strcmp(b->metrics[i].name, name))
            return (int)i;
    return -1;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

adg_error *adg_bus_register(adg_bus *b, const char *collector, const adg_metric_def *def, int *id)
{
    if (!def || !def->name || !*def->name)
        return adg_error_new(ADG_E_INTERNAL, "metric registered without a name by %s", collector);
    pthread_mutex_lock(&b->lock);
    int i = find_locked(b, def->name);
    if (i >= 0) {
        metric *m = &b->metrics[i];
        bool same = m->scope == def->scope && !strcmp(m->unit, def->unit ? def->unit : "");
        pthread_mutex_unlock(&b->lock);
        if (!same)
            return adg_error_new(ADG_E_INTERNAL, "metric %s registered twice with different units or scopes (%s, %s)",
                                 def->name, m->collector, collector);
        if (id)
            *id = i;
        return NULL;
    }
    if (!grow((void **)&b->metrics, &b->capmetrics, b->nmetrics + 1, sizeof *b->metrics)) {
        pthread_mutex_unlock(&b->lock);
        return adg_error_new(ADG_E_NOMEM, "out of memory registering %s", def->name);
    }
    metric *m = &b->metrics[b->nmetrics];
    m->name = dup_or_empty(def->name);
    m->unit = dup_or_empty(def->unit);
    m->meaning = dup_or_empty(def->meaning);
    m->collector = dup_or_empty(collector);
    m->scope = def->scope;
    if (id)
        *id = (int)b->nmetrics;
    b->nmetrics++;
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

int adg_bus_find(adg_bus *b, const char *name)
{
    pthread_mutex_lock(&b->lock);
    int i = find_locked(b, name);
    pthread_mutex_unlock(&b->lock);
    return i;
}

size_t adg_bus_metric_count(adg_bus *b)
{
    pthread_mutex_lock(&b->lock);
    size_t n = b->nmetrics;
    pthread_mutex_unlock(&b->lock);
    return n;
}

bool adg_bus_metric(adg_bus *b, size_t i, adg_metric_def *def, const char **collector)
{
    pthread_mutex_lock(&b->lock);
    bool ok = i < b->nmetrics;
    if (ok) {
        def->name = b->metrics[i].name;
        def->unit = b->metrics[i].unit;
        def->scope = b->metrics[i].scope;
        def->meaning = b->metrics[i].meaning;
        if (collector)
            *collector = b->metrics[i].collector;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void adg_bus_unavailable(adg_bus *b, const char *collector, const char *what, const char *reason)
{
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nunavail; i++)
        if (!strcmp(b->unavail[i].collector, collector ? collector : "") &&
            !strcmp(b->unavail[i].what, what ? what : "")) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
    if (grow((void **)&b->unavail, &b->capunavail, b->nunavail + 1, sizeof *b->unavail)) {
        unavail *u = &b->unavail[b->nunavail++];
        u->collector = dup_or_empty(collector);
        u->what = dup_or_empty(what);
        u->reason = dup_or_empty(reason);
    }
    pthread_mutex_unlock(&b->lock);
}

static bool inst_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return !strcmp(a, b);
}

static series *series_locked(adg_bus *b, int metric, const char *instance, bool create)
{
    for (size_t i = 0; i < b->nseries; i++)
        if (b->series[i].metric == metric && inst_eq(b->series[i].instance, instance))
            return &b->series[i];
    if (!create || !grow((void **)&b->series, &b->capseries, b->nseries + 1, sizeof *b->series))
        return NULL;
    series *s = &b->series[b->nseries];
    memset(s, 0, sizeof *s);
    s->metric = metric;
    s->instance = instance ? strdup(instance) : NULL;
    if (instance && !s->instance)
        return NULL;
    b->nseries++;
    return s;
}

void adg_bus_sample(adg_bus *b, int metric, const char *instance, uint64_t t_ns, double value)
{
    adg_point p = {t_ns, value};
    pthread_mutex_lock(&b->lock);
    if (metric < 0 || (size_t)metric >= b->nmetrics) {
        pthread_mutex_unlock(&b->lock);
        return;
    }
    series *s = series_locked(b, metric, instance, true);
    if (s && grow((void **)&s->pts, &s->cap, s->n + 1, sizeof *s->pts))
        s->pts[s->n++] = p;
    listener ls[ADG_ARRAY_LEN(b->listeners)];
    size_t nl = b->nlisteners;
    memcpy(ls, b->listeners, nl * sizeof *ls);
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < nl; i++)
        ls[i].fn(ls[i].ctx, metric, instance, p);
}

bool adg_bus_latest(adg_bus *b, int metric, const char *instance, adg_point *out)
{
    pthread_mutex_lock(&b->lock);
    series *s = series_locked(b, metric, instance, false);
    bool ok = s && s->n > 0;
    if (ok)
        *out = s->pts[s->n - 1];
    pthread_mutex_unlock(&b->lock);
    return ok;
}

size_t adg_bus_series_copy(adg_bus *b, int metric, const char *instance, adg_point **out)
{
    *out = NULL;
    pthread_mutex_lock(&b->lock);
    series *s = series_locked(b, metric, instance, false);
    size_t n = 0;
    if (s && s->n > 0 && (*out = malloc(s->n * sizeof **out))) {
        memcpy(*out, s->pts, s->n * sizeof **out);
        n = s->n;
    }
    pthread_mutex_unlock(&b->lock);
    return n;
}

size_t adg_bus_instances(adg_bus *b, int metric, char ***names)
{
    *names = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nseries; i++) {
        if (b->series[i].metric != metric)
            continue;
        if (!grow((void **)names, &cap, n + 1, sizeof **names))
            break;
        (*names)[n++] = b->series[i].instance ? strdup(b->series[i].instance) : NULL;
    }
    pthread_mutex_unlock(&b->lock);
    return n;
}

void adg_bus_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

void adg_bus_event(adg_bus *b, uint64_t t_ns, const char *kind, const char *name, json_t *detail)
{
    json_t *ev = json_pack("{s:I,s:s,s:s}", "t_ns", (json_int_t)t_ns, "kind", kind ? kind : "",
                           "name", name ? name : "");
    if (ev && detail)
        json_object_set(ev, "detail", detail);
    json_decref(detail);
    pthread_mutex_lock(&b->lock);
    if (ev)
        json_array_append_new(b->events, ev);
    pthread_mutex_unlock(&b->lock);
}

void adg_bus_snapshot_put(adg_bus *b, const char *name, json_t *value)
{
    if (!value)
        return;
    pthread_mutex_lock(&b->lock);
    if (!b->snapshots)
        b->snapshots = json_object();
    /* One counter for the bus: a replaced snapshot never reuses an earlier version. */
    json_t *e = json_pack("{s:I,s:o}", "v", (json_int_t)++b->snapshot_version, "value", value);
    if (b->snapshots && e)
        json_object_set_new(b->snapshots, name, e);
    else
        json_decref(e);
    pthread_mutex_unlock(&b->lock);
}

json_t *adg_bus_snapshot_get(adg_bus *b, const char *name, uint64_t *version)
{
    json_t *copy = NULL;
    pthread_mutex_lock(&b->lock);
    json_t *e = b->snapshots ? json_object_get(b->snapshots, name) : NULL;
    uint64_t v = e ? (uint64_t)json_integer_value(json_object_get(e, "v")) : 0;
    if (e && v != *version) {
        copy = json_deep_copy(json_object_get(e, "value"));
        if (copy)
            *version = v;
    }
    pthread_mutex_unlock(&b->lock);
    return copy;
}

void adg_bus_listen(adg_bus *b, adg_bus_listener fn, void *ctx)
{
    pthread_mutex_lock(&b->lock);
    if (b->nlisteners < ADG_ARRAY_LEN(b->listeners))
        b->listeners[b->nlisteners++] = (listener){fn, ctx};
    pthread_mutex_unlock(&b->lock);
}

json_t *adg_bus_metrics_json(adg_bus *b)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nmetrics; i++) {
        metric *m = &b->metrics[i];
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", m->name, "unit", m->unit,
                                             "scope", adg_scope_name(m->scope), "meaning", m->meaning,
                                             "collector", m->collector));
    }
    pthread_mutex_unlock(&b->lock);
    return arr;
}

json_t *adg_bus_series_json(adg_bus *b)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nseries; i++) {
        series *s = &b->series[i];
        json_t *t = json_array(), *v = json_array();
        for (size_t k = 0; k < s->n; k++) {
            json_array_append_new(t, json_integer((json_int_t)s->pts[k].t_ns));
            json_array_append_new(v, json_real(s->pts[k].value));
        }
        json_t *o = json_pack("{s:s,s:o,s:o}", "metric", b->metrics[s->metric].name, "t_ns", t, "value", v);
        json_object_set_new(o, "instance", s->instance ? json_string(s->instance) : json_null());
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&b->lock);
    return arr;
}

json_t *adg_bus_events_json(adg_bus *b)
{
    pthread_mutex_lock(&b->lock);
    json_t *copy = json_deep_copy(b->events);
    pthread_mutex_unlock(&b->lock);
    return copy;
}

json_t *adg_bus_events_since(adg_bus *b, size_t from, size_t *next)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&b->lock);
    size_t n = json_array_size(b->events);
    for (size_t i = from; i < n && arr; i++)
        json_array_append_new(arr, json_deep_copy(json_array_get(b->events, i)));
    pthread_mutex_unlock(&b->lock);
    if (next)
        *next = n > from ? n : from;
    return arr;
}

json_t *adg_bus_unavailable_json(adg_bus *b)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->nunavail; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s}", "collector", b->unavail[i].collector, "what",
                                             b->unavail[i].what, "reason", b->unavail[i].reason));
    pthread_mutex_unlock(&b->lock);
    return arr;
}

static adg_error *field_error(const char *where, size_t i, const char *what)
{
    return adg_error_hint(adg_error_new(ADG_E_FORMAT, "run record: %s[%zu]: %s", where, i, what),
                          "the record is corrupt or was written by an incompatible amxdiag; re-record it");
}

adg_error *adg_bus_from_record(json_t *rec, adg_bus **out)
{
    *out = NULL;
    adg_bus *b = adg_bus_new();
    if (!b)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    json_t *metrics = json_object_get(rec, "metrics");
    json_t *ser = json_object_get(rec, "series");
    json_t *evs = json_object_get(rec, "events");
    json_t *un = json_object_get(rec, "unavailable");
    adg_error *err = NULL;
    if (!json_is_array(metrics) || !json_is_array(ser)) {
        err = adg_error_new(ADG_E_FORMAT, "run record: 'metrics' and 'series' must be arrays");
        goto fail;
    }
    size_t i;
    json_t *m;
    json_array_foreach(metrics, i, m) {
        const char *name = NULL, *unit = "", *scope = "machine", *meaning = "", *coll = "";
        if (json_unpack(m, "{s:s,s?s,s?s,s?s,s?s}", "name", &name, "unit", &unit, "scope", &scope, "meaning",
                        &meaning, "collector", &coll)) {
            err = field_error("metrics", i, "needs a string 'name' and string unit/scope/meaning");
            goto fail;
        }
        adg_metric_def d = {name, unit, ADG_SCOPE_MACHINE, meaning};
        if (!adg_scope_parse(scope, &d.scope)) {
            err = field_error("metrics", i, "unknown scope");
            goto fail;
        }
        if ((err = adg_bus_register(b, coll, &d, NULL)))
            goto fail;
    }
    json_t *s;
    json_array_foreach(ser, i, s) {
        const char *mname = NULL;
        json_t *t = NULL, *v = NULL, *inst = json_object_get(s, "instance");
        if (json_unpack(s, "{s:s,s:o,s:o}", "metric", &mname, "t_ns", &t, "value", &v) || !json_is_array(t) ||
            !json_is_array(v) || json_array_size(t) != json_array_size(v) || (inst && !json_is_null(inst) && !json_is_string(inst))) {
            err = field_error("series", i, "needs 'metric', and arrays 't_ns' and 'value' of equal length");
            goto fail;
        }
        int id = adg_bus_find(b, mname);
        if (id < 0) {
            err = field_error("series", i, "names a metric that is not in 'metrics'");
            goto fail;
        }
        for (size_t k = 0; k < json_array_size(t); k++) {
            json_t *tk = json_array_get(t, k), *vk = json_array_get(v, k);
            if (!json_is_integer(tk) || json_integer_value(tk) < 0 || !json_is_number(vk)) {
                err = field_error("series", i, "time stamps must be non-negative integers and values numbers");
                goto fail;
            }
            adg_bus_sample(b, id, json_is_string(inst) ? json_string_value(inst) : NULL,
                           (uint64_t)json_integer_value(tk), json_number_value(vk));
        }
    }
    if (json_is_array(evs)) {
        json_decref(b->events);
        b->events = json_deep_copy(evs);
    }
    if (json_is_array(un)) {
        json_t *u;
        json_array_foreach(un, i, u) {
            const char *c = "", *w = "", *r = "";
            if (json_unpack(u, "{s?s,s?s,s?s}", "collector", &c, "what", &w, "reason", &r)) {
                err = field_error("unavailable", i, "fields must be strings");
                goto fail;
            }
            adg_bus_unavailable(b, c, w, r);
        }
    }
    *out = b;
    return NULL;
fail:
    adg_bus_free(b);
    return err;
}

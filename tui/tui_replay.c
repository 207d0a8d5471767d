/* Replay: a run record played back onto a bus at its recorded times (x speed), so that
 * the panels see exactly what they would have seen live. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_record.h"
#include "tui/tui_internal.h"

typedef struct rp_point {
    uint64_t t_ns;
    size_t order;          /* record order, to keep equal times stable */
    int metric;            /* id on the view bus */
    const char *instance;  /* borrowed from the record */
    double value;
} rp_point;

typedef struct rp_event {
    uint64_t t_ns;
    size_t order;
    json_t *ev;            /* borrowed */
} rp_event;

struct tui_replay {
    json_t *record;
    adg_bus *view;
    rp_point *pts;
    size_t npts, next_pt;
    rp_event *evs;
    size_t nevs, next_ev;
    uint64_t cursor, end;
    double speed;
};

static int pt_cmp(const void *a, const void *b)
{
    const rp_point *x = a, *y = b;
    if (x->t_ns != y->t_ns)
        return x->t_ns < y->t_ns ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int ev_cmp(const void *a, const void *b)
{
    const rp_event *x = a, *y = b;
    if (x->t_ns != y->t_ns)
        return x->t_ns < y->t_ns ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

uint64_t tui_replay_step(uint64_t cursor, uint64_t end, uint64_t wall_ns, double speed)
{
    if (!(speed > 0) || cursor >= end)
        return cursor >= end ? end : cursor;
    double adv = (double)wall_ns * speed;
    if (adv >= (double)(end - cursor))
        return end;
    return cursor + (uint64_t)llround(adv);
}

static adg_error *build(tui_replay *r)
{
    /* adg_bus_from_record validated the record; this walk only flattens it. */
    json_t *metrics = json_object_get(r->record, "metrics"), *series = json_object_get(r->record, "series");
    size_t i;
    json_t *m;
    json_array_foreach(metrics, i, m) {
        adg_metric_def d = {json_string_value(json_object_get(m, "name")),
                            json_string_value(json_object_get(m, "unit")), ADG_SCOPE_MACHINE,
                            json_string_value(json_object_get(m, "meaning"))};
        const char *scope = json_string_value(json_object_get(m, "scope"));
        if (scope)
            adg_scope_parse(scope, &d.scope);
        const char *coll = json_string_value(json_object_get(m, "collector"));
        adg_error *e = adg_bus_register(r->view, coll ? coll : "", &d, NULL);
        if (e)
            return e;
    }
    size_t total = 0;
    json_t *s;
    json_array_foreach(series, i, s) total += json_array_size(json_object_get(s, "t_ns"));
    r->pts = total ? calloc(total, sizeof *r->pts) : NULL;
    if (total && !r->pts)
        return adg_error_new(ADG_E_NOMEM, "out of memory for %zu samples", total);
    size_t k = 0;
    json_array_foreach(series, i, s) {
        int id = adg_bus_find(r->view, json_string_value(json_object_get(s, "metric")));
        json_t *t = json_object_get(s, "t_ns"), *v = json_object_get(s, "value");
        const char *inst = json_string_value(json_object_get(s, "instance"));
        for (size_t j = 0; j < json_array_size(t); j++) {
            rp_point *p = &r->pts[k];
            p->t_ns = (uint64_t)json_integer_value(json_array_get(t, j));
            p->value = json_number_value(json_array_get(v, j));
            p->metric = id;
            p->instance = inst;
            p->order = k++;
            if (p->t_ns > r->end)
                r->end = p->t_ns;
        }
    }
    r->npts = k;
    if (r->npts > 1)
        qsort(r->pts, r->npts, sizeof *r->pts, pt_cmp);

    json_t *evs = json_object_get(r->record, "events");
    r->evs = json_array_size(evs) ? calloc(json_array_size(evs), sizeof *r->evs) : NULL;
    if (json_array_size(evs) && !r->evs)
        return adg_error_new(ADG_E_NOMEM, "out of memory for events");
    json_t *e;
    json_array_foreach(evs, i, e) {
        json_t *t = json_object_get(e, "t_ns");
        if (!json_is_object(e) || !json_is_integer(t) || json_integer_value(t) < 0)
            return adg_error_hint(adg_error_new(ADG_E_FORMAT, "run record: events[%zu] needs a non-negative integer 't_ns'", i),
                                  "the record is corrupt or was edited; re-record it");
        r->evs[r->nevs++] = (rp_event){(uint64_t)json_integer_value(t), i, e};
        if ((uint64_t)json_integer_value(t) > r->end)
            r->end = (uint64_t)json_integer_value(t);
    }
    if (r->nevs > 1)
        qsort(r->evs, r->nevs, sizeof *r->evs, ev_cmp);

    json_t *u;
    json_array_foreach(json_object_get(r->record, "unavailable"), i, u)
        adg_bus_unavailable(r->view, json_string_value(json_object_get(u, "collector")),
                            json_string_value(json_object_get(u, "what")),
                            json_string_value(json_object_get(u, "reason")));
    return NULL;
}

adg_error *tui_replay_open(const char *path, double speed, adg_bus *view, tui_replay **out)
{
    *out = NULL;
    if (!(speed > 0) || !isfinite(speed))
        return adg_error_new(ADG_E_USAGE, "--speed must be a positive number");
    json_t *rec;
    adg_error *e = adg_record_load(path, &rec);
    if (e)
        return e;
    adg_bus *check;
    if ((e = adg_bus_from_record(rec, &check))) {
        json_decref(rec);
        return adg_error_prefix(e, "%s", path);
    }
    adg_bus_free(check);
    tui_replay *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(rec);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    r->record = rec;
    r->view = view;
    r->speed = speed;
    if ((e = build(r))) {
        tui_replay_free(r);
        return adg_error_prefix(e, "%s", path);
    }
    *out = r;
    return NULL;
}

void tui_replay_free(tui_replay *r)
{
    if (!r)
        return;
    free(r->pts);
    free(r->evs);
    json_decref(r->record);
    free(r);
}

json_t *tui_replay_record(tui_replay *r) { return r->record; }
uint64_t tui_replay_cursor(const tui_replay *r) { return r->cursor; }
uint64_t tui_replay_end(const tui_replay *r) { return r->end; }
bool tui_replay_done(const tui_replay *r) { return r->cursor >= r->end && r->next_pt >= r->npts && r->next_ev >= r->nevs; }
double tui_replay_speed(const tui_replay *r) { return r->speed; }
void tui_replay_set_speed(tui_replay *r, double speed)
{
    if (speed > 0 && isfinite(speed))
        r->speed = speed;
}

uint64_t tui_replay_advance(tui_replay *r, uint64_t wall_ns)
{
    r->cursor = tui_replay_step(r->cursor, r->end, wall_ns, r->speed);
    while (r->next_pt < r->npts && r->pts[r->next_pt].t_ns <= r->cursor) {
        rp_point *p = &r->pts[r->next_pt++];
        adg_bus_sample(r->view, p->metric, p->instance, p->t_ns, p->value);
    }
    while (r->next_ev < r->nevs && r->evs[r->next_ev].t_ns <= r->cursor) {
        json_t *ev = r->evs[r->next_ev++].ev;
        json_t *detail = json_object_get(ev, "detail");
        adg_bus_event(r->view, r->evs[r->next_ev - 1].t_ns, json_string_value(json_object_get(ev, "kind")),
                      json_string_value(json_object_get(ev, "name")), detail ? json_deep_copy(detail) : NULL);
    }
    return r->cursor;
}

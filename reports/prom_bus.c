/* Renders the metrics bus in the Prometheus text format (see prom_bus.h). */
#include "reports/prom_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_prom.h"

static const struct {
    adg_scope scope;
    const char *label;
    const char *prefix;     /* the collectors' instance spelling: "cpu3", "node0", ... */
} scope_labels[] = {
    {ADG_SCOPE_MACHINE, "series", NULL}, {ADG_SCOPE_PROCESS, "series", NULL},
    {ADG_SCOPE_THREAD, "thread", "tid"}, {ADG_SCOPE_CPU, "cpu", "cpu"},
    {ADG_SCOPE_NUMA_NODE, "node", "node"}, {ADG_SCOPE_SOCKET, "socket", "socket"},
    {ADG_SCOPE_GPU, "gpu", "gpu"},       {ADG_SCOPE_KERNEL, "kernel", NULL},
};

const char *rep_prom_scope_label(adg_scope scope)
{
    for (size_t i = 0; i < ADG_ARRAY_LEN(scope_labels); i++)
        if (scope_labels[i].scope == scope)
            return scope_labels[i].label;
    return "series";
}

const char *rep_prom_instance_value(adg_scope scope, const char *instance, char *buf, size_t len)
{
    const char *prefix = NULL;
    for (size_t i = 0; i < ADG_ARRAY_LEN(scope_labels); i++)
        if (scope_labels[i].scope == scope)
            prefix = scope_labels[i].prefix;
    const char *v = instance;
    if (prefix && !strncmp(instance, prefix, strlen(prefix))) {
        const char *d = instance + strlen(prefix);
        bool digits = *d != 0;
        for (const char *p = d; *p; p++)
            digits = digits && *p >= '0' && *p <= '9';
        if (digits)
            v = d;
    }
    snprintf(buf, len, "%s", v);
    return buf;
}

static void help_text(adg_strbuf *h, const adg_metric_def *d, const char *collector)
{
    const char *suffix;
    double scale;
    bool known = adg_prom_unit(d->unit, &suffix, &scale);
    adg_sb_puts(h, d->meaning && *d->meaning ? d->meaning : d->name);
    adg_sb_printf(h, " [bus metric %s", d->name);
    if (!strcmp(d->unit ? d->unit : "", "%"))
        adg_sb_puts(h, ", unit % reported as a ratio (1 = 100%)");
    else if (!known && d->unit && *d->unit)
        adg_sb_printf(h, ", unit %s", d->unit);
    if (collector)
        adg_sb_printf(h, ", collector %s", collector);
    adg_sb_puts(h, "]");
}

/* One family; false when it had no sample (then nothing was appended). */
static bool family(adg_bus *bus, int id, const adg_metric_def *d, const char *collector, const char *name,
                   adg_strbuf *out)
{
    char **inst = NULL;
    size_t n = adg_bus_instances(bus, id, &inst);
    const char *suffix;
    double scale;
    adg_prom_unit(d->unit, &suffix, &scale);
    adg_strbuf body;
    adg_sb_init(&body);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        adg_point p;
        if (!adg_bus_latest(bus, id, inst[i], &p))
            continue;
        char val[256];
        adg_prom_label l = {rep_prom_scope_label(d->scope),
                            inst[i] ? rep_prom_instance_value(d->scope, inst[i], val, sizeof val) : NULL};
        adg_prom_sample(&body, name, &l, 1, adg_prom_scale(p.value, scale));
        any = true;
    }
    adg_bus_free_names(inst, n);
    if (any) {
        adg_strbuf h;
        adg_sb_init(&h);
        help_text(&h, d, collector);
        adg_prom_family(out, name, "gauge", h.buf);
        adg_sb_free(&h);
        adg_sb_append(out, body.buf, body.len);
    }
    adg_sb_free(&body);
    return any;
}

static void unavailable(adg_bus *bus, adg_strbuf *out)
{
    json_t *u = adg_bus_unavailable_json(bus);
    if (json_array_size(u)) {
        adg_prom_family(out, "amxdiag_unavailable_info", "gauge",
                        "A collector or metric that cannot be measured here, and why; always 1");
        size_t i;
        json_t *e;
        /* The same (collector, what) said twice would be a duplicate series: the first wins. */
        json_array_foreach(u, i, e)
        {
            const char *c = json_string_value(json_object_get(e, "collector"));
            const char *w = json_string_value(json_object_get(e, "what"));
            bool seen = false;
            for (size_t k = 0; k < i && !seen; k++) {
                json_t *o = json_array_get(u, k);
                const char *oc = json_string_value(json_object_get(o, "collector"));
                const char *ow = json_string_value(json_object_get(o, "what"));
                seen = !strcmp(c ? c : "", oc ? oc : "") && !strcmp(w ? w : "", ow ? ow : "");
            }
            if (seen)
                continue;
            adg_prom_label l[] = {{"collector", c}, {"what", w},
                                  {"reason", json_string_value(json_object_get(e, "reason"))}};
            adg_prom_sample(out, "amxdiag_unavailable_info", l, ADG_ARRAY_LEN(l), 1);
        }
    }
    json_decref(u);
}

void rep_prom_bus(adg_bus *bus, adg_strbuf *out)
{
    size_t n = adg_bus_metric_count(bus);
    char (*names)[ADG_PROM_NAME_MAX] = calloc(n ? n : 1, sizeof *names);
    if (!names) {
        out->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        adg_metric_def d;
        const char *collector = NULL;
        if (!adg_bus_metric(bus, i, &d, &collector))
            continue;
        adg_prom_metric_name(d.name, d.unit, names[i], sizeof names[i]);
        /* Two bus names that sanitise alike ("a.b", "a_b") would make one family twice,
         * which Prometheus rejects whole: the first registered keeps the name. */
        bool clash = false;
        for (size_t k = 0; k < i && !clash; k++)
            clash = !strcmp(names[k], names[i]);
        if (clash) {
            adg_sb_puts(out, "# amxdiag: bus metric ");
            adg_prom_escape_help(out, d.name);
            adg_sb_printf(out, " left out: its name %s is taken\n", names[i]);
            names[i][0] = 0;
            continue;
        }
        family(bus, (int)i, &d, collector, names[i], out);
    }
    free(names);
    unavailable(bus, out);
}

/* 's': the current view as Markdown (for a bug report) and JSON (for scripts and tests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_json.h"
#include "common/adg_util.h"
#include "tui/tui_internal.h"

static const char *const panel_names[] = {"cpu", "memory", "gpu", "history", "hot"};

json_t *tui_snapshot_json(tui_app *a, const tui_canvas *c)
{
    char created[32];
    adg_utc_iso8601(created, sizeof created);
    json_t *values = json_array(), *screen = json_array();
    for (size_t i = 0; i < a->nvalues; i++) {
        tui_value *v = &a->values[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:f}", "panel", v->panel, "metric", v->metric, "unit", v->unit, "value",
                              v->value);
        json_object_set_new(o, "instance", v->instance[0] ? json_string(v->instance) : json_null());
        json_array_append_new(values, o);
    }
    size_t len = (size_t)c->w * 4 + 1;
    char *row = malloc(len);
    for (int y = 0; row && y < c->h; y++) {
        tui_canvas_row(c, y, row, len);
        json_array_append_new(screen, json_string(row));
    }
    free(row);
    json_t *root = json_pack("{s:s,s:s,s:s,s:b,s:f,s:b,s:s,s:s,s:{s:i,s:i}}", "schema", TUI_SNAPSHOT_SCHEMA,
                             "created", created, "source", a->source, "live", a->live, "t_s", (double)a->t_ns * 1e-9,
                             "paused", a->paused, "phase", a->phase, "focus", panel_names[a->focus], "size", "columns",
                             c->w, "rows", c->h);
    if (!root) {
        json_decref(values);
        json_decref(screen);
        return NULL;
    }
    json_object_set_new(root, "values", values);
    json_object_set_new(root, "unavailable", a->unavail ? json_deep_copy(a->unavail) : json_array());
    json_object_set_new(root, "hot_functions", a->hot ? json_deep_copy(a->hot) : json_null());
    json_object_set_new(root, "crash_confirmation",
                        a->confirm_summary[0] ? json_pack("{s:s,s:s,s:s}", "state", a->confirming ? "running" : "done",
                                                          "note", a->confirm_note, "summary", a->confirm_summary)
                                              : json_null());
    json_object_set_new(root, "screen", screen);
    return root;
}

static char *markdown(tui_app *a, const tui_canvas *c, json_t *snap)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_printf(&sb, "# amxdiag top snapshot\n\n- source: %s\n- created: %s\n- run time shown: %.1f s%s\n",
                  a->source, json_string_value(json_object_get(snap, "created")), (double)a->t_ns * 1e-9,
                  a->paused ? " (paused)" : "");
    if (a->phase[0])
        adg_sb_printf(&sb, "- phase: %s\n", a->phase);
    char *text = tui_canvas_text(c);
    adg_sb_printf(&sb, "\n## Screen\n\n```\n%s```\n", text ? text : "");
    free(text);
    adg_sb_puts(&sb, "\n## Values\n\n| panel | metric | instance | value | unit |\n|---|---|---|---:|---|\n");
    for (size_t i = 0; i < a->nvalues; i++) {
        tui_value *v = &a->values[i];
        adg_sb_printf(&sb, "| %s | %s | %s | %.6g | %s |\n", v->panel, v->metric, v->instance[0] ? v->instance : "-",
                      v->value, v->unit);
    }
    if (json_array_size(a->unavail)) {
        adg_sb_puts(&sb, "\n## Not measured here\n\n");
        size_t i;
        json_t *u;
        json_array_foreach(a->unavail, i, u)
            adg_sb_printf(&sb, "- %s / %s: %s\n", json_string_value(json_object_get(u, "collector")),
                          json_string_value(json_object_get(u, "what")), json_string_value(json_object_get(u, "reason")));
    }
    if (sb.failed) {
        adg_sb_free(&sb);
        return NULL;
    }
    return adg_sb_take(&sb);
}

adg_error *tui_snapshot_write(tui_app *a, const tui_canvas *c, const char *dir, char **md_path)
{
    *md_path = NULL;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    char base[4096], md[4200], js[4200];
    /* Two snapshots in one second get -2, -3, ...: never overwrite an earlier one. */
    for (int n = 1; n < 1000; n++) {
        if (n == 1)
            snprintf(base, sizeof base, "%s/amxdiag-top-%s", dir, stamp);
        else
            snprintf(base, sizeof base, "%s/amxdiag-top-%s-%d", dir, stamp, n);
        snprintf(md, sizeof md, "%s.md", base);
        snprintf(js, sizeof js, "%s.json", base);
        if (access(md, F_OK) != 0 && access(js, F_OK) != 0)
            break;
    }
    json_t *snap = tui_snapshot_json(a, c);
    if (!snap)
        return adg_error_new(ADG_E_NOMEM, "out of memory building the snapshot");
    char *text = markdown(a, c, snap);
    adg_error *e = text ? adg_write_file_atomic(md, text, strlen(text))
                        : adg_error_new(ADG_E_NOMEM, "out of memory building the snapshot");
    free(text);
    if (!e)
        e = adg_json_write_atomic(js, snap);
    json_decref(snap);
    if (e)
        return adg_error_hint(adg_error_prefix(e, "snapshot"), "choose a writable directory with --snapshot-dir");
    *md_path = strdup(md);
    return NULL;
}

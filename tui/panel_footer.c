/* The footer (keys, or the last message) and the help overlay, which lists the keys and
 * every metric of the registry with its unit and meaning, then what is unavailable. */
#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

void tui_panel_footer(tui_app *a, tui_canvas *c, tui_rect r)
{
    tui_fill(c, r, ' ', TUI_S_NORMAL);
    if (a->status[0] && adg_now_ns() < a->status_until) {
        tui_put(c, r.x, r.y, r.w, TUI_S_BOLD, a->status);
        return;
    }
    static const char *const keys[][2] = {
        {"q", "quit"}, {"p", "pause"}, {"Tab", "panel"}, {"<>", "sort"}, {"r", "reverse"},
        {"s", "snapshot"}, {"h", "help"}, {"+-", "speed"},
    };
    int x = r.x;
    if (a->finish_note[0])
        x += tui_printf(c, x, r.y, r.w, a->failed ? TUI_S_BAD : TUI_S_GOOD, "%s  ", a->finish_note);
    size_t nk = a->replay ? ADG_ARRAY_LEN(keys) : ADG_ARRAY_LEN(keys) - 1;
    for (size_t i = 0; i < nk && x < r.x + r.w; i++) {
        x += tui_put(c, x, r.y, r.x + r.w - x, TUI_S_KEY, keys[i][0]);
        x += tui_printf(c, x, r.y, r.x + r.w - x, TUI_S_NORMAL, " %s  ", keys[i][1]);
    }
}

void tui_panel_help(tui_app *a, tui_canvas *c)
{
    int w = c->w - 8 < 100 ? c->w - 8 : 100, h = c->h - 4;
    if (w < 20 || h < 6)
        return;
    tui_rect r = {(c->w - w) / 2, 2, w, h};
    tui_fill(c, r, ' ', TUI_S_NORMAL);
    tui_box(c, r, "Help (h or Esc closes)", true);
    tui_rect in = tui_inner(r);
    static const char *const keys[] = {
        "q / F10      quit (live: stops the workload; the run record is written)",
        "p / space    pause / resume the view (collection goes on)",
        "Tab / arrows move between panels; PgUp/PgDn/j/k scroll the focused table",
        "< > / F6     sort column of the focused table; r reverses",
        "s            write a snapshot of this view (Markdown + JSON)",
        "+ / -        replay speed; [ / ] history window",
    };
    int y = in.y;
    for (size_t i = 0; i < ADG_ARRAY_LEN(keys) && y < in.y + in.h; i++)
        tui_put(c, in.x, y++, in.w, TUI_S_KEY, keys[i]);
    if (y < in.y + in.h)
        tui_put(c, in.x, ++y, in.w, TUI_S_TITLE, "metrics of this run (name, unit, scope, collector: meaning)");
    y++;
    size_t n = a->bus ? adg_bus_metric_count(a->bus) : 0;
    for (size_t i = 0; i < n && y < in.y + in.h; i++) {
        adg_metric_def d;
        const char *coll;
        if (!adg_bus_metric(a->bus, i, &d, &coll))
            break;
        tui_printf(c, in.x, y++, in.w, TUI_S_NORMAL, "%-22s %-6s %-9s %s: %s", d.name, d.unit, adg_scope_name(d.scope),
                   coll, d.meaning);
    }
    if (y < in.y + in.h && json_array_size(a->unavail))
        tui_put(c, in.x, ++y, in.w, TUI_S_TITLE, "not measured here");
    y++;
    size_t i;
    json_t *u;
    json_array_foreach(a->unavail, i, u) {
        if (y >= in.y + in.h)
            break;
        tui_printf(c, in.x, y++, in.w, TUI_S_NA, "%s / %s: %s", json_string_value(json_object_get(u, "collector")),
                   json_string_value(json_object_get(u, "what")), json_string_value(json_object_get(u, "reason")));
    }
}

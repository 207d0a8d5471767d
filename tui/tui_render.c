/* One frame: layout, then every panel into the canvas. */
#include <stdio.h>

#include "tui/tui_internal.h"

void tui_render(tui_app *a, tui_canvas *c)
{
    tui_canvas_clear(c);
    a->nvalues = 0;
    json_decref(a->unavail);
    a->unavail = a->bus ? adg_bus_unavailable_json(a->bus) : json_array();
    tui_track_phase(a);
    tui_layout l;
    tui_layout_compute(c->w, c->h, tui_cpu_rows_wanted(a), &l);
    if (l.too_small) {
        tui_printf(c, 0, 0, c->w, TUI_S_WARN, "terminal too small: %dx%d", c->w, c->h);
        tui_printf(c, 0, 1, c->w, TUI_S_NORMAL, "need %dx%d (80x24 shows everything)", TUI_MIN_W, TUI_MIN_H);
        tui_put(c, 0, 2, c->w, TUI_S_DIM, "q quits");
        return;
    }
    tui_panel_header(a, c, l.header);
    tui_panel_cpu(a, c, l.panel[TUI_P_CPU], a->focus == TUI_P_CPU);
    tui_panel_mem(a, c, l.panel[TUI_P_MEM], a->focus == TUI_P_MEM);
    tui_panel_gpu(a, c, l.panel[TUI_P_GPU], a->focus == TUI_P_GPU);
    tui_panel_hist(a, c, l.panel[TUI_P_HIST], a->focus == TUI_P_HIST);
    tui_panel_hot(a, c, l.panel[TUI_P_HOT], a->focus == TUI_P_HOT);
    tui_panel_footer(a, c, l.footer);
    if (a->help)
        tui_panel_help(a, c);
}

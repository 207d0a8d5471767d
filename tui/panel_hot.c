/* Hot functions with their ISA class (the record's hot_functions section: the sampler
 * computes it when the run ends, so a live run shows it once the workload is done). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/tui_internal.h"

static const tui_column hcols[] = {
    {"share", 6, true},
    {"samples", 8, true},
    {"class", 7, false},
    {"function", 0, false},
    {"module", 22, false},
};

int tui_panel_sort_columns(int panel)
{
    if (panel == TUI_P_HOT)
        return (int)(sizeof hcols / sizeof hcols[0]);
    if (panel == TUI_P_GPU)
        return 3;
    return 0;
}

static int class_style(const char *cls)
{
    if (!strcmp(cls, "amx"))
        return TUI_S_AMX;
    if (!strcmp(cls, "avx512"))
        return TUI_S_AVX512;
    if (!strcmp(cls, "unknown"))
        return TUI_S_DIM;
    return TUI_S_NORMAL;
}

void tui_panel_hot(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    tui_box(c, r, "Hot functions", focused);
    tui_rect in = tui_inner(r);
    if (in.h <= 0)
        return;
    size_t n = json_array_size(a->hot);
    if (!n) {
        char why[384];
        if (a->live && !a->finished)
            tui_put(c, in.x, in.y, in.w, TUI_S_NA,
                    "no function sampled yet (the list is refreshed every second while the run goes on)");
        else if (json_is_array(a->hot))
            tui_put(c, in.x, in.y, in.w, TUI_S_NA, "no function was sampled");
        else
            tui_printf(c, in.x, in.y, in.w, TUI_S_NA, "n/a - the record has no hot_functions section (%s)",
                       tui_na_reason(a, TUI_M_ISA_AMX, why, sizeof why));
        return;
    }
    tui_row *rows = calloc(n, sizeof *rows);
    if (!rows)
        return;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(a->hot, i);
        const char *fn = json_string_value(json_object_get(f, "function"));
        const char *mod = json_string_value(json_object_get(f, "module"));
        const char *cls = json_string_value(json_object_get(f, "class"));
        json_t *sh = json_object_get(f, "share"), *sm = json_object_get(f, "samples");
        if (!fn)
            continue;
        tui_row *row = &rows[nr++];
        row->key[0] = json_number_value(sh);
        row->key[1] = json_number_value(sm);
        snprintf(row->cell[0], sizeof row->cell[0], "%.1f%%", row->key[0]);
        snprintf(row->cell[1], sizeof row->cell[1], "%.0f", row->key[1]);
        snprintf(row->cell[2], sizeof row->cell[2], "%s", cls ? cls : "?");
        snprintf(row->cell[3], sizeof row->cell[3], "%s", fn);
        const char *base = mod ? strrchr(mod, '/') : NULL;
        snprintf(row->cell[4], sizeof row->cell[4], "%s", base ? base + 1 : mod ? mod : "");
        row->style = class_style(row->cell[2]);
    }
    tui_table t = {hcols, 5, rows, nr, a->sort[TUI_P_HOT], a->reverse[TUI_P_HOT], 0};
    tui_table_sort(&t);
    if ((size_t)a->scroll[TUI_P_HOT] >= nr)
        a->scroll[TUI_P_HOT] = nr ? (int)nr - 1 : 0;
    t.scroll = a->scroll[TUI_P_HOT];
    tui_table_draw(c, in, &t, focused);
    free(rows);
}

/* History: sparklines of the main metrics over the last minute (record time). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

typedef struct line {
    const char *label;
    int key;
    double fixed_max;  /* > 0: the scale (percentages); 0: the window's maximum */
} line;

static const line lines[] = {
    {"tokens/s", TUI_M_ENGINE_TPS, 0},  {"tokens/s", TUI_M_WL_TPS, 0},   {"AMX %", TUI_M_ISA_AMX, 100},
    {"AVX-512 %", TUI_M_ISA_AVX512, 100}, {"workload", TUI_M_WL_CPU, 0},  {"DRAM read", TUI_M_MEM_RD, 0},
    {"MBM", TUI_M_MEM_MBM, 0},         {"GPU util", TUI_M_GPU_UTIL, 100}, {"GPU busy", TUI_M_GPU_BUSY, 100},
    {"GPU mem", TUI_M_GPU_MEM, 0},     {"AMX busy", TUI_M_AMX_BUSY, 100},
};

static void fmt(tui_app *a, int key, double v, char *buf, size_t len)
{
    const char *unit = tui_metric_unit(a, key);
    if (!strcmp(unit, "B/s"))
        tui_fmt_rate(v, buf, len);
    else if (!strcmp(unit, "B"))
        adg_fmt_bytes(v, buf, len);
    else if (!strcmp(unit, "%"))
        snprintf(buf, len, "%.0f%%", v);
    else
        snprintf(buf, len, "%.1f %s", v, unit);
}

void tui_panel_hist(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    char title[64];
    snprintf(title, sizeof title, "History (last %.0f s)", (double)a->hist_span_ns * 1e-9);
    tui_box(c, r, title, focused);
    tui_rect in = tui_inner(r);
    int lw = 10, vw = 11, sw = in.w - lw - vw;
    if (in.h <= 0 || sw < 4)
        return;
    double *buf = malloc((size_t)sw * sizeof *buf);
    if (!buf)
        return;
    int y = in.y;
    bool tps_shown = false;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0] && y < in.y + in.h; i++) {
        const line *l = &lines[i];
        bool is_tps = l->key == TUI_M_ENGINE_TPS || l->key == TUI_M_WL_TPS;
        if (is_tps && tps_shown)
            continue;
        double mx = 0;
        bool any = tui_history(a, l->key, NULL, buf, sw, &mx);
        /* The second tokens/s source and optional metrics only take a line when they
         * have data; the others say why they are missing. */
        if (!any && (l->key == TUI_M_ENGINE_TPS || l->key == TUI_M_MEM_MBM || l->key == TUI_M_AMX_BUSY ||
                     l->key == TUI_M_GPU_UTIL || l->key == TUI_M_GPU_MEM))
            continue;
        /* NVML's utilisation stands in for the trace's busy when only it runs. */
        if (!any && l->key == TUI_M_GPU_BUSY && tui_metric_id(a, TUI_M_GPU_UTIL) >= 0)
            continue;
        if (is_tps)
            tps_shown = true;
        tui_put(c, in.x, y, lw, TUI_S_NORMAL, l->label);
        if (!any) {
            char why[384];
            tui_printf(c, in.x + lw, y, in.w - lw, TUI_S_NA, "n/a - %s", tui_na_reason(a, l->key, why, sizeof why));
            y++;
            continue;
        }
        /* The number is the latest value (summed over instances), the line its history. */
        double last = 0;
        char **names;
        size_t n = tui_instances(a, l->key, &names);
        for (size_t k = 0; k < n; k++) {
            double v;
            if (tui_value_at(a, l->key, names[k], &v))
                last += v;
        }
        adg_bus_free_names(names, n);
        char tl[64];
        if (is_tps) /* tests (pp512, tg64) follow each other: the latest, not a sum */
            tui_latest_tokens(a, tl, sizeof tl, &last);
        char v[32];
        fmt(a, l->key, last, v, sizeof v);
        tui_printf(c, in.x + lw, y, vw, TUI_S_BOLD, "%10s ", v);
        tui_spark(c, in.x + lw + vw, y, sw, buf, 0, l->fixed_max > 0 ? l->fixed_max : mx, TUI_S_SPARK);
        y++;
    }
    free(buf);
}

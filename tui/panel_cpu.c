/* CPU: the AMX / AVX-512 / other share of the workload's CPU time (with its source),
 * AMX busy from the PMU, the workload's CPU use, and per-core bars packed in columns
 * (groups of cores when a large machine would not fit, like htop's CPU meters). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

#define FIXED_LINES 4

int tui_cpu_rows_wanted(tui_app *a)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_CPU_UTIL, &names);
    adg_bus_free_names(names, n);
    return FIXED_LINES + (n ? (int)((n + 1) / 2) : 1);
}

static double val(tui_app *a, int key, bool *ok)
{
    double v = 0;
    *ok = tui_value_at(a, key, NULL, &v);
    if (*ok)
        tui_note_value(a, TUI_P_CPU, key, NULL, v);
    return v;
}

static void na_line(tui_app *a, tui_canvas *c, int x, int y, int w, const char *label, int key)
{
    char why[384];
    int k = tui_printf(c, x, y, w, TUI_S_NORMAL, "%s ", label);
    tui_printf(c, x + k, y, w - k, TUI_S_NA, "n/a - %s", tui_na_reason(a, key, why, sizeof why));
}

static void isa_lines(tui_app *a, tui_canvas *c, tui_rect in, int *y)
{
    bool ok_amx, ok_512, ok;
    double amx = val(a, TUI_M_ISA_AMX, &ok_amx), v512 = val(a, TUI_M_ISA_AVX512, &ok_512), other = 0;
    static const int others[] = {TUI_M_ISA_AVX2, TUI_M_ISA_SSE, TUI_M_ISA_SCALAR, TUI_M_ISA_UNKNOWN};
    for (size_t i = 0; i < ADG_ARRAY_LEN(others); i++) {
        double v = val(a, others[i], &ok);
        if (ok)
            other += v;
    }
    if (!ok_amx && !ok_512) {
        na_line(a, c, in.x, (*y)++, in.w, "ISA share", TUI_M_ISA_AMX);
        (*y)++;
        return;
    }
    int lw = 10;
    tui_put(c, in.x, *y, lw, TUI_S_NORMAL, "ISA share");
    tui_segment seg[] = {{amx, TUI_S_AMX}, {v512, TUI_S_AVX512}, {other, TUI_S_OTHER}};
    tui_bar(c, in.x + lw, *y, in.w - lw, seg, 3, 100.0);
    (*y)++;
    int x = in.x;
    static const char *const names[] = {"AMX", "AVX-512", "other"};
    double vals[] = {amx, v512, other};
    for (size_t i = 0; i < 3; i++) {
        if (x < in.x + in.w)
            c->cells[*y * c->w + x] = (tui_cell){tui_seg_glyph(c, i), (uint8_t)seg[i].style};
        x++;
        x += tui_printf(c, x, *y, in.x + in.w - x, seg[i].style, "%s %.0f%% ", names[i], vals[i]);
    }
    tui_put(c, x, *y, in.x + in.w - x, TUI_S_DIM, "(sampling)");
    (*y)++;
}

static void amx_busy_line(tui_app *a, tui_canvas *c, tui_rect in, int y)
{
    bool ok, ok_ops;
    double busy = val(a, TUI_M_AMX_BUSY, &ok), ops = val(a, TUI_M_AMX_OPS, &ok_ops);
    if (!ok) {
        na_line(a, c, in.x, y, in.w, "AMX busy (PMU)", TUI_M_AMX_BUSY);
        return;
    }
    char o[32] = "";
    if (ok_ops)
        tui_fmt_ops(ops, o, sizeof o);
    int lw = 10;
    tui_put(c, in.x, y, lw, TUI_S_NORMAL, "AMX busy");
    int bw = in.w - lw - 22;
    tui_segment seg = {busy, TUI_S_AMX};
    if (bw > 4)
        tui_bar(c, in.x + lw, y, bw, &seg, 1, 100.0);
    tui_printf(c, in.x + lw + (bw > 4 ? bw : 0), y, 22, TUI_S_NORMAL, " %5.1f%% %s", busy, o);
}

static void workload_line(tui_app *a, tui_canvas *c, tui_rect in, int y, int ncpu)
{
    bool ok;
    double v = val(a, TUI_M_WL_CPU, &ok);
    if (!ok) {
        na_line(a, c, in.x, y, in.w, "workload", TUI_M_WL_CPU);
        return;
    }
    int lw = 10;
    tui_put(c, in.x, y, lw, TUI_S_NORMAL, "workload");
    int bw = in.w - lw - 16;
    tui_segment seg = {v, TUI_S_BAR};
    if (bw > 4)
        tui_bar(c, in.x + lw, y, bw, &seg, 1, 100.0 * (ncpu > 0 ? ncpu : 1));
    tui_printf(c, in.x + lw + (bw > 4 ? bw : 0), y, 16, TUI_S_NORMAL, " %5.0f%% %.1f cpu", v, v / 100.0);
}

static void core_bars(tui_app *a, tui_canvas *c, tui_rect in, int y)
{
    int rows = in.y + in.h - y;
    if (rows <= 0)
        return;
    char **names;
    size_t n = tui_instances(a, TUI_M_CPU_UTIL, &names);
    if (!n) {
        na_line(a, c, in.x, y, in.w, "per-CPU", TUI_M_CPU_UTIL);
        return;
    }
    /* Columns of at least 16 cells; cores grouped (mean) when they still do not fit. */
    int cols = in.w / 16 < 1 ? 1 : in.w / 16;
    size_t slots = (size_t)rows * (size_t)cols;
    size_t group = (n + slots - 1) / slots;
    size_t nbars = (n + group - 1) / group;
    int used_cols = (int)((nbars + (size_t)rows - 1) / (size_t)rows);
    if (used_cols < 1)
        used_cols = 1;
    int cw = in.w / used_cols;
    for (size_t b = 0; b < nbars; b++) {
        double sum = 0;
        int cnt = 0;
        for (size_t i = b * group; i < n && i < (b + 1) * group; i++) {
            double v;
            if (tui_value_at(a, TUI_M_CPU_UTIL, names[i], &v)) {
                sum += v;
                cnt++;
                tui_note_value(a, TUI_P_CPU, TUI_M_CPU_UTIL, names[i], v);
            }
        }
        char label[32];
        const char *first = names[b * group] ? names[b * group] : "?";
        size_t members = (b + 1) * group < n ? group : n - b * group;
        if (members > 1) {
            size_t last = (b + 1) * group - 1 < n - 1 ? (b + 1) * group - 1 : n - 1;
            const char *l = names[last] ? names[last] : "?";
            const char *num = l + strcspn(l, "0123456789");
            snprintf(label, sizeof label, "%s-%s", first, num);
        } else
            snprintf(label, sizeof label, "%s", first);
        int col = (int)(b / (size_t)rows), row = (int)(b % (size_t)rows);
        int x = in.x + col * cw, w = cw - 1;
        int lw = group > 1 ? 10 : 6;
        tui_put(c, x, y + row, lw, TUI_S_DIM, label);
        double mean = cnt ? sum / cnt : NAN;
        tui_segment seg = {isnan(mean) ? 0 : mean, mean > 90 ? TUI_S_WARN : TUI_S_BAR};
        int bw = w - lw - 5;
        if (bw > 1)
            tui_bar(c, x + lw, y + row, bw, &seg, 1, 100.0);
        if (!isnan(mean))
            tui_printf(c, x + lw + (bw > 1 ? bw : 0), y + row, 5, TUI_S_NORMAL, "%4.0f%%", mean);
    }
    adg_bus_free_names(names, n);
}

void tui_panel_cpu(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    tui_box(c, r, "CPU", focused);
    tui_rect in = tui_inner(r);
    if (in.h <= 0)
        return;
    int ncpu = (int)json_integer_value(json_object_get(a->machine, "logical_cpus"));
    int y = in.y;
    isa_lines(a, c, in, &y);
    if (y < in.y + in.h)
        amx_busy_line(a, c, in, y++);
    if (y < in.y + in.h)
        workload_line(a, c, in, y++, ncpu);
    if (y < in.y + in.h)
        core_bars(a, c, in, y);
}

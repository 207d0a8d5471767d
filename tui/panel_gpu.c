/* GPU: per device busy % and memory, transfer bandwidth, launches, errors, and the top
 * kernels by time (a sortable table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

static const tui_column kcols[] = {
    {"time", 9, true},
    {"share", 6, true},
    {"kernel", 0, false},
};

static int device_lines(tui_app *a, tui_canvas *c, tui_rect in, int y)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_GPU_BUSY, &names);
    if (!n) {
        /* Memory comes before busy (busy lags the GPU by a second; memory does not). */
        adg_bus_free_names(names, n);
        n = tui_instances(a, TUI_M_GPU_MEM, &names);
    }
    int used = 0;
    for (size_t i = 0; i < n && y + used < in.y + in.h; i++) {
        double busy = 0, mem = 0, tot = 0;
        bool okb = tui_value_at(a, TUI_M_GPU_BUSY, names[i], &busy);
        bool okm = tui_value_at(a, TUI_M_GPU_MEM, names[i], &mem);
        bool okt = tui_value_at(a, TUI_M_GPU_MEM_TOTAL, names[i], &tot);
        if (!okb && !okm)
            continue;
        if (okb)
            tui_note_value(a, TUI_P_GPU, TUI_M_GPU_BUSY, names[i], busy);
        if (okm)
            tui_note_value(a, TUI_P_GPU, TUI_M_GPU_MEM, names[i], mem);
        if (okt)
            tui_note_value(a, TUI_P_GPU, TUI_M_GPU_MEM_TOTAL, names[i], tot);
        char txt[80], m1[24], m2[24], b[16];
        if (okb)
            snprintf(b, sizeof b, " %3.0f%%", busy);
        else
            snprintf(b, sizeof b, " busy n/a");
        if (okm && okt)
            snprintf(txt, sizeof txt, "%s %s/%s", b, adg_fmt_bytes(mem, m1, sizeof m1),
                     adg_fmt_bytes(tot, m2, sizeof m2));
        else if (okm)
            snprintf(txt, sizeof txt, "%s %s", b, adg_fmt_bytes(mem, m1, sizeof m1));
        else
            snprintf(txt, sizeof txt, "%s", b);
        int yy = y + used++;
        tui_put(c, in.x, yy, 6, TUI_S_DIM, names[i] ? names[i] : "gpu");
        int tw = (int)strlen(txt), bw = in.w - 6 - tw;
        tui_segment seg = {busy, TUI_S_BAR};
        if (bw > 4 && okb)
            tui_bar(c, in.x + 6, yy, bw, &seg, 1, 100.0);
        tui_put(c, in.x + 6 + (bw > 4 ? bw : 0), yy, tw, TUI_S_NORMAL, txt);
    }
    adg_bus_free_names(names, n);
    return used;
}

static double sum_instances(tui_app *a, int key, bool *ok)
{
    char **names;
    size_t n = tui_instances(a, key, &names);
    double s = 0;
    *ok = false;
    for (size_t i = 0; i < n; i++) {
        double v;
        if (tui_value_at(a, key, names[i], &v)) {
            s += v;
            *ok = true;
            tui_note_value(a, TUI_P_GPU, key, names[i], v);
        }
    }
    adg_bus_free_names(names, n);
    return s;
}

static void transfer_line(tui_app *a, tui_canvas *c, tui_rect in, int y)
{
    bool okh, okd, okl, oke;
    double h2d = sum_instances(a, TUI_M_GPU_H2D, &okh), d2h = sum_instances(a, TUI_M_GPU_D2H, &okd);
    double launches = sum_instances(a, TUI_M_GPU_LAUNCHES, &okl), errs = sum_instances(a, TUI_M_GPU_ERRORS, &oke);
    char a1[24], a2[24];
    int x = in.x;
    if (okh || okd)
        x += tui_printf(c, x, y, in.x + in.w - x, TUI_S_NORMAL, "H2D %s D2H %s ", okh ? tui_fmt_rate(h2d, a1, sizeof a1) : "n/a",
                        okd ? tui_fmt_rate(d2h, a2, sizeof a2) : "n/a");
    if (okl)
        x += tui_printf(c, x, y, in.x + in.w - x, TUI_S_NORMAL, "%.0f launch/s ", launches);
    if (oke)
        tui_printf(c, x, y, in.x + in.w - x, errs > 0 ? TUI_S_BAD : TUI_S_GOOD, "errors %.0f", errs);
    else if (a->gpu_errors)
        /* The GPU collector reports CUDA errors and crashes as events. */
        tui_printf(c, x, y, in.x + in.w - x, TUI_S_BAD, "errors %u, last %s", a->gpu_errors, a->last_gpu_error);
    else if (okh || okd || okl)
        tui_put(c, x, y, in.x + in.w - x, TUI_S_GOOD, "no errors seen");
}

static void kernel_table(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_GPU_KTIME, &names);
    if (!n || r.h < 2)
        return;
    tui_row *rows = calloc(n, sizeof *rows);
    double total = 0;
    size_t nr = 0;
    for (size_t i = 0; rows && i < n; i++) {
        double v;
        if (!tui_value_at(a, TUI_M_GPU_KTIME, names[i], &v))
            continue;
        tui_note_value(a, TUI_P_GPU, TUI_M_GPU_KTIME, names[i], v);
        tui_row *row = &rows[nr++];
        row->key[0] = v;
        snprintf(row->cell[2], sizeof row->cell[2], "%s", names[i] ? names[i] : "?");
        total += v;
    }
    for (size_t i = 0; i < nr; i++) {
        tui_row *row = &rows[i];
        double ms = row->key[0] * 1e3;
        snprintf(row->cell[0], sizeof row->cell[0], ms >= 100 ? "%.0fms" : "%.2fms", ms);
        row->key[1] = total > 0 ? 100.0 * row->key[0] / total : 0;
        snprintf(row->cell[1], sizeof row->cell[1], "%.0f%%", row->key[1]);
        row->style = TUI_S_NORMAL;
    }
    tui_table t = {kcols, 3, rows, nr, a->sort[TUI_P_GPU], a->reverse[TUI_P_GPU], 0};
    tui_table_sort(&t);
    if ((size_t)a->scroll[TUI_P_GPU] >= nr)
        a->scroll[TUI_P_GPU] = nr ? (int)nr - 1 : 0;
    t.scroll = a->scroll[TUI_P_GPU];
    tui_table_draw(c, r, &t, focused);
    free(rows);
    adg_bus_free_names(names, n);
}

void tui_panel_gpu(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    tui_box(c, r, "GPU", focused);
    tui_rect in = tui_inner(r);
    if (in.h <= 0)
        return;
    int y = in.y + device_lines(a, c, in, in.y);
    if (y == in.y) {
        char why[384];
        tui_printf(c, in.x, y++, in.w, TUI_S_NA, "busy: n/a - %s", tui_na_reason(a, TUI_M_GPU_BUSY, why, sizeof why));
    }
    if (y < in.y + in.h)
        transfer_line(a, c, in, y++);
    if (y < in.y + in.h)
        kernel_table(a, c, (tui_rect){in.x, y, in.w, in.y + in.h - y}, focused);
}

/* GPU: per device utilisation and memory (NVML for any workload, or the CUPTI tracer's),
 * the workload's own device memory, temperature, power and clock where there is room,
 * transfer bandwidth (the traced process's copies, else the PCIe link's), launches,
 * errors and the crash confirmation, and the top kernels by time (a sortable table). */
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

/* Instances of the per-device metrics, in order: NVML's utilisation, the tracer's busy,
 * memory (whichever publishes first is enough for a line). */
static size_t device_names(tui_app *a, char ***names)
{
    static const int keys[] = {TUI_M_GPU_UTIL, TUI_M_GPU_BUSY, TUI_M_GPU_MEM};
    for (size_t k = 0; k < ADG_ARRAY_LEN(keys); k++) {
        size_t n = tui_instances(a, keys[k], names);
        if (n)
            return n;
        adg_bus_free_names(*names, n);
    }
    *names = NULL;
    return 0;
}

static bool dev_value(tui_app *a, int key, const char *inst, double *v)
{
    if (!tui_value_at(a, key, inst, v))
        return false;
    tui_note_value(a, TUI_P_GPU, key, inst, *v);
    return true;
}

/* Appends " text" to a line when it fits whole (items in order of importance). */
static void item(char *line, size_t len, int maxw, const char *text)
{
    size_t l = strlen(line), t = strlen(text);
    if ((int)(l + t + 1) <= maxw && l + t + 2 < len)
        snprintf(line + l, len - l, "%s%s", l ? " " : "", text);
}

/* Line 1: the utilisation bar (NVML's any-process utilisation, else the traced process's
 * kernel share) and memory used/total.  Line 2 when asked: the workload's own device
 * memory, the traced kernels' share, temperature, power, SM clock, memory utilisation. */
static int device_block(tui_app *a, tui_canvas *c, tui_rect in, int y, const char *inst, bool detail)
{
    double util = 0, busy = 0, mem = 0, tot = 0;
    bool oku = dev_value(a, TUI_M_GPU_UTIL, inst, &util);
    bool okb = dev_value(a, TUI_M_GPU_BUSY, inst, &busy);
    bool okm = dev_value(a, TUI_M_GPU_MEM, inst, &mem);
    bool okt = dev_value(a, TUI_M_GPU_MEM_TOTAL, inst, &tot);
    if (!oku && !okb && !okm)
        return 0;
    double bar = oku ? util : busy;
    char txt[80], m1[24], m2[24], b[16];
    if (oku || okb)
        snprintf(b, sizeof b, " %3.0f%%", bar);
    else
        snprintf(b, sizeof b, " busy n/a");
    if (okm && okt)
        snprintf(txt, sizeof txt, "%s %s/%s", b, adg_fmt_bytes(mem, m1, sizeof m1), adg_fmt_bytes(tot, m2, sizeof m2));
    else if (okm)
        snprintf(txt, sizeof txt, "%s %s", b, adg_fmt_bytes(mem, m1, sizeof m1));
    else
        snprintf(txt, sizeof txt, "%s", b);
    tui_put(c, in.x, y, 6, TUI_S_DIM, inst ? inst : "gpu");
    int tw = (int)strlen(txt), bw = in.w - 6 - tw;
    tui_segment seg = {bar, bar > 90 ? TUI_S_WARN : TUI_S_BAR};
    if (bw > 4 && (oku || okb))
        tui_bar(c, in.x + 6, y, bw, &seg, 1, 100.0);
    tui_put(c, in.x + 6 + (bw > 4 ? bw : 0), y, tw, TUI_S_NORMAL, txt);
    if (!detail || y + 1 >= in.y + in.h)
        return 1;

    char line[160] = "", t[48];
    int maxw = in.w - 6;
    double v;
    if (dev_value(a, TUI_M_GPU_WL_MEM, inst, &v)) {
        snprintf(t, sizeof t, "workload %s", adg_fmt_bytes(v, m1, sizeof m1));
        item(line, sizeof line, maxw, t);
    }
    if (oku && okb) {
        snprintf(t, sizeof t, "traced %.0f%%", busy);
        item(line, sizeof line, maxw, t);
    }
    if (dev_value(a, TUI_M_GPU_TEMP, inst, &v)) {
        snprintf(t, sizeof t, "%.0fC", v);
        item(line, sizeof line, maxw, t);
    }
    if (dev_value(a, TUI_M_GPU_POWER, inst, &v)) {
        snprintf(t, sizeof t, "%.0fW", v);
        item(line, sizeof line, maxw, t);
    }
    if (dev_value(a, TUI_M_GPU_CLOCK, inst, &v)) {
        snprintf(t, sizeof t, "%.0fMHz", v / 1e6);
        item(line, sizeof line, maxw, t);
    }
    if (dev_value(a, TUI_M_GPU_MEM_UTIL, inst, &v)) {
        snprintf(t, sizeof t, "mem %.0f%%", v);
        item(line, sizeof line, maxw, t);
    }
    if (!line[0])
        return 1;
    tui_put(c, in.x + 6, y + 1, maxw, TUI_S_NORMAL, line);
    return 2;
}

static int device_lines(tui_app *a, tui_canvas *c, tui_rect in, int y, bool want_table)
{
    char **names;
    size_t n = device_names(a, &names);
    /* A detail line per device when there is room for it and still for the transfer
     * line and (when there are kernels) three table rows. */
    int reserve = 1 + (want_table ? 3 : 0);
    bool detail = (int)n * 2 + reserve <= in.y + in.h - y;
    int used = 0;
    for (size_t i = 0; i < n && y + used < in.y + in.h; i++)
        used += device_block(a, c, in, y + used, names[i], detail);
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
    bool okh, okd, okl, oke, okrx, oktx;
    double h2d = sum_instances(a, TUI_M_GPU_H2D, &okh), d2h = sum_instances(a, TUI_M_GPU_D2H, &okd);
    double launches = sum_instances(a, TUI_M_GPU_LAUNCHES, &okl), errs = sum_instances(a, TUI_M_GPU_ERRORS, &oke);
    double rx = sum_instances(a, TUI_M_GPU_PCIE_RX, &okrx), tx = sum_instances(a, TUI_M_GPU_PCIE_TX, &oktx);
    char a1[24], a2[24];
    int x = in.x;
    if (okh || okd)
        x += tui_printf(c, x, y, in.x + in.w - x, TUI_S_NORMAL, "H2D %s D2H %s ", okh ? tui_fmt_rate(h2d, a1, sizeof a1) : "n/a",
                        okd ? tui_fmt_rate(d2h, a2, sizeof a2) : "n/a");
    else if (okrx || oktx)
        /* No trace of the process's copies: the link's traffic, every process (NVML). */
        x += tui_printf(c, x, y, in.x + in.w - x, TUI_S_NORMAL, "PCIe rx %s tx %s ",
                        okrx ? tui_fmt_rate(rx, a1, sizeof a1) : "n/a", oktx ? tui_fmt_rate(tx, a2, sizeof a2) : "n/a");
    if (okl)
        x += tui_printf(c, x, y, in.x + in.w - x, TUI_S_NORMAL, "%.0f launch/s ", launches);
    if (oke)
        tui_printf(c, x, y, in.x + in.w - x, errs > 0 ? TUI_S_BAD : TUI_S_GOOD, "errors %.0f", errs);
    else if (a->gpu_errors)
        /* The GPU collector reports CUDA errors and crashes as events. */
        tui_printf(c, x, y, in.x + in.w - x, TUI_S_BAD, "errors %u, last %s", a->gpu_errors, a->last_gpu_error);
    else if (okh || okd || okl || okrx || oktx)
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
    char **kn;
    size_t nk = tui_instances(a, TUI_M_GPU_KTIME, &kn);
    adg_bus_free_names(kn, nk);
    int y = in.y + device_lines(a, c, in, in.y, nk > 0);
    if (y == in.y) {
        char why[384];
        /* Neither NVML nor the tracer: NVML's reason says most (no driver, no device). */
        tui_printf(c, in.x, y++, in.w, TUI_S_NA, "GPU: n/a - %s", tui_na_reason(a, TUI_M_GPU_UTIL, why, sizeof why));
        if (y < in.y + in.h)
            tui_printf(c, in.x, y++, in.w, TUI_S_NA, "busy: n/a - %s",
                       tui_na_reason(a, TUI_M_GPU_BUSY, why, sizeof why));
    }
    /* The crash confirmation (live, after a CUDA fault): what the user waits for. */
    if (a->confirm_note[0] && y < in.y + in.h)
        tui_put(c, in.x, y++, in.w, a->confirming ? TUI_S_WARN : TUI_S_BAD, a->confirm_note);
    if (y < in.y + in.h)
        transfer_line(a, c, in, y++);
    if (y < in.y + in.h)
        kernel_table(a, c, (tui_rect){in.x, y, in.w, in.y + in.h - y}, focused);
}

/* Memory: DRAM read/write bandwidth per socket against the probe's measured peak (or MBM
 * per domain where there is no uncore PMU), and the workload's resident memory per node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

static double peak_bps(tui_app *a, char *note, size_t len)
{
    if (!a->have_ceil || !a->ceil.nnodes) {
        snprintf(note, len, "peak: no measured ceiling - run amxdiag probe --bench");
        return 0;
    }
    double gbs = 0;
    for (size_t i = 0; i < a->ceil.nnodes; i++)
        gbs += a->ceil.nodes[i].read_gbs;
    snprintf(note, len, "peak %.1f GB/s (probe --bench, %s)", gbs, a->ceil.created);
    return gbs * 1e9;
}

/* One line per socket: "socket0 [RRRWW....] R 12.3 W 4.1 GB/s". Returns lines used. */
static int bw_lines(tui_app *a, tui_canvas *c, tui_rect in, int y, double peak)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_MEM_RD, &names);
    int used = 0;
    for (size_t i = 0; i < n && y + used < in.y + in.h; i++) {
        double rd = 0, wr = 0;
        bool okr = tui_value_at(a, TUI_M_MEM_RD, names[i], &rd);
        bool okw = tui_value_at(a, TUI_M_MEM_WR, names[i], &wr);
        if (okr)
            tui_note_value(a, TUI_P_MEM, TUI_M_MEM_RD, names[i], rd);
        if (okw)
            tui_note_value(a, TUI_P_MEM, TUI_M_MEM_WR, names[i], wr);
        int yy = y + used++;
        tui_put(c, in.x, yy, 9, TUI_S_DIM, names[i] ? names[i] : "all");
        char rs[24], ws[24];
        tui_fmt_rate(rd, rs, sizeof rs);
        tui_fmt_rate(wr, ws, sizeof ws);
        char txt[64];
        snprintf(txt, sizeof txt, " R %s W %s", rs, ws);
        int tw = (int)strlen(txt);
        int bw = in.w - 9 - tw;
        /* Without a measured peak the bar is scaled to the busiest second seen so far. */
        double scale = peak;
        if (!(scale > 0)) {
            double h[32], mx = 0;
            tui_history(a, TUI_M_MEM_RD, names[i], h, 32, &mx);
            scale = (mx > rd ? mx : rd) * 1.1 + wr + 1;
        }
        tui_segment seg[] = {{rd, TUI_S_BAR}, {wr, TUI_S_AVX512}};
        if (bw > 4)
            tui_bar(c, in.x + 9, yy, bw, seg, 2, scale);
        tui_put(c, in.x + 9 + (bw > 4 ? bw : 0), yy, tw, TUI_S_NORMAL, txt);
    }
    adg_bus_free_names(names, n);
    return used;
}

static int mbm_lines(tui_app *a, tui_canvas *c, tui_rect in, int y, double peak)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_MEM_MBM, &names);
    int used = 0;
    for (size_t i = 0; i < n && y + used < in.y + in.h; i++) {
        double v = 0;
        if (!tui_value_at(a, TUI_M_MEM_MBM, names[i], &v))
            continue;
        tui_note_value(a, TUI_P_MEM, TUI_M_MEM_MBM, names[i], v);
        char s[24];
        tui_fmt_rate(v, s, sizeof s);
        int yy = y + used++;
        tui_printf(c, in.x, yy, 14, TUI_S_DIM, "MBM %s", names[i] ? names[i] : "");
        int bw = in.w - 14 - 12;
        tui_segment seg = {v, TUI_S_BAR};
        if (bw > 4)
            tui_bar(c, in.x + 14, yy, bw, &seg, 1, peak > 0 ? peak : v * 1.25 + 1);
        tui_printf(c, in.x + 14 + (bw > 4 ? bw : 0), yy, 12, TUI_S_NORMAL, " %s", s);
    }
    adg_bus_free_names(names, n);
    return used;
}

static int numa_lines(tui_app *a, tui_canvas *c, tui_rect in, int y)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_NUMA_RES, &names);
    if (!n) {
        char why[384];
        tui_printf(c, in.x, y, in.w, TUI_S_NA, "resident per node: n/a - %s",
                   tui_na_reason(a, TUI_M_NUMA_RES, why, sizeof why));
        return 1;
    }
    double total = 0, *res = calloc(n, sizeof *res);
    for (size_t i = 0; res && i < n; i++)
        if (tui_value_at(a, TUI_M_NUMA_RES, names[i], &res[i]))
            total += res[i];
    int used = 0;
    for (size_t i = 0; res && i < n && y + used < in.y + in.h; i++) {
        double thr = 0;
        bool okt = tui_value_at(a, TUI_M_NUMA_THR, names[i], &thr);
        tui_note_value(a, TUI_P_MEM, TUI_M_NUMA_RES, names[i], res[i]);
        if (okt)
            tui_note_value(a, TUI_P_MEM, TUI_M_NUMA_THR, names[i], thr);
        char b[32], txt[64];
        adg_fmt_bytes(res[i], b, sizeof b);
        if (okt)
            snprintf(txt, sizeof txt, " %s %.0f thr", b, thr);
        else
            snprintf(txt, sizeof txt, " %s", b);
        int yy = y + used++;
        tui_put(c, in.x, yy, 9, TUI_S_DIM, names[i] ? names[i] : "");
        int tw = (int)strlen(txt), bw = in.w - 9 - tw;
        tui_segment seg = {res[i], TUI_S_OTHER};
        if (bw > 4)
            tui_bar(c, in.x + 9, yy, bw, &seg, 1, total > 0 ? total : 1);
        tui_put(c, in.x + 9 + (bw > 4 ? bw : 0), yy, tw, TUI_S_NORMAL, txt);
    }
    free(res);
    adg_bus_free_names(names, n);
    return used;
}

void tui_panel_mem(tui_app *a, tui_canvas *c, tui_rect r, bool focused)
{
    tui_box(c, r, "Memory", focused);
    tui_rect in = tui_inner(r);
    if (in.h <= 0)
        return;
    char note[160], why[384];
    double peak = peak_bps(a, note, sizeof note);
    int y = in.y;
    int n = bw_lines(a, c, in, y, peak);
    if (!n) {
        n = mbm_lines(a, c, in, y, peak);
        if (!n && y < in.y + in.h) {
            tui_printf(c, in.x, y, in.w, TUI_S_NA, "DRAM bandwidth: n/a - %s",
                       tui_na_reason(a, TUI_M_MEM_RD, why, sizeof why));
            n = 1;
            if (y + 1 < in.y + in.h) {
                tui_printf(c, in.x, y + 1, in.w, TUI_S_NA, "  MBM: %s", tui_na_reason(a, TUI_M_MEM_MBM, why, sizeof why));
                n = 2;
            }
        }
    }
    y += n;
    if (y < in.y + in.h)
        tui_put(c, in.x, y++, in.w, peak > 0 ? TUI_S_DIM : TUI_S_NA, note);
    if (y < in.y + in.h)
        y += numa_lines(a, c, in, y);
    if (a->last_warning[0] && y < in.y + in.h)
        tui_printf(c, in.x, y, in.w, TUI_S_WARN, "! %s", a->last_warning);
}

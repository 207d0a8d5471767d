/* CPU: the AMX / AVX-512 / other share of the workload's CPU time (with its source),
 * AMX busy from the PMU, the workload's CPU use, and per-CPU bars: under a header per
 * NUMA node (the record's machine.cpu_node map) with the node's mean, packed in columns,
 * grouped when a large machine would not fit (like htop's CPU meters). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

#define FIXED_LINES 4

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

/* ---- per-CPU bars, grouped by NUMA node ---- */

static int cpu_number(const char *name)
{
    const char *d = name ? name + strcspn(name, "0123456789") : "";
    return *d ? atoi(d) : -1;
}

/* The node of each CPU instance, from the machine section's cpu_node map (index = CPU
 * number).  Returns the number of distinct nodes (sorted into nodes[]), 0 without a map;
 * CPUs the map does not cover get node -1 and a group of their own. */
static size_t node_map(tui_app *a, char **names, size_t n, int *node, int *nodes)
{
    json_t *map = json_object_get(a->machine, "cpu_node");
    if (!json_is_array(map) || !json_array_size(map))
        return 0;
    size_t nn = 0;
    for (size_t i = 0; i < n; i++) {
        int cpu = cpu_number(names[i]);
        json_t *v = cpu >= 0 ? json_array_get(map, (size_t)cpu) : NULL;
        node[i] = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1 << 20
                      ? (int)json_integer_value(v)
                      : -1;
        size_t k = 0;
        while (k < nn && nodes[k] < node[i])
            k++;
        if (k < nn && nodes[k] == node[i])
            continue;
        memmove(nodes + k + 1, nodes + k, (nn - k) * sizeof *nodes);
        nodes[k] = node[i];
        nn++;
    }
    return nn;
}

static size_t ceil_div(size_t a, size_t b)
{
    return b ? (a + b - 1) / b : a;
}

/* Lines the per-CPU part needs with bars two to a line (what the layout asks for). */
static int core_rows_wanted(tui_app *a)
{
    char **names;
    size_t n = tui_instances(a, TUI_M_CPU_UTIL, &names);
    int rows = n ? (int)ceil_div(n, 2) : 1;
    int *node = n ? malloc(n * sizeof *node) : NULL, *nodes = n ? malloc(n * sizeof *nodes) : NULL;
    size_t nn = node && nodes ? node_map(a, names, n, node, nodes) : 0;
    if (nn > 1) {
        rows = 0;
        for (size_t k = 0; k < nn; k++) {
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                m += node[i] == nodes[k];
            rows += 1 + (int)ceil_div(m, 2);
        }
    }
    free(node);
    free(nodes);
    adg_bus_free_names(names, n);
    return rows;
}

int tui_cpu_rows_wanted(tui_app *a)
{
    return FIXED_LINES + core_rows_wanted(a);
}

/* The mean utilisation of the CPUs idx[0..m) (noted in the snapshot); NaN without data. */
static double mean_util(tui_app *a, char **names, const size_t *idx, size_t m)
{
    double sum = 0;
    int cnt = 0;
    for (size_t i = 0; i < m; i++) {
        double v;
        if (tui_value_at(a, TUI_M_CPU_UTIL, names[idx[i]], &v)) {
            sum += v;
            cnt++;
            tui_note_value(a, TUI_P_CPU, TUI_M_CPU_UTIL, names[idx[i]], v);
        }
    }
    return cnt ? sum / cnt : NAN;
}

/* One bar: label, bar, percentage, in w columns at (x, y). */
static void util_bar(tui_canvas *c, int x, int y, int w, int lw, int lstyle, const char *label, double mean)
{
    tui_put(c, x, y, lw, lstyle, label);
    tui_segment seg = {isnan(mean) ? 0 : mean, mean > 90 ? TUI_S_WARN : TUI_S_BAR};
    int bw = w - lw - 5;
    if (bw > 1)
        tui_bar(c, x + lw, y, bw, &seg, 1, 100.0);
    if (!isnan(mean))
        tui_printf(c, x + lw + (bw > 1 ? bw : 0), y, 5, TUI_S_NORMAL, "%4.0f%%", mean);
    else
        tui_put(c, x + lw + (bw > 1 ? bw : 0), y, 5, TUI_S_NA, " n/a");
}

/* The CPUs idx[0..m) as bars packed in columns of at least 16 cells over `rows` lines;
 * consecutive ones grouped (their mean) when they do not fit, like htop's CPU meters.
 * A group of CPUs numbered without gaps is "cpu0-7", one with gaps (a node's share of
 * interleaved CPUs) "cpu0..14". */
static void cpu_list(tui_app *a, tui_canvas *c, tui_rect r, char **names, const size_t *idx, size_t m)
{
    if (r.h <= 0 || !m)
        return;
    int cols = r.w / 16 < 1 ? 1 : r.w / 16;
    size_t slots = (size_t)r.h * (size_t)cols;
    size_t group = ceil_div(m, slots);
    size_t nbars = ceil_div(m, group);
    int used_cols = (int)ceil_div(nbars, (size_t)r.h);
    if (used_cols < 1)
        used_cols = 1;
    int cw = r.w / used_cols;
    for (size_t b = 0; b < nbars; b++) {
        size_t first = b * group, members = first + group <= m ? group : m - first;
        double mean = mean_util(a, names, idx + first, members);
        char label[32];
        const char *f = names[idx[first]] ? names[idx[first]] : "?";
        if (members > 1) {
            int lo = cpu_number(f), hi = cpu_number(names[idx[first + members - 1]]);
            snprintf(label, sizeof label, "%s%s%d", f, hi - lo == (int)members - 1 ? "-" : "..", hi);
        } else
            snprintf(label, sizeof label, "%s", f);
        int col = (int)(b / (size_t)r.h), row = (int)(b % (size_t)r.h);
        util_bar(c, r.x + col * cw, r.y + row, cw - 1, group > 1 ? 10 : 6, TUI_S_DIM, label, mean);
    }
}

/* Per node: a header line with the node's mean (and its CPU count), then its CPUs.  When
 * all of them do not fit, each node gets an equal share of the lines (its CPUs grouped
 * within it); with fewer lines than nodes, only the node bars are left. */
static void node_bars(tui_app *a, tui_canvas *c, tui_rect r, char **names, size_t n, const int *node,
                      const int *nodes, size_t nn)
{
    size_t *idx = malloc(n * sizeof *idx);
    if (!idx)
        return;
    int cols = (r.w - 2) / 16 < 1 ? 1 : (r.w - 2) / 16; /* the CPUs are indented by 2 */
    size_t need = 0;
    for (size_t k = 0; k < nn; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += node[i] == nodes[k];
        need += 1 + ceil_div(m, (size_t)cols);
    }
    bool full = need <= (size_t)r.h;
    int share = (r.h - (int)nn) / (int)nn, extra = full ? 0 : (r.h - (int)nn) % (int)nn;
    if (!full && share < 1) {
        /* Only node bars, packed in columns of at least 16 cells; what still does not fit
         * is counted in the last slot. */
        size_t slots = (size_t)r.h * (size_t)cols, shown = nn <= slots ? nn : slots - 1;
        int ncol = (int)ceil_div(nn <= slots ? nn : slots, (size_t)r.h), cw = r.w / (ncol ? ncol : 1);
        for (size_t k = 0; k < shown; k++) {
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                if (node[i] == nodes[k])
                    idx[m++] = i;
            char label[24];
            snprintf(label, sizeof label, nodes[k] < 0 ? "node?" : "node%d", nodes[k]);
            util_bar(c, r.x + (int)(k / (size_t)r.h) * cw, r.y + (int)(k % (size_t)r.h), cw - 1, 7, TUI_S_TITLE, label,
                     mean_util(a, names, idx, m));
        }
        if (shown < nn)
            tui_printf(c, r.x + (int)(shown / (size_t)r.h) * cw, r.y + (int)(shown % (size_t)r.h), cw - 1, TUI_S_DIM,
                       "+%zu nodes", nn - shown);
        free(idx);
        return;
    }
    int y = r.y;
    for (size_t k = 0; k < nn && y < r.y + r.h; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (node[i] == nodes[k])
                idx[m++] = i;
        char label[24];
        snprintf(label, sizeof label, nodes[k] < 0 ? "node?" : "node%d", nodes[k]);
        double mean = mean_util(a, names, idx, m);
        int tail = r.w >= 40 ? 9 : 0; /* " 16 CPUs" */
        util_bar(c, r.x, y, r.w - tail, 7, TUI_S_TITLE, label, mean);
        if (tail)
            tui_printf(c, r.x + r.w - tail, y, tail, TUI_S_DIM, " %zu CPU%s", m, m == 1 ? "" : "s");
        y++;
        /* Everything fits: the node's fair share of the lines, so that a large screen
         * shows one CPU per line; else its share, its CPUs grouped to fit. */
        int lines = full ? (int)ceil_div(m, (size_t)cols) : share + (k < (size_t)extra ? 1 : 0);
        if (full && share > lines)
            lines = share < (int)m ? share : (int)m;
        if (lines > r.y + r.h - y)
            lines = r.y + r.h - y;
        /* The node's CPUs indented under its header. */
        cpu_list(a, c, (tui_rect){r.x + 2, y, r.w - 2, lines}, names, idx, m);
        y += lines;
    }
    free(idx);
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
    int *node = malloc(n * sizeof *node), *nodes = malloc(n * sizeof *nodes);
    size_t *idx = malloc(n * sizeof *idx);
    size_t nn = node && nodes && idx ? node_map(a, names, n, node, nodes) : 0;
    tui_rect r = {in.x, y, in.w, rows};
    if (nn > 1)
        node_bars(a, c, r, names, n, node, nodes, nn);
    else if (idx) {
        /* No map (an older record), or one node: the CPUs in number order. */
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        cpu_list(a, c, r, names, idx, n);
    }
    free(node);
    free(nodes);
    free(idx);
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

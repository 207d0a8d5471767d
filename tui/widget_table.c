/* Sortable tables (hot functions, GPU kernels, per-CPU lines). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tui/tui_internal.h"

static _Thread_local const tui_table *sort_t;

static int row_cmp(const void *pa, const void *pb)
{
    const tui_row *a = pa, *b = pb;
    const tui_table *t = sort_t;
    int col = t->sort_col;
    int r;
    if (t->cols[col].numeric)
        r = a->key[col] < b->key[col] ? 1 : a->key[col] > b->key[col] ? -1 : 0;
    else
        r = strcasecmp(a->cell[col], b->cell[col]);
    if (!r) /* stable order for equal keys: by the first column's text */
        r = strcmp(a->cell[0], b->cell[0]);
    return t->reverse ? -r : r;
}

void tui_table_sort(tui_table *t)
{
    if (t->sort_col < 0 || t->sort_col >= t->ncols || t->nrows < 2)
        return;
    sort_t = t;
    qsort(t->rows, t->nrows, sizeof *t->rows, row_cmp);
    sort_t = NULL;
}

/* Column widths: fixed ones as given, the flexible one takes the rest (at least 8). */
static void widths(const tui_table *t, int total, int *w)
{
    int fixed = 0, flex = -1;
    for (int i = 0; i < t->ncols; i++) {
        if (t->cols[i].width <= 0)
            flex = i;
        else
            fixed += t->cols[i].width + 1;
    }
    for (int i = 0; i < t->ncols; i++)
        w[i] = t->cols[i].width > 0 ? t->cols[i].width : 0;
    if (flex >= 0)
        w[flex] = total - fixed - (flex == t->ncols - 1 ? 0 : 1);
    if (flex >= 0 && w[flex] < 8)
        w[flex] = 8;
}

static void cell(tui_canvas *c, int x, int y, int w, bool right, int style, const char *s)
{
    if (w <= 0)
        return;
    int len = (int)strlen(s);
    if (right && len < w)
        x += w - len;
    tui_put(c, x, y, w, style, s);
}

void tui_table_draw(tui_canvas *c, tui_rect r, const tui_table *t, bool focused)
{
    if (r.h < 1 || r.w < 4)
        return;
    int w[TUI_TABLE_MAXCOLS];
    widths(t, r.w, w);
    int x = r.x;
    for (int i = 0; i < t->ncols && x < r.x + r.w; i++) {
        char title[64];
        bool sorted = i == t->sort_col;
        snprintf(title, sizeof title, "%s%s", t->cols[i].title,
                 sorted ? (c->utf8 ? (t->reverse ? "\u25b2" : "\u25bc") : (t->reverse ? "^" : "v")) : "");
        int cw = w[i] < r.x + r.w - x ? w[i] : r.x + r.w - x;
        cell(c, x, r.y, cw, t->cols[i].numeric, sorted && focused ? TUI_S_FOCUS : TUI_S_HEADER, title);
        x += w[i] + 1;
    }
    int shown = r.h - 1;
    for (int k = 0; k < shown; k++) {
        size_t ri = (size_t)(t->scroll + k);
        if (ri >= t->nrows)
            break;
        const tui_row *row = &t->rows[ri];
        x = r.x;
        for (int i = 0; i < t->ncols && x < r.x + r.w; i++) {
            int cw = w[i] < r.x + r.w - x ? w[i] : r.x + r.w - x;
            cell(c, x, r.y + 1 + k, cw, t->cols[i].numeric, row->style, row->cell[i]);
            x += w[i] + 1;
        }
    }
    if (t->nrows > (size_t)shown && shown > 0) {
        char more[48];
        snprintf(more, sizeof more, "%d-%d/%zu", t->scroll + 1,
                 (int)((size_t)(t->scroll + shown) < t->nrows ? (size_t)(t->scroll + shown) : t->nrows), t->nrows);
        int len = (int)strlen(more);
        tui_put(c, r.x + r.w - len, r.y, len, TUI_S_DIM, more);
    }
}

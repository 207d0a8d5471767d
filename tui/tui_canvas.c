/* The off-screen canvas panels draw into (copied to ncurses by tui_screen.c). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "common/adg_util.h"
#include "tui/tui_internal.h"

adg_error *tui_canvas_init(tui_canvas *c, int w, int h, bool utf8)
{
    if (w < 1)
        w = 1;
    if (h < 1)
        h = 1;
    tui_cell *cells = calloc((size_t)w * (size_t)h, sizeof *cells);
    if (!cells)
        return adg_error_new(ADG_E_NOMEM, "out of memory for a %dx%d screen", w, h);
    free(c->cells);
    c->cells = cells;
    c->w = w;
    c->h = h;
    c->utf8 = utf8;
    tui_canvas_clear(c);
    return NULL;
}

void tui_canvas_free(tui_canvas *c)
{
    free(c->cells);
    c->cells = NULL;
    c->w = c->h = 0;
}

void tui_canvas_clear(tui_canvas *c)
{
    for (int i = 0; i < c->w * c->h; i++)
        c->cells[i] = (tui_cell){' ', TUI_S_NORMAL};
}

static void set(tui_canvas *c, int x, int y, uint32_t ch, int style)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    c->cells[y * c->w + x] = (tui_cell){ch, (uint8_t)style};
}

/* Decodes one UTF-8 sequence; invalid bytes come out as '?'. */
static uint32_t next_cp(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t cp;
    int n;
    if (s[0] < 0x80) {
        *p = s + 1;
        return s[0];
    } else if ((s[0] & 0xe0) == 0xc0) {
        cp = s[0] & 0x1f;
        n = 1;
    } else if ((s[0] & 0xf0) == 0xe0) {
        cp = s[0] & 0x0f;
        n = 2;
    } else if ((s[0] & 0xf8) == 0xf0) {
        cp = s[0] & 0x07;
        n = 3;
    } else {
        *p = s + 1;
        return '?';
    }
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p = s + i;
            return '?';
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *p = s + n + 1;
    return cp;
}

int tui_put(tui_canvas *c, int x, int y, int maxw, int style, const char *text)
{
    if (!text || y < 0 || y >= c->h)
        return 0;
    if (maxw <= 0 || x + maxw > c->w)
        maxw = c->w - x;
    if (maxw <= 0)
        return 0;
    const unsigned char *p = (const unsigned char *)text;
    int col = 0;
    while (*p && col < maxw) {
        uint32_t cp = next_cp(&p);
        if (cp < 0x20 || cp == 0x7f)
            cp = ' ';
        /* Every cell is one column: wide or combining characters (user data: function
         * names, paths) would break the grid, and outside UTF-8 only ASCII is shown. */
        else if (cp >= 0x80 && (!c->utf8 || wcwidth((wchar_t)cp) != 1))
            cp = '?';
        if (col == maxw - 1 && *p) {
            set(c, x + col, y, '~', style);
            return maxw;
        }
        set(c, x + col, y, cp, style);
        col++;
    }
    return col;
}

int tui_printf(tui_canvas *c, int x, int y, int maxw, int style, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return tui_put(c, x, y, maxw, style, buf);
}

void tui_fill(tui_canvas *c, tui_rect r, uint32_t ch, int style)
{
    for (int y = r.y; y < r.y + r.h; y++)
        for (int x = r.x; x < r.x + r.w; x++)
            set(c, x, y, ch, style);
}

tui_rect tui_inner(tui_rect r)
{
    tui_rect i = {r.x + 1, r.y + 1, r.w - 2, r.h - 2};
    if (i.w < 0)
        i.w = 0;
    if (i.h < 0)
        i.h = 0;
    return i;
}

void tui_box(tui_canvas *c, tui_rect r, const char *title, bool focused)
{
    if (r.w < 2 || r.h < 2)
        return;
    int st = focused ? TUI_S_FOCUS : TUI_S_DIM;
    uint32_t h = c->utf8 ? (focused ? 0x2501 : 0x2500) : (focused ? '=' : '-');
    uint32_t v = c->utf8 ? (focused ? 0x2503 : 0x2502) : '|';
    uint32_t tl = c->utf8 ? (focused ? 0x250f : 0x250c) : '+', tr = c->utf8 ? (focused ? 0x2513 : 0x2510) : '+';
    uint32_t bl = c->utf8 ? (focused ? 0x2517 : 0x2514) : '+', br = c->utf8 ? (focused ? 0x251b : 0x2518) : '+';
    for (int x = r.x + 1; x < r.x + r.w - 1; x++) {
        set(c, x, r.y, h, st);
        set(c, x, r.y + r.h - 1, h, st);
    }
    for (int y = r.y + 1; y < r.y + r.h - 1; y++) {
        set(c, r.x, y, v, st);
        set(c, r.x + r.w - 1, y, v, st);
    }
    set(c, r.x, r.y, tl, st);
    set(c, r.x + r.w - 1, r.y, tr, st);
    set(c, r.x, r.y + r.h - 1, bl, st);
    set(c, r.x + r.w - 1, r.y + r.h - 1, br, st);
    if (title && r.w > 6) {
        char t[256];
        snprintf(t, sizeof t, " %s ", title);
        tui_put(c, r.x + 2, r.y, r.w - 4, focused ? TUI_S_FOCUS : TUI_S_TITLE, t);
    }
}

static size_t put_utf8(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

void tui_canvas_row(const tui_canvas *c, int y, char *buf, size_t len)
{
    size_t n = 0, keep = 0;
    if (!len)
        return;
    buf[0] = 0;
    if (y < 0 || y >= c->h)
        return;
    for (int x = 0; x < c->w; x++) {
        char u[4];
        uint32_t cp = c->cells[y * c->w + x].ch;
        size_t k = put_utf8(cp, u);
        if (n + k + 1 > len)
            break;
        memcpy(buf + n, u, k);
        n += k;
        if (cp != ' ')
            keep = n;
    }
    buf[keep] = 0;
}

char *tui_canvas_text(const tui_canvas *c)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    size_t len = (size_t)c->w * 4 + 1;
    char *row = malloc(len);
    if (!row)
        return NULL;
    for (int y = 0; y < c->h; y++) {
        tui_canvas_row(c, y, row, len);
        adg_sb_puts(&sb, row);
        adg_sb_puts(&sb, "\n");
    }
    free(row);
    if (sb.failed) {
        adg_sb_free(&sb);
        return NULL;
    }
    return adg_sb_take(&sb);
}

/* Horizontal bars: stacked segments (AMX / AVX-512 / other share, read / write). */
#include <math.h>

#include "tui/tui_internal.h"

/* ASCII has no partial cells: one character per segment tells them apart without colour. */
static const char ascii_fill[] = "#=-+*o";
/* Without colour, UTF-8 shades tell stacked segments apart: full, dark, medium, light. */
static const uint32_t mono_fill[] = {0x2588, 0x2593, 0x2592, 0x2591};

uint32_t tui_seg_glyph(const tui_canvas *c, size_t i)
{
    if (!c->utf8)
        return (uint8_t)ascii_fill[i % (sizeof ascii_fill - 1)];
    if (c->mono)
        return mono_fill[i % 4];
    return 0x2588;
}

void tui_bar(tui_canvas *c, int x, int y, int w, const tui_segment *seg, size_t nseg, double max)
{
    if (w <= 0 || y < 0 || y >= c->h)
        return;
    for (int i = 0; i < w; i++)
        if (x + i >= 0 && x + i < c->w)
            c->cells[y * c->w + x + i] = (tui_cell){!c->utf8 ? '.' : c->mono ? 0xb7u /* · */ : 0x2591u /* ░ */, TUI_S_DIM};
    if (!(max > 0))
        return;
    /* Work in eighths of a cell so that stacked segments round consistently: each ends at
     * the rounded cumulative position, so the total never exceeds w and never loses a cell. */
    long total = (long)w * 8, start = 0;
    double cum = 0;
    for (size_t s = 0; s < nseg; s++) {
        double v = seg[s].value;
        if (!(v > 0) || !isfinite(v))
            continue;
        cum += v;
        double f = cum / max;
        long end = !(f < 1) ? total : lround(f * (double)total); /* >= 1, inf, NaN: full */
        bool whole = !c->utf8 || (c->mono && nseg > 1);
        if (whole)
            end = (end + 4) / 8 * 8; /* whole cells */
        for (long e = start; e < end;) {
            long cell = e / 8, in = e % 8;
            long take = end - e < 8 - in ? end - e : 8 - in;
            uint32_t ch;
            if (whole)
                ch = tui_seg_glyph(c, s);
            else if (in == 0 && take == 8)
                ch = 0x2588; /* █ */
            else if (in == 0)
                ch = 0x2590 - (uint32_t)take; /* ▏(1/8) .. ▉(7/8) are U+258F..U+2589 */
            else
                ch = 0x2588; /* a partial cell already started: fill it */
            int cx = x + (int)cell;
            if (cx >= 0 && cx < c->w && cx < x + w)
                c->cells[y * c->w + cx] = (tui_cell){ch, (uint8_t)seg[s].style};
            e += take;
        }
        if (end > start)
            start = end;
    }
}

/* Sparklines of a metric's recent history. */
#include <math.h>

#include "tui/tui_internal.h"

void tui_spark_resample(const adg_point *p, size_t n, uint64_t t_end, uint64_t span, double *out, int w)
{
    if (w <= 0)
        return;
    double sum[w];
    int cnt[w];
    for (int i = 0; i < w; i++) {
        sum[i] = 0;
        cnt[i] = 0;
    }
    uint64_t t0 = t_end > span ? t_end - span : 0;
    uint64_t width = t_end - t0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].t_ns <= t0 && t0 > 0)
            continue;
        if (p[i].t_ns > t_end)
            break;
        if (!isfinite(p[i].value))
            continue;
        /* (t0, t_end] maps onto w buckets; the newest point lands in the last one. */
        uint64_t off = p[i].t_ns - t0;
        int b = width ? (int)(((__uint128_t)off * (uint64_t)w - 1) / width) : w - 1;
        if (off == 0)
            b = 0;
        if (b < 0)
            b = 0;
        if (b >= w)
            b = w - 1;
        sum[b] += p[i].value;
        cnt[b]++;
    }
    for (int i = 0; i < w; i++)
        out[i] = cnt[i] ? sum[i] / cnt[i] : NAN;
}

void tui_spark(tui_canvas *c, int x, int y, int w, const double *v, double lo, double hi, int style)
{
    static const char ascii[] = " .:-=+*#%@";
    if (y < 0 || y >= c->h)
        return;
    double range = hi - lo;
    for (int i = 0; i < w; i++) {
        int cx = x + i;
        if (cx < 0 || cx >= c->w)
            continue;
        uint32_t ch = ' ';
        if (!isnan(v[i])) {
            double f = range > 0 ? (v[i] - lo) / range : 0;
            if (!(f > 0)) /* also NaN, from infinite values */
                f = 0;
            if (f > 1)
                f = 1;
            if (c->utf8)
                ch = 0x2581 + (uint32_t)lround(f * 7); /* ▁ .. █ */
            else
                ch = (uint8_t)ascii[1 + lround(f * 8)];
        }
        c->cells[y * c->w + cx] = (tui_cell){ch, (uint8_t)style};
    }
}

/* HTML rendering: one self-contained file (inline CSS, inline SVG charts, no script, no
 * external resource), so it opens offline and attaches to a bug as is.  Every string from
 * the document is escaped for text and attribute context. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"
#include "reports/rep_internal.h"

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
                                      "#7f7f7f"};
#define NPAL (sizeof palette / sizeof palette[0])

static void esc(adg_strbuf *sb, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': adg_sb_puts(sb, "&amp;"); break;
        case '<': adg_sb_puts(sb, "&lt;"); break;
        case '>': adg_sb_puts(sb, "&gt;"); break;
        case '"': adg_sb_puts(sb, "&quot;"); break;
        case '\'': adg_sb_puts(sb, "&#39;"); break;
        default:
            if ((unsigned char)*s < 32 && *s != '\n' && *s != '\t')
                adg_sb_puts(sb, "\xef\xbf\xbd"); /* control bytes: U+FFFD */
            else
                adg_sb_append(sb, s, 1);
        }
    }
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void table(adg_strbuf *sb, const json_t *t)
{
    adg_sb_puts(sb, "<table>");
    if (*str(t, "caption")) {
        adg_sb_puts(sb, "<caption>");
        esc(sb, str(t, "caption"));
        adg_sb_puts(sb, "</caption>");
    }
    adg_sb_puts(sb, "<thead><tr>");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(t, "columns"), i, c) {
        adg_sb_puts(sb, "<th>");
        esc(sb, json_string_value(c));
        adg_sb_puts(sb, "</th>");
    }
    adg_sb_puts(sb, "</tr></thead><tbody>\n");
    size_t r;
    json_t *row;
    json_array_foreach(json_object_get(t, "rows"), r, row) {
        bool hl = false;
        json_array_foreach(row, i, c) hl |= json_string_value(c) && !strcmp(json_string_value(c), "FAULTED");
        adg_sb_puts(sb, hl ? "<tr class=\"hl\">" : "<tr>");
        json_array_foreach(row, i, c) {
            const char *v = json_string_value(c);
            bool nm = v && !strncmp(v, "not measured", 12);
            adg_sb_puts(sb, nm ? "<td class=\"nm\">" : "<td>");
            esc(sb, v);
            adg_sb_puts(sb, "</td>");
        }
        adg_sb_puts(sb, "</tr>\n");
    }
    adg_sb_puts(sb, "</tbody></table>\n");
}

static void legend(adg_strbuf *sb, const json_t *series)
{
    adg_sb_puts(sb, "<div class=\"legend\">");
    size_t i;
    json_t *s;
    json_array_foreach(series, i, s) {
        adg_sb_printf(sb, "<span><i style=\"background:%s\"></i>", palette[i % NPAL]);
        esc(sb, str(s, "name"));
        adg_sb_puts(sb, "</span>");
    }
    adg_sb_puts(sb, "</div>");
}

static void chart_title(adg_strbuf *sb, const json_t *c)
{
    adg_sb_puts(sb, "<figure class=\"chart\"><figcaption>");
    esc(sb, str(c, "title"));
    if (*str(c, "unit")) {
        adg_sb_puts(sb, " (");
        esc(sb, str(c, "unit"));
        adg_sb_puts(sb, ")");
    }
    adg_sb_puts(sb, "</figcaption>");
}

static void lines(adg_strbuf *sb, const json_t *c)
{
    const double W = 760, H = 240, L = 56, R = 12, T = 12, B = 28;
    double tmax = 0, vmax = 0;
    size_t i, k;
    json_t *s, *p;
    json_array_foreach(json_object_get(c, "series"), i, s) json_array_foreach(json_object_get(s, "points"), k, p)
    {
        double t = json_number_value(json_array_get(p, 0)), v = json_number_value(json_array_get(p, 1));
        if (isfinite(t) && t > tmax)
            tmax = t;
        if (isfinite(v) && v > vmax)
            vmax = v;
    }
    json_array_foreach(json_object_get(c, "bands"), i, p) {
        double t1 = json_number_value(json_object_get(p, "t1"));
        if (t1 > tmax)
            tmax = t1;
    }
    if (tmax <= 0)
        tmax = 1;
    if (vmax <= 0)
        vmax = 1;
    vmax *= 1.1;
    chart_title(sb, c);
    adg_sb_printf(sb, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                      "role=\"img\">",
                  W, H, W, H);
    double pw = W - L - R, ph = H - T - B;
#define X(t) (L + (t) / tmax * pw)
#define Y(v) (T + ph - (v) / vmax * ph)
    json_array_foreach(json_object_get(c, "bands"), i, p) {
        double t0 = json_number_value(json_object_get(p, "t0")), t1 = json_number_value(json_object_get(p, "t1"));
        bool prompt = !strcmp(str(p, "label"), "prompt");
        adg_sb_printf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", X(t0), T,
                      X(t1) - X(t0) < 0.5 ? 0.5 : X(t1) - X(t0), ph, prompt ? "#fdf2d0" : "#e4f1e4");
        esc(sb, str(p, "label"));
        adg_sb_puts(sb, "</title></rect>");
    }
    for (int g = 0; g <= 4; g++) {
        double v = vmax * g / 4;
        adg_sb_printf(sb, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", L, W - R, Y(v), Y(v));
        adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%.3g</text>", L - 4, Y(v) + 4, v);
    }
    for (int g = 0; g <= 5; g++) {
        double t = tmax * g / 5;
        adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">%.3g s</text>", X(t), H - 8, t);
    }
    json_array_foreach(json_object_get(c, "series"), i, s) {
        adg_sb_printf(sb, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" points=\"", palette[i % NPAL]);
        json_array_foreach(json_object_get(s, "points"), k, p) {
            double t = json_number_value(json_array_get(p, 0)), v = json_number_value(json_array_get(p, 1));
            if (isfinite(t) && isfinite(v))
                adg_sb_printf(sb, "%.1f,%.1f ", X(t), Y(v < 0 ? 0 : v));
        }
        adg_sb_puts(sb, "\"><title>");
        esc(sb, str(s, "name"));
        adg_sb_puts(sb, "</title></polyline>");
    }
#undef X
#undef Y
    adg_sb_puts(sb, "</svg>");
    legend(sb, json_object_get(c, "series"));
    adg_sb_puts(sb, "</figure>\n");
}

/* Horizontal bars: one row per label, one bar per series. */
static void bars(adg_strbuf *sb, const json_t *c)
{
    json_t *series = json_object_get(c, "series");
    size_t ns = json_array_size(series);
    json_t *labels = json_array();
    double max = 0;
    size_t i, k;
    json_t *s, *v;
    json_array_foreach(series, i, s) json_array_foreach(json_object_get(s, "values"), k, v)
    {
        double x = json_number_value(json_object_get(v, "value"));
        if (x > max)
            max = x;
        bool seen = false;
        size_t j;
        json_t *l;
        json_array_foreach(labels, j, l) seen |= !strcmp(json_string_value(l), str(v, "label"));
        if (!seen)
            json_array_append_new(labels, json_string(str(v, "label")));
    }
    size_t nl = json_array_size(labels);
    if (!nl || max <= 0) {
        json_decref(labels);
        return;
    }
    const double W = 760, L = 200, R = 90, bh = 12, gap = 8;
    double rowh = bh * (double)ns + gap, H = 10 + rowh * (double)nl;
    chart_title(sb, c);
    adg_sb_printf(sb, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                      "role=\"img\">",
                  W, H, W, H);
    json_t *l;
    json_array_foreach(labels, k, l) {
        double y = 5 + rowh * (double)k;
        adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\" text-anchor=\"end\">", L - 6,
                      y + bh * (double)ns / 2 + 4);
        char cut[40];
        snprintf(cut, sizeof cut, "%.32s", json_string_value(l));
        esc(sb, cut);
        adg_sb_puts(sb, "</text>");
        json_array_foreach(series, i, s) {
            double x = 0;
            size_t j;
            json_t *vv;
            json_array_foreach(json_object_get(s, "values"), j, vv) if (!strcmp(str(vv, "label"), json_string_value(l)))
                x = json_number_value(json_object_get(vv, "value"));
            double w = (W - L - R) * x / max;
            char num[48];
            adg_sb_printf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", L,
                          y + bh * (double)i, w, bh - 1, palette[i % NPAL]);
            esc(sb, str(s, "name"));
            adg_sb_puts(sb, ": ");
            esc(sb, json_string_value(l));
            adg_sb_printf(sb, " %s</title></rect>", rep_fmt_num(x, str(c, "unit"), num, sizeof num));
            adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\">%s</text>", L + w + 4, y + bh * (double)i + bh - 2,
                          num);
        }
    }
    adg_sb_puts(sb, "</svg>");
    if (ns > 1)
        legend(sb, series);
    adg_sb_puts(sb, "</figure>\n");
    json_decref(labels);
}

/* Shares: one stacked 100% bar per series. */
static void shares(adg_strbuf *sb, const json_t *c)
{
    json_t *series = json_object_get(c, "series");
    size_t ns = json_array_size(series);
    if (!ns)
        return;
    const double W = 760, L = 200, R = 12, bh = 22;
    double H = 8 + (bh + 8) * (double)ns;
    chart_title(sb, c);
    adg_sb_printf(sb, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
                      "role=\"img\">",
                  W, H, W, H);
    size_t i, k;
    json_t *s, *v;
    json_t *labels = NULL;
    json_array_foreach(series, i, s) {
        double y = 4 + (bh + 8) * (double)i, x = L;
        adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\" text-anchor=\"end\">", L - 6, y + bh / 2 + 4);
        char cut[40];
        snprintf(cut, sizeof cut, "%.32s", str(s, "name"));
        esc(sb, cut);
        adg_sb_puts(sb, "</text>");
        if (!labels)
            labels = json_object_get(s, "values");
        json_array_foreach(json_object_get(s, "values"), k, v) {
            double p = json_number_value(json_object_get(v, "value"));
            double w = (W - L - R) * (p < 0 ? 0 : p > 100 ? 100 : p) / 100;
            adg_sb_printf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x, y, w, bh,
                          palette[k % NPAL]);
            esc(sb, str(v, "label"));
            adg_sb_printf(sb, " %.1f%%</title></rect>", p);
            if (w > 34)
                adg_sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"in\">%.0f%%</text>", x + 3, y + bh / 2 + 4, p);
            x += w;
        }
    }
    adg_sb_puts(sb, "</svg><div class=\"legend\">");
    json_array_foreach(labels, k, v) {
        adg_sb_printf(sb, "<span><i style=\"background:%s\"></i>", palette[k % NPAL]);
        esc(sb, str(v, "label"));
        adg_sb_puts(sb, "</span>");
    }
    adg_sb_puts(sb, "</div></figure>\n");
}

static const char css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;"
    "padding:0 16px;color:#1d1d1f}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}"
    ".conclusion{background:#f4f6fa;border-left:4px solid #1f77b4;padding:10px 14px}"
    "table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}caption{text-align:left;font-style:italic;"
    "padding:2px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}tr.hl td{background:#fde2e2;font-weight:600}td.nm{color:#8a6d3b;font-style:italic}"
    ".finding{border:1px solid #ddd;border-left-width:6px;padding:8px 12px;margin:10px 0;border-radius:3px}"
    ".critical{border-left-color:#d62728}.warning{border-left-color:#ff9f1c}.info{border-left-color:#1f77b4}"
    ".sev{font-weight:600;text-transform:uppercase;font-size:12px;margin-right:6px}"
    ".finding code{background:#f2f2f2;padding:0 4px}"
    "figure.chart{margin:10px 0 18px}figcaption{font-weight:600;margin-bottom:4px}"
    "svg{max-width:100%;height:auto;background:#fff}svg .grid{stroke:#e5e5e5}svg .ax{font-size:10px;fill:#555}"
    "svg .lab{font-size:11px;fill:#222}svg .in{font-size:10px;fill:#fff}"
    ".legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;"
    "margin-right:4px}footer{color:#666;font-size:12px;margin-top:30px}";

char *rep_render_html(const json_t *doc)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_puts(&sb, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
                     "'unsafe-inline'; img-src data:\">"
                     "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
    esc(&sb, str(doc, "title"));
    adg_sb_printf(&sb, "</title><style>%s</style></head><body>\n<h1>", css);
    esc(&sb, str(doc, "title"));
    adg_sb_puts(&sb, "</h1>\n<p class=\"conclusion\"><b>Conclusion:</b> ");
    esc(&sb, str(doc, "conclusion"));
    json_t *v = json_object_get(doc, "verdict");
    adg_sb_printf(&sb, "</p>\n<p>Findings: %lld critical, %lld warning, %lld info.</p>\n<h2>Findings</h2>\n",
                  (long long)json_integer_value(json_object_get(v, "critical")),
                  (long long)json_integer_value(json_object_get(v, "warning")),
                  (long long)json_integer_value(json_object_get(v, "info")));
    size_t i;
    json_t *x;
    if (!json_array_size(json_object_get(doc, "findings")))
        adg_sb_puts(&sb, "<p>No rule applied to what the record(s) measured.</p>\n");
    json_array_foreach(json_object_get(doc, "findings"), i, x) {
        const char *sev = str(x, "severity");
        adg_sb_printf(&sb, "<div class=\"finding %s\"><span class=\"sev\">%s</span><b>",
                      !strcmp(sev, "critical") ? "critical" : !strcmp(sev, "warning") ? "warning" : "info",
                      !strcmp(sev, "critical") ? "critical" : !strcmp(sev, "warning") ? "warning" : "info");
        esc(&sb, str(x, "title"));
        adg_sb_puts(&sb, "</b>");
        if (*str(x, "run")) {
            adg_sb_puts(&sb, " (");
            esc(&sb, str(x, "run"));
            adg_sb_puts(&sb, " run)");
        }
        adg_sb_puts(&sb, " <code>");
        esc(&sb, str(x, "id"));
        adg_sb_puts(&sb, "</code><p>");
        esc(&sb, str(x, "evidence"));
        adg_sb_puts(&sb, "</p><p><b>Try:</b> ");
        esc(&sb, str(x, "recommendation"));
        adg_sb_puts(&sb, "</p></div>\n");
    }
    json_t *s;
    json_array_foreach(json_object_get(doc, "sections"), i, s) {
        adg_sb_puts(&sb, "<section><h2>");
        esc(&sb, str(s, "title"));
        adg_sb_puts(&sb, "</h2>\n");
        size_t k;
        json_t *b;
        json_array_foreach(json_object_get(s, "blocks"), k, b) {
            const char *ty = str(b, "type");
            if (!strcmp(ty, "text")) {
                const char *t = str(b, "text");
                adg_sb_puts(&sb, !strncmp(t, "not measured", 12) || strstr(t, ": not measured") ? "<p class=\"nm\">" : "<p>");
                esc(&sb, t);
                adg_sb_puts(&sb, "</p>\n");
            } else if (!strcmp(ty, "table"))
                table(&sb, b);
            else if (!strcmp(ty, "chart")) {
                const char *ch = str(b, "chart");
                if (!strcmp(ch, "lines"))
                    lines(&sb, b);
                else if (!strcmp(ch, "bars"))
                    bars(&sb, b);
                else if (!strcmp(ch, "shares"))
                    shares(&sb, b);
            }
        }
        adg_sb_puts(&sb, "</section>\n");
    }
    json_t *nm = json_object_get(doc, "not_measured");
    if (json_array_size(nm)) {
        adg_sb_puts(&sb, "<section><h2>Not measured</h2><ul>\n");
        json_array_foreach(nm, i, x) {
            adg_sb_puts(&sb, "<li>");
            if (*str(x, "run")) {
                esc(&sb, str(x, "run"));
                adg_sb_puts(&sb, ": ");
            }
            adg_sb_puts(&sb, "<b>");
            esc(&sb, str(x, "what"));
            adg_sb_puts(&sb, "</b> (");
            esc(&sb, str(x, "collector"));
            adg_sb_puts(&sb, "): ");
            esc(&sb, str(x, "reason"));
            adg_sb_puts(&sb, "</li>\n");
        }
        adg_sb_puts(&sb, "</ul></section>\n");
    }
    adg_sb_puts(&sb, "<footer>");
    rep_render_inputs(&sb, doc, esc, "<br>");
    adg_sb_puts(&sb, "Report by amxdiag ");
    esc(&sb, json_string_value(json_object_get(json_object_get(doc, "tool"), "version")));
    adg_sb_puts(&sb, ", ");
    esc(&sb, str(doc, "created"));
    adg_sb_puts(&sb, ", schema ");
    esc(&sb, str(doc, "schema"));
    adg_sb_puts(&sb, ".</footer>\n</body></html>\n");
    if (sb.failed) {
        adg_sb_free(&sb);
        return NULL;
    }
    return adg_sb_take(&sb);
}

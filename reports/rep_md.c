/* Markdown rendering of a report document (GitHub-flavoured: issues and chats).  Every
 * string from a record is escaped: kernel and function names are untrusted and must not
 * become markup (a '<' would start an HTML tag, a '|' a table cell). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/adg_util.h"
#include "reports/rep_internal.h"

static void esc(adg_strbuf *sb, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '|': adg_sb_puts(sb, "\\|"); break;
        case '<': adg_sb_puts(sb, "&lt;"); break;
        case '>': adg_sb_puts(sb, "&gt;"); break;
        case '&': adg_sb_puts(sb, "&amp;"); break;
        case '*': adg_sb_puts(sb, "\\*"); break;
        case '`': adg_sb_puts(sb, "\\`"); break;
        case '[': adg_sb_puts(sb, "\\["); break;
        case ']': adg_sb_puts(sb, "\\]"); break;
        case '\\': adg_sb_puts(sb, "\\\\"); break;
        case '\n':
        case '\r': adg_sb_puts(sb, " "); break;
        default: adg_sb_append(sb, s, 1);
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
    const json_t *cols = json_object_get(t, "columns");
    size_t n = json_array_size(cols);
    if (*str(t, "caption")) {
        adg_sb_puts(sb, "*");
        esc(sb, str(t, "caption"));
        adg_sb_puts(sb, "*\n\n");
    }
    adg_sb_puts(sb, "|");
    for (size_t i = 0; i < n; i++) {
        adg_sb_puts(sb, " ");
        esc(sb, json_string_value(json_array_get(cols, i)));
        adg_sb_puts(sb, " |");
    }
    adg_sb_puts(sb, "\n|");
    for (size_t i = 0; i < n; i++)
        adg_sb_puts(sb, "---|");
    adg_sb_puts(sb, "\n");
    size_t r;
    json_t *row;
    json_array_foreach(json_object_get(t, "rows"), r, row) {
        adg_sb_puts(sb, "|");
        for (size_t i = 0; i < n; i++) {
            adg_sb_puts(sb, " ");
            esc(sb, json_string_value(json_array_get(row, i)));
            adg_sb_puts(sb, " |");
        }
        adg_sb_puts(sb, "\n");
    }
    adg_sb_puts(sb, "\n");
}

/* Bars and shares as text bars in a code block (names escaped for the block: no backticks). */
static void text_bars(adg_strbuf *sb, const json_t *c)
{
    double max = 0;
    size_t si, vi;
    json_t *s, *v;
    size_t w = 8;
    json_array_foreach(json_object_get(c, "series"), si, s) json_array_foreach(json_object_get(s, "values"), vi, v)
    {
        double x = json_number_value(json_object_get(v, "value"));
        if (x > max)
            max = x;
        size_t l = strlen(str(v, "label"));
        if (l > w)
            w = l < 28 ? l : 28;
    }
    if (max <= 0)
        return;
    const char *chart = str(c, "chart");
    bool shares = !strcmp(chart, "shares");
    adg_sb_puts(sb, "*");
    esc(sb, str(c, "title"));
    adg_sb_puts(sb, "*\n\n```\n");
    json_array_foreach(json_object_get(c, "series"), si, s) {
        if (json_array_size(json_object_get(c, "series")) > 1) {
            for (const char *p = str(s, "name"); *p; p++)
                if (*p != '`')
                    adg_sb_append(sb, p, 1);
            adg_sb_puts(sb, "\n");
        }
        json_array_foreach(json_object_get(s, "values"), vi, v) {
            double x = json_number_value(json_object_get(v, "value"));
            char lab[32];
            snprintf(lab, sizeof lab, "%.28s", str(v, "label"));
            for (char *p = lab; *p; p++)
                if (*p == '`' || (unsigned char)*p < 32)
                    *p = '?';
            int n = (int)lround(40.0 * x / (shares ? 100.0 : max));
            adg_sb_printf(sb, "  %-*s ", (int)w, lab);
            for (int k = 0; k < n; k++)
                adg_sb_puts(sb, "\u2588");
            char num[48];
            adg_sb_printf(sb, "%s %s\n", n ? "" : "\u258f", rep_fmt_num(x, str(c, "unit"), num, sizeof num));
        }
    }
    adg_sb_puts(sb, "```\n\n");
}

static void lines_summary(adg_strbuf *sb, const json_t *c)
{
    adg_sb_puts(sb, "*");
    esc(sb, str(c, "title"));
    adg_sb_puts(sb, "* (chart in the HTML report): ");
    size_t si;
    json_t *s;
    json_array_foreach(json_object_get(c, "series"), si, s) {
        double mn = INFINITY, mx = -INFINITY, sum = 0;
        size_t n = json_array_size(json_object_get(s, "points"));
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(s, "points"), k, p) {
            double v = json_number_value(json_array_get(p, 1));
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            sum += v;
        }
        if (!n)
            continue;
        adg_sb_puts(sb, si ? "; " : "");
        esc(sb, str(s, "name"));
        adg_sb_printf(sb, " min %.3g / mean %.3g / max %.3g %s (%zu samples)", mn, sum / n, mx, str(c, "unit"), n);
    }
    adg_sb_puts(sb, "\n\n");
}

static void findings(adg_strbuf *sb, const json_t *doc)
{
    json_t *f = json_object_get(doc, "findings");
    adg_sb_puts(sb, "## Findings\n\n");
    if (!json_array_size(f)) {
        adg_sb_puts(sb, "No rule applied to what the record(s) measured.\n\n");
        return;
    }
    size_t i;
    json_t *x;
    json_array_foreach(f, i, x) {
        adg_sb_printf(sb, "%zu. **%s — ", i + 1, str(x, "severity"));
        esc(sb, str(x, "title"));
        adg_sb_puts(sb, "**");
        if (*str(x, "run")) {
            adg_sb_puts(sb, " (");
            esc(sb, str(x, "run"));
            adg_sb_puts(sb, " run)");
        }
        adg_sb_printf(sb, " `%s`\n   - evidence: ", str(x, "id"));
        esc(sb, str(x, "evidence"));
        adg_sb_puts(sb, "\n   - try: ");
        esc(sb, str(x, "recommendation"));
        adg_sb_puts(sb, "\n");
    }
    adg_sb_puts(sb, "\n");
}

char *rep_render_markdown(const json_t *doc)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_puts(&sb, "# ");
    esc(&sb, str(doc, "title"));
    adg_sb_puts(&sb, "\n\n**Conclusion:** ");
    esc(&sb, str(doc, "conclusion"));
    json_t *v = json_object_get(doc, "verdict");
    adg_sb_printf(&sb, "\n\nFindings: %lld critical, %lld warning, %lld info.\n\n",
                  (long long)json_integer_value(json_object_get(v, "critical")),
                  (long long)json_integer_value(json_object_get(v, "warning")),
                  (long long)json_integer_value(json_object_get(v, "info")));
    findings(&sb, doc);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(doc, "sections"), i, s) {
        adg_sb_puts(&sb, "## ");
        esc(&sb, str(s, "title"));
        adg_sb_puts(&sb, "\n\n");
        size_t k;
        json_t *b;
        json_array_foreach(json_object_get(s, "blocks"), k, b) {
            const char *ty = str(b, "type");
            if (!strcmp(ty, "text")) {
                esc(&sb, str(b, "text"));
                adg_sb_puts(&sb, "\n\n");
            } else if (!strcmp(ty, "table"))
                table(&sb, b);
            else if (!strcmp(ty, "chart")) {
                if (!strcmp(str(b, "chart"), "lines"))
                    lines_summary(&sb, b);
                else
                    text_bars(&sb, b);
            }
        }
    }
    json_t *nm = json_object_get(doc, "not_measured");
    if (json_array_size(nm)) {
        adg_sb_puts(&sb, "## Not measured\n\n");
        json_t *x;
        json_array_foreach(nm, i, x) {
            adg_sb_puts(&sb, "- ");
            if (*str(x, "run")) {
                esc(&sb, str(x, "run"));
                adg_sb_puts(&sb, ": ");
            }
            esc(&sb, str(x, "what"));
            adg_sb_puts(&sb, " (");
            esc(&sb, str(x, "collector"));
            adg_sb_puts(&sb, "): ");
            esc(&sb, str(x, "reason"));
            adg_sb_puts(&sb, "\n");
        }
        adg_sb_puts(&sb, "\n");
    }
    adg_sb_puts(&sb, "---\n");
    rep_render_inputs(&sb, doc, esc, "  \n");
    adg_sb_printf(&sb, "Report by amxdiag %s, %s, schema %s.\n",
                  json_string_value(json_object_get(json_object_get(doc, "tool"), "version")), str(doc, "created"),
                  str(doc, "schema"));
    if (sb.failed) {
        adg_sb_free(&sb);
        return NULL;
    }
    return adg_sb_take(&sb);
}

/* The report document: the JSON format ("amxdiag.report/1") that the Markdown and HTML
 * renderers draw.  Blocks: text, table (string cells, already formatted), chart (numbers). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "adg_version.h"
#include "common/adg_util.h"
#include "reports/rep_internal.h"

json_t *rep_doc_new(const char *kind, const char *title)
{
    char now[32];
    adg_utc_iso8601(now, sizeof now);
    return json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:s,s:[],s:[],s:[],s:[]}", "schema", REP_SCHEMA, "kind", kind, "title",
                     title, "tool", "name", "amxdiag", "version", AMXDIAG_VERSION, "created", now, "inputs", "findings",
                     "sections", "not_measured");
}

json_t *rep_doc_section(json_t *doc, const char *id, const char *title)
{
    json_t *s = json_pack("{s:s,s:s,s:[]}", "id", id, "title", title, "blocks");
    json_array_append_new(json_object_get(doc, "sections"), s);
    return s;
}

void rep_doc_text(json_t *section, const char *fmt, ...)
{
    adg_strbuf sb;
    adg_sb_init(&sb);
    va_list ap;
    va_start(ap, fmt);
    adg_sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    json_array_append_new(json_object_get(section, "blocks"),
                          json_pack("{s:s,s:s}", "type", "text", "text", sb.buf ? sb.buf : ""));
    adg_sb_free(&sb);
}

json_t *rep_doc_table(json_t *section, const char *caption, const char *const *columns, size_t ncol)
{
    json_t *cols = json_array();
    for (size_t i = 0; i < ncol; i++)
        json_array_append_new(cols, json_string(columns[i]));
    json_t *t = json_pack("{s:s,s:s,s:o,s:[]}", "type", "table", "caption", caption ? caption : "", "columns", cols,
                          "rows");
    json_array_append_new(json_object_get(section, "blocks"), t);
    return t;
}

void rep_table_row(json_t *table, size_t ncol, ...)
{
    json_t *row = json_array();
    va_list ap;
    va_start(ap, ncol);
    for (size_t i = 0; i < ncol; i++) {
        const char *c = va_arg(ap, const char *);
        json_array_append_new(row, json_string(c ? c : ""));
    }
    va_end(ap);
    json_array_append_new(json_object_get(table, "rows"), row);
}

json_t *rep_doc_chart(json_t *section, const char *chart, const char *title, const char *unit)
{
    json_t *c = json_pack("{s:s,s:s,s:s,s:s,s:[]}", "type", "chart", "chart", chart, "title", title, "unit", unit,
                          "series");
    json_array_append_new(json_object_get(section, "blocks"), c);
    return c;
}

void rep_doc_input(json_t *doc, const rep_run *r, const char *role)
{
    char cmd[1024];
    rep_command_line(r, cmd, sizeof cmd);
    json_t *in = json_pack("{s:s,s:s,s:s}", "path", r->path, "label", r->label, "command", cmd);
    static const char *const keys[] = {"created", "host", "status"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(keys); i++) {
        const char *v = json_string_value(json_object_get(r->rec, keys[i]));
        json_object_set_new(in, keys[i], v ? json_string(v) : json_null());
    }
    const char *cpu = json_string_value(json_object_get(json_object_get(r->rec, "machine"), "cpu_model"));
    json_object_set_new(in, "cpu", cpu ? json_string(cpu) : json_null());
    if (role)
        json_object_set_new(in, "role", json_string(role));
    json_array_append_new(json_object_get(doc, "inputs"), in);
}

static const char *nz(const char *s)
{
    return s ? s : "?";
}

void rep_doc_not_measured(json_t *doc, const rep_run *r, const char *role)
{
    size_t i;
    json_t *u;
    json_array_foreach(json_object_get(r->rec, "unavailable"), i, u) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "collector",
                              nz(json_string_value(json_object_get(u, "collector"))), "what",
                              nz(json_string_value(json_object_get(u, "what"))), "reason",
                              nz(json_string_value(json_object_get(u, "reason"))));
        if (role)
            json_object_set_new(o, "run", json_string(role));
        json_array_append_new(json_object_get(doc, "not_measured"), o);
    }
}

void rep_doc_finish(json_t *doc, json_t *findings, const char *conclusion)
{
    rep_findings_sort(findings);
    int n[3] = {0, 0, 0};
    size_t i;
    json_t *f;
    json_array_foreach(findings, i, f) {
        const char *s = json_string_value(json_object_get(f, "severity"));
        n[s && !strcmp(s, "critical") ? 2 : s && !strcmp(s, "warning") ? 1 : 0]++;
    }
    json_object_set(doc, "findings", findings);
    json_object_set_new(doc, "verdict", json_pack("{s:i,s:i,s:i}", "critical", n[2], "warning", n[1], "info", n[0]));
    json_object_set_new(doc, "conclusion", json_string(conclusion ? conclusion : ""));
}

const char *rep_fmt_num(double v, const char *unit, char *buf, size_t len)
{
    if (!isfinite(v)) {
        snprintf(buf, len, "n/a");
        return buf;
    }
    if (!strcmp(unit, "B"))
        return adg_fmt_bytes(v, buf, len);
    if (!strcmp(unit, "B/s"))
        snprintf(buf, len, "%.1f GB/s", v / 1e9);
    else if (!strcmp(unit, "ops/s"))
        snprintf(buf, len, "%.2f Tops/s", v / 1e12);
    else if (!strcmp(unit, "%"))
        snprintf(buf, len, "%.1f%%", v);
    else if (!strcmp(unit, "s"))
        snprintf(buf, len, v < 0.01 ? "%.2f ms" : "%.3f s", v < 0.01 ? v * 1e3 : v);
    else if (!strcmp(unit, "count"))
        snprintf(buf, len, "%.0f", v);
    else if (!strcmp(unit, "t/s"))
        snprintf(buf, len, "%.2f t/s", v);
    else
        snprintf(buf, len, "%.3g%s%s", v, *unit ? " " : "", unit);
    return buf;
}

const char *rep_fmt_pct(double pct, char *buf, size_t len)
{
    if (!isfinite(pct))
        snprintf(buf, len, "n/a");
    else
        snprintf(buf, len, "%+.1f%%", pct);
    return buf;
}

void rep_render_inputs(adg_strbuf *sb, const json_t *doc, rep_esc_fn esc, const char *eol)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(doc, "inputs"), i, x) {
        const char *role = json_string_value(json_object_get(x, "role"));
        adg_sb_puts(sb, "Input");
        if (role && *role) {
            adg_sb_puts(sb, " (");
            esc(sb, role);
            adg_sb_puts(sb, ")");
        }
        static const char *const parts[][2] = {{": ", "path"}, {", recorded ", "created"}, {" on ", "host"}};
        for (size_t k = 0; k < 3; k++) {
            const char *v = json_string_value(json_object_get(x, parts[k][1]));
            adg_sb_puts(sb, parts[k][0]);
            esc(sb, v ? v : "");
        }
        adg_sb_puts(sb, ".");
        adg_sb_puts(sb, eol);
    }
}

/* The public builders (reports/reports.h): load, build, render. */
#include <stdlib.h>
#include <string.h>

#include "reports/rep_internal.h"

adg_error *rep_report_run(const char *path, json_t **doc)
{
    *doc = NULL;
    rep_run *r;
    adg_error *e = rep_run_load(path, &r);
    if (e)
        return e;
    *doc = rep_build_run(r);
    rep_run_free(r);
    return *doc ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory building the report");
}

adg_error *rep_report_compare(const char *base_path, const char *new_path, json_t **doc)
{
    *doc = NULL;
    rep_run *a, *b;
    adg_error *e = rep_run_load(base_path, &a);
    if (e)
        return adg_error_prefix(e, "base");
    if ((e = rep_run_load(new_path, &b))) {
        rep_run_free(a);
        return adg_error_prefix(e, "new");
    }
    *doc = rep_build_compare(a, b);
    rep_run_free(a);
    rep_run_free(b);
    return *doc ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory building the report");
}

adg_error *rep_report_crash(const char *path, json_t **doc)
{
    *doc = NULL;
    rep_run *r;
    adg_error *e = rep_run_load(path, &r);
    if (e)
        return e;
    e = rep_build_crash(r, doc);
    rep_run_free(r);
    return e;
}

adg_error *rep_render(const json_t *doc, rep_format format, char **text)
{
    *text = NULL;
    switch (format) {
    case REP_FORMAT_MD: *text = rep_render_markdown(doc); break;
    case REP_FORMAT_HTML: *text = rep_render_html(doc); break;
    case REP_FORMAT_JSON: {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s) {
            size_t n = strlen(s);
            char *t = realloc(s, n + 2);
            if (t) {
                t[n] = '\n';
                t[n + 1] = 0;
                s = t;
            }
        }
        *text = s;
        break;
    }
    }
    return *text ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory rendering the report");
}

int rep_doc_exit_code(const json_t *doc)
{
    return json_integer_value(json_object_get(json_object_get(doc, "verdict"), "critical")) > 0 ? 1 : 0;
}

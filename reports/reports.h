/* Public surface of reports/: `amxdiag report` and the report builders behind it.
 *
 * A report is first a document (the JSON format, schema "amxdiag.report/1",
 * docs/reports.md); Markdown and HTML are renderings of that document. */
#ifndef REPORTS_H
#define REPORTS_H

#include <jansson.h>

#include "common/adg_error.h"

#define REP_SCHEMA "amxdiag.report/1"

typedef enum rep_format { REP_FORMAT_MD, REP_FORMAT_HTML, REP_FORMAT_JSON } rep_format;

/* Each builder loads the record(s), runs the findings rules and returns the document (new
 * reference).  Bad input (unreadable, corrupt, foreign, or missing what the mode needs) is
 * an error and no document. */
adg_error *rep_report_run(const char *path, json_t **doc);
adg_error *rep_report_compare(const char *base_path, const char *new_path, json_t **doc);
adg_error *rep_report_crash(const char *path, json_t **doc);

/* Renders a document (heap string, caller frees). */
adg_error *rep_render(const json_t *doc, rep_format format, char **text);

/* 1 when the document holds a finding of severity "critical", else 0 (docs/reports.md). */
int rep_doc_exit_code(const json_t *doc);

int rep_report_cmd_main(int argc, char **argv);

#endif

/* Internals of reports/: a loaded run, the facts read from it, the rules, the document.
 *
 * Flow: rep_run_load (adg_record_load + adg_bus_from_record) -> facts by name through the
 * one mapping table in rep_sources.c -> rules (rep_rules.c) -> a report document, which is
 * the JSON format itself ("amxdiag.report/1") -> Markdown or HTML renderers. */
#ifndef REP_INTERNAL_H
#define REP_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "common/adg_util.h"
#include "reports/reports.h"

/* ---- one loaded run record ---- */

typedef struct rep_window {
    char phase[16];          /* "prompt", "generation" */
    double t0, t1;           /* seconds since the run's start */
} rep_window;

typedef struct rep_op {
    char phase[16];
    int layer;               /* -1 outside the repeating layers */
    char op[32], backend[16], impl[16], variant[40];
    double calls, seconds, bytes, flops;
} rep_op;

typedef struct rep_run {
    char *path;
    json_t *rec;             /* the whole record */
    adg_bus *bus;            /* rebuilt from it (series by metric name) */
    char label[160];         /* the setting that tells this run apart ("--cpu-kernels amx") */
    rep_window *win;
    size_t nwin;
    rep_op *ops;
    size_t nops;
} rep_run;

adg_error *rep_run_load(const char *path, rep_run **out);
void rep_run_free(rep_run *r);
/* Gives the two runs of a comparison labels from what differs in their commands/config. */
void rep_runs_label(rep_run *base, rep_run *nw);

/* ---- facts: values found in a record by name (rep_sources.c holds the mapping) ---- */

typedef struct rep_val {
    bool ok;
    double v;
    const char *src;         /* where it came from (static text) */
    char why[320];           /* when !ok: "not measured: <reason>" */
} rep_val;

/* Looks a fact up by its name ("tps.generation", "isa.amx", "mem.bw.generation", ...); the
 * names and their sources are the table in rep_sources.c (rep_fact_names lists them). */
rep_val rep_fact(const rep_run *r, const char *name);
size_t rep_fact_count(void);
const char *rep_fact_name(size_t i);
const char *rep_fact_unit(const char *name);
const char *rep_fact_label(const char *name);
/* The reason the record gives for not measuring something (its unavailable list), matching
 * any of the names (a metric, what, or collector); NULL when none. */
const char *rep_unavailable_reason(const rep_run *r, const char *const *names);

/* String facts: the CPU kernels / threads setting, the command line. */
const char *rep_setting_cpu_kernels(const rep_run *r, char *buf, size_t len);
int rep_setting_threads(const rep_run *r);
void rep_command_line(const rep_run *r, char *buf, size_t len);

/* Sums the op records: per op kind (layer = INT_MIN sums layers) for a phase ("" = all). */
double rep_ops_seconds(const rep_run *r, const char *phase, const char *op, int layer, const char *impl);
double rep_ops_bytes(const rep_run *r, const char *phase, const char *op, const char *impl);
double rep_ops_calls(const rep_run *r, const char *phase, const char *op, const char *impl);
/* impl "amx": any AMX kernel (impl or variant names amx); NULL: any; else that impl exactly */
bool rep_op_impl_match(const rep_op *o, const char *impl);
#define REP_ANY_LAYER (-1000)

/* Mean of a metric over the samples inside a phase's windows ("" = the whole run); instances
 * are summed tick by tick when sum_instances.  false when no sample falls inside. */
bool rep_metric_mean(const rep_run *r, const char *metric, const char *phase, bool sum_instances, double *out);

/* ---- rules ---- */

typedef enum { REP_SEV_INFO = 0, REP_SEV_WARNING = 1, REP_SEV_CRITICAL = 2 } rep_severity;
const char *rep_severity_name(rep_severity s);

typedef struct rep_ctx {
    const rep_run *run;      /* the run the rule looks at (single-run rules) */
    const rep_run *base, *nw;/* both, in a comparison (NULL otherwise) */
    const char *role;        /* "base", "new" or NULL */
} rep_ctx;

/* A rule fills a finding object (numbers, evidence, recommendation) and returns true when
 * it applies.  Severity and title come from its row unless it sets them. */
typedef bool (*rep_rule_fn)(const rep_ctx *c, json_t *finding);

enum { REP_MODE_RUN = 1, REP_MODE_COMPARE = 2, REP_MODE_CRASH = 4 };

typedef struct rep_rule {
    const char *id;
    rep_severity severity;
    unsigned modes;          /* which reports run it; compare rules see base and nw */
    const char *title;
    const char *threshold;   /* documented threshold (docs/reports.md) */
    const char *evidence;    /* what it cites */
    const char *remedy;      /* what to try */
    rep_rule_fn fn;
} rep_rule;

size_t rep_rule_count(void);
const rep_rule *rep_rule_at(size_t i);
/* Runs the rules of a mode and appends the findings (severity, most severe first). */
void rep_rules_run(unsigned mode, const rep_ctx *c, json_t *findings);
void rep_findings_sort(json_t *findings);

/* ---- the document (the JSON format) and its blocks ---- */

json_t *rep_doc_new(const char *kind, const char *title);
json_t *rep_doc_section(json_t *doc, const char *id, const char *title);
void rep_doc_text(json_t *section, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A table: columns (strings); rows appended with rep_table_row. */
json_t *rep_doc_table(json_t *section, const char *caption, const char *const *columns, size_t ncol);
void rep_table_row(json_t *table, size_t ncol, ...); /* ncol const char * cells */
json_t *rep_doc_chart(json_t *section, const char *chart, const char *title, const char *unit);
void rep_doc_input(json_t *doc, const rep_run *r, const char *role);
void rep_doc_not_measured(json_t *doc, const rep_run *r, const char *role);
void rep_doc_finish(json_t *doc, json_t *findings, const char *conclusion);
/* The "Input (role): path, recorded T on H." lines of a document, each escaped by the
 * format's own escaper and ended by eol: shared by the Markdown and HTML renderers. */
typedef void (*rep_esc_fn)(adg_strbuf *sb, const char *s);
void rep_render_inputs(adg_strbuf *sb, const json_t *doc, rep_esc_fn esc, const char *eol);

json_t *rep_build_run(rep_run *r);
json_t *rep_build_compare(rep_run *base, rep_run *nw);
adg_error *rep_build_crash(rep_run *r, json_t **out);

/* Number formatting for cells: "63.28", "486.00 MiB", "+12.3%", "n/a". */
const char *rep_fmt_num(double v, const char *unit, char *buf, size_t len);
const char *rep_fmt_pct(double pct, char *buf, size_t len);

/* ---- renderers ---- */

char *rep_render_markdown(const json_t *doc);
char *rep_render_html(const json_t *doc);

#endif

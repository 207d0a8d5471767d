/* The probe's result model: checks with id, status, evidence, explanation and remedy,
 * grouped by section, rendered as a table (human) or as JSON ("amxdiag.probe/1",
 * docs/probe-schema.md). */
#ifndef PROBE_REPORT_H
#define PROBE_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#define PROBE_SCHEMA "amxdiag.probe/1"

typedef enum probe_status {
    PROBE_PASS,
    PROBE_INFO,   /* a fact, not a verdict (identity, topology) */
    PROBE_WARN,
    PROBE_FAIL,
    PROBE_SKIP,   /* could not be evaluated here; the explanation says why */
} probe_status;

const char *probe_status_name(probe_status s);

typedef struct probe_check {
    char *section;      /* "cpu", "amx", "numa", "pmu", "gpu", "binary" */
    char *id;           /* stable, dotted: "amx.xcr0", "gpu.0.support" */
    probe_status status;
    char *title;        /* short: "XCR0 enables tile state" */
    char *evidence;     /* the raw facts: "XCR0=0x602e7 (bit 17 XTILECFG=1, bit 18 XTILEDATA=1)" */
    char *explanation;  /* one line: what the status means */
    char *remedy;       /* what to do; NULL when nothing is to be done */
    json_t *data;       /* structured evidence for --json (may be NULL) */
} probe_check;

typedef struct probe_report {
    probe_check *checks;
    size_t n, cap;
    json_t *facts;      /* {"cpu": {...}, "amx": {...}, ...}: machine facts for records */
} probe_report;

void probe_report_init(probe_report *r);
void probe_report_free(probe_report *r);

/* Adds a check; the evidence is printf-formatted.  remedy may be NULL. Returns the
 * check (so data can be attached) or NULL when out of memory. */
__attribute__((format(printf, 7, 8)))
probe_check *probe_add(probe_report *r, const char *section, const char *id, probe_status st, const char *title,
                       const char *explanation, const char *evidence_fmt, ...);
void probe_check_set_remedy(probe_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Attaches structured evidence; the reference is stolen. */
void probe_check_set_data(probe_check *c, json_t *data);

/* Machine facts (for run records and later commands): facts[section][key] = value (stolen). */
void probe_report_set_fact(probe_report *r, const char *section, const char *key, json_t *value);

const probe_check *probe_report_find(const probe_report *r, const char *id);
/* Counts per status; returns true when any check failed. */
bool probe_report_counts(const probe_report *r, size_t counts[5]);

json_t *probe_report_json(const probe_report *r);
void probe_report_print(const probe_report *r, FILE *out, bool color, bool verbose);

#endif

/* Prometheus text exposition format 0.0.4: the primitives every exporter of amxdiag
 * shares (probe/probe_prom.c for checks and ceilings, reports/prom_bus.c for the bus).
 *
 * Conventions (https://prometheus.io/docs/practices/naming/, docs/fleet.md):
 * - every name starts with "amxdiag_" and uses [a-zA-Z0-9_] only;
 * - values are in base units and the unit ends the name: "_bytes_per_second",
 *   "_seconds", "_bytes", "_ratio" (0..1: a bus metric in "%" is divided by 100),
 *   "_hertz", "_tokens_per_second"; counters end in "_total";
 * - label values escape backslash, double quote and newline; HELP text escapes
 *   backslash and newline; bytes that are not UTF-8 become '?', which Prometheus would
 *   otherwise reject for the whole scrape. */
#ifndef ADG_PROM_H
#define ADG_PROM_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_util.h"

#define ADG_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define ADG_PROM_PREFIX "amxdiag_"
#define ADG_PROM_NAME_MAX 200

/* The Prometheus suffix and scale for one of the bus's units ("%", "B/s", "s", "1",
 * "t/s", ...).  An unknown unit gives suffix "" and scale 1 and returns false (the
 * caller puts the unit into the HELP text instead). */
bool adg_prom_unit(const char *unit, const char **suffix, double *scale);

/* value × scale, dividing for scales below 1 ("%": 41.25 / 100 is 0.4125, while
 * 41.25 × 0.01 prints as 0.41250000000000003). */
double adg_prom_scale(double value, double scale);

/* A metric name from a dotted bus name and its unit: "mem.read_bw" + "B/s" →
 * "amxdiag_mem_read_bw_bytes_per_second", "engine.tokens_per_s" + "t/s" →
 * "amxdiag_engine_tokens_per_second", "gpu.busy" + "%" → "amxdiag_gpu_busy_ratio".
 * Characters outside [a-zA-Z0-9_] become '_', runs of '_' collapse, a unit already
 * spelled at the end of the name is not repeated.  `out` gets at most len-1 bytes
 * (ADG_PROM_NAME_MAX is always enough for names the bus accepts). */
void adg_prom_metric_name(const char *name, const char *unit, char *out, size_t len);

/* True for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) / label name
 * ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", which Prometheus reserves). */
bool adg_prom_valid_metric_name(const char *s);
bool adg_prom_valid_label_name(const char *s);

/* Appends a label value / HELP text, escaped (NULL appends nothing). */
void adg_prom_escape_label(adg_strbuf *sb, const char *value);
void adg_prom_escape_help(adg_strbuf *sb, const char *text);

/* Appends a sample value: the shortest decimal that reads back as the same double;
 * "NaN", "+Inf", "-Inf" as the format spells them. */
void adg_prom_value(adg_strbuf *sb, double v);

/* "# HELP name help\n# TYPE name type\n".  type: "gauge", "counter", "untyped". */
void adg_prom_family(adg_strbuf *sb, const char *name, const char *type, const char *help);

typedef struct adg_prom_label {
    const char *name;
    const char *value;      /* NULL: the label is left out */
} adg_prom_label;

/* "name{l1="v1",l2="v2"} value\n" (no braces without labels). */
void adg_prom_sample(adg_strbuf *sb, const char *name, const adg_prom_label *labels, size_t nlabels, double value);

#endif

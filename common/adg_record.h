/* The run record: one versioned JSON file (schema "amxdiag.run/1", docs/run-record.md)
 * holding the machine facts, the configuration, the metrics registry, the time series,
 * the events, the unavailable collectors and any named sections (hot functions, per-op
 * summaries, crash, ...). */
#ifndef ADG_RECORD_H
#define ADG_RECORD_H

#include <jansson.h>
#include <stdbool.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"

#define ADG_RECORD_SCHEMA_FAMILY "amxdiag.run"
#define ADG_RECORD_SCHEMA_MAJOR 1
#define ADG_RECORD_SCHEMA "amxdiag.run/1"

typedef struct adg_record adg_record;

adg_record *adg_record_new(void);
void adg_record_free(adg_record *r);
/* Adds or replaces a top-level section ("machine", "config", "workload", "hot_functions",
 * "ops", "crash", ...).  The reference to value is stolen. Reserved names (schema, tool,
 * created, metrics, series, events, unavailable, status) are refused. */
adg_error *adg_record_set_section(adg_record *r, const char *name, json_t *value);
json_t *adg_record_section(adg_record *r, const char *name); /* borrowed, NULL if absent */
/* "complete" (default), "interrupted", "workload-failed", "workload-crashed". */
void adg_record_set_status(adg_record *r, const char *status);

/* Builds the whole record from the bus and the sections (new reference). */
json_t *adg_record_build(adg_record *r, adg_bus *bus);
/* Builds and writes atomically. */
adg_error *adg_record_write(adg_record *r, adg_bus *bus, const char *path);

/* Loads and validates a record file (schema, required fields). */
adg_error *adg_record_load(const char *path, json_t **out);

#endif

/* The metrics bus: a registry of named metrics, their time series, and events.
 *
 * Collectors register metrics (name, unit, scope, one-line meaning) and push samples;
 * the TUI, the recorder, the reports and exporters read metrics by name and never know
 * which collector produced them.  A collector that cannot run registers nothing and
 * calls adg_bus_unavailable() with the reason, which every consumer shows.
 *
 * Naming: dotted lower-case, unit not in the name: "cpu.util", "amx.busy",
 * "mem.read_bw", "gpu.busy", "engine.tokens_per_s".  Units: "%", "B/s", "ops/s",
 * "s", "B", "count", "1" (ratio 0..1), "t/s", "Hz", "W", "C" (degrees Celsius).
 *
 * All functions are thread-safe. */
#ifndef ADG_METRICS_H
#define ADG_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

typedef enum adg_scope {
    ADG_SCOPE_MACHINE,
    ADG_SCOPE_PROCESS,
    ADG_SCOPE_THREAD,
    ADG_SCOPE_CPU,
    ADG_SCOPE_NUMA_NODE,
    ADG_SCOPE_SOCKET,
    ADG_SCOPE_GPU,
    ADG_SCOPE_KERNEL,
} adg_scope;

const char *adg_scope_name(adg_scope s);
bool adg_scope_parse(const char *s, adg_scope *out);

typedef struct adg_metric_def {
    const char *name;
    const char *unit;
    adg_scope scope;
    const char *meaning;   /* one line, shown in help panes and reports */
} adg_metric_def;

typedef struct adg_point {
    uint64_t t_ns;          /* since the bus's start (adg_bus_start_ns) */
    double value;
} adg_point;

typedef struct adg_bus adg_bus;

adg_bus *adg_bus_new(void);
void adg_bus_free(adg_bus *bus);
uint64_t adg_bus_start_ns(const adg_bus *bus);   /* CLOCK_MONOTONIC at creation */
uint64_t adg_bus_elapsed_ns(const adg_bus *bus); /* now - start */

/* Registers a metric for `collector`; returns its id (>= 0) or an error when the name is
 * taken by a different definition.  Registering the same definition twice returns the
 * same id. */
adg_error *adg_bus_register(adg_bus *bus, const char *collector, const adg_metric_def *def, int *id);
int adg_bus_find(adg_bus *bus, const char *name); /* -1 when not registered */
size_t adg_bus_metric_count(adg_bus *bus);
/* Copies out definition i (strings stay owned by the bus until it is freed). */
bool adg_bus_metric(adg_bus *bus, size_t i, adg_metric_def *def, const char **collector);

/* Says that `what` (a collector or a metric) cannot be measured here, and why. */
void adg_bus_unavailable(adg_bus *bus, const char *collector, const char *what, const char *reason);

/* One sample.  `instance` labels the scope's member ("cpu3", "node0", "gpu0", a kernel
 * name); NULL for a single-valued metric.  t_ns is relative to the bus's start. */
void adg_bus_sample(adg_bus *bus, int metric, const char *instance, uint64_t t_ns, double value);
/* Latest value; false when the metric/instance has no sample yet. */
bool adg_bus_latest(adg_bus *bus, int metric, const char *instance, adg_point *out);
/* Copies the series into a heap array (caller frees); 0 when none. */
size_t adg_bus_series_copy(adg_bus *bus, int metric, const char *instance, adg_point **out);
/* Lists the instances of a metric (heap array of heap strings; free with adg_bus_free_names). */
size_t adg_bus_instances(adg_bus *bus, int metric, char ***names);
void adg_bus_free_names(char **names, size_t n);

/* An event: phase markers ("phase"), kernel launches, errors, ... `detail` (may be NULL)
 * is a JSON object whose reference is stolen. */
void adg_bus_event(adg_bus *bus, uint64_t t_ns, const char *kind, const char *name, json_t *detail);

/* Live consumers (TUI, exporter) are told of each sample.  Callbacks run on the
 * collector's thread with the bus unlocked; keep them short. */
typedef void (*adg_bus_listener)(void *ctx, int metric, const char *instance, adg_point p);
void adg_bus_listen(adg_bus *bus, adg_bus_listener fn, void *ctx);

/* JSON views used by the run record (new references). */
json_t *adg_bus_metrics_json(adg_bus *bus);
json_t *adg_bus_series_json(adg_bus *bus);
json_t *adg_bus_events_json(adg_bus *bus);
/* Copies of the events from index `from` on (new reference, an array); *next gets the
 * index to pass next time, so a live consumer (the TUI) follows events without copying
 * them all again. */
json_t *adg_bus_events_since(adg_bus *bus, size_t from, size_t *next);
json_t *adg_bus_unavailable_json(adg_bus *bus);

/* Named JSON snapshots that a collector refreshes while it runs, for live consumers (the
 * sampler's "hot_functions" every second, read by the TUI).  Not part of the record: the
 * collector writes its final section itself.  put steals value (replacing the previous
 * one); get returns a deep copy (new reference) when the snapshot changed since *version
 * (start at 0; it is updated), else NULL. */
void adg_bus_snapshot_put(adg_bus *bus, const char *name, json_t *value);
json_t *adg_bus_snapshot_get(adg_bus *bus, const char *name, uint64_t *version);

/* Rebuilds a bus from a run record's metrics/series/events/unavailable (for replay and
 * reports).  The record is validated; bad content gives an error naming the field. */
adg_error *adg_bus_from_record(json_t *record, adg_bus **out);

#endif

/* The metrics bus in the Prometheus text exposition format (what `amxdiag export`
 * serves at /metrics).  A consumer of the bus like the TUI: it reads metrics by name and
 * never knows which collector produced them.
 *
 * Each bus metric becomes one gauge family named by adg_prom_metric_name ("mem.read_bw"
 * in B/s → amxdiag_mem_read_bw_bytes_per_second; "%" becomes a 0..1 "_ratio"), holding
 * the latest sample of each instance.  The instance becomes a label named after the
 * metric's scope: cpu="3" (instance "cpu3"), node="0" ("node0"), socket="0", gpu="0",
 * kernel="<name>", thread="<tid>"; machine- and process-scoped metrics that have
 * instances (the engine's phases) get series="<instance>".  What cannot be measured
 * here is amxdiag_unavailable_info{collector, what, reason} 1. */
#ifndef REP_PROM_BUS_H
#define REP_PROM_BUS_H

#include "common/adg_metrics.h"
#include "common/adg_util.h"

/* The label a scope's instance goes into ("cpu", "node", ...). */
const char *rep_prom_scope_label(adg_scope scope);
/* The label value for an instance: "cpu3" → "3" under label "cpu"; anything that is
 * not the label's prefix followed by digits is kept whole.  Writes into buf. */
const char *rep_prom_instance_value(adg_scope scope, const char *instance, char *buf, size_t len);

/* Appends the bus's latest values (families without a sample yet are left out) and the
 * unavailable list to out. */
void rep_prom_bus(adg_bus *bus, adg_strbuf *out);

#endif

/* The GPU collector: CUPTI traces of the profiled command (through libamxdiag-inject.so)
 * or of amxdiag's own built-in path (in process).  Both feed a cupti_trace, which
 * publishes gpu.* metrics and the "gpu_kernels" and "crash" record sections
 * (docs/cupti.md, docs/crash-report.md).
 *
 * The session uses prof_cupti_collector (prof_collector.h); the built-in path uses the
 * in-process functions below. */
#ifndef CUPTI_COLLECTOR_H
#define CUPTI_COLLECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/adg_error.h"
#include "common/adg_metrics.h"
#include "common/adg_record.h"
#include "profiler/cupti_trace.h"

/* Where libamxdiag-inject.so is: $AMXDIAG_INJECT_LIB, else next to the amxdiag binary,
 * else <bin>/../lib/amxdiag/.  Writes the absolute path into buf. */
adg_error *prof_cupti_find_inject_lib(char *buf, size_t len);

/* Why GPU tracing cannot run on this machine at all, or NULL when it may: built without
 * the CUPTI headers, no injection library, no NVIDIA driver. */
adg_error *prof_cupti_check_machine(void);

/* Adds the trace's results to a bus and a record: the gpu_kernels section (when the
 * tracer said hello), the crash section (on a fatal CUDA error), the tracer's notes as
 * unavailable entries, and cuda-error events.  Publishes the remaining buckets. */
void prof_cupti_finish_trace(cupti_trace *t, adg_bus *bus, adg_record *rec, uint64_t t_ns, const char *stream_error);

/* ---- in process (the built-in path) ---- */

typedef struct prof_gpu_inproc prof_gpu_inproc;
/* Starts CUPTI in this process, feeding a trace whose t = 0 is base_ns (CLOCK_MONOTONIC,
 * e.g. adg_bus_start_ns).  Call before the first CUDA context is created. */
adg_error *prof_gpu_inproc_start(uint64_t base_ns, uint64_t interval_ns, bool gpu_metrics, prof_gpu_inproc **out);
cupti_trace *prof_gpu_inproc_trace(prof_gpu_inproc *g);
/* Flushes and stops tracing; the trace stays readable until prof_gpu_inproc_free. */
void prof_gpu_inproc_stop(prof_gpu_inproc *g);
void prof_gpu_inproc_free(prof_gpu_inproc *g);

#endif

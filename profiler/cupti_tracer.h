/* The CUPTI tracer that runs inside a CUDA process: subscribes to the driver and runtime
 * callback domains (launches, allocations, synchronisations, every call that returns an
 * error), enables the activity API (kernels, copies, memsets) and hands every record, in
 * cupti_proto.h form, to a sink.  Used by the injection library (the sink writes frames
 * to amxdiag's pipe) and by the in-process collector of the built-in path (the sink feeds
 * the trace directly).  CUPTI allows one tracer per process, so this is process-global. */
#ifndef CUPTI_TRACER_H
#define CUPTI_TRACER_H

#include <stdbool.h>

#include "common/adg_error.h"
#include "profiler/cupti_activity.h"
#include "profiler/cupti_proto.h"

typedef struct cupti_tracer_opts {
    cupti_emit_fn emit;       /* every record; called from any thread (serialise in the sink) */
    void *ctx;
    /* After a flush point (records so far delivered): the sink pushes its buffer out. */
    void (*flushed)(void *ctx, cupti_flush_reason reason);
    bool gpu_metrics;         /* --gpu-metrics was asked for */
    unsigned flush_period_ms; /* CUPTI's periodic activity flush (0: 200 ms) */
    /* Optional, --gpu-metrics: CUPTI's profiler ran its setup (and later its first
     * decode); see cupti_range_env.settled. */
    void (*metrics_settled)(void);
    /* A thread of ours asks CUPTI for the completed activity buffers every
     * flush_period_ms (AMXDIAG_CUPTI_FLUSH_DURING=0/1 overrides), so that the exit flush
     * has little left. */
    bool flush_during;
    /* Optional: a call of the program returned without error (on its thread, inside
     * CUPTI's callback: nothing here may call CUDA or CUPTI). */
    void (*call_returned)(void);
    /* The tracer runs inside a profiled program (libamxdiag-inject.so), not in amxdiag:
     * with --gpu-metrics kernel activity is then KERNEL, not CONCURRENT_KERNEL (see
     * AMXDIAG_GPU_METRICS_ACTIVITY in cupti_tracer.c). */
    bool injected;
} cupti_tracer_opts;

/* Starts tracing in this process.  An error means nothing is traced (no CUPTI, wrong
 * version, activity refused); partial failures (another CUPTI subscriber: no callbacks;
 * --gpu-metrics refused) are NOTE records, and tracing goes on. */
adg_error *cupti_tracer_start(const cupti_tracer_opts *o);
/* Forces CUPTI to deliver every buffered activity record, then emits a FLUSH record and
 * calls opts.flushed.  Not async-signal-safe. */
void cupti_tracer_flush(cupti_flush_reason reason);
/* Flushes and stops (the process may go on using CUDA untraced). */
void cupti_tracer_stop(void);
/* Stops without a single CUPTI call (the flush thread ends, --gpu-metrics' statistics are
 * emitted, the sink closes): for an exit where CUPTI may be torn down already.  What CUPTI
 * still holds is lost; the process must not use CUDA afterwards. */
void cupti_tracer_quiesce(void);
bool cupti_tracer_running(void);

/* CLOCK_MONOTONIC in ns (the clock of every record). */
uint64_t cupti_mono_ns(void);

#endif

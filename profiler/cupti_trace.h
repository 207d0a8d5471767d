/* The GPU trace of one profiled run, built from the records of cupti_proto.h (whether
 * they came over the injection pipe or from the in-process tracer): the launch ring,
 * per-kernel time summaries, copies, allocations, API errors, and the time buckets that
 * become gpu.* metrics on the bus.  Thread-safe: one thread feeds frames, another
 * publishes. */
#ifndef CUPTI_TRACE_H
#define CUPTI_TRACE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/adg_metrics.h"
#include "profiler/cupti_proto.h"

#define CUPTI_TRACE_RING_DEFAULT 256
#define CUPTI_TRACE_MAX_DEVICES 8

typedef struct cupti_trace cupti_trace;

/* ring: launches kept (>= 1); interval_ns: width of a metric bucket; base_ns: the
 * CLOCK_MONOTONIC time that is t = 0 of the run (the bus's start). */
cupti_trace *cupti_trace_new(unsigned ring, uint64_t interval_ns, uint64_t base_ns);
void cupti_trace_free(cupti_trace *t);

/* Takes one record (a cupti_frame_fn: pass the trace as ctx). */
void cupti_trace_frame(void *trace, const cupti_frame *f);

/* Registers gpu.busy, gpu.h2d_bw, gpu.d2h_bw, gpu.launches, gpu.kernel_time, gpu.mem_used,
 * gpu.mem_total and gpu.errors on the bus. */
void cupti_trace_register(cupti_trace *t, adg_bus *bus, const char *collector);
/* Publishes the buckets that are complete: those ending before now_ns - lag_ns (records
 * arrive late: CUPTI delivers activity in buffers), or all of them when final. */
void cupti_trace_publish(cupti_trace *t, adg_bus *bus, uint64_t now_ns, uint64_t lag_ns, bool final);

/* Counts, for tests and the summary. */
typedef struct cupti_trace_counts {
    uint64_t kernels, memcpys, memsets, launches, api_errors, allocs, frees, syncs, notes;
    uint64_t meminfos;           /* MEMINFO records (cuMemGetInfo samples) */
    uint64_t untimed;            /* kernel records without timestamps (delivered after a fault) */
    uint64_t dropped;            /* activity records CUPTI reported as dropped */
    uint64_t kmetrics;           /* --gpu-metrics: kernel launches with Range Profiler values */
    bool mconfig;                /* --gpu-metrics: a profiling session started */
    uint64_t metrics_notes;      /* --gpu-metrics: notes saying why it could not run */
    uint64_t metrics_steps;      /* --gpu-metrics: setup calls announced (CUPTI_NOTE_METRICS_STEP) */
    char metrics_last_step[64];  /* the last of them */
    bool hello;                  /* a HELLO frame arrived */
    bool fatal;                  /* a fatal CUDA error was seen */
    uint64_t flushes;
    uint32_t last_flush_reason;
} cupti_trace_counts;
cupti_trace_counts cupti_trace_get_counts(cupti_trace *t);

/* The "gpu_kernels" record section (new reference): per-kernel summaries sorted by total
 * time, copies, memsets, API errors, notes. */
json_t *cupti_trace_kernels_json(cupti_trace *t);
/* The "crash" section (new reference), or NULL when no fatal CUDA error was seen. */
json_t *cupti_trace_crash_json(cupti_trace *t);
/* Notes the tracer sent (what it could not do); calls fn for each. */
void cupti_trace_notes(cupti_trace *t, void (*fn)(void *ctx, uint32_t code, const char *text), void *ctx);

/* A demangled copy of a C++ symbol (__cxa_demangle found with dlsym, libstdc++ loaded
 * when needed), or a copy of the name itself when it is not mangled or cannot be
 * demangled here.  Caller frees. */
char *cupti_demangle(const char *name);

#endif

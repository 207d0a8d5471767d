/* --gpu-metrics inside the CUDA process: CUPTI's Range Profiler (cupti_range_profiler.h,
 * CUDA 13) with auto ranges (one range per kernel launch) and kernel replay (CUPTI runs
 * each kernel once per pass, saving and restoring the memory it writes).  Values are
 * decoded a window of launches at a time and leave as KMETRIC records; the session's
 * setup leaves as one MCONFIG record; everything that stops it is a NO_METRICS note
 * (the trace goes on).  Process-global, driven by the tracer's callbacks.
 *
 * libcupti is reached only through the dlopen handle given (never linked), so a stand-in
 * library can play CUPTI in tests (tests/fixtures/cupti/fake_range_cupti.c). */
#ifndef CUPTI_RANGE_PROF_H
#define CUPTI_RANGE_PROF_H

#include <stdbool.h>
#include <stdint.h>

#include "profiler/cupti_proto.h"

typedef struct cupti_range_env {
    void *lib; /* libcupti's dlopen handle */
    void (*emit)(cupti_rec_type type, const void *fixed, const char *name);
    void (*note)(cupti_note_code code, const char *text);
    /* The calling thread's current context (NULL: none) and its device ordinal; 0 on
     * success.  The tracer's versions call the driver with its own callbacks muted. */
    int (*ctx_current)(void **ctx);
    int (*ctx_device)(int *device);
    uint64_t (*now_ns)(void);
    unsigned max_ranges;     /* kernels per window (0: 64) */
    unsigned sync_period_ms; /* a successful synchronisation decodes a window older than this (0: 200) */
    /* Which launches are profiled (kernel replay costs each one milliseconds per pass):
     * at most per_kernel launches of each kernel at each grid (0: every launch), at most
     * max_launches in all (0: no cap), none of the first skip launches. */
    unsigned per_kernel;
    unsigned max_launches;
    unsigned skip;
    /* Optional: called after a session's setup, after its first decoded window and after
     * the session ended with its context (16 times in all at most; the session's lock
     * held).  CUPTI's profiler may register
     * exit work of its own (atexit, C++ statics) the first time it runs; an injected
     * tracer whose exit handler was registered earlier (at cuInit) would run after that
     * work and call into a torn-down CUPTI (SIGSEGV in cuptiActivityFlushAll, "double
     * free" aborts: an H200, CUDA 13.0.1).  The injection library registers its exit
     * handler again here, so that it runs first. */
    void (*settled)(void);
} cupti_range_env;

/* Resolves the Range Profiler's entry points; false (and a note) when this libcupti
 * lacks them.  The session itself starts at cupti_range_prof_api_exit. */
/* Whether the Range Profiler may start: always in process (the built-in path ran to the
 * end on an H200); in an injected program only with AMXDIAG_GPU_METRICS_INJECTED=1, since
 * there CUPTI 13.0.1's activity thread crashed at every flush once the profiler was set up.
 * When not, the caller records cupti_range_prof_off_reason and traces without counters. */
bool cupti_range_prof_enabled(bool injected);
extern const char cupti_range_prof_off_reason[];

bool cupti_range_prof_init(const cupti_range_env *env);
/* Before a kernel launch goes to the driver (callback ENTER).  A runtime launch and the
 * driver launch inside it are one launch.  Never sets the session up: a launch before
 * the session is counted (stats.early) and not profiled.  shape tells launches of one
 * kernel at different grids apart (the sampling counts per kernel and shape). */
void cupti_range_prof_launch_enter(const char *name, uint64_t shape, bool runtime, bool graph);
/* The launch returned (runtime: a runtime launch; a driver launch inside one is ignored):
 * the time a profiled launch took (its replay) is counted here. */
void cupti_range_prof_launch_exit(bool runtime);
/* Before a cuMemset* of the program: the driver runs it as a kernel, which the Range
 * Profiler counts as an auto range of its own (seen on an H200: 61 ranges for 60
 * launches and one cudaMemset).  It names that range "<memset>" where the counts say so. */
void cupti_range_prof_memset(void);
/* The same for another driver operation the driver may run as a kernel of its own (a
 * device-to-device cuMemcpy: "<memcpy DtoD>"); label must be a string literal. */
void cupti_range_prof_driver_op(const char *label);
/* Names the program's call whose return is about to run cupti_range_prof_api_exit on this
 * thread (for AMXDIAG_CUPTI_DEBUG lines only; the pointer must outlive that call). */
void cupti_range_prof_set_point(const char *call);
/* One of the program's kernel launches, synchronisations or synchronous copies returned
 * successfully, at the top level (not inside another CUDA call, not during a stream
 * capture): where the session starts, in the calling thread's current context, the first
 * time one is current (and again after a context ended).  Like CUDA's range_profiling
 * sample, the setup runs between the program's calls, never inside a launch in flight, and
 * never at the return of the runtime's own initialisation.  Re-entrant calls (from a CUDA
 * call the setup itself makes) return at once.  Cheap when there is nothing to start. */
void cupti_range_prof_api_exit(void);
/* After a synchronisation that succeeded: decodes the window if it is old enough. */
void cupti_range_prof_sync(void);
/* The context is about to go (cuCtxDestroy, the primary context's release or reset):
 * decodes what is pending and ends the session; a later launch starts a new one. */
void cupti_range_prof_ctx_ending(void);
/* CUPTI's resource callback CONTEXT_DESTROY_STARTING (how CUDA 13's profiling injection
 * sample ends its Range Profiler): the same as cupti_range_prof_ctx_ending when ctx is
 * the profiled context, whichever call (or the runtime's teardown) destroys it. */
void cupti_range_prof_ctx_destroying(void *ctx);
/* A fatal CUDA error: the context cannot be used, what is pending is lost (noted). */
void cupti_range_prof_fatal(void);
/* Decodes what is pending and ends everything (tracer stop, exit).  Call
 * cupti_range_prof_drain and flush the activity buffers first, so that no activity call
 * follows cuptiProfilerDeInitialize.  (That order was the first explanation of an injected
 * program's SIGSEGV in cuptiActivityFlushAll at exit on an H200; the flush kept failing in
 * the right order, from an exit handler that ran after CUPTI's own exit work: see
 * cupti_range_env.settled.) */
void cupti_range_prof_finish(void);
/* The end without a CUPTI call (an exit where CUPTI may be torn down already): the
 * statistics are emitted, the open window's launches count as lost, nothing is released. */
void cupti_range_prof_abandon(void);
/* The last window decoded (Pop, Stop, DecodeData, values out), the profiler left enabled
 * and stopped: what may run before the activity flush. */
void cupti_range_prof_drain(void);
/* The tracer's stop in the order that works: drain, flush(arg) (activity off and flushed),
 * then finish (Disable, HostDeinitialize, DeInitialize).  Nothing of the activity API
 * may follow. */
void cupti_range_prof_stop(void (*flush)(void *arg), void *arg);

typedef struct cupti_range_stats {
    uint64_t ranges;    /* KMETRIC records emitted */
    uint64_t windows;   /* windows decoded */
    uint64_t dropped;   /* ranges CUPTI reported dropped */
    uint64_t unnamed;   /* ranges without a launch name */
    uint64_t other_ctx; /* launches in a context other than the profiled one */
    uint64_t lost;      /* launches whose window could not be decoded */
    uint64_t reenabled; /* windows that needed a fresh Range Profiler object */
    uint64_t early;     /* launches before the session started (not profiled) */
    uint64_t seen;      /* launches in the profiled context while the session ran */
    uint64_t profiled;  /* of them, launched while profiling (each a range) */
    uint64_t memsets;   /* cuMemset* and device-to-device copies while profiling (a range each where the driver uses a kernel) */
    uint64_t toggles;   /* times profiling was started or stopped for the sampling */
    uint64_t replay_ns; /* time the program spent inside profiled launches (the replay) */
    uint64_t overhead_ns; /* time in the session's own CUPTI calls */
    unsigned passes;
    int state;          /* 0 idle, 1 active, 2 failed (noted), 3 finished */
} cupti_range_stats;
cupti_range_stats cupti_range_prof_stats(void);

#endif

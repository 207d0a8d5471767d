/* --gpu-metrics: the Range Profiler session in the CUDA process (see cupti_range_prof.h). */
#include "profiler/cupti_range_prof.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "profiler/cupti_debug.h"
#include "profiler/cupti_range.h"

#ifndef ADG_HAVE_CUPTI

bool cupti_range_prof_init(const cupti_range_env *env)
{
    (void)env;
    return false;
}
void cupti_range_prof_launch_enter(const char *name, uint64_t shape, bool runtime, bool graph)
{
    (void)name;
    (void)shape;
    (void)runtime;
    (void)graph;
}
void cupti_range_prof_memset(void)
{
}
void cupti_range_prof_driver_op(const char *label)
{
    (void)label;
}
void cupti_range_prof_ctx_destroying(void *ctx)
{
    (void)ctx;
}
void cupti_range_prof_drain(void)
{
}
void cupti_range_prof_stop(void (*flush)(void *arg), void *arg)
{
    if (flush)
        flush(arg);
}
void cupti_range_prof_launch_exit(bool runtime)
{
    (void)runtime;
}
void cupti_range_prof_api_exit(void)
{
}
void cupti_range_prof_set_point(const char *call)
{
    (void)call;
}
void cupti_range_prof_sync(void)
{
}
void cupti_range_prof_ctx_ending(void)
{
}
void cupti_range_prof_fatal(void)
{
}
void cupti_range_prof_finish(void)
{
}
void cupti_range_prof_abandon(void)
{
}
cupti_range_stats cupti_range_prof_stats(void)
{
    cupti_range_stats s = {0};
    return s;
}

#else

#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_result.h>
#include <cupti_target.h>

#include "profiler/cupti_range_host.h"

static struct {
    CUptiResult (*cuptiGetResultString)(CUptiResult, const char **);
    CUptiResult (*cuptiProfilerInitialize)(CUpti_Profiler_Initialize_Params *);
    CUptiResult (*cuptiProfilerDeInitialize)(CUpti_Profiler_DeInitialize_Params *);
    CUptiResult (*cuptiProfilerDeviceSupported)(CUpti_Profiler_DeviceSupported_Params *);
    CUptiResult (*cuptiDeviceGetChipName)(CUpti_Device_GetChipName_Params *);
    CUptiResult (*cuptiProfilerGetCounterAvailability)(CUpti_Profiler_GetCounterAvailability_Params *);
    CUptiResult (*cuptiProfilerHostInitialize)(cupti_host_init_params *);
    CUptiResult (*cuptiProfilerHostDeinitialize)(cupti_host_deinit_params *);
    CUptiResult (*cuptiProfilerHostGetMetricProperties)(cupti_host_metric_props_params *);
    CUptiResult (*cuptiProfilerHostConfigAddMetrics)(cupti_host_add_metrics_params *);
    CUptiResult (*cuptiProfilerHostGetConfigImageSize)(cupti_host_config_size_params *);
    CUptiResult (*cuptiProfilerHostGetConfigImage)(cupti_host_config_image_params *);
    CUptiResult (*cuptiProfilerHostGetNumOfPasses)(cupti_host_passes_params *);
    CUptiResult (*cuptiProfilerHostEvaluateToGpuValues)(cupti_host_evaluate_params *);
    CUptiResult (*cuptiRangeProfilerEnable)(CUpti_RangeProfiler_Enable_Params *);
    CUptiResult (*cuptiRangeProfilerDisable)(CUpti_RangeProfiler_Disable_Params *);
    CUptiResult (*cuptiRangeProfilerSetConfig)(CUpti_RangeProfiler_SetConfig_Params *);
    CUptiResult (*cuptiRangeProfilerStart)(CUpti_RangeProfiler_Start_Params *);
    CUptiResult (*cuptiRangeProfilerStop)(CUpti_RangeProfiler_Stop_Params *);
    CUptiResult (*cuptiRangeProfilerDecodeData)(CUpti_RangeProfiler_DecodeData_Params *);
    CUptiResult (*cuptiRangeProfilerGetCounterDataSize)(CUpti_RangeProfiler_GetCounterDataSize_Params *);
    CUptiResult (*cuptiRangeProfilerCounterDataImageInitialize)(CUpti_RangeProfiler_CounterDataImage_Initialize_Params *);
    CUptiResult (*cuptiRangeProfilerGetCounterDataInfo)(CUpti_RangeProfiler_GetCounterDataInfo_Params *);
    CUptiResult (*cuptiRangeProfilerPushRange)(CUpti_RangeProfiler_PushRange_Params *);
    CUptiResult (*cuptiRangeProfilerPopRange)(CUpti_RangeProfiler_PopRange_Params *);
} A;

/* The sampling's memory of launch keys (kernel name and grid): how many of each were
 * profiled, and which key followed it last time, so that the decision for the next launch
 * can be taken at the return of this one (between the program's calls, where the Range
 * Profiler may be started and stopped) rather than inside the next launch. */
#define KEYS 2048
typedef struct key_ent {
    uint64_t key;        /* 0: free */
    uint64_t succ;       /* the key launched after it last time (0: none yet) */
    uint32_t profiled;
} key_ent;

enum { ST_IDLE = 0, ST_ACTIVE = 1, ST_FAILED = 2, ST_DONE = 3 };

static struct {
    pthread_mutex_t lock;
    cupti_range_env env;
    bool inited;
    int state;
    void *ctx;                 /* the profiled context */
    int device;
    bool profiler_initialized; /* cuptiProfilerInitialize succeeded */
    cupti_host_object *host;
    uint8_t *avail;            /* the counter availability image: lives as long as the host object */
    CUpti_RangeProfiler_Object *obj;
    cupti_range_sel sel;
    uint8_t *config;
    size_t config_size;
    uint8_t *counter_data;
    size_t counter_data_size;
    cupti_range_names q;       /* launches of the current window */
    uint64_t window_start_ns;
    uint64_t seq;
    cupti_range_stats st;
    bool other_ctx_noted, mismatch_noted;
    bool fatal;                /* a fatal CUDA error: CUPTI's profiler is not called again */
    bool marking;              /* in setup: each CUPTI call is announced (CUPTI_NOTE_METRICS_STEP) */
    bool collecting;           /* Started (and a range pushed): launches now are profiled */
    bool pushed;               /* a range is pushed (auto ranges are collected inside it only) */
    bool use_push;             /* Push/Pop around each started window (AMXDIAG_GPU_METRICS_PUSH=0: not) */
    bool want;                 /* what the sampling wants for the next launch */
    bool draining;             /* the tracer is stopping: no more profiling starts */
    unsigned settled_calls;    /* env.settled calls this session (after setup, after the first window) */
    unsigned settled_total;    /* env.settled calls in all (capped: one atexit entry each) */
    uint64_t prev_key;         /* the last launch's key (0: none) */
    key_ent keys[KEYS];
    size_t n_keys;
    char chip[64];
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Set while this thread is inside the Range Profiler's code: CUPTI's own work must not
 * come back in as a launch of the program's. */
static _Thread_local bool tl_inside;
/* A runtime launch in progress on this thread (the driver launch inside it is the same
 * launch). */
static _Thread_local int tl_rt_launch;
/* The session may start (idle, with entry points): read without the lock at every
 * program call that returns, so it must be cheap. */
static atomic_bool want_setup;
/* The window is full: decoded at the return of the launch that filled it rather than in
 * the next launch's ENTER. */
static atomic_bool decode_due;
/* The program's call whose return is running cupti_range_prof_api_exit (debug lines). */
static _Thread_local const char *tl_point;
/* The sampling wants profiling started or stopped: done at the next return of a call. */
static atomic_bool gate_due;
/* When this thread's profiled launch began (0: the launch in flight is not profiled). */
static _Thread_local uint64_t tl_replay_t0;
/* Time spent inside profiled launches, added at their return without the lock. */
static atomic_uint_fast64_t replay_ns;

static const char *res_str(CUptiResult r)
{
    static _Thread_local char buf[160];
    const char *s = NULL;
    if (A.cuptiGetResultString && A.cuptiGetResultString(r, &s) == CUPTI_SUCCESS && s)
        snprintf(buf, sizeof buf, "%s (%d)", s, (int)r);
    else
        snprintf(buf, sizeof buf, "CUPTI error %d", (int)r);
    return buf;
}

/* Every CUPTI call goes through CALL: with AMXDIAG_CUPTI_DEBUG a line before it (so a
 * crash inside CUPTI leaves the call's name as the last line) and one after it with the
 * result; during setup each call is also announced down the stream, so that a record of
 * a program that died inside CUPTI can still say which call it was. */
static _Thread_local uint64_t tl_call_t0;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void call_enter(const char *fn)
{
    if (R.marking)
        R.env.note(CUPTI_NOTE_METRICS_STEP, fn);
    if (cupti_debug_on())
        cupti_debug("> %s", fn);
    tl_call_t0 = mono_ns();
}

/* Every call's time is the session's overhead (R.st.overhead_ns, under the lock). */
static CUptiResult call_leave(const char *fn, CUptiResult r)
{
    uint64_t dt = mono_ns() - tl_call_t0;
    R.st.overhead_ns += dt;
    if (cupti_debug_on())
        cupti_debug("< %s: %s, %.3f ms", fn, r == CUPTI_SUCCESS ? "CUPTI_SUCCESS (0)" : res_str(r), (double)dt / 1e6);
    return r;
}

#define CALL(fn, p) (call_enter(#fn), call_leave(#fn, A.fn(p)))

#define SYM(fn)                                            \
    do {                                                   \
        void *s_ = dlsym(env->lib, #fn);                   \
        if (!s_ && !missing)                               \
            missing = #fn;                                 \
        memcpy(&A.fn, &s_, sizeof s_);                     \
    } while (0)

bool cupti_range_prof_init(const cupti_range_env *env)
{
    pthread_mutex_lock(&R.lock);
    R.env = *env;
    if (!R.env.max_ranges)
        R.env.max_ranges = 64;
    if (!R.env.sync_period_ms)
        R.env.sync_period_ms = 200;
    const char *missing = NULL;
    SYM(cuptiGetResultString);
    SYM(cuptiProfilerInitialize);
    SYM(cuptiProfilerDeInitialize);
    SYM(cuptiProfilerDeviceSupported);
    SYM(cuptiDeviceGetChipName);
    SYM(cuptiProfilerGetCounterAvailability);
    SYM(cuptiProfilerHostInitialize);
    SYM(cuptiProfilerHostDeinitialize);
    SYM(cuptiProfilerHostGetMetricProperties);
    SYM(cuptiProfilerHostConfigAddMetrics);
    SYM(cuptiProfilerHostGetConfigImageSize);
    SYM(cuptiProfilerHostGetConfigImage);
    SYM(cuptiProfilerHostGetNumOfPasses);
    SYM(cuptiProfilerHostEvaluateToGpuValues);
    SYM(cuptiRangeProfilerEnable);
    SYM(cuptiRangeProfilerDisable);
    SYM(cuptiRangeProfilerSetConfig);
    SYM(cuptiRangeProfilerStart);
    SYM(cuptiRangeProfilerStop);
    SYM(cuptiRangeProfilerDecodeData);
    SYM(cuptiRangeProfilerGetCounterDataSize);
    SYM(cuptiRangeProfilerCounterDataImageInitialize);
    SYM(cuptiRangeProfilerGetCounterDataInfo);
    SYM(cuptiRangeProfilerPushRange);
    SYM(cuptiRangeProfilerPopRange);
    memset(&R.st, 0, sizeof R.st);
    memset(R.keys, 0, sizeof R.keys);
    R.n_keys = 0;
    R.prev_key = 0;
    R.collecting = R.pushed = R.draining = false;
    R.settled_calls = R.settled_total = 0;
    atomic_store(&replay_ns, 0);
    const char *pe = getenv("AMXDIAG_GPU_METRICS_PUSH");
    R.use_push = !(pe && !strcmp(pe, "0"));
    atomic_store(&gate_due, false);
    R.seq = 0;
    R.other_ctx_noted = R.mismatch_noted = R.fatal = false;
    R.profiler_initialized = false; /* once per tracer start; a new start initialises again */
    if (missing) {
        char text[256];
        snprintf(text, sizeof text,
                 "--gpu-metrics: this libcupti has no %s (the Range Profiler of CUDA 12.6 and later); the kernel "
                 "trace is complete",
                 missing);
        R.env.note(CUPTI_NOTE_NO_METRICS, text);
        cupti_debug("gpu-metrics: %s", text);
        R.state = R.st.state = ST_FAILED;
        atomic_store(&want_setup, false);
        pthread_mutex_unlock(&R.lock);
        return false;
    }
    R.inited = true;
    R.state = R.st.state = ST_IDLE;
    atomic_store(&want_setup, true);
    cupti_debug("gpu-metrics: Range Profiler entry points resolved; the session starts when a CUDA call returns "
                "with a context current (window %u launches; sampling: %u per kernel and grid, at most %u, %u "
                "skipped; ranges %s)",
                R.env.max_ranges, R.env.per_kernel, R.env.max_launches, R.env.skip,
                R.use_push ? "pushed" : "not pushed (AMXDIAG_GPU_METRICS_PUSH=0)");
    pthread_mutex_unlock(&R.lock);
    return true;
}

/* ---- failure ---- */

static void release(void)
{
    atomic_store(&decode_due, false);
    if (R.obj) {
        CUpti_RangeProfiler_Disable_Params p = {CUpti_RangeProfiler_Disable_Params_STRUCT_SIZE, NULL, R.obj};
        CALL(cuptiRangeProfilerDisable, &p);
        R.obj = NULL;
    }
    if (R.host) {
        cupti_host_deinit_params p = {CUPTI_HOST_DEINIT_SIZE, NULL, R.host};
        CALL(cuptiProfilerHostDeinitialize, &p);
        R.host = NULL;
    }
    free(R.avail);
    R.avail = NULL;
    free(R.config);
    free(R.counter_data);
    R.config = R.counter_data = NULL;
    R.config_size = R.counter_data_size = 0;
    R.ctx = NULL;
    R.collecting = R.pushed = false;
    atomic_store(&gate_due, false);
}

/* Ends --gpu-metrics for the rest of the run with a note the record shows. */
static void fail(const char *step, CUptiResult r)
{
    char text[700];
    if (r == CUPTI_ERROR_INSUFFICIENT_PRIVILEGES)
        snprintf(text, sizeof text,
                 "--gpu-metrics: GPU performance counters are restricted to administrators on this machine (%s "
                 "returned %s; RmProfilingAdminOnly=1 in /proc/driver/nvidia/params): run as root or load nvidia "
                 "with NVreg_RestrictProfilingToAdminUsers=0. The kernel trace is complete.",
                 step, res_str(r));
    else if (r == CUPTI_ERROR_NOT_SUPPORTED || r == CUPTI_ERROR_NOT_COMPATIBLE)
        snprintf(text, sizeof text,
                 "--gpu-metrics: %s returned %s: the Range Profiler does not support this GPU or configuration. The "
                 "kernel trace is complete.",
                 step, res_str(r));
    else
        snprintf(text, sizeof text,
                 "--gpu-metrics: %s failed: %s (another profiler such as ncu or nsys --gpu-metrics may hold the GPU's "
                 "counters). The kernel trace is complete.",
                 step, res_str(r));
    if (R.q.n)
        R.st.lost += R.q.n;
    cupti_range_names_clear(&R.q);
    R.marking = false;
    release();
    R.state = R.st.state = ST_FAILED;
    R.env.note(CUPTI_NOTE_NO_METRICS, text);
    cupti_debug("gpu-metrics: %s", text);
}

static void fail_text(const char *text)
{
    cupti_range_names_clear(&R.q);
    R.marking = false;
    release();
    R.state = R.st.state = ST_FAILED;
    R.env.note(CUPTI_NOTE_NO_METRICS, text);
    cupti_debug("gpu-metrics: %s", text);
}

/* ---- setup ---- */

static bool metric_supported(void *ctx, const char *metric)
{
    (void)ctx;
    cupti_host_metric_props_params p;
    memset(&p, 0, sizeof p);
    p.structSize = CUPTI_HOST_METRIC_PROPS_SIZE;
    p.pHostObject = R.host;
    p.pMetricName = metric;
    cupti_debug("gpu-metrics: does the chip name %s?", metric);
    return CALL(cuptiProfilerHostGetMetricProperties, &p) == CUPTI_SUCCESS;
}

static const char *support_word(CUpti_Profiler_Support_Level l)
{
    return l == CUPTI_PROFILER_CONFIGURATION_SUPPORTED  ? "supported"
           : l == CUPTI_PROFILER_CONFIGURATION_DISABLED ? "disabled"
           : l == CUPTI_PROFILER_CONFIGURATION_UNSUPPORTED ? "unsupported"
                                                           : "unknown";
}

static bool counter_data_init(void)
{
    CUpti_RangeProfiler_CounterDataImage_Initialize_Params ci;
    memset(&ci, 0, sizeof ci);
    ci.structSize = CUpti_RangeProfiler_CounterDataImage_Initialize_Params_STRUCT_SIZE;
    ci.pRangeProfilerObject = R.obj;
    ci.counterDataSize = R.counter_data_size;
    ci.pCounterData = R.counter_data;
    CUptiResult r = CALL(cuptiRangeProfilerCounterDataImageInitialize, &ci);
    if (r != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerCounterDataImageInitialize", r);
        return false;
    }
    return true;
}

static CUptiResult set_config(void)
{
    CUpti_RangeProfiler_SetConfig_Params sc;
    memset(&sc, 0, sizeof sc);
    sc.structSize = CUpti_RangeProfiler_SetConfig_Params_STRUCT_SIZE;
    sc.pRangeProfilerObject = R.obj;
    sc.configSize = R.config_size;
    sc.pConfig = R.config;
    sc.counterDataImageSize = R.counter_data_size;
    sc.pCounterDataImage = R.counter_data;
    sc.range = CUPTI_AutoRange;
    sc.replayMode = CUPTI_KernelReplay;
    sc.maxRangesPerPass = R.env.max_ranges;
    sc.numNestingLevels = 1;
    sc.minNestingLevel = 1;
    sc.passIndex = 0;
    sc.targetNestingLevel = 1;
    return CALL(cuptiRangeProfilerSetConfig, &sc);
}

static CUptiResult start(void)
{
    CUpti_RangeProfiler_Start_Params st = {CUpti_RangeProfiler_Start_Params_STRUCT_SIZE, NULL, R.obj};
    return CALL(cuptiRangeProfilerStart, &st);
}

/* CUDA 13's range_profiling sample pushes a range after Start even in auto-range mode,
 * and pops it before Stop: the auto ranges (one per kernel) are collected inside it.  On
 * an H200 (driver 580) a session without it collected no range at all once the kernel
 * activity records were off (AMXDIAG_GPU_METRICS_NO_KERNEL_ACTIVITY=1: "0 ranges for 256
 * launches" in every window). */
static bool push_range(void)
{
    R.collecting = true;
    if (!R.use_push)
        return true;
    CUpti_RangeProfiler_PushRange_Params pp;
    memset(&pp, 0, sizeof pp);
    pp.structSize = CUpti_RangeProfiler_PushRange_Params_STRUCT_SIZE;
    pp.pRangeProfilerObject = R.obj;
    pp.pRangeName = "amxdiag";
    CUptiResult r = CALL(cuptiRangeProfilerPushRange, &pp);
    if (r != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerPushRange", r);
        return false;
    }
    R.pushed = true;
    return true;
}

static CUptiResult pop_range(void)
{
    if (!R.pushed)
        return CUPTI_SUCCESS;
    CUpti_RangeProfiler_PopRange_Params pp = {CUpti_RangeProfiler_PopRange_Params_STRUCT_SIZE, NULL, R.obj};
    R.pushed = false;
    return CALL(cuptiRangeProfilerPopRange, &pp);
}

/* ---- sampling ---- */

static uint64_t key_of(const char *name, uint64_t shape)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = name ? name : "?"; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    h ^= shape * 0x9E3779B97F4A7C15ull;
    return h ? h : 1;
}

static key_ent *key_find(uint64_t key, bool add)
{
    if (!key)
        return NULL;
    for (size_t i = (size_t)(key % KEYS), n = 0; n < KEYS; n++, i = (i + 1) % KEYS) {
        if (R.keys[i].key == key)
            return &R.keys[i];
        if (!R.keys[i].key) {
            /* Kept three quarters full at most: a full table only stops the learning. */
            if (!add || R.n_keys >= KEYS * 3 / 4)
                return NULL;
            R.keys[i].key = key;
            R.n_keys++;
            return &R.keys[i];
        }
    }
    return NULL;
}

/* Whether the launch after one of `key` should be profiled: not while skipping, not past
 * the cap, and with a budget per kernel and grid only when the next key is expected to be
 * one already profiled often enough (the key that followed `key` last time; an unknown
 * successor is new ground and profiled). */
static bool want_next(uint64_t key)
{
    if (R.draining)
        return false;
    if (R.env.skip && R.st.seen < R.env.skip)
        return false;
    if (R.env.max_launches && R.st.profiled >= R.env.max_launches)
        return false;
    if (!R.env.per_kernel)
        return true;
    key_ent *e = key_find(key, false);
    if (!e || !e->succ)
        return true;
    key_ent *nx = key_find(e->succ, false);
    return !nx || nx->profiled < R.env.per_kernel;
}

static void emit_stats(void)
{
    cupti_mstats_rec m = {R.env.now_ns(),
                          R.st.seen,
                          R.st.profiled,
                          atomic_load(&replay_ns),
                          R.st.overhead_ns,
                          R.env.per_kernel,
                          R.env.max_launches,
                          R.env.skip,
                          (uint32_t)R.st.toggles};
    R.env.emit(CUPTI_REC_MSTATS, &m, NULL);
}

/* CUPTI has run the session's setup (or its first decode and evaluation): whatever exit
 * work it registers on first use is registered now (cupti_range_env.settled). */
static void settled(const char *what)
{
    if (R.env.settled && R.settled_total < 16) {
        R.settled_calls++;
        R.settled_total++;
        cupti_debug("gpu-metrics: CUPTI's profiler has run (%s): the exit handler is registered again, to run "
                    "before any exit work CUPTI registered",
                    what);
        R.env.settled();
    }
}

/* The first window: SetConfig, then Start.  The next ones, after a decode and a fresh
 * counter data image: Start alone, as CUPTI's users do it (the configuration stays with
 * the object).  Should CUPTI want the configuration again, it is set again; should it
 * refuse that too, a fresh object takes it. */
static bool start_window(bool first)
{
    CUptiResult r;
    if (first) {
        if ((r = set_config()) != CUPTI_SUCCESS) {
            fail("cuptiRangeProfilerSetConfig", r);
            return false;
        }
        if ((r = start()) != CUPTI_SUCCESS) {
            fail("cuptiRangeProfilerStart", r);
            return false;
        }
        R.window_start_ns = R.env.now_ns();
        return push_range();
    }
    if ((r = start()) != CUPTI_SUCCESS) {
        cupti_debug("gpu-metrics: Start after a decode refused (%s): setting the configuration again", res_str(r));
        if ((r = set_config()) == CUPTI_SUCCESS)
            r = start();
    }
    if (r != CUPTI_SUCCESS && R.obj) {
        cupti_debug("gpu-metrics: the configuration was refused again (%s): a fresh Range Profiler object",
                    res_str(r));
        CUpti_RangeProfiler_Disable_Params dp = {CUpti_RangeProfiler_Disable_Params_STRUCT_SIZE, NULL, R.obj};
        CALL(cuptiRangeProfilerDisable, &dp);
        R.obj = NULL;
        CUpti_RangeProfiler_Enable_Params en;
        memset(&en, 0, sizeof en);
        en.structSize = CUpti_RangeProfiler_Enable_Params_STRUCT_SIZE;
        en.ctx = (CUcontext)R.ctx;
        if ((r = CALL(cuptiRangeProfilerEnable, &en)) != CUPTI_SUCCESS || !en.pRangeProfilerObject) {
            fail("cuptiRangeProfilerEnable (again, for the next window)", r);
            return false;
        }
        R.obj = en.pRangeProfilerObject;
        R.st.reenabled++;
        if (!counter_data_init())
            return false;
        if ((r = set_config()) != CUPTI_SUCCESS) {
            fail("cuptiRangeProfilerSetConfig (on a fresh object)", r);
            return false;
        }
        r = start();
    }
    if (r != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerStart (next window)", r);
        return false;
    }
    R.window_start_ns = R.env.now_ns();
    return push_range();
}

/* AMXDIAG_GPU_METRICS_MINIMAL=1, a diagnostic: only the required metrics (duration,
 * DRAM read and write), to tell a CUPTI failure that one metric causes from one that any
 * configuration does. */
static bool minimal_set(void)
{
    const char *e = getenv("AMXDIAG_GPU_METRICS_MINIMAL");
    return e && *e && strcmp(e, "0");
}

static void keep_required(cupti_range_sel *sel)
{
    size_t cnt, n = 0;
    const cupti_range_metric *m = cupti_range_metrics(&cnt);
    sel->present = 0;
    for (size_t i = 0; i < sel->n; i++) {
        int role = sel->role_of[i];
        if (role < 0 || (size_t)role >= cnt || !m[role].required)
            continue;
        sel->names[n] = sel->names[i];
        sel->role_of[n] = role;
        sel->present |= 1u << role;
        n++;
    }
    sel->n = n;
    cupti_debug("gpu-metrics: AMXDIAG_GPU_METRICS_MINIMAL: the required metrics only");
}

/* The whole setup, in the order of CUDA 13's range_profiling sample.  It runs at the
 * return of one of the program's CUDA calls (cupti_range_prof_api_exit), never inside a
 * launch that is in flight. */
static bool setup(void *ctx, int dev)
{
    CUptiResult r;
    R.ctx = ctx;
    R.device = dev;
    R.marking = true;
    cupti_debug("gpu-metrics: setup in context %p, device %d", ctx, dev);
    if (!R.profiler_initialized) {
        CUpti_Profiler_Initialize_Params ip = {CUpti_Profiler_Initialize_Params_STRUCT_SIZE, NULL};
        if ((r = CALL(cuptiProfilerInitialize, &ip)) != CUPTI_SUCCESS) {
            fail("cuptiProfilerInitialize", r);
            return false;
        }
        R.profiler_initialized = true;
    }
    CUpti_Profiler_DeviceSupported_Params ds;
    memset(&ds, 0, sizeof ds);
    ds.structSize = CUpti_Profiler_DeviceSupported_Params_STRUCT_SIZE;
    ds.cuDevice = dev;
    ds.api = CUPTI_PROFILER_RANGE_PROFILING;
    if (CALL(cuptiProfilerDeviceSupported, &ds) == CUPTI_SUCCESS && ds.isSupported != CUPTI_PROFILER_CONFIGURATION_SUPPORTED) {
        char text[512];
        snprintf(text, sizeof text,
                 "--gpu-metrics: the Range Profiler cannot run on GPU %d (architecture %s, vGPU %s, confidential "
                 "compute %s, SLI %s, CMP %s, WSL %s); the kernel trace is complete.",
                 dev, support_word(ds.architecture), support_word(ds.vGpu), support_word(ds.confidentialCompute),
                 support_word(ds.sli), support_word(ds.cmp), support_word(ds.wsl));
        fail_text(text);
        return false;
    }
    CUpti_Device_GetChipName_Params cn;
    memset(&cn, 0, sizeof cn);
    cn.structSize = CUpti_Device_GetChipName_Params_STRUCT_SIZE;
    cn.deviceIndex = (size_t)dev;
    if ((r = CALL(cuptiDeviceGetChipName, &cn)) != CUPTI_SUCCESS || !cn.pChipName) {
        fail("cuptiDeviceGetChipName", r);
        return false;
    }
    snprintf(R.chip, sizeof R.chip, "%s", cn.pChipName);
    cupti_debug("gpu-metrics: chip %s", R.chip);

    CUpti_Profiler_GetCounterAvailability_Params ca;
    memset(&ca, 0, sizeof ca);
    ca.structSize = CUpti_Profiler_GetCounterAvailability_Params_STRUCT_SIZE;
    ca.ctx = (CUcontext)ctx;
    if ((r = CALL(cuptiProfilerGetCounterAvailability, &ca)) != CUPTI_SUCCESS) {
        fail("cuptiProfilerGetCounterAvailability", r);
        return false;
    }
    cupti_debug("gpu-metrics: counter availability image %zu bytes", ca.counterAvailabilityImageSize);
    /* Kept until the host object is gone: the host API is handed the pointer, and
     * CUDA's sample keeps its copy alive as long as the host object. */
    R.avail = calloc(1, ca.counterAvailabilityImageSize ? ca.counterAvailabilityImageSize : 1);
    if (!R.avail) {
        fail_text("--gpu-metrics: out of memory");
        return false;
    }
    ca.pCounterAvailabilityImage = R.avail;
    if ((r = CALL(cuptiProfilerGetCounterAvailability, &ca)) != CUPTI_SUCCESS) {
        fail("cuptiProfilerGetCounterAvailability", r);
        return false;
    }

    cupti_host_init_params hi;
    memset(&hi, 0, sizeof hi);
    hi.structSize = CUPTI_HOST_INIT_SIZE;
    hi.profilerType = CUPTI_HOST_PROFILER_RANGE;
    hi.pChipName = R.chip;
    hi.pCounterAvailabilityImage = R.avail;
    r = CALL(cuptiProfilerHostInitialize, &hi);
    if (r != CUPTI_SUCCESS || !hi.pHostObject) {
        fail("cuptiProfilerHostInitialize", r);
        return false;
    }
    R.host = hi.pHostObject;

    char why[400];
    if (!cupti_range_select(metric_supported, NULL, &R.sel, why, sizeof why)) {
        char text[600];
        snprintf(text, sizeof text, "--gpu-metrics: %s on %s; the kernel trace is complete.", why, R.chip);
        fail_text(text);
        return false;
    }
    if (minimal_set())
        keep_required(&R.sel);
    for (size_t i = 0; i < R.sel.n; i++)
        cupti_debug("gpu-metrics: metric %s (%s)", R.sel.names[i], cupti_range_role_key((unsigned)R.sel.role_of[i]));
    cupti_host_add_metrics_params am = {CUPTI_HOST_ADD_METRICS_SIZE, NULL, R.host, R.sel.names, R.sel.n};
    if ((r = CALL(cuptiProfilerHostConfigAddMetrics, &am)) != CUPTI_SUCCESS) {
        fail("cuptiProfilerHostConfigAddMetrics", r);
        return false;
    }
    cupti_host_config_size_params cs = {CUPTI_HOST_CONFIG_SIZE_SIZE, NULL, R.host, 0};
    if ((r = CALL(cuptiProfilerHostGetConfigImageSize, &cs)) != CUPTI_SUCCESS || !cs.configImageSize) {
        fail("cuptiProfilerHostGetConfigImageSize", r);
        return false;
    }
    R.config_size = cs.configImageSize;
    cupti_debug("gpu-metrics: config image %zu bytes", R.config_size);
    R.config = calloc(1, R.config_size);
    if (!R.config) {
        fail_text("--gpu-metrics: out of memory");
        return false;
    }
    cupti_host_config_image_params gi = {CUPTI_HOST_CONFIG_IMAGE_SIZE, NULL, R.host, R.config_size, R.config};
    if ((r = CALL(cuptiProfilerHostGetConfigImage, &gi)) != CUPTI_SUCCESS) {
        fail("cuptiProfilerHostGetConfigImage", r);
        return false;
    }
    cupti_host_passes_params np = {CUPTI_HOST_PASSES_SIZE, NULL, R.config_size, R.config, 0};
    if ((r = CALL(cuptiProfilerHostGetNumOfPasses, &np)) != CUPTI_SUCCESS) {
        fail("cuptiProfilerHostGetNumOfPasses", r);
        return false;
    }
    R.st.passes = (unsigned)np.numOfPasses;
    cupti_debug("gpu-metrics: %zu pass(es) per kernel", np.numOfPasses);

    CUpti_RangeProfiler_Enable_Params en;
    memset(&en, 0, sizeof en);
    en.structSize = CUpti_RangeProfiler_Enable_Params_STRUCT_SIZE;
    en.ctx = (CUcontext)ctx;
    if ((r = CALL(cuptiRangeProfilerEnable, &en)) != CUPTI_SUCCESS || !en.pRangeProfilerObject) {
        fail("cuptiRangeProfilerEnable", r);
        return false;
    }
    R.obj = en.pRangeProfilerObject;

    CUpti_RangeProfiler_GetCounterDataSize_Params gs;
    memset(&gs, 0, sizeof gs);
    gs.structSize = CUpti_RangeProfiler_GetCounterDataSize_Params_STRUCT_SIZE;
    gs.pRangeProfilerObject = R.obj;
    gs.pMetricNames = R.sel.names;
    gs.numMetrics = R.sel.n;
    gs.maxNumOfRanges = R.env.max_ranges;
    gs.maxNumRangeTreeNodes = R.env.max_ranges;
    if ((r = CALL(cuptiRangeProfilerGetCounterDataSize, &gs)) != CUPTI_SUCCESS || !gs.counterDataSize) {
        fail("cuptiRangeProfilerGetCounterDataSize", r);
        return false;
    }
    R.counter_data_size = gs.counterDataSize;
    cupti_debug("gpu-metrics: counter data image %zu bytes for %u ranges", R.counter_data_size, R.env.max_ranges);
    R.counter_data = calloc(1, R.counter_data_size);
    if (!R.counter_data) {
        fail_text("--gpu-metrics: out of memory");
        return false;
    }
    if (!counter_data_init())
        return false;
    R.want = want_next(0);
    if (R.want) {
        if (!start_window(true))
            return false;
    } else if ((r = set_config()) != CUPTI_SUCCESS) {
        /* Configured now, started when the sampling wants the first launch. */
        fail("cuptiRangeProfilerSetConfig", r);
        return false;
    }
    R.marking = false;
    cupti_debug("gpu-metrics: session active (range profiler object %p)", (void *)R.obj);
    cupti_mconfig_rec mc = {R.env.now_ns(), R.st.passes, R.sel.present, R.env.max_ranges, (uint32_t)dev, 1, 0};
    R.env.emit(CUPTI_REC_MCONFIG, &mc, R.chip);
    R.state = R.st.state = ST_ACTIVE;
    R.settled_calls = 0;
    settled("setup");
    return true;
}

/* ---- windows ---- */

/* Stops the window, decodes and evaluates its ranges into KMETRIC records, and starts
 * the next one when restart. */
static bool decode_window(bool restart)
{
    atomic_store(&decode_due, false);
    if (!R.collecting)
        return true; /* stopped by the sampling: nothing pending */
    CUptiResult r = pop_range();
    if (r != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerPopRange", r);
        return false;
    }
    CUpti_RangeProfiler_Stop_Params sp;
    memset(&sp, 0, sizeof sp);
    sp.structSize = CUpti_RangeProfiler_Stop_Params_STRUCT_SIZE;
    sp.pRangeProfilerObject = R.obj;
    r = CALL(cuptiRangeProfilerStop, &sp);
    R.collecting = false;
    if (r != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerStop", r);
        return false;
    }
    CUpti_RangeProfiler_DecodeData_Params dd;
    memset(&dd, 0, sizeof dd);
    dd.structSize = CUpti_RangeProfiler_DecodeData_Params_STRUCT_SIZE;
    dd.pRangeProfilerObject = R.obj;
    if ((r = CALL(cuptiRangeProfilerDecodeData, &dd)) != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerDecodeData", r);
        return false;
    }
    R.st.dropped += dd.numOfRangeDropped;
    CUpti_RangeProfiler_GetCounterDataInfo_Params gi;
    memset(&gi, 0, sizeof gi);
    gi.structSize = CUpti_RangeProfiler_GetCounterDataInfo_Params_STRUCT_SIZE;
    gi.pCounterDataImage = R.counter_data;
    gi.counterDataImageSize = R.counter_data_size;
    if ((r = CALL(cuptiRangeProfilerGetCounterDataInfo, &gi)) != CUPTI_SUCCESS) {
        fail("cuptiRangeProfilerGetCounterDataInfo", r);
        return false;
    }
    size_t n = gi.numTotalRanges;
    cupti_debug("gpu-metrics: window %llu: %zu ranges for %zu launches (%zu graph launches), %zu dropped",
                (unsigned long long)R.st.windows + 1, n, R.q.n, R.q.graph_launches, dd.numOfRangeDropped);
    uint64_t now = R.env.now_ns();
    uint64_t t_eval = mono_ns();
    for (size_t i = 0; i < n; i++) {
        double vals[CUPTI_RM_COUNT] = {0};
        cupti_host_evaluate_params ev = {CUPTI_HOST_EVALUATE_SIZE, NULL, R.host, R.counter_data,
                                         R.counter_data_size, i, R.sel.names, R.sel.n, vals};
        /* Traced for the first ranges of a window only: one line per kernel would drown the rest. */
        r = i < 2 ? CALL(cuptiProfilerHostEvaluateToGpuValues, &ev) : A.cuptiProfilerHostEvaluateToGpuValues(&ev);
        if (r != CUPTI_SUCCESS) {
            fail("cuptiProfilerHostEvaluateToGpuValues", r);
            return false;
        }
        cupti_kmetric_rec k;
        memset(&k, 0, sizeof k);
        k.seq = ++R.seq;
        k.t_ns = now;
        for (size_t m = 0; m < R.sel.n; m++) {
            double v = vals[m];
            /* A counter the pass could not read comes back as NaN or negative: absent. */
            if (v == v && v >= 0 && v < 1e300) {
                k.v[R.sel.role_of[m]] = v;
                k.present |= 1u << R.sel.role_of[m];
            }
        }
        const char *name = R.q.graph_launches ? NULL : cupti_range_names_at(&R.q, i, n);
        if (!name)
            R.st.unnamed++;
        R.env.emit(CUPTI_REC_KMETRIC, &k, name ? name : R.q.graph_launches ? "<CUDA graph kernel>" : "<unnamed>");
        R.st.ranges++;
    }
    R.st.overhead_ns += mono_ns() - t_eval;
    if (!cupti_range_names_fit(&R.q, n) && !R.q.graph_launches && !R.mismatch_noted) {
        R.mismatch_noted = true;
        char text[300];
        snprintf(text, sizeof text,
                 "--gpu-metrics: a window had %zu profiled ranges for %zu kernel launches seen%s: ranges are named "
                 "by launch order, so kernel names in the metrics may be off in that window",
                 n, R.q.n, R.q.graph_launches ? " (it held CUDA graph launches)" : "");
        R.env.note(CUPTI_NOTE_INFO, text);
    }
    R.st.windows++;
    cupti_range_names_clear(&R.q);
    emit_stats();
    if (R.settled_calls == 1 && !R.draining)
        settled("first window decoded");
    if (!restart)
        return true;
    return counter_data_init() && start_window(false);
}

/* Starts or stops profiling where the sampling wants it, at the return of one of the
 * program's calls (never inside a launch). */
static void gate(void)
{
    if (R.state != ST_ACTIVE || R.want == R.collecting)
        return;
    R.st.toggles++;
    if (R.st.toggles <= 40)
        cupti_debug("gpu-metrics: profiling %s after %llu launches (%llu profiled)", R.want ? "on" : "off",
                    (unsigned long long)R.st.seen, (unsigned long long)R.st.profiled);
    if (R.want) {
        if (counter_data_init())
            start_window(false);
    } else
        decode_window(false);
}

/* ---- the tracer's hooks ---- */

void cupti_range_prof_launch_enter(const char *name, uint64_t shape, bool runtime, bool graph)
{
    if (tl_inside || !R.inited)
        return;
    if (!runtime && tl_rt_launch)
        return; /* the driver launch inside a runtime launch: counted at the runtime one */
    if (runtime)
        tl_rt_launch++;
    tl_replay_t0 = 0;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    if (R.state == ST_IDLE) {
        /* Not set up here: the launch is in flight inside the driver, and the setup
         * (profiler initialisation, counter images, the profiler object) is no work for
         * the middle of a launch.  It waits for this call's return. */
        R.st.early++;
        if (R.st.early == 1)
            cupti_debug("gpu-metrics: a kernel launch before the session started (not profiled; the session starts "
                        "when this call returns)");
    } else if (R.state == ST_ACTIVE) {
        void *ctx = NULL;
        bool have = R.env.ctx_current(&ctx) == 0 && ctx;
        if (have && ctx != R.ctx) {
            R.st.other_ctx++;
            if (!R.other_ctx_noted) {
                R.other_ctx_noted = true;
                R.env.note(CUPTI_NOTE_INFO, "--gpu-metrics: kernels of a second CUDA context are not profiled "
                                            "(the Range Profiler runs in the first context a CUDA call returned in)");
            }
        } else if (have) {
            uint64_t key = graph ? 0 : key_of(name, shape);
            R.st.seen++;
            if (R.collecting) {
                /* A graph launch runs kernels no callback names: its ranges get a window
                 * of their own, so that the launches around it keep their names. */
                bool boundary = graph ? R.q.n > 0 : R.q.graph_launches > 0;
                if (R.q.n >= R.env.max_ranges || boundary)
                    decode_window(true);
            }
            if (R.state == ST_ACTIVE && R.collecting) {
                if (graph)
                    R.q.graph_launches++;
                else
                    cupti_range_names_push(&R.q, name);
                R.st.profiled++;
                key_ent *e = key_find(key, true);
                if (e)
                    e->profiled++;
                tl_replay_t0 = mono_ns();
                if (R.q.n >= R.env.max_ranges)
                    atomic_store(&decode_due, true);
            }
            key_ent *p = key_find(R.prev_key, false);
            if (p && key)
                p->succ = key;
            if (key)
                key_find(key, true);
            R.prev_key = key;
            R.want = want_next(key);
            if (R.state == ST_ACTIVE && R.want != R.collecting)
                atomic_store(&gate_due, true);
        }
    }
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_launch_exit(bool runtime)
{
    if (runtime && tl_rt_launch > 0)
        tl_rt_launch--;
    else if (!runtime && tl_rt_launch)
        return; /* the driver launch inside a runtime launch */
    if (tl_replay_t0) {
        atomic_fetch_add(&replay_ns, mono_ns() - tl_replay_t0);
        tl_replay_t0 = 0;
    }
}

void cupti_range_prof_memset(void)
{
    cupti_range_prof_driver_op("<memset>");
}

void cupti_range_prof_driver_op(const char *label)
{
    if (tl_inside || !R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    void *ctx = NULL;
    if (R.state == ST_ACTIVE && R.collecting && R.env.ctx_current(&ctx) == 0 && ctx == R.ctx) {
        cupti_range_names_push_opt(&R.q, label);
        R.st.memsets++;
        if (R.q.n >= R.env.max_ranges)
            atomic_store(&decode_due, true);
    }
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_set_point(const char *call)
{
    tl_point = call;
}

void cupti_range_prof_api_exit(void)
{
    if ((!atomic_load_explicit(&want_setup, memory_order_relaxed) &&
         !atomic_load_explicit(&decode_due, memory_order_relaxed) &&
         !atomic_load_explicit(&gate_due, memory_order_relaxed)) ||
        tl_inside || tl_rt_launch)
        return;
    tl_inside = true;
    bool dbg = cupti_debug_on() && atomic_load_explicit(&want_setup, memory_order_relaxed);
    if (dbg)
        cupti_debug("gpu-metrics: %s returned: taking the session's lock", tl_point ? tl_point : "a CUDA call");
    pthread_mutex_lock(&R.lock);
    if (R.inited && R.state == ST_ACTIVE) {
        void *ctx = NULL;
        if (R.env.ctx_current(&ctx) == 0 && ctx == R.ctx) {
            /* A full window restarts only if the sampling wants the next launch too. */
            if (R.collecting && R.q.n >= R.env.max_ranges)
                decode_window(R.want);
            if (atomic_exchange(&gate_due, false))
                gate();
        }
    } else if (R.inited && R.state == ST_IDLE) {
        void *ctx = NULL;
        int dev = -1;
        /* No context current yet (cuInit, cuDeviceGet, ...) or one being torn down: wait
         * for a later call. */
        int rc = R.env.ctx_current(&ctx);
        cupti_debug("gpu-metrics: current context %p (%d)", ctx, rc);
        if (rc == 0 && ctx && R.env.ctx_device(&dev) == 0 && dev >= 0) {
            atomic_store(&want_setup, false);
            setup(ctx, dev);
        } else
            cupti_debug("gpu-metrics: no context current yet");
    }
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_sync(void)
{
    if (tl_inside || !R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    if (R.state == ST_ACTIVE && R.collecting && (R.q.n || R.q.graph_launches) &&
        R.env.now_ns() - R.window_start_ns >= (uint64_t)R.env.sync_period_ms * 1000000ull) {
        void *ctx = NULL;
        if (R.env.ctx_current(&ctx) == 0 && ctx == R.ctx)
            decode_window(true);
    }
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

static void end_session(bool decode)
{
    if (R.state == ST_ACTIVE) {
        if (!decode || decode_window(false)) {
            if (!decode) {
                R.st.lost += R.q.n;
                cupti_range_names_clear(&R.q);
            }
            release();
            R.state = R.st.state = ST_IDLE;
            atomic_store(&want_setup, true);
            cupti_debug("gpu-metrics: session ended with its context; the next CUDA call that returns with a "
                        "context current starts another");
        }
    }
}

void cupti_range_prof_ctx_ending(void)
{
    if (tl_inside || !R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    bool was_active = R.state == ST_ACTIVE;
    end_session(true);
    if (was_active && R.state == ST_IDLE)
        settled("session ended with its context");
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_ctx_destroying(void *ctx)
{
    if (tl_inside || !R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    if (R.state == ST_ACTIVE && ctx == R.ctx) {
        cupti_debug("gpu-metrics: the profiled context %p is being destroyed: the session ends", ctx);
        end_session(true);
        if (R.state == ST_IDLE)
            settled("session ended with its context");
    }
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_fatal(void)
{
    if (!R.inited)
        return;
    pthread_mutex_lock(&R.lock);
    if (R.state == ST_ACTIVE) {
        char text[300];
        snprintf(text, sizeof text,
                 "--gpu-metrics: a fatal CUDA error ended the profiling session; the counters of the last %zu kernel "
                 "launches were lost",
                 R.q.n);
        R.st.lost += R.q.n;
        cupti_range_names_clear(&R.q);
        /* The context is unusable: nothing of it may be called, not even Disable (the
         * profiler object is dropped first, so release() skips it).  The host object is
         * the host's alone (no context), so it goes properly, and then the availability
         * image it was reading; our other buffers go too. */
        R.obj = NULL;
        release();
        R.fatal = true;
        R.state = R.st.state = ST_FAILED;
        atomic_store(&want_setup, false);
        R.env.note(CUPTI_NOTE_NO_METRICS, text);
    }
    pthread_mutex_unlock(&R.lock);
}

/* The end of the profiler's life in this process, with the session's lock held: the
 * statistics record out, the names freed, no setup any more. */
static void close_out(void)
{
    emit_stats();
    cupti_range_names_free(&R.q);
    if (R.state != ST_FAILED)
        R.state = R.st.state = ST_DONE;
    R.inited = false;
    atomic_store(&want_setup, false);
}

void cupti_range_prof_finish(void)
{
    if (!R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    R.draining = true; /* the final stop: no profiling starts, no exit handler registered */
    end_session(true);
    if (R.state == ST_FAILED && !R.fatal)
        release(); /* what a failed setup left */
    if (R.profiler_initialized && !R.fatal) {
        CUpti_Profiler_DeInitialize_Params dp = {CUpti_Profiler_DeInitialize_Params_STRUCT_SIZE, NULL};
        CALL(cuptiProfilerDeInitialize, &dp);
        R.profiler_initialized = false;
    }
    close_out();
    cupti_debug("gpu-metrics: finished: %llu ranges in %llu windows, %llu launches before the session, %llu lost",
                (unsigned long long)R.st.ranges, (unsigned long long)R.st.windows, (unsigned long long)R.st.early,
                (unsigned long long)R.st.lost);
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_abandon(void)
{
    if (!R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    R.draining = true;
    R.want = false;
    if (R.state == ST_ACTIVE) {
        R.st.lost += R.q.n;
        cupti_range_names_clear(&R.q);
    }
    close_out();
    cupti_debug("gpu-metrics: abandoned at exit without a CUPTI call: %llu ranges in %llu windows, %llu lost",
                (unsigned long long)R.st.ranges, (unsigned long long)R.st.windows, (unsigned long long)R.st.lost);
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_drain(void)
{
    if (!R.inited)
        return;
    tl_inside = true;
    pthread_mutex_lock(&R.lock);
    R.draining = true;
    R.want = false;
    if (R.state == ST_ACTIVE && !R.fatal)
        decode_window(false);
    pthread_mutex_unlock(&R.lock);
    tl_inside = false;
}

void cupti_range_prof_stop(void (*flush)(void *arg), void *arg)
{
    cupti_range_prof_drain();
    if (flush)
        flush(arg);
    cupti_range_prof_finish();
}

cupti_range_stats cupti_range_prof_stats(void)
{
    pthread_mutex_lock(&R.lock);
    cupti_range_stats s = R.st;
    s.replay_ns = atomic_load(&replay_ns);
    pthread_mutex_unlock(&R.lock);
    return s;
}

#endif

/* Measured on an H200 (driver 580.159.04, CUPTI 13.0.1, 2026-11-26): in process (amxdiag's
 * built-in path, driver API) the Range Profiler ran to the end with CONCURRENT_KERNEL
 * activity; in an injected CUDA-runtime program every activity flush once the profiler was
 * set up made CUPTI's own activity thread fault (SIGSEGV inside libcupti.so.13) — unless
 * kernel activity is KERNEL instead (cupti_tracer.c's activity_mode), which the injected
 * tracer now uses.  AMXDIAG_GPU_METRICS_INJECTED=0 still turns the injected case off, should
 * another CUPTI release fault where this one did not. */
const char cupti_range_prof_off_reason[] =
    "--gpu-metrics is off for an external command (AMXDIAG_GPU_METRICS_INJECTED=0). Unset it to profile the "
    "command's kernels (on an H200 with CUPTI 13.0.1 this works with KERNEL activity records, which amxdiag "
    "uses in an injected program), profile the built-in path (amxdiag profile -e gpu --gpu-metrics --ngl N ...), "
    "or run Nsight Compute (ncu) on the command. The kernel trace is complete.";

bool cupti_range_prof_enabled(bool injected)
{
    if (!injected)
        return true;
    const char *a = getenv("AMXDIAG_GPU_METRICS_INJECTED");
    return !(a && !strcmp(a, "0"));
}

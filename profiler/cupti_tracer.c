/* The in-process CUPTI tracer (callbacks + activity) behind the injection library and the
 * built-in path's collector. */
#include "profiler/cupti_tracer.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cuda/cuda_driver.h"
#include "profiler/cupti_load.h"
#include "profiler/cupti_debug.h"
#include "profiler/cupti_range_prof.h"

uint64_t cupti_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#ifndef ADG_HAVE_CUPTI

adg_error *cupti_tracer_start(const cupti_tracer_opts *o)
{
    (void)o;
    return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "GPU tracing unavailable: built without CUPTI headers"),
                          "rebuild amxdiag on a machine with the CUDA 13 toolkit (cupti.h in <cuda>/include)");
}
void cupti_tracer_flush(cupti_flush_reason reason)
{
    (void)reason;
}
void cupti_tracer_stop(void)
{
}
void cupti_tracer_quiesce(void)
{
}
bool cupti_tracer_running(void)
{
    return false;
}

#else

#include <cupti.h>

typedef CUresult (*param_info_fn)(CUfunction, size_t, size_t *, size_t *);

static struct {
    cupti_api api;
    cupti_tracer_opts o;
    CUpti_SubscriberHandle sub;
    bool subscribed;
    atomic_bool running;
    int64_t ts_offset;          /* CUPTI clock → CLOCK_MONOTONIC, 0 with our timestamp callback */
    atomic_uint_fast64_t seq;   /* launches so far */
    atomic_size_t dropped;
    atomic_bool dropped_noted;
    atomic_bool fatal_flushed;
    param_info_fn param_info;
    pthread_once_t param_once;
    /* Device memory (MEMINFO): the driver table, loaded on first use. */
    kern_cuda_driver drv;
    bool drv_ok;
    CUresult (*ctx_get_device)(CUdevice *);
    pthread_once_t drv_once;
    atomic_uint_fast64_t mem_last_ns;
    atomic_int capturing;       /* streams in capture: no cuMemGetInfo of ours in between */
    bool metrics;               /* --gpu-metrics: the Range Profiler follows the launches */
    /* The sink (T.o.emit and its context) is open from start to stop.  CUPTI may hand back
     * activity buffers after stop (a context destroyed later, its exit handler): by then
     * the caller may have freed the sink, so such buffers are freed unread. */
    pthread_mutex_t sink_lock;
    bool sink_open;
    /* The activity kinds asked for (AMXDIAG_GPU_METRICS_ACTIVITY), how many are enabled
     * now, and the buffer size. */
    int act_mode;
    CUpti_ActivityKind kinds[3];
    size_t n_kinds;
    atomic_bool kinds_on;
    size_t buf_bytes;
} T = {.param_once = PTHREAD_ONCE_INIT, .drv_once = PTHREAD_ONCE_INIT, .sink_lock = PTHREAD_MUTEX_INITIALIZER};

/* Per thread: runtime calls in progress, and the launch a runtime call is making (emitted
 * at its exit unless the driver launch inside it was seen, which carries the arguments). */
static _Thread_local int tl_rt_depth;
static _Thread_local bool tl_driver_launch_seen;
static _Thread_local bool tl_rt_launch_pending;
static _Thread_local cupti_launch_rec tl_rt_launch;
static _Thread_local char tl_rt_name[256];
/* Set while the tracer itself calls the driver (cuFuncGetParamInfo past the last
 * parameter returns an error by design): those calls are not the program's. */
static _Thread_local bool tl_self_call;
/* Set while this thread runs on_callback: a callback that arrives then comes from a CUDA
 * call of ours (the program's thread is inside our callback, it makes no call of its own),
 * and must not run the tracer's work again (locks, pthread_once) on the same thread. */
static _Thread_local bool tl_in_cb;

static uint32_t tid(void)
{
    return (uint32_t)syscall(SYS_gettid);
}

static uint64_t CUPTIAPI mono_cb(void)
{
    return cupti_mono_ns();
}

static void emit(cupti_rec_type type, const void *fixed, const char *name)
{
    T.o.emit(T.o.ctx, type, fixed, name, name ? strlen(name) : 0);
}

static void note(cupti_note_code code, const char *text)
{
    cupti_note_rec n = {code, 0};
    emit(CUPTI_REC_NOTE, &n, text);
}

/* AMXDIAG_CUPTI_DEBUG: the tracer's own set-up and tear-down calls, a line before and
 * one after (the per-record and per-buffer calls are left out). */
#define TCALL(fn, expr)                                                                          \
    ({                                                                                           \
        cupti_debug("> %s", fn);                                                                 \
        CUptiResult r_ = (expr);                                                                 \
        cupti_debug("< %s: %s", fn, r_ == CUPTI_SUCCESS ? "CUPTI_SUCCESS (0)" : cupti_result_str(&T.api, r_)); \
        r_;                                                                                      \
    })

/* ---- activity buffers ---- */

#define ACT_BUF (1u << 20)

/* The buffers handed to CUPTI and not yet back.  A buffer is read and freed only when it
 * is one of these: an injected program died at exit with "double free or corruption" in
 * cuptiActivityFlushAll once the Range Profiler had run (an H200, CUDA 13.0.1), which a
 * buffer handed back twice (or one that is not ours) would explain.  Such a buffer is
 * neither read nor freed, and AMXDIAG_CUPTI_DEBUG says so. */
#define LEDGER_MAX 1024
static struct {
    pthread_mutex_t lock;
    uint8_t *out[LEDGER_MAX];
    size_t n;
    atomic_uint strange; /* buffers back that were not out */
    atomic_uint returned;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void CUPTIAPI buf_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *max_records = 0;
    *size = 0;
    *buffer = NULL;
    pthread_mutex_lock(&L.lock);
    size_t bytes = T.buf_bytes ? T.buf_bytes : ACT_BUF;
    if (L.n < LEDGER_MAX && (*buffer = aligned_alloc(8, bytes)) != NULL) {
        L.out[L.n++] = *buffer;
        *size = bytes;
    }
    pthread_mutex_unlock(&L.lock);
}

static bool ledger_take(uint8_t *b)
{
    bool found = false;
    pthread_mutex_lock(&L.lock);
    for (size_t i = 0; i < L.n; i++)
        if (L.out[i] == b) {
            L.out[i] = L.out[--L.n];
            found = true;
            break;
        }
    pthread_mutex_unlock(&L.lock);
    return found;
}

static void emit_cb(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len)
{
    unsigned *counts = ctx;
    if (counts && type < 32)
        counts[type]++;
    T.o.emit(T.o.ctx, type, fixed, name, name_len);
}

static void CUPTIAPI buf_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    if (buffer && !ledger_take(buffer)) {
        atomic_fetch_add(&L.strange, 1);
        cupti_debug("tracer: CUPTI handed back an activity buffer %p (%zu of %zu bytes) that is not out (handed "
                    "back twice, or not ours): neither read nor freed",
                    (void *)buffer, valid, size);
        return;
    }
    if (valid > size)
        valid = 0; /* never read past the buffer */
    unsigned counts[32] = {0};
    pthread_mutex_lock(&T.sink_lock);
    if (T.sink_open) {
        if (buffer && valid)
            cupti_activity_walk(buffer, valid, T.api.ActivityGetNextRecord, T.ts_offset, emit_cb, counts);
        size_t dropped = 0;
        if (T.api.ActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS && dropped) {
            atomic_fetch_add(&T.dropped, dropped);
            if (!atomic_exchange(&T.dropped_noted, true))
                note(CUPTI_NOTE_DROPPED, "CUPTI dropped activity records (its buffers were full): kernel counts "
                                         "and times are lower bounds");
        }
    } else
        cupti_debug("tracer: an activity buffer came back after the tracer stopped (%zu bytes of records): freed "
                    "unread",
                    valid);
    pthread_mutex_unlock(&T.sink_lock);
    unsigned k = atomic_fetch_add(&L.returned, 1) + 1;
    /* Whether buffers come back during the run or all at the end is what the exit-time
     * crash hinges on: a line per buffer (the first 64, then every 64th). */
    if (k <= 64 || k % 64 == 0)
        cupti_debug("tracer: activity buffer %u back (thread %u, context %p, stream %u): %zu bytes, %u kernels, %u "
                    "copies, %u memsets",
                    k, tid(), (void *)ctx, stream, valid, counts[CUPTI_REC_KERNEL], counts[CUPTI_REC_MEMCPY],
                    counts[CUPTI_REC_MEMSET]);
    free(buffer);
}

/* ---- flushes during the run (AMXDIAG_CUPTI_FLUSH_DURING) ----
 * CUPTI's periodic flush hands back only full buffers: a short program's records all wait
 * for the exit flush.  A thread of ours asks for the completed ones (cuptiActivityFlushAll
 * with no flag, "can be done at a regular interval in a separate thread", cupti_activity.h)
 * so that the exit has little left to deliver. */
static struct {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    unsigned period_ms;
    atomic_uint flushes;
} F = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void *flusher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&F.lock);
    while (!F.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)F.period_ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&F.cond, &F.lock, &until);
        if (F.stop)
            break;
        pthread_mutex_unlock(&F.lock);
        tl_self_call = true;
        CUptiResult r = T.api.ActivityFlushAll(0);
        tl_self_call = false;
        unsigned k = atomic_fetch_add(&F.flushes, 1) + 1;
        if (k <= 3 || r != CUPTI_SUCCESS)
            cupti_debug("tracer: flush during the run #%u (cuptiActivityFlushAll(0)): %s", k,
                        r == CUPTI_SUCCESS ? "CUPTI_SUCCESS (0)" : cupti_result_str(&T.api, r));
        if (T.o.flushed)
            T.o.flushed(T.o.ctx, CUPTI_FLUSH_PERIODIC);
        pthread_mutex_lock(&F.lock);
    }
    pthread_mutex_unlock(&F.lock);
    return NULL;
}

/* A child forked by the program has no flush thread (threads do not survive fork): its
 * exit handler must not wait for one. */
static void flusher_forked(void)
{
    F.started = false;
}

static void flusher_atfork(void)
{
    pthread_atfork(NULL, NULL, flusher_forked);
}

static void flusher_start(unsigned period_ms)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, flusher_atfork);
    F.stop = false;
    F.period_ms = period_ms ? period_ms : 200;
    F.started = pthread_create(&F.thread, NULL, flusher, NULL) == 0;
    cupti_debug("tracer: flushes during the run every %u ms: %s", F.period_ms, F.started ? "on" : "thread refused");
}

static void flusher_stop(void)
{
    if (!F.started)
        return;
    pthread_mutex_lock(&F.lock);
    F.stop = true;
    pthread_cond_signal(&F.cond);
    pthread_mutex_unlock(&F.lock);
    pthread_join(F.thread, NULL);
    F.started = false;
    cupti_debug("tracer: flushes during the run stopped after %u", atomic_load(&F.flushes));
}

static void maybe_meminfo(void);

/* ---- callbacks ---- */

static void resolve_param_info(void)
{
    void *s = dlsym(RTLD_DEFAULT, "cuFuncGetParamInfo");
    if (!s) {
        /* libcuda is loaded already (it called us); this only finds it, it loads nothing. */
        void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (h)
            s = dlsym(h, "cuFuncGetParamInfo");
    }
    memcpy(&T.param_info, &s, sizeof s);
}

/* The 8-byte arguments of a launch (device pointers among them), where the driver can
 * say how the parameters are laid out. */
static void read_args(CUfunction f, void **params, cupti_launch_rec *l)
{
    if (!f || !params)
        return;
    pthread_once(&T.param_once, resolve_param_info);
    if (!T.param_info)
        return;
    for (size_t i = 0; i < 64 && l->n_ptr < CUPTI_PROTO_MAX_PTRS; i++) {
        size_t off = 0, sz = 0;
        tl_self_call = true;
        CUresult r = T.param_info(f, i, &off, &sz);
        tl_self_call = false;
        if (r != CUDA_SUCCESS)
            break;
        if (sz == 8 && params[i]) {
            uint64_t v;
            memcpy(&v, params[i], sizeof v);
            l->ptr[l->n_ptr++] = v;
        }
    }
}

static void load_driver_table(void);

/* --gpu-metrics hooks: the Range Profiler calls the driver (context, device), which must
 * not come back as the program's calls. */
static void range_launch(const char *name, const cupti_launch_rec *l, bool runtime, bool graph)
{
    /* A launch into a stream capture runs nothing (it becomes a graph node), and a call
     * of ours inside a capture could invalidate the program's graph. */
    if (!T.metrics || atomic_load(&T.capturing) > 0)
        return;
    /* The sampling counts launches per kernel and launch shape (a GEMV at each of its
     * matrix sizes). */
    uint64_t shape = 0;
    for (int i = 0; i < 3; i++)
        shape = shape * 1000003u + l->grid[i];
    for (int i = 0; i < 3; i++)
        shape = shape * 1000003u + l->block[i];
    tl_self_call = true;
    cupti_range_prof_launch_enter(name, shape, runtime, graph);
    tl_self_call = false;
}

static bool is_memset(CUpti_CallbackId cbid)
{
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D8_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D16_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D32_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D8_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D16_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D32_v2_ptds:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D8Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D16Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D32Async:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D8Async_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D16Async_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemsetD2D32Async_ptsz:
        return true;
    default:
        return false;
    }
}

static bool is_driver_launch(CUpti_CallbackId cbid)
{
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch:
    case CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz:
        return true;
    default:
        return false;
    }
}

static void range_call(void (*fn)(void))
{
    if (!T.metrics)
        return;
    tl_self_call = true;
    fn();
    tl_self_call = false;
}

static int range_ctx_current(void **ctx)
{
    pthread_once(&T.drv_once, load_driver_table);
    if (!T.drv_ok)
        return -1;
    kern_cu_context c = NULL;
    if (T.drv.cuCtxGetCurrent(&c) != KERN_CU_SUCCESS)
        return -1;
    *ctx = (void *)c;
    return 0;
}

static int range_ctx_device(int *device)
{
    pthread_once(&T.drv_once, load_driver_table);
    CUdevice d = 0;
    if (!T.drv_ok || !T.ctx_get_device || T.ctx_get_device(&d) != CUDA_SUCCESS)
        return -1;
    *device = (int)d;
    return 0;
}

/* AMXDIAG_CUPTI_DEBUG: the program's first launches and synchronisations, a line at
 * their ENTER and one at their EXIT, so that a program that hangs inside one (a kernel
 * replayed by the Range Profiler that never finishes) names it. */
static atomic_uint debug_lines;
static void launch_debug(const char *dir, const char *api, const char *name)
{
    if (cupti_debug_on() && atomic_fetch_add(&debug_lines, 1) < 600)
        cupti_debug("%s %s %s", dir, api ? api : "?", name ? name : "");
}

static void emit_launch(cupti_launch_rec *l, const char *name)
{
    l->seq = atomic_fetch_add(&T.seq, 1) + 1;
    emit(CUPTI_REC_LAUNCH, l, name);
}

static void driver_launch(CUpti_CallbackId cbid, const CUpti_CallbackData *d)
{
    cupti_launch_rec l;
    memset(&l, 0, sizeof l);
    l.t_ns = cupti_mono_ns();
    l.correlation = d->correlationId;
    l.thread = tid();
    const void *p = d->functionParams;
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz: {
        const cuLaunchKernel_params *a = p;
        l.api = CUPTI_LAUNCH_KERNEL;
        l.grid[0] = a->gridDimX, l.grid[1] = a->gridDimY, l.grid[2] = a->gridDimZ;
        l.block[0] = a->blockDimX, l.block[1] = a->blockDimY, l.block[2] = a->blockDimZ;
        l.smem = a->sharedMemBytes;
        l.stream = (uint64_t)(uintptr_t)a->hStream;
        read_args(a->f, a->kernelParams, &l);
        break;
    }
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz: {
        const cuLaunchKernelEx_params *a = p;
        l.api = CUPTI_LAUNCH_KERNEL_EX;
        if (a->config) {
            l.grid[0] = a->config->gridDimX, l.grid[1] = a->config->gridDimY, l.grid[2] = a->config->gridDimZ;
            l.block[0] = a->config->blockDimX, l.block[1] = a->config->blockDimY, l.block[2] = a->config->blockDimZ;
            l.smem = a->config->sharedMemBytes;
            l.stream = (uint64_t)(uintptr_t)a->config->hStream;
        }
        read_args(a->f, a->kernelParams, &l);
        break;
    }
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel:
    case CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz: {
        const cuLaunchCooperativeKernel_params *a = p;
        l.api = CUPTI_LAUNCH_COOPERATIVE;
        l.grid[0] = a->gridDimX, l.grid[1] = a->gridDimY, l.grid[2] = a->gridDimZ;
        l.block[0] = a->blockDimX, l.block[1] = a->blockDimY, l.block[2] = a->blockDimZ;
        l.smem = a->sharedMemBytes;
        l.stream = (uint64_t)(uintptr_t)a->hStream;
        read_args(a->f, a->kernelParams, &l);
        break;
    }
    case CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch:
    case CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz: {
        const cuGraphLaunch_params *a = p;
        l.api = CUPTI_LAUNCH_GRAPH;
        l.stream = (uint64_t)(uintptr_t)a->hStream;
        break;
    }
    default:
        return;
    }
    tl_driver_launch_seen = true;
    launch_debug(">>", d->functionName, d->symbolName);
    range_launch(d->symbolName, &l, false, l.api == CUPTI_LAUNCH_GRAPH);
    emit_launch(&l, d->symbolName ? d->symbolName : (l.api == CUPTI_LAUNCH_GRAPH ? "<graph launch>" : NULL));
}

static void runtime_launch_entry(CUpti_CallbackId cbid, const CUpti_CallbackData *d)
{
    cupti_launch_rec *l = &tl_rt_launch;
    memset(l, 0, sizeof *l);
    l->t_ns = cupti_mono_ns();
    l->correlation = d->correlationId;
    l->thread = tid();
    const void *p = d->functionParams;
    switch (cbid) {
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000: {
        /* Same layout for both (func, grid, block, args, smem, stream). */
        const cudaLaunchKernel_v7000_params *a = p;
        l->api = cbid == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000 ||
                         cbid == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000
                     ? CUPTI_LAUNCH_COOPERATIVE
                     : CUPTI_LAUNCH_KERNEL;
        l->grid[0] = a->gridDim.x, l->grid[1] = a->gridDim.y, l->grid[2] = a->gridDim.z;
        l->block[0] = a->blockDim.x, l->block[1] = a->blockDim.y, l->block[2] = a->blockDim.z;
        l->smem = (uint32_t)a->sharedMem;
        l->stream = (uint64_t)(uintptr_t)a->stream;
        break;
    }
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060: {
        const cudaLaunchKernelExC_v11060_params *a = p;
        l->api = CUPTI_LAUNCH_KERNEL_EX;
        if (a->config) {
            l->grid[0] = a->config->gridDim.x, l->grid[1] = a->config->gridDim.y, l->grid[2] = a->config->gridDim.z;
            l->block[0] = a->config->blockDim.x, l->block[1] = a->config->blockDim.y;
            l->block[2] = a->config->blockDim.z;
            l->smem = (uint32_t)a->config->dynamicSmemBytes;
            l->stream = (uint64_t)(uintptr_t)a->config->stream;
        }
        break;
    }
    case CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_ptsz_v10000: {
        const cudaGraphLaunch_v10000_params *a = p;
        l->api = CUPTI_LAUNCH_GRAPH;
        l->stream = (uint64_t)(uintptr_t)a->stream;
        break;
    }
    default:
        return;
    }
    snprintf(tl_rt_name, sizeof tl_rt_name, "%s",
             d->symbolName ? d->symbolName : (l->api == CUPTI_LAUNCH_GRAPH ? "<graph launch>" : "?"));
    tl_rt_launch_pending = true;
    tl_driver_launch_seen = false;
    launch_debug(">>", d->functionName, d->symbolName);
    range_launch(d->symbolName, l, true, l->api == CUPTI_LAUNCH_GRAPH);
}

static bool is_runtime_launch(CUpti_CallbackId cbid)
{
    switch (cbid) {
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_v9000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchCooperativeKernel_ptsz_v9000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060:
    case CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060:
    case CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000:
    case CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_ptsz_v10000:
        return true;
    default:
        return false;
    }
}

static void emit_alloc(uint64_t ptr, uint64_t bytes, uint32_t kind, const char *api)
{
    cupti_alloc_rec a = {cupti_mono_ns(), ptr, bytes, kind, 0};
    emit(CUPTI_REC_ALLOC, &a, api);
}

static void emit_free(uint64_t ptr)
{
    cupti_free_rec f = {cupti_mono_ns(), ptr};
    emit(CUPTI_REC_FREE, &f, NULL);
}

static void emit_sync(uint64_t entry_ns, uint64_t stream, bool all, const char *api)
{
    cupti_sync_rec s = {entry_ns, stream, all ? 1u : 0u, 0};
    emit(CUPTI_REC_SYNC, &s, api);
}

static void driver_cb(CUpti_CallbackId cbid, const CUpti_CallbackData *d)
{
    const void *p = d->functionParams;
    if (d->callbackSite == CUPTI_API_ENTER) {
        if (is_driver_launch(cbid)) {
            driver_launch(cbid, d);
            return;
        }
        switch (cbid) {
        case CUPTI_DRIVER_TRACE_CBID_cuMemFree_v2:
            emit_free((uint64_t)((const cuMemFree_v2_params *)p)->dptr);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync:
        case CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync_ptsz:
            emit_free((uint64_t)((const cuMemFreeAsync_params *)p)->dptr);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize:
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize:
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize_ptsz:
            if (d->correlationData)
                *d->correlationData = cupti_mono_ns();
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuCtxDestroy_v2:
            /* Before the context goes: its activity and counters can still be read. */
            range_call(cupti_range_prof_ctx_ending);
            cupti_tracer_flush(CUPTI_FLUSH_CTX_DESTROY);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuDevicePrimaryCtxRelease_v2:
        case CUPTI_DRIVER_TRACE_CBID_cuDevicePrimaryCtxReset_v2:
            range_call(cupti_range_prof_ctx_ending);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2:
        case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2:
        case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2_ptds:
        case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2_ptsz:
            /* A copy the driver may run as a kernel: an auto range of its own (an H200 left
             * 8 ranges of amxdiag-gpu-bench's copies unnamed). */
            if (T.metrics && atomic_load(&T.capturing) == 0) {
                tl_self_call = true;
                cupti_range_prof_driver_op("<memcpy DtoD>");
                tl_self_call = false;
            }
            break;
        default:
            if (is_memset(cbid) && atomic_load(&T.capturing) == 0)
                range_call(cupti_range_prof_memset);
            break;
        }
        return;
    }
    /* A driver launch returned: the time a profiled one took is its replay. */
    if (is_driver_launch(cbid) && T.metrics)
        cupti_range_prof_launch_exit(false);
    int rv = d->functionReturnValue ? *(const int *)d->functionReturnValue : 0;
    if (rv == CUDA_SUCCESS) {
        switch (cbid) {
        case CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2: {
            const cuMemAlloc_v2_params *a = p;
            emit_alloc(a->dptr ? (uint64_t)*a->dptr : 0, a->bytesize, 1, d->functionName);
            break;
        }
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged: {
            const cuMemAllocManaged_params *a = p;
            emit_alloc(a->dptr ? (uint64_t)*a->dptr : 0, a->bytesize, 2, d->functionName);
            break;
        }
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2: {
            const cuMemAllocPitch_v2_params *a = p;
            uint64_t bytes = (a->pPitch ? (uint64_t)*a->pPitch : a->WidthInBytes) * a->Height;
            emit_alloc(a->dptr ? (uint64_t)*a->dptr : 0, bytes, 3, d->functionName);
            break;
        }
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync:
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz: {
            const cuMemAllocAsync_params *a = p;
            emit_alloc(a->dptr ? (uint64_t)*a->dptr : 0, a->bytesize, 4, d->functionName);
            break;
        }
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync:
        case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz: {
            const cuMemAllocFromPoolAsync_params *a = p;
            emit_alloc(a->dptr ? (uint64_t)*a->dptr : 0, a->bytesize, 4, d->functionName);
            break;
        }
        case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize:
            emit_sync(d->correlationData ? *d->correlationData : 0, 0, true, d->functionName);
            range_call(cupti_range_prof_sync);
            break;
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize:
        case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize_ptsz:
            emit_sync(d->correlationData ? *d->correlationData : 0,
                      (uint64_t)(uintptr_t)((const cuStreamSynchronize_params *)p)->hStream, false, d->functionName);
            range_call(cupti_range_prof_sync);
            break;
        default:
            break;
        }
        return;
    }
    /* CUDA_ERROR_NOT_READY is an answer (cuStreamQuery, cuEventQuery), not a failure; an
     * error inside a runtime call is reported by the runtime call. */
    if (rv == CUDA_ERROR_NOT_READY || tl_rt_depth > 0)
        return;
    cupti_api_error_rec e = {cupti_mono_ns(), atomic_load(&T.seq), d->correlationId, rv, 1, cbid, tid(), 0};
    emit(CUPTI_REC_API_ERROR, &e, d->functionName);
    if (cupti_error_is_fatal(rv)) {
        if (T.metrics)
            cupti_range_prof_fatal();
        cupti_tracer_flush(CUPTI_FLUSH_CUDA_ERROR);
    }
}

static void runtime_cb(CUpti_CallbackId cbid, const CUpti_CallbackData *d)
{
    const void *p = d->functionParams;
    if (d->callbackSite == CUPTI_API_ENTER) {
        tl_rt_depth++;
        if (is_runtime_launch(cbid))
            runtime_launch_entry(cbid, d);
        else if (cbid == CUPTI_RUNTIME_TRACE_CBID_cudaFree_v3020)
            emit_free((uint64_t)(uintptr_t)((const cudaFree_v3020_params *)p)->devPtr);
        else if ((cbid == CUPTI_RUNTIME_TRACE_CBID_cudaDeviceSynchronize_v3020 ||
                  cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_v3020 ||
                  cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_ptsz_v7000) &&
                 d->correlationData)
            *d->correlationData = cupti_mono_ns();
        return;
    }
    if (tl_rt_depth > 0)
        tl_rt_depth--;
    if (is_runtime_launch(cbid) && T.metrics)
        cupti_range_prof_launch_exit(true);
    if (is_runtime_launch(cbid) && tl_rt_launch_pending) {
        tl_rt_launch_pending = false;
        if (!tl_driver_launch_seen)
            emit_launch(&tl_rt_launch, tl_rt_name);
    }
    int rv = d->functionReturnValue ? *(const int *)d->functionReturnValue : 0;
    if (rv == 0) {
        if (cbid == CUPTI_RUNTIME_TRACE_CBID_cudaMalloc_v3020) {
            const cudaMalloc_v3020_params *a = p;
            emit_alloc(a->devPtr ? (uint64_t)(uintptr_t)*a->devPtr : 0, a->size, 1, d->functionName);
        } else if (cbid == CUPTI_RUNTIME_TRACE_CBID_cudaDeviceSynchronize_v3020) {
            emit_sync(d->correlationData ? *d->correlationData : 0, 0, true, d->functionName);
            range_call(cupti_range_prof_sync);
        } else if (cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_v3020 ||
                   cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_ptsz_v7000) {
            emit_sync(d->correlationData ? *d->correlationData : 0,
                      (uint64_t)(uintptr_t)((const cudaStreamSynchronize_v3020_params *)p)->stream, false,
                      d->functionName);
            range_call(cupti_range_prof_sync);
        }
        return;
    }
    if (rv == 600) /* cudaErrorNotReady */
        return;
    cupti_api_error_rec e = {cupti_mono_ns(), atomic_load(&T.seq), d->correlationId, rv, 2, cbid, tid(), 0};
    emit(CUPTI_REC_API_ERROR, &e, d->functionName);
    if (cupti_error_is_fatal(rv)) {
        if (T.metrics)
            cupti_range_prof_fatal();
        cupti_tracer_flush(CUPTI_FLUSH_CUDA_ERROR);
    }
}

/* Stream captures in progress (CUDA graphs, as llama.cpp builds them): a call of ours
 * inside a global-mode capture could invalidate the program's graph, so none is made. */
static void capture_track(CUpti_CallbackId cbid, const CUpti_CallbackData *d)
{
    if (d->callbackSite != CUPTI_API_EXIT)
        return;
    int rv = d->functionReturnValue ? *(const int *)d->functionReturnValue : 0;
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph_ptsz:
        if (rv == CUDA_SUCCESS)
            atomic_fetch_add(&T.capturing, 1);
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz:
        /* The capture ends whatever the result (an invalidated one too). */
        if (atomic_load(&T.capturing) > 0)
            atomic_fetch_sub(&T.capturing, 1);
        break;
    default:
        break;
    }
}

/* A call whose return leaves no context to start the Range Profiler in: the context is
 * being torn down. */
static bool is_teardown(CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
    if (domain == CUPTI_CB_DOMAIN_DRIVER_API)
        return cbid == CUPTI_DRIVER_TRACE_CBID_cuCtxDestroy_v2 ||
               cbid == CUPTI_DRIVER_TRACE_CBID_cuDevicePrimaryCtxRelease_v2 ||
               cbid == CUPTI_DRIVER_TRACE_CBID_cuDevicePrimaryCtxReset_v2 ||
               cbid == CUPTI_DRIVER_TRACE_CBID_cuCtxPopCurrent_v2;
    return cbid == CUPTI_RUNTIME_TRACE_CBID_cudaDeviceReset_v3020 || cbid == CUPTI_RUNTIME_TRACE_CBID_cudaThreadExit_v3020;
}

/* Where --gpu-metrics may start its session or decode a full window: at the return of a
 * kernel launch, a synchronisation or a synchronous copy made by the program itself.
 * Never at the return of the runtime's or the driver's initialisation calls (context
 * creation, module loading, cudaMalloc's first call): an injected tracer is loaded inside
 * cuInit and misses the ENTER of the runtime call that is initialising, so those calls'
 * driver calls look like the program's own while the runtime still holds its locks. */
static bool is_setup_point(CUpti_CallbackDomain domain, CUpti_CallbackId cbid)
{
    if (domain == CUPTI_CB_DOMAIN_RUNTIME_API)
        return is_runtime_launch(cbid) || cbid == CUPTI_RUNTIME_TRACE_CBID_cudaDeviceSynchronize_v3020 ||
               cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_v3020 ||
               cbid == CUPTI_RUNTIME_TRACE_CBID_cudaStreamSynchronize_ptsz_v7000 ||
               cbid == CUPTI_RUNTIME_TRACE_CBID_cudaMemcpy_v3020;
    if (is_driver_launch(cbid))
        return true;
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuCtxSynchronize:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize:
    case CUPTI_DRIVER_TRACE_CBID_cuStreamSynchronize_ptsz:
    case CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2:
    case CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2:
        return true;
    default:
        return false;
    }
}

static void CUPTIAPI on_callback(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *data)
{
    (void)user;
    if (!atomic_load(&T.running) || tl_self_call || tl_in_cb)
        return;
    tl_in_cb = true;
    if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
        capture_track(cbid, data);
        driver_cb(cbid, data);
    } else if (domain == CUPTI_CB_DOMAIN_RUNTIME_API)
        runtime_cb(cbid, data);
    else {
        /* A context about to be destroyed, by whichever call or teardown: the Range
         * Profiler's session in it ends first (CUDA 13's profiling injection sample). */
        if (domain == CUPTI_CB_DOMAIN_RESOURCE && cbid == CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING &&
            T.metrics) {
            const CUpti_ResourceData *r = data;
            cupti_debug("tracer: context %p destroy starting", r ? (void *)r->context : NULL);
            if (r && !atomic_load(&T.fatal_flushed)) {
                tl_self_call = true;
                cupti_range_prof_ctx_destroying((void *)r->context);
                tl_self_call = false;
            }
        }
        tl_in_cb = false;
        return;
    }
    const CUpti_CallbackData *d = data;
    if (is_setup_point(domain, cbid) && cupti_debug_on()) {
        bool launch = is_runtime_launch(cbid) ||
                      (domain == CUPTI_CB_DOMAIN_DRIVER_API && d->functionName && strstr(d->functionName, "Launch"));
        bool failed = d->functionReturnValue && *(const int *)d->functionReturnValue;
        if (d->callbackSite == CUPTI_API_EXIT)
            launch_debug("<<", d->functionName, failed ? "(failed)" : NULL);
        else if (!launch)
            launch_debug(">>", d->functionName, NULL);
    }
    if (d->callbackSite == CUPTI_API_EXIT && tl_rt_depth == 0 && d->functionReturnValue &&
        *(const int *)d->functionReturnValue == 0) {
        maybe_meminfo();
        if (T.o.call_returned)
            T.o.call_returned();
        /* --gpu-metrics starts between the program's calls: not in a capture (a call of
         * ours could invalidate the graph), not after a fatal error. */
        if (T.metrics && atomic_load(&T.capturing) == 0 && !atomic_load(&T.fatal_flushed) &&
            !is_teardown(domain, cbid) && is_setup_point(domain, cbid)) {
            cupti_range_prof_set_point(d->functionName);
            range_call(cupti_range_prof_api_exit);
        }
    }
    tl_in_cb = false;
}

/* ---- device memory ---- */

static void load_driver_table(void)
{
    /* libcuda is loaded already (it loaded us, or the built-in path did): this dlopen only
     * takes another reference to it.  Its cuDriverGetVersion is a call of ours: were its
     * callback to reach the tracer, a pthread_once on this same once would never return. */
    bool was = tl_self_call;
    tl_self_call = true;
    adg_error *e = kern_cuda_driver_open(NULL, 0, &T.drv);
    tl_self_call = was;
    if (e) {
        adg_error_free(e);
        return;
    }
    void *s = dlsym(T.drv.handle, "cuCtxGetDevice");
    memcpy(&T.ctx_get_device, &s, sizeof s);
    T.drv_ok = true;
}

/* cuMemGetInfo of the calling thread's current context, at most once per flush period,
 * from the exit of one of the program's own successful calls (so a context is current
 * and alive).  Not after a fatal error: the context is gone and every call fails. */
static void maybe_meminfo(void)
{
    uint64_t now = cupti_mono_ns(), last = atomic_load(&T.mem_last_ns);
    uint64_t period = (uint64_t)(T.o.flush_period_ms ? T.o.flush_period_ms : 200) * 1000000ull;
    if ((last && now - last < period) || atomic_load(&T.fatal_flushed) || atomic_load(&T.capturing) > 0)
        return;
    if (!atomic_compare_exchange_strong(&T.mem_last_ns, &last, now))
        return; /* another thread takes this one */
    pthread_once(&T.drv_once, load_driver_table);
    if (!T.drv_ok)
        return;
    size_t free_b = 0, total_b = 0;
    CUdevice dev = 0;
    tl_self_call = true;
    kern_cu_context ctx = NULL;
    bool ok = T.drv.cuCtxGetCurrent(&ctx) == KERN_CU_SUCCESS && ctx &&
              T.drv.cuMemGetInfo(&free_b, &total_b) == KERN_CU_SUCCESS &&
              (!T.ctx_get_device || T.ctx_get_device(&dev) == CUDA_SUCCESS);
    tl_self_call = false;
    if (!ok || free_b > total_b || dev < 0)
        return;
    cupti_meminfo_rec m = {now, free_b, total_b, (uint32_t)dev, 0};
    emit(CUPTI_REC_MEMINFO, &m, NULL);
}

/* ---- start / flush / stop ---- */

static void range_emit(cupti_rec_type type, const void *fixed, const char *name)
{
    emit(type, fixed, name);
}

/* CUPTI's profiler opens libnvperf_host.so and libnvperf_target.so by name when it needs
 * them; where libcupti was found by its path (not on the loader's search path) they would
 * not be found.  Loading them from libcupti's directory first makes that dlopen find the
 * loaded copies (glibc matches the soname).  Absent files are left to CUPTI's own search. */
static void preload_nvperf(const char *cupti_path)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", cupti_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = 0;
    static const char *const libs[] = {"libnvperf_host.so", "libnvperf_target.so"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        char p[640];
        snprintf(p, sizeof p, "%s/%s", dir, libs[i]);
        if (access(p, R_OK) == 0) {
            void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL); /* kept for the process's life, like libcupti */
            cupti_debug("gpu-metrics: dlopen %s: %s", p, h ? "loaded" : dlerror());
        } else
            cupti_debug("gpu-metrics: no %s next to libcupti (CUPTI's own search will look for it)", p);
    }
}

/* A count from the environment ("0" is a value: all launches, no cap); def when unset or
 * not a number. */
static unsigned env_uint(const char *name, unsigned def)
{
    const char *e = getenv(name);
    if (!e || !*e)
        return def;
    char *end;
    unsigned long v = strtoul(e, &end, 10);
    return *end || v > 1000000000ul ? def : (unsigned)v;
}

/* AMXDIAG_GPU_METRICS_ACTIVITY, with --gpu-metrics only: how kernel activity goes beside
 * the Range Profiler.  An H200 (CUPTI 13.0.1) crashed in CUPTI's own activity thread at
 * every activity flush in an injected program once the profiler was set up; these are the
 * variants tried against it (tests/device/gpu_metrics_debug.sh, sixth run): only `kernel`
 * and `none` survived, and `kernel` keeps every kernel record, so it is the default of an
 * injected program; in process `concurrent` ran to the end three times and stays:
 *   concurrent  CONCURRENT_KERNEL, MEMCPY, MEMSET from the start (the in-process default);
 *   kernel      KERNEL (serialised kernels) instead of CONCURRENT_KERNEL (the injected
 *               default; the Range Profiler's kernel replay serialises kernels anyway);
 *   none        no activity at all, so nothing to flush: profiled launches are timed by
 *               gpu__time_duration, the others have no time;
 *   late        the kinds enabled only once the profiler's setup is done;
 *   period      small buffers (AMXDIAG_CUPTI_BUFFER_KB, 16 by default) handed back by
 *               CUPTI's periodic flush (cuptiActivityFlushPeriod), never a cuptiActivityFlushAll
 *               of ours: what sits in the last partial buffer at exit is lost. */
enum { ACT_CONCURRENT, ACT_KERNEL, ACT_NONE, ACT_LATE, ACT_PERIOD };

static int activity_mode(bool metrics, bool injected)
{
    const char *e = getenv("AMXDIAG_GPU_METRICS_ACTIVITY");
    if (!metrics)
        return ACT_CONCURRENT;
    if (!e || !*e)
        return injected ? ACT_KERNEL : ACT_CONCURRENT;
    if (!strcmp(e, "concurrent"))
        return ACT_CONCURRENT;
    if (!strcmp(e, "kernel"))
        return ACT_KERNEL;
    if (!strcmp(e, "none"))
        return ACT_NONE;
    if (!strcmp(e, "late"))
        return ACT_LATE;
    if (!strcmp(e, "period"))
        return ACT_PERIOD;
    cupti_debug("tracer: AMXDIAG_GPU_METRICS_ACTIVITY=%s is not one of concurrent, kernel, none, late, period: "
                "the default",
                e);
    return injected ? ACT_KERNEL : ACT_CONCURRENT;
}

static const char *activity_mode_name(int m)
{
    static const char *const names[] = {"concurrent", "kernel", "none", "late", "period"};
    return m >= 0 && m <= ACT_PERIOD ? names[m] : "?";
}

/* Enables T.kinds; false when the first (the kernels) is refused. */
static bool activity_kinds_on(void)
{
    bool ok = true;
    for (size_t i = 0; i < T.n_kinds; i++) {
        CUptiResult r = TCALL("cuptiActivityEnable", T.api.ActivityEnable(T.kinds[i]));
        if (r != CUPTI_SUCCESS) {
            char text[256];
            snprintf(text, sizeof text, "CUPTI activity kind %d could not be enabled: %s", (int)T.kinds[i],
                     cupti_result_str(&T.api, r));
            note(CUPTI_NOTE_INFO, text);
            if (i == 0)
                ok = false;
        }
    }
    atomic_store(&T.kinds_on, ok && T.n_kinds > 0);
    return ok;
}

/* The Range Profiler's settle points (after its setup, ...): with
 * AMXDIAG_GPU_METRICS_ACTIVITY=late the activity starts at the first. */
static void metrics_settled(void)
{
    if (T.act_mode == ACT_LATE && !atomic_load(&T.kinds_on) && atomic_load(&T.running)) {
        cupti_debug("tracer: AMXDIAG_GPU_METRICS_ACTIVITY=late: activity enabled after the profiler's setup");
        activity_kinds_on();
    }
    if (T.o.metrics_settled)
        T.o.metrics_settled();
}

/* --gpu-metrics: the Range Profiler, where the driver lets this user read counters and
 * the launch callbacks run (they drive it). */
static void metrics_start(bool callbacks)
{
    bool known;
    cupti_debug("gpu-metrics: requested (callbacks %s)", callbacks ? "on" : "off");
    if (cupti_profiling_restricted(&known)) {
        cupti_debug("gpu-metrics: RmProfilingAdminOnly=1 and not root: off");
        note(CUPTI_NOTE_NO_METRICS,
             "--gpu-metrics: GPU performance counters are restricted to administrators on this machine "
             "(RmProfilingAdminOnly=1 in /proc/driver/nvidia/params, CUPTI_ERROR_INSUFFICIENT_PRIVILEGES); run as "
             "root or load nvidia with NVreg_RestrictProfilingToAdminUsers=0. The kernel trace is complete.");
        return;
    }
    if (!callbacks) {
        note(CUPTI_NOTE_NO_METRICS, "--gpu-metrics: the Range Profiler follows kernel launches through CUPTI "
                                    "callbacks, which another CUPTI client holds here; the kernel trace goes on.");
        return;
    }
    preload_nvperf(T.api.path);
    const char *mr = getenv("AMXDIAG_GPU_METRICS_RANGES");
    cupti_range_env env = {.per_kernel = env_uint("AMXDIAG_GPU_METRICS_PER_KERNEL", 1),
                           .max_launches = env_uint("AMXDIAG_GPU_METRICS_MAX_LAUNCHES", 100),
                           .skip = env_uint("AMXDIAG_GPU_METRICS_SKIP", 0),
                           .lib = T.api.handle,
                           .emit = range_emit,
                           .note = note,
                           .ctx_current = range_ctx_current,
                           .ctx_device = range_ctx_device,
                           .now_ns = cupti_mono_ns,
                           .max_ranges = mr ? (unsigned)strtoul(mr, NULL, 10) : 0,
                           .sync_period_ms = T.o.flush_period_ms,
                           .settled = T.act_mode == ACT_LATE || T.o.metrics_settled ? metrics_settled : NULL};
    T.metrics = cupti_range_prof_init(&env);
}

adg_error *cupti_tracer_start(const cupti_tracer_opts *o)
{
    if (atomic_load(&T.running))
        return adg_error_new(ADG_E_INTERNAL, "the CUPTI tracer is already running in this process");
    adg_error *e = cupti_api_load(&T.api);
    if (e) {
        cupti_debug("tracer: libcupti not loaded: %s", adg_error_msg(e));
        return e;
    }
    cupti_debug("tracer: libcupti %s, version %u", T.api.path, (unsigned)T.api.version);
    T.o = *o;
    pthread_mutex_lock(&T.sink_lock);
    T.sink_open = true;
    pthread_mutex_unlock(&T.sink_lock);
    atomic_store(&T.seq, 0);
    atomic_store(&T.dropped, 0);
    atomic_store(&T.mem_last_ns, 0);
    atomic_store(&T.capturing, 0);
    T.metrics = false;
    atomic_store(&L.returned, 0);
    atomic_store(&L.strange, 0);
    atomic_store(&F.flushes, 0);

    /* Our clock for every activity timestamp, so that records line up with the host's
     * CLOCK_MONOTONIC (and amxdiag's run time) without conversion. */
    T.ts_offset = 0;
    if (!T.api.ActivityRegisterTimestampCallback ||
        T.api.ActivityRegisterTimestampCallback(mono_cb) != CUPTI_SUCCESS) {
        uint64_t c = 0;
        T.api.GetTimestamp(&c);
        T.ts_offset = (int64_t)cupti_mono_ns() - (int64_t)c;
    }

    CUptiResult r, sub_r;
    char old[128] = "";
    if (T.api.Subscribe_v2) {
        CUpti_SubscriberParams sp;
        memset(&sp, 0, sizeof sp);
        sp.structSize = CUpti_SubscriberParams_STRUCT_SIZE;
        sp.subscriberName = "amxdiag";
        sp.oldSubscriberName = old;
        sp.oldSubscriberSize = sizeof old;
        r = TCALL("cuptiSubscribe_v2", T.api.Subscribe_v2(&T.sub, on_callback, NULL, &sp));
    } else
        r = TCALL("cuptiSubscribe", T.api.Subscribe(&T.sub, on_callback, NULL));
    sub_r = r;
    atomic_store(&T.running, true);
    uint32_t flags = 0;
    if (r == CUPTI_SUCCESS) {
        T.subscribed = true;
        flags |= 1;
        if ((r = TCALL("cuptiEnableDomain(driver)", T.api.EnableDomain(1, T.sub, CUPTI_CB_DOMAIN_DRIVER_API))) !=
                CUPTI_SUCCESS ||
            (r = TCALL("cuptiEnableDomain(runtime)", T.api.EnableDomain(1, T.sub, CUPTI_CB_DOMAIN_RUNTIME_API))) !=
                CUPTI_SUCCESS) {
            char text[256];
            snprintf(text, sizeof text, "CUPTI callbacks could not be enabled (%s): no launch ring or error capture",
                     cupti_result_str(&T.api, r));
            note(CUPTI_NOTE_NO_CALLBACKS, text);
            flags &= ~1u;
        } else if (o->gpu_metrics &&
                   TCALL("cuptiEnableCallback(resource, CONTEXT_DESTROY_STARTING)",
                         T.api.EnableCallback(1, T.sub, CUPTI_CB_DOMAIN_RESOURCE,
                                              CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING)) != CUPTI_SUCCESS)
            cupti_debug("tracer: no resource callback: the Range Profiler ends with the context only at the "
                        "program's cuCtxDestroy or primary context release");
    } else {
        char text[512];
        if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
            snprintf(text, sizeof text,
                     "another CUPTI client is attached to this process%s%s%s (nsys, ncu, compute-sanitizer and "
                     "cuda-gdb are CUPTI clients; CUPTI allows one): amxdiag's launch ring and error capture are "
                     "off here",
                     old[0] ? " (" : "", old, old[0] ? ")" : "");
        else
            snprintf(text, sizeof text, "cuptiSubscribe failed (%s): no launch ring or error capture",
                     cupti_result_str(&T.api, r));
        note(CUPTI_NOTE_NO_CALLBACKS, text);
    }

    T.act_mode = activity_mode(o->gpu_metrics, o->injected);
    T.n_kinds = 0;
    atomic_store(&T.kinds_on, false);
    T.buf_bytes = ACT_BUF;
    if (T.act_mode != ACT_NONE) {
        T.kinds[T.n_kinds++] =
            T.act_mode == ACT_KERNEL ? CUPTI_ACTIVITY_KIND_KERNEL : CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
        T.kinds[T.n_kinds++] = CUPTI_ACTIVITY_KIND_MEMCPY;
        T.kinds[T.n_kinds++] = CUPTI_ACTIVITY_KIND_MEMSET;
    }
    if (T.act_mode == ACT_PERIOD)
        T.buf_bytes = (size_t)env_uint("AMXDIAG_CUPTI_BUFFER_KB", 16) << 10;
    if (T.buf_bytes < 4096 || T.buf_bytes > (64u << 20))
        T.buf_bytes = ACT_BUF;
    if (T.act_mode != ACT_CONCURRENT)
        cupti_debug("tracer: AMXDIAG_GPU_METRICS_ACTIVITY=%s (%zu kinds, buffers of %zu bytes)",
                    activity_mode_name(T.act_mode), T.n_kinds, T.buf_bytes);
    bool activity = false;
    if (T.act_mode == ACT_NONE)
        note(CUPTI_NOTE_INFO, "AMXDIAG_GPU_METRICS_ACTIVITY=none: no CUPTI activity records: a profiled launch's "
                              "time is the Range Profiler's gpu__time_duration, the other launches have no time");
    else {
        activity = TCALL("cuptiActivityRegisterCallbacks",
                         T.api.ActivityRegisterCallbacks(buf_requested, buf_completed)) == CUPTI_SUCCESS;
        if (activity && T.act_mode != ACT_LATE)
            activity = activity_kinds_on();
    }
    if (activity) {
        flags |= 2;
        if (T.api.ActivityFlushPeriod)
            T.api.ActivityFlushPeriod(o->flush_period_ms ? o->flush_period_ms : 200);
        const char *fd = getenv("AMXDIAG_CUPTI_FLUSH_DURING");
        if (T.act_mode == ACT_PERIOD)
            cupti_debug("tracer: AMXDIAG_GPU_METRICS_ACTIVITY=period: no flush of ours, CUPTI's every %u ms",
                        o->flush_period_ms ? o->flush_period_ms : 200);
        else if (fd && *fd ? strcmp(fd, "0") != 0 : o->flush_during)
            flusher_start(o->flush_period_ms);
    }
    if (!flags) {
        atomic_store(&T.running, false);
        pthread_mutex_lock(&T.sink_lock);
        T.sink_open = false;
        pthread_mutex_unlock(&T.sink_lock);
        if (T.subscribed)
            T.api.Unsubscribe(T.sub);
        T.subscribed = false;
        adg_error *fail = adg_error_new(ADG_E_UNSUPPORTED,
                                        "CUPTI refused both callbacks and activity tracing in this process (%s)",
                                        cupti_result_str(&T.api, sub_r));
        return adg_error_hint(fail, sub_r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED
                                        ? "another CUDA profiler or sanitizer is attached (CUPTI allows one); run "
                                          "amxdiag without it"
                                        : "CUPTI could not initialise: check that the NVIDIA driver works "
                                          "(nvidia-smi) and matches this CUDA release");
    }
    int drv = 0;
    void *s = dlsym(RTLD_DEFAULT, "cuDriverGetVersion");
    if (!s) {
        /* The runtime loads libcuda RTLD_LOCAL: find it without loading anything. */
        void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (h)
            s = dlsym(h, "cuDriverGetVersion");
    }
    if (s) {
        CUresult (*fn)(int *);
        memcpy(&fn, &s, sizeof s);
        fn(&drv);
    }
    const char *blocking = getenv("CUDA_LAUNCH_BLOCKING");
    if (blocking && !strcmp(blocking, "1"))
        flags |= 4; /* every launch returns after its kernel: completion is implied */
    cupti_hello_rec h = {(uint32_t)getpid(), T.api.version, (uint32_t)drv, flags, cupti_mono_ns()};
    emit(CUPTI_REC_HELLO, &h, NULL);
    if (!(flags & 2) && T.act_mode != ACT_NONE)
        note(CUPTI_NOTE_INFO, "CUPTI activity tracing is off: no kernel times, only launches and errors");
    if (o->gpu_metrics)
        metrics_start((flags & 1) != 0);
    return NULL;
}

void cupti_tracer_flush(cupti_flush_reason reason)
{
    if (!atomic_load(&T.running))
        return;
    /* One forced flush after a fatal error is enough: every later call returns the same
     * sticky error. */
    if (reason == CUPTI_FLUSH_CUDA_ERROR && atomic_exchange(&T.fatal_flushed, true))
        return;
    /* AMXDIAG_GPU_METRICS_ACTIVITY=none|late|period: no cuptiActivityFlushAll of ours (nothing
     * enabled yet, or CUPTI's periodic flush alone).  The exit flush comes here with the
     * kinds just disabled. */
    if ((reason == CUPTI_FLUSH_EXIT || atomic_load(&T.kinds_on)) && T.act_mode != ACT_PERIOD)
        TCALL("cuptiActivityFlushAll", T.api.ActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    cupti_flush_rec f = {cupti_mono_ns(), (uint32_t)reason, (uint32_t)atomic_load(&T.dropped)};
    emit(CUPTI_REC_FLUSH, &f, NULL);
    if (T.o.flushed)
        T.o.flushed(T.o.ctx, reason);
}

/* AMXDIAG_CUPTI_EXIT_FLUSH, a diagnostic: the final flush "forced" (the default: every
 * buffer, finished records or not), "normal" (cuptiActivityFlushAll(0): buffers whose
 * records are all complete) or "none" (no call: what CUPTI still holds is lost). */
static uint32_t exit_flush_mode(bool *skip)
{
    const char *e = getenv("AMXDIAG_CUPTI_EXIT_FLUSH");
    *skip = e && !strcmp(e, "none");
    return e && !strcmp(e, "normal") ? 0 : CUPTI_ACTIVITY_FLAG_FLUSH_FORCED;
}

/* No new records, then every buffer CUPTI holds back to us. */
static void activity_off_and_flush(void *arg)
{
    (void)arg;
    flusher_stop();
    bool was_on = atomic_exchange(&T.kinds_on, false);
    for (size_t i = 0; was_on && i < T.n_kinds; i++)
        T.api.ActivityDisable(T.kinds[i]);
    bool skip;
    uint32_t flag = exit_flush_mode(&skip);
    /* Nothing was enabled (=none, or =late before the setup finished), or the flushes are
     * CUPTI's own (=period): no flush of ours. */
    if (!was_on || T.act_mode == ACT_PERIOD)
        skip = true;
    if (skip) {
        cupti_debug("tracer: no final cuptiActivityFlushAll (AMXDIAG_CUPTI_EXIT_FLUSH=none, or "
                    "AMXDIAG_GPU_METRICS_ACTIVITY=%s)",
                    activity_mode_name(T.act_mode));
        cupti_flush_rec f = {cupti_mono_ns(), (uint32_t)CUPTI_FLUSH_EXIT, (uint32_t)atomic_load(&T.dropped)};
        emit(CUPTI_REC_FLUSH, &f, NULL);
        if (T.o.flushed)
            T.o.flushed(T.o.ctx, CUPTI_FLUSH_EXIT);
        return;
    }
    if (!flag) {
        TCALL("cuptiActivityFlushAll(0)", T.api.ActivityFlushAll(0));
        cupti_flush_rec f = {cupti_mono_ns(), (uint32_t)CUPTI_FLUSH_EXIT, (uint32_t)atomic_load(&T.dropped)};
        emit(CUPTI_REC_FLUSH, &f, NULL);
        if (T.o.flushed)
            T.o.flushed(T.o.ctx, CUPTI_FLUSH_EXIT);
        return;
    }
    cupti_tracer_flush(CUPTI_FLUSH_EXIT);
}

void cupti_tracer_quiesce(void)
{
    if (!atomic_load(&T.running))
        return;
    cupti_debug("tracer: quiesce: no CUPTI call from here on (what CUPTI still holds is lost)");
    flusher_stop();
    if (T.metrics) {
        T.metrics = false;
        cupti_range_prof_abandon();
    }
    cupti_flush_rec f = {cupti_mono_ns(), (uint32_t)CUPTI_FLUSH_EXIT, (uint32_t)atomic_load(&T.dropped)};
    emit(CUPTI_REC_FLUSH, &f, NULL);
    if (T.o.flushed)
        T.o.flushed(T.o.ctx, CUPTI_FLUSH_EXIT);
    atomic_store(&T.running, false);
    pthread_mutex_lock(&T.sink_lock);
    T.sink_open = false;
    pthread_mutex_unlock(&T.sink_lock);
    cupti_debug("tracer: quiesced (sink closed; %u activity buffers back, %u strange)", atomic_load(&L.returned),
                atomic_load(&L.strange));
}

void cupti_tracer_stop(void)
{
    if (!atomic_load(&T.running))
        return;
    flusher_stop(); /* before the last window's decode: no flush of ours beside it */
    if (T.metrics && !atomic_load(&T.fatal_flushed)) {
        /* The last window is decoded while the context still exists; the activity is
         * flushed while the profiler is still initialised; the profiler goes last, and no
         * activity call follows it.  (An injected program must get here before CUPTI's
         * own exit work: cupti_tracer_opts.metrics_settled.) */
        T.metrics = false;
        tl_self_call = true;
        cupti_range_prof_stop(activity_off_and_flush, NULL);
        tl_self_call = false;
    } else {
        T.metrics = false;
        activity_off_and_flush(NULL);
    }
    /* Then the sink closes: a buffer CUPTI returns later (at a context's destruction or
     * its exit handler) finds it closed and is freed unread, since the caller may free the
     * sink once this returns. */
    atomic_store(&T.running, false);
    pthread_mutex_lock(&T.sink_lock);
    T.sink_open = false;
    pthread_mutex_unlock(&T.sink_lock);
    if (T.subscribed)
        TCALL("cuptiUnsubscribe", T.api.Unsubscribe(T.sub));
    T.subscribed = false;
    cupti_debug("tracer: stopped (sink closed; %u activity buffers back, %u strange)", atomic_load(&L.returned),
                atomic_load(&L.strange));
}

bool cupti_tracer_running(void)
{
    return atomic_load(&T.running);
}

#endif

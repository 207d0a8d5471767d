/* The "gpu" collector: libamxdiag-inject.so in the profiled command, a pipe, a reader
 * thread that parses the frames into a cupti_trace; or the tracer in process. */
#include "profiler/cupti_collector.h"
#include "profiler/cupti_range_prof.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/cuda_driver.h"
#include "profiler/cupti_activity.h"
#include "profiler/cupti_load.h"
#include "profiler/cupti_debug.h"
#include "profiler/cupti_tracer.h"
#include "profiler/prof_collector.h"

#define COLLECTOR "gpu"

adg_error *prof_cupti_find_inject_lib(char *buf, size_t len)
{
    const char *env = getenv("AMXDIAG_INJECT_LIB");
    if (env && *env) {
        if (access(env, R_OK) != 0)
            return adg_error_hint(adg_error_errno(ADG_E_USAGE, errno, "AMXDIAG_INJECT_LIB=%s", env),
                                  "point AMXDIAG_INJECT_LIB at libamxdiag-inject.so, or unset it");
        char *abs = realpath(env, NULL);
        snprintf(buf, len, "%s", abs ? abs : env);
        free(abs);
        return NULL;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return adg_error_errno(ADG_E_IO, errno, "cannot read /proc/self/exe to find libamxdiag-inject.so");
    exe[n] = 0;
    char *dir = dirname(exe);
    static const char *const rel[] = {"libamxdiag-inject.so", "../lib/amxdiag/libamxdiag-inject.so",
                                      "../lib/libamxdiag-inject.so"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(rel); i++) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/%s", dir, rel[i]);
        if (access(p, R_OK) == 0) {
            char *abs = realpath(p, NULL);
            snprintf(buf, len, "%s", abs ? abs : p);
            free(abs);
            return NULL;
        }
    }
    return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "libamxdiag-inject.so not found next to %s", dir),
                          "install it beside the amxdiag binary (the build puts it there) or set AMXDIAG_INJECT_LIB");
}

adg_error *prof_cupti_check_machine(void)
{
    if (!cupti_activity_supported())
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "GPU tracing unavailable: built without CUPTI headers"),
                              "rebuild amxdiag where the CUDA 13 toolkit is installed (cupti.h)");
    char lib[PATH_MAX];
    adg_error *e = prof_cupti_find_inject_lib(lib, sizeof lib);
    if (e)
        return e;
    /* The driver is only looked for, not initialised: the command initialises it. */
    kern_cuda_driver drv;
    const char *path = getenv("AMXDIAG_LIBCUDA");
    e = kern_cuda_driver_open(path && *path ? path : NULL, 0, &drv);
    if (e)
        return e;
    kern_cuda_driver_close(&drv);
    return NULL;
}

/* ---- finishing a trace into a record ---- */

typedef struct note_ctx {
    adg_bus *bus;
} note_ctx;

static void note_to_bus(void *ctx, uint32_t code, const char *text)
{
    note_ctx *n = ctx;
    const char *what = code == CUPTI_NOTE_NO_CALLBACKS ? "gpu.launch_ring"
                       : code == CUPTI_NOTE_NO_METRICS ? "gpu.metrics"
                       : code == CUPTI_NOTE_DROPPED    ? "gpu.activity"
                                                       : COLLECTOR;
    if (code == CUPTI_NOTE_INFO)
        adg_info("gpu tracer: %s", text);
    else
        adg_bus_unavailable(n->bus, COLLECTOR, what, text);
}

void prof_cupti_finish_trace(cupti_trace *t, adg_bus *bus, adg_record *rec, uint64_t t_ns, const char *stream_error)
{
    cupti_trace_publish(t, bus, t_ns, 0, true);
    note_ctx nc = {bus};
    cupti_trace_notes(t, note_to_bus, &nc);
    if (stream_error)
        adg_bus_unavailable(bus, COLLECTOR, "gpu.trace", stream_error);
    cupti_trace_counts c = cupti_trace_get_counts(t);
    if (!c.hello) {
        if (!c.notes)
            adg_bus_unavailable(bus, COLLECTOR, COLLECTOR,
                                "the command never initialised CUDA (not a CUDA program, or it failed before "
                                "cuInit), so the GPU tracer was not loaded");
        return;
    }
    json_t *k = cupti_trace_kernels_json(t);
    json_t *errs = json_object_get(k, "api_errors");
    size_t i;
    json_t *err;
    json_array_foreach(errs, i, err) {
        json_int_t te = json_integer_value(json_object_get(err, "t_ns"));
        adg_bus_event(bus, te > 0 ? (uint64_t)te : 0, "cuda-error",
                      json_string_value(json_object_get(err, "api")), json_deep_copy(err));
    }
    adg_error_free(adg_record_set_section(rec, "gpu_kernels", k));
    json_t *crash = cupti_trace_crash_json(t);
    if (crash) {
        json_t *fk = json_object_get(crash, "faulting_kernel");
        adg_bus_event(bus, (uint64_t)json_integer_value(json_object_get(json_object_get(crash, "error"), "t_ns")),
                      "crash", fk ? json_string_value(json_object_get(fk, "kernel")) : "unknown",
                      json_pack("{s:O}", "conclusion", json_object_get(crash, "conclusion")));
        adg_error_free(adg_record_set_section(rec, "crash", crash));
    }
}

/* ---- the collector (injection) ---- */

typedef struct gpu_state {
    prof_gpu_inproc *inproc; /* the built-in path: the tracer runs in this process */
    char lib[PATH_MAX];
    char env[3][PATH_MAX + 40];
    int rfd, wfd;
    cupti_trace *trace;
    cupti_parser parser;
    pthread_t reader;
    bool reader_started;
    atomic_bool stop;
    char stream_error[300];
    bool have_stream_error;
} gpu_state;

static void gpu_close(void *state)
{
    gpu_state *g = state;
    if (!g)
        return;
    if (g->reader_started) {
        atomic_store(&g->stop, true);
        pthread_join(g->reader, NULL);
    }
    if (g->rfd >= 0)
        close(g->rfd);
    if (g->wfd >= 0)
        close(g->wfd);
    cupti_parser_free(&g->parser);
    if (g->inproc)
        prof_gpu_inproc_free(g->inproc); /* owns the trace */
    else
        cupti_trace_free(g->trace);
    free(g);
}

static adg_error *gpu_prepare(prof_ctx *ctx, void **state)
{
    /* The built-in path runs in this process: trace it in process, started now, before
     * it creates its CUDA context. */
    if (!ctx->attach && ctx->root == getpid()) {
        gpu_state *g = calloc(1, sizeof *g);
        if (!g)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        g->rfd = g->wfd = -1;
        adg_error *e = prof_gpu_inproc_start(adg_bus_start_ns(ctx->bus), ctx->interval_ns, ctx->gpu_metrics,
                                             &g->inproc);
        if (e) {
            free(g);
            return e;
        }
        *state = g;
        return NULL;
    }
    if (ctx->attach)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "GPU tracing needs the command started by amxdiag "
                                                               "(CUPTI cannot be injected into a running process)"),
                              "run it as: amxdiag profile -- COMMAND");
    adg_error *e = prof_cupti_check_machine();
    if (e)
        return e;
    gpu_state *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    g->rfd = g->wfd = -1;
    if ((e = prof_cupti_find_inject_lib(g->lib, sizeof g->lib))) {
        gpu_close(g);
        return e;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        int err = errno;
        gpu_close(g);
        return adg_error_errno(ADG_E_IO, err, "cannot create the GPU trace pipe");
    }
    g->rfd = fds[0];
    g->wfd = fds[1];
    /* Only the write end crosses exec, into the command (and whatever it runs). */
    fcntl(g->wfd, F_SETFD, 0);
    const char *old = getenv("CUDA_INJECTION64_PATH");
    if (old && *old && strcmp(old, g->lib))
        adg_warn("CUDA_INJECTION64_PATH=%s is replaced by amxdiag's tracer for this run", old);
    snprintf(g->env[0], sizeof g->env[0], "CUDA_INJECTION64_PATH=%s", g->lib);
    snprintf(g->env[1], sizeof g->env[1], "AMXDIAG_INJECT_FD=%d", g->wfd);
    snprintf(g->env[2], sizeof g->env[2], "AMXDIAG_GPU_METRICS=1");
    unsigned n = ctx->gpu_metrics ? 3 : 2;
    for (unsigned i = 0; i < n && ctx->n_child_env < ADG_ARRAY_LEN(ctx->child_env); i++)
        ctx->child_env[ctx->n_child_env++] = g->env[i];
    *state = g;
    return NULL;
}

static void *reader_main(void *arg)
{
    gpu_state *g = arg;
    unsigned char buf[65536];
    for (;;) {
        struct pollfd p = {g->rfd, POLLIN, 0};
        int r = poll(&p, 1, 100);
        if (r == 0) {
            if (atomic_load(&g->stop))
                break;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        ssize_t n = read(g->rfd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (!g->parser.failed)
            cupti_parser_feed(&g->parser, buf, (size_t)n);
    }
    cupti_parser_end(&g->parser);
    return NULL;
}

static adg_error *gpu_open(prof_ctx *ctx, void **state)
{
    gpu_state *g = *state;
    if (!g)
        return adg_error_new(ADG_E_INTERNAL, "the GPU collector was opened without being prepared");
    if (g->inproc) {
        g->trace = prof_gpu_inproc_trace(g->inproc);
        cupti_trace_register(g->trace, ctx->bus, COLLECTOR);
        return NULL;
    }
    /* The command holds its copy of the write end; ours must go, or EOF never comes. */
    close(g->wfd);
    g->wfd = -1;
    g->trace = cupti_trace_new(CUPTI_TRACE_RING_DEFAULT, ctx->interval_ns, adg_bus_start_ns(ctx->bus));
    if (!g->trace)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    cupti_trace_register(g->trace, ctx->bus, COLLECTOR);
    cupti_parser_init(&g->parser, cupti_trace_frame, g->trace);
    if (pthread_create(&g->reader, NULL, reader_main, g) != 0)
        return adg_error_new(ADG_E_INTERNAL, "cannot start the GPU trace reader thread");
    g->reader_started = true;
    return NULL;
}

static void gpu_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    gpu_state *g = state;
    /* Activity records come in buffers CUPTI flushes every 200 ms: publish a bucket
     * once it is a second old. */
    cupti_trace_publish(g->trace, ctx->bus, t_ns, 1000000000ull, false);
}

/* --gpu-metrics was asked for and the trace holds neither a session nor the reason
 * there was none: say so rather than leave the metrics silently absent. */
static void metrics_outcome(prof_ctx *ctx, cupti_trace *t)
{
    cupti_trace_counts c = cupti_trace_get_counts(t);
    if (!ctx->gpu_metrics || !c.hello || c.mconfig || c.metrics_notes)
        return;
    if (c.metrics_steps) {
        char text[512];
        snprintf(text, sizeof text,
                 "--gpu-metrics: the Range Profiler's setup did not finish: its last CUPTI call, %s, never returned "
                 "(the process ended inside it; see the workload's exit). Run again with AMXDIAG_CUPTI_DEBUG=1 for "
                 "a line per CUPTI call on stderr, or without --gpu-metrics for the trace alone.",
                 c.metrics_last_step[0] ? c.metrics_last_step : "?");
        adg_bus_unavailable(ctx->bus, COLLECTOR, "gpu.metrics", text);
        return;
    }
    adg_bus_unavailable(ctx->bus, COLLECTOR, "gpu.metrics",
                        "--gpu-metrics: no kernel was launched in a CUDA context while the tracer ran (the Range "
                        "Profiler starts when a CUDA call returns with a context current), so no counters were "
                        "read");
}

static void gpu_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    gpu_state *g = state;
    if (g->inproc) {
        prof_gpu_inproc_stop(g->inproc); /* forces CUPTI to deliver what it holds */
        prof_cupti_finish_trace(g->trace, ctx->bus, ctx->record, t_ns, NULL);
        metrics_outcome(ctx, g->trace);
        return;
    }
    /* The command has exited: its frames are in the pipe or on their way.  A process it
     * left behind may keep the pipe open: wait two seconds at most. */
    uint64_t end = adg_now_ns() + 2000000000ull;
    while (g->reader_started && adg_now_ns() < end) {
        if (pthread_tryjoin_np(g->reader, NULL) == 0) {
            g->reader_started = false;
            break;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (g->reader_started) {
        atomic_store(&g->stop, true);
        pthread_join(g->reader, NULL);
        g->reader_started = false;
    }
    const char *perr = cupti_parser_error(&g->parser);
    prof_cupti_finish_trace(g->trace, ctx->bus, ctx->record, t_ns, perr);
    metrics_outcome(ctx, g->trace);
}

const prof_collector prof_cupti_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_GPU,
    .prepare = gpu_prepare,
    .open = gpu_open,
    .sample = gpu_sample,
    .finish = gpu_finish,
    .close = gpu_close,
};

/* ---- in process ---- */

struct prof_gpu_inproc {
    pthread_mutex_t lock;
    cupti_trace *trace;
    cupti_parser parser;
    bool running;
};

/* The in-process sink goes through the same encoder and parser as the pipe: one path to
 * trust and test. */
static void inproc_emit(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len)
{
    prof_gpu_inproc *g = ctx;
    unsigned char frame[CUPTI_PROTO_MAX_FRAME];
    size_t n = cupti_proto_encode(frame, sizeof frame, type, fixed, name, name_len);
    if (!n)
        return;
    pthread_mutex_lock(&g->lock);
    cupti_parser_feed(&g->parser, frame, n);
    pthread_mutex_unlock(&g->lock);
}

adg_error *prof_gpu_inproc_start(uint64_t base_ns, uint64_t interval_ns, bool gpu_metrics, prof_gpu_inproc **out)
{
    *out = NULL;
    if (!cupti_activity_supported())
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "GPU tracing unavailable: built without CUPTI headers"),
                              "rebuild amxdiag where the CUDA 13 toolkit is installed (cupti.h)");
    const kern_cuda_driver *drv;
    adg_error *e = kern_cuda_driver_get(&drv);
    if (e)
        return e;
    prof_gpu_inproc *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    pthread_mutex_init(&g->lock, NULL);
    g->trace = cupti_trace_new(CUPTI_TRACE_RING_DEFAULT, interval_ns, base_ns);
    if (!g->trace) {
        prof_gpu_inproc_free(g);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    cupti_parser_init(&g->parser, cupti_trace_frame, g->trace);
    cupti_tracer_opts o = {.emit = inproc_emit, .ctx = g, .gpu_metrics = gpu_metrics, .flush_period_ms = 200};
    /* AMXDIAG_CUPTI_DEBUG: a fatal signal's stack on stderr (where amxdiag has no handler
     * of its own for it). */
    cupti_debug_install_crash_handler();
    if ((e = cupti_tracer_start(&o))) {
        prof_gpu_inproc_free(g);
        return e;
    }
    g->running = true;
    *out = g;
    return NULL;
}

cupti_trace *prof_gpu_inproc_trace(prof_gpu_inproc *g)
{
    return g->trace;
}

void prof_gpu_inproc_stop(prof_gpu_inproc *g)
{
    if (g && g->running) {
        cupti_tracer_stop();
        g->running = false;
    }
}

void prof_gpu_inproc_free(prof_gpu_inproc *g)
{
    if (!g)
        return;
    prof_gpu_inproc_stop(g);
    cupti_parser_free(&g->parser);
    cupti_trace_free(g->trace);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

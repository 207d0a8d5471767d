/* libamxdiag-inject.so: the CUPTI tracer inside a profiled CUDA process.
 *
 * `amxdiag profile -- COMMAND` sets, in the command's environment only,
 * CUDA_INJECTION64_PATH=<this library> and AMXDIAG_INJECT_FD=<write end of a pipe>.  The
 * CUDA driver loads the library at cuInit and calls InitializeInjection, which starts the
 * tracer; every record goes down the pipe as a frame of the injection protocol
 * (profiler/cupti_proto.h, docs/cupti.md).  Frames are buffered and written whole, at
 * most PIPE_BUF bytes at a time, so that processes sharing the pipe never tear a frame.
 * The buffer is written out at every flush point: CUPTI's periodic activity flush, a
 * fatal CUDA error (after forcing CUPTI to deliver everything), cuCtxDestroy, exit, and
 * fatal signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: async-signal-safe writes of
 * the frames already encoded, then the signal is delivered as before). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "profiler/cupti_debug.h"
#include "profiler/cupti_proto.h"
#include "profiler/cupti_range_prof.h"
#include "profiler/cupti_tracer.h"

#define EXPORT __attribute__((visibility("default")))

static int out_fd = -1;
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char buf[256 * 1024];
static atomic_size_t committed; /* bytes of whole frames in buf */
static atomic_bool broken;      /* amxdiag went away: stop writing */

/* Writes whole frames, at most PIPE_BUF bytes per write(2). Async-signal-safe. */
static void write_frames(const unsigned char *p, size_t n)
{
    while (n && !atomic_load(&broken)) {
        size_t chunk = 0;
        while (chunk < n) {
            uint32_t plen;
            memcpy(&plen, p + chunk + 8, sizeof plen);
            size_t fl = CUPTI_PROTO_HEADER + plen;
            if (chunk && chunk + fl > PIPE_BUF)
                break;
            chunk += fl;
        }
        /* If amxdiag went away, the write fails with EPIPE: the SIGPIPE it raises is
         * blocked here and consumed, so that the program's own SIGPIPE handling (default:
         * die) is untouched. */
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        size_t off = 0;
        bool failed = false;
        while (off < chunk) {
            ssize_t w = write(out_fd, p + off, chunk - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                failed = true;
                break;
            }
            off += (size_t)w;
        }
        if (failed) {
            struct timespec zero = {0, 0};
            sigset_t pending;
            sigpending(&pending);
            if (!sigismember(&old, SIGPIPE) && sigismember(&pending, SIGPIPE))
                sigtimedwait(&pipe_set, NULL, &zero);
            atomic_store(&broken, true);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (failed)
            return;
        p += chunk;
        n -= chunk;
    }
}

static void drain_locked(void)
{
    size_t n = atomic_load(&committed);
    write_frames(buf, n);
    atomic_store(&committed, 0);
}

static void sink_emit(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len)
{
    (void)ctx;
    if (atomic_load(&broken))
        return;
    pthread_mutex_lock(&buf_lock);
    size_t c = atomic_load(&committed);
    size_t n = cupti_proto_encode(buf + c, sizeof buf - c, type, fixed, name, name_len);
    if (!n) {
        drain_locked();
        c = 0;
        n = cupti_proto_encode(buf, sizeof buf, type, fixed, name, name_len);
    }
    atomic_store(&committed, c + n);
    /* Launches and errors matter most when the process is about to die: keep the buffer
     * short so that a crash loses little. */
    if (type == CUPTI_REC_API_ERROR || c + n > sizeof buf / 2)
        drain_locked();
    pthread_mutex_unlock(&buf_lock);
}

static void sink_flushed(void *ctx, cupti_flush_reason reason)
{
    (void)ctx;
    (void)reason;
    pthread_mutex_lock(&buf_lock);
    drain_locked();
    pthread_mutex_unlock(&buf_lock);
}

/* exit() runs handlers in the reverse order of their registration, C++ destructors of
 * objects built since included.  This one is registered at cuInit, before CUPTI's
 * profiler first runs; what that profiler registers for exit would run before it, and our
 * stop would then call into a CUPTI already torn down.  That is our reading of an H200
 * with CUDA 13.0.1 (SIGSEGV in cuptiActivityFlushAll at exit, "double free" aborts; the
 * same calls in the same order returned in process); tests/device/gpu_metrics_debug.sh
 * checks it with AMXDIAG_INJECT_LATE_EXIT=0.  So the handler is registered again once
 * the profiler has run (metrics_settled); it runs once whatever the count. */
static atomic_bool exit_done;
static atomic_uint exit_registrations;

/* AMXDIAG_INJECT_EXIT, a diagnostic: "stop" (the default: the last window decoded, the
 * activity flushed, the profiler ended) or "quiesce" (no CUPTI call at exit: what the
 * flushes during the run delivered is all there is). */
static bool exit_quiesce(void)
{
    const char *e = getenv("AMXDIAG_INJECT_EXIT");
    return e && !strcmp(e, "quiesce");
}

static void at_exit(void)
{
    if (atomic_exchange(&exit_done, true))
        return;
    bool q = exit_quiesce();
    cupti_debug("inject: exit handler (registered %u times), thread %ld: %s", atomic_load(&exit_registrations),
                (long)syscall(SYS_gettid), q ? "quiescing the tracer (AMXDIAG_INJECT_EXIT=quiesce)" : "stopping the tracer");
    if (q)
        cupti_tracer_quiesce();
    else
        cupti_tracer_stop();
    sink_flushed(NULL, CUPTI_FLUSH_EXIT);
}

static void register_exit(void)
{
    if (atexit(at_exit) == 0)
        atomic_fetch_add(&exit_registrations, 1);
}

/* AMXDIAG_INJECT_LATE_EXIT, a diagnostic: "0" the exit handler stays where cuInit put it;
 * "1" registered again where CUPTI's profiler settled (setup, first decode, session end);
 * "calls" (the default with --gpu-metrics) also again at the return of the program's
 * calls.  The fourth H200 run (CUDA 13.0.1) died in the exit flush with "0" and "1"
 * alike: CUPTI may register exit work later than those points (a C++ function-local
 * static built on a later first use registers its destructor then), and only an
 * entry registered after CUPTI's last one runs before it.  Every call while there have
 * been fewer than 256, then at most one per 10 ms, 4096 in all (32 bytes each). */
static int late_exit_mode(void)
{
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("AMXDIAG_INJECT_LATE_EXIT");
        mode = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : 2;
    }
    return mode;
}

static void metrics_settled(void)
{
    if (late_exit_mode() == 0) {
        cupti_debug("inject: AMXDIAG_INJECT_LATE_EXIT=0: the exit handler is not registered again");
        return;
    }
    register_exit();
}

static atomic_uint_fast64_t last_register_ns;

static void call_returned(void)
{
    unsigned n = atomic_load(&exit_registrations);
    if (n >= 4096 || atomic_load(&exit_done))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    uint64_t last = atomic_load(&last_register_ns);
    if (n >= 256 && now - last < 10000000ull)
        return;
    if (!atomic_compare_exchange_strong(&last_register_ns, &last, now))
        return; /* another thread registers it now */
    register_exit();
}

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static struct sigaction old_actions[sizeof fatal_signals / sizeof fatal_signals[0]];

static void on_fatal_signal(int sig, siginfo_t *si, void *uc)
{
    /* No lock (the interrupted thread may hold it): the frames up to `committed` are
     * complete; then a FLUSH frame built on the stack. */
    write_frames(buf, atomic_load(&committed));
    atomic_store(&committed, 0);
    unsigned char f[64];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    cupti_flush_rec r = {(uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec, CUPTI_FLUSH_SIGNAL, 0};
    size_t n = cupti_proto_encode(f, sizeof f, CUPTI_REC_FLUSH, &r, NULL, 0);
    write_frames(f, n);
    /* AMXDIAG_CUPTI_DEBUG: where it died (inside libcupti, or in a callback of ours that
     * CUPTI called), after the frames are safe. */
    cupti_debug_crash_dump(sig, si, uc);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
        if (fatal_signals[i] == sig)
            sigaction(sig, &old_actions[i], NULL);
    raise(sig);
}

static void install_signal_handlers(void)
{
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction sa, old;
        sigaction(fatal_signals[i], NULL, &old);
        /* A program that handles the signal itself keeps its handler. */
        if (old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fatal_signal;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(fatal_signals[i], &sa, &old_actions[i]);
    }
}

/* Called by the CUDA driver during cuInit.  Returns 1 on success (the driver ignores it). */
EXPORT int InitializeInjection(void)
{
    static atomic_bool done;
    if (atomic_exchange(&done, true))
        return 1;
    const char *fd_s = getenv("AMXDIAG_INJECT_FD");
    char *end;
    long fd = fd_s ? strtol(fd_s, &end, 10) : -1;
    if (!fd_s || *end || fd < 0 || fd > INT_MAX) {
        /* Loaded without amxdiag around (someone set CUDA_INJECTION64_PATH by hand):
         * nothing to talk to. */
        fprintf(stderr, "libamxdiag-inject: AMXDIAG_INJECT_FD is not set; GPU tracing is off "
                        "(run the command through 'amxdiag profile')\n");
        return 0;
    }
    out_fd = (int)fd;
    /* --gpu-metrics in an injected program unless AMXDIAG_GPU_METRICS_INJECTED=0
     * (cupti_range_prof_enabled; the tracer then takes KERNEL activity records, with which
     * CUPTI's activity thread no longer crashed on an H200). */
    bool metrics = getenv("AMXDIAG_GPU_METRICS") != NULL, refused = false;
    if (metrics && !cupti_range_prof_enabled(true)) {
        metrics = false;
        refused = true;
    }
    /* With --gpu-metrics, records are asked for during the run (the exit flush is where an
     * H200 died) and the exit handler kept behind CUPTI's own exit work (late_exit_mode). */
    cupti_debug_crash_prepare();
    cupti_tracer_opts o = {.emit = sink_emit,
                           .ctx = NULL,
                           .flushed = sink_flushed,
                           .flush_period_ms = 200,
                           .gpu_metrics = metrics,
                           .metrics_settled = metrics_settled,
                           .flush_during = metrics,
                           .call_returned = metrics && late_exit_mode() == 2 ? call_returned : NULL,
                           .injected = true};
    adg_error *e = cupti_tracer_start(&o);
    if (e) {
        char text[1024];
        const char *hint = adg_error_remedy(e);
        snprintf(text, sizeof text, "%s%s%s", adg_error_msg(e), hint ? " — " : "", hint ? hint : "");
        cupti_note_rec n = {CUPTI_NOTE_UNAVAILABLE, 0};
        sink_emit(NULL, CUPTI_REC_NOTE, &n, text, strlen(text));
        sink_flushed(NULL, CUPTI_FLUSH_EXIT);
        adg_error_free(e);
        return 0;
    }
    if (refused) {
        cupti_note_rec n = {CUPTI_NOTE_NO_METRICS, 0};
        sink_emit(NULL, CUPTI_REC_NOTE, &n, cupti_range_prof_off_reason, strlen(cupti_range_prof_off_reason));
    }
    install_signal_handlers();
    register_exit();
    sink_flushed(NULL, CUPTI_FLUSH_PERIODIC);
    return 1;
}

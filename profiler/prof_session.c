/* The session: fork/exec of the command (held on a pipe until the collectors are open,
 * so that events enabled on exec see its first instruction), or attach to --pid; the
 * sampling thread; signal handling; the run record. */
#include "profiler/prof_session.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_record.h"
#include "common/adg_util.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_workload.h"

static const prof_collector *const collectors[] = {
    &prof_sampler_collector, &prof_pmu_collector, &prof_uncore_collector, &prof_mbm_collector, &prof_numa_collector,
    /* nvml before gpu: device memory it registers first is its own (sampled every interval,
     * where the tracer's cuMemGetInfo needs the program's CUDA calls). */
    &prof_nvml_collector, &prof_cupti_collector, &prof_cpu_collector,
};
#define NCOLL (sizeof collectors / sizeof collectors[0])

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

typedef struct relay {
    struct session *s;
    int fd;       /* read end */
    int dst;      /* where the bytes go, unchanged */
    pthread_t th;
    bool started;
} relay;

typedef struct session {
    prof_ctx ctx;
    const prof_options *o;
    void *state[NCOLL];
    bool open[NCOLL];
    bool ran[NCOLL];        /* opened at some point (open[] is cleared again by finish) */
    bool prepared[NCOLL];   /* prepare ran and succeeded (state[i] is set, open not yet called) */
    bool refused[NCOLL];    /* prepare failed: not opened */
    pthread_t sampler;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_bool child_done;
    uint64_t child_done_ns;
    relay out, err;
    prof_builtin *builtin;
    bool abandoned;          /* the engine thread still runs: the bus must outlive us */
    pthread_mutex_t wl_lock;
    json_t *results;   /* workload figures parsed from the output */
    int m_tps;
} session;

/* ---- output relay ---- */

static void relay_line(session *s, const char *line)
{
    prof_tps t;
    if (!prof_workload_parse_line(line, &t))
        return;
    uint64_t now = adg_bus_elapsed_ns(s->ctx.bus);
    pthread_mutex_lock(&s->wl_lock);
    json_array_append_new(s->results, json_pack("{s:s,s:f,s:f,s:s,s:f}", "test", t.test, "tokens_per_s", t.tps,
                                                "stddev", t.stddev, "source", t.source, "t_s", (double)now * 1e-9));
    pthread_mutex_unlock(&s->wl_lock);
    adg_bus_sample(s->ctx.bus, s->m_tps, t.test, now, t.tps);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* our own output is gone: keep draining so the command is not blocked */
        p += w;
        n -= (size_t)w;
    }
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    session *s = r->s;
    char buf[8192], line[4096];
    size_t ll = 0;
    for (;;) {
        struct pollfd pfd = {r->fd, POLLIN, 0};
        int pr = poll(&pfd, 1, 100);
        if (pr == 0) {
            /* A daemonised grandchild may keep the pipe open forever: stop a second
             * after the command itself ended. */
            if (atomic_load(&s->child_done) && adg_now_ns() > s->child_done_ns + 1000000000ull)
                break;
            continue;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        write_all(r->dst, buf, (size_t)n);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || buf[i] == '\r' || ll == sizeof line - 1) {
                line[ll] = 0;
                if (ll)
                    relay_line(s, line);
                ll = 0;
            } else
                line[ll++] = buf[i];
        }
    }
    if (ll) {
        line[ll] = 0;
        relay_line(s, line);
    }
    close(r->fd);
    r->fd = -1;
    return NULL;
}

/* ---- sampling thread ---- */

static void sample_all(session *s)
{
    uint64_t t = adg_bus_elapsed_ns(s->ctx.bus);
    for (size_t i = 0; i < NCOLL; i++)
        if (s->open[i])
            collectors[i]->sample(&s->ctx, s->state[i], t);
}

static void *sampler_main(void *arg)
{
    session *s = arg;
    s->ctx.exclude_tid = gettid();
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        uint64_t ns = (uint64_t)next.tv_nsec + s->ctx.interval_ns;
        next.tv_sec += (time_t)(ns / 1000000000ull);
        next.tv_nsec = (long)(ns % 1000000000ull);
        while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &next) != ETIMEDOUT)
            ;
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        sample_all(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- collectors ---- */

static void collector_refused(session *s, size_t i, adg_error *e)
{
    const char *hint = adg_error_remedy(e);
    char why[1024];
    snprintf(why, sizeof why, "%s%s%s", adg_error_msg(e), hint ? " — " : "", hint ? hint : "");
    adg_bus_unavailable(s->ctx.bus, collectors[i]->name, collectors[i]->name, why);
    if (s->ctx.sets_explicit)
        adg_warn("collector '%s' cannot run here: %s", collectors[i]->name, why);
    else
        adg_info("collector '%s' cannot run here: %s", collectors[i]->name, why);
    adg_error_free(e);
}

/* Before the command starts: collectors that must put something in its environment. */
static void prepare_collectors(session *s)
{
    for (size_t i = 0; i < NCOLL; i++) {
        if (!(collectors[i]->sets & s->ctx.sets) || !collectors[i]->prepare)
            continue;
        adg_error *e = collectors[i]->prepare(&s->ctx, &s->state[i]);
        if (e) {
            collector_refused(s, i, e);
            s->refused[i] = true;
            s->state[i] = NULL;
        } else
            s->prepared[i] = true;
    }
}

static void open_collectors(session *s)
{
    for (size_t i = 0; i < NCOLL; i++) {
        if (!(collectors[i]->sets & s->ctx.sets) || s->refused[i])
            continue;
        s->prepared[i] = false;
        adg_error *e = collectors[i]->open(&s->ctx, &s->state[i]);
        if (e) {
            collector_refused(s, i, e);
            if (collectors[i]->prepare && s->state[i])
                collectors[i]->close(s->state[i]);
            s->state[i] = NULL;
            continue;
        }
        s->open[i] = true;
        s->ran[i] = true;
    }
}

/* Prepared collectors whose open never came (the command could not be started). */
static void close_prepared(session *s)
{
    for (size_t i = 0; i < NCOLL; i++)
        if (s->prepared[i]) {
            collectors[i]->close(s->state[i]);
            s->prepared[i] = false;
            s->state[i] = NULL;
        }
}

static void finish_collectors(session *s)
{
    uint64_t t = adg_bus_elapsed_ns(s->ctx.bus);
    for (size_t i = 0; i < NCOLL; i++)
        if (s->open[i]) {
            collectors[i]->finish(&s->ctx, s->state[i], t);
            collectors[i]->close(s->state[i]);
            s->open[i] = false;
        }
}

static void close_collectors(session *s)
{
    for (size_t i = 0; i < NCOLL; i++)
        if (s->open[i]) {
            collectors[i]->close(s->state[i]);
            s->open[i] = false;
        }
}

static json_t *config_section(session *s)
{
    static const char *const set_names[] = {"amx", "simd", "core", "mem", "sampling", "numa", "gpu", "cpu", "nvml"};
    json_t *sets = json_array();
    for (unsigned i = 0; i < ADG_ARRAY_LEN(set_names); i++)
        if (s->ctx.sets & (1u << i))
            json_array_append_new(sets, json_string(set_names[i]));
    json_t *coll = json_array();
    for (size_t i = 0; i < NCOLL; i++)
        if (collectors[i]->sets & s->ctx.sets)
            json_array_append_new(coll, json_pack("{s:s,s:b}", "name", collectors[i]->name, "ran", s->ran[i]));
    return json_pack("{s:s,s:i,s:i,s:o,s:o,s:b,s:i}", "mode", s->o->pid ? "attach" : "command", "interval_ms",
                     (int)s->o->interval_ms, "freq_hz", (int)s->ctx.freq_hz, "sets", sets, "collectors", coll, "tee",
                     s->o->tee, "top_n", (int)s->ctx.top_n);
}

/* ---- the workload ---- */

static const char *sig_name(int sig)
{
    static char buf[16];
    const char *n = sigabbrev_np(sig);
    if (!n)
        return "?";
    snprintf(buf, sizeof buf, "SIG%s", n);
    return buf;
}

static adg_error *start_relay(session *s, relay *r, int fd, int dst)
{
    r->s = s;
    r->fd = fd;
    r->dst = dst;
    if (pthread_create(&r->th, NULL, relay_main, r) != 0) {
        close(fd);
        r->fd = -1;
        return adg_error_new(ADG_E_INTERNAL, "cannot start the output relay thread");
    }
    r->started = true;
    return NULL;
}

static void stop_relays(session *s)
{
    if (s->out.started)
        pthread_join(s->out.th, NULL);
    if (s->err.started)
        pthread_join(s->err.th, NULL);
    s->out.started = s->err.started = false;
}

/* The command's environment: ours plus the collectors' ctx->child_env entries (which
 * replace variables of the same name).  NULL when there is nothing to add or no memory
 * (then the command gets ours).  Only the array is allocated. */
static char **child_environment(session *s)
{
    extern char **environ;
    if (!s->ctx.n_child_env)
        return NULL;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + s->ctx.n_child_env + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;
        for (unsigned j = 0; j < s->ctx.n_child_env; j++) {
            const char *eq = strchr(s->ctx.child_env[j], '=');
            size_t len = eq ? (size_t)(eq - s->ctx.child_env[j]) + 1 : 0;
            if (len && !strncmp(environ[i], s->ctx.child_env[j], len))
                replaced = true;
        }
        if (!replaced)
            env[w++] = environ[i];
    }
    for (unsigned j = 0; j < s->ctx.n_child_env; j++)
        env[w++] = (char *)s->ctx.child_env[j];
    env[w] = NULL;
    return env;
}

/* Forks the command, held before exec until *release is closed. */
static adg_error *spawn(session *s, pid_t *child, int *release, int *exec_err)
{
    char *const *argv = s->o->argv;
    char **envp = child_environment(s);
    int sync[2] = {-1, -1}, errp[2] = {-1, -1}, outp[2] = {-1, -1}, errq[2] = {-1, -1};
    if (pipe2(sync, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) ||
        (s->o->tee && (pipe2(outp, O_CLOEXEC) || pipe2(errq, O_CLOEXEC)))) {
        int err = errno;
        int all[] = {sync[0], sync[1], errp[0], errp[1], outp[0], outp[1], errq[0], errq[1]};
        for (size_t i = 0; i < ADG_ARRAY_LEN(all); i++)
            if (all[i] >= 0)
                close(all[i]);
        free(envp);
        return adg_error_errno(ADG_E_IO, err, "cannot create pipes for the command");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        int all[] = {sync[0], sync[1], errp[0], errp[1], outp[0], outp[1], errq[0], errq[1]};
        for (size_t i = 0; i < ADG_ARRAY_LEN(all); i++)
            if (all[i] >= 0)
                close(all[i]);
        free(envp);
        return adg_error_errno(ADG_E_IO, err, "cannot fork");
    }
    if (pid == 0) {
        /* The child: default signal dispositions and mask, output into the relay pipes,
         * wait for the go, exec. Only async-signal-safe calls here. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGPIPE, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(sync[1]); /* else the read below never sees end-of-file */
        close(errp[0]);
        if (s->o->tee) {
            close(outp[0]);
            close(errq[0]);
            dup2(outp[1], 1);
            dup2(errq[1], 2);
        }
        char go;
        while (read(sync[0], &go, 1) < 0 && errno == EINTR)
            ;
        if (envp)
            execvpe(argv[0], argv, envp);
        else
            execvp(argv[0], argv);
        int err = errno;
        if (write(errp[1], &err, sizeof err) < 0) {
        }
        _exit(127);
    }
    free(envp);
    close(sync[0]);
    close(errp[1]);
    *child = pid;
    *release = sync[1];
    *exec_err = errp[0];
    if (s->o->tee) {
        close(outp[1]);
        close(errq[1]);
        adg_error *e = start_relay(s, &s->out, outp[0], s->o->output_to_stderr ? 2 : 1);
        if (!e)
            e = start_relay(s, &s->err, errq[0], 2);
        else
            close(errq[0]);
        if (e) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(sync[1]);
            close(errp[0]);
            return e;
        }
    }
    return NULL;
}

static void install_signals(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: waits return EINTR */
    sigemptyset(&sa.sa_mask);
    got_signal = 0;
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits for the command; on SIGINT/SIGTERM it is sent SIGTERM (like perf record), then
 * SIGKILL after 3 s. Returns the wait status. */
static int wait_child(session *s, pid_t child, int *interrupted_by)
{
    int st = 0;
    bool termed = false;
    uint64_t kill_at = 0;
    for (;;) {
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child) {
            /* A terminal Ctrl-C reaches the command's process group and us at once: the
             * command may be gone before this loop saw our flag. Its death is then the
             * interruption, not a crash. (The kernel queues our signal in the same step as
             * the child's, and its handler runs before waitpid returns to us, so the flag
             * is set by now.) */
            if (got_signal && !termed)
                *interrupted_by = got_signal;
            break;
        }
        if (r < 0 && errno != EINTR) {
            st = 0;
            break;
        }
        if (got_signal && !termed) {
            *interrupted_by = got_signal;
            kill(child, SIGTERM);
            termed = true;
            kill_at = adg_now_ns() + 3000000000ull;
        }
        if (termed && adg_now_ns() > kill_at) {
            kill(child, SIGKILL);
            kill_at = UINT64_MAX;
        }
        sleep_ms(10);
    }
    s->child_done_ns = adg_now_ns();
    atomic_store(&s->child_done, true);
    return st;
}

static void wait_attached(session *s, pid_t pid, int *interrupted_by)
{
    uint64_t end = s->o->duration_s > 0 ? adg_now_ns() + (uint64_t)(s->o->duration_s * 1e9) : UINT64_MAX;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    for (;;) {
        if (got_signal) {
            *interrupted_by = got_signal;
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0 || adg_now_ns() >= end)
            break;
        sleep_ms(20);
    }
}

static adg_error *run(session *s, prof_outcome *outcome, const char **status, json_t *workload)
{
    const prof_options *o = s->o;
    int interrupted_by = 0;
    pid_t child = 0;
    int release = -1, exec_err = -1;
    adg_error *e = NULL;

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);

    if (o->builtin) {
        s->ctx.root = getpid();
        s->ctx.self = true;
        prepare_collectors(s);
    } else if (o->pid) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d", (int)o->pid);
        if (access(path, F_OK) != 0)
            return adg_error_hint(adg_error_new(ADG_E_USAGE, "no process with pid %d", (int)o->pid),
                                  "check the pid with 'ps'; --pid takes the process id, not a thread of another process");
        s->ctx.root = o->pid;
        s->ctx.attach = true;
        prepare_collectors(s);
    } else {
        /* Threads started from here on (relays) must leave SIGINT/SIGTERM to the main thread. */
        prepare_collectors(s);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        e = spawn(s, &child, &release, &exec_err);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e) {
            close_prepared(s);
            return e;
        }
        s->ctx.root = child;
    }
    prof_pidset_add(&s->ctx.pids, s->ctx.root);
    /* Collectors may start threads (the GPU trace reader): SIGINT/SIGTERM must stay with
     * this thread, so that the flag is set before wait_child can reap a command that the
     * same Ctrl-C killed. */
    pthread_sigmask(SIG_BLOCK, &block, &old);
    open_collectors(s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    pthread_sigmask(SIG_BLOCK, &block, &old);
    int prc = pthread_create(&s->sampler, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        e = adg_error_new(ADG_E_INTERNAL, "cannot start the sampling thread");
        if (child) {
            kill(child, SIGKILL);
            close(release);
            waitpid(child, NULL, 0);
            close(exec_err);
            atomic_store(&s->child_done, true);
            stop_relays(s);
        }
        close_collectors(s);
        return e;
    }

    uint64_t t0 = adg_now_ns();
    int wstatus = 0;
    if (child) {
        close(release); /* go */
        int err = 0;
        ssize_t n;
        while ((n = read(exec_err, &err, sizeof err)) < 0 && errno == EINTR)
            ;
        close(exec_err);
        if (n == (ssize_t)sizeof err) {
            waitpid(child, NULL, 0);
            s->child_done_ns = adg_now_ns();
            atomic_store(&s->child_done, true);
            e = adg_error_errno(ADG_E_USAGE, err, "cannot run '%s'", o->argv[0]);
            adg_error_hint(e, err == ENOENT ? "check the command name and PATH (the command is run without a shell)"
                                            : "check the file's permissions; scripts need a #! line");
            outcome->exit_code = err == ENOENT ? 127 : 126;
        } else
            wstatus = wait_child(s, child, &interrupted_by);
    } else if (o->builtin) {
        /* Started after the collectors, so that its threads inherit the events. */
        pthread_sigmask(SIG_BLOCK, &block, &old);
        e = prof_builtin_start(&o->engine, s->ctx.bus, &s->builtin);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        while (!e && !prof_builtin_done(s->builtin)) {
            if (got_signal) {
                interrupted_by = got_signal;
                break;
            }
            sleep_ms(20);
        }
    } else
        wait_attached(s, o->pid, &interrupted_by);
    double duration = (double)(adg_now_ns() - t0) * 1e-9;

    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->sampler, NULL);
    stop_relays(s);
    if (e) {
        close_collectors(s);
        return e;
    }
    finish_collectors(s);

    json_object_set_new(workload, "duration_s", json_real(duration));
    if (child) {
        json_object_set_new(workload, "pid", json_integer(child));
        if (WIFEXITED(wstatus)) {
            int code = WEXITSTATUS(wstatus);
            json_object_set_new(workload, "exit_code", json_integer(code));
            outcome->exit_code = code;
            *status = code ? "workload-failed" : "complete";
        } else if (WIFSIGNALED(wstatus)) {
            int sig = WTERMSIG(wstatus);
            json_object_set_new(workload, "signal", json_integer(sig));
            json_object_set_new(workload, "signal_name", json_string(sig_name(sig)));
            json_object_set_new(workload, "core_dumped", WCOREDUMP(wstatus) ? json_true() : json_false());
            outcome->exit_code = 128 + sig;
            *status = "workload-crashed";
        }
    } else if (o->builtin) {
        json_object_set_new(workload, "pid", json_integer(getpid()));
        outcome->exit_code = 0;
        *status = "complete";
        if (interrupted_by) {
            prof_builtin_abandon(s->builtin);
            s->abandoned = true;
        } else {
            pthread_mutex_lock(&s->wl_lock);
            adg_error *we = prof_builtin_finish(s->builtin, workload, s->results, s->ctx.record);
            pthread_mutex_unlock(&s->wl_lock);
            if (we) {
                json_object_set_new(workload, "error", json_string(adg_error_msg(we)));
                outcome->workload_error = we;
                outcome->exit_code = 2;
                *status = "workload-failed";
            }
        }
        s->builtin = NULL;
    } else {
        json_object_set_new(workload, "pid", json_integer(o->pid));
        outcome->exit_code = 0;
        *status = "complete";
    }
    if (interrupted_by) {
        *status = "interrupted";
        json_object_set_new(workload, "interrupted_by", json_string(sig_name(interrupted_by)));
        if (child || o->builtin)
            outcome->exit_code = 128 + interrupted_by;
        adg_bus_event(s->ctx.bus, adg_bus_elapsed_ns(s->ctx.bus), "phase", "interrupted",
                      json_pack("{s:s}", "signal", sig_name(interrupted_by)));
    }
    return NULL;
}

adg_error *prof_session_run(const prof_options *o, prof_outcome *outcome)
{
    outcome->exit_code = 2;
    outcome->record = NULL;
    outcome->workload_error = NULL;
    if (!o->argv && !o->pid && !o->builtin)
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "nothing to profile"),
                              "give a command (amxdiag profile -- COMMAND ARGS...), --pid, or no argument at all "
                              "for the built-in path");
    session s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.ctx.bus = o->bus ? o->bus : adg_bus_new();
    s.ctx.record = adg_record_new();
    s.results = json_array();
    if (!s.ctx.bus || !s.ctx.record || !s.results) {
        if (!o->bus)
            adg_bus_free(s.ctx.bus);
        adg_record_free(s.ctx.record);
        json_decref(s.results);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    s.ctx.interval_ns = (uint64_t)(o->interval_ms ? o->interval_ms : 100) * 1000000ull;
    s.ctx.freq_hz = o->freq_hz ? o->freq_hz : 999;
    s.ctx.sets = o->sets ? o->sets : PROF_SET_ALL;
    s.ctx.sets_explicit = o->sets_explicit;
    s.ctx.top_n = o->top_n ? o->top_n : 30;
    s.ctx.gpu_metrics = o->gpu_metrics;
    prof_pidset_init(&s.ctx.pids);
    pthread_mutex_init(&s.lock, NULL);
    pthread_mutex_init(&s.wl_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s.child_done, false);
    s.m_tps = prof_register(&s.ctx, "workload", "workload.tokens_per_s", "t/s", ADG_SCOPE_PROCESS,
                            "tokens per second reported by the workload (llama-bench / llama-cli output)");

    struct sigaction old_int, old_term;
    install_signals(&old_int, &old_term);
    json_t *workload = json_object();
    json_t *cmd = json_array();
    for (char **a = o->argv; a && *a; a++)
        json_array_append_new(cmd, json_string(*a));
    json_object_set_new(workload, "command", cmd);
    const char *status = "complete";
    adg_bus_event(s.ctx.bus, 0, "phase", "start", NULL);
    adg_error *e = run(&s, outcome, &status, workload);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    if (!e) {
        adg_bus_event(s.ctx.bus, adg_bus_elapsed_ns(s.ctx.bus), "phase", "end", NULL);
        pthread_mutex_lock(&s.wl_lock);
        json_object_set(workload, "results", s.results);
        pthread_mutex_unlock(&s.wl_lock);
        /* llama-bench's table wins over the timing lines it may also print */
        const char *recognised = NULL;
        size_t ri;
        json_t *rv;
        json_array_foreach(s.results, ri, rv)
        {
            const char *src = json_string_value(json_object_get(rv, "source"));
            if (!recognised || (src && !strcmp(src, "llama-bench")))
                recognised = src;
        }
        json_object_set_new(workload, "recognised", recognised ? json_string(recognised) : json_null());
        adg_record_set_status(s.ctx.record, status);
        adg_error_free(adg_record_set_section(s.ctx.record, "machine", prof_machine_section()));
        adg_error_free(adg_record_set_section(s.ctx.record, "config", config_section(&s)));
        adg_error_free(adg_record_set_section(s.ctx.record, "workload", json_incref(workload)));
        json_t *mem = prof_memory_section(s.ctx.bus);
        json_t *est = adg_record_section(s.ctx.record, "memory"); /* the built-in path's estimate */
        if (est) {
            if (json_is_null(json_object_get(mem, "source")))
                json_object_set_new(mem, "note", json_string("no hardware bandwidth source here (see unavailable); "
                                                             "the built-in path's per-op traffic estimate follows"));
            json_object_update(mem, est);
        }
        adg_error_free(adg_record_set_section(s.ctx.record, "memory", mem));
        json_t *root = adg_record_build(s.ctx.record, s.ctx.bus);
        if (!root)
            e = adg_error_new(ADG_E_NOMEM, "out of memory building the run record");
        else if ((e = adg_json_write_atomic(o->out, root))) {
            adg_error_prefix(e, "run record");
            json_decref(root);
        }
        else
            outcome->record = root;
        if (e)
            outcome->exit_code = 2;
    }
    json_decref(workload);
    json_decref(s.results);
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    pthread_mutex_destroy(&s.wl_lock);
    prof_pidset_destroy(&s.ctx.pids);
    adg_record_free(s.ctx.record);
    if (!o->bus && !s.abandoned)
        adg_bus_free(s.ctx.bus);
    return e;
}

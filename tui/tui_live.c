/* Live mode: the profiler's session (the same collectors and run record as `amxdiag
 * profile`) runs on the main thread and publishes on the TUI's bus; the screen, on a second
 * thread, reads that bus.
 * The workload's terminal output would scribble over the screen, so while the screen is
 * up the process's stdout/stderr go to a log file and its stdin to /dev/null (the
 * workload inherits them); ncurses keeps duplicates of the terminal. */
#include "tui/tui_live.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_util.h"

adg_error *tui_live_redirect(tui_live *l, const char *log_path)
{
    l->tty_in = dup(0);
    l->tty_out = dup(1);
    l->saved_err = dup(2);
    if (l->tty_in < 0 || l->tty_out < 0 || l->saved_err < 0) {
        tui_live_restore(l);
        return adg_error_errno(ADG_E_IO, errno, "cannot duplicate the terminal's descriptors");
    }
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0) {
        adg_error *e = adg_error_errno(ADG_E_IO, errno, "cannot create the workload's output log %s", log_path);
        tui_live_restore(l);
        return adg_error_hint(e, "choose a writable place with --log FILE");
    }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    dup2(logfd, 1);
    dup2(logfd, 2);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    close(logfd);
    l->redirected = true;
    snprintf(l->log_path, sizeof l->log_path, "%s", log_path);
    return NULL;
}

void tui_live_restore(tui_live *l)
{
    if (l->redirected) {
        fflush(stdout);
        fflush(stderr);
        dup2(l->tty_in, 0);
        dup2(l->tty_out, 1);
        dup2(l->saved_err, 2);
        l->redirected = false;
    }
    if (l->tty_in >= 0)
        close(l->tty_in);
    if (l->tty_out >= 0)
        close(l->tty_out);
    if (l->saved_err >= 0)
        close(l->saved_err);
    l->tty_in = l->tty_out = l->saved_err = -1;
}

typedef struct screen_job {
    tui_live *l;
    tui_app *a;
    tui_screen *s;
    tui_canvas *c;
    const tui_loop_opts *lo;
    adg_error *err;
} screen_job;

static void *screen_main(void *arg)
{
    screen_job *j = arg;
    j->err = tui_loop_run(j->a, j->s, j->c, j->lo);
    /* The loop only leaves early on an error: the session must not outlive the screen. */
    while (!atomic_load(&j->l->done)) {
        tui_live_stop(j->l);
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

adg_error *tui_live_run(tui_live *l, tui_app *a, tui_screen *s, tui_canvas *c, const tui_loop_opts *lo)
{
    atomic_init(&l->done, false);
    /* The session runs on this (the main) thread and the screen on a new one: the built-in
     * path is sampled through events inherited from the main thread, so its engine threads
     * must descend from it; ncurses is only ever called from the screen thread. */
    screen_job j = {l, a, s, c, lo, NULL};
    pthread_t th;
    if (pthread_create(&th, NULL, screen_main, &j) != 0)
        return adg_error_new(ADG_E_INTERNAL, "cannot start the screen's thread");
    l->err = prof_session_run(&l->o, &l->out);
    atomic_store(&l->done, true);
    pthread_join(th, NULL);
    return j.err;
}

void tui_live_finish_app(tui_live *l, tui_app *a)
{
    json_t *rec = l->out.record;
    if (rec) {
        json_decref(a->hot);
        a->hot = json_incref(json_object_get(rec, "hot_functions"));
        json_t *m = json_object_get(rec, "machine");
        if (m) {
            json_decref(a->machine);
            a->machine = json_incref(m);
        }
        json_decref(a->workload);
        a->workload = json_incref(json_object_get(rec, "workload"));
        const char *st = json_string_value(json_object_get(rec, "status"));
        /* Ctrl-C / SIGTERM reached the session (which stopped the workload): leave too. */
        if (st && !strcmp(st, "interrupted") && !a->quit_key)
            a->failed = true;
        snprintf(a->finish_note, sizeof a->finish_note, "workload ended (%s, exit %d); run record written to %s%s",
                 st ? st : "?", l->out.exit_code, l->o.out, l->log_path[0] ? "; its output: " : "");
        if (l->log_path[0])
            snprintf(a->finish_note + strlen(a->finish_note), sizeof a->finish_note - strlen(a->finish_note), "%s",
                     l->log_path);
    } else if (l->err) {
        a->failed = true;
        snprintf(a->finish_note, sizeof a->finish_note, "the session failed: %s", adg_error_msg(l->err));
    }
}

bool tui_live_poll(void *ctx, tui_app *a)
{
    tui_live *l = ctx;
    if (!atomic_load(&l->done)) {
        /* The sampler refreshes its hot functions about once a second while the run
         * goes on; a paused screen keeps the list it shows. */
        json_t *hot = a->paused ? NULL : adg_bus_snapshot_get(a->bus, "hot_functions", &l->hot_version);
        if (hot) {
            json_decref(a->hot);
            a->hot = hot;
        }
        return false;
    }
    tui_live_finish_app(l, a);
    return true;
}

void tui_live_stop(void *ctx)
{
    (void)ctx;
    /* The session stops the workload on SIGINT (SIGTERM to it, SIGKILL after 3 s) and
     * writes the record marked "interrupted", exactly as `amxdiag profile` on Ctrl-C. */
    kill(getpid(), SIGINT);
}

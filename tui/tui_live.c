/* Live mode: the profiler's session (the same collectors and run record as `amxdiag
 * profile`) runs on the main thread and publishes on the TUI's bus; the screen, on a second
 * thread, reads that bus.
 * The workload's terminal output would scribble over the screen, so while the screen is
 * up the process's stdout/stderr go to a log file and its stdin to /dev/null (the
 * workload inherits them); ncurses keeps duplicates of the terminal. */
#include "tui/tui_live.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_util.h"

/* Notes are cut to their buffer on purpose (the screen cuts them again). */
__attribute__((format(printf, 3, 4))) static void note(char *dst, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, len, fmt, ap);
    va_end(ap);
}

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
    if (!l->err)
        tui_live_confirm(l);
    atomic_store(&l->done, true);
    pthread_join(th, NULL);
    tui_live_adopt_confirmed(l);
    return j.err;
}

bool tui_live_confirm(tui_live *l)
{
    if (!l->confirm || !prof_confirm_wanted(&l->o, l->out.record))
        return false;
    atomic_store(&l->confirm_state, 1);
    adg_error *e = prof_confirm_run_ex(&l->o, &l->confirm_res);
    if (e) {
        snprintf(l->confirm_error, sizeof l->confirm_error, "%s", adg_error_msg(e));
        adg_error_free(e);
    } else if (l->confirm_res.ran && !l->confirm_res.interrupted) {
        json_t *merged;
        e = adg_record_load(l->o.out, &merged);
        if (e) {
            snprintf(l->confirm_error, sizeof l->confirm_error, "%s", adg_error_msg(e));
            adg_error_free(e);
        } else
            l->confirmed_record = merged;
    }
    atomic_store(&l->confirm_state, 2);
    return true;
}

void tui_live_adopt_confirmed(tui_live *l)
{
    if (!l->confirmed_record)
        return;
    json_decref(l->out.record);
    l->out.record = l->confirmed_record;
    l->confirmed_record = NULL;
}

/* The confirmation's sentence goes first on the footer: it is what the user waits for. */
static void prepend_finish(tui_app *a, const char *text)
{
    char old[sizeof a->finish_note];
    snprintf(old, sizeof old, "%s", a->finish_note);
    note(a->finish_note, sizeof a->finish_note, "%s%s%s", text, old[0] ? "; " : "", old);
}

void tui_live_confirm_notes(tui_live *l, tui_app *a)
{
    int st = atomic_load(&l->confirm_state);
    const prof_confirm_result *r = &l->confirm_res;
    if (st == 1) {
        a->confirming = true;
        note(a->confirm_note, sizeof a->confirm_note, "confirming the fault's kernel (CUDA_LAUNCH_BLOCKING=1)...");
        note(a->confirm_summary, sizeof a->confirm_summary,
                 "the kernel behind the CUDA error is not certain: running the command again with "
                 "CUDA_LAUNCH_BLOCKING=1 to confirm it (q stops it; --no-confirm skips it)");
        prepend_finish(a, "confirming the faulting kernel: the command runs again with CUDA_LAUNCH_BLOCKING=1");
        return;
    }
    if (st != 2)
        return;
    a->confirming = false;
    if (l->confirm_error[0]) {
        note(a->confirm_note, sizeof a->confirm_note, "confirmation failed: %s", l->confirm_error);
        note(a->confirm_summary, sizeof a->confirm_summary, "the confirmation re-run failed: %s", l->confirm_error);
        prepend_finish(a, a->confirm_summary);
        return;
    }
    if (r->interrupted)
        note(a->confirm_note, sizeof a->confirm_note, "confirmation stopped: the ring's guess stands");
    else if (r->certain && r->agrees == 0)
        note(a->confirm_note, sizeof a->confirm_note, "fault: %s (confirmed; ring guessed %s)", r->kernel,
                 r->first_guess);
    else if (r->certain)
        note(a->confirm_note, sizeof a->confirm_note, "fault: %s (confirmed)", r->kernel);
    else if (!r->reproduced)
        note(a->confirm_note, sizeof a->confirm_note, "blocking re-run: no error (exit %d)", r->rc);
    else
        note(a->confirm_note, sizeof a->confirm_note, "blocking re-run: the kernel is still uncertain");
    note(a->confirm_summary, sizeof a->confirm_summary, "%s", r->summary);
    prepend_finish(a, a->confirm_summary);
}

void tui_live_finish_app(tui_live *l, tui_app *a)
{
    json_t *rec = l->confirmed_record ? l->confirmed_record : l->out.record;
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
        json_t *gpus = json_object_get(json_object_get(rec, "nvml"), "devices");
        if (gpus) {
            json_decref(a->gpus);
            a->gpus = json_incref(gpus);
        }
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
    if (!atomic_load(&l->done) && atomic_load(&l->confirm_state) == 1) {
        /* The workload ended and runs again to confirm its fault: the first run's record
         * is on screen meanwhile, with the status line saying so. */
        if (!a->confirming) {
            tui_live_finish_app(l, a);
            tui_live_confirm_notes(l, a);
        }
        return false;
    }
    if (!atomic_load(&l->done)) {
        /* The sampler refreshes its hot functions about once a second while the run
         * goes on; a paused screen keeps the list it shows. */
        json_t *hot = a->paused ? NULL : adg_bus_snapshot_get(a->bus, "hot_functions", &l->hot_version);
        if (hot) {
            json_decref(a->hot);
            a->hot = hot;
        }
        json_t *gpus = adg_bus_snapshot_get(a->bus, "nvml_devices", &l->gpus_version);
        if (gpus) {
            json_decref(a->gpus);
            a->gpus = gpus;
        }
        return false;
    }
    tui_live_finish_app(l, a);
    tui_live_confirm_notes(l, a);
    return true;
}

void tui_live_stop(void *ctx)
{
    (void)ctx;
    /* The session stops the workload on SIGINT (SIGTERM to it, SIGKILL after 3 s) and
     * writes the record marked "interrupted", exactly as `amxdiag profile` on Ctrl-C. */
    kill(getpid(), SIGINT);
}

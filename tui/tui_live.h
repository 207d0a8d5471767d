/* Live mode: the profiler's session publishing on the TUI's bus, the screen beside it. */
#ifndef TUI_LIVE_H
#define TUI_LIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "profiler/prof_session.h"
#include "tui/tui_internal.h"
#include "tui/tui_loop.h"

typedef struct tui_live {
    prof_options o;          /* o.bus is the TUI's bus */
    atomic_bool done;        /* the session returned (out/err are set) */
    prof_outcome out;
    adg_error *err;
    int tty_in, tty_out, saved_err;
    bool redirected;
    char log_path[4096];
    uint64_t hot_version;    /* of the sampler's live "hot_functions" bus snapshot */
} tui_live;

/* Points stdout/stderr at log_path and stdin at /dev/null, keeping the terminal in
 * l->tty_in / l->tty_out for the screen. */
adg_error *tui_live_redirect(tui_live *l, const char *log_path);
void tui_live_restore(tui_live *l);
/* Runs the session on the calling thread and the screen loop on a new one until both
 * are done; returns the loop's error (the session's is in l->err). */
adg_error *tui_live_run(tui_live *l, tui_app *a, tui_screen *s, tui_canvas *c, const tui_loop_opts *lo);
/* Fills the app's end-of-run sections (hot functions, machine, workload) from the record. */
void tui_live_finish_app(tui_live *l, tui_app *a);
/* tui_loop_opts hooks. */
bool tui_live_poll(void *ctx, tui_app *a);
void tui_live_stop(void *ctx);

#endif

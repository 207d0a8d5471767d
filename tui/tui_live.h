/* Live mode: the profiler's session publishing on the TUI's bus, the screen beside it. */
#ifndef TUI_LIVE_H
#define TUI_LIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "profiler/crash_confirm.h"
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
    uint64_t gpus_version;   /* of the nvml collector's "nvml_devices" snapshot */
    /* After a CUDA fault whose kernel is not certain, the blocking re-run that confirms it
     * (profiler/crash_confirm.h, as amxdiag profile does), unless --no-confirm/--sanitize. */
    bool confirm;
    atomic_int confirm_state;      /* 0 not run, 1 running, 2 done (res and record set) */
    prof_confirm_result confirm_res;
    json_t *confirmed_record;      /* the record with the confirmation merged (owned) */
    char confirm_error[512];
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
/* The confirmation re-run, on the calling thread, when l->confirm and the record wants it;
 * sets confirm_state 1 then 2.  Returns whether it ran. */
bool tui_live_confirm(tui_live *l);
/* The app's notes for the confirmation: running, or what it found. */
void tui_live_confirm_notes(tui_live *l, tui_app *a);
/* After the screen is gone: the record with the confirmation merged becomes l->out.record. */
void tui_live_adopt_confirmed(tui_live *l);
/* tui_loop_opts hooks. */
bool tui_live_poll(void *ctx, tui_app *a);
void tui_live_stop(void *ctx);

#endif

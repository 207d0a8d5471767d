/* The interactive loop of `amxdiag top`. */
#ifndef TUI_LOOP_H
#define TUI_LOOP_H

#include <stdbool.h>

#include "tui/tui_internal.h"
#include "tui/tui_screen.h"

typedef struct tui_loop_opts {
    unsigned refresh_ms;     /* default 250 (4 Hz) */
    bool exit_on_end;        /* leave when the workload ends / the replay reaches its end */
    /* Live only: poll returns true once the session has ended (and has filled the app's
     * end-of-run sections); stop asks the session to stop the workload. */
    bool (*live_poll)(void *ctx, tui_app *a);
    void (*live_stop)(void *ctx);
    void *ctx;
} tui_loop_opts;

adg_error *tui_loop_run(tui_app *a, tui_screen *s, tui_canvas *c, const tui_loop_opts *o);

#endif

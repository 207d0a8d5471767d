/* The terminal side of `amxdiag top` (ncurses). */
#ifndef TUI_SCREEN_H
#define TUI_SCREEN_H

#include <stdbool.h>
#include <stdio.h>

#include "common/adg_error.h"
#include "common/adg_term.h"
#include "tui/tui_internal.h"

typedef struct tui_screen {
    struct screen *scr;
    FILE *in, *out;
    bool color, utf8;
    unsigned long attr[TUI_NSTYLES];
} tui_screen;

/* Starts ncurses on the terminal at in_fd/out_fd (duplicated: the caller may point its
 * own stdout elsewhere).  own_quit: SIGINT/SIGTERM/SIGHUP set a flag
 * (tui_screen_quit_signal) instead of killing the process. */
adg_error *tui_screen_open(tui_screen *s, int in_fd, int out_fd, adg_color_mode color, bool force_ascii, bool own_quit);
/* Restores the terminal; safe to call twice. */
void tui_screen_close(tui_screen *s);
void tui_screen_size(tui_screen *s, int *w, int *h);
void tui_screen_draw(tui_screen *s, const tui_canvas *c);
/* A key (ASCII or KEY_*), or -1 after timeout_ms or a signal. */
int tui_screen_key(tui_screen *s, int timeout_ms);
int tui_screen_quit_signal(void);
void tui_screen_reset_quit(void);

#endif

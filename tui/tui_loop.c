/* The input loop: advances the replay or follows the live bus, redraws at the refresh
 * rate (and at once after a key or a resize), and handles the keys. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "tui/tui_loop.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/adg_util.h"

static void say(tui_app *a, const char *msg)
{
    snprintf(a->status, sizeof a->status, "%s", msg);
    a->status_until = adg_now_ns() + 5000000000ull;
}

static void snapshot(tui_app *a, tui_canvas *c)
{
    char *path = NULL;
    adg_error *e = tui_snapshot_write(a, c, a->snapshot_dir, &path);
    char msg[600];
    if (e) {
        snprintf(msg, sizeof msg, "snapshot failed: %s", adg_error_msg(e));
        adg_error_free(e);
    } else
        snprintf(msg, sizeof msg, "snapshot written to %s (and .json)", path);
    free(path);
    say(a, msg);
}

static void move_focus(tui_app *a, int d)
{
    a->focus = (a->focus + d + TUI_NPANELS) % TUI_NPANELS;
}

static void sort_col(tui_app *a, int d)
{
    int n = tui_panel_sort_columns(a->focus);
    if (!n) {
        say(a, "this panel has no table to sort: Tab to Hot functions or GPU");
        return;
    }
    a->sort[a->focus] = (a->sort[a->focus] + d + n) % n;
    a->scroll[a->focus] = 0;
}

/* Returns false when the key asks to quit. */
static bool key(tui_app *a, tui_canvas *c, int k, unsigned page)
{
    switch (k) {
    case 'q':
    case 'Q':
    case KEY_F(10):
        a->quit_code = 0;
        return false;
    case 3: /* Ctrl-C: the terminal is raw, so it is a key here, not a signal to the workload */
        a->quit_code = 130;
        return false;
    case 'p':
    case ' ':
        a->paused = !a->paused;
        break;
    case '\t':
    case KEY_RIGHT:
    case KEY_DOWN:
        move_focus(a, 1);
        break;
    case KEY_BTAB:
    case KEY_LEFT:
    case KEY_UP:
        move_focus(a, -1);
        break;
    case '<':
    case ',':
        sort_col(a, -1);
        break;
    case '>':
    case '.':
    case KEY_F(6):
        sort_col(a, 1);
        break;
    case 'r':
    case 'R':
        a->reverse[a->focus] = !a->reverse[a->focus];
        break;
    case 'j':
    case KEY_NPAGE:
        a->scroll[a->focus] += k == 'j' ? 1 : (int)page;
        break;
    case 'k':
    case KEY_PPAGE:
        a->scroll[a->focus] -= k == 'k' ? 1 : (int)page;
        if (a->scroll[a->focus] < 0)
            a->scroll[a->focus] = 0;
        break;
    case KEY_HOME:
        a->scroll[a->focus] = 0;
        break;
    case 's':
    case 'S':
        snapshot(a, c);
        break;
    case 'h':
    case '?':
    case KEY_F(1):
        a->help = !a->help;
        break;
    case 27: /* Esc */
        a->help = false;
        break;
    case '+':
    case '=':
    case '-':
        if (a->replay) {
            double s = tui_replay_speed(a->replay) * (k == '-' ? 0.5 : 2.0);
            if (s >= 1.0 / 16 && s <= 64)
                tui_replay_set_speed(a->replay, s);
        } else
            say(a, "the speed applies to replays (--replay)");
        break;
    case '[':
        if (a->hist_span_ns > 10000000000ull)
            a->hist_span_ns /= 2;
        break;
    case ']':
        if (a->hist_span_ns < 3600000000000ull)
            a->hist_span_ns *= 2;
        break;
    default:
        break;
    }
    return true;
}

adg_error *tui_loop_run(tui_app *a, tui_screen *s, tui_canvas *c, const tui_loop_opts *o)
{
    uint64_t refresh = (uint64_t)(o->refresh_ms ? o->refresh_ms : 250) * 1000000ull;
    uint64_t last = adg_now_ns(), next_frame = 0, stop_sent = 0;
    bool stopping = false, dirty = true;
    for (;;) {
        uint64_t now = adg_now_ns();
        if (a->replay) {
            if (!a->paused)
                a->t_ns = tui_replay_advance(a->replay, now - last);
            if (!a->finished && tui_replay_done(a->replay)) {
                a->finished = true;
                snprintf(a->finish_note, sizeof a->finish_note, "replay finished - q quits");
                dirty = true;
            }
        } else {
            if (!a->paused)
                a->t_ns = adg_bus_elapsed_ns(a->bus);
            if (!a->finished && o->live_poll && o->live_poll(o->ctx, a)) {
                a->finished = true;
                dirty = true;
            }
        }
        last = now;
        if (tui_screen_quit_signal() && !stopping) {
            if (a->replay || a->finished)
                break;
            stopping = true; /* the session saw the signal too and stops the workload */
        }
        if ((stopping || a->failed) && a->finished)
            break;
        if (stopping && o->live_stop && now > stop_sent + 500000000ull) {
            o->live_stop(o->ctx);
            stop_sent = now;
        }
        if (a->finished && o->exit_on_end && !stopping) {
            int w, h;
            tui_screen_size(s, &w, &h);
            tui_render(a, c);
            tui_screen_draw(s, c);
            break;
        }
        if (dirty || now >= next_frame) {
            int w, h;
            tui_screen_size(s, &w, &h);
            if (w != c->w || h != c->h) {
                adg_error *e = tui_canvas_init(c, w, h, c->utf8);
                if (e)
                    return e;
            }
            tui_render(a, c);
            tui_screen_draw(s, c);
            next_frame = now + refresh;
            dirty = false;
        }
        now = adg_now_ns();
        int wait = next_frame > now ? (int)((next_frame - now + 999999) / 1000000) : 0;
        int k = tui_screen_key(s, wait);
        if (k < 0)
            continue;
        dirty = true;
        if (k == KEY_RESIZE)
            continue;
        if (!key(a, c, k, 5)) {
            a->quit_key = true;
            if (a->replay || a->finished || !o->live_stop)
                break;
            stopping = true;
            say(a, "stopping the workload and writing the run record...");
        }
    }
    return NULL;
}

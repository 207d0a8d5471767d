/* ncurses: start and restore the terminal, styles with and without colour, and copying
 * the canvas to the screen without flicker (werase + wnoutrefresh + doupdate: ncurses
 * sends only the cells that changed). */
#define _XOPEN_SOURCE_EXTENDED 1
#include "tui/tui_screen.h"

#include <curses.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

static SCREEN *g_scr;            /* for the fatal-signal handler */
static volatile sig_atomic_t g_quit;

/* A crash must not leave the terminal in raw mode: restore it, then die as we would have. */
static void on_fatal(int sig)
{
    if (g_scr)
        endwin();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_quit(int sig)
{
    g_quit = sig;
}

int tui_screen_quit_signal(void) { return g_quit; }
void tui_screen_reset_quit(void) { g_quit = 0; }

static void install_handlers(bool own_quit)
{
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_fatal;
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old;
        /* Keep a sanitizer's handler: it reports, and ours would hide the report. */
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler != SIG_DFL)
            continue;
        sigaction(fatal[i], &sa, NULL);
    }
    if (own_quit) {
        memset(&sa, 0, sizeof sa);
        sigemptyset(&sa.sa_mask);
        sa.sa_handler = on_quit; /* no SA_RESTART: the key wait returns at once */
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
}

static void set_styles(tui_screen *s)
{
    /* Monochrome: attributes only; bars differ by glyph (tui_canvas.mono). */
    static const attr_t mono[TUI_NSTYLES] = {
        [TUI_S_NORMAL] = A_NORMAL, [TUI_S_DIM] = A_DIM,     [TUI_S_BOLD] = A_BOLD,      [TUI_S_TITLE] = A_BOLD,
        [TUI_S_FOCUS] = A_BOLD | A_REVERSE, [TUI_S_HEADER] = A_NORMAL, [TUI_S_GOOD] = A_NORMAL, [TUI_S_WARN] = A_BOLD,
        [TUI_S_BAD] = A_BOLD | A_UNDERLINE, [TUI_S_AMX] = A_BOLD, [TUI_S_AVX512] = A_NORMAL, [TUI_S_OTHER] = A_NORMAL,
        [TUI_S_BAR] = A_NORMAL, [TUI_S_SPARK] = A_NORMAL,  [TUI_S_NA] = A_DIM,     [TUI_S_KEY] = A_REVERSE,
        [TUI_S_SELECT] = A_REVERSE,
    };
    for (int i = 0; i < TUI_NSTYLES; i++)
        s->attr[i] = mono[i];
    if (!s->color)
        return;
    start_color();
    use_default_colors();
    static const struct {
        int style;
        short fg, bg;
        attr_t extra;
    } col[] = {
        {TUI_S_TITLE, COLOR_CYAN, -1, A_BOLD},  {TUI_S_FOCUS, COLOR_YELLOW, -1, A_BOLD},
        {TUI_S_HEADER, COLOR_CYAN, -1, 0},      {TUI_S_GOOD, COLOR_GREEN, -1, 0},
        {TUI_S_WARN, COLOR_YELLOW, -1, A_BOLD}, {TUI_S_BAD, COLOR_RED, -1, A_BOLD},
        {TUI_S_AMX, COLOR_MAGENTA, -1, A_BOLD}, {TUI_S_AVX512, COLOR_BLUE, -1, A_BOLD},
        {TUI_S_OTHER, COLOR_GREEN, -1, 0},      {TUI_S_BAR, COLOR_GREEN, -1, 0},
        {TUI_S_SPARK, COLOR_CYAN, -1, 0},       {TUI_S_NA, COLOR_YELLOW, -1, A_DIM},
        {TUI_S_KEY, COLOR_BLACK, COLOR_CYAN, 0}, {TUI_S_SELECT, COLOR_BLACK, COLOR_CYAN, 0},
    };
    for (size_t i = 0; i < sizeof col / sizeof col[0]; i++) {
        short pair = (short)(i + 1);
        if (pair >= COLOR_PAIRS)
            break;
        init_pair(pair, col[i].fg, col[i].bg);
        s->attr[col[i].style] = COLOR_PAIR(pair) | col[i].extra;
    }
}

adg_error *tui_screen_open(tui_screen *s, int in_fd, int out_fd, adg_color_mode color, bool force_ascii, bool own_quit)
{
    memset(s, 0, sizeof *s);
    setlocale(LC_ALL, "");
    const char *cs = nl_langinfo(CODESET);
    s->utf8 = !force_ascii && cs && !strcmp(cs, "UTF-8");
    if (!isatty(in_fd) || !isatty(out_fd))
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "amxdiag top needs a terminal"),
                              "run it in a terminal, or use --json / --dump for a non-interactive view");
    const char *term = getenv("TERM");
    if (!term || !*term || !strcmp(term, "dumb"))
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "TERM is %s: the terminal cannot be driven",
                                            term && *term ? term : "unset"),
                              "set TERM (e.g. TERM=xterm-256color), or use --json / --dump");
    s->in = fdopen(dup(in_fd), "r");
    s->out = fdopen(dup(out_fd), "w");
    if (!s->in || !s->out) {
        tui_screen_close(s);
        return adg_error_errno(ADG_E_IO, 0, "cannot open the terminal");
    }
    s->scr = newterm(NULL, s->out, s->in);
    if (!s->scr) {
        tui_screen_close(s);
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "ncurses cannot drive terminal type '%s'", term),
                              "check TERM and the terminfo database (ncurses-term), or use --json / --dump");
    }
    set_term(s->scr);
    g_scr = s->scr;
    install_handlers(own_quit);
    /* Raw: Ctrl-C and Ctrl-Z reach us as keys instead of signalling the whole foreground
     * process group, the workload included; the session stops the workload itself. */
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    const char *nc = getenv("NO_COLOR");
    s->color = color != ADG_COLOR_NEVER && has_colors() && (color == ADG_COLOR_ALWAYS || !(nc && *nc));
    set_styles(s);
    return NULL;
}

void tui_screen_close(tui_screen *s)
{
    if (s->scr) {
        endwin();
        delscreen(s->scr);
        s->scr = NULL;
        g_scr = NULL;
    }
    if (s->in)
        fclose(s->in);
    if (s->out)
        fclose(s->out);
    s->in = s->out = NULL;
}

void tui_screen_size(tui_screen *s, int *w, int *h)
{
    (void)s;
    getmaxyx(stdscr, *h, *w);
}

void tui_screen_draw(tui_screen *s, const tui_canvas *c)
{
    werase(stdscr);
    int w, h;
    getmaxyx(stdscr, h, w);
    wchar_t run[1024];
    for (int y = 0; y < c->h && y < h; y++) {
        int x = 0;
        while (x < c->w && x < w) {
            uint8_t st = c->cells[y * c->w + x].style;
            int n = 0, x0 = x;
            while (x < c->w && x < w && c->cells[y * c->w + x].style == st && n < (int)(sizeof run / sizeof run[0]) - 1)
                run[n++] = (wchar_t)c->cells[y * c->w + x++].ch;
            run[n] = 0;
            wattrset(stdscr, (int)s->attr[st < TUI_NSTYLES ? st : 0]);
            /* The bottom-right cell makes addnwstr return ERR (the cursor cannot advance);
             * the cell is drawn all the same. */
            mvwaddnwstr(stdscr, y, x0, run, n);
        }
    }
    wattrset(stdscr, A_NORMAL);
    wnoutrefresh(stdscr);
    doupdate();
}

int tui_screen_key(tui_screen *s, int timeout_ms)
{
    (void)s;
    wtimeout(stdscr, timeout_ms);
    wint_t ch;
    int r = wget_wch(stdscr, &ch);
    if (r == ERR)
        return -1;
    if (r == KEY_CODE_YES)
        return (int)ch; /* KEY_* */
    return ch < 0x80 ? (int)ch : -1;
}

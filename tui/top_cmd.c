/* amxdiag top: options -> live session or replay -> the screen (or one view on stdout). */
#include <locale.h>
#include <langinfo.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_ceilings.h"
#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_term.h"
#include "common/adg_util.h"
#include "profiler/prof_options.h"
#include "profiler/profiler.h"
#include "profiler/sanitizer_run.h"
#include "tui/tui.h"
#include "tui/tui_internal.h"
#include "tui/tui_live.h"
#include "tui/tui_loop.h"
#include "tui/tui_screen.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: amxdiag top [profile options] [--out RUN.json] [-- COMMAND ARGS...]\n"
            "       amxdiag top [profile options] --pid PID [--duration SEC]\n"
            "       amxdiag top [profile options] [built-in path options]   (amxdiag's own engine)\n"
            "       amxdiag top --replay RUN.json [--speed N]\n"
            "\n"
            "A live screen of what `amxdiag profile` measures: the share of CPU time in AMX,\n"
            "AVX-512 and other code (and its source), AMX busy, per-CPU load grouped by NUMA node,\n"
            "DRAM bandwidth against the probe's measured peak, resident memory per NUMA node, GPU\n"
            "utilisation/memory/power/temperature (NVML, for any workload) and kernels/transfers/\n"
            "errors (CUPTI trace of a command), tokens/s and phase, hot functions with their ISA\n"
            "class, and sparklines of the main metrics. The same collectors and run record as\n"
            "`amxdiag profile` (`amxdiag profile --tui` is this command). Metrics that cannot be\n"
            "measured here show the reason instead of a value. After a CUDA fault whose kernel is\n"
            "not certain, the command runs once more with CUDA_LAUNCH_BLOCKING=1 to confirm it, as\n"
            "in profile (--no-confirm skips it); the screen says so and shows the finding.\n"
            "\n"
            "replay:\n"
            "      --replay FILE     play a run record (amxdiag.run/1) back instead of profiling\n"
            "      --speed N         replay speed factor (default 1; 0.0625..64; + and - change it)\n"
            "\n"
            "profile options (as amxdiag profile):\n");
    prof_options_usage(f);
    fputs("      --log FILE        where COMMAND's output goes while the screen is up\n"
          "                        (default: the record's path + .log)\n"
          "\n"
          "built-in path (no COMMAND, no --pid; as amxdiag profile / amxdiag run):\n",
          f);
    prof_options_usage_builtin(f);
    fprintf(f,
            "\n"
            "screen:\n"
            "  -d, --delay MS        refresh interval (default 250 = 4 Hz; 100..10000)\n"
            "      --snapshot-dir D  where 's' writes its snapshots (default .)\n"
            "      --exit-on-end     quit when the workload ends or the replay reaches its end\n"
            "      --color WHEN      auto, always, never (default auto; NO_COLOR is honoured)\n"
            "      --ascii           ASCII bars and frames even in a UTF-8 locale\n"
            "      --json            no screen: run (or replay) to the end and print the final view\n"
            "                        as JSON (schema amxdiag.top-snapshot/1)\n"
            "      --dump            no screen: print the final view as text\n"
            "      --size WxH        screen size for --json/--dump (default 100x30)\n"
            "  -v, --verbose         say which collectors cannot run and why (in the log)\n"
            "  -h, --help            this help\n"
            "\n"
            "keys: q quit (live: stops the workload, writes the record), p pause, Tab/arrows\n"
            "panels, < > sort column, r reverse, PgUp/PgDn scroll, s snapshot, h help, + - speed,\n"
            "[ ] history window.\n"
            "\n"
            "exit status: replay: 0, or 2 on a bad record, a bad option or no usable terminal.\n"
            "live: as amxdiag profile (COMMAND's status, 128+N on its death by signal N, 126/127\n"
            "if it cannot run, 2 on errors), except that quitting with q exits 0.\n"
            "See docs/top.md.\n");
}

static bool parse_size(const char *arg, int *w, int *h)
{
    char *x = strchr(arg, 'x');
    if (!x)
        return false;
    char wb[16];
    size_t n = (size_t)(x - arg);
    if (!n || n >= sizeof wb)
        return false;
    memcpy(wb, arg, n);
    wb[n] = 0;
    uint64_t a, b;
    if (!adg_parse_u64(wb, &a) || !adg_parse_u64(x + 1, &b) || a < 20 || a > 1000 || b < 5 || b > 500)
        return false;
    *w = (int)a;
    *h = (int)b;
    return true;
}

typedef struct top_opts {
    prof_options prof;
    const char *replay;
    double speed;
    unsigned delay_ms;
    const char *snapshot_dir;
    const char *log;
    bool exit_on_end, ascii, json, dump;
    int dump_w, dump_h;
    adg_color_mode color;
    bool recorded, interrupted; /* the live run wrote its record; with status interrupted */
    bool confirm;               /* the blocking re-run of an uncertain CUDA fault (not --no-confirm/--sanitize) */
} top_opts;

static void load_ceilings(tui_app *a, const char *cpu, int ncpus)
{
    bool found = false;
    adg_error *e = cpu && ncpus > 0 ? adg_ceilings_load(cpu, ncpus, &a->ceil, &found)
                                    : adg_ceilings_load_current(&a->ceil, &found);
    if (e) {
        adg_info("measured ceilings not used: %s", adg_error_msg(e));
        adg_error_free(e);
        found = false;
    }
    a->have_ceil = found;
}

static adg_error *setup_replay(tui_app *a, const top_opts *t)
{
    adg_error *e = tui_replay_open(t->replay, t->speed, a->bus, &a->replay);
    if (e)
        return e;
    json_t *rec = tui_replay_record(a->replay);
    a->machine = json_incref(json_object_get(rec, "machine"));
    a->workload = json_incref(json_object_get(rec, "workload"));
    a->hot = json_incref(json_object_get(rec, "hot_functions"));
    a->config = json_incref(json_object_get(rec, "config"));
    a->gpus = json_incref(json_object_get(json_object_get(rec, "nvml"), "devices"));
    json_t *online = json_object_get(a->machine, "online_cpus");
    load_ceilings(a, json_string_value(json_object_get(a->machine, "cpu_model")),
                  json_is_integer(online) ? (int)json_integer_value(online) : 0);
    snprintf(a->source, sizeof a->source, "replay %s", t->replay);
    return NULL;
}

static void live_source(tui_app *a, const prof_options *o)
{
    if (o->pid) {
        snprintf(a->source, sizeof a->source, "live: pid %d", (int)o->pid);
        return;
    }
    adg_strbuf sb;
    adg_sb_init(&sb);
    adg_sb_puts(&sb, "live: ");
    for (char **p = o->argv; p && *p; p++) {
        adg_sb_puts(&sb, *p);
        if (p[1])
            adg_sb_puts(&sb, " ");
    }
    if (!o->argv)
        adg_sb_puts(&sb, "built-in path");
    snprintf(a->source, sizeof a->source, "%s", sb.buf ? sb.buf : "live");
    adg_sb_free(&sb);
}

/* --json / --dump: one view of the whole run, no terminal needed. */
static int print_view(tui_app *a, const top_opts *t)
{
    setlocale(LC_ALL, "");
    const char *cs = nl_langinfo(CODESET);
    bool utf8 = !t->ascii && cs && !strcmp(cs, "UTF-8");
    tui_canvas c = {0};
    adg_error *e = tui_canvas_init(&c, t->dump_w, t->dump_h, utf8);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    c.mono = true;
    tui_render(a, &c);
    if (t->json) {
        json_t *snap = tui_snapshot_json(a, &c);
        e = snap ? adg_json_print(stdout, snap) : adg_error_new(ADG_E_NOMEM, "out of memory");
        json_decref(snap);
    } else {
        char *text = tui_canvas_text(&c);
        if (text)
            fputs(text, stdout);
        free(text);
    }
    tui_canvas_free(&c);
    fflush(stdout);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    return ADG_EXIT_OK;
}

static int run_replay(tui_app *a, const top_opts *t)
{
    adg_error *e = setup_replay(a, t);
    if (e) {
        adg_error_print(e, stderr);
        int code = adg_exit_for_error(e);
        adg_error_free(e);
        return code;
    }
    if (t->json || t->dump) {
        a->t_ns = tui_replay_advance(a->replay, UINT64_MAX / 2);
        tui_replay_advance(a->replay, 0);
        a->finished = true;
        return print_view(a, t);
    }
    tui_screen s;
    if ((e = tui_screen_open(&s, 0, 1, t->color, t->ascii, true))) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    tui_canvas c = {0};
    int w, h;
    tui_screen_size(&s, &w, &h);
    e = tui_canvas_init(&c, w, h, s.utf8);
    c.mono = !s.color;
    tui_loop_opts lo = {.refresh_ms = t->delay_ms, .exit_on_end = t->exit_on_end};
    if (!e)
        e = tui_loop_run(a, &s, &c, &lo);
    tui_screen_close(&s);
    tui_canvas_free(&c);
    int code = ADG_EXIT_OK;
    if (e) {
        adg_error_print(e, stderr);
        code = adg_exit_for_error(e);
        adg_error_free(e);
    } else if (tui_screen_quit_signal())
        code = 128 + tui_screen_quit_signal(); /* like any command stopped by a signal */
    else if (a->quit_key)
        code = a->quit_code;
    return code;
}

static int run_live_batch(tui_app *a, top_opts *t)
{
    prof_outcome out;
    t->prof.bus = a->bus;
    /* Our stdout carries the view: keep the command's stdout off it. */
    t->prof.output_to_stderr = true;
    t->prof.tee = true;
    adg_error *e = prof_session_run(&t->prof, &out);
    if (e) {
        adg_error_print(e, stderr);
        int code = out.exit_code ? out.exit_code : adg_exit_for_error(e);
        adg_error_free(e);
        return code;
    }
    if (out.workload_error) {
        /* The built-in path failed; the record (status workload-failed) was written. */
        adg_error_print(out.workload_error, stderr);
        adg_error_free(out.workload_error);
    }
    t->recorded = true;
    const char *st = json_string_value(json_object_get(out.record, "status"));
    t->interrupted = st && !strcmp(st, "interrupted");
    tui_live l = {.out = out, .o = t->prof, .confirm = t->confirm};
    if (l.confirm && prof_confirm_wanted(&l.o, out.record))
        fprintf(stderr, "amxdiag top: the kernel behind the CUDA error is not certain: running the command again "
                        "with CUDA_LAUNCH_BLOCKING=1 to confirm it (--no-confirm skips this)\n");
    bool confirmed = tui_live_confirm(&l);
    a->t_ns = adg_bus_elapsed_ns(a->bus);
    a->finished = true;
    tui_live_finish_app(&l, a);
    tui_live_confirm_notes(&l, a);
    if (confirmed && a->confirm_summary[0])
        fprintf(stderr, "amxdiag top: %s\n", a->confirm_summary);
    int code = print_view(a, t);
    tui_live_adopt_confirmed(&l);
    json_decref(l.out.record);
    return code ? code : out.exit_code;
}

static int run_live(tui_app *a, top_opts *t)
{
    a->live = true;
    a->machine = prof_machine_section();
    load_ceilings(a, NULL, 0);
    live_source(a, &t->prof);
    if (t->json || t->dump)
        return run_live_batch(a, t);

    tui_live l;
    memset(&l, 0, sizeof l);
    l.tty_in = l.tty_out = l.saved_err = -1;
    l.o = t->prof;
    l.o.bus = a->bus;
    l.confirm = t->confirm;
    char logbuf[4096];
    snprintf(logbuf, sizeof logbuf, "%s.log", t->prof.out);
    if (!isatty(0) || !isatty(1)) {
        fprintf(stderr, "amxdiag: error: amxdiag top needs a terminal\n"
                        "  hint: run it in a terminal, or use --json / --dump for a non-interactive view\n");
        return ADG_EXIT_USAGE;
    }
    adg_error *e = tui_live_redirect(&l, t->log ? t->log : logbuf);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    tui_screen s;
    if ((e = tui_screen_open(&s, l.tty_in, l.tty_out, t->color, t->ascii, true))) {
        tui_live_restore(&l);
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    tui_canvas c = {0};
    int w, h;
    tui_screen_size(&s, &w, &h);
    e = tui_canvas_init(&c, w, h, s.utf8);
    c.mono = !s.color;
    bool quit_by_key = false;
    if (!e) {
        tui_loop_opts lo = {.refresh_ms = t->delay_ms, .exit_on_end = t->exit_on_end, .live_poll = tui_live_poll,
                            .live_stop = tui_live_stop, .ctx = &l};
        e = tui_live_run(&l, a, &s, &c, &lo);
        quit_by_key = a->quit_key;
    }
    tui_screen_close(&s);
    tui_canvas_free(&c);
    tui_live_restore(&l);
    int code = ADG_EXIT_OK;
    if (e) {
        adg_error_print(e, stderr);
        code = adg_exit_for_error(e);
        adg_error_free(e);
    } else if (l.err) {
        adg_error_print(l.err, stderr);
        code = l.out.exit_code ? l.out.exit_code : adg_exit_for_error(l.err);
        adg_error_free(l.err);
    } else {
        if (l.out.workload_error) {
            adg_error_print(l.out.workload_error, stderr);
            adg_error_free(l.out.workload_error);
        }
        const char *st = json_string_value(json_object_get(l.out.record, "status"));
        t->recorded = true;
        t->interrupted = st && !strcmp(st, "interrupted");
        fprintf(stderr, "amxdiag top: run record written to %s (status %s); the workload's output is in %s\n",
                t->prof.out, st ? st : "?", l.log_path);
        code = quit_by_key ? a->quit_code : l.out.exit_code;
    }
    json_decref(l.out.record);
    return code;
}

enum { OPT_JSON = 256, OPT_COLOR, OPT_REPLAY, OPT_SPEED, OPT_SNAPDIR, OPT_EXIT, OPT_ASCII, OPT_DUMP, OPT_SIZE,
       OPT_LOG };

/* top's own options; the session's (shared with profile and export) are
 * prof_options_parse's. */
static int top_option(void *ctx, int c, const char *arg)
{
    top_opts *t = ctx;
    uint64_t v;
    double d;
    switch (c) {
    case OPT_LOG:
        t->log = arg;
        break;
    case OPT_JSON:
        t->json = true;
        break;
    case OPT_DUMP:
        t->dump = true;
        break;
    case OPT_SIZE:
        if (!parse_size(arg, &t->dump_w, &t->dump_h)) {
            fprintf(stderr, "amxdiag: error: --size takes COLUMNSxROWS (20..1000 x 5..500), not '%s'\n", arg);
            return adg_cmd_usage_error("top");
        }
        break;
    case OPT_COLOR:
        if (!adg_term_parse_color(arg, &t->color)) {
            fprintf(stderr, "amxdiag: error: --color takes auto, always or never, not '%s'\n", arg);
            return adg_cmd_usage_error("top");
        }
        break;
    case OPT_REPLAY:
        t->replay = arg;
        break;
    case OPT_SPEED:
        if (!adg_parse_double(arg, &d) || !(d >= 1.0 / 16) || !(d <= 64)) {
            fprintf(stderr, "amxdiag: error: --speed takes a factor from 0.0625 to 64, not '%s'\n", arg);
            return adg_cmd_usage_error("top");
        }
        t->speed = d;
        break;
    case 'd':
        if (!adg_cmd_parse_uint("--delay", arg, 100, 10000, &v))
            return adg_cmd_usage_error("top");
        t->delay_ms = (unsigned)v;
        break;
    case OPT_SNAPDIR:
        t->snapshot_dir = arg;
        break;
    case OPT_EXIT:
        t->exit_on_end = true;
        break;
    case OPT_ASCII:
        t->ascii = true;
        break;
    case 'v':
        adg_log_set_level(ADG_LOG_INFO);
        break;
    case 'h':
        usage(stdout);
        return ADG_EXIT_OK;
    default:
        return adg_cmd_usage_error("top");
    }
    return PROF_CLI_CONTINUE;
}

/* --sanitize after a live run: COMMAND again under compute-sanitizer, merged into the
 * record, as amxdiag profile does (the screen is closed by then). */
static int sanitize_after(const top_opts *t, int code)
{
    int san_status;
    fprintf(stderr, "amxdiag top: running the command again under compute-sanitizer (--sanitize)\n");
    adg_error *e = prof_sanitize_run(t->prof.argv, t->prof.out, &san_status);
    if (e) {
        adg_error_print(e, stderr);
        adg_error_free(e);
        return ADG_EXIT_USAGE;
    }
    return code;
}

int tui_top_cmd_main(int argc, char **argv)
{
    static const struct option own[] = {
        {"json", no_argument, NULL, OPT_JSON},          {"color", required_argument, NULL, OPT_COLOR},
        {"replay", required_argument, NULL, OPT_REPLAY}, {"speed", required_argument, NULL, OPT_SPEED},
        {"delay", required_argument, NULL, 'd'},        {"snapshot-dir", required_argument, NULL, OPT_SNAPDIR},
        {"exit-on-end", no_argument, NULL, OPT_EXIT},   {"ascii", no_argument, NULL, OPT_ASCII},
        {"dump", no_argument, NULL, OPT_DUMP},          {"size", required_argument, NULL, OPT_SIZE},
        {"log", required_argument, NULL, OPT_LOG},      {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
    };
    top_opts t = {.speed = 1.0,
                  .delay_ms = 250,
                  .snapshot_dir = ".",
                  .dump_w = 100,
                  .dump_h = 30,
                  .color = ADG_COLOR_AUTO};
    prof_cli cli;
    prof_cli_init(&cli);
    prof_cli_extra x = {.shortopts = "d:vh", .longopts = own, .handle = top_option, .ctx = &t};
    int rc = prof_options_parse(argc, argv, "top", &x, &cli);
    if (rc != PROF_CLI_CONTINUE)
        return rc;
    t.prof = cli.o;
    /* --sanitize settles the fault's kernel itself: the blocking re-run would repeat it. */
    t.confirm = !cli.no_confirm && !cli.sanitize;
    if (t.json && t.dump) {
        fprintf(stderr, "amxdiag: error: give either --json or --dump, not both\n");
        return adg_cmd_usage_error("top");
    }
    if (t.replay && (cli.session_opts || cli.engine_opts || cli.sanitize || t.log || t.prof.argv)) {
        fprintf(stderr, "amxdiag: error: --replay plays a record; it takes no command and no profile options\n");
        return adg_cmd_usage_error("top");
    }
    if (access(t.snapshot_dir, W_OK) != 0 && !t.json && !t.dump) {
        fprintf(stderr, "amxdiag: error: --snapshot-dir %s is not a writable directory\n", t.snapshot_dir);
        return adg_cmd_usage_error("top");
    }

    tui_app a;
    tui_app_init(&a);
    a.snapshot_dir = t.snapshot_dir;
    a.bus = adg_bus_new();
    if (!a.bus) {
        fprintf(stderr, "amxdiag: error: out of memory\n");
        return ADG_EXIT_USAGE;
    }
    int code = t.replay ? run_replay(&a, &t) : run_live(&a, &t);
    if (cli.sanitize && t.recorded && !t.interrupted)
        code = sanitize_after(&t, code);
    else if (cli.sanitize && t.recorded)
        fprintf(stderr, "amxdiag top: --sanitize skipped: the run was stopped before the command ended\n");
    tui_replay_free(a.replay);
    a.replay = NULL;
    tui_app_free(&a);
    adg_bus_free(a.bus);
    return code;
}

/* amxdiag top: options -> live session or replay -> the screen (or one view on stdout). */
#include <getopt.h>
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
#include "kernels/kern_cpu.h"
#include "profiler/prof_collector.h"
#include "profiler/profiler.h"
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
            "AVX-512 and other code (and its source), AMX busy, per-CPU load, DRAM bandwidth against\n"
            "the probe's measured peak, resident memory per NUMA node, GPU busy/memory/kernels/\n"
            "transfers/errors, tokens/s and phase, hot functions with their ISA class, and\n"
            "sparklines of the main metrics. The same collectors and run record as `amxdiag profile`\n"
            "(`amxdiag profile --tui` is this command). Metrics that cannot be measured here show\n"
            "the reason instead of a value.\n"
            "\n"
            "replay:\n"
            "      --replay FILE     play a run record (amxdiag.run/1) back instead of profiling\n"
            "      --speed N         replay speed factor (default 1; 0.0625..64; + and - change it)\n"
            "\n"
            "profile options (as amxdiag profile):\n"
            "  -o, --out FILE        run record written when the run ends or q is pressed\n"
            "                        (default amxdiag-run.json)\n"
            "  -p, --pid PID         attach to a running process instead of COMMAND\n"
            "      --duration SEC    with --pid: stop after SEC seconds\n"
            "  -i, --interval MS     sampling interval (default 100)\n"
            "  -F, --freq HZ         cpu-clock sampling frequency (default 999)\n"
            "  -e, --events SETS     amx, simd, core, mem, sampling, numa, gpu, cpu, pmu, all\n"
            "                        (default all)\n"
            "      --gpu-metrics     per-kernel GPU counters where the driver permits\n"
            "      --top N           hot functions kept (default 30)\n"
            "      --no-tee          do not parse COMMAND's output for tokens/s\n"
            "      --log FILE        where COMMAND's output goes while the screen is up\n"
            "                        (default: the record's path + .log)\n"
            "\n"
            "built-in path (no COMMAND, no --pid; as amxdiag profile / amxdiag run):\n"
            "  -m, --model FILE      GGUF model (default: the built-in default model)\n"
            "      --n-prompt N      prompt tokens of the pp test (default 512; 0 skips it)\n"
            "  -n, --n-gen N         generated tokens of the tg test (default 128; 0 skips it)\n"
            "  -r, --repetitions N   repetitions of each test (default 3)\n"
            "  -t, --threads N       kernel threads (default: every allowed CPU)\n"
            "      --cpu-kernels K   auto, amx, avx512, ref, amx-emu\n"
            "      --numa POLICY     local, interleave, node=N;  --pin: pin kernel threads\n"
            "      --ngl N           layers on the GPU;  --ctx N: KV positions;  --seed S\n"
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

static bool parse_sets(const char *arg, unsigned *sets)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {{"amx", PROF_SET_AMX},   {"simd", PROF_SET_SIMD},         {"core", PROF_SET_CORE},
                 {"mem", PROF_SET_MEM},   {"sampling", PROF_SET_SAMPLING}, {"numa", PROF_SET_NUMA},
                 {"all", PROF_SET_ALL},   {"pmu", PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE},
                 {"gpu", PROF_SET_GPU},   {"cpu", PROF_SET_CPU}};
    char *copy = strdup(arg);
    if (!copy)
        return false;
    *sets = 0;
    bool ok = true;
    for (char *save, *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        bool found = false;
        for (size_t i = 0; i < ADG_ARRAY_LEN(names); i++)
            if (!strcmp(tok, names[i].name)) {
                *sets |= names[i].bits;
                found = true;
            }
        if (!found) {
            fprintf(stderr, "amxdiag: error: unknown event set '%s'\n", tok);
            ok = false;
        }
    }
    free(copy);
    return ok && *sets;
}

static bool parse_uint(const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!adg_parse_u64(arg, out) || *out < lo || *out > hi) {
        fprintf(stderr, "amxdiag: error: %s takes a whole number from %llu to %llu, not '%s'\n", opt,
                (unsigned long long)lo, (unsigned long long)hi, arg);
        return false;
    }
    return true;
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
    tui_live l = {.out = out, .o = t->prof};
    a->t_ns = adg_bus_elapsed_ns(a->bus);
    a->finished = true;
    tui_live_finish_app(&l, a);
    int code = print_view(a, t);
    json_decref(out.record);
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
        fprintf(stderr, "amxdiag top: run record written to %s (status %s); the workload's output is in %s\n",
                t->prof.out, st ? st : "?", l.log_path);
        code = quit_by_key ? a->quit_code : l.out.exit_code;
    }
    json_decref(l.out.record);
    return code;
}

int tui_top_cmd_main(int argc, char **argv)
{
    enum { OPT_TOP = 256, OPT_NOTEE, OPT_JSON, OPT_COLOR, OPT_DURATION, OPT_REPLAY, OPT_SPEED, OPT_SNAPDIR,
           OPT_EXIT, OPT_ASCII, OPT_DUMP, OPT_SIZE, OPT_LOG, OPT_GPU_METRICS, OPT_NPROMPT, OPT_IMPL, OPT_NUMA,
           OPT_PIN, OPT_SEED, OPT_NGL, OPT_CTX };
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},          {"pid", required_argument, NULL, 'p'},
        {"interval", required_argument, NULL, 'i'},     {"freq", required_argument, NULL, 'F'},
        {"events", required_argument, NULL, 'e'},       {"top", required_argument, NULL, OPT_TOP},
        {"no-tee", no_argument, NULL, OPT_NOTEE},       {"json", no_argument, NULL, OPT_JSON},
        {"color", required_argument, NULL, OPT_COLOR},  {"duration", required_argument, NULL, OPT_DURATION},
        {"replay", required_argument, NULL, OPT_REPLAY}, {"speed", required_argument, NULL, OPT_SPEED},
        {"delay", required_argument, NULL, 'd'},        {"snapshot-dir", required_argument, NULL, OPT_SNAPDIR},
        {"exit-on-end", no_argument, NULL, OPT_EXIT},   {"ascii", no_argument, NULL, OPT_ASCII},
        {"dump", no_argument, NULL, OPT_DUMP},          {"size", required_argument, NULL, OPT_SIZE},
        {"log", required_argument, NULL, OPT_LOG},      {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},               {"gpu-metrics", no_argument, NULL, OPT_GPU_METRICS},
        {"model", required_argument, NULL, 'm'},        {"n-prompt", required_argument, NULL, OPT_NPROMPT},
        {"n-gen", required_argument, NULL, 'n'},        {"repetitions", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'},      {"cpu-kernels", required_argument, NULL, OPT_IMPL},
        {"numa", required_argument, NULL, OPT_NUMA},    {"pin", no_argument, NULL, OPT_PIN},
        {"seed", required_argument, NULL, OPT_SEED},    {"ngl", required_argument, NULL, OPT_NGL},
        {"ctx", required_argument, NULL, OPT_CTX},      {NULL, 0, NULL, 0},
    };
    top_opts t = {.prof = {.interval_ms = 100, .freq_hz = 999, .sets = PROF_SET_ALL, .top_n = 30, .tee = true,
                           .out = "amxdiag-run.json"},
                  .speed = 1.0,
                  .delay_ms = 250,
                  .snapshot_dir = ".",
                  .dump_w = 100,
                  .dump_h = 30,
                  .color = ADG_COLOR_AUTO};
    bool live_opts = false, engine_opt = false;
    uint64_t n_ctx = 0;
    t.prof.engine.engine.impl = KERN_IMPL_AUTO;
    t.prof.engine.bench = (kern_bench_opts){.n_prompt = 512, .n_gen = 128, .reps = 3, .seed = 1};
    uint64_t v;
    double d;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+o:p:i:F:e:d:vhm:n:r:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            t.prof.out = optarg;
            live_opts = true;
            break;
        case 'p':
            if (!parse_uint("--pid", optarg, 1, 0x7fffffff, &v))
                return adg_cmd_usage_error("top");
            t.prof.pid = (pid_t)v;
            live_opts = true;
            break;
        case 'i':
            if (!parse_uint("--interval", optarg, 10, 60000, &v))
                return adg_cmd_usage_error("top");
            t.prof.interval_ms = (unsigned)v;
            live_opts = true;
            break;
        case 'F':
            if (!parse_uint("--freq", optarg, 10, 20000, &v))
                return adg_cmd_usage_error("top");
            t.prof.freq_hz = (unsigned)v;
            live_opts = true;
            break;
        case 'e':
            if (!parse_sets(optarg, &t.prof.sets)) {
                fprintf(stderr, "  hint: sets are amx, simd, core, mem, sampling, numa, gpu, cpu, pmu, all\n");
                return ADG_EXIT_USAGE;
            }
            t.prof.sets_explicit = true;
            live_opts = true;
            break;
        case OPT_TOP:
            if (!parse_uint("--top", optarg, 1, 100000, &v))
                return adg_cmd_usage_error("top");
            t.prof.top_n = (unsigned)v;
            live_opts = true;
            break;
        case OPT_DURATION:
            if (!adg_parse_double(optarg, &d) || !(d > 0)) {
                fprintf(stderr, "amxdiag: error: --duration takes a positive number of seconds, not '%s'\n", optarg);
                return adg_cmd_usage_error("top");
            }
            t.prof.duration_s = d;
            live_opts = true;
            break;
        case OPT_NOTEE:
            t.prof.tee = false;
            live_opts = true;
            break;
        case OPT_LOG:
            t.log = optarg;
            live_opts = true;
            break;
        case OPT_JSON:
            t.json = true;
            break;
        case OPT_DUMP:
            t.dump = true;
            break;
        case OPT_SIZE:
            if (!parse_size(optarg, &t.dump_w, &t.dump_h)) {
                fprintf(stderr, "amxdiag: error: --size takes COLUMNSxROWS (20..1000 x 5..500), not '%s'\n", optarg);
                return adg_cmd_usage_error("top");
            }
            break;
        case OPT_COLOR:
            if (!adg_term_parse_color(optarg, &t.color)) {
                fprintf(stderr, "amxdiag: error: --color takes auto, always or never, not '%s'\n", optarg);
                return adg_cmd_usage_error("top");
            }
            break;
        case OPT_REPLAY:
            t.replay = optarg;
            break;
        case OPT_SPEED:
            if (!adg_parse_double(optarg, &d) || !(d >= 1.0 / 16) || !(d <= 64)) {
                fprintf(stderr, "amxdiag: error: --speed takes a factor from 0.0625 to 64, not '%s'\n", optarg);
                return adg_cmd_usage_error("top");
            }
            t.speed = d;
            break;
        case 'd':
            if (!parse_uint("--delay", optarg, 100, 10000, &v))
                return adg_cmd_usage_error("top");
            t.delay_ms = (unsigned)v;
            break;
        case OPT_SNAPDIR:
            t.snapshot_dir = optarg;
            break;
        case OPT_EXIT:
            t.exit_on_end = true;
            break;
        case OPT_ASCII:
            t.ascii = true;
            break;
        case 'v':
            adg_log_set_level(ADG_LOG_INFO);
            break;
        case 'h':
            usage(stdout);
            return ADG_EXIT_OK;
        case OPT_GPU_METRICS:
            t.prof.gpu_metrics = true;
            live_opts = true;
            break;
        /* The built-in path's options, as amxdiag profile takes them. */
        case 'm':
            t.prof.engine.engine.model_path = optarg;
            engine_opt = true;
            break;
        case OPT_NPROMPT:
        case 'n':
        case 'r':
        case 't':
        case OPT_NGL:
        case OPT_CTX:
            if (!parse_uint(c == OPT_NPROMPT ? "--n-prompt" : c == 'n' ? "--n-gen" : c == 'r' ? "--repetitions"
                            : c == 't' ? "--threads" : c == OPT_NGL ? "--ngl" : "--ctx",
                            optarg, (c == 'r' || c == 't') ? 1 : 0, c == 't' ? 1024 : c == 'r' ? 1000 : 1u << 20, &v))
                return adg_cmd_usage_error("top");
            if (c == OPT_NPROMPT)
                t.prof.engine.bench.n_prompt = (uint32_t)v;
            else if (c == 'n')
                t.prof.engine.bench.n_gen = (uint32_t)v;
            else if (c == 'r')
                t.prof.engine.bench.reps = (uint32_t)v;
            else if (c == 't')
                t.prof.engine.engine.threads = (int)v;
            else if (c == OPT_NGL)
                t.prof.engine.engine.ngl = (uint32_t)v;
            else
                n_ctx = v;
            engine_opt = true;
            break;
        case OPT_IMPL:
            if (!kern_impl_parse(optarg, &t.prof.engine.engine.impl)) {
                fprintf(stderr, "amxdiag: error: --cpu-kernels '%s' is not one of auto, amx, avx512, ref, amx-emu\n",
                        optarg);
                return adg_cmd_usage_error("top");
            }
            engine_opt = true;
            break;
        case OPT_NUMA:
            t.prof.engine.numa = optarg;
            engine_opt = true;
            break;
        case OPT_PIN:
            t.prof.engine.engine.pin = true;
            engine_opt = true;
            break;
        case OPT_SEED:
            if (!adg_parse_u64(optarg, &t.prof.engine.bench.seed)) {
                fprintf(stderr, "amxdiag: error: --seed '%s' is not a non-negative integer\n", optarg);
                return adg_cmd_usage_error("top");
            }
            engine_opt = true;
            break;
        default:
            return adg_cmd_usage_error("top");
        }
    }
    if (optind < argc)
        t.prof.argv = argv + optind;
    if (t.json && t.dump) {
        fprintf(stderr, "amxdiag: error: give either --json or --dump, not both\n");
        return adg_cmd_usage_error("top");
    }
    if (t.replay && (live_opts || engine_opt || t.prof.argv)) {
        fprintf(stderr, "amxdiag: error: --replay plays a record; it takes no command and no profile options\n");
        return adg_cmd_usage_error("top");
    }
    if (engine_opt && (t.prof.argv || t.prof.pid)) {
        fprintf(stderr, "amxdiag: error: built-in path options (--model, --cpu-kernels, ...) apply only without a "
                        "command or --pid\n");
        return adg_cmd_usage_error("top");
    }
    if (!t.replay && !t.prof.argv && !t.prof.pid) {
        t.prof.builtin = true;
        uint32_t need = t.prof.engine.bench.n_prompt > t.prof.engine.bench.n_gen ? t.prof.engine.bench.n_prompt
                                                                                : t.prof.engine.bench.n_gen;
        t.prof.engine.engine.n_ctx = n_ctx ? (uint32_t)n_ctx : (need < 512 ? 512 : need);
    }
    if (t.prof.argv && t.prof.pid) {
        fprintf(stderr, "amxdiag: error: give either a command or --pid, not both\n");
        return adg_cmd_usage_error("top");
    }
    if (t.prof.duration_s > 0 && !t.prof.pid) {
        fprintf(stderr, "amxdiag: error: --duration applies to --pid only (a command runs until it exits)\n");
        return adg_cmd_usage_error("top");
    }
    if (!*t.prof.out) {
        fprintf(stderr, "amxdiag: error: --out needs a file name\n");
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
    tui_replay_free(a.replay);
    a.replay = NULL;
    tui_app_free(&a);
    adg_bus_free(a.bus);
    return code;
}

/* The session option parser shared by profile, top and export (profiler/prof_options.h). */
#include "adg_test.h"

#include <string.h>

#include "common/adg_exit.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_options.h"

/* A command's own options, as top or export add them. */
typedef struct mine {
    int json, seen_x;
    const char *listen;
} mine;

enum { MY_JSON = 256, MY_LISTEN };

static int my_option(void *ctx, int c, const char *arg)
{
    mine *m = ctx;
    switch (c) {
    case MY_JSON:
        m->json++;
        return PROF_CLI_CONTINUE;
    case MY_LISTEN:
        m->listen = arg;
        return PROF_CLI_CONTINUE;
    case 'x':
        m->seen_x++;
        return PROF_CLI_CONTINUE;
    case 'h':
        return ADG_EXIT_OK;
    default:
        return ADG_EXIT_USAGE;
    }
}

static const struct option my_long[] = {
    {"json", no_argument, NULL, MY_JSON},
    {"listen", required_argument, NULL, MY_LISTEN},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parses a NULL-terminated list (argv[0] = the subcommand). */
static int parse(prof_cli *cli, mine *m, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    prof_cli_init(cli);
    memset(m, 0, sizeof *m);
    prof_cli_extra x = {.shortopts = "xh", .longopts = my_long, .handle = my_option, .ctx = m};
    return prof_options_parse(argc, argv, "test", &x, cli);
}

static void test_defaults_builtin(void **st)
{
    (void)st;
    prof_cli cli;
    mine m;
    char *a[] = {"profile", NULL};
    assert_int_equal(parse(&cli, &m, a), PROF_CLI_CONTINUE);
    assert_null(cli.o.argv);
    assert_true(cli.o.builtin);
    assert_string_equal(cli.o.out, "amxdiag-run.json");
    assert_int_equal(cli.o.interval_ms, 100);
    assert_int_equal(cli.o.freq_hz, 999);
    assert_int_equal(cli.o.sets, PROF_SET_ALL);
    assert_false(cli.o.sets_explicit);
    assert_int_equal(cli.o.top_n, 30);
    assert_true(cli.o.tee);
    assert_int_equal(cli.o.engine.bench.n_prompt, 512);
    assert_int_equal(cli.o.engine.bench.n_gen, 128);
    assert_int_equal(cli.o.engine.bench.reps, 3);
    assert_int_equal(cli.o.engine.engine.n_ctx, 512);
    assert_false(cli.session_opts || cli.engine_opts || cli.sanitize);

    /* built-in path options; the context grows to the longest test unless --ctx says */
    char *b[] = {"profile", "-m", "x.gguf", "--n-prompt", "1024", "-n", "16", "-r", "2", "-t", "4",
                 "--cpu-kernels", "avx512", "--numa", "interleave", "--pin", "--seed", "7", "--ngl", "3", NULL};
    assert_int_equal(parse(&cli, &m, b), PROF_CLI_CONTINUE);
    assert_true(cli.engine_opts);
    assert_false(cli.session_opts);
    assert_string_equal(cli.o.engine.engine.model_path, "x.gguf");
    assert_int_equal(cli.o.engine.bench.n_prompt, 1024);
    assert_int_equal(cli.o.engine.bench.n_gen, 16);
    assert_int_equal(cli.o.engine.bench.reps, 2);
    assert_int_equal(cli.o.engine.engine.threads, 4);
    assert_int_equal(cli.o.engine.engine.impl, KERN_IMPL_AVX512);
    assert_string_equal(cli.o.engine.numa, "interleave");
    assert_true(cli.o.engine.engine.pin);
    assert_int_equal(cli.o.engine.bench.seed, 7);
    assert_int_equal(cli.o.engine.engine.ngl, 3);
    assert_int_equal(cli.o.engine.engine.n_ctx, 1024);
    char *c[] = {"profile", "--ctx", "4096", NULL};
    assert_int_equal(parse(&cli, &m, c), PROF_CLI_CONTINUE);
    assert_int_equal(cli.o.engine.engine.n_ctx, 4096);
}

static void test_session_and_own_options(void **st)
{
    (void)st;
    prof_cli cli;
    mine m;
    /* session and own options mixed in one pass; the command's options stay its own */
    char *a[] = {"top", "--json", "-o", "r.json", "-i", "50", "-F", "500", "-e", "sampling,cpu", "--top", "5",
                 "--no-tee", "--gpu-metrics", "--sanitize", "-x", "--listen", "127.0.0.1:1",
                 "--", "cmd", "-o", "--json", NULL};
    assert_int_equal(parse(&cli, &m, a), PROF_CLI_CONTINUE);
    assert_int_equal(m.json, 1);
    assert_int_equal(m.seen_x, 1);
    assert_string_equal(m.listen, "127.0.0.1:1");
    assert_string_equal(cli.o.out, "r.json");
    assert_int_equal(cli.o.interval_ms, 50);
    assert_int_equal(cli.o.freq_hz, 500);
    assert_int_equal(cli.o.sets, PROF_SET_SAMPLING | PROF_SET_CPU);
    assert_true(cli.o.sets_explicit);
    assert_int_equal(cli.o.top_n, 5);
    assert_false(cli.o.tee);
    assert_true(cli.o.gpu_metrics);
    assert_true(cli.sanitize);
    assert_true(cli.session_opts);
    assert_false(cli.o.builtin);
    assert_non_null(cli.o.argv);
    assert_string_equal(cli.o.argv[0], "cmd");
    assert_string_equal(cli.o.argv[1], "-o");
    assert_string_equal(cli.o.argv[2], "--json");

    /* without "--", options end at the command's name */
    char *c[] = {"profile", "-e", "pmu", "sleep", "-i", "1", NULL};
    assert_int_equal(parse(&cli, &m, c), PROF_CLI_CONTINUE);
    assert_int_equal(cli.o.sets, PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE);
    assert_int_equal(cli.o.interval_ms, 100);
    assert_string_equal(cli.o.argv[0], "sleep");

    /* --pid with --duration */
    char *d[] = {"profile", "--pid", "123", "--duration", "2.5", NULL};
    assert_int_equal(parse(&cli, &m, d), PROF_CLI_CONTINUE);
    assert_int_equal(cli.o.pid, 123);
    assert_true(cli.o.duration_s == 2.5);
    assert_false(cli.o.builtin);

    /* the command's own --help: its exit code comes back */
    char *h[] = {"profile", "--help", NULL};
    assert_int_equal(parse(&cli, &m, h), ADG_EXIT_OK);
}

static void test_bad_input(void **st)
{
    (void)st;
    prof_cli cli;
    mine m;
    char *bad[][8] = {
        {"p", "--no-such-option", "--", "true", NULL},
        {"p", "-e", "amx,bogus", "--", "true", NULL},
        {"p", "-e", ",", "--", "true", NULL},
        {"p", "--interval", "5", "--", "true", NULL},
        {"p", "--freq", "nope", "--", "true", NULL},
        {"p", "--top", "0", "--", "true", NULL},
        {"p", "--pid", "0", NULL},
        {"p", "--pid", "1", "--", "true", NULL},              /* both */
        {"p", "--duration", "1", "--", "true", NULL},         /* --duration without --pid */
        {"p", "--pid", "1", "--duration", "-1", NULL},
        {"p", "--pid", "1", "--duration", "nan", NULL},
        {"p", "-o", "", "--", "true", NULL},
        {"p", "--sanitize", NULL},                            /* nothing to rerun */
        {"p", "-m", "x.gguf", "--", "true", NULL},            /* built-in option with a command */
        {"p", "--pid", "1", "--cpu-kernels", "amx", NULL},
        {"p", "--cpu-kernels", "fast", NULL},
        {"p", "-t", "0", NULL},
        {"p", "--seed", "-3", NULL},
        {"p", "-i", NULL},                                    /* missing argument */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(&cli, &m, bad[i]);
        if (rc != ADG_EXIT_USAGE)
            fail_msg("case %zu (%s %s) gave %d, expected %d", i, bad[i][1], bad[i][2] ? bad[i][2] : "", rc,
                     ADG_EXIT_USAGE);
    }
}

/* A command whose own option reuses a session letter or value is refused (a programming
 * error that would otherwise hide the option). */
static void test_collisions(void **st)
{
    (void)st;
    prof_cli cli;
    prof_cli_init(&cli);
    mine m = {0};
    char *a[] = {"p", NULL};
    prof_cli_extra x = {.shortopts = "o:", .handle = my_option, .ctx = &m};
    assert_int_equal(prof_options_parse(1, a, "test", &x, &cli), ADG_EXIT_USAGE);
    static const struct option clash[] = {{"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
    prof_cli_extra y = {.longopts = clash, .handle = my_option, .ctx = &m};
    assert_int_equal(prof_options_parse(1, a, "test", &y, &cli), ADG_EXIT_USAGE);
    static const struct option high[] = {{"thing", no_argument, NULL, PROF_CLI_OPT_BASE + 1}, {NULL, 0, NULL, 0}};
    prof_cli_extra z = {.longopts = high, .handle = my_option, .ctx = &m};
    assert_int_equal(prof_options_parse(1, a, "test", &z, &cli), ADG_EXIT_USAGE);
    /* no extra at all: session options only */
    char *b[] = {"p", "-i", "20", "--", "true", NULL};
    prof_cli_init(&cli);
    assert_int_equal(prof_options_parse(5, b, "test", NULL, &cli), PROF_CLI_CONTINUE);
    assert_int_equal(cli.o.interval_ms, 20);
    char *c[] = {"p", "--json", NULL};
    assert_int_equal(prof_options_parse(2, c, "test", NULL, &cli), ADG_EXIT_USAGE);
}

static void test_usage_lines(void **st)
{
    (void)st;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    prof_options_usage(f);
    prof_options_usage_builtin(f);
    fclose(f);
    /* every session option is in the help */
    static const char *const want[] = {"--out", "--pid", "--duration", "--interval", "--freq", "--events",
                                       "--gpu-metrics", "--sanitize", "--top", "--no-tee", "--model",
                                       "--n-prompt", "--n-gen", "--repetitions", "--threads", "--cpu-kernels",
                                       "--numa", "--pin", "--ngl", "--ctx", "--seed", "cpu,"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(buf, want[i]))
            fail_msg("help lacks %s", want[i]);
    free(buf);
}

static void test_takes_value(void **st)
{
    (void)st;
    static const char *const yes[] = {"-o", "-p", "-i", "-F", "-e", "-m", "-n", "-r", "-t", "--out", "--pid",
                                      "--model", "--n-prompt", "--cpu-kernels", "--numa", "--seed", "--ngl",
                                      "--ctx", "--duration", "--top", "--events"};
    static const char *const no[] = {"--sanitize", "--gpu-metrics", "--no-tee", "--pin", "--model=x", "-ox",
                                     "-q", "--json", "--tui", "x", "-", "--", "-:", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (!prof_options_takes_value(yes[i]))
            fail_msg("%s takes a value", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (prof_options_takes_value(no[i]))
            fail_msg("%s takes no separate value", no[i]);
    assert_false(prof_options_takes_value(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_builtin), cmocka_unit_test(test_session_and_own_options),
        cmocka_unit_test(test_bad_input),        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_usage_lines),      cmocka_unit_test(test_takes_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The options of a profiling session, parsed the same way by every command that runs one
 * (`amxdiag profile`, `amxdiag top`, `amxdiag export`): what to profile (a command, --pid,
 * or the built-in path and its options), the collectors and their rates, the record.  A
 * command adds its own options (--json, --listen, --replay, ...) through prof_cli_extra
 * and they are parsed in the same pass, so a new session option reaches every command.
 *
 * Use:
 *     prof_cli cli;
 *     prof_cli_init(&cli);
 *     prof_cli_extra x = {.shortopts = "qvh", .longopts = my_longopts, .handle = my_option, .ctx = &mine};
 *     int rc = prof_options_parse(argc, argv, "profile", &x, &cli);
 *     if (rc != PROF_CLI_CONTINUE)
 *         return rc;                       (help printed: 0; bad input: 2, message printed)
 *     ... prof_session_run(&cli.o, &outcome); then, if cli.sanitize, prof_sanitize_run(...)
 */
#ifndef PROF_OPTIONS_H
#define PROF_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include "profiler/prof_session.h"

#define PROF_CLI_CONTINUE (-1)
/* The session's long-only options use values from here up: a command's own long-only
 * options take values 256 .. PROF_CLI_OPT_BASE-1 (or a short option's character). */
#define PROF_CLI_OPT_BASE 0x1000
/* The session's short options; a command's own must not reuse these letters. */
#define PROF_CLI_SHORTOPTS "o:p:i:F:e:m:n:r:t:"

typedef struct prof_cli {
    prof_options o;     /* for prof_session_run; defaults set by prof_cli_init */
    bool sanitize;      /* --sanitize: the caller reruns o.argv under compute-sanitizer
                         * afterwards (prof_sanitize_run in profiler/sanitizer_run.h) */
    bool no_confirm;    /* --no-confirm: no CUDA_LAUNCH_BLOCKING=1 re-run of an uncertain CUDA
                         * fault (prof_confirm_run in profiler/crash_confirm.h) */
    bool session_opts;  /* some session option was given (other than built-in path ones) */
    bool engine_opts;   /* some built-in path option was given */
} prof_cli;

/* A command's own options, parsed in the same getopt_long pass. */
typedef struct prof_cli_extra {
    const char *shortopts;          /* getopt letters, e.g. "qvh" (no leading '+'), or NULL */
    const struct option *longopts;  /* terminated by a zero entry, or NULL */
    /* Called for each of them with getopt's value and optarg.  Returns PROF_CLI_CONTINUE,
     * or the exit code to stop with: 0 after printing help, ADG_EXIT_USAGE after printing
     * what was wrong with the value. */
    int (*handle)(void *ctx, int opt, const char *arg);
    void *ctx;
} prof_cli_extra;

/* Defaults: record amxdiag-run.json, 100 ms interval, 999 Hz, every set, top 30 hot
 * functions, output teed; the built-in path's pp512 / tg128 x 3, auto kernels. */
void prof_cli_init(prof_cli *cli);

/* Parses argv[1..] up to the command's name or "--" (options after it are the command's):
 * the session options, and extra's through extra->handle (extra may be NULL).  Then checks
 * the combinations (a command or --pid, not both; --duration only with --pid; built-in path
 * options and --sanitize only where they apply) and, with neither a command nor --pid,
 * selects the built-in path and fills its context size.  cmd names the subcommand in
 * messages ("profile").  Returns PROF_CLI_CONTINUE, with cli->o.argv = the command or NULL;
 * otherwise the exit code, the message already on stderr.  Uses getopt's globals. */
int prof_options_parse(int argc, char **argv, const char *cmd, const prof_cli_extra *extra, prof_cli *cli);

/* Whether arg is a session option whose value is the next argument ("-m", "--model"; not
 * "--model=x"): for a scan of argv that must skip option values without parsing them
 * (cli/amxdiag.c's `profile --tui`). */
bool prof_options_takes_value(const char *arg);

/* The help lines of the session options ("options:" part, without the built-in path's),
 * and of the built-in path's options, as every command that runs a session shows them. */
void prof_options_usage(FILE *f);
void prof_options_usage_builtin(FILE *f);

#endif

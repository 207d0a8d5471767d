/* amxdiag profile: options → prof_session_run → summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_cmd.h"
#include "common/adg_exit.h"
#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_record.h"
#include "common/adg_term.h"
#include "common/adg_util.h"
#include "profiler/prof_options.h"
#include "profiler/profiler.h"
#include "profiler/crash_confirm.h"
#include "profiler/sanitizer_run.h"

static void usage(FILE *f)
{
    fputs("usage: amxdiag profile [options] [--out RUN.json] [-- COMMAND ARGS...]\n"
          "       amxdiag profile [options] --pid PID [--duration SEC]\n"
          "       amxdiag profile [options] [built-in path options]   (no command: amxdiag's own engine)\n"
          "\n"
          "Runs COMMAND (directly, not through a shell) or attaches to a running process and\n"
          "measures what its CPU code executed: CPU time by ISA class (AMX, AVX-512, AVX2, SSE,\n"
          "scalar) from cpu-clock sampling and Zydis disassembly (no hardware PMU needed), hot\n"
          "functions with their class, PMU counters where the CPU exposes them (AMX busy,\n"
          "FP ops by width, IPC), DRAM bandwidth (uncore IMC or resctrl MBM), NUMA placement,\n"
          "per-CPU load, and tokens/s from llama-bench / llama-cli output. Writes a run record\n"
          "(amxdiag.run/1).\n"
          "\n"
          "options:\n",
          f);
    prof_options_usage(f);
    fputs("      --json            print a JSON summary (schema amxdiag.profile/1) on stdout; COMMAND's\n"
          "                        stdout then goes to stderr\n"
          "  -q, --quiet           no summary\n"
          "      --color WHEN      auto, always, never (default auto)\n"
          "  -v, --verbose         say which collectors cannot run and why\n"
          "      --tui             the live screen: runs as amxdiag top (same session and record;\n"
          "                        see docs/top.md)\n"
          "  -h, --help            this help\n"
          "\n"
          "built-in path (no COMMAND, no --pid; as 'amxdiag run', profiled in process):\n",
          f);
    prof_options_usage_builtin(f);
    fputs("\n"
          "exit status: COMMAND's own exit status; 128+N if it died of signal N (record status\n"
          "workload-crashed); 128+N if amxdiag got SIGINT/SIGTERM (N) and stopped it (status\n"
          "interrupted); 127/126 if COMMAND could not be found/executed; 2 on a usage error or\n"
          "if the record could not be written. With --pid: 0, or 2 on error. With --sanitize: 2 if\n"
          "compute-sanitizer could not run or its report could not be read (the record of the first\n"
          "run is kept).\n"
          "See docs/profile.md and docs/run-record.md.\n",
          f);
}

typedef struct profile_flags {
    bool json, quiet;
    adg_color_mode color;
} profile_flags;

enum { OPT_JSON = 256, OPT_COLOR };

/* profile's own options (the session's are prof_options_parse's). */
static int profile_option(void *ctx, int c, const char *arg)
{
    profile_flags *f = ctx;
    switch (c) {
    case OPT_JSON:
        f->json = true;
        return PROF_CLI_CONTINUE;
    case 'q':
        f->quiet = true;
        return PROF_CLI_CONTINUE;
    case OPT_COLOR:
        if (!adg_term_parse_color(arg, &f->color)) {
            fprintf(stderr, "amxdiag: error: --color takes auto, always or never, not '%s'\n", arg);
            return adg_cmd_usage_error("profile");
        }
        return PROF_CLI_CONTINUE;
    case 'v':
        adg_log_set_level(ADG_LOG_INFO);
        return PROF_CLI_CONTINUE;
    case 'h':
        usage(stdout);
        return ADG_EXIT_OK;
    default:
        return adg_cmd_usage_error("profile");
    }
}

int prof_profile_cmd_main(int argc, char **argv)
{
    static const struct option own[] = {
        {"json", no_argument, NULL, OPT_JSON},   {"quiet", no_argument, NULL, 'q'},
        {"color", required_argument, NULL, OPT_COLOR}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    profile_flags fl = {.color = ADG_COLOR_AUTO};
    prof_cli cli;
    prof_cli_init(&cli);
    prof_cli_extra x = {.shortopts = "qvh", .longopts = own, .handle = profile_option, .ctx = &fl};
    int rc = prof_options_parse(argc, argv, "profile", &x, &cli);
    if (rc != PROF_CLI_CONTINUE)
        return rc;
    prof_options o = cli.o;
    bool json = fl.json, quiet = fl.quiet, sanitize = cli.sanitize;
    adg_color_mode color = fl.color;
    if (json) {
        /* Our stdout carries the JSON summary: keep the command's stdout off it. */
        o.output_to_stderr = true;
        o.tee = true;
    }

    prof_outcome out;
    adg_error *e = prof_session_run(&o, &out);
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
    if (!sanitize && !cli.no_confirm && o.argv) {
        /* A CUDA fault whose kernel is not certain: one blocking re-run settles it
         * (--sanitize settles it too, so it is not run twice). */
        bool ran;
        int crc;
        e = prof_confirm_run_msg(&o, quiet, &ran, &crc);
        if (e) {
            adg_error_print(e, stderr);
            adg_error_free(e);
        } else if (ran) {
            json_t *merged;
            if (!(e = adg_record_load(o.out, &merged))) {
                json_decref(out.record);
                out.record = merged;
            } else
                adg_error_free(e);
        }
    }
    if (sanitize) {
        int san_status;
        e = prof_sanitize_run(o.argv, o.out, &san_status);
        if (e) {
            adg_error_print(e, stderr);
            adg_error_free(e);
            json_decref(out.record);
            return ADG_EXIT_USAGE;
        }
        json_t *merged;
        if (!(e = adg_record_load(o.out, &merged))) {
            json_decref(out.record);
            out.record = merged;
        } else
            adg_error_free(e);
    }
    if (json) {
        json_t *sum = prof_summary_json(out.record, o.out, out.exit_code);
        adg_error_free(adg_json_print(stdout, sum));
        json_decref(sum);
    } else if (!quiet) {
        /* The command may have written to the same terminal: the summary goes to stderr
         * like perf stat's, unless stdout is not shared with the command (--no-tee does
         * not matter: the command wrote wherever it wanted). */
        prof_summary_print(stderr, out.record, o.out, adg_term_use_color(stderr, color));
    }
    json_decref(out.record);
    fflush(stdout);
    return out.exit_code;
}

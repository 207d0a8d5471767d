/* amxdiag: the subcommand dispatcher, nothing else. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "adg_version.h"
#include "common/adg_exit.h"
#include "kernels/kern_cmds.h"
#include "probe/probe.h"
#include "profiler/export.h"
#include "profiler/prof_options.h"
#include "profiler/profiler.h"
#include "reports/reports.h"
#include "tui/tui.h"

typedef struct command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"probe", probe_cmd_main, "check AMX, GPUs, NUMA and PMU on this machine, with evidence and remedies"},
    {"bench", kern_bench_cmd_main, "benchmark amxdiag's CPU and GPU kernels against this machine's limits"},
    {"model", kern_model_cmd_main, "create synthetic GGUF models; inspect GGUF files (AMX eligibility)"},
    {"run", kern_run_cmd_main, "run the built-in hybrid inference path (llama-bench style)"},
    {"profile", prof_profile_cmd_main, "profile the built-in path or a command: AMX/AVX-512 use, memory, GPU"},
    {"top", tui_top_cmd_main, "live view of a profiled run, or replay of a run record"},
    {"export", prof_export_cmd_main, "profile like 'profile' and serve the live metrics to Prometheus"},
    {"report", rep_report_cmd_main, "regression and illegal-access reports from run records"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amxdiag [--version] [--help] <command> [options]\n"
            "\n"
            "Diagnostics and profiling for hybrid LLM inference on Intel AMX CPUs and NVIDIA GPUs.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "'amxdiag <command> --help' describes a command's options.\n"
            "exit codes: 0 fine, 1 a check failed (or the profiled command's own status), 2 usage or internal error.\n"
            "See docs/ for a page per command.\n");
}

/* `amxdiag profile --tui ...` is `amxdiag top ...`: the same session, collectors and run
 * record, with the screen.  Only profile's own options are searched (they end at "--" or
 * at the command's name), so a --tui meant for the command is left to it. */
static int profile_tui(int argc, char **argv)
{
    static const char *const with_value[] = {"-o", "--out", "-p", "--pid", "-i", "--interval", "-F", "--freq",
                                             "-e", "--events", "--top", "--duration", "--color", "--log"};
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--") || argv[i][0] != '-')
            return -1;
        if (!strcmp(argv[i], "--tui")) {
            for (int k = i; k < argc; k++)
                argv[k] = argv[k + 1];
            argv[1] = "top";
            return tui_top_cmd_main(argc - 2, argv + 1);
        }
        if (prof_options_takes_value(argv[i])) { /* the session options, built-in path's too */
            i++;
            continue;
        }
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            if (!strcmp(argv[i], with_value[k])) {
                i++;
                break;
            }
    }
    return -1;
}

/* A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills amxdiag with
 * a temporary file half-written.  With a handler the write fails with EFBIG instead,
 * and the atomic writers report it and remove the temporary.  A handler (not SIG_IGN)
 * is reset by exec, so a profiled command keeps the default. */
static void on_sigxfsz(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_sigxfsz};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGXFSZ, &sa, NULL);
    if (argc < 2) {
        usage(stderr);
        return ADG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            char *sub[] = {argv[2], "--help", NULL};
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(argv[2], commands[i].name))
                    return commands[i].main(2, sub);
        }
        usage(stdout);
        return ADG_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("amxdiag %s\n", AMXDIAG_VERSION);
        return ADG_EXIT_OK;
    }
    if (!strcmp(cmd, "profile")) {
        int rc = profile_tui(argc, argv);
        if (rc >= 0)
            return rc;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name))
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "amxdiag: error: unknown command '%s'\n  hint: run 'amxdiag --help' for the list of commands\n",
            cmd);
    return ADG_EXIT_USAGE;
}

/* The profiling session's option parser (`amxdiag profile`, `top`, `export` share it):
 * prof_options_parse on a fuzzed argv, with a command's own extra options, up to the
 * combination checks.  Nothing runs: the parsed session is dropped.
 *
 * Input: arguments separated by NUL bytes (at most 24); the first is the command name. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "profiler/prof_options.h"

#define MAX_ARGS 24

static int handle(void *ctx, int opt, const char *arg)
{
    (void)ctx;
    (void)opt;
    if (arg)
        (void)strlen(arg);
    return PROF_CLI_CONTINUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 256}, {"listen", required_argument, NULL, 257}, {NULL, 0, NULL, 0}};
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    char name[] = "profile";
    argv[argc++] = name;
    size_t off = 0;
    while (off < size && argc <= MAX_ARGS) {
        const uint8_t *z = memchr(data + off, 0, size - off);
        size_t len = z ? (size_t)(z - (data + off)) : size - off;
        argv[argc] = strndup((const char *)data + off, len);
        if (!argv[argc])
            break;
        argc++;
        off += len + 1;
    }
    argv[argc] = NULL;
    prof_cli cli;
    prof_cli_init(&cli);
    prof_cli_extra x = {.shortopts = "qvh", .longopts = longopts, .handle = handle, .ctx = NULL};
    fuzz_getopt_reset();
    (void)prof_options_parse(argc, argv, "profile", &x, &cli);
    for (int i = 0; i < argc; i++)
        (void)prof_options_takes_value(argv[i]);
    for (int i = 1; i < argc; i++)
        free(argv[i]);
    return 0;
}

#include "common/adg_cmd.h"

#include <string.h>

#include "common/adg_exit.h"
#include "common/adg_util.h"

int adg_cmd_placeholder(int argc, char **argv, const char *command, const char *what)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: amxdiag %s ...\n\nnot available in this version: %s\n", command, what);
            return ADG_EXIT_OK;
        }
    fprintf(stderr, "amxdiag: error: '%s' is not available in this version: %s\n"
                    "  hint: see docs/ for what this version provides\n",
            command, what);
    return ADG_EXIT_USAGE;
}

int adg_cmd_usage_error(const char *command)
{
    fprintf(stderr, "  hint: run 'amxdiag %s --help' for the options\n", command);
    return ADG_EXIT_USAGE;
}

bool adg_cmd_parse_uint(const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!adg_parse_u64(arg, out) || *out < lo || *out > hi) {
        fprintf(stderr, "amxdiag: error: %s takes a whole number from %llu to %llu, not '%s'\n", opt,
                (unsigned long long)lo, (unsigned long long)hi, arg);
        return false;
    }
    return true;
}

/* Helpers shared by the *_cmd.c files. */
#ifndef ADG_CMD_H
#define ADG_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* For a command that a later release adds: --help says so (exit 0); anything else
 * prints a clear message and returns exit code 2. */
int adg_cmd_placeholder(int argc, char **argv, const char *command, const char *what);

/* getopt_long's error for an unknown option has already been printed; this adds the hint
 * and returns exit code 2. */
int adg_cmd_usage_error(const char *command);

/* Parses a whole-number option value in [lo, hi]; on failure prints
 * "amxdiag: error: OPT takes a whole number from LO to HI, not 'ARG'" and returns false. */
bool adg_cmd_parse_uint(const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out);

#endif

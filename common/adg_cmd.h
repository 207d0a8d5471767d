/* Helpers shared by the *_cmd.c files. */
#ifndef ADG_CMD_H
#define ADG_CMD_H

#include <stdio.h>

/* For a command that a later release adds: --help says so (exit 0); anything else
 * prints a clear message and returns exit code 2. */
int adg_cmd_placeholder(int argc, char **argv, const char *command, const char *what);

/* getopt_long's error for an unknown option has already been printed; this adds the hint
 * and returns exit code 2. */
int adg_cmd_usage_error(const char *command);

#endif

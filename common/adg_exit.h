/* The documented exit codes of every amxdiag command (docs/exit-codes.md). */
#ifndef ADG_EXIT_H
#define ADG_EXIT_H

#include "common/adg_error.h"

enum {
    ADG_EXIT_OK = 0,          /* everything ran; every check passed or warned */
    ADG_EXIT_CHECK_FAILED = 1, /* ran, and at least one check failed / a finding is critical */
    ADG_EXIT_USAGE = 2,       /* usage error, bad input, or internal error */
};

/* Exit code for a command that stopped on an error. */
int adg_exit_for_error(const adg_error *e);

#endif

/* Public surface of profiler/: the `amxdiag profile` command and the session behind it
 * (profiler/prof_session.h), which `amxdiag top` can drive too. */
#ifndef PROFILER_H
#define PROFILER_H

#include "profiler/prof_session.h"

int prof_profile_cmd_main(int argc, char **argv);

#endif

/* Placeholder until this command is implemented (see the open issues). */
#include "profiler/profiler.h"
#include "common/adg_cmd.h"

int prof_profile_cmd_main(int argc, char **argv)
{
    return adg_cmd_placeholder(argc, argv, "profile", "the profiler is not built yet");
}

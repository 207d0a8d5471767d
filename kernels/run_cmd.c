/* Placeholder until this command is implemented (see the open issues). */
#include "kernels/kern_cmds.h"
#include "common/adg_cmd.h"

int kern_run_cmd_main(int argc, char **argv)
{
    return adg_cmd_placeholder(argc, argv, "run", "the built-in hybrid inference path is not built yet");
}

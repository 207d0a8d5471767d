/* Placeholder until this command is implemented (see the open issues). */
#include "tui/tui.h"
#include "common/adg_cmd.h"

int tui_top_cmd_main(int argc, char **argv)
{
    return adg_cmd_placeholder(argc, argv, "top", "the live view is not built yet");
}

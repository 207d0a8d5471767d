/* Placeholder until this command is implemented (see the open issues). */
#include "reports/reports.h"
#include "common/adg_cmd.h"

int rep_report_cmd_main(int argc, char **argv)
{
    return adg_cmd_placeholder(argc, argv, "report", "reports are not built yet");
}

#include "common/adg_exit.h"

int adg_exit_for_error(const adg_error *e)
{
    return e ? ADG_EXIT_USAGE : ADG_EXIT_OK;
}

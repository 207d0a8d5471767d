#include "common/adg_term.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool adg_term_use_color(FILE *f, adg_color_mode mode)
{
    if (mode == ADG_COLOR_ALWAYS)
        return true;
    if (mode == ADG_COLOR_NEVER)
        return false;
    const char *nc = getenv("NO_COLOR");
    if (nc && *nc)
        return false;
    const char *term = getenv("TERM");
    if (!term || !strcmp(term, "dumb"))
        return false;
    return isatty(fileno(f));
}

bool adg_term_parse_color(const char *s, adg_color_mode *out)
{
    if (!strcmp(s, "auto"))
        *out = ADG_COLOR_AUTO;
    else if (!strcmp(s, "always"))
        *out = ADG_COLOR_ALWAYS;
    else if (!strcmp(s, "never"))
        *out = ADG_COLOR_NEVER;
    else
        return false;
    return true;
}

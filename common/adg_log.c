#include "common/adg_log.h"

#include <stdarg.h>
#include <stdio.h>

static adg_log_level current = ADG_LOG_WARN;

void adg_log_set_level(adg_log_level level) { current = level; }
adg_log_level adg_log_get_level(void) { return current; }

void adg_log(adg_log_level level, const char *fmt, ...)
{
    if (level > current)
        return;
    static const char *tags[] = {"", "warning", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so concurrent threads do not interleave mid-line. */
    fprintf(stderr, "amxdiag: %s: %s\n", tags[level], line);
}

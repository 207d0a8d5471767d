/* The AMXDIAG_CUPTI_DEBUG trace (see cupti_debug.h). */
#include "profiler/cupti_debug.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int state; /* 0 not read yet, 1 off, 2 on */

bool cupti_debug_on(void)
{
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (!s) {
        const char *e = getenv("AMXDIAG_CUPTI_DEBUG");
        s = e && *e && strcmp(e, "0") ? 2 : 1;
        atomic_store_explicit(&state, s, memory_order_relaxed);
    }
    return s == 2;
}

void cupti_debug(const char *fmt, ...)
{
    if (!cupti_debug_on())
        return;
    char line[768];
    int n = snprintf(line, sizeof line, "amxdiag-cupti[%d]: ", (int)getpid());
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line: lines of several threads do not interleave, and nothing waits
     * in a buffer when the process dies. */
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

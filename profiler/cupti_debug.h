/* AMXDIAG_CUPTI_DEBUG=1: a trace of amxdiag's own CUPTI calls, one line each on stderr,
 * written at once (write(2), no stdio buffer), so that a process that dies inside CUPTI
 * still shows the call it died in: its "> name" line has no "< name" line after it.
 * Used by the tracer (cupti_tracer.c) and the Range Profiler session
 * (cupti_range_prof.c), in amxdiag itself and in libamxdiag-inject.so (libc only). */
#ifndef CUPTI_DEBUG_H
#define CUPTI_DEBUG_H

#include <stdbool.h>

/* True when AMXDIAG_CUPTI_DEBUG is set to something other than "" or "0" (read once). */
bool cupti_debug_on(void);
/* One line "amxdiag-cupti[PID]: TEXT" on stderr, when cupti_debug_on(). */
void cupti_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

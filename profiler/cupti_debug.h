/* AMXDIAG_CUPTI_DEBUG=1: a trace of amxdiag's own CUPTI calls, one line each on stderr,
 * written at once (write(2), no stdio buffer), so that a process that dies inside CUPTI
 * still shows the call it died in: its "> name" line has no "< name" line after it.
 * Used by the tracer (cupti_tracer.c) and the Range Profiler session
 * (cupti_range_prof.c), in amxdiag itself and in libamxdiag-inject.so (libc only). */
#ifndef CUPTI_DEBUG_H
#define CUPTI_DEBUG_H

#include <signal.h>
#include <stdbool.h>

/* True when AMXDIAG_CUPTI_DEBUG is set to something other than "" or "0" (read once). */
bool cupti_debug_on(void);
/* One line "amxdiag-cupti[PID]: TEXT" on stderr, when cupti_debug_on(). */
void cupti_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Fatal-signal stacks, when cupti_debug_on(): where a process dies inside CUPTI or in one of
 * our callbacks that CUPTI called, the line trace alone cannot tell which.
 * cupti_debug_crash_dump writes the signal, the fault address, the faulting pc and every
 * frame (backtrace_symbols_fd, then module+offset and symbol from dladdr) to stderr; it
 * is meant to be called from a signal handler (write(2) only, no stdio).
 * cupti_debug_crash_prepare loads the unwinder and gives the calling thread an alternate
 * signal stack; cupti_debug_install_crash_handler also installs a handler that dumps and
 * re-raises, for signals whose handler is still the default (the in-process tracer; the
 * injection library calls the dump from its own handler). */
void cupti_debug_crash_prepare(void);
void cupti_debug_crash_dump(int sig, const siginfo_t *si, const void *uc);
void cupti_debug_install_crash_handler(void);

#endif

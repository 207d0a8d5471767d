/* Error values that carry a message a user can act on.
 *
 * Every function that can fail returns an adg_error * (NULL on success) or fills one
 * through an out parameter.  The message says what happened; the remedy (optional)
 * says what to do.  The kind maps to the documented exit code in cli/. */
#ifndef ADG_ERROR_H
#define ADG_ERROR_H

#include <stdio.h>

typedef enum adg_errkind {
    ADG_E_USAGE = 1,     /* bad option, bad argument */
    ADG_E_IO,            /* a file or device could not be read or written */
    ADG_E_FORMAT,        /* input exists but is corrupt, truncated or foreign */
    ADG_E_UNSUPPORTED,   /* valid input this build or machine cannot handle */
    ADG_E_PERMISSION,    /* the OS refused (EPERM/EACCES, paranoid settings, ...) */
    ADG_E_HARDWARE,      /* the hardware is missing or misbehaved */
    ADG_E_CUDA,          /* a CUDA driver call failed */
    ADG_E_NOMEM,
    ADG_E_INTERRUPTED,   /* SIGINT/SIGTERM */
    ADG_E_INTERNAL,      /* a bug in amxdiag */
} adg_errkind;

typedef struct adg_error adg_error;

__attribute__((format(printf, 2, 3)))
adg_error *adg_error_new(adg_errkind kind, const char *fmt, ...);
/* Like adg_error_new, with ": <strerror(errnum)>" appended. */
__attribute__((format(printf, 3, 4)))
adg_error *adg_error_errno(adg_errkind kind, int errnum, const char *fmt, ...);
/* Sets (replaces) the remedy; returns e so it can be chained in a return statement. */
__attribute__((format(printf, 2, 3)))
adg_error *adg_error_hint(adg_error *e, const char *fmt, ...);
/* Prepends context: "<context>: <old message>". Returns e. */
__attribute__((format(printf, 2, 3)))
adg_error *adg_error_prefix(adg_error *e, const char *fmt, ...);

adg_errkind adg_error_kind(const adg_error *e);
const char *adg_error_kind_name(adg_errkind kind);
const char *adg_error_msg(const adg_error *e);
const char *adg_error_remedy(const adg_error *e); /* NULL when none */
int adg_error_errnum(const adg_error *e);         /* 0 when not from errno */

/* "amxdiag: error: <msg>\n  hint: <remedy>\n" */
void adg_error_print(const adg_error *e, FILE *out);
void adg_error_free(adg_error *e);

#endif

#include "common/adg_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct adg_error {
    adg_errkind kind;
    int errnum;
    char *msg;
    char *remedy;
    int is_static;
};

/* Returned when allocating an error fails; never freed. */
static struct adg_error oom_error = {
    ADG_E_NOMEM, ENOMEM, (char *)"out of memory", (char *)"free memory or reduce the problem size", 1,
};

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    return s;
}

static adg_error *make(adg_errkind kind, int errnum, char *msg)
{
    if (!msg)
        return &oom_error;
    adg_error *e = calloc(1, sizeof *e);
    if (!e) {
        free(msg);
        return &oom_error;
    }
    e->kind = kind;
    e->errnum = errnum;
    e->msg = msg;
    return e;
}

adg_error *adg_error_new(adg_errkind kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    return make(kind, 0, msg);
}

adg_error *adg_error_errno(adg_errkind kind, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *head = vformat(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (head && asprintf(&msg, "%s: %s", head, strerror(errnum)) < 0)
        msg = NULL;
    free(head);
    return make(kind, errnum, msg);
}

adg_error *adg_error_hint(adg_error *e, const char *fmt, ...)
{
    if (!e || e->is_static)
        return e;
    va_list ap;
    va_start(ap, fmt);
    char *r = vformat(fmt, ap);
    va_end(ap);
    if (r) {
        free(e->remedy);
        e->remedy = r;
    }
    return e;
}

adg_error *adg_error_prefix(adg_error *e, const char *fmt, ...)
{
    if (!e || e->is_static)
        return e;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = vformat(fmt, ap);
    va_end(ap);
    char *msg = NULL;
    if (ctx && asprintf(&msg, "%s: %s", ctx, e->msg) >= 0) {
        free(e->msg);
        e->msg = msg;
    }
    free(ctx);
    return e;
}

adg_errkind adg_error_kind(const adg_error *e) { return e ? e->kind : 0; }
const char *adg_error_msg(const adg_error *e) { return e ? e->msg : ""; }
const char *adg_error_remedy(const adg_error *e) { return e ? e->remedy : NULL; }
int adg_error_errnum(const adg_error *e) { return e ? e->errnum : 0; }

const char *adg_error_kind_name(adg_errkind kind)
{
    switch (kind) {
    case ADG_E_USAGE: return "usage";
    case ADG_E_IO: return "io";
    case ADG_E_FORMAT: return "format";
    case ADG_E_UNSUPPORTED: return "unsupported";
    case ADG_E_PERMISSION: return "permission";
    case ADG_E_HARDWARE: return "hardware";
    case ADG_E_CUDA: return "cuda";
    case ADG_E_NOMEM: return "nomem";
    case ADG_E_INTERRUPTED: return "interrupted";
    case ADG_E_INTERNAL: return "internal";
    }
    return "unknown";
}

void adg_error_print(const adg_error *e, FILE *out)
{
    if (!e)
        return;
    fprintf(out, "amxdiag: error: %s\n", e->msg);
    if (e->remedy)
        fprintf(out, "  hint: %s\n", e->remedy);
}

void adg_error_free(adg_error *e)
{
    if (!e || e->is_static)
        return;
    free(e->msg);
    free(e->remedy);
    free(e);
}

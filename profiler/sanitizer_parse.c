/* compute-sanitizer report parsing: XML through expat, and the text output. */
#include "profiler/sanitizer_parse.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/adg_util.h"

void san_report_free(san_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free((char *)r->recs[i].kernel);
        free((char *)r->recs[i].what);
        free((char *)r->recs[i].kind);
        free((char *)r->recs[i].location);
    }
    free(r->recs);
    memset(r, 0, sizeof *r);
}

static bool push(san_report *r, const crash_san *s)
{
    crash_san *n = realloc(r->recs, (r->n + 1) * sizeof *n);
    if (!n)
        return false;
    r->recs = n;
    r->recs[r->n++] = *s;
    return true;
}

static void clear_rec(crash_san *s)
{
    free((char *)s->kernel);
    free((char *)s->what);
    free((char *)s->kind);
    free((char *)s->location);
    memset(s, 0, sizeof *s);
}

static void set_str(const char **dst, const char *src)
{
    free((char *)*dst);
    *dst = strdup(src);
}

static bool parse_num(const char *s, uint64_t *out)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s)
        return false;
    *out = v;
    return true;
}

bool san_parse_nearest(const char *text, crash_san *s)
{
    const char *p = strstr(text, "the nearest allocation at ");
    if (!p)
        return false;
    /* Walk back over "N bytes after|before ". */
    const char *dir = NULL;
    bool after = true;
    for (const char *q = p; q > text; q--) {
        if (!strncmp(q, "bytes after ", 12)) {
            dir = q;
            break;
        }
        if (!strncmp(q, "bytes before ", 13)) {
            dir = q;
            after = false;
            break;
        }
    }
    if (!dir)
        return false;
    const char *num = dir;
    while (num > text && isspace((unsigned char)num[-1]))
        num--;
    while (num > text && isdigit((unsigned char)num[-1]))
        num--;
    uint64_t dist, base, size = 0;
    if (!parse_num(num, &dist) || !parse_num(p + strlen("the nearest allocation at "), &base))
        return false;
    const char *sz = strstr(p, "of size ");
    if (sz)
        parse_num(sz + 8, &size);
    s->has_nearest = true;
    s->nearest_base = base;
    s->nearest_size = size;
    s->distance = after ? (int64_t)dist : -(int64_t)dist;
    return true;
}

/* ---- XML ---- */

#define XML_DEPTH 64

typedef struct xml_state {
    XML_Parser p;
    san_report *r;
    const char *stack[XML_DEPTH];
    char names[XML_DEPTH][48];
    int depth;
    bool root_seen, root_ok;
    char root[64];
    bool in_record;
    crash_san cur;
    char kind[32];
    char path[256];
    long line;
    adg_strbuf text;
    bool oom;
} xml_state;

static bool in_path(xml_state *x, const char *name)
{
    /* Deeper than XML_DEPTH, only the first XML_DEPTH names were kept. */
    for (int i = 0; i < x->depth && i < XML_DEPTH; i++)
        if (!strcmp(x->names[i], name))
            return true;
    return false;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    (void)atts;
    xml_state *x = ud;
    if (!x->root_seen) {
        x->root_seen = true;
        snprintf(x->root, sizeof x->root, "%s", name);
        x->root_ok = !strcmp(name, "ComputeSanitizerOutput");
        if (!x->root_ok)
            XML_StopParser(x->p, XML_FALSE);
    }
    if (x->depth < XML_DEPTH)
        snprintf(x->names[x->depth], sizeof x->names[0], "%s", name);
    x->depth++;
    if (!strcmp(name, "record") && !x->in_record) {
        x->in_record = true;
        memset(&x->cur, 0, sizeof x->cur);
        x->kind[0] = 0;
        x->path[0] = 0;
        x->line = -1;
    }
    adg_sb_free(&x->text);
    adg_sb_init(&x->text);
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    xml_state *x = ud;
    if (x->in_record)
        adg_sb_append(&x->text, s, (size_t)len);
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    xml_state *x = ud;
    x->depth--;
    const char *parent = x->depth >= 1 && x->depth - 1 < XML_DEPTH ? x->names[x->depth - 1] : "";
    if (!x->in_record)
        return;
    const char *t = x->text.buf ? x->text.buf : "";
    while (isspace((unsigned char)*t))
        t++;
    char val[1024];
    snprintf(val, sizeof val, "%s", t);
    adg_rstrip(val);
    crash_san *c = &x->cur;
    bool in_host = in_path(x, "hostStack") || in_path(x, "deviceStack");
    if (!strcmp(name, "record")) {
        x->in_record = false;
        if (x->path[0]) {
            char loc[300];
            if (x->line >= 0)
                snprintf(loc, sizeof loc, "%s:%ld", x->path, x->line);
            else
                snprintf(loc, sizeof loc, "%s", x->path);
            set_str(&c->location, loc);
        }
        bool access = c->kernel && strcasecmp(x->kind, "Api") != 0;
        if (access) {
            if (!c->what)
                set_str(&c->what, "memory access error");
            if (!push(x->r, c)) {
                x->oom = true;
                clear_rec(c);
            }
            memset(c, 0, sizeof *c);
        } else {
            x->r->other++;
            clear_rec(c);
        }
    } else if (!strcmp(parent, "threadIdx") || !strcmp(parent, "blockIdx")) {
        int *v = !strcmp(parent, "threadIdx") ? c->thread : c->block;
        uint64_t n;
        int i = !strcmp(name, "x") ? 0 : !strcmp(name, "y") ? 1 : !strcmp(name, "z") ? 2 : -1;
        if (i >= 0 && parse_num(val, &n))
            v[i] = (int)n;
    } else if (!strcmp(name, "kind") && !strcmp(parent, "record")) {
        snprintf(x->kind, sizeof x->kind, "%.31s", val);
    } else if (!in_host && (!strcmp(name, "func") || !strcmp(name, "kernel")) && !c->kernel && val[0]) {
        set_str(&c->kernel, val);
    } else if (!in_host && !strcmp(name, "path") && in_path(x, "where")) {
        snprintf(x->path, sizeof x->path, "%.255s", val);
    } else if (!in_host && !strcmp(name, "line") && in_path(x, "where")) {
        uint64_t n;
        if (parse_num(val, &n))
            x->line = (long)n;
    } else if (!strcmp(name, "text") && in_path(x, "what")) {
        set_str(&c->what, val);
    } else if (!strcmp(name, "size") && in_path(x, "what")) {
        uint64_t n;
        if (parse_num(val, &n))
            c->size = (uint32_t)n;
    } else if ((!strcmp(name, "address") || !strcmp(name, "accessAddress")) && in_path(x, "what")) {
        uint64_t n;
        if (parse_num(val, &n))
            c->address = n;
    } else if (!strcmp(name, "error") && in_path(x, "what")) {
        set_str(&c->kind, val);
    }
    if (strstr(val, "nearest allocation"))
        san_parse_nearest(val, c);
    adg_sb_free(&x->text);
    adg_sb_init(&x->text);
}

adg_error *san_parse_xml(const char *data, size_t len, const char *what, san_report *out)
{
    memset(out, 0, sizeof *out);
    out->errors_total = -1;
    snprintf(out->format, sizeof out->format, "xml");
    xml_state x;
    memset(&x, 0, sizeof x);
    x.r = out;
    adg_sb_init(&x.text);
    x.p = XML_ParserCreate(NULL);
    if (!x.p)
        return adg_error_new(ADG_E_NOMEM, "out of memory creating the XML parser");
    XML_SetUserData(x.p, &x);
    XML_SetElementHandler(x.p, on_start, on_end);
    XML_SetCharacterDataHandler(x.p, on_text);
    enum XML_Status st = len > (size_t)INT32_MAX ? XML_STATUS_ERROR : XML_Parse(x.p, data, (int)len, XML_TRUE);
    adg_error *e = NULL;
    if (x.root_seen && !x.root_ok)
        e = adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                         "%s is not a compute-sanitizer report (root element <%s>, expected "
                                         "<ComputeSanitizerOutput>)",
                                         what, x.root),
                           "give the file written by compute-sanitizer --xml --save=FILE");
    else if (st != XML_STATUS_OK) {
        enum XML_Error code = XML_GetErrorCode(x.p);
        bool cut = code == XML_ERROR_NO_ELEMENTS || code == XML_ERROR_UNCLOSED_TOKEN ||
                   code == XML_ERROR_UNCLOSED_CDATA_SECTION || XML_GetCurrentByteIndex(x.p) >= (XML_Index)len;
        e = adg_error_new(ADG_E_FORMAT, "%s: %s compute-sanitizer XML at line %lu, column %lu: %s", what,
                          cut ? "truncated" : "malformed", (unsigned long)XML_GetCurrentLineNumber(x.p),
                          (unsigned long)XML_GetCurrentColumnNumber(x.p), XML_ErrorString(code));
        adg_error_hint(e, cut ? "the sanitized program (or compute-sanitizer) was probably killed before the "
                                "report was complete; rerun it"
                              : "the file is not what compute-sanitizer --xml writes; rerun it");
    } else if (!x.root_seen)
        e = adg_error_new(ADG_E_FORMAT, "%s holds no XML element", what);
    else if (x.oom)
        e = adg_error_new(ADG_E_NOMEM, "out of memory reading %s", what);
    if (x.in_record)
        clear_rec(&x.cur);
    adg_sb_free(&x.text);
    XML_ParserFree(x.p);
    if (e)
        san_report_free(out);
    return e;
}

/* ---- text ---- */

/* The line after the "=========" prefix and its indentation. */
static const char *body(const char *line)
{
    if (strncmp(line, "=========", 9))
        return NULL;
    line += 9;
    while (*line == ' ' || *line == '\t')
        line++;
    return line;
}

static void parse_at(const char *b, crash_san *c)
{
    /* "at kernel(int *)+0x70 in /src/x.cu:12"  or the older "at 0x70 in /src/x.cu:12:kernel(int *)" */
    const char *p = b + 3;
    const char *in = strstr(p, " in ");
    if (!strncmp(p, "0x", 2) && in) {
        const char *loc = in + 4;
        const char *colon = strrchr(loc, ':');
        /* the function follows the last ':' that is followed by a non-digit */
        const char *fn = NULL;
        for (const char *q = loc; (q = strchr(q, ':')); q++)
            if (!isdigit((unsigned char)q[1])) {
                fn = q + 1;
                break;
            }
        if (fn) {
            set_str(&c->kernel, strncmp(fn, "void ", 5) ? fn : fn + 5);
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(fn - 1 - loc), loc);
            set_str(&c->location, tmp);
        } else if (colon)
            set_str(&c->location, loc);
        return;
    }
    const char *plus = strstr(p, "+0x");
    size_t n = plus ? (size_t)(plus - p) : in ? (size_t)(in - p) : strlen(p);
    char fn[1024];
    snprintf(fn, sizeof fn, "%.*s", (int)n, p);
    set_str(&c->kernel, fn);
    if (in)
        set_str(&c->location, in + 4);
}

adg_error *san_parse_text(const char *data, size_t len, const char *what, san_report *out)
{
    memset(out, 0, sizeof *out);
    out->errors_total = -1;
    snprintf(out->format, sizeof out->format, "text");
    bool seen_prefix = false, open = false;
    crash_san cur;
    memset(&cur, 0, sizeof cur);
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(ll < sizeof line - 1 ? ll : sizeof line - 1), p);
        adg_rstrip(line);
        p = nl ? nl + 1 : end;
        const char *b = body(line);
        if (!b)
            continue;
        seen_prefix = true;
        uint64_t n;
        if (!strncmp(b, "ERROR SUMMARY:", 14)) {
            if (parse_num(b + 14, &n))
                out->errors_total = (long)n;
        } else if (!strncmp(b, "Invalid ", 8) || !strncmp(b, "Misaligned ", 11) ||
                   strstr(b, "Out-of-range") || strstr(b, "Malloc/Free error")) {
            if (open && cur.kernel && !push(out, &cur))
                clear_rec(&cur);
            else if (open && !cur.kernel) {
                out->other++;
                clear_rec(&cur);
            }
            memset(&cur, 0, sizeof cur);
            open = true;
            set_str(&cur.what, b);
            const char *sz = strstr(b, "of size ");
            if (sz && parse_num(sz + 8, &n))
                cur.size = (uint32_t)n;
        } else if (open && !strncmp(b, "at ", 3) && !cur.kernel) {
            parse_at(b, &cur);
        } else if (open && !strncmp(b, "by thread (", 11)) {
            sscanf(b, "by thread (%d,%d,%d) in block (%d,%d,%d)", &cur.thread[0], &cur.thread[1], &cur.thread[2],
                   &cur.block[0], &cur.block[1], &cur.block[2]);
        } else if (open && (!strncmp(b, "Address ", 8) || !strncmp(b, "Access to ", 10) ||
                            !strncmp(b, "Access at ", 10))) {
            const char *a = strstr(b, "0x");
            if (a && parse_num(a, &n))
                cur.address = n;
            const char *is = strstr(b, " is ");
            if (is)
                set_str(&cur.kind, is + 4);
            san_parse_nearest(b, &cur);
        } else if (open && strstr(b, "nearest allocation")) {
            san_parse_nearest(b, &cur);
        } else if (!strncmp(b, "Program hit ", 12) || !strncmp(b, "Leaked ", 7)) {
            out->other++;
        }
    }
    if (open) {
        if (cur.kernel) {
            if (!push(out, &cur))
                clear_rec(&cur);
        } else {
            out->other++;
            clear_rec(&cur);
        }
    }
    if (!seen_prefix) {
        san_report_free(out);
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s is not compute-sanitizer output (no '=========' lines)",
                                            what),
                              "give the text compute-sanitizer printed, or its --xml --save=FILE report");
    }
    if (out->errors_total < 0) {
        out->truncated = true;
        if (!out->n) {
            san_report_free(out);
            return adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                                "%s: truncated compute-sanitizer output (no report and no ERROR "
                                                "SUMMARY line)",
                                                what),
                                  "the run was probably cut short; rerun it under compute-sanitizer");
        }
    }
    return NULL;
}

adg_error *san_parse_file(const char *path, san_report *out)
{
    char *data;
    size_t len;
    memset(out, 0, sizeof *out);
    adg_error *e = adg_read_file(path, 512u << 20, &data, &len);
    if (e)
        return adg_error_prefix(e, "compute-sanitizer report");
    const char *p = data;
    while (p < data + len && isspace((unsigned char)*p))
        p++;
    if (p == data + len)
        e = adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s is empty", path),
                           "compute-sanitizer wrote nothing: did the program run under it at all?");
    else if (*p == '<')
        e = san_parse_xml(data, len, path, out);
    else
        e = san_parse_text(data, len, path, out);
    free(data);
    return e;
}

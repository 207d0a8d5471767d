#include "probe/probe_report.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "adg_version.h"
#include "common/adg_term.h"
#include "common/adg_util.h"

static const char *status_names[] = {"pass", "info", "warn", "fail", "skip"};

const char *probe_status_name(probe_status s)
{
    return (unsigned)s < ADG_ARRAY_LEN(status_names) ? status_names[s] : "unknown";
}

void probe_report_init(probe_report *r)
{
    memset(r, 0, sizeof *r);
    r->facts = json_object();
}

void probe_report_free(probe_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        probe_check *c = &r->checks[i];
        free(c->section);
        free(c->id);
        free(c->title);
        free(c->evidence);
        free(c->explanation);
        free(c->remedy);
        json_decref(c->data);
    }
    free(r->checks);
    json_decref(r->facts);
    memset(r, 0, sizeof *r);
}

probe_check *probe_add(probe_report *r, const char *section, const char *id, probe_status st, const char *title,
                       const char *explanation, const char *evidence_fmt, ...)
{
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 32;
        probe_check *nc = realloc(r->checks, ncap * sizeof *nc);
        if (!nc)
            return NULL;
        r->checks = nc;
        r->cap = ncap;
    }
    probe_check *c = &r->checks[r->n];
    memset(c, 0, sizeof *c);
    c->section = strdup(section);
    c->id = strdup(id);
    c->status = st;
    c->title = strdup(title ? title : id);
    c->explanation = strdup(explanation ? explanation : "");
    va_list ap;
    va_start(ap, evidence_fmt);
    if (vasprintf(&c->evidence, evidence_fmt ? evidence_fmt : "", ap) < 0)
        c->evidence = NULL;
    va_end(ap);
    if (!c->section || !c->id || !c->title || !c->explanation || !c->evidence) {
        free(c->section);
        free(c->id);
        free(c->title);
        free(c->explanation);
        free(c->evidence);
        return NULL;
    }
    r->n++;
    return c;
}

void probe_check_set_remedy(probe_check *c, const char *fmt, ...)
{
    if (!c)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    if (s) {
        free(c->remedy);
        c->remedy = s;
    }
}

void probe_check_set_data(probe_check *c, json_t *data)
{
    if (!c) {
        json_decref(data);
        return;
    }
    json_decref(c->data);
    c->data = data;
}

void probe_report_set_fact(probe_report *r, const char *section, const char *key, json_t *value)
{
    json_t *sec = json_object_get(r->facts, section);
    if (!sec) {
        sec = json_object();
        json_object_set_new(r->facts, section, sec);
    }
    json_object_set_new(sec, key, value);
}

const probe_check *probe_report_find(const probe_report *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->checks[i].id, id))
            return &r->checks[i];
    return NULL;
}

bool probe_report_counts(const probe_report *r, size_t counts[5])
{
    memset(counts, 0, 5 * sizeof counts[0]);
    for (size_t i = 0; i < r->n; i++)
        counts[r->checks[i].status]++;
    return counts[PROBE_FAIL] > 0;
}

json_t *probe_report_json(const probe_report *r)
{
    char created[32];
    adg_utc_iso8601(created, sizeof created);
    json_t *checks = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const probe_check *c = &r->checks[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", c->id, "section", c->section, "status",
                              probe_status_name(c->status), "title", c->title, "evidence", c->evidence,
                              "explanation", c->explanation);
        json_object_set_new(o, "remedy", c->remedy ? json_string(c->remedy) : json_null());
        if (c->data)
            json_object_set(o, "data", c->data);
        json_array_append_new(checks, o);
    }
    size_t k[5];
    probe_report_counts(r, k);
    return json_pack("{s:s,s:{s:s,s:s},s:s,s:{s:I,s:I,s:I,s:I,s:I},s:o,s:O}", "schema", PROBE_SCHEMA, "tool", "name",
                     "amxdiag", "version", AMXDIAG_VERSION, "created", created, "summary", "pass",
                     (json_int_t)k[PROBE_PASS], "info", (json_int_t)k[PROBE_INFO], "warn", (json_int_t)k[PROBE_WARN],
                     "fail", (json_int_t)k[PROBE_FAIL], "skip", (json_int_t)k[PROBE_SKIP], "checks", checks, "facts",
                     r->facts);
}

static int term_width(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 60)
        return ws.ws_col;
    return 100;
}

/* Prints text wrapped at width, every line after the first indented by `indent`. */
static void print_wrapped(FILE *out, const char *label, const char *text, int indent, int width, bool color)
{
    if (!text || !*text)
        return;
    fprintf(out, "%*s%s%s%s ", indent, "", color ? ADG_SGR_DIM : "", label, color ? ADG_SGR_RESET : "");
    int col = indent + (int)strlen(label) + 1, start = col;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            fprintf(out, "\n%*s", start, "");
            col = start;
            p++;
            continue;
        }
        size_t w = strcspn(p, " \n");
        if (col > start && col + (int)w > width) {
            fprintf(out, "\n%*s", start, "");
            col = start;
        }
        fwrite(p, 1, w, out);
        col += (int)w;
        p += w;
        if (*p == ' ') {
            fputc(' ', out);
            col++;
            p++;
        }
    }
    fputc('\n', out);
}

static const char *section_title(const char *s)
{
    static const struct { const char *id, *title; } t[] = {
        {"cpu", "CPU"}, {"amx", "AMX"}, {"numa", "NUMA"}, {"pmu", "PMU"},
        {"gpu", "GPU"}, {"binary", "Binaries"}, {"bench", "Machine ceilings (--bench)"},
    };
    for (size_t i = 0; i < ADG_ARRAY_LEN(t); i++)
        if (!strcmp(t[i].id, s))
            return t[i].title;
    return s;
}

void probe_report_print(const probe_report *r, FILE *out, bool color, bool verbose)
{
    static const char *sgr[] = {ADG_SGR_GREEN, ADG_SGR_BLUE, ADG_SGR_YELLOW, ADG_SGR_RED, ADG_SGR_DIM};
    int width = term_width(out);
    const char *done[16];
    size_t ndone = 0;
    for (size_t i = 0; i < r->n; i++) {
        const char *sec = r->checks[i].section;
        bool seen = false;
        for (size_t k = 0; k < ndone; k++)
            seen |= !strcmp(done[k], sec);
        if (seen || ndone == ADG_ARRAY_LEN(done))
            continue;
        done[ndone++] = sec;
        fprintf(out, "%s%s%s\n", color ? ADG_SGR_BOLD : "", section_title(sec), color ? ADG_SGR_RESET : "");
        for (size_t j = i; j < r->n; j++) {
            const probe_check *c = &r->checks[j];
            if (strcmp(c->section, sec))
                continue;
            char tag[8];
            snprintf(tag, sizeof tag, "%-4s", probe_status_name(c->status));
            for (char *t = tag; *t; t++)
                *t = (char)(*t >= 'a' && *t <= 'z' ? *t - 32 : *t);
            fprintf(out, "  %s%s%s  %-22s %s\n", color ? sgr[c->status] : "", tag, color ? ADG_SGR_RESET : "", c->id,
                    c->title);
            bool detail = verbose || c->status == PROBE_WARN || c->status == PROBE_FAIL || c->status == PROBE_SKIP;
            print_wrapped(out, "evidence:", c->evidence, 8, width, color);
            if (detail)
                print_wrapped(out, "why:", c->explanation, 8, width, color);
            if (c->remedy && (detail || c->status == PROBE_INFO))
                print_wrapped(out, "fix:", c->remedy, 8, width, color);
        }
        fputc('\n', out);
    }
    size_t k[5];
    probe_report_counts(r, k);
    fprintf(out, "summary: %zu pass, %zu warn, %zu fail, %zu skip, %zu info\n", k[PROBE_PASS], k[PROBE_WARN],
            k[PROBE_FAIL], k[PROBE_SKIP], k[PROBE_INFO]);
}

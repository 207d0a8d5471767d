/* Prometheus text exposition format primitives (see adg_prom.h). */
#include "common/adg_prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *unit;
    const char *suffix;
    double scale;
} units[] = {
    {"%", "ratio", 0.01},
    {"1", "ratio", 1},
    {"ratio", "ratio", 1},
    {"B/s", "bytes_per_second", 1},
    {"GB/s", "bytes_per_second", 1e9},
    {"B", "bytes", 1},
    {"s", "seconds", 1},
    {"ms", "seconds", 1e-3},
    {"us", "seconds", 1e-6},
    {"ns", "seconds", 1e-9},
    {"Hz", "hertz", 1},
    {"GHz", "hertz", 1e9},
    {"ops/s", "ops_per_second", 1},
    {"t/s", "tokens_per_second", 1},
    {"W", "watts", 1},
    {"C", "celsius", 1},
    /* A count is a plain gauge: "_count" and "_total" mean histograms and counters. */
    {"count", "", 1},
};

bool adg_prom_unit(const char *unit, const char **suffix, double *scale)
{
    for (size_t i = 0; unit && i < ADG_ARRAY_LEN(units); i++)
        if (!strcmp(unit, units[i].unit)) {
            *suffix = units[i].suffix;
            *scale = units[i].scale;
            return true;
        }
    *suffix = "";
    *scale = 1;
    return false;
}

double adg_prom_scale(double value, double scale)
{
    if (scale > 0 && scale < 1)
        return value / nearbyint(1 / scale);
    return value * scale;
}

static bool ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && !memcmp(s + n - t, tail, t);
}

void adg_prom_metric_name(const char *name, const char *unit, char *out, size_t len)
{
    if (!len)
        return;
    char buf[ADG_PROM_NAME_MAX + 64];
    size_t n = 0;
    const size_t plen = strlen(ADG_PROM_PREFIX);
    memcpy(buf, ADG_PROM_PREFIX, plen);
    n = plen;
    const char *p = name ? name : "";
    if (!strncmp(p, ADG_PROM_PREFIX, plen))
        p += plen;
    for (; *p && n < ADG_PROM_NAME_MAX; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ok)
            c = '_';
        if (c == '_' && buf[n - 1] == '_')
            continue;
        buf[n++] = c;
    }
    while (n > plen && buf[n - 1] == '_')
        n--;
    if (n == plen) { /* nothing usable in the name */
        memcpy(buf + n, "unnamed", 7);
        n += 7;
    }
    const char *suffix;
    double scale;
    adg_prom_unit(unit, &suffix, &scale);
    if (*suffix) {
        const char *per = strstr(suffix, "_per_second");
        if (per) {
            /* "tokens_per_s" + "t/s": drop the name's own spelling of the rate ... */
            static const char *const rate_tails[] = {"_per_second", "_per_sec", "_per_s", "_ps"};
            for (size_t i = 0; i < ADG_ARRAY_LEN(rate_tails); i++)
                if (ends_with(buf, n, rate_tails[i]) && n - strlen(rate_tails[i]) > plen) {
                    n -= strlen(rate_tails[i]);
                    break;
                }
            /* ... and its noun, when it is the unit's ("engine_tokens" + "tokens_per_second"). */
            char noun[32];
            size_t k = (size_t)(per - suffix);
            if (k + 2 < sizeof noun) {
                noun[0] = '_';
                memcpy(noun + 1, suffix, k);
                noun[k + 1] = 0;
                if (ends_with(buf, n, noun) && n - strlen(noun) >= plen - 1) /* "amxdiag" + "_tokens_per_second" */
                    n -= strlen(noun);
            }
        }
        char tail[40];
        snprintf(tail, sizeof tail, "_%s", suffix);
        if (!ends_with(buf, n, tail) && n + strlen(tail) < sizeof buf) {
            memcpy(buf + n, tail, strlen(tail));
            n += strlen(tail);
        }
    }
    if (n >= len)
        n = len - 1;
    memcpy(out, buf, n);
    out[n] = 0;
}

bool adg_prom_valid_metric_name(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == ':'))
            return false;
    return true;
}

bool adg_prom_valid_label_name(const char *s)
{
    if (!s || !*s || (*s >= '0' && *s <= '9') || !strncmp(s, "__", 2))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    unsigned cp;
    if ((c & 0xe0) == 0xc0) {
        n = 2, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void escape(adg_strbuf *sb, const char *v, bool quote)
{
    if (!v)
        return;
    const unsigned char *s = (const unsigned char *)v;
    while (*s) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep) {
            adg_sb_puts(sb, rep);
            s++;
            continue;
        }
        size_t n = utf8_len(s);
        if (!n) {
            adg_sb_append(sb, "?", 1);
            s++;
            continue;
        }
        adg_sb_append(sb, (const char *)s, n);
        s += n;
    }
}

void adg_prom_escape_label(adg_strbuf *sb, const char *value)
{
    escape(sb, value, true);
}

void adg_prom_escape_help(adg_strbuf *sb, const char *text)
{
    escape(sb, text, false);
}

void adg_prom_value(adg_strbuf *sb, double v)
{
    if (isnan(v)) {
        adg_sb_puts(sb, "NaN");
        return;
    }
    if (isinf(v)) {
        adg_sb_puts(sb, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) { /* -0 too */
        adg_sb_puts(sb, "0");
        return;
    }
    char buf[40];
    /* Whole numbers (byte counts, timestamps) in full: 1795640000, not 1.79564e+09. */
    if (fabs(v) < 9007199254740992.0 && v == nearbyint(v)) {
        snprintf(buf, sizeof buf, "%.0f", v);
        adg_sb_puts(sb, buf);
        return;
    }
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    adg_sb_puts(sb, buf);
}

void adg_prom_family(adg_strbuf *sb, const char *name, const char *type, const char *help)
{
    adg_sb_printf(sb, "# HELP %s ", name);
    adg_prom_escape_help(sb, help && *help ? help : "(no description)");
    adg_sb_printf(sb, "\n# TYPE %s %s\n", name, type ? type : "untyped");
}

void adg_prom_sample(adg_strbuf *sb, const char *name, const adg_prom_label *labels, size_t nlabels, double value)
{
    adg_sb_puts(sb, name);
    bool open = false;
    for (size_t i = 0; i < nlabels; i++) {
        if (!labels[i].value)
            continue;
        adg_sb_puts(sb, open ? "," : "{");
        open = true;
        adg_sb_printf(sb, "%s=\"", labels[i].name);
        adg_prom_escape_label(sb, labels[i].value);
        adg_sb_puts(sb, "\"");
    }
    if (open)
        adg_sb_puts(sb, "}");
    adg_sb_puts(sb, " ");
    adg_prom_value(sb, value);
    adg_sb_puts(sb, "\n");
}

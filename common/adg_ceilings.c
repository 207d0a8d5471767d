#include "common/adg_ceilings.h"

#include <cpuid.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_json.h"
#include "common/adg_log.h"
#include "common/adg_util.h"

void adg_ceilings_key(char *cpu, size_t len, int *ncpus)
{
    uint32_t r[12] = {0}, max = 0, b, c, d;
    __cpuid(0x80000000u, max, b, c, d);
    char brand[49] = "";
    if (max >= 0x80000004u) {
        for (uint32_t i = 0; i < 3; i++)
            __cpuid(0x80000002u + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        memcpy(brand, r, 48);
        brand[48] = '\0';
    }
    char *p = brand;
    while (*p == ' ')
        p++;
    snprintf(cpu, len, "%s", *p ? p : "unknown-cpu");
    adg_rstrip(cpu);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    *ncpus = n > 0 ? (int)n : 1;
}

static adg_error *cache_dir(char **out)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x == '/')
        return asprintf(out, "%s/amxdiag", x) < 0 ? adg_error_new(ADG_E_NOMEM, "out of memory") : NULL;
    if (home && *home)
        return asprintf(out, "%s/.cache/amxdiag", home) < 0 ? adg_error_new(ADG_E_NOMEM, "out of memory") : NULL;
    return adg_error_hint(adg_error_new(ADG_E_IO, "no cache directory: neither XDG_CACHE_HOME nor HOME is set"),
                          "set XDG_CACHE_HOME to a writable directory");
}

adg_error *adg_ceilings_path(const char *cpu, int ncpus, char **path)
{
    char *dir;
    adg_error *e = cache_dir(&dir);
    if (e)
        return e;
    char safe[64];
    size_t j = 0;
    for (const char *p = cpu; *p && j + 1 < sizeof safe; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                  ch == '-' || ch == '_';
        if (!ok && (j == 0 || safe[j - 1] == '_'))
            continue;
        safe[j++] = ok ? ch : '_';
    }
    while (j && safe[j - 1] == '_')
        j--;
    safe[j] = '\0';
    int r = asprintf(path, "%s/ceilings-%s-%dcpu.json", dir, j ? safe : "cpu", ncpus);
    free(dir);
    return r < 0 ? adg_error_new(ADG_E_NOMEM, "out of memory") : NULL;
}

static json_t *rate_json(const adg_rate *r)
{
    json_t *o = json_pack("{s:f,s:i}", "ops_per_s", r->ops_per_s, "threads", r->threads);
    json_object_set_new(o, "per_cycle_per_core", r->per_cycle > 0 ? json_real(r->per_cycle) : json_null());
    json_object_set_new(o, "peak_per_cycle_per_core", r->peak_per_cycle > 0 ? json_real(r->peak_per_cycle) : json_null());
    json_object_set_new(o, "fraction_of_peak",
                        r->peak_per_cycle > 0 && r->per_cycle > 0 ? json_real(r->per_cycle / r->peak_per_cycle)
                                                                  : json_null());
    json_object_set_new(o, "why", r->why[0] ? json_string(r->why) : json_null());
    return o;
}

json_t *adg_ceilings_to_json(const adg_ceilings *c)
{
    json_t *nodes = json_array();
    for (size_t i = 0; i < c->nnodes; i++)
        json_array_append_new(nodes, json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "node", c->nodes[i].node,
                                               "threads", c->nodes[i].threads, "read_gbs", c->nodes[i].read_gbs,
                                               "read_core_gbs", c->nodes[i].read_core_gbs, "read_plain_gbs",
                                               c->nodes[i].read_plain_gbs, "read_pf_gbs", c->nodes[i].read_pf_gbs,
                                               "read_multi_gbs", c->nodes[i].read_multi_gbs, "triad_gbs",
                                               c->nodes[i].triad_gbs, "buffer_bytes", c->nodes[i].buffer_bytes));
    return json_pack("{s:s,s:s,s:i,s:s,s:f,s:f,s:f,s:s,s:{s:o,s:o,s:o,s:o,s:o,s:o},s:o}", "schema",
                     ADG_CEILINGS_SCHEMA, "cpu", c->cpu, "ncpus", c->ncpus, "created", c->created, "seconds", c->seconds,
                     "clock_ghz", c->clock_ghz, "clock_all_ghz", c->clock_all_ghz, "clock_note", c->clock_note,
                     "rates", "amx_int8_core",
                     rate_json(&c->amx_int8_core), "amx_int8_all", rate_json(&c->amx_int8_all), "amx_bf16_core",
                     rate_json(&c->amx_bf16_core), "amx_bf16_all", rate_json(&c->amx_bf16_all), "vnni_core",
                     rate_json(&c->vnni_core), "vnni_all", rate_json(&c->vnni_all), "memory", nodes);
}

static double num(const json_t *j)
{
    return json_is_number(j) ? json_number_value(j) : 0;
}

static void rate_from(const json_t *j, adg_rate *r)
{
    memset(r, 0, sizeof *r);
    r->ops_per_s = num(json_object_get(j, "ops_per_s"));
    r->per_cycle = num(json_object_get(j, "per_cycle_per_core"));
    r->peak_per_cycle = num(json_object_get(j, "peak_per_cycle_per_core"));
    r->threads = (int)json_integer_value(json_object_get(j, "threads"));
    const char *why = json_string_value(json_object_get(j, "why"));
    if (why)
        snprintf(r->why, sizeof r->why, "%s", why);
}

adg_error *adg_ceilings_from_json(const json_t *j, const char *what, adg_ceilings *c)
{
    memset(c, 0, sizeof *c);
    adg_error *e = adg_json_check_schema(j, "amxdiag.ceilings", 1, what);
    if (e)
        return e;
    const json_t *rates = json_object_get(j, "rates"), *mem = json_object_get(j, "memory");
    const char *cpu = json_string_value(json_object_get(j, "cpu"));
    if (!cpu || !json_is_integer(json_object_get(j, "ncpus")) || !json_is_object(rates) || !json_is_array(mem))
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s lacks \"cpu\", \"ncpus\", \"rates\" or \"memory\"", what),
                              "delete it and run 'amxdiag probe --bench' again");
    snprintf(c->cpu, sizeof c->cpu, "%s", cpu);
    c->ncpus = (int)json_integer_value(json_object_get(j, "ncpus"));
    const char *cr = json_string_value(json_object_get(j, "created"));
    snprintf(c->created, sizeof c->created, "%s", cr ? cr : "");
    c->seconds = num(json_object_get(j, "seconds"));
    c->clock_ghz = num(json_object_get(j, "clock_ghz"));
    c->clock_all_ghz = num(json_object_get(j, "clock_all_ghz"));
    const char *cn = json_string_value(json_object_get(j, "clock_note"));   /* absent before session 7 */
    snprintf(c->clock_note, sizeof c->clock_note, "%s", cn ? cn : "");
    rate_from(json_object_get(rates, "amx_int8_core"), &c->amx_int8_core);
    rate_from(json_object_get(rates, "amx_int8_all"), &c->amx_int8_all);
    rate_from(json_object_get(rates, "amx_bf16_core"), &c->amx_bf16_core);
    rate_from(json_object_get(rates, "amx_bf16_all"), &c->amx_bf16_all);
    rate_from(json_object_get(rates, "vnni_core"), &c->vnni_core);
    rate_from(json_object_get(rates, "vnni_all"), &c->vnni_all);
    size_t i;
    json_t *n;
    json_array_foreach(mem, i, n) {
        if (c->nnodes == ADG_CEIL_MAX_NODES)
            break;
        adg_node_bw *b = &c->nodes[c->nnodes++];
        b->node = (int)json_integer_value(json_object_get(n, "node"));
        b->threads = (int)json_integer_value(json_object_get(n, "threads"));
        b->read_gbs = num(json_object_get(n, "read_gbs"));
        b->triad_gbs = num(json_object_get(n, "triad_gbs"));
        b->read_core_gbs = num(json_object_get(n, "read_core_gbs"));
        b->read_plain_gbs = num(json_object_get(n, "read_plain_gbs")); /* 0 in caches written before them */
        b->read_pf_gbs = num(json_object_get(n, "read_pf_gbs"));
        b->read_multi_gbs = num(json_object_get(n, "read_multi_gbs"));
        b->buffer_bytes = num(json_object_get(n, "buffer_bytes"));
    }
    return NULL;
}

static adg_error *mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return adg_error_errno(ADG_E_IO, errno, "cannot create %s", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return adg_error_hint(adg_error_errno(ADG_E_IO, errno, "cannot create the cache directory %s", buf),
                              "set XDG_CACHE_HOME to a writable directory");
    return NULL;
}

adg_error *adg_ceilings_save(const adg_ceilings *c)
{
    char *path;
    adg_error *e = adg_ceilings_path(c->cpu, c->ncpus, &path);
    if (e)
        return e;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    e = mkdir_p(path);
    *slash = '/';
    if (!e) {
        json_t *j = adg_ceilings_to_json(c);
        e = j ? adg_json_write_atomic(path, j) : adg_error_new(ADG_E_NOMEM, "out of memory");
        json_decref(j);
    }
    free(path);
    return e;
}

adg_error *adg_ceilings_load(const char *cpu, int ncpus, adg_ceilings *c, bool *found)
{
    *found = false;
    memset(c, 0, sizeof *c);
    char *path;
    adg_error *e = adg_ceilings_path(cpu, ncpus, &path);
    if (e)
        return e;
    if (access(path, F_OK) != 0) {
        free(path);
        return NULL;
    }
    json_t *j;
    e = adg_json_load_file(path, "machine ceilings", &j);
    if (!e) {
        char what[4200];
        snprintf(what, sizeof what, "machine ceilings %s", path);
        e = adg_ceilings_from_json(j, what, c);
        json_decref(j);
        *found = e == NULL;
    }
    free(path);
    return e;
}

adg_error *adg_ceilings_load_current(adg_ceilings *c, bool *found)
{
    char cpu[64];
    int n;
    adg_ceilings_key(cpu, sizeof cpu, &n);
    return adg_ceilings_load(cpu, n, c, found);
}

size_t adg_read_pf_bytes(void)
{
    const char *pf = getenv("AMXDIAG_BENCH_READ_PF");
    uint64_t pfb;
    if (pf && *pf) {
        if (adg_parse_u64(pf, &pfb) && pfb <= (1u << 20))
            return (size_t)pfb & ~(size_t)63;
        adg_warn("AMXDIAG_BENCH_READ_PF=%s ignored: use a byte distance 0 .. 1048576", pf);
    }
    return ADG_READ_PF_DEFAULT;
}

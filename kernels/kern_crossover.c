/* The measured M where AMX tiles overtake AVX-512 VNNI, stored by `amxdiag bench kernels
 * --save-crossover` and read by every kernel context. */
#include "kernels/kern_cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/adg_json.h"

/* Defaults: what `bench kernels --save-crossover` measured at attn_q (2048->4096) on the
 * reference machine (Emerald Rapids, 16 cores, 2026-11-25, docs/PERFORMANCE.md), AMX and
 * VNNI timed alternately on one context: VNNI wins at M = 1 for every type; AMX wins from
 * M = 4 for q8_0 and bf16, from M = 16 for q4_0 (its tiles need the nibbles unpacked
 * first).  A machine's own measurement replaces them. */
void kern_crossover_defaults(kern_crossover *c)
{
    c->q8_0 = 4;
    c->q4_0 = 16;
    c->bf16 = 4;
    c->measured = false;
}

char *kern_crossover_default_path(void)
{
    const char *env = getenv("AMXDIAG_CROSSOVER");
    char *p = NULL;
    if (env && *env)
        return strdup(env);
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg) {
        if (asprintf(&p, "%s/amxdiag/crossover.json", xdg) < 0)
            return NULL;
    } else if (home && *home) {
        if (asprintf(&p, "%s/.cache/amxdiag/crossover.json", home) < 0)
            return NULL;
    }
    return p;
}

static adg_error *get_m(json_t *root, const char *key, int *out, const char *path)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return NULL;   /* keep the default for a type the file does not name */
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20)
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "crossover file %s: \"%s\" must be an integer in 1..1048576", path, key),
                              "rerun `amxdiag bench kernels --save-crossover` to rewrite it");
    *out = (int)json_integer_value(v);
    return NULL;
}

adg_error *kern_crossover_load(const char *path, kern_crossover *c)
{
    json_t *root;
    adg_error *e = adg_json_load_file(path, "crossover file", &root);
    if (e)
        return e;
    kern_crossover t = *c;
    e = adg_json_check_schema(root, "amxdiag.crossover", 1, "crossover file");
    json_t *m = e ? NULL : json_object_get(root, "amx_min_m");
    if (!e && !json_is_object(m))
        e = adg_error_new(ADG_E_FORMAT, "crossover file %s has no \"amx_min_m\" object", path);
    if (!e)
        e = get_m(m, "q8_0", &t.q8_0, path);
    if (!e)
        e = get_m(m, "q4_0", &t.q4_0, path);
    if (!e)
        e = get_m(m, "bf16", &t.bf16, path);
    json_decref(root);
    if (e)
        return e;
    t.measured = true;
    *c = t;
    return NULL;
}

static void mkdirs_for(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return;
    for (char *s = d + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(d, 0755);
            *s = '/';
        }
    free(d);
}

adg_error *kern_crossover_save(const char *path, const kern_crossover *c)
{
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string("amxdiag.crossover/1"));
    json_object_set_new(root, "meaning", json_string("smallest M at which AMX tiles beat AVX-512 VNNI, per weight type"));
    json_t *m = json_object();
    json_object_set_new(m, "q8_0", json_integer(c->q8_0));
    json_object_set_new(m, "q4_0", json_integer(c->q4_0));
    json_object_set_new(m, "bf16", json_integer(c->bf16));
    json_object_set_new(root, "amx_min_m", m);
    mkdirs_for(path);
    adg_error *e = adg_json_write_atomic(path, root);
    json_decref(root);
    return e;
}

/* The default model of `amxdiag run` without -m: created once, cached. */
#include "kernels/kern_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_log.h"

#define DEFAULT_PRESET "tiny"
#define DEFAULT_FILE "amxdiag-tiny-q4_0-s1-v1.gguf"

static adg_error *mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        int err = errno;
        *p = '/';
        if (rc != 0 && err != EEXIST)
            return adg_error_hint(adg_error_errno(err == EACCES ? ADG_E_PERMISSION : ADG_E_IO, err,
                                                  "cannot create the model cache directory %s", path),
                                  "set XDG_CACHE_HOME to a writable directory, or pass a model with -m");
    }
    return NULL;
}

adg_error *kern_engine_default_model(char **path, bool *created)
{
    *path = NULL;
    *created = false;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *p = NULL;
    int n;
    if (xdg && *xdg == '/')
        n = asprintf(&p, "%s/amxdiag/models/%s", xdg, DEFAULT_FILE);
    else if (home && *home)
        n = asprintf(&p, "%s/.cache/amxdiag/models/%s", home, DEFAULT_FILE);
    else
        return adg_error_hint(adg_error_new(ADG_E_USAGE, "no cache directory for the default model (HOME is not set)"),
                              "set XDG_CACHE_HOME or HOME, or pass a model with -m");
    if (n < 0)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    struct stat st;
    if (stat(p, &st) == 0) {
        *path = p;
        return NULL;
    }
    adg_error *e = mkdirs(p);
    if (!e) {
        kern_model_create_opts o = {.preset = DEFAULT_PRESET, .quant = KERN_TYPE_Q4_0, .seed = 1};
        adg_info("run: creating the default model %s", p);
        e = kern_model_create(&o, p, NULL);
    }
    if (e) {
        free(p);
        return adg_error_prefix(e, "default model");
    }
    *created = true;
    *path = p;
    return NULL;
}

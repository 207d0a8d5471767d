/* Finding, loading and checking libcupti. */
#include "profiler/cupti_load.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint32_t cupti_build_version(void)
{
#ifdef ADG_HAVE_CUPTI
    return CUPTI_API_VERSION;
#else
    return 0;
#endif
}

/* Since CUDA 13 the version reads xxyyzz (toolkit major, minor, CUPTI patch); before it
 * was a small counter (28 = CUDA 12.9 Update 1). */
static void describe(uint32_t v, char *buf, size_t len)
{
    if (v >= 10000)
        snprintf(buf, len, "%u (CUDA %u.%u)", v, v / 10000, v / 100 % 100);
    else
        snprintf(buf, len, "%u (CUDA 12.9 or older)", v);
}

bool cupti_version_compatible(uint32_t runtime, uint32_t built, char *why, size_t why_len)
{
    char r[48], b[48];
    describe(runtime, r, sizeof r);
    describe(built, b, sizeof b);
    if (!built) {
        snprintf(why, why_len, "amxdiag was built without the CUPTI headers");
        return false;
    }
    if (runtime < 10000 || runtime / 10000 != built / 10000) {
        snprintf(why, why_len,
                 "libcupti reports API version %s, this amxdiag was built against %s: the activity record "
                 "layouts differ between major releases",
                 r, b);
        return false;
    }
    if (runtime / 100 < built / 100) {
        snprintf(why, why_len,
                 "libcupti reports API version %s, older than the %s this amxdiag was built against: its "
                 "activity records may lack fields amxdiag reads",
                 r, b);
        return false;
    }
    if (why_len)
        why[0] = 0;
    return true;
}

bool cupti_profiling_restricted(bool *known)
{
    *known = false;
    FILE *f = fopen("/proc/driver/nvidia/params", "r");
    if (!f)
        return false;
    char line[256];
    bool restricted = false;
    while (fgets(line, sizeof line, f)) {
        unsigned v;
        if (sscanf(line, "RmProfilingAdminOnly: %u", &v) == 1) {
            *known = true;
            restricted = v != 0;
        }
    }
    fclose(f);
    return restricted && geteuid() != 0;
}

#ifdef ADG_HAVE_CUPTI

const char *cupti_result_str(const cupti_api *api, CUptiResult r)
{
    static _Thread_local char buf[160];
    const char *s = NULL;
    if (api && api->GetResultString && api->GetResultString(r, &s) == CUPTI_SUCCESS && s)
        snprintf(buf, sizeof buf, "%s (%d)", s, (int)r);
    else
        snprintf(buf, sizeof buf, "CUPTI error %d", (int)r);
    return buf;
}

static void *try_open(const char *path, char *tried, size_t tried_len)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    size_t l = strlen(tried);
    if (l + 4 < tried_len)
        snprintf(tried + l, tried_len - l, "%s%s", l ? ", " : "", path);
    return h;
}

static void *open_dir(const char *dir, char *tried, size_t tried_len, char *path, size_t path_len)
{
    static const char *const names[] = {"libcupti.so.13", "libcupti.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, path_len, "%s/%s", dir, names[i]);
        if (access(path, R_OK) != 0)
            continue;
        void *h = try_open(path, tried, tried_len);
        if (h)
            return h;
    }
    return NULL;
}

static void *search(char *path, size_t path_len, char *tried, size_t tried_len)
{
    void *h;
    const char *env = getenv("CUPTI_PATH");
    if (env && *env) {
        if ((h = open_dir(env, tried, tried_len, path, path_len)))
            return h;
        snprintf(path, path_len, "%s", env);
        if (access(env, R_OK) == 0 && (h = try_open(env, tried, tried_len)))
            return h;
    }
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    static const char *const subs[] = {"lib64", "lib", "extras/CUPTI/lib64", "targets/x86_64-linux/lib"};
    for (size_t i = 0; i < sizeof homes / sizeof homes[0]; i++) {
        if (!homes[i] || !*homes[i])
            continue;
        for (size_t j = 0; j < sizeof subs / sizeof subs[0]; j++) {
            char dir[400];
            snprintf(dir, sizeof dir, "%s/%s", homes[i], subs[j]);
            if ((h = open_dir(dir, tried, tried_len, path, path_len)))
                return h;
        }
    }
    static const char *const sonames[] = {"libcupti.so.13", "libcupti.so"};
    for (size_t i = 0; i < sizeof sonames / sizeof sonames[0]; i++) {
        snprintf(path, path_len, "%s", sonames[i]);
        if ((h = try_open(sonames[i], tried, tried_len)))
            return h;
    }
    return NULL;
}

#define SYM(field, name, required)                                                                   \
    do {                                                                                             \
        void *s_ = dlsym(api->handle, name);                                                         \
        if (!s_ && required) {                                                                       \
            adg_error *e_ = adg_error_new(ADG_E_UNSUPPORTED, "%s lacks %s", api->path, name);        \
            cupti_api_close(api);                                                                    \
            return adg_error_hint(e_, "install the CUPTI of CUDA 13 (the toolkit's extras) or point " \
                                      "CUPTI_PATH at it");                                           \
        }                                                                                            \
        memcpy(&api->field, &s_, sizeof s_);                                                         \
    } while (0)

adg_error *cupti_api_load(cupti_api *api)
{
    memset(api, 0, sizeof *api);
    char tried[1024] = "";
    api->handle = search(api->path, sizeof api->path, tried, sizeof tried);
    if (!api->handle)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "libcupti not found (tried: %s)",
                                            tried[0] ? tried : "nothing"),
                              "install the CUDA 13 toolkit's CUPTI (cuda-cupti-13-0) or set CUPTI_PATH to the "
                              "directory that holds libcupti.so.13");
    SYM(GetVersion, "cuptiGetVersion", 1);
    SYM(GetResultString, "cuptiGetResultString", 1);
    SYM(Subscribe, "cuptiSubscribe", 1);
    SYM(Subscribe_v2, "cuptiSubscribe_v2", 0);
    SYM(Unsubscribe, "cuptiUnsubscribe", 1);
    SYM(EnableDomain, "cuptiEnableDomain", 1);
    SYM(EnableCallback, "cuptiEnableCallback", 1);
    SYM(ActivityEnable, "cuptiActivityEnable", 1);
    SYM(ActivityDisable, "cuptiActivityDisable", 1);
    SYM(ActivityRegisterCallbacks, "cuptiActivityRegisterCallbacks", 1);
    SYM(ActivityGetNextRecord, "cuptiActivityGetNextRecord", 1);
    SYM(ActivityFlushAll, "cuptiActivityFlushAll", 1);
    SYM(ActivityGetNumDroppedRecords, "cuptiActivityGetNumDroppedRecords", 1);
    SYM(GetTimestamp, "cuptiGetTimestamp", 1);
    SYM(ActivityFlushPeriod, "cuptiActivityFlushPeriod", 0);
    SYM(ActivityRegisterTimestampCallback, "cuptiActivityRegisterTimestampCallback", 0);
    SYM(Finalize, "cuptiFinalize", 0);
    CUptiResult r = api->GetVersion(&api->version);
    if (r != CUPTI_SUCCESS) {
        adg_error *e = adg_error_new(ADG_E_UNSUPPORTED, "cuptiGetVersion failed in %s: %s", api->path,
                                     cupti_result_str(api, r));
        cupti_api_close(api);
        return e;
    }
    char why[256];
    if (!cupti_version_compatible(api->version, CUPTI_API_VERSION, why, sizeof why)) {
        adg_error *e = adg_error_new(ADG_E_UNSUPPORTED, "%s: %s", api->path, why);
        cupti_api_close(api);
        return adg_error_hint(e, "point CUPTI_PATH at the CUPTI of the CUDA release amxdiag was built with, or "
                                 "rebuild amxdiag against this one");
    }
    return NULL;
}

void cupti_api_close(cupti_api *api)
{
    /* libcupti is never dlclose'd: its threads and the driver's hooks outlive any caller. */
    api->handle = NULL;
}

#endif

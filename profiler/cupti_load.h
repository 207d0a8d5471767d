/* libcupti, loaded at run time (never linked): the entry points amxdiag uses, and the
 * checks that the library's activity records have the layout this build was compiled
 * for.  Compiled into amxdiag and into the injection library. */
#ifndef CUPTI_LOAD_H
#define CUPTI_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

#ifdef ADG_HAVE_CUPTI
#include <cupti.h>

typedef struct cupti_api {
    void *handle;
    char path[512];
    uint32_t version;   /* cuptiGetVersion */
    CUptiResult (*GetVersion)(uint32_t *);
    CUptiResult (*GetResultString)(CUptiResult, const char **);
    CUptiResult (*Subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
    CUptiResult (*Subscribe_v2)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *, CUpti_SubscriberParams *);
    CUptiResult (*Unsubscribe)(CUpti_SubscriberHandle);
    CUptiResult (*EnableDomain)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain);
    CUptiResult (*EnableCallback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain, CUpti_CallbackId);
    CUptiResult (*ActivityEnable)(CUpti_ActivityKind);
    CUptiResult (*ActivityDisable)(CUpti_ActivityKind);
    CUptiResult (*ActivityRegisterCallbacks)(CUpti_BuffersCallbackRequestFunc, CUpti_BuffersCallbackCompleteFunc);
    CUptiResult (*ActivityGetNextRecord)(uint8_t *, size_t, CUpti_Activity **);
    CUptiResult (*ActivityFlushAll)(uint32_t);
    CUptiResult (*ActivityGetNumDroppedRecords)(CUcontext, uint32_t, size_t *);
    CUptiResult (*GetTimestamp)(uint64_t *);
    /* optional (NULL when absent) */
    CUptiResult (*ActivityFlushPeriod)(uint32_t);
    CUptiResult (*ActivityRegisterTimestampCallback)(CUpti_TimestampCallbackFunc);
    CUptiResult (*Finalize)(void);
} cupti_api;

/* Finds and loads libcupti ($CUPTI_PATH — a file or a directory —, $CUDA_HOME/$CUDA_PATH,
 * /usr/local/cuda/{lib64,lib,extras/CUPTI/lib64}, then the loader's own search for
 * libcupti.so.13 and libcupti.so) and checks its version.  Errors say what was tried. */
adg_error *cupti_api_load(cupti_api *api);
void cupti_api_close(cupti_api *api);
/* "CUPTI_ERROR_X: text" for a CUPTI result (never NULL). */
const char *cupti_result_str(const cupti_api *api, CUptiResult r);
#endif

/* The CUPTI API version the build's headers describe (0 when built without them). */
uint32_t cupti_build_version(void);
/* Whether a runtime CUPTI version is one whose activity records this build can read:
 * the same major release, not older than the headers.  *why gets the reason when not. */
bool cupti_version_compatible(uint32_t runtime, uint32_t built, char *why, size_t why_len);
/* Whether profiling counters are restricted to admin users on this machine
 * (RmProfilingAdminOnly: 1 in /proc/driver/nvidia/params) and we are not root.
 * *known is false when the file cannot be read. */
bool cupti_profiling_restricted(bool *known);

#endif

/* The parameter structs of CUPTI's profiler host API (cupti_profiler_host.h of CUDA 13),
 * declared here because that header includes the C++ <string> and cannot be compiled as
 * C.  Same members, same order: tests/cupti_range.cmake compiles a C++ check that every
 * struct and STRUCT_SIZE here equals the toolkit's. */
#ifndef CUPTI_RANGE_HOST_H
#define CUPTI_RANGE_HOST_H

#include <stddef.h>
#include <stdint.h>

#define CUPTI_HOST_STRUCT_SIZE(type_, last_) (offsetof(type_, last_) + sizeof(((type_ *)0)->last_))

typedef struct cupti_host_object cupti_host_object; /* CUpti_Profiler_Host_Object */

enum { CUPTI_HOST_PROFILER_RANGE = 0 }; /* CUPTI_PROFILER_TYPE_RANGE_PROFILER */

typedef struct cupti_host_init_params {
    size_t structSize;
    void *pPriv;
    int profilerType; /* CUpti_ProfilerType */
    const char *pChipName;
    const uint8_t *pCounterAvailabilityImage;
    cupti_host_object *pHostObject;
} cupti_host_init_params;

typedef struct cupti_host_deinit_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
} cupti_host_deinit_params;

typedef struct cupti_host_metric_props_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
    const char *pMetricName;
    const char *pDescription;
    const char *pHwUnit;
    const char *pDimUnit;
    int metricType; /* CUpti_MetricType */
} cupti_host_metric_props_params;

typedef struct cupti_host_evaluate_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
    const uint8_t *pCounterDataImage;
    size_t counterDataImageSize;
    size_t rangeIndex;
    const char **ppMetricNames;
    size_t numMetrics;
    double *pMetricValues;
} cupti_host_evaluate_params;

typedef struct cupti_host_add_metrics_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
    const char **ppMetricNames;
    size_t numMetrics;
} cupti_host_add_metrics_params;

typedef struct cupti_host_config_size_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
    size_t configImageSize;
} cupti_host_config_size_params;

typedef struct cupti_host_config_image_params {
    size_t structSize;
    void *pPriv;
    cupti_host_object *pHostObject;
    size_t configImageSize;
    uint8_t *pConfigImage;
} cupti_host_config_image_params;

typedef struct cupti_host_passes_params {
    size_t structSize;
    void *pPriv;
    size_t configImageSize;
    uint8_t *pConfigImage;
    size_t numOfPasses;
} cupti_host_passes_params;

#define CUPTI_HOST_INIT_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_init_params, pHostObject)
#define CUPTI_HOST_DEINIT_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_deinit_params, pHostObject)
#define CUPTI_HOST_METRIC_PROPS_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_metric_props_params, metricType)
#define CUPTI_HOST_EVALUATE_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_evaluate_params, pMetricValues)
#define CUPTI_HOST_ADD_METRICS_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_add_metrics_params, numMetrics)
#define CUPTI_HOST_CONFIG_SIZE_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_config_size_params, configImageSize)
#define CUPTI_HOST_CONFIG_IMAGE_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_config_image_params, pConfigImage)
#define CUPTI_HOST_PASSES_SIZE CUPTI_HOST_STRUCT_SIZE(cupti_host_passes_params, numOfPasses)

#endif

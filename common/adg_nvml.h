/* NVML (libnvidia-ml.so.1, part of the NVIDIA driver), loaded at run time.
 *
 * One loader for everything that asks NVML: the probe (persistence mode) and the
 * profiler's nvml collector (memory, utilisation, power, clocks, PCIe, processes).  As
 * with libcuda (kernels/cuda/cuda_driver.h) and as nvtop does, the library is dlopen'ed
 * and its entry points kept in a table: one binary runs, and says why, where there is no
 * NVIDIA driver.  The types are ABI stand-ins for nvml.h's (nvmlReturn_t is an enum the
 * size of int, handles are opaque pointers), prefixed so nvml.h may be included beside. */
#ifndef ADG_NVML_H
#define ADG_NVML_H

#include <stdbool.h>

#include "common/adg_error.h"

typedef int adg_nvml_return; /* nvmlReturn_t */
typedef struct adg_nvml_device_st *adg_nvml_device;

/* nvmlReturn_t values the code tests for (nvml.h numbering). */
enum {
    ADG_NVML_SUCCESS = 0,
    ADG_NVML_ERROR_UNINITIALIZED = 1,
    ADG_NVML_ERROR_INVALID_ARGUMENT = 2,
    ADG_NVML_ERROR_NOT_SUPPORTED = 3,
    ADG_NVML_ERROR_NO_PERMISSION = 4,
    ADG_NVML_ERROR_NOT_FOUND = 6,
    ADG_NVML_ERROR_INSUFFICIENT_SIZE = 7,
    ADG_NVML_ERROR_DRIVER_NOT_LOADED = 9,
    ADG_NVML_ERROR_GPU_IS_LOST = 15,
    ADG_NVML_ERROR_NO_DATA = 21,
    ADG_NVML_ERROR_UNKNOWN = 999,
};

/* nvmlClockType_t, nvmlTemperatureSensors_t, nvmlPcieUtilCounter_t. */
enum { ADG_NVML_CLOCK_SM = 1 };
enum { ADG_NVML_TEMPERATURE_GPU = 0 };
enum { ADG_NVML_PCIE_UTIL_TX_BYTES = 0, ADG_NVML_PCIE_UTIL_RX_BYTES = 1 };

/* usedGpuMemory when the driver does not tell (no permission, some VMs). */
#define ADG_NVML_VALUE_NOT_AVAILABLE (~0ull)

typedef struct adg_nvml_memory {   /* nvmlMemory_t (v1) */
    unsigned long long total, free, used;
} adg_nvml_memory;

typedef struct adg_nvml_utilization { /* nvmlUtilization_t */
    unsigned int gpu, memory;        /* % of the last sample period */
} adg_nvml_utilization;

typedef struct adg_nvml_process_v1 { /* nvmlProcessInfo_v1_t */
    unsigned int pid;
    unsigned long long usedGpuMemory;
} adg_nvml_process_v1;

typedef struct adg_nvml_process { /* nvmlProcessInfo_v2_t, the layout of _v2 and _v3 */
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} adg_nvml_process;

/* The entry points.  Required ones are non-NULL after a successful open; optional ones
 * (marked) are NULL where the driver's NVML lacks them. */
typedef struct adg_nvml {
    void *handle;
    char path[256];
    adg_nvml_return (*Init)(void);                 /* nvmlInit_v2 */
    adg_nvml_return (*Shutdown)(void);
    const char *(*ErrorString)(adg_nvml_return);
    adg_nvml_return (*DeviceGetCount)(unsigned int *count);               /* _v2 */
    adg_nvml_return (*DeviceGetHandleByIndex)(unsigned int i, adg_nvml_device *d); /* _v2 */
    /* optional from here */
    adg_nvml_return (*SystemGetDriverVersion)(char *buf, unsigned int len);
    adg_nvml_return (*DeviceGetHandleByPciBusId)(const char *bus, adg_nvml_device *d); /* _v2 */
    adg_nvml_return (*DeviceGetName)(adg_nvml_device d, char *buf, unsigned int len);
    adg_nvml_return (*DeviceGetUUID)(adg_nvml_device d, char *buf, unsigned int len);
    adg_nvml_return (*DeviceGetPersistenceMode)(adg_nvml_device d, int *mode);
    adg_nvml_return (*DeviceGetMemoryInfo)(adg_nvml_device d, adg_nvml_memory *m);
    adg_nvml_return (*DeviceGetUtilizationRates)(adg_nvml_device d, adg_nvml_utilization *u);
    adg_nvml_return (*DeviceGetPowerUsage)(adg_nvml_device d, unsigned int *mw);
    adg_nvml_return (*DeviceGetEnforcedPowerLimit)(adg_nvml_device d, unsigned int *mw);
    adg_nvml_return (*DeviceGetTemperature)(adg_nvml_device d, int sensor, unsigned int *c);
    adg_nvml_return (*DeviceGetClockInfo)(adg_nvml_device d, int type, unsigned int *mhz);
    adg_nvml_return (*DeviceGetMaxClockInfo)(adg_nvml_device d, int type, unsigned int *mhz);
    adg_nvml_return (*DeviceGetPcieThroughput)(adg_nvml_device d, int counter, unsigned int *kbs);
    /* The newest of nvmlDeviceGetComputeRunningProcesses_v3, _v2, (v1): procs_version says
     * which (3, 2, 1; 0 none).  v2 and v3 fill adg_nvml_process, v1 adg_nvml_process_v1. */
    adg_nvml_return (*DeviceGetComputeRunningProcesses)(adg_nvml_device d, unsigned int *n, void *infos);
    int procs_version;
} adg_nvml;

/* Loads NVML ($AMXDIAG_LIBNVML names another library, for tests), resolves the entry
 * points and calls nvmlInit_v2.  The error says why not: no library (no NVIDIA driver),
 * a library without the required entry points, or nvmlInit's own error text. */
adg_error *adg_nvml_open(adg_nvml *n);
/* nvmlShutdown and unload (NVML counts its inits: other users in the process keep theirs). */
void adg_nvml_close(adg_nvml *n);
/* "NVML_ERROR_NOT_SUPPORTED (Not Supported)": the symbolic name and the library's text. */
const char *adg_nvml_error(const adg_nvml *n, adg_nvml_return rc, char *buf, unsigned len);

#endif

/* The NVML loader (adg_nvml.h). */
#include "common/adg_nvml.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *rc_name(adg_nvml_return rc)
{
    /* nvml.h's names, for messages that stay searchable when the library's text is terse. */
    static const char *const names[] = {
        [0] = "NVML_SUCCESS",
        [1] = "NVML_ERROR_UNINITIALIZED",
        [2] = "NVML_ERROR_INVALID_ARGUMENT",
        [3] = "NVML_ERROR_NOT_SUPPORTED",
        [4] = "NVML_ERROR_NO_PERMISSION",
        [5] = "NVML_ERROR_ALREADY_INITIALIZED",
        [6] = "NVML_ERROR_NOT_FOUND",
        [7] = "NVML_ERROR_INSUFFICIENT_SIZE",
        [8] = "NVML_ERROR_INSUFFICIENT_POWER",
        [9] = "NVML_ERROR_DRIVER_NOT_LOADED",
        [10] = "NVML_ERROR_TIMEOUT",
        [11] = "NVML_ERROR_IRQ_ISSUE",
        [12] = "NVML_ERROR_LIBRARY_NOT_FOUND",
        [13] = "NVML_ERROR_FUNCTION_NOT_FOUND",
        [14] = "NVML_ERROR_CORRUPTED_INFOROM",
        [15] = "NVML_ERROR_GPU_IS_LOST",
        [16] = "NVML_ERROR_RESET_REQUIRED",
        [17] = "NVML_ERROR_OPERATING_SYSTEM",
        [18] = "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
        [19] = "NVML_ERROR_IN_USE",
        [20] = "NVML_ERROR_MEMORY",
        [21] = "NVML_ERROR_NO_DATA",
    };
    if (rc >= 0 && (size_t)rc < sizeof names / sizeof names[0] && names[rc])
        return names[rc];
    return rc == 999 ? "NVML_ERROR_UNKNOWN" : "NVML error";
}

const char *adg_nvml_error(const adg_nvml *n, adg_nvml_return rc, char *buf, unsigned len)
{
    const char *text = n && n->ErrorString ? n->ErrorString(rc) : NULL;
    if (text && *text)
        snprintf(buf, len, "%s (%s)", rc_name(rc), text);
    else
        snprintf(buf, len, "%s (%d)", rc_name(rc), rc);
    return buf;
}

/* dlsym into a function pointer without the object/function pointer cast warning. */
static bool sym(void *h, const char *name, void *fnptr)
{
    void *p = dlsym(h, name);
    memcpy(fnptr, &p, sizeof p);
    return p != NULL;
}

adg_error *adg_nvml_open(adg_nvml *n)
{
    memset(n, 0, sizeof *n);
    const char *env = getenv("AMXDIAG_LIBNVML");
    const char *path = env && *env ? env : "libnvidia-ml.so.1";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        adg_error *e = adg_error_new(ADG_E_UNSUPPORTED, "cannot load NVML (%s): %s", path, why ? why : "not found");
        return adg_error_hint(e, env && *env ? "AMXDIAG_LIBNVML names a library that does not load; unset it"
                                             : "NVML comes with the NVIDIA driver: install the driver (nvidia-smi "
                                               "uses the same library)");
    }
    n->handle = h;
    snprintf(n->path, sizeof n->path, "%s", path);
    bool ok = sym(h, "nvmlInit_v2", &n->Init) && sym(h, "nvmlShutdown", &n->Shutdown) &&
              sym(h, "nvmlDeviceGetCount_v2", &n->DeviceGetCount) &&
              sym(h, "nvmlDeviceGetHandleByIndex_v2", &n->DeviceGetHandleByIndex);
    sym(h, "nvmlErrorString", &n->ErrorString);
    if (!ok) {
        dlclose(h);
        memset(n, 0, sizeof *n);
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "%s lacks nvmlInit_v2 or the device entry points", path),
                              "the NVIDIA driver is too old for amxdiag's NVML use (R450 or newer needed)");
    }
    sym(h, "nvmlSystemGetDriverVersion", &n->SystemGetDriverVersion);
    sym(h, "nvmlDeviceGetHandleByPciBusId_v2", &n->DeviceGetHandleByPciBusId);
    sym(h, "nvmlDeviceGetName", &n->DeviceGetName);
    sym(h, "nvmlDeviceGetUUID", &n->DeviceGetUUID);
    sym(h, "nvmlDeviceGetPersistenceMode", &n->DeviceGetPersistenceMode);
    sym(h, "nvmlDeviceGetMemoryInfo", &n->DeviceGetMemoryInfo);
    sym(h, "nvmlDeviceGetUtilizationRates", &n->DeviceGetUtilizationRates);
    sym(h, "nvmlDeviceGetPowerUsage", &n->DeviceGetPowerUsage);
    sym(h, "nvmlDeviceGetEnforcedPowerLimit", &n->DeviceGetEnforcedPowerLimit);
    sym(h, "nvmlDeviceGetTemperature", &n->DeviceGetTemperature);
    sym(h, "nvmlDeviceGetClockInfo", &n->DeviceGetClockInfo);
    sym(h, "nvmlDeviceGetMaxClockInfo", &n->DeviceGetMaxClockInfo);
    sym(h, "nvmlDeviceGetPcieThroughput", &n->DeviceGetPcieThroughput);
    /* The process list grew fields twice (MIG ids in v2); v3 has v2's layout but is the
     * one current drivers fill completely.  The newest the library has wins. */
    static const char *const procs[] = {"nvmlDeviceGetComputeRunningProcesses_v3",
                                        "nvmlDeviceGetComputeRunningProcesses_v2",
                                        "nvmlDeviceGetComputeRunningProcesses"};
    for (int i = 0; i < 3 && !n->procs_version; i++)
        if (sym(h, procs[i], &n->DeviceGetComputeRunningProcesses))
            n->procs_version = 3 - i;
    adg_nvml_return rc = n->Init();
    if (rc != ADG_NVML_SUCCESS) {
        char why[160];
        adg_nvml_error(n, rc, why, sizeof why);
        adg_error *e = adg_error_new(ADG_E_HARDWARE, "nvmlInit failed: %s", why);
        dlclose(h);
        memset(n, 0, sizeof *n);
        return adg_error_hint(e, rc == ADG_NVML_ERROR_DRIVER_NOT_LOADED
                                     ? "the NVIDIA kernel module is not loaded: check 'nvidia-smi' and dmesg"
                                 : rc == ADG_NVML_ERROR_NO_PERMISSION
                                     ? "this user may not open /dev/nvidia*: check the device files' permissions"
                                     : "check that 'nvidia-smi' works on this machine");
    }
    return NULL;
}

void adg_nvml_close(adg_nvml *n)
{
    if (!n->handle)
        return;
    n->Shutdown();
    dlclose(n->handle);
    memset(n, 0, sizeof *n);
}

/* libcuda and CUPTI facts, both through dlopen: amxdiag has no link-time dependency on
 * NVIDIA libraries and runs unchanged where there are none. */
#include "probe/cuda_probe.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_nvml.h"
#include "kernels/cuda/cuda_driver.h"

enum { CU_DEVICE_ATTRIBUTE_COMPUTE_MODE_ = 20 };

/* Kept open for the life of the process: unloading libcuda after cuInit is unsafe (it
 * leaves threads and atexit handlers behind). */
static kern_cuda_driver probe_drv;

/* Copies with truncation (snprintf's "%s" into a smaller buffer trips -Wformat-truncation). */
static void copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void cuda_probe_driver(gpu_facts *f)
{
    const char *path = getenv("AMXDIAG_LIBCUDA");
    adg_error *e = kern_cuda_driver_open(path && *path ? path : NULL, 0, &probe_drv);
    if (e) {
        copy_str(f->lib_error, sizeof f->lib_error, adg_error_msg(e));
        adg_error_free(e);
        return;
    }
    const kern_cuda_driver *d = &probe_drv;
    f->lib_loaded = true;
    copy_str(f->lib_path, sizeof f->lib_path, d->path);
    f->driver_cuda = d->driver_version;
    f->init_called = true;
    f->init_rc = d->cuInit(0);
    const char *name = NULL, *text = NULL;
    if (d->cuGetErrorName(f->init_rc, &name) != KERN_CU_SUCCESS || !name)
        name = kern_cuda_result_name(f->init_rc);
    if (d->cuGetErrorString(f->init_rc, &text) != KERN_CU_SUCCESS || !text)
        text = kern_cuda_result_string(f->init_rc);
    snprintf(f->init_name, sizeof f->init_name, "%s", name);
    snprintf(f->init_text, sizeof f->init_text, "%s", text);
    if (f->init_rc != KERN_CU_SUCCESS)
        return;
    int count = 0;
    if (d->cuDeviceGetCount(&count) != KERN_CU_SUCCESS)
        return;
    f->dev_count = count;
    for (int i = 0; i < count && f->ndevs < GPU_MAX_DEVS; i++) {
        kern_cu_device dev;
        if (d->cuDeviceGet(&dev, i) != KERN_CU_SUCCESS)
            continue;
        gpu_dev *g = &f->devs[f->ndevs++];
        memset(g, 0, sizeof *g);
        g->ordinal = i;
        g->compute_mode = -1;
        g->persistence = -1;
        g->numa_node = GPU_NUMA_UNKNOWN;
        if (d->cuDeviceGetName(g->name, (int)sizeof g->name, dev) != KERN_CU_SUCCESS)
            snprintf(g->name, sizeof g->name, "unknown");
        int maj = 0, min = 0, v = 0;
        d->cuDeviceGetAttribute(&maj, KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MAJOR, dev);
        d->cuDeviceGetAttribute(&min, KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MINOR, dev);
        g->cc = maj * 10 + min;
        if (d->cuDeviceGetAttribute(&v, KERN_CU_DEV_ATTR_MULTIPROCESSOR_COUNT, dev) == KERN_CU_SUCCESS)
            g->sms = v;
        if (d->cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_MODE_, dev) == KERN_CU_SUCCESS)
            g->compute_mode = v;
        size_t mem = 0;
        if (d->cuDeviceTotalMem(&mem, dev) == KERN_CU_SUCCESS)
            g->mem_bytes = mem;
        char bus[64];
        if (d->cuDeviceGetPCIBusId(bus, (int)sizeof bus, dev) == KERN_CU_SUCCESS) {
            gpu_bus_normalise(bus, g->bus_id, sizeof g->bus_id);
            g->numa_node = gpu_sysfs_numa_node(g->bus_id);
        }
    }
}

void cuda_probe_nvml(gpu_facts *f)
{
    if (f->ndevs == 0)
        return;
    adg_nvml n;
    adg_error *e = adg_nvml_open(&n);
    if (e) {
        adg_error_free(e); /* persistence stays unknown; the gpu checks say so */
        return;
    }
    for (int i = 0; n.DeviceGetHandleByPciBusId && n.DeviceGetPersistenceMode && i < f->ndevs; i++) {
        adg_nvml_device dev = NULL;
        int mode = 0;
        if (n.DeviceGetHandleByPciBusId(f->devs[i].bus_id, &dev) == ADG_NVML_SUCCESS &&
            n.DeviceGetPersistenceMode(dev, &mode) == ADG_NVML_SUCCESS)
            f->devs[i].persistence = mode ? 1 : 0;
    }
    adg_nvml_close(&n);
}

typedef int (*cupti_get_version_fn)(uint32_t *version);

void cuda_probe_cupti(gpu_facts *f)
{
    const char *env = getenv("AMXDIAG_LIBCUPTI");
    const char *candidates[] = {
        env && *env ? env : NULL,
        "libcupti.so.13",
        "libcupti.so",
        "/usr/local/cuda/lib64/libcupti.so.13",
        "/usr/local/cuda/lib64/libcupti.so",
        "/usr/local/cuda/lib/libcupti.so.13",
        "/usr/local/cuda/lib/libcupti.so",
        "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so",
        "/usr/local/cuda/targets/x86_64-linux/lib/libcupti.so",
    };
    char tried[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (!candidates[i])
            continue;
        void *h = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            int w = snprintf(tried + used, sizeof tried - used, "%s%s", used ? ", " : "", candidates[i]);
            if (w > 0 && (size_t)w < sizeof tried - used)
                used += (size_t)w;
            continue;
        }
        void *sym = dlsym(h, "cuptiGetVersion");
        cupti_get_version_fn fn;
        memcpy(&fn, &sym, sizeof fn);
        struct link_map *lm = NULL;
        if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
            snprintf(f->cupti_path, sizeof f->cupti_path, "%s", lm->l_name);
        else
            snprintf(f->cupti_path, sizeof f->cupti_path, "%s", candidates[i]);
        uint32_t v = 0;
        if (fn && fn(&v) == 0) {
            f->cupti_found = true;
            f->cupti_version = v;
        } else {
            snprintf(f->cupti_error, sizeof f->cupti_error, "%.200s loads but cuptiGetVersion %s", f->cupti_path,
                     fn ? "failed" : "is missing");
        }
        /* Kept loaded: libcupti's constructors allocate, and unloading it would orphan
         * that memory (and the profiler loads it again anyway). */
        return;
    }
    snprintf(f->cupti_error, sizeof f->cupti_error, "libcupti not found (tried %.200s)", tried);
}

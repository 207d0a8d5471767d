/* libcuda through dlopen: one table of entry points per process. */
#include "kernels/cuda/cuda_driver.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Names and descriptions for when no driver is loaded (or it does not know the code):
 * error messages must stay readable in reports made on machines without a GPU. */
static const struct {
    int code;
    const char *name;
    const char *text;
} builtin_results[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", "API call requires a newer CUDA driver"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", "PTX JIT compiler library not found"},
    {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain"},
    {223, "CUDA_ERROR_JIT_COMPILATION_DISABLED", "PTX JIT compilation was disabled"},
    {300, "CUDA_ERROR_INVALID_SOURCE", "device kernel image is invalid"},
    {301, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {702, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
    {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {710, "CUDA_ERROR_ASSERT", "device-side assert triggered"},
    {714, "CUDA_ERROR_HARDWARE_STACK_ERROR", "hardware stack error"},
    {715, "CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
    {716, "CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
    {717, "CUDA_ERROR_INVALID_ADDRESS_SPACE", "operation not supported on global/shared address space"},
    {718, "CUDA_ERROR_INVALID_PC", "invalid program counter"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {800, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {802, "CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"},
    {803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility was attempted on non supported HW"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static kern_cuda_driver the_driver;
static int the_driver_ok;
/* The load error, kept as its parts so that every caller gets its own copy. */
static adg_errkind load_err_kind;
static char *load_err_msg, *load_err_remedy;

static void *resolve(void *h, const char *syms)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", syms);
    for (char *save = NULL, *s = strtok_r(buf, "|", &save); s; s = strtok_r(NULL, "|", &save)) {
        void *p = dlsym(h, s);
        if (p)
            return p;
    }
    return NULL;
}

adg_error *kern_cuda_driver_open(const char *path, int do_init, kern_cuda_driver *drv)
{
    memset(drv, 0, sizeof *drv);
    if (!path)
        path = "libcuda.so.1";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "no NVIDIA driver: %s not found or not loadable (%s)",
                                            path, why ? why : "dlopen failed"),
                              "install the NVIDIA driver (it provides libcuda.so.1), or point "
                              "AMXDIAG_LIBCUDA at it; CUDA toolkits alone ship only a stub");
    }
    drv->handle = h;
    struct link_map *lm = NULL;
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
        snprintf(drv->path, sizeof drv->path, "%s", lm->l_name);
    else
        snprintf(drv->path, sizeof drv->path, "%s", path);

    /* Function pointers are assigned through memcpy: ISO C has no conversion from void *. */
#define KERN_CUDA_REQ_(name, sym, params)                                                          \
    {                                                                                              \
        void *p_ = resolve(h, sym);                                                                \
        if (!p_) {                                                                                 \
            adg_error *e_ = adg_error_new(ADG_E_UNSUPPORTED,                                       \
                                          "the NVIDIA driver at %s lacks %s: it is too old for amxdiag", \
                                          drv->path, sym);                                         \
            kern_cuda_driver_close(drv);                                                           \
            return adg_error_hint(e_, "install NVIDIA driver 525 or newer");                       \
        }                                                                                          \
        memcpy(&drv->name, &p_, sizeof p_);                                                        \
    }
#define KERN_CUDA_OPT_(name, sym, params)                                                          \
    {                                                                                              \
        void *p_ = resolve(h, sym);                                                                \
        memcpy(&drv->name, &p_, sizeof p_);                                                        \
    }
    KERN_CUDA_DRIVER_FUNCS(KERN_CUDA_REQ_, KERN_CUDA_OPT_)
#undef KERN_CUDA_REQ_
#undef KERN_CUDA_OPT_

    int v = 0;
    if (drv->cuDriverGetVersion(&v) == KERN_CU_SUCCESS)
        drv->driver_version = v;
    if (do_init) {
        kern_cu_result r = drv->cuInit(0);
        if (r != KERN_CU_SUCCESS) {
            /* Names must come from the table: this driver is not the process-wide one. */
            const char *name = NULL, *text = NULL;
            if (drv->cuGetErrorName(r, &name) != KERN_CU_SUCCESS || !name)
                name = kern_cuda_result_name(r);
            if (drv->cuGetErrorString(r, &text) != KERN_CU_SUCCESS || !text)
                text = kern_cuda_result_string(r);
            adg_error *e = adg_error_new(ADG_E_CUDA, "cuInit failed (driver %s): %s (%d): %s", drv->path, name, r, text);
            switch (r) {
            case KERN_CU_ERROR_NO_DEVICE:
                adg_error_hint(e, "no GPU is visible: check nvidia-smi, CUDA_VISIBLE_DEVICES and the container's device mounts");
                break;
            case KERN_CU_ERROR_STUB_LIBRARY:
                adg_error_hint(e, "this libcuda is the toolkit's link stub; install the NVIDIA driver and make sure "
                                  "LD_LIBRARY_PATH does not put .../cuda/lib64/stubs first");
                break;
            case KERN_CU_ERROR_SYSTEM_DRIVER_MISMATCH:
                adg_error_hint(e, "the kernel module and libcuda are different versions: reboot or reinstall the driver");
                break;
            default:
                adg_error_hint(e, "check `nvidia-smi` and dmesg for NVRM messages");
                break;
            }
            kern_cuda_driver_close(drv);
            return e;
        }
    }
    return NULL;
}

void kern_cuda_driver_close(kern_cuda_driver *drv)
{
    if (drv && drv->handle)
        dlclose(drv->handle);
    if (drv)
        memset(drv, 0, sizeof *drv);
}

static void load_once(void)
{
    const char *path = getenv("AMXDIAG_LIBCUDA");
    adg_error *e = kern_cuda_driver_open(path && *path ? path : NULL, 1, &the_driver);
    if (!e) {
        the_driver_ok = 1;
        return;
    }
    load_err_kind = adg_error_kind(e);
    load_err_msg = strdup(adg_error_msg(e));
    const char *r = adg_error_remedy(e);
    load_err_remedy = r ? strdup(r) : NULL;
    adg_error_free(e);
}

adg_error *kern_cuda_driver_get(const kern_cuda_driver **out)
{
    pthread_once(&once, load_once);
    if (the_driver_ok) {
        *out = &the_driver;
        return NULL;
    }
    *out = NULL;
    adg_error *e = adg_error_new(load_err_kind ? load_err_kind : ADG_E_NOMEM, "%s",
                                 load_err_msg ? load_err_msg : "out of memory loading the CUDA driver");
    if (load_err_remedy)
        adg_error_hint(e, "%s", load_err_remedy);
    return e;
}

static int builtin_index(kern_cu_result r)
{
    for (size_t i = 0; i < sizeof builtin_results / sizeof builtin_results[0]; i++)
        if (builtin_results[i].code == r)
            return (int)i;
    return -1;
}

const char *kern_cuda_result_name(kern_cu_result r)
{
    if (the_driver_ok) {
        const char *s = NULL;
        if (the_driver.cuGetErrorName(r, &s) == KERN_CU_SUCCESS && s)
            return s;
    }
    int i = builtin_index(r);
    if (i >= 0)
        return builtin_results[i].name;
    /* Per thread, so that concurrent error messages do not share the buffer. */
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "CUDA_ERROR_%d", r);
    return buf;
}

const char *kern_cuda_result_string(kern_cu_result r)
{
    if (the_driver_ok) {
        const char *s = NULL;
        if (the_driver.cuGetErrorString(r, &s) == KERN_CU_SUCCESS && s)
            return s;
    }
    int i = builtin_index(r);
    return i >= 0 ? builtin_results[i].text : "unknown CUDA error";
}

static const char *remedy_for(kern_cu_result r)
{
    switch (r) {
    case KERN_CU_ERROR_ILLEGAL_ADDRESS:
    case KERN_CU_ERROR_LAUNCH_FAILED:
        return "the error is sticky and asynchronous: the kernel that faulted may be an earlier one. "
               "Rerun with CUDA_LAUNCH_BLOCKING=1 or under `compute-sanitizer --tool memcheck`, "
               "or with --gpu-validate to get the first bad index";
    case KERN_CU_ERROR_OUT_OF_MEMORY:
        return "free GPU memory (nvidia-smi shows other processes) or use a smaller model/context";
    case KERN_CU_ERROR_NO_BINARY_FOR_GPU:
        return "this binary has neither SASS for this GPU's architecture nor PTX the driver can JIT; "
               "rebuild with this compute capability in the target list";
    case KERN_CU_ERROR_UNSUPPORTED_PTX_VERSION:
        return "the embedded PTX is newer than this driver can JIT: update the NVIDIA driver";
    case KERN_CU_ERROR_INVALID_PTX:
    case KERN_CU_ERROR_JIT_COMPILER_NOT_FOUND:
        return "the driver could not JIT the PTX: check that the driver install is complete (libnvidia-ptxjitcompiler)";
    case KERN_CU_ERROR_LAUNCH_OUT_OF_RESOURCES:
        return "the launch asks for more registers or shared memory than the GPU has: report this as an amxdiag bug";
    case KERN_CU_ERROR_NO_DEVICE:
        return "no GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES";
    case KERN_CU_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    case KERN_CU_ERROR_SYSTEM_DRIVER_MISMATCH:
        return "the user-space driver and the kernel module do not match: reinstall the driver or remove the "
               "forward-compatibility package from the library path";
    default:
        return NULL;
    }
}

adg_error *kern_cuda_errf(kern_cu_result r, const char *fmt, ...)
{
    char *ctx = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&ctx, fmt, ap) < 0)
        ctx = NULL;
    va_end(ap);
    adg_error *e = adg_error_new(ADG_E_CUDA, "%s: %s (%d): %s", ctx ? ctx : "CUDA call", kern_cuda_result_name(r), r,
                                 kern_cuda_result_string(r));
    free(ctx);
    const char *rem = remedy_for(r);
    if (rem)
        adg_error_hint(e, "%s", rem);
    return e;
}

const char *kern_cuda_version_str(int version, char *buf, size_t len)
{
    if (version <= 0)
        snprintf(buf, len, "unknown");
    else
        snprintf(buf, len, "%d.%d", version / 1000, (version % 1000) / 10);
    return buf;
}

/* The CUDA driver API, loaded at run time.
 *
 * amxdiag never links libcuda, libcudart or libcupti: one binary must run (and explain
 * itself) on machines without NVIDIA parts.  libcuda.so.1 is dlopen'ed once per process
 * and its entry points are kept in one table of function pointers, as nvtop does for NVML.
 * The types below are ABI-compatible stand-ins for cuda.h's (CUresult is an enum the size
 * of int, handles are opaque pointers, CUdeviceptr is 64-bit on every 64-bit platform),
 * prefixed so that a file may include both this header and cuda.h/cupti.h. */
#ifndef KERN_CUDA_DRIVER_H
#define KERN_CUDA_DRIVER_H

#include <stddef.h>

#include "common/adg_error.h"

typedef int kern_cu_result;                  /* CUresult */
typedef int kern_cu_device;                  /* CUdevice */
typedef unsigned long long kern_cu_deviceptr; /* CUdeviceptr */
typedef struct kern_cu_ctx_st *kern_cu_context;
typedef struct kern_cu_mod_st *kern_cu_module;
typedef struct kern_cu_func_st *kern_cu_function;
typedef struct kern_cu_stream_st *kern_cu_stream;
typedef struct kern_cu_event_st *kern_cu_event;
typedef struct kern_cu_graph_st *kern_cu_graph;           /* CUgraph */
typedef struct kern_cu_graph_exec_st *kern_cu_graph_exec; /* CUgraphExec */

/* CUresult values the code tests for (cuda.h numbering). */
enum {
    KERN_CU_SUCCESS = 0,
    KERN_CU_ERROR_INVALID_VALUE = 1,
    KERN_CU_ERROR_OUT_OF_MEMORY = 2,
    KERN_CU_ERROR_NOT_INITIALIZED = 3,
    KERN_CU_ERROR_STUB_LIBRARY = 34,
    KERN_CU_ERROR_NO_DEVICE = 100,
    KERN_CU_ERROR_INVALID_DEVICE = 101,
    KERN_CU_ERROR_INVALID_IMAGE = 200,
    KERN_CU_ERROR_NO_BINARY_FOR_GPU = 209,
    KERN_CU_ERROR_INVALID_PTX = 218,
    KERN_CU_ERROR_JIT_COMPILER_NOT_FOUND = 221,
    KERN_CU_ERROR_UNSUPPORTED_PTX_VERSION = 222,
    KERN_CU_ERROR_NOT_FOUND = 500,
    KERN_CU_ERROR_NOT_READY = 600,
    KERN_CU_ERROR_ILLEGAL_ADDRESS = 700,
    KERN_CU_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    KERN_CU_ERROR_LAUNCH_FAILED = 719,
    KERN_CU_ERROR_SYSTEM_DRIVER_MISMATCH = 803,
    KERN_CU_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE = 804,
    KERN_CU_ERROR_UNKNOWN = 999,
};

/* CUdevice_attribute values (cuda.h numbering). */
enum {
    KERN_CU_DEV_ATTR_MAX_THREADS_PER_BLOCK = 1,
    KERN_CU_DEV_ATTR_MAX_GRID_DIM_X = 5,
    KERN_CU_DEV_ATTR_MAX_GRID_DIM_Y = 6,
    KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    KERN_CU_DEV_ATTR_WARP_SIZE = 10,
    KERN_CU_DEV_ATTR_CLOCK_RATE = 13,
    KERN_CU_DEV_ATTR_MULTIPROCESSOR_COUNT = 16,
    KERN_CU_DEV_ATTR_ECC_ENABLED = 32,
    KERN_CU_DEV_ATTR_PCI_BUS_ID = 33,
    KERN_CU_DEV_ATTR_PCI_DEVICE_ID = 34,
    KERN_CU_DEV_ATTR_MEMORY_CLOCK_RATE = 36,
    KERN_CU_DEV_ATTR_GLOBAL_MEMORY_BUS_WIDTH = 37,
    KERN_CU_DEV_ATTR_L2_CACHE_SIZE = 38,
    KERN_CU_DEV_ATTR_MAX_THREADS_PER_MULTIPROCESSOR = 39,
    KERN_CU_DEV_ATTR_PCI_DOMAIN_ID = 50,
    KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    KERN_CU_DEV_ATTR_COMPUTE_CAPABILITY_MINOR = 76,
    KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    KERN_CU_DEV_ATTR_MAX_REGISTERS_PER_MULTIPROCESSOR = 82,
    KERN_CU_DEV_ATTR_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

/* CUfunction_attribute values. */
enum {
    KERN_CU_FUNC_ATTR_MAX_THREADS_PER_BLOCK = 0,
    KERN_CU_FUNC_ATTR_SHARED_SIZE_BYTES = 1,
    KERN_CU_FUNC_ATTR_LOCAL_SIZE_BYTES = 3,
    KERN_CU_FUNC_ATTR_NUM_REGS = 4,
    KERN_CU_FUNC_ATTR_PTX_VERSION = 5,
    KERN_CU_FUNC_ATTR_BINARY_VERSION = 6,
    KERN_CU_FUNC_ATTR_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
};

/* CUjit_option values used by cuModuleLoadDataEx. */
enum {
    KERN_CU_JIT_WALL_TIME = 2,
    KERN_CU_JIT_INFO_LOG_BUFFER = 3,
    KERN_CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
    KERN_CU_JIT_ERROR_LOG_BUFFER = 5,
    KERN_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    KERN_CU_JIT_LOG_VERBOSE = 12,
};

enum { KERN_CU_STREAM_NON_BLOCKING = 0x1, KERN_CU_EVENT_DEFAULT = 0x0 };
/* CU_STREAM_CAPTURE_MODE_RELAXED; CU_EVENT_RECORD_EXTERNAL (an event record captured as a
 * graph node, so that marks time a replayed graph's parts). */
enum { KERN_CU_STREAM_CAPTURE_MODE_RELAXED = 2, KERN_CU_EVENT_RECORD_EXTERNAL = 0x1 };

/* The entry points, as (member, versioned symbol, parameters); all return CUresult.
 * Adding a call is adding a row.  "a|b" tries symbol a, then b (same signature, for
 * older drivers).  A missing REQ symbol fails the load (a driver too old for amxdiag);
 * a missing OPT symbol leaves the member NULL. */
#define KERN_CUDA_DRIVER_FUNCS(REQ, OPT)                                                        \
    REQ(cuInit, "cuInit", (unsigned flags))                                                    \
    REQ(cuDriverGetVersion, "cuDriverGetVersion", (int *version))                              \
    REQ(cuGetErrorName, "cuGetErrorName", (kern_cu_result r, const char **name))               \
    REQ(cuGetErrorString, "cuGetErrorString", (kern_cu_result r, const char **str))            \
    REQ(cuDeviceGetCount, "cuDeviceGetCount", (int *count))                                    \
    REQ(cuDeviceGet, "cuDeviceGet", (kern_cu_device * dev, int ordinal))                       \
    REQ(cuDeviceGetName, "cuDeviceGetName", (char *name, int len, kern_cu_device dev))         \
    REQ(cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *v, int attr, kern_cu_device dev))  \
    REQ(cuDeviceTotalMem, "cuDeviceTotalMem_v2", (size_t *bytes, kern_cu_device dev))          \
    REQ(cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId", (char *id, int len, kern_cu_device dev))   \
    REQ(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (kern_cu_context * ctx, kern_cu_device dev)) \
    REQ(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (kern_cu_device dev))      \
    REQ(cuCtxSetCurrent, "cuCtxSetCurrent", (kern_cu_context ctx))                             \
    REQ(cuCtxGetCurrent, "cuCtxGetCurrent", (kern_cu_context * ctx))                           \
    REQ(cuCtxSynchronize, "cuCtxSynchronize", (void))                                          \
    REQ(cuMemGetInfo, "cuMemGetInfo_v2", (size_t *free_bytes, size_t *total_bytes))            \
    REQ(cuMemAlloc, "cuMemAlloc_v2", (kern_cu_deviceptr * p, size_t bytes))                    \
    REQ(cuMemFree, "cuMemFree_v2", (kern_cu_deviceptr p))                                      \
    REQ(cuMemcpyHtoD, "cuMemcpyHtoD_v2", (kern_cu_deviceptr dst, const void *src, size_t n))   \
    REQ(cuMemcpyDtoH, "cuMemcpyDtoH_v2", (void *dst, kern_cu_deviceptr src, size_t n))         \
    REQ(cuMemcpyDtoD, "cuMemcpyDtoD_v2", (kern_cu_deviceptr dst, kern_cu_deviceptr src, size_t n)) \
    REQ(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2",                                             \
        (kern_cu_deviceptr dst, kern_cu_deviceptr src, size_t n, kern_cu_stream s))            \
    REQ(cuMemsetD8, "cuMemsetD8_v2", (kern_cu_deviceptr p, unsigned char v, size_t n))         \
    REQ(cuMemsetD32, "cuMemsetD32_v2", (kern_cu_deviceptr p, unsigned v, size_t n))            \
    REQ(cuModuleLoadDataEx, "cuModuleLoadDataEx",                                              \
        (kern_cu_module * m, const void *image, unsigned n, int *opts, void **vals))           \
    REQ(cuModuleGetFunction, "cuModuleGetFunction", (kern_cu_function * f, kern_cu_module m, const char *name)) \
    REQ(cuModuleUnload, "cuModuleUnload", (kern_cu_module m))                                  \
    REQ(cuFuncGetAttribute, "cuFuncGetAttribute", (int *v, int attr, kern_cu_function f))      \
    REQ(cuLaunchKernel, "cuLaunchKernel",                                                      \
        (kern_cu_function f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,  \
         unsigned bz, unsigned shmem, kern_cu_stream s, void **params, void **extra))          \
    REQ(cuStreamCreate, "cuStreamCreate", (kern_cu_stream * s, unsigned flags))                \
    REQ(cuStreamDestroy, "cuStreamDestroy_v2", (kern_cu_stream s))                             \
    REQ(cuStreamSynchronize, "cuStreamSynchronize", (kern_cu_stream s))                        \
    REQ(cuStreamQuery, "cuStreamQuery", (kern_cu_stream s))                                    \
    REQ(cuEventCreate, "cuEventCreate", (kern_cu_event * e, unsigned flags))                   \
    REQ(cuEventDestroy, "cuEventDestroy_v2", (kern_cu_event e))                                \
    REQ(cuEventRecord, "cuEventRecord", (kern_cu_event e, kern_cu_stream s))                   \
    REQ(cuEventSynchronize, "cuEventSynchronize", (kern_cu_event e))                           \
    REQ(cuEventElapsedTime, "cuEventElapsedTime_v2|cuEventElapsedTime", (float *ms, kern_cu_event a, kern_cu_event b)) \
    OPT(cuFuncSetAttribute, "cuFuncSetAttribute", (kern_cu_function f, int attr, int v))        \
    OPT(cuDevicePrimaryCtxGetState, "cuDevicePrimaryCtxGetState",                              \
        (kern_cu_device dev, unsigned *flags, int *active))                                    \
    OPT(cuMemAllocHost, "cuMemAllocHost_v2", (void **p, size_t bytes))                         \
    OPT(cuMemFreeHost, "cuMemFreeHost", (void *p))                                            \
    OPT(cuStreamBeginCapture, "cuStreamBeginCapture_v2", (kern_cu_stream s, int mode))          \
    OPT(cuStreamEndCapture, "cuStreamEndCapture", (kern_cu_stream s, kern_cu_graph * graph))    \
    OPT(cuGraphInstantiate, "cuGraphInstantiateWithFlags",                                     \
        (kern_cu_graph_exec * exec, kern_cu_graph graph, unsigned long long flags))            \
    OPT(cuGraphLaunch, "cuGraphLaunch", (kern_cu_graph_exec exec, kern_cu_stream s))           \
    OPT(cuGraphExecDestroy, "cuGraphExecDestroy", (kern_cu_graph_exec exec))                   \
    OPT(cuGraphDestroy, "cuGraphDestroy", (kern_cu_graph graph))                               \
    OPT(cuEventRecordWithFlags, "cuEventRecordWithFlags", (kern_cu_event e, kern_cu_stream s, unsigned flags))

#define KERN_CUDA_DECL_(name, sym, params) kern_cu_result (*name) params;

typedef struct kern_cuda_driver {
    void *handle;        /* dlopen handle */
    char path[256];      /* where libcuda was found (dlinfo), for reports */
    int driver_version;  /* cuDriverGetVersion: 13000 = 13.0 */
    KERN_CUDA_DRIVER_FUNCS(KERN_CUDA_DECL_, KERN_CUDA_DECL_)
} kern_cuda_driver;

#undef KERN_CUDA_DECL_

/* Loads libcuda.so.1 and calls cuInit(0), once per process (thread-safe); later calls
 * return the same table or the same error (a copy of it: the caller frees it).
 * $AMXDIAG_LIBCUDA, when set, names another library to load instead (tests, or a
 * driver in an unusual place).  Errors: ADG_E_HARDWARE "no NVIDIA driver: libcuda.so.1
 * not found", ADG_E_UNSUPPORTED for a driver that lacks an entry point, ADG_E_CUDA for
 * cuInit failures (e.g. CUDA_ERROR_NO_DEVICE), each with a remedy. */
adg_error *kern_cuda_driver_get(const kern_cuda_driver **out);

/* The same, for one explicit library path, into a caller-owned table (not cached, no
 * cuInit unless do_init).  Closed with kern_cuda_driver_close. */
adg_error *kern_cuda_driver_open(const char *path, int do_init, kern_cuda_driver *drv);
void kern_cuda_driver_close(kern_cuda_driver *drv);

/* "CUDA_ERROR_ILLEGAL_ADDRESS" for 700: from the loaded driver when there is one, else
 * from amxdiag's own table; "CUDA_ERROR_<n>" for an unknown code (never NULL). */
const char *kern_cuda_result_name(kern_cu_result r);
/* The driver's description ("an illegal memory access was encountered"), or a built-in
 * one, or "unknown CUDA error". */
const char *kern_cuda_result_string(kern_cu_result r);

/* An ADG_E_CUDA error "<formatted context>: CUDA_ERROR_X (code): <description>" with a
 * remedy chosen for the code (700: rerun under compute-sanitizer / CUDA_LAUNCH_BLOCKING=1;
 * 209: no SASS or PTX for this GPU; 222: driver older than the PTX; ...). */
__attribute__((format(printf, 2, 3)))
adg_error *kern_cuda_errf(kern_cu_result r, const char *fmt, ...);
#define cuda_errf kern_cuda_errf

/* "13.0" from 13000 into buf. */
const char *kern_cuda_version_str(int version, char *buf, size_t len);

#endif

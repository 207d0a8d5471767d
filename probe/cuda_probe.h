/* The parts of the GPU facts that need NVIDIA libraries, loaded with dlopen: libcuda
 * (through kernels/cuda/cuda_driver.h) and CUPTI. */
#ifndef PROBE_CUDA_PROBE_H
#define PROBE_CUDA_PROBE_H

#include "probe/gpu_facts.h"

/* Loads libcuda (AMXDIAG_LIBCUDA overrides the name), calls cuInit(0) and records its
 * result, the driver's CUDA version and every device. */
void cuda_probe_driver(gpu_facts *f);
/* Persistence mode per device through NVML (common/adg_nvml.h: libnvidia-ml.so.1, part of
 * the driver; AMXDIAG_LIBNVML overrides), where it loads; devices keep -1 otherwise. */
void cuda_probe_nvml(gpu_facts *f);
/* Looks for libcupti (AMXDIAG_LIBCUPTI overrides) and asks its version. */
void cuda_probe_cupti(gpu_facts *f);

#endif

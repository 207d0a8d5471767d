/* Internal pieces of the GPU and --binary sections. */
#ifndef PROBE_GPU_CHECKS_H
#define PROBE_GPU_CHECKS_H

#include "kernels/cuda/kern_cuda.h"
#include "probe/cc_matrix.h"
#include "probe/fatbin.h"
#include "probe/gpu_facts.h"
#include "probe/probe_report.h"

/* Adds gpu.<ordinal>.selftest.{sass,ptx}: load amxdiag's kernels, run, compare. */
void gpu_selftest_check(probe_report *rep, const gpu_dev *d, kern_cuda_load_mode mode);

/* The loader's view of a fatbin listing (entries of unknown kind are left out).
 * Returns the number of codes written (at most max). */
size_t gpu_codes_from_fatbin(const fatbin_list *l, cc_code *codes, size_t max);

/* Adds the checks the diagnosis found (gpu.cause.<id>). */
void gpu_add_causes(probe_report *rep, const gpu_facts *f);

#endif

/* The embedded CUDA images and what is in them (pure host logic, no driver needed). */
#ifndef KERN_CUDA_IMAGE_H
#define KERN_CUDA_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

#define KERN_FATBIN_MAGIC 0xBA55ED50u

typedef struct kern_fatbin_entry {
    int kind;            /* 1 = PTX, 2 = ELF (SASS) */
    int arch;            /* 90 = sm_90 / compute_90 */
    int ptx_major, ptx_minor; /* PTX ISA of a PTX entry (9.0) */
    uint64_t flags;      /* 0x8000 zstd-compressed payload, 0x1000/0x2000 NVIDIA LZ */
    uint64_t payload_bytes;
    size_t offset;       /* of the entry header within the blob */
} kern_fatbin_entry;

/* Walks the containers (magic 0xBA55ED50, u16 version, u16 header size, u64 size) packed
 * back to back and their entries.  Fills up to max entries, sets *count to how many
 * there are.  ADG_E_FORMAT for a bad magic or an entry running past the blob. */
adg_error *kern_fatbin_parse(const void *blob, size_t len, kern_fatbin_entry *out, size_t max, size_t *count);

/* The driver's choice for a device of compute capability cc_major.cc_minor: the SASS of
 * the same major with the highest minor <= the device's (0 = none), and whether a PTX
 * entry (arch <= device) could be JIT-compiled instead (*ptx_arch, 0 = none). */
void kern_fatbin_pick(const kern_fatbin_entry *e, size_t n, int cc_major, int cc_minor, int *sass_arch,
                      int *ptx_arch);

/* Whether the binary carries the kernels, and the images (see kern_cuda.h). */
bool kern_cuda_built_with_kernels(void);
void kern_cuda_embedded_fatbin(const void **data, size_t *len);
void kern_cuda_embedded_ptx(const char **text, size_t *len);
/* "75,80,...,121" (SASS archs built), the fatbin's PTX arch and the forced-JIT PTX arch. */
const char *kern_cuda_built_archs(void);
int kern_cuda_built_ptx_arch(void);
int kern_cuda_built_jit_ptx_arch(void);

#endif

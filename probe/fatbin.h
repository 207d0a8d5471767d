/* CUDA fat binaries: the device code inside executables, shared libraries, .fatbin and
 * .cubin files, listed entry by entry as `cuobjdump --list-elf --list-ptx` lists them.
 *
 * Layout (little-endian), as nvcc/fatbinary write it:
 *   container: u32 magic 0xBA55ED50, u16 version (1), u16 header size (16), u64 size of
 *              the entries that follow; containers are packed back to back (an ELF's
 *              .nv_fatbin section holds one per translation unit, zero padding between);
 *   entry:     u16 kind (1 PTX, 2 ELF), u16 version, u32 header size, u64 payload size,
 *              u32 compressed size, u32 offset of the extended header, u16 minor, u16 major
 *              (code version: PTX ISA for PTX), u32 arch (decimal SM: 90, 120), u32 name
 *              offset, u32 name length, u64 flags, u64 reserved, u64 uncompressed size;
 *              the payload follows the header.
 *   flags:     0x1 64-bit, 0x2 debug, 0x10 Linux, 0x1000/0x2000 NVIDIA LZ compression,
 *              0x8000 zstd, 0x100000 arch-specific (sm_XYa), 0x200000 family (sm_XYf).
 * Every field is bounds-checked; hostile input gives an adg_error, never a crash. */
#ifndef PROBE_FATBIN_H
#define PROBE_FATBIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/adg_error.h"

#define FATBIN_MAGIC 0xBA55ED50u
#define FATBIN_KIND_PTX 1
#define FATBIN_KIND_ELF 2

#define FATBIN_FLAG_64BIT 0x1ull
#define FATBIN_FLAG_DEBUG 0x2ull
#define FATBIN_FLAG_LZ_A 0x1000ull
#define FATBIN_FLAG_LZ 0x2000ull
#define FATBIN_FLAG_ZSTD 0x8000ull
#define FATBIN_FLAG_ARCH_SPECIFIC 0x100000ull
#define FATBIN_FLAG_FAMILY 0x200000ull

/* Upper bound on one decompressed payload (hostile sizes must not allocate gigabytes). */
#define FATBIN_MAX_PAYLOAD (512u << 20)

typedef enum fatbin_compression {
    FATBIN_COMP_NONE,
    FATBIN_COMP_ZSTD,
    FATBIN_COMP_LZ,     /* NVIDIA's LZ4-style block format */
} fatbin_compression;

typedef struct fatbin_entry {
    int kind;                    /* FATBIN_KIND_PTX / _ELF (other values are listed as unknown) */
    unsigned arch;               /* 120 */
    char variant;                /* 0, 'a', 'f' (from the entry flags, else the cubin) */
    uint64_t flags;
    unsigned code_major, code_minor;  /* entry version: PTX ISA for PTX, cubin version for ELF */
    fatbin_compression compression;
    uint64_t stored_size;        /* bytes in the file (compressed when compressed) */
    uint64_t size;               /* uncompressed bytes (== stored_size when not compressed) */
    size_t container;            /* 0-based container index */
    uint64_t offset;             /* of the entry header, from the start of the fatbin data */

    bool decoded;                /* the payload was read (decompressed when needed) */
    char decode_error[160];      /* why not, when !decoded */
    /* PTX: from the text */
    unsigned ptx_isa;            /* ".version 9.0" -> 90, 0 unknown */
    char ptx_target[24];         /* ".target sm_120a" -> "sm_120a" */
    /* ELF: from the cubin header */
    unsigned elf_abi;            /* EI_ABIVERSION: 7 (CUDA <= 12), 8 (CUDA 13) */
    uint32_t e_flags;
    unsigned elf_sm;             /* SM from e_flags */
    unsigned elf_virtual_sm;     /* EF_CUDA_VIRTUAL_SM, 0 none */
    char elf_variant;            /* 'a' when e_flags say so (what cuobjdump and the loader read) */
    char ptxas_arch[16];         /* "sm_120f": the -arch ptxas recorded in .note.nv.tkinfo, "" unknown.
                                  * CUDA 13 (ELF ABI 8) cubins carry the a/f variant only there. */
} fatbin_entry;

typedef struct fatbin_list {
    fatbin_entry *v;
    size_t n, cap;
    size_t ncontainers;
    char source[96];             /* "ELF section .nv_fatbin (3 containers)", "fatbin file", "cubin" */
} fatbin_list;

void fatbin_list_free(fatbin_list *l);

/* Parses containers packed back to back in data[0..len) (zero padding between them is
 * skipped).  Payloads are decoded (decompressed) to read PTX versions and cubin headers;
 * a payload that cannot be decoded is listed with decode_error set. */
adg_error *fatbin_parse(const uint8_t *data, size_t len, fatbin_list *out);

/* Reads any file: an ELF host binary or shared library (its .nv_fatbin section, through
 * libelf), a raw .fatbin, or a .cubin (one SASS entry). */
adg_error *fatbin_read_file(const char *path, fatbin_list *out);

/* Reads the header of a cubin (an ELF with e_machine EM_CUDA) into e. */
adg_error *fatbin_read_cubin(const uint8_t *data, size_t len, fatbin_entry *e);

/* NVIDIA's LZ scheme (fatbinary -compress-mode=speed, CUDA 12's default): LZ4 block
 * sequences (token: literal length << 4 | match length - 4, 255-extended; literals;
 * u16 match offset).  Writes at most out_len bytes; the result must be exactly out_len. */
adg_error *fatbin_lz_decompress(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len);

/* "sm_120a" / "compute_90" for an entry. */
const char *fatbin_entry_name(const fatbin_entry *e, char *buf, size_t len);
const char *fatbin_compression_name(fatbin_compression c);
/* JSON for one entry / the list. New references. */
json_t *fatbin_entry_json(const fatbin_entry *e);
json_t *fatbin_list_json(const fatbin_list *l);

#endif

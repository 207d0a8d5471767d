/* GGUF (v2/v3) reading over mmap and streaming writing, byte-compatible with ggml.
 *
 * The reader validates every count, length, offset and size against the file before it
 * uses it: a truncated, corrupt or hostile file gives an ADG_E_FORMAT error naming the
 * bad field ("tensor 'blk.3.attn_q.weight': data [.., ..) extends past the end of the
 * file"), never a crash.  Tensor types the engine cannot compute are still parsed (their
 * sizes are known) and named ("q4_K"), so that a real model file can be inspected.
 *
 * The writer lays out metadata and tensor infos first, then writes tensor data with
 * positioned writes (thread-safe, any order).  Data that is never written stays a hole
 * in the file (--sparse models).  Output is atomic: a temporary file beside the target,
 * renamed over it on commit. */
#ifndef KERN_GGUF_H
#define KERN_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

#define KERN_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define KERN_GGUF_DEFAULT_ALIGNMENT 32
#define KERN_GGUF_MAX_DIMS 4

typedef enum kern_gguf_vtype {
    KERN_GGUF_U8 = 0,
    KERN_GGUF_I8 = 1,
    KERN_GGUF_U16 = 2,
    KERN_GGUF_I16 = 3,
    KERN_GGUF_U32 = 4,
    KERN_GGUF_I32 = 5,
    KERN_GGUF_F32 = 6,
    KERN_GGUF_BOOL = 7,
    KERN_GGUF_STRING = 8,
    KERN_GGUF_ARRAY = 9,
    KERN_GGUF_U64 = 10,
    KERN_GGUF_I64 = 11,
    KERN_GGUF_F64 = 12,
    KERN_GGUF_VTYPE_COUNT
} kern_gguf_vtype;

const char *kern_gguf_vtype_name(uint32_t t); /* "u32", "string", ...; "?" when unknown */

/* ggml's tensor type table (all ids up to GGML_TYPE_COUNT, removed ids included). */
typedef struct kern_ggml_type_info {
    const char *name;   /* ggml's name: "f32", "q4_0", "q4_K", "iq4_xs", ...; NULL: removed id */
    uint32_t blck;      /* elements per block */
    uint32_t bytes;     /* bytes per block */
} kern_ggml_type_info;

#define KERN_GGML_TYPE_COUNT 40
/* NULL for an id ggml never defined or has removed. */
const kern_ggml_type_info *kern_ggml_type(uint32_t type);
/* Name for messages: "q4_K", or "type 77" for an unknown id (thread-local buffer). */
const char *kern_ggml_type_name(uint32_t type);
/* True for the types amxdiag computes with: F32, F16, BF16, Q4_0, Q8_0. */
bool kern_ggml_type_supported(uint32_t type);

/* A string inside the mapped file (not NUL-terminated). */
typedef struct kern_gguf_str {
    const char *ptr;
    uint64_t len;
} kern_gguf_str;

typedef struct kern_gguf_kv {
    char *key;                /* NUL-terminated copy */
    uint32_t type;            /* kern_gguf_vtype */
    union {
        uint64_t u;           /* U8..U64, BOOL */
        int64_t i;            /* I8..I64 */
        double f;             /* F32, F64 */
    } v;
    kern_gguf_str str;        /* STRING */
    uint32_t arr_type;        /* ARRAY: element type (never ARRAY: nested arrays rejected) */
    uint64_t arr_n;
    const uint8_t *arr_data;  /* first element in the map */
    uint64_t arr_bytes;       /* validated extent of the elements */
} kern_gguf_kv;

typedef struct kern_gguf_tensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[KERN_GGUF_MAX_DIMS]; /* ne[0] = row length (K); unused dims are 1 */
    uint32_t type;                  /* ggml type id */
    uint64_t offset;                /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data;            /* in the map */
} kern_gguf_tensor;

typedef struct kern_gguf {
    char *path;
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;     /* start of the data section */
    uint64_t n_kv;
    kern_gguf_kv *kv;
    uint64_t n_tensors;
    kern_gguf_tensor *tensors;
    uint64_t tensor_bytes;    /* sum of nbytes */
    uint64_t disk_bytes;      /* blocks the file occupies (less than size for a sparse file; = size for buffers) */
} kern_gguf;

/* Maps and parses a file. */
adg_error *kern_gguf_open(const char *path, kern_gguf **out);
/* Parses a buffer the caller keeps alive while *out lives (tests, fuzzing). `what`
 * names it in messages. */
adg_error *kern_gguf_parse(const void *data, uint64_t size, const char *what, kern_gguf **out);
void kern_gguf_close(kern_gguf *g);

/* Drops the mapped pages that lie wholly inside t's data (after the data was copied
 * elsewhere, e.g. repacked): the file's pages stop counting in the process's memory.
 * Reading t->data afterwards still works (the pages fault back in).  No-op for buffers. */
void kern_gguf_release(const kern_gguf *g, const kern_gguf_tensor *t);

const kern_gguf_kv *kern_gguf_find_kv(const kern_gguf *g, const char *key);
const kern_gguf_tensor *kern_gguf_find_tensor(const kern_gguf *g, const char *name);

/* Typed getters: an integer of any width that fits, a float of either width.  Missing
 * keys or wrong types give an error naming the key; `required` false makes a missing
 * key return NULL with *out untouched. */
adg_error *kern_gguf_get_u64(const kern_gguf *g, const char *key, bool required, uint64_t *out);
adg_error *kern_gguf_get_u32(const kern_gguf *g, const char *key, bool required, uint32_t *out);
adg_error *kern_gguf_get_f32(const kern_gguf *g, const char *key, bool required, float *out);
/* Heap copy of a STRING value (caller frees). */
adg_error *kern_gguf_get_str(const kern_gguf *g, const char *key, bool required, char **out);

/* Walks an array of strings: call with *pos = 0 first; returns false at the end. */
bool kern_gguf_arr_str_next(const kern_gguf_kv *kv, uint64_t *pos, const uint8_t **cursor, kern_gguf_str *out);

/* ---- writer ---- */

typedef struct kern_gguf_writer kern_gguf_writer;

adg_error *kern_gguf_writer_new(uint32_t alignment, kern_gguf_writer **out);
/* Removes the temporary file if not committed. */
void kern_gguf_writer_free(kern_gguf_writer *w);

/* Metadata, in the order given.  Keys must be unique. */
adg_error *kern_gguf_w_u32(kern_gguf_writer *w, const char *key, uint32_t v);
adg_error *kern_gguf_w_i32(kern_gguf_writer *w, const char *key, int32_t v);
adg_error *kern_gguf_w_u64(kern_gguf_writer *w, const char *key, uint64_t v);
adg_error *kern_gguf_w_f32(kern_gguf_writer *w, const char *key, float v);
adg_error *kern_gguf_w_bool(kern_gguf_writer *w, const char *key, bool v);
adg_error *kern_gguf_w_str(kern_gguf_writer *w, const char *key, const char *v);
adg_error *kern_gguf_w_arr_str(kern_gguf_writer *w, const char *key, const char *const *v, size_t n);
adg_error *kern_gguf_w_arr_i32(kern_gguf_writer *w, const char *key, const int32_t *v, size_t n);
adg_error *kern_gguf_w_arr_f32(kern_gguf_writer *w, const char *key, const float *v, size_t n);

/* Declares a tensor; its data offset follows the previous one, aligned.  *index (may be
 * NULL) receives its position for kern_gguf_writer_pwrite. */
adg_error *kern_gguf_writer_add_tensor(kern_gguf_writer *w, const char *name, uint32_t type,
                                       uint32_t n_dims, const int64_t *ne, size_t *index);
uint64_t kern_gguf_writer_tensor_nbytes(const kern_gguf_writer *w, size_t index);
/* Total file size once begun (header + data). */
uint64_t kern_gguf_writer_file_size(const kern_gguf_writer *w);

/* Creates the temporary file beside `path`, writes the header, metadata and tensor
 * infos, and sizes the file (the data is a hole until written). */
adg_error *kern_gguf_writer_begin(kern_gguf_writer *w, const char *path);
/* Writes len bytes at byte `off` of tensor `index`'s data.  Thread-safe. */
adg_error *kern_gguf_writer_pwrite(kern_gguf_writer *w, size_t index, uint64_t off, const void *buf, size_t len);
/* fsyncs and renames the temporary over the target. */
adg_error *kern_gguf_writer_commit(kern_gguf_writer *w);

#endif

/* The GPU trace records and their wire format.
 *
 * The injection library (profiler/inject/, loaded into a profiled CUDA process) and the
 * in-process tracer produce the same records; amxdiag consumes them through one parser.
 * The format is framed and versioned (docs/cupti.md, "Injection protocol"):
 *
 *   frame   = header payload
 *   header  = u32 magic "ADGI" (0x49474441) | u16 version (1) | u16 type | u32 payload length
 *   payload = the fixed record struct of `type` | name bytes (no NUL), name_len of them
 *
 * Integers are in the byte order of the machine (writer and reader run on one host).
 * A reader refuses a frame whose magic, version, type or length is wrong: such a stream
 * is corrupt from that byte on, and nothing after it is trusted.
 *
 * This header and cupti_proto.c depend on libc only: they are compiled into the
 * injection library too. */
#ifndef CUPTI_PROTO_H
#define CUPTI_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUPTI_PROTO_MAGIC 0x49474441u /* "ADGI" little-endian */
#define CUPTI_PROTO_VERSION 1u
#define CUPTI_PROTO_HEADER 12u
/* Longer names are cut by the writer, so that every frame fits in one atomic pipe write
 * (PIPE_BUF, 4096 bytes): processes that share the pipe interleave whole frames only. */
#define CUPTI_PROTO_MAX_NAME 3072u
#define CUPTI_PROTO_MAX_FRAME (CUPTI_PROTO_HEADER + 136u + CUPTI_PROTO_MAX_NAME)
#define CUPTI_PROTO_MAX_PTRS 8u

typedef enum cupti_rec_type {
    CUPTI_REC_HELLO = 1,     /* first frame: who is talking */
    CUPTI_REC_KERNEL = 2,    /* a completed kernel (activity record) */
    CUPTI_REC_MEMCPY = 3,
    CUPTI_REC_MEMSET = 4,
    CUPTI_REC_SYNC = 5,      /* a synchronisation that returned success (stream 0 + all = context-wide) */
    CUPTI_REC_LAUNCH = 6,    /* a kernel launch seen by the callback API */
    CUPTI_REC_API_ERROR = 7, /* a driver/runtime call that returned an error */
    CUPTI_REC_ALLOC = 8,
    CUPTI_REC_FREE = 9,
    CUPTI_REC_NOTE = 10,     /* something the tracer could not do, and why; name = text */
    CUPTI_REC_FLUSH = 11,    /* everything before this was flushed, for `reason` */
    CUPTI_REC_MEMINFO = 12,  /* device memory in use (cuMemGetInfo), at most once per flush period */
    CUPTI_REC_KMETRIC = 13,  /* --gpu-metrics: one kernel's Range Profiler values; name = kernel symbol */
    CUPTI_REC_MCONFIG = 14,  /* --gpu-metrics: the Range Profiler session (chip, passes, metrics); name = chip */
    CUPTI_REC_MSTATS = 15,   /* --gpu-metrics: launches seen and profiled, and what profiling cost so far */
    CUPTI_REC_TYPE_MAX = 15,
} cupti_rec_type;

typedef enum cupti_copy_kind {
    CUPTI_COPY_OTHER = 0,
    CUPTI_COPY_HTOD = 1,
    CUPTI_COPY_DTOH = 2,
    CUPTI_COPY_DTOD = 3,
    CUPTI_COPY_HTOH = 4,
    CUPTI_COPY_PTOP = 5,
} cupti_copy_kind;

typedef enum cupti_flush_reason {
    CUPTI_FLUSH_PERIODIC = 0,
    CUPTI_FLUSH_CTX_DESTROY = 1,
    CUPTI_FLUSH_EXIT = 2,
    CUPTI_FLUSH_SIGNAL = 3,
    CUPTI_FLUSH_CUDA_ERROR = 4,
} cupti_flush_reason;

typedef enum cupti_launch_api {
    CUPTI_LAUNCH_KERNEL = 1,      /* cuLaunchKernel / cudaLaunchKernel */
    CUPTI_LAUNCH_KERNEL_EX = 2,   /* cuLaunchKernelEx / cudaLaunchKernelExC */
    CUPTI_LAUNCH_COOPERATIVE = 3,
    CUPTI_LAUNCH_GRAPH = 4,       /* cuGraphLaunch: the graph's kernels come as activity records */
} cupti_launch_api;

typedef enum cupti_note_code {
    CUPTI_NOTE_INFO = 0,
    CUPTI_NOTE_UNAVAILABLE = 1,   /* the tracer could not start: nothing will follow */
    CUPTI_NOTE_NO_CALLBACKS = 2,  /* another CUPTI client holds the subscriber: no launch ring */
    CUPTI_NOTE_NO_METRICS = 3,    /* --gpu-metrics could not run */
    CUPTI_NOTE_DROPPED = 4,       /* activity records were dropped (buffers full) */
    CUPTI_NOTE_METRICS_STEP = 5,  /* --gpu-metrics setup is about to make this CUPTI call (name = the
                                   * function): the last one before a crash names where it died */
} cupti_note_code;

/* All times are CLOCK_MONOTONIC nanoseconds of the traced process's host. */
typedef struct cupti_hello_rec {
    uint32_t pid;
    uint32_t cupti_version;  /* cuptiGetVersion */
    uint32_t cuda_version;   /* cuDriverGetVersion, 0 when unknown */
    uint32_t flags;          /* 1: launch callbacks active; 2: activity active; 4: CUDA_LAUNCH_BLOCKING=1 */
    uint64_t t_ns;
} cupti_hello_rec;

typedef struct cupti_kernel_rec {
    uint64_t start_ns, end_ns;
    uint32_t correlation, stream, device, context;
    int32_t grid[3], block[3];
    uint32_t regs, static_smem, dynamic_smem;
    uint32_t graph_id;
    uint32_t reserved;
    uint32_t name_len;
} cupti_kernel_rec;

typedef struct cupti_memcpy_rec {
    uint64_t start_ns, end_ns, bytes;
    uint32_t correlation, stream, device, kind; /* cupti_copy_kind */
} cupti_memcpy_rec;

typedef struct cupti_memset_rec {
    uint64_t start_ns, end_ns, bytes;
    uint32_t correlation, stream, device, value;
} cupti_memset_rec;

typedef struct cupti_sync_rec {
    uint64_t t_ns;
    uint64_t stream;     /* CUstream handle; 0 with all=1: the whole context */
    uint32_t all;        /* cuCtxSynchronize / cudaDeviceSynchronize */
    uint32_t name_len;   /* the API function */
} cupti_sync_rec;

typedef struct cupti_launch_rec {
    uint64_t seq;        /* launch number in the process, from 1 */
    uint64_t t_ns;
    uint64_t stream;     /* CUstream handle (0: legacy default stream) */
    uint64_t ptr[CUPTI_PROTO_MAX_PTRS]; /* 8-byte arguments (possible device pointers) */
    uint32_t correlation;
    uint32_t api;        /* cupti_launch_api */
    uint32_t grid[3], block[3];
    uint32_t smem;
    uint32_t n_ptr;
    uint32_t thread;     /* gettid of the launching thread */
    uint32_t name_len;
} cupti_launch_rec;

typedef struct cupti_api_error_rec {
    uint64_t t_ns;
    uint64_t launch_seq; /* launches so far when the error was returned */
    uint32_t correlation;
    int32_t result;      /* CUresult / cudaError_t */
    uint32_t domain;     /* 1 driver, 2 runtime */
    uint32_t cbid;
    uint32_t thread;
    uint32_t name_len;   /* the API function */
} cupti_api_error_rec;

typedef struct cupti_alloc_rec {
    uint64_t t_ns;
    uint64_t ptr, bytes;
    uint32_t kind;       /* 1 device, 2 managed, 3 pitch, 4 async/pool */
    uint32_t name_len;   /* the API function */
} cupti_alloc_rec;

typedef struct cupti_free_rec {
    uint64_t t_ns;
    uint64_t ptr;
} cupti_free_rec;

typedef struct cupti_note_rec {
    uint32_t code;       /* cupti_note_code */
    uint32_t name_len;   /* the text */
} cupti_note_rec;

typedef struct cupti_flush_rec {
    uint64_t t_ns;
    uint32_t reason;     /* cupti_flush_reason */
    uint32_t dropped;    /* activity records CUPTI dropped so far */
} cupti_flush_rec;

/* Added in the same protocol version 1: a reader that predates it refuses type 12 as an
 * unknown record type (the stream is corrupt from there for it), so the injection library
 * and amxdiag must come from one build, as they do (the library sits next to the binary). */
typedef struct cupti_meminfo_rec {
    uint64_t t_ns;
    uint64_t free_bytes, total_bytes; /* cuMemGetInfo of the device of the current context */
    uint32_t device;     /* CUdevice ordinal */
    uint32_t reserved;   /* 0 */
} cupti_meminfo_rec;

/* --gpu-metrics (types 13 and 14, added within version 1 like type 12).  The values of one
 * kernel launch (one auto range), by role (cupti_range.h: CUPTI_RM_*); a role the chip
 * does not name is absent from `present` and its value is 0. */
#define CUPTI_KMETRIC_VALUES 10
typedef struct cupti_kmetric_rec {
    uint64_t seq;        /* profiled range number in the process, from 1 */
    uint64_t t_ns;       /* when its window was decoded */
    double v[CUPTI_KMETRIC_VALUES];
    uint32_t present;    /* bit r: v[r] was collected */
    uint32_t name_len;   /* the kernel symbol (as CUPTI names it in activity records) */
} cupti_kmetric_rec;

typedef struct cupti_mconfig_rec {
    uint64_t t_ns;
    uint32_t passes;     /* replay passes per kernel the config image needs */
    uint32_t present;    /* roles the chip names (bit per CUPTI_RM_*) */
    uint32_t max_ranges; /* kernels per window (decoded together) */
    uint32_t device;     /* CUdevice ordinal */
    uint32_t replay;     /* 1 kernel replay (CUPTI_KernelReplay) */
    uint32_t name_len;   /* the chip name (cuptiDeviceGetChipName: GH100, AD102, ...) */
} cupti_mconfig_rec;

/* Sent at every decoded window and at the end (the latest one counts): how many launches
 * were profiled out of those seen, under which sampling, at what cost. */
typedef struct cupti_mstats_rec {
    uint64_t t_ns;
    uint64_t seen;         /* kernel launches in the profiled context while the session ran */
    uint64_t profiled;     /* of them profiled (one auto range each) */
    uint64_t replay_ns;    /* time the program spent inside profiled launches (kernel replay) */
    uint64_t overhead_ns;  /* time in the session's own CUPTI calls (setup, windows, sampling) */
    uint32_t per_kernel;   /* at most this many profiled launches per kernel and grid (0: all) */
    uint32_t max_launches; /* at most this many in all (0: no cap) */
    uint32_t skip;         /* launches not profiled at the start */
    uint32_t toggles;      /* profiling started or stopped for the sampling */
} cupti_mstats_rec;

/* A decoded frame. `name` points into the parser's buffer (not NUL-terminated in the
 * stream; the parser adds the NUL) and is valid during the callback only. */
typedef struct cupti_frame {
    cupti_rec_type type;
    union {
        cupti_hello_rec hello;
        cupti_kernel_rec kernel;
        cupti_memcpy_rec memcpy;
        cupti_memset_rec memset;
        cupti_sync_rec sync;
        cupti_launch_rec launch;
        cupti_api_error_rec api_error;
        cupti_alloc_rec alloc;
        cupti_free_rec free;
        cupti_note_rec note;
        cupti_flush_rec flush;
        cupti_meminfo_rec meminfo;
        cupti_kmetric_rec kmetric;
        cupti_mconfig_rec mconfig;
        cupti_mstats_rec mstats;
    } u;
    const char *name;
    uint32_t name_len;
} cupti_frame;

/* Size of type's fixed struct; 0 for an unknown type. */
size_t cupti_proto_fixed_size(uint32_t type);
/* The name_len field of a fixed struct (0 for types without a name). */
uint32_t cupti_proto_name_len(uint32_t type, const void *fixed);

/* Encodes one frame into buf (cap bytes); returns its size, or 0 when it does not fit.
 * The fixed struct's name_len field is set from name_len (cut to CUPTI_PROTO_MAX_NAME).
 * Async-signal-safe (no allocation, no locks). */
size_t cupti_proto_encode(void *buf, size_t cap, cupti_rec_type type, const void *fixed, const char *name,
                          size_t name_len);

/* Incremental parser: feed it bytes as they come; every complete frame goes to the
 * callback. After the first malformed frame the parser stops (cupti_parser_error says
 * what and where) and ignores further input. */
typedef void (*cupti_frame_fn)(void *ctx, const cupti_frame *f);

typedef struct cupti_parser {
    cupti_frame_fn fn;
    void *ctx;
    unsigned char *buf;
    size_t len, cap;
    uint64_t offset;      /* stream offset of buf[0] */
    uint64_t frames;
    bool failed;
    char error[256];
} cupti_parser;

void cupti_parser_init(cupti_parser *p, cupti_frame_fn fn, void *ctx);
void cupti_parser_free(cupti_parser *p);
/* Returns false once the stream is known to be corrupt (or out of memory). */
bool cupti_parser_feed(cupti_parser *p, const void *data, size_t len);
/* End of stream: a partial frame left over is an error ("truncated"). */
bool cupti_parser_end(cupti_parser *p);
const char *cupti_parser_error(const cupti_parser *p); /* NULL when none */

/* The CUDA errors that corrupt the context or mean no code can run (700, 719, 209, ...):
 * the tracer flushes everything when a call returns one. */
bool cupti_error_is_fatal(int code);

const char *cupti_rec_type_name(uint32_t type);
const char *cupti_copy_kind_name(uint32_t kind);
const char *cupti_flush_reason_name(uint32_t reason);

#endif

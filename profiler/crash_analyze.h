/* The crash section of a run record: which kernel faulted.
 *
 * CUDA errors 700/719/... are sticky and asynchronous: the call that returns one (a
 * cudaGetLastError or cuStreamSynchronize after some later op) is usually not the kernel
 * that faulted.  These functions are pure: they take the facts the GPU collector saw
 * (the error, the launch ring with completion evidence, the allocations, compute-sanitizer
 * records) and build the section, conclusion included (docs/crash-report.md). */
#ifndef CRASH_ANALYZE_H
#define CRASH_ANALYZE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRASH_MAX_PTRS 8

typedef struct crash_launch {
    uint64_t seq;            /* launch number in the process, from 1 */
    const char *kernel;      /* demangled when possible */
    uint32_t grid[3], block[3], smem;
    uint64_t stream;         /* CUstream handle */
    uint64_t ptr[CRASH_MAX_PTRS];
    uint32_t n_ptr;
    uint64_t t_ns;           /* launch time (run-relative) */
    bool completed;          /* a completion record or a later successful synchronisation */
    const char *completed_by; /* "activity", "sync" */
    uint64_t start_ns, end_ns; /* from the activity record when completed_by == "activity" */
    const char *api;         /* "cuLaunchKernel", ... */
} crash_launch;

typedef struct crash_alloc {
    uint64_t ptr, bytes;
    bool freed;
} crash_alloc;

typedef struct crash_error {
    int code;                /* CUresult / cudaError_t */
    const char *api;         /* the call that returned it */
    const char *domain;      /* "driver", "runtime" */
    uint64_t t_ns;
    uint64_t launch_seq;     /* launches made before the error was returned */
} crash_error;

/* One compute-sanitizer memcheck report (profiler/sanitizer_parse.h fills these). */
typedef struct crash_san {
    const char *kernel;
    const char *what;        /* "Invalid __global__ write of size 4 bytes" */
    const char *kind;        /* "out of bounds", "misaligned", ... */
    uint64_t address;
    uint32_t size;
    int thread[3], block[3];
    bool has_nearest;
    uint64_t nearest_base, nearest_size;
    int64_t distance;        /* bytes after (>0) or before (<0) the nearest allocation */
    const char *location;    /* "file.cu:12" or "kernel+0x70" */
} crash_san;

typedef struct crash_input {
    const crash_error *error;      /* the first fatal error, NULL when none */
    const crash_launch *launches;  /* the ring, oldest first */
    size_t n_launches;
    uint64_t total_launches;       /* launches in the whole run (the ring keeps the last ones) */
    const crash_alloc *allocs;
    size_t n_allocs;
    const crash_san *san;
    size_t n_san;
    bool blocking;                 /* CUDA_LAUNCH_BLOCKING=1: a launch returns after its kernel */
} crash_input;

/* True for the CUDA errors that corrupt the context or mean no code could run: the ones
 * that start a crash section (700, 701, 702, 709, 710, 714..720, 200, 209, 218, 222, 999). */
bool crash_error_is_fatal(int code);

/* Builds the crash section (new reference). */
json_t *crash_build(const crash_input *in);

/* Merges compute-sanitizer records into an existing crash section (or a new one when
 * crash is NULL or not an object): adds "sanitizer", and names the faulting kernel from
 * the sanitizer (certain) with the conclusion rewritten.  Returns the section (the same
 * object when one was given, a new reference otherwise). */
json_t *crash_merge_sanitizer(json_t *crash, const crash_san *san, size_t n_san, const char *tool_version,
                              const char *source_file);

/* True when the crash section names no kernel for certain (faulting_kernel null, or its
 * confidence is not "certain"): the case for a confirmation re-run. */
bool crash_needs_confirmation(const json_t *crash);

/* Merges what a confirmation re-run of the command with CUDA_LAUNCH_BLOCKING=1 found
 * (confirm: that run's crash section, NULL when it did not fail; rc: its exit status)
 * into the first run's crash section: adds "confirmation" {ran, rc, reproduced, kernel,
 * seq, confidence, agrees, first_guess, error}, and when the re-run names a kernel for
 * certain, makes it the faulting kernel (confidence "certain", source "blocking re-run",
 * matched to the first run's ring by name) and rewrites the conclusion, saying whether
 * the first guess was right. */
void crash_merge_confirmation(json_t *crash, const json_t *confirm, int rc);

/* Which launch faulted, from the ring alone: among the launches made before the error
 * that have no completion evidence, one with a pointer argument outside every known
 * allocation, else the oldest; for a launch call that itself failed (or any launch
 * under CUDA_LAUNCH_BLOCKING=1), that launch.
 * Returns the index into in->launches, or -1 when the ring cannot tell.  *confidence gets
 * "certain", "likely" or "unknown"; *evidence a sentence (static or in buf). */
long crash_find_faulting(const crash_input *in, const char **confidence, char *evidence, size_t evidence_len);

#endif

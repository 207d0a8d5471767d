/* Instruction pointer → function → ISA class, for sampled processes.
 *
 * Keeps each process's executable mappings (from /proc/PID/maps and from the kernel's
 * mmap/fork/exec records, so that processes which have already exited still resolve),
 * opens each module once (prof_elf), and classifies each sampled function once and each
 * sampled block once (prof_isa).  Not thread-safe: the sampler owns it. */
#ifndef PROF_RESOLVE_H
#define PROF_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/adg_error.h"
#include "profiler/prof_isa.h"

typedef struct prof_func {
    char *name;        /* symbol, or "[unknown]" / "[anon]" / "[vdso]" bucket */
    char *module;      /* file path or pseudo name ("[anon]", "[vdso]") */
    bool resolved;     /* a symbol was found */
    prof_isa_class cls;          /* the most advanced class among its instructions */
    prof_isa_counts insns;       /* instructions per class (resolved functions only) */
    uint64_t samples;
    uint64_t block_samples[PROF_ISA_NCLASSES]; /* samples by the class of the sampled block */
} prof_func;

typedef struct prof_resolver prof_resolver;

prof_resolver *prof_resolver_new(void);
void prof_resolver_free(prof_resolver *r);

/* Mapping bookkeeping. */
void prof_resolver_add_map(prof_resolver *r, pid_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
                           const char *path);
void prof_resolver_fork(prof_resolver *r, pid_t parent, pid_t child); /* child gets a copy */
void prof_resolver_exec(prof_resolver *r, pid_t pid);                  /* forgets pid's maps */
/* Reads /proc/PID/maps (executable mappings); an error when the process is gone. */
adg_error *prof_resolver_load_proc(prof_resolver *r, pid_t pid);

/* Starts a new batch of samples (one drain): a process whose maps miss an ip has them
 * re-read from /proc at most once per batch. */
void prof_resolver_next_batch(prof_resolver *r);
/* Resolves one sampled ip; returns the function's index (>= 0), and the class of the
 * sampled instruction's block in *block. Counts the sample on the function. */
int prof_resolver_sample(prof_resolver *r, pid_t pid, uint64_t ip, prof_isa_class *block);
/* The same, and *spin (may be NULL) says whether the ip sits in a spin-wait loop
 * (prof_isa_spins). */
int prof_resolver_sample_ex(prof_resolver *r, pid_t pid, uint64_t ip, prof_isa_class *block, bool *spin);

/* A symbol name demangled when it is a C++ one (heap; caller frees). */
char *prof_demangle(const char *name);

size_t prof_resolver_nfuncs(const prof_resolver *r);
const prof_func *prof_resolver_func(const prof_resolver *r, int i);
/* Modules that could not be read, with why (for the record's unavailable list). */
size_t prof_resolver_nbad(const prof_resolver *r);
bool prof_resolver_bad(const prof_resolver *r, size_t i, const char **path, const char **why);

#endif

/* The probe's input layer.  Every raw fact a CPU/AMX/NUMA/PMU check looks at flows
 * through here: CPUID leaves, XCR0, arch_prctl results, uname, proc/sysfs files and
 * directory listings, libnuma results, libpfm4 and perf_event_open results.
 *
 * Live mode gathers each fact on first use and keeps it; --save-snapshot writes the
 * kept facts as JSON ("amxdiag.snapshot/1", docs/probe-schema.md).  Replay mode
 * (--snapshot) answers from such a file, so every check that does not execute code
 * evaluates a recorded machine exactly as it would the live one.  A fact the snapshot
 * does not hold reads as "not recorded", and the check says so instead of guessing. */
#ifndef PROBE_SOURCE_H
#define PROBE_SOURCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/adg_error.h"

#define PROBE_SNAPSHOT_FAMILY "amxdiag.snapshot"
#define PROBE_SNAPSHOT_MAJOR 1

typedef struct probe_src probe_src;

/* arch_prctl requests the AMX layer records. */
typedef enum probe_prctl_op {
    PROBE_PRCTL_GET_XCOMP_SUPP,       /* ARCH_GET_XCOMP_SUPP 0x1021 */
    PROBE_PRCTL_GET_XCOMP_PERM,       /* ARCH_GET_XCOMP_PERM 0x1022, before any request */
    PROBE_PRCTL_REQ_XTILEDATA,        /* ARCH_REQ_XCOMP_PERM 0x1023, XTILEDATA, in a child */
    PROBE_PRCTL_REQ_SMALL_ALTSTACK,   /* the same with a 4096-byte sigaltstack installed */
    PROBE_PRCTL_N,
} probe_prctl_op;

typedef struct probe_prctl {
    bool recorded;
    int ret;          /* 0 or -1 */
    int err;          /* errno when ret == -1 */
    uint64_t value;   /* the mask for the GET requests */
    uint64_t perm_after; /* REQ: ARCH_GET_XCOMP_PERM after the request (in the child) */
    int altstack_err;    /* REQ_SMALL_ALTSTACK: errno of sigaltstack() itself, 0 when installed */
} probe_prctl;

adg_error *probe_src_live(probe_src **out);
/* Reads and validates a snapshot; corrupt, truncated or foreign files are ADG_E_FORMAT
 * errors that name the file and what is wrong. */
adg_error *probe_src_load(const char *path, probe_src **out);
adg_error *probe_src_from_json(json_t *root, const char *what, probe_src **out); /* root is borrowed */
void probe_src_free(probe_src *s);

bool probe_src_is_replay(const probe_src *s);
/* Where a replayed snapshot came from ("snapshot FILE"), or "this machine". */
const char *probe_src_origin(const probe_src *s);

/* Writes what live mode gathered as a snapshot, atomically (the caller runs every CPU-side
 * section first so that the snapshot is complete whatever --only displays). */
adg_error *probe_src_save(probe_src *s, const char *path);
/* The snapshot document (borrowed): what live mode has gathered so far. */
const json_t *probe_src_json(const probe_src *s);

/* CPUID leaf/subleaf.  Leaves above the maximum (basic, hypervisor or extended) read
 * as zeros, as the checks expect.  False when a replayed snapshot lacks the leaf. */
bool probe_src_cpuid(probe_src *s, uint32_t leaf, uint32_t subleaf, uint32_t r[4]);
/* XCR0.  False when OSXSAVE is clear (XGETBV would fault) or not recorded. */
bool probe_src_xcr0(probe_src *s, uint64_t *xcr0);
probe_prctl probe_src_prctl(probe_src *s, probe_prctl_op op);
/* AT_MINSIGSTKSZ from the aux vector (0 when the kernel does not supply it). */
bool probe_src_minsigstksz(probe_src *s, uint64_t *v);
/* uname fields: "sysname", "release", "version", "machine"; NULL when unknown. */
const char *probe_src_uname(probe_src *s, const char *field);
/* A proc/sysfs file's text (NUL-terminated, borrowed), or NULL with *err = errno
 * (ENODATA when a snapshot did not record it).  /proc/cpuinfo is kept to its first
 * processor's block. */
const char *probe_src_file(probe_src *s, const char *path, int *err);
/* A directory's entry names (JSON array of strings, borrowed, sorted), or NULL with *err. */
const json_t *probe_src_dir(probe_src *s, const char *path, int *err);
/* Structured results gathered by a section's live gatherer (libnuma, libpfm4,
 * perf_event_open): returns the recorded object for `key`, calling gather(ctx) in live
 * mode the first time.  NULL when a snapshot lacks it. */
typedef json_t *(*probe_gather_fn)(probe_src *s, void *ctx);
const json_t *probe_src_gathered(probe_src *s, const char *key, probe_gather_fn gather, void *ctx);

/* Effective uid of the probed process (root changes perf and permission verdicts). */
long probe_src_euid(probe_src *s);

#endif

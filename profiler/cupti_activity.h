/* CUPTI activity records (the layouts of the CUDA 13 headers) → amxdiag's trace records
 * (cupti_proto.h).  Pure: no CUPTI call, so unit tests feed it records built from the
 * real header structs.  Compiled into amxdiag and into the injection library. */
#ifndef CUPTI_ACTIVITY_H
#define CUPTI_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "profiler/cupti_proto.h"

/* Receives one decoded record (name may be NULL). */
typedef void (*cupti_emit_fn)(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len);

/* Whether this build can decode activity records (it was compiled with the CUPTI headers). */
bool cupti_activity_supported(void);

#ifdef ADG_HAVE_CUPTI
#include <cupti_activity.h>

/* Decodes one record; ts_offset_ns is added to every timestamp (CUPTI's clock →
 * CLOCK_MONOTONIC when CUPTI could not be given our clock).  Returns false for a kind
 * amxdiag does not use (nothing is emitted). */
bool cupti_activity_decode(const CUpti_Activity *rec, int64_t ts_offset_ns, cupti_emit_fn emit, void *ctx);

/* Walks a buffer CUPTI completed, with CUPTI's own iterator (next = cuptiActivityGetNextRecord,
 * or a test's); returns the number of records decoded. */
typedef CUptiResult (*cupti_next_fn)(uint8_t *buffer, size_t valid, CUpti_Activity **record);
size_t cupti_activity_walk(uint8_t *buffer, size_t valid, cupti_next_fn next, int64_t ts_offset_ns,
                           cupti_emit_fn emit, void *ctx);

/* CUpti_ActivityMemcpyKind → cupti_copy_kind. */
uint32_t cupti_activity_copy_kind(uint32_t cupti_kind);
#endif

#endif

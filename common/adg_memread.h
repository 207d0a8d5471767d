/* The memory read loop behind every read-bandwidth figure: `probe --bench`'s ceiling and
 * the figures `bench kernels` divides by, so both read memory the same way. */
#ifndef ADG_MEMREAD_H
#define ADG_MEMREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Streams per thread of the multi-stream pass (ADG_MEMREAD_STREAMS). */
#define ADG_MEMREAD_STREAMS 8

/* XOR of every 64-bit word of [p, p + bytes) (p 64-byte aligned), so the loads cannot be
 * dropped.  The range is read as `streams` (1 .. 64) equal parts walked side by side, 256
 * bytes of each in turn, the rest at the end; with avx512, four 512-bit loads per 256
 * bytes, and with pf > 0 each step's four lines are also prefetched pf bytes ahead.
 * Without avx512, 64-bit loads, one stream, no prefetch. */
uint64_t adg_memread(const void *p, size_t bytes, size_t pf, int streams, bool avx512);

#endif

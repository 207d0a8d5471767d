/* Small utilities shared by every folder: time, files, strings. */
#ifndef ADG_UTIL_H
#define ADG_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

#define ADG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t adg_now_ns(void);
/* CLOCK_REALTIME as an ISO-8601 UTC string "2026-11-25T20:26:34Z" into buf (>= 21 bytes). */
void adg_utc_iso8601(char *buf, size_t len);

/* Reads a whole file (sysfs/proc files included, whose size is reported as 0) into a
 * NUL-terminated heap buffer. max_bytes bounds the read (0 = 256 MiB). */
adg_error *adg_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* Writes data to path atomically: a temporary file in the same directory, created
 * with O_EXCL|O_NOFOLLOW, fsync'ed, then rename()d over path. On any failure the
 * temporary is removed and path is untouched. */
adg_error *adg_write_file_atomic(const char *path, const void *data, size_t len);

/* Growable string. All functions keep buf NUL-terminated; on allocation failure
 * the buffer stays valid and `failed` is set. */
typedef struct adg_strbuf {
    char *buf;
    size_t len, cap;
    bool failed;
} adg_strbuf;

void adg_sb_init(adg_strbuf *sb);
__attribute__((format(printf, 2, 3)))
void adg_sb_printf(adg_strbuf *sb, const char *fmt, ...);
void adg_sb_vprintf(adg_strbuf *sb, const char *fmt, va_list ap);
void adg_sb_append(adg_strbuf *sb, const char *s, size_t n);
void adg_sb_puts(adg_strbuf *sb, const char *s);
/* Returns the heap string (caller frees) and resets sb. */
char *adg_sb_take(adg_strbuf *sb);
void adg_sb_free(adg_strbuf *sb);

/* Strict number parsing: the whole string must be a number in range. */
bool adg_parse_u64(const char *s, uint64_t *out);
bool adg_parse_i64(const char *s, int64_t *out);
bool adg_parse_double(const char *s, double *out);

/* Room for one more element in a growable array (*items of *cap elements of elem bytes,
 * n in use): doubles the capacity (first: the first capacity) when n == *cap.  False,
 * with the array untouched, when memory ran out. */
bool adg_grow(void *items, size_t *cap, size_t n, size_t elem, size_t first);

/* Trims trailing whitespace in place; returns s. */
char *adg_rstrip(char *s);

/* Formats bytes as "486.00 MiB" (binary units) into buf. */
const char *adg_fmt_bytes(double bytes, char *buf, size_t len);

#endif

/* compute-sanitizer memcheck reports: the XML file of `--xml --save=FILE` (read with
 * expat) and the text it prints ("========= Invalid __global__ write of size 4 bytes").
 * Each memory-access report becomes a crash_san (kernel, thread, block, address, size,
 * distance to the nearest allocation), which crash_merge_sanitizer merges into the run
 * record's crash section. */
#ifndef SANITIZER_PARSE_H
#define SANITIZER_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_error.h"
#include "profiler/crash_analyze.h"

typedef struct san_report {
    crash_san *recs;        /* memory-access reports, in file order (strings owned) */
    size_t n;
    size_t other;           /* reports that are not memory accesses (API errors, leaks, ...) */
    long errors_total;      /* "ERROR SUMMARY: N errors", -1 when absent */
    bool truncated;         /* the report ended early (no summary / unterminated record) */
    char format[8];         /* "xml" or "text" */
} san_report;

/* Parse a buffer; `what` names it in errors (a file name).  A file that is not a
 * compute-sanitizer report, or is cut inside the XML, is an ADG_E_FORMAT error naming the
 * line and column. */
adg_error *san_parse_xml(const char *data, size_t len, const char *what, san_report *out);
adg_error *san_parse_text(const char *data, size_t len, const char *what, san_report *out);
/* Reads a file and parses it as XML when it starts with '<', as text otherwise. */
adg_error *san_parse_file(const char *path, san_report *out);
void san_report_free(san_report *r);

/* "N bytes after the nearest allocation at 0x... of size M bytes" (also "before") in any
 * text: fills the nearest-allocation fields; false when absent. */
bool san_parse_nearest(const char *text, crash_san *s);

#endif

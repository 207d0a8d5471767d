/* `probe --binary PATH`, the AMX part: the x86-64 code of an ELF file (executable, PIE,
 * shared library, object) decoded for tile instructions, the XTILEDATA permission
 * request and the tile configurations each LDTILECFG loads (probe/amx_scan.h). */
#ifndef PROBE_BINARY_AMX_H
#define PROBE_BINARY_AMX_H

#include <stdbool.h>
#include <stddef.h>

#include "common/adg_error.h"
#include "probe/amx_scan.h"
#include "probe/probe_report.h"

/* Scans path's executable sections into s (amx_scan_init'ed by the caller).  *applies is
 * false, with s untouched, for a file that holds no x86-64 code (a .fatbin, a cubin, an
 * ELF for another machine); *machine then names what it is. */
adg_error *binary_amx_scan(const char *path, amx_scan *s, bool *applies, char *machine, size_t machine_len);

/* Adds the checks binary.K.amx, binary.K.amx.permission and binary.K.amx.cfg.N. */
adg_error *binary_amx_checks(probe_report *rep, size_t k, const char *path, const char *base);

#endif

/* The probe's results as Prometheus metrics (`amxdiag probe --format prometheus`,
 * `--textfile DIR`): one gauge per check, the machine's measured ceilings, GPU and
 * binary verdicts per device and compute capability.  The metric names and labels are
 * listed in docs/fleet.md; the check status is a number:
 * 0 pass, 1 info, 2 warn, 3 fail, 4 skip (the order of probe_status). */
#ifndef PROBE_PROM_H
#define PROBE_PROM_H

#include <stdbool.h>
#include <stdio.h>

#include "common/adg_ceilings.h"
#include "common/adg_error.h"
#include "common/adg_util.h"
#include "probe/probe_report.h"

/* The file written into a node_exporter textfile-collector directory. */
#define PROBE_PROM_TEXTFILE "amxdiag_probe.prom"

typedef struct probe_prom_opts {
    const adg_ceilings *ceilings; /* NULL: no ceilings cached (or a snapshot replay) */
    double duration_s;            /* how long the probe ran; < 0 leaves the gauge out */
    double timestamp_s;           /* when it ran (Unix seconds); 0 leaves the gauge out */
} probe_prom_opts;

/* Appends the exposition of the report to out. */
void probe_prom_render(const probe_report *r, const probe_prom_opts *o, adg_strbuf *out);

/* Checks that DIR is an existing directory (before the probe spends its time). */
adg_error *probe_prom_check_dir(const char *dir);
/* Writes text to DIR/amxdiag_probe.prom atomically (a temporary in DIR renamed over it,
 * so node_exporter never reads half a file).  DIR must exist. */
adg_error *probe_prom_write_textfile(const char *dir, const char *text, char **path_out);

/* What `probe --format prometheus` / `--textfile DIR` do once the sections ran: loads this
 * machine's cached ceilings (not for a snapshot replay: they would be this machine's,
 * not the snapshot's), renders, writes DIR/amxdiag_probe.prom when textfile_dir is set
 * and prints to `out` when it is not NULL.  On success *written (may be NULL) gets the
 * textfile's path (caller frees). */
adg_error *probe_prom_emit(const probe_report *r, bool replay, double duration_s, const char *textfile_dir,
                           FILE *out, char **written);

#endif

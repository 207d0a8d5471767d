/* `amxdiag export`: runs a profiling session like `amxdiag profile` (a command, --pid, or
 * the built-in path) and serves its metrics bus to Prometheus over HTTP (/metrics in the
 * text exposition format 0.0.4, /healthz).  docs/export.md, docs/fleet.md. */
#ifndef PROF_EXPORT_H
#define PROF_EXPORT_H

#define PROF_EXPORT_SCHEMA "amxdiag.export/1"

int prof_export_cmd_main(int argc, char **argv);

#endif

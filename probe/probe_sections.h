/* The CPU-side sections of the probe.  Each reads its inputs through the probe_src
 * (live or a snapshot) and adds checks to the report; an error return means the section
 * could not run at all. */
#ifndef PROBE_SECTIONS_H
#define PROBE_SECTIONS_H

#include "probe/probe.h"
#include "probe/probe_source.h"

adg_error *probe_cpu_section(const probe_opts *o, probe_src *src, probe_report *rep);
adg_error *probe_amx_section(const probe_opts *o, probe_src *src, probe_report *rep);
adg_error *probe_numa_section(const probe_opts *o, probe_src *src, probe_report *rep);
adg_error *probe_pmu_section(const probe_opts *o, probe_src *src, probe_report *rep);
/* --bench: measures (live only), caches through common/adg_ceilings, adds bench.* checks. */
adg_error *probe_bench_section(const probe_opts *o, probe_src *src, probe_report *rep);

/* "5.15.0-91-generic" -> 5, 15; false when it does not start with two numbers. */
bool probe_kernel_version(const char *release, int *major, int *minor);
/* Formats a CPU list as ranges: "0-15,32-47". */
void probe_fmt_cpulist(const json_t *cpus, char *buf, size_t len);

#endif

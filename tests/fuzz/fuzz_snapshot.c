/* Probe snapshots ("amxdiag.snapshot/1"): the loader and every CPU-side section that
 * evaluates a recorded machine (CPU, AMX layers, NUMA, PMU), then the report in JSON and
 * text, as `amxdiag probe --snapshot FILE` does. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include "common/adg_error.h"
#include "fuzz_util.h"
#include "probe/probe.h"
#include "probe/probe_sections.h"
#include "probe/probe_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_quiet();
    char path[64];
    int fd = fuzz_memfd("snapshot", data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    probe_src *src = NULL;
    adg_error *e = probe_src_load(path, &src);
    close(fd);
    if (e) {
        adg_error_free(e);
        return 0;
    }
    probe_opts o = {.sections = PROBE_SEC_ALL & ~PROBE_SEC_GPU, .verbose = true, .snapshot_in = path};
    probe_report rep;
    probe_report_init(&rep);
    adg_error_free(probe_cpu_section(&o, src, &rep));
    adg_error_free(probe_amx_section(&o, src, &rep));
    adg_error_free(probe_numa_section(&o, src, &rep));
    adg_error_free(probe_pmu_section(&o, src, &rep));
    json_t *j = probe_report_json(&rep);
    char *s = json_dumps(j, JSON_COMPACT);
    free(s);
    json_decref(j);
    probe_report_print(&rep, stdout, true, true);
    probe_report_free(&rep);
    probe_src_free(src);
    return 0;
}

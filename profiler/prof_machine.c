/* The record's machine section: the facts a reader needs to interpret the figures.
 * (The probe has no collection API callable from here yet; when probe/probe.h grows
 * one, this file should delegate to it.) */
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "profiler/prof_perf.h"
#include "profiler/prof_pmu.h"
#include "profiler/prof_session.h"

static void cpuinfo_field(const char *info, const char *key, char *out, size_t len)
{
    out[0] = 0;
    const char *p = strstr(info, key);
    if (!p || !(p = strchr(p, ':')))
        return;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, "\n");
    snprintf(out, len, "%.*s", (int)n, p);
}

json_t *prof_machine_cpu_nodes(void)
{
    /* Index = logical CPU number; libnuma's answer, so cgroup- and offline-aware the same
     * way as the rest of the NUMA collector.  Without NUMA support everything is node 0. */
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    bool numa = numa_available() >= 0;
    json_t *a = json_array();
    for (long c = 0; c < conf && a; c++)
        json_array_append_new(a, json_integer(numa ? numa_node_of_cpu((int)c) : 0));
    return a;
}

json_t *prof_machine_section(void)
{
    char *info = NULL;
    size_t len;
    adg_error *e = adg_read_file("/proc/cpuinfo", 0, &info, &len);
    adg_error_free(e);
    char model[256] = "", vendor[64] = "", flags[8192] = "";
    if (info) {
        cpuinfo_field(info, "model name", model, sizeof model);
        cpuinfo_field(info, "vendor_id", vendor, sizeof vendor);
        cpuinfo_field(info, "flags", flags, sizeof flags);
        free(info);
    }
    unsigned family, mod;
    prof_pmu_cpu_model(&family, &mod);
    struct utsname u;
    memset(&u, 0, sizeof u);
    uname(&u);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    json_t *isa = json_array();
    static const char *const want[] = {"avx2",        "avx512f",  "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                       "avx_vnni",    "amx_tile", "amx_int8",    "amx_bf16",    "amx_fp16",
                                       "hypervisor"};
    for (size_t i = 0; i < ADG_ARRAY_LEN(want); i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", want[i]);
        char padded[8200];
        snprintf(padded, sizeof padded, " %s ", flags);
        if (strstr(padded, pat))
            json_array_append_new(isa, json_string(want[i]));
    }
    json_t *m = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:I,s:s,s:s,s:o,s:i,s:b,s:s}", "cpu_model", model, "vendor", vendor,
                     "family", (int)family, "model", (int)mod, "logical_cpus", (int)sysconf(_SC_NPROCESSORS_CONF),
                     "online_cpus", (int)sysconf(_SC_NPROCESSORS_ONLN), "numa_nodes",
                     numa_available() < 0 ? 1 : numa_num_configured_nodes(), "memory_bytes",
                     (json_int_t)(pages > 0 && psz > 0 ? pages * psz : 0), "kernel", u.release, "arch", u.machine,
                     "cpu_flags", isa, "perf_event_paranoid", prof_perf_paranoid(), "cpu_pmu",
                     access("/sys/bus/event_source/devices/cpu", F_OK) == 0, "source", "amxdiag profile");
    if (m)
        json_object_set_new(m, "cpu_node", prof_machine_cpu_nodes());
    return m;
}

/* The pmu section: perf_event_paranoid, whether hardware and software events open (with
 * the errno and its meaning), the event sources in sysfs, libpfm4's version, PMUs and
 * whether it knows this CPU model, and which AMX, 512-bit FP and uncore IMC events
 * encode and open. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <linux/perf_event.h>
#include <perfmon/pfmlib.h>
#include <perfmon/pfmlib_perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/probe_cpu.h"
#include "probe/probe_sections.h"

/* The events later collectors use, in Intel's names and libpfm4's spelling. */
static const struct pmu_event {
    const char *group; /* "amx", "fp512", "imc" */
    const char *name;
    const char *pfm;   /* without the "pmu::" prefix */
    const char *note;
} pmu_events[] = {
    {"amx", "EXE.AMX_BUSY", "EXE:AMX_BUSY", "AMX busy = EXE.AMX_BUSY / core clocks"},
    {"amx", "AMX_OPS_RETIRED.INT8", "AMX_OPS_RETIRED:INT8", "withdrawn from Intel's lists in 2024; counter 0 only"},
    {"amx", "AMX_OPS_RETIRED.BF16", "AMX_OPS_RETIRED:BF16", "withdrawn from Intel's lists in 2024; counter 0 only"},
    {"fp512", "FP_ARITH_INST_RETIRED.512B_PACKED_SINGLE", "FP_ARITH_INST_RETIRED:512B_PACKED_SINGLE", NULL},
    {"fp512", "FP_ARITH_INST_RETIRED.512B_PACKED_DOUBLE", "FP_ARITH_INST_RETIRED:512B_PACKED_DOUBLE", NULL},
    {"fp512", "FP_ARITH_INST_RETIRED2.512B_PACKED_HALF", "FP_ARITH_INST_RETIRED2:512B_PACKED_HALF", NULL},
};

static int perf_open(struct perf_event_attr *a, int pid, int cpu)
{
    a->size = sizeof *a;
    a->disabled = 1;
    int fd = (int)syscall(SYS_perf_event_open, a, pid, cpu, -1, 0);
    if (fd < 0)
        return errno ? errno : EINVAL;
    close(fd);
    return 0;
}

static json_t *open_result(int err)
{
    return json_pack("{s:i}", "errno", err);
}

static const char *find_core_pmu(char *buf, size_t len)
{
    pfm_pmu_t p;
    buf[0] = '\0';
    pfm_for_all_pmus(p) {
        pfm_pmu_info_t info;
        memset(&info, 0, sizeof info);
        info.size = sizeof info;
        if (pfm_get_pmu_info(p, &info) == PFM_SUCCESS && info.is_present && info.type == PFM_PMU_TYPE_CORE) {
            snprintf(buf, len, "%s", info.name);
            return buf;
        }
    }
    return NULL;
}

static json_t *encode_events(const char *core, bool try_open)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < ADG_ARRAY_LEN(pmu_events); i++) {
        const struct pmu_event *ev = &pmu_events[i];
        char full[160];
        snprintf(full, sizeof full, "%s::%s", core, ev->pfm);
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        pfm_perf_encode_arg_t arg;
        memset(&arg, 0, sizeof arg);
        arg.attr = &attr;
        arg.size = sizeof arg;
        int r = pfm_get_os_event_encoding(full, PFM_PLM3, PFM_OS_PERF_EVENT, &arg);
        json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "group", ev->group, "name", ev->name, "pfm", full, "encoded",
                              r == PFM_SUCCESS);
        if (r == PFM_SUCCESS) {
            char cfg[24];
            snprintf(cfg, sizeof cfg, "%#llx", (unsigned long long)attr.config);
            json_object_set_new(o, "type", json_integer(attr.type));
            json_object_set_new(o, "config", json_string(cfg));
            if (try_open) {
                attr.exclude_kernel = 1;
                attr.exclude_hv = 1;
                json_object_set_new(o, "open_errno", json_integer(perf_open(&attr, 0, -1)));
            }
        } else {
            json_object_set_new(o, "pfm_error", json_string(pfm_strerror(r)));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

typedef struct pmu_ctx {
    const probe_cpu *cpu;
} pmu_ctx;

static json_t *gather_pmu(probe_src *src, void *vctx)
{
    pmu_ctx *ctx = vctx;
    json_t *o = json_object();
    /* perf_event_open: one hardware and one software event on this thread. */
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_CPU_CYCLES;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    json_object_set_new(o, "cycles", open_result(perf_open(&a, 0, -1)));
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    json_object_set_new(o, "instructions", open_result(perf_open(&a, 0, -1)));
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.exclude_kernel = 1;
    json_object_set_new(o, "cpu-clock", open_result(perf_open(&a, 0, -1)));

    /* libpfm4 */
    /* pfm_get_version() gives the API version (4.0); the release is in the file name. */
    unsigned v = (unsigned)pfm_get_version();
    char ver[64];
    snprintf(ver, sizeof ver, "(API %u.%u)", PFM_MAJ_VERSION(v), PFM_MIN_VERSION(v));
    Dl_info dl;
    char real[PATH_MAX];
    if (dladdr((void *)pfm_initialize, &dl) && dl.dli_fname && realpath(dl.dli_fname, real)) {
        const char *so = strstr(real, ".so.");
        if (so && strchr(so + 4, '.'))
            snprintf(ver, sizeof ver, "%s", so + 4);
    }
    int r = pfm_initialize();
    json_t *pfm = json_pack("{s:s,s:i,s:s}", "version", ver, "init", r, "init_error", pfm_strerror(r));
    json_t *pmus = json_array();
    char core[64] = "";
    if (r == PFM_SUCCESS) {
        pfm_pmu_t p;
        pfm_for_all_pmus(p) {
            pfm_pmu_info_t info;
            memset(&info, 0, sizeof info);
            info.size = sizeof info;
            if (pfm_get_pmu_info(p, &info) == PFM_SUCCESS && info.is_present)
                json_array_append_new(pmus, json_pack("{s:s,s:s,s:i,s:i}", "name", info.name, "desc", info.desc,
                                                      "type", (int)info.type, "nevents", info.nevents));
        }
        find_core_pmu(core, sizeof core);
    }
    json_object_set_new(pfm, "pmus", pmus);
    json_object_set_new(pfm, "core_pmu", core[0] ? json_string(core) : json_null());
    /* A model the installed libpfm4 does not know but whose core events match a table it
     * has (EMR and GNR use SPR's): force that table, as LIBPFM_FORCE_PMU does. */
    const char *table = core[0] ? core : NULL;
    bool forced = false;
    const probe_uarch *u = ctx->cpu->uarch;
    if (r == PFM_SUCCESS && !table && u && u->pfm_core) {
        pfm_terminate();
        setenv("LIBPFM_FORCE_PMU", u->pfm_core, 1);
        int r2 = pfm_initialize();
        if (r2 == PFM_SUCCESS) {
            pfm_pmu_info_t info;
            memset(&info, 0, sizeof info);
            info.size = sizeof info;
            char forced_core[64];
            if (find_core_pmu(forced_core, sizeof forced_core) && !strcmp(forced_core, u->pfm_core)) {
                forced = true;
                table = u->pfm_core;
            }
        }
        json_object_set_new(pfm, "forced", forced ? json_string(u->pfm_core) : json_null());
        json_object_set_new(pfm, "force_result", json_string(pfm_strerror(r2)));
        if (forced && !strcmp(ctx->cpu->vendor, "GenuineIntel"))
            json_object_set_new(o, "events", encode_events(table, true));
        pfm_terminate();
        unsetenv("LIBPFM_FORCE_PMU");
        pfm_initialize();
    } else if (table && !strcmp(ctx->cpu->vendor, "GenuineIntel")) {
        json_object_set_new(o, "events", encode_events(table, true));
    }
    json_object_set_new(o, "libpfm", pfm);

    /* Uncore memory controllers from sysfs: CAS_COUNT.RD (event 0x05, umask 0xcf), 64 bytes each. */
    int err;
    const json_t *devs = probe_src_dir(src, "/sys/bus/event_source/devices", &err);
    json_t *imc = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d) {
        const char *name = json_string_value(d);
        if (strncmp(name, "uncore_imc", 10))
            continue;
        char path[160];
        snprintf(path, sizeof path, "/sys/bus/event_source/devices/%s/type", name);
        const char *t = probe_src_file(src, path, &err);
        json_t *e = json_pack("{s:s}", "pmu", name);
        if (t) {
            memset(&a, 0, sizeof a);
            a.type = (unsigned)atoi(t);
            a.config = 0xcf05;
            json_object_set_new(e, "type", json_integer(a.type));
            json_object_set_new(e, "open_errno", json_integer(perf_open(&a, -1, 0)));
        }
        json_array_append_new(imc, e);
    }
    json_object_set_new(o, "imc", imc);
    return o;
}

static const char *open_meaning(int e)
{
    switch (e) {
    case 0: return "opens";
    case ENOENT:
    case EOPNOTSUPP:
    case ENODEV: return "no such PMU here: a VM without a virtual PMU, or a CPU the kernel's perf driver does not know";
    case EACCES:
    case EPERM: return "no permission: perf_event_paranoid or a missing CAP_PERFMON";
    case EINVAL: return "invalid for this PMU (event or modifier not supported)";
    case EBUSY: return "the counter is taken (another profiler or the NMI watchdog)";
    case ENOSYS: return "perf_event_open is not available (kernel without perf, or seccomp)";
    case ENODATA: return "not recorded";
    default: return "failed";
    }
}

static const char *paranoid_meaning(int v)
{
    if (v <= -1)
        return "everything allowed";
    if (v == 0)
        return "no raw tracepoints for users; CPU-wide and kernel events allowed";
    if (v == 1)
        return "user and kernel profiling of own processes; no CPU-wide events for users";
    if (v == 2)
        return "user-space profiling of own processes only (kernel default)";
    return "no perf events at all for unprivileged users (Debian/Ubuntu hardening)";
}

adg_error *probe_pmu_section(const probe_opts *o, probe_src *src, probe_report *rep)
{
    (void)o;
    probe_cpu cpu;
    probe_cpu_decode(src, &cpu);
    pmu_ctx ctx = {&cpu};
    int err = 0;
    long euid = probe_src_euid(src);
    const char *par = probe_src_file(src, "/proc/sys/kernel/perf_event_paranoid", &err);
    int pv = par ? atoi(par) : 99;
    probe_check *k;
    if (!par) {
        probe_add(rep, "pmu", "pmu.paranoid", PROBE_SKIP, "perf_event_paranoid", "the setting could not be read",
                  "/proc/sys/kernel/perf_event_paranoid: %s", strerror(err));
    } else {
        probe_status st = euid == 0 ? PROBE_PASS : pv > 2 ? PROBE_WARN : pv > 0 ? PROBE_INFO : PROBE_PASS;
        k = probe_add(rep, "pmu", "pmu.paranoid", st, "perf_event_paranoid",
                      euid == 0 ? "running as root: the setting does not restrict this process"
                                : "CPU-wide and uncore counting (memory bandwidth) need 0 or CAP_PERFMON; "
                                  "per-process user-space counting needs 2 or less",
                      "%d: %s; euid %ld", pv, paranoid_meaning(pv), euid);
        if (st != PROBE_PASS)
            probe_check_set_remedy(k, "sudo sysctl kernel.perf_event_paranoid=%d (or give the binary CAP_PERFMON: "
                                      "sudo setcap cap_perfmon+ep amxdiag)",
                                   pv > 2 ? 2 : 0);
        probe_report_set_fact(rep, "pmu", "paranoid", json_integer(pv));
    }

    const json_t *g = probe_src_gathered(src, "pmu", gather_pmu, &ctx);
    if (!json_is_object(g)) {
        probe_add(rep, "pmu", "pmu.hardware", PROBE_SKIP, "Hardware events", "the snapshot holds no PMU facts",
                  "not recorded");
        return NULL;
    }
    const json_t *devs = probe_src_dir(src, "/sys/bus/event_source/devices", &err);
    adg_strbuf dl;
    adg_sb_init(&dl);
    size_t i;
    json_t *d;
    bool sys_cpu = false;
    size_t nimc = 0;
    json_array_foreach(devs, i, d) {
        const char *n = json_string_value(d);
        sys_cpu |= !strcmp(n, "cpu") || !strcmp(n, "cpu_core");
        if (!strncmp(n, "uncore_imc", 10)) {
            nimc++;
            continue; /* summarised below */
        }
        adg_sb_printf(&dl, "%s%s", dl.len ? ", " : "", n);
    }
    if (nimc)
        adg_sb_printf(&dl, "%suncore_imc_* (%zu)", dl.len ? ", " : "", nimc);

    int cyc = (int)json_integer_value(json_object_get(json_object_get(g, "cycles"), "errno"));
    int clk = (int)json_integer_value(json_object_get(json_object_get(g, "cpu-clock"), "errno"));
    bool no_pmu = cyc == ENOENT || cyc == EOPNOTSUPP || cyc == ENODEV;
    if (cyc == 0) {
        k = probe_add(rep, "pmu", "pmu.hardware", PROBE_PASS, "Hardware events (cycles)",
                      "hardware counters work: AMX busy, FP and bandwidth metrics are measurable",
                      "perf_event_open(PERF_COUNT_HW_CPU_CYCLES, this thread) opens; sysfs event sources: %s",
                      dl.buf ? dl.buf : "none");
    } else {
        k = probe_add(rep, "pmu", "pmu.hardware", PROBE_WARN, "Hardware events (cycles)",
                      no_pmu ? "no hardware PMU (a VM without a virtual PMU): amxdiag profiles with software "
                               "sampling and attributes AMX/AVX-512 use by disassembly instead of counters"
                             : open_meaning(cyc),
                      "perf_event_open(PERF_COUNT_HW_CPU_CYCLES) = -1, errno %d (%s): %s; sysfs event sources: %s%s",
                      cyc, strerror(cyc), open_meaning(cyc), dl.buf ? dl.buf : "none",
                      sys_cpu ? "" : " (no 'cpu' PMU)");
        if (no_pmu)
            probe_check_set_remedy(k, "on KVM enable the guest PMU (QEMU -cpu host,pmu=on; libvirt <pmu "
                                      "state='on'/>), or run on bare metal; cloud VMs expose one only on some "
                                      "(often full-socket) instance types");
        else
            probe_check_set_remedy(k, "sudo sysctl kernel.perf_event_paranoid=2, or run as root / with CAP_PERFMON");
    }
    probe_report_set_fact(rep, "pmu", "hardware", json_boolean(cyc == 0));
    adg_sb_free(&dl);

    k = probe_add(rep, "pmu", "pmu.software", clk == 0 ? PROBE_PASS : PROBE_FAIL, "Software events (cpu-clock)",
                  clk == 0 ? "software sampling works: the sampler can attribute time to functions and ISA sets"
                           : "software events do not open either: amxdiag cannot sample this machine",
                  "perf_event_open(PERF_COUNT_SW_CPU_CLOCK) %s%s%s", clk ? "= -1: " : "opens",
                  clk ? strerror(clk) : "", clk ? "" : "");
    if (clk)
        probe_check_set_remedy(k, "sudo sysctl kernel.perf_event_paranoid=2 (or lower); in a container allow "
                                  "perf_event_open in the seccomp profile");
    probe_report_set_fact(rep, "pmu", "software", json_boolean(clk == 0));

    const json_t *pfm = json_object_get(g, "libpfm");
    const char *ver = json_string_value(json_object_get(pfm, "version"));
    const char *core = json_string_value(json_object_get(pfm, "core_pmu"));
    const char *forced = json_string_value(json_object_get(pfm, "forced"));
    adg_strbuf pl;
    adg_sb_init(&pl);
    json_t *p;
    json_array_foreach(json_object_get(pfm, "pmus"), i, p)
        adg_sb_printf(&pl, "%s%s", pl.len ? ", " : "", json_string_value(json_object_get(p, "name")));
    int init = (int)json_integer_value(json_object_get(pfm, "init"));
    k = probe_add(rep, "pmu", "pmu.libpfm", init == 0 ? PROBE_INFO : PROBE_WARN, "libpfm4",
                  init == 0 ? "libpfm4 turns event names into perf_event attributes"
                            : "libpfm4 failed to initialise: events by name are unavailable",
                  "libpfm4 %s, pfm_initialize: %s; PMUs detected: %s", ver ? ver : "?",
                  json_string_value(json_object_get(pfm, "init_error")), pl.buf ? pl.buf : "none");
    adg_sb_free(&pl);

    char ua[128];
    probe_cpu_uarch_name(&cpu, ua, sizeof ua);
    const char *want = cpu.uarch ? cpu.uarch->pfm_core : NULL;
    if (core) {
        probe_add(rep, "pmu", "pmu.model", PROBE_PASS, "libpfm4 knows this CPU model",
                  "event names resolve with this model's own table", "libpfm4 %s detects core PMU '%s' for %s",
                  ver ? ver : "?", core, ua);
    } else if (forced) {
        k = probe_add(rep, "pmu", "pmu.model", PROBE_WARN, "libpfm4 knows this CPU model",
                      "this libpfm4 predates the model; its core events are those of the forced table, so amxdiag "
                      "uses that table (as LIBPFM_FORCE_PMU does)",
                      "libpfm4 %s does not know family %u model %u (%s); amxdiag uses the '%s' table (%s)",
                      ver ? ver : "?", cpu.family, cpu.model, ua, forced,
                      !strcmp(forced, "spr") ? "Sapphire Rapids" : forced);
        probe_check_set_remedy(k, "nothing needed for amxdiag; for perf/other tools set LIBPFM_FORCE_PMU=%s or "
                                  "install a newer libpfm4",
                               forced);
    } else {
        k = probe_add(rep, "pmu", "pmu.model", PROBE_INFO, "libpfm4 knows this CPU model",
                      "no table for this model: model-specific events by name are unavailable; generic events "
                      "(cycles, instructions) and raw codes still work",
                      "libpfm4 %s has no core PMU for family %u model %u (%s)%s%s", ver ? ver : "?", cpu.family,
                      cpu.model, ua, want ? "; amxdiag would use " : "", want ? want : "");
        probe_check_set_remedy(k, "a newer libpfm4 may know this model");
    }

    /* Intel events by group. */
    const json_t *evs = json_object_get(g, "events");
    static const struct { const char *group, *id, *title; } groups[] = {
        {"amx", "pmu.events.amx", "AMX events"},
        {"fp512", "pmu.events.fp512", "512-bit FP events"},
    };
    for (size_t gi = 0; gi < ADG_ARRAY_LEN(groups); gi++) {
        if (strcmp(cpu.vendor, "GenuineIntel")) {
            probe_add(rep, "pmu", groups[gi].id, PROBE_SKIP, groups[gi].title, "Intel events; this is not an Intel CPU",
                      "vendor %s", cpu.vendor);
            continue;
        }
        if (!evs) {
            probe_add(rep, "pmu", groups[gi].id, PROBE_SKIP, groups[gi].title,
                      "no libpfm4 table for this model: the events cannot be encoded by name", "no table");
            continue;
        }
        adg_strbuf ev;
        adg_sb_init(&ev);
        size_t nenc = 0, nopen = 0, n = 0;
        json_t *e;
        json_array_foreach(evs, i, e) {
            const char *grp = json_string_value(json_object_get(e, "group")); /* NULL in a corrupt snapshot */
            if (!grp || strcmp(grp, groups[gi].group))
                continue;
            n++;
            bool enc = json_is_true(json_object_get(e, "encoded"));
            int oe = (int)json_integer_value(json_object_get(e, "open_errno"));
            nenc += enc;
            nopen += enc && oe == 0;
            if (enc)
                adg_sb_printf(&ev, "%s%s = %s (type %d config %s): %s", ev.len ? "\n" : "",
                              json_string_value(json_object_get(e, "name")),
                              json_string_value(json_object_get(e, "pfm")),
                              (int)json_integer_value(json_object_get(e, "type")),
                              json_string_value(json_object_get(e, "config")), oe ? strerror(oe) : "opens");
            else
                adg_sb_printf(&ev, "%s%s: not in libpfm4's table (%s)", ev.len ? "\n" : "",
                              json_string_value(json_object_get(e, "name")),
                              json_string_value(json_object_get(e, "pfm_error")));
        }
        /* Without a PMU nothing opens; pmu.hardware already warns, so this is a fact. */
        probe_status st = nopen == n ? PROBE_PASS : no_pmu ? PROBE_INFO : PROBE_WARN;
        k = probe_add(rep, "pmu", groups[gi].id, st, groups[gi].title,
                      nopen == n ? "every event encodes and opens"
                      : nenc     ? "the events encode but do not open: the counters are not reachable here"
                                 : "the events do not encode with this libpfm4",
                      "%s", ev.buf ? ev.buf : "");
        if (st != PROBE_PASS)
            probe_check_set_remedy(k, "%s", no_pmu ? "needs a hardware PMU (see pmu.hardware)"
                                                   : "see pmu.hardware and pmu.paranoid");
        adg_sb_free(&ev);
    }

    const json_t *imc = json_object_get(g, "imc");
    if (!json_array_size(imc)) {
        probe_add(rep, "pmu", "pmu.events.imc", no_pmu ? PROBE_INFO : PROBE_WARN, "Uncore memory-controller events",
                  "no uncore_imc PMUs in sysfs: memory bandwidth cannot be counted (amxdiag estimates it from "
                  "bytes moved instead)",
                  "/sys/bus/event_source/devices has no uncore_imc_*");
    } else {
        size_t nopen = 0;
        int first = 0;
        json_t *e;
        json_array_foreach(imc, i, e) {
            int oe = (int)json_integer_value(json_object_get(e, "open_errno"));
            nopen += oe == 0;
            if (oe && !first)
                first = oe;
        }
        k = probe_add(rep, "pmu", "pmu.events.imc", nopen == json_array_size(imc) ? PROBE_PASS : PROBE_WARN,
                      "Uncore memory-controller events",
                      nopen ? "CAS_COUNT.RD (0x05/0xcf, 64 bytes each) counts memory reads per channel"
                            : "the IMC PMUs are there but do not open",
                      "%zu uncore_imc PMUs; CAS_COUNT.RD (config 0xcf05, CPU 0) opens on %zu%s%s", json_array_size(imc),
                      nopen, first ? "; first error: " : "", first ? strerror(first) : "");
        if (nopen < json_array_size(imc))
            probe_check_set_remedy(k, "uncore events are CPU-wide: sudo sysctl kernel.perf_event_paranoid=0 or "
                                      "CAP_PERFMON");
    }
    return NULL;
}

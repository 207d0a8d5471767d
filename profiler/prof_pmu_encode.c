/* linux/perf_event.h (through prof_pmu.h) first: libpfm4's copy steps aside then. */
#include "profiler/prof_pmu.h"

#include <cpuid.h>
#include <perfmon/pfmlib_perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prof_pmu_cpu_model(unsigned *family, unsigned *model)
{
    unsigned a = 0, b, c, d;
    *family = *model = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    unsigned fam = (a >> 8) & 0xf, mod = (a >> 4) & 0xf;
    if (fam == 6 || fam == 15)
        mod |= ((a >> 16) & 0xf) << 4;
    if (fam == 15)
        fam += (a >> 20) & 0xff;
    *family = fam;
    *model = mod;
}

static bool is_intel(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return false;
    return b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e; /* GenuineIntel */
}

static bool pmu_present(const char *name)
{
    for (int i = 0; i < PFM_PMU_MAX; i++) {
        pfm_pmu_info_t info;
        memset(&info, 0, sizeof info);
        info.size = sizeof info;
        if (pfm_get_pmu_info((pfm_pmu_t)i, &info) == PFM_SUCCESS && info.is_present && info.name &&
            !strcmp(info.name, name))
            return true;
    }
    return false;
}

adg_error *prof_pmu_init(prof_pmu_table *t)
{
    static int done, rc;
    static bool forced;
    memset(t, 0, sizeof *t);
    unsigned family, model;
    prof_pmu_cpu_model(&family, &model);
    if (!done) {
        /* pfm_initialize reads LIBPFM_FORCE_PMU once: decide before the first call. */
        if (is_intel() && family == 6 && model == 207 && !getenv("LIBPFM_FORCE_PMU")) {
            setenv("LIBPFM_FORCE_PMU", "spr", 0);
            forced = true;
        }
        rc = pfm_initialize();
        done = 1;
        if (forced)
            unsetenv("LIBPFM_FORCE_PMU");
    }
    if (rc != PFM_SUCCESS)
        return adg_error_new(ADG_E_UNSUPPORTED, "libpfm4 initialisation failed: %s", pfm_strerror(rc));
    t->forced = forced;
    if (pmu_present("spr")) {
        snprintf(t->pmu, sizeof t->pmu, "spr");
        if (forced)
            snprintf(t->note, sizeof t->note,
                     "Emerald Rapids (family 6 model 207): libpfm4 %d.%d has no table for it; using the Sapphire "
                     "Rapids table (same core PMU) with LIBPFM_FORCE_PMU=spr",
                     PFM_MAJ_VERSION(pfm_get_version()), PFM_MIN_VERSION(pfm_get_version()));
        else if (getenv("LIBPFM_FORCE_PMU"))
            snprintf(t->note, sizeof t->note, "Sapphire Rapids table, forced by LIBPFM_FORCE_PMU=%s",
                     getenv("LIBPFM_FORCE_PMU"));
        else
            snprintf(t->note, sizeof t->note, "Sapphire Rapids table (detected by libpfm4)");
    } else {
        snprintf(t->note, sizeof t->note,
                 "no libpfm4 table with AMX/SIMD events for this CPU (family %u model %u); those events use raw "
                 "Sapphire Rapids encodings only on family 6 models 143/207",
                 family, model);
    }
    return NULL;
}

adg_error *prof_pmu_encode(const prof_pmu_table *t, const prof_pmu_event *ev, struct perf_event_attr *attr,
                           const char **how)
{
    char name[160];
    bool generic = !strncmp(ev->pfm, "perf::", 6);
    if (!generic && !t->pmu[0]) {
        unsigned family, model;
        prof_pmu_cpu_model(&family, &model);
        if (!(is_intel() && family == 6 && (model == 143 || model == 207)) || !ev->raw)
            return adg_error_new(ADG_E_UNSUPPORTED, "event %s is not known for this CPU (family %u model %u)",
                                 ev->pfm, family, model);
        memset(attr, 0, sizeof *attr);
        attr->size = sizeof *attr;
        attr->type = PERF_TYPE_RAW;
        attr->config = ev->raw;
        *how = "raw";
        return NULL;
    }
    if (generic)
        snprintf(name, sizeof name, "%s", ev->pfm);
    else
        snprintf(name, sizeof name, "%s::%s", t->pmu, ev->pfm);
    memset(attr, 0, sizeof *attr);
    pfm_perf_encode_arg_t arg;
    memset(&arg, 0, sizeof arg);
    arg.size = sizeof arg;
    arg.attr = attr;
    int rc = pfm_get_os_event_encoding(name, PFM_PLM3, PFM_OS_PERF_EVENT_EXT, &arg);
    if (rc != PFM_SUCCESS && generic) {
        /* With LIBPFM_FORCE_PMU libpfm4 hides its perf:: table: the kernel's generic
         * hardware events need no table anyway. */
        memset(attr, 0, sizeof *attr);
        attr->size = sizeof *attr;
        attr->type = PERF_TYPE_HARDWARE;
        attr->config = strstr(ev->pfm, "INSTRUCTIONS") ? PERF_COUNT_HW_INSTRUCTIONS : PERF_COUNT_HW_CPU_CYCLES;
        *how = "generic";
        return NULL;
    }
    if (rc != PFM_SUCCESS) {
        if (ev->raw && t->pmu[0]) {
            memset(attr, 0, sizeof *attr);
            attr->size = sizeof *attr;
            attr->type = PERF_TYPE_RAW;
            attr->config = ev->raw;
            *how = "raw";
            return NULL;
        }
        return adg_error_new(ADG_E_UNSUPPORTED, "libpfm4 cannot encode %s: %s", name, pfm_strerror(rc));
    }
    attr->size = sizeof *attr;
    *how = generic ? "generic" : "libpfm4";
    return NULL;
}

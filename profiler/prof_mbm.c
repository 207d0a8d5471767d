/* Intel RDT memory bandwidth monitoring through resctrl: mbm_total_bytes of the root
 * monitoring group, per L3 domain (≈ socket).  The root group covers the whole system,
 * not only the workload: the metric says so. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "profiler/prof_collector.h"

#define COLLECTOR "resctrl"
/* $AMXDIAG_RESCTRL (default /sys/fs/resctrl): resctrl mounted elsewhere, or a test tree. */
static const char *resctrl_root(void)
{
    const char *r = getenv("AMXDIAG_RESCTRL");
    return r && *r ? r : "/sys/fs/resctrl";
}

typedef struct dom {
    char path[600], name[64];
    uint64_t last;
} dom;

typedef struct mbm {
    dom d[16];
    int n;
    uint64_t last_t;
    int m_bw;
} mbm;

static bool read_u64(const char *path, uint64_t *v)
{
    char *data;
    size_t len;
    adg_error *e = adg_read_file(path, 64, &data, &len);
    if (e) {
        adg_error_free(e);
        return false;
    }
    bool ok = adg_parse_u64(adg_rstrip(data), v);
    free(data);
    return ok;
}

static adg_error *mbm_open(prof_ctx *ctx, void **state)
{
    char mon[256];
    snprintf(mon, sizeof mon, "%s/mon_data", resctrl_root());
    DIR *dir = opendir(mon);
    if (!dir)
        return adg_error_hint(adg_error_errno(ADG_E_UNSUPPORTED, errno, "resctrl monitoring is not mounted (%s)", mon),
                              "on Intel CPUs with RDT: mount -t resctrl resctrl /sys/fs/resctrl (as root)");
    mbm *m = calloc(1, sizeof *m);
    if (!m) {
        closedir(dir);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    struct dirent *de;
    while ((de = readdir(dir)) && m->n < 16) {
        if (strncmp(de->d_name, "mon_L3_", 7))
            continue;
        dom *d = &m->d[m->n];
        snprintf(d->path, sizeof d->path, "%s/%s/mbm_total_bytes", mon, de->d_name);
        snprintf(d->name, sizeof d->name, "l3_%s", de->d_name + 7);
        if (read_u64(d->path, &d->last))
            m->n++;
    }
    closedir(dir);
    if (!m->n) {
        free(m);
        return adg_error_new(ADG_E_UNSUPPORTED, "resctrl is mounted but reports no mbm_total_bytes (no MBM on this CPU)");
    }
    m->m_bw = prof_register(ctx, COLLECTOR, "mem.mbm_bw", "B/s", ADG_SCOPE_SOCKET,
                            "memory bandwidth of the whole system per L3 domain (resctrl MBM, root group)");
    m->last_t = adg_bus_elapsed_ns(ctx->bus);
    *state = m;
    return NULL;
}

static void mbm_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    mbm *m = state;
    double dt = (double)(t_ns - m->last_t) * 1e-9;
    m->last_t = t_ns;
    for (int i = 0; i < m->n && dt > 0; i++) {
        uint64_t v;
        if (!read_u64(m->d[i].path, &v))
            continue;
        adg_bus_sample(ctx->bus, m->m_bw, m->d[i].name, t_ns, v >= m->d[i].last ? (double)(v - m->d[i].last) / dt : 0);
        m->d[i].last = v;
    }
}

static void mbm_finish(prof_ctx *ctx, void *state, uint64_t t_ns) { mbm_sample(ctx, state, t_ns); }
static void mbm_close(void *state) { free(state); }

const prof_collector prof_mbm_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_MEM,
    .open = mbm_open,
    .sample = mbm_sample,
    .finish = mbm_finish,
    .close = mbm_close,
};

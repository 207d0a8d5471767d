/* The PMU collector: counting groups per event set (amx, simd, core), per task with
 * inherit=1 so that every thread and child is counted, scaled for multiplexing
 * (time_enabled / time_running), and the derived metrics: IPC, AMX busy %, AMX ops/s,
 * FP operations/s by width. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/adg_log.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_perf.h"
#include "profiler/prof_pmu.h"

#define COLLECTOR "pmu"

typedef struct counter {
    const prof_pmu_event *ev;
    int fd;
    int *more;               /* --pid: the same event on the process's other threads */
    unsigned nmore;
    struct perf_event_attr attr;
    const char *how;
    uint64_t config;
    double last_scaled;      /* scaled value at the previous sample */
    double total_scaled;
    uint64_t enabled, running;
} counter;

typedef struct pmu {
    prof_pmu_table table;
    char *notes[32];         /* events that could not be counted, reported once the collector runs */
    unsigned nnotes;
    counter c[32];
    unsigned n;
    uint64_t last_t;
    double rate[32];         /* per-second rate over the last interval */
    int m_ipc, m_amx_busy, m_amx_ops, m_fp512, m_fp256, m_fpscalar, m_fp16, m_vnni, m_running;
} pmu;

static counter *find(pmu *p, const char *id)
{
    for (unsigned i = 0; i < p->n; i++)
        if (!strcmp(p->c[i].ev->id, id))
            return &p->c[i];
    return NULL;
}

static void pmu_close(void *state)
{
    pmu *p = state;
    if (!p)
        return;
    for (unsigned i = 0; i < p->n; i++)
        if (p->c[i].fd >= 0)
            close(p->c[i].fd);
    for (unsigned i = 0; i < p->n; i++) {
        for (unsigned k = 0; k < p->c[i].nmore; k++)
            close(p->c[i].more[k]);
        free(p->c[i].more);
    }
    for (unsigned i = 0; i < p->nnotes; i++)
        free(p->notes[i]);
    free(p);
}

/* --pid: inheritance only reaches threads created from now on, so each thread that
 * already exists gets the same groups (the main thread has them already). */
static void attach_threads(prof_ctx *ctx, pmu *p)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)ctx->root);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int tid = atoi(de->d_name);
        if (tid <= 0 || tid == ctx->root)
            continue;
        int leader = -1;
        unsigned set = 0;
        for (unsigned i = 0; i < p->n; i++) {
            counter *c = &p->c[i];
            if (c->ev->set != set) {
                set = c->ev->set;
                leader = -1;
            }
            struct perf_event_attr a = c->attr;
            int fd = prof_perf_open(&a, tid, -1, leader, PERF_FLAG_FD_CLOEXEC);
            if (fd < 0)
                continue; /* the thread just exited */
            int *m = realloc(c->more, (c->nmore + 1) * sizeof *m);
            if (!m) {
                close(fd);
                continue;
            }
            c->more = m;
            c->more[c->nmore++] = fd;
            if (leader < 0)
                leader = fd;
        }
    }
    closedir(d);
}

static void note(pmu *p, const char *id, const char *why)
{
    if (p->nnotes < 32 && asprintf(&p->notes[p->nnotes], "%s\t%s", id, why) >= 0)
        p->nnotes++;
}

static adg_error *pmu_open(prof_ctx *ctx, void **state)
{
    pmu *p = calloc(1, sizeof *p);
    if (!p)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    adg_error *e = prof_pmu_init(&p->table);
    if (e) {
        free(p);
        return e;
    }
    adg_error *first = NULL;
    unsigned sets[] = {PROF_SET_CORE, PROF_SET_AMX, PROF_SET_SIMD};
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        if (!(ctx->sets & sets[si]))
            continue;
        int leader = -1;
        for (unsigned i = 0; i < prof_pmu_nevents && p->n < 32; i++) {
            const prof_pmu_event *ev = &prof_pmu_events[i];
            if (ev->set != sets[si])
                continue;
            struct perf_event_attr attr;
            const char *how;
            if ((e = prof_pmu_encode(&p->table, ev, &attr, &how))) {
                note(p, ev->id, adg_error_msg(e));
                adg_error_free(e);
                continue;
            }
            attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
            attr.exclude_kernel = 1;
            attr.exclude_hv = 1;
            attr.inherit = 1;
            if (!ctx->attach && !ctx->self) {
                attr.disabled = leader < 0;
                attr.enable_on_exec = leader < 0;
            }
            int fd = prof_perf_open(&attr, ctx->root, -1, leader, PERF_FLAG_FD_CLOEXEC);
            if (fd < 0) {
                int err = errno;
                char what[200];
                snprintf(what, sizeof what, "%s (%s, config %#llx)", ev->id, ev->pfm, (unsigned long long)attr.config);
                adg_error *oe = prof_perf_error(err, what);
                if (!first)
                    first = oe;
                else {
                    note(p, ev->id, adg_error_msg(oe));
                    adg_error_free(oe);
                }
                continue;
            }
            if (leader < 0)
                leader = fd;
            p->c[p->n++] = (counter){.ev = ev, .fd = fd, .attr = attr, .how = how, .config = attr.config};
        }
    }
    if (!p->n) {
        pmu_close(p);
        return first ? first
                     : adg_error_new(ADG_E_UNSUPPORTED, "no PMU event of the requested sets can be counted here");
    }
    adg_error_free(first);
    if (ctx->attach)
        attach_threads(ctx, p);
    for (unsigned i = 0; i < p->nnotes; i++) {
        char *tab = strchr(p->notes[i], '\t');
        *tab = 0;
        char what[200];
        snprintf(what, sizeof what, "pmu event %s", p->notes[i]);
        adg_bus_unavailable(ctx->bus, COLLECTOR, what, tab + 1);
    }
    if (find(p, "cycles") && find(p, "instructions"))
        p->m_ipc = prof_register(ctx, COLLECTOR, "cpu.ipc", "1", ADG_SCOPE_PROCESS, "instructions per core cycle");
    else
        p->m_ipc = -1;
    p->m_amx_busy = find(p, "amx_busy") && find(p, "core_clocks")
                        ? prof_register(ctx, COLLECTOR, "amx.busy", "%", ADG_SCOPE_PROCESS,
                                        "EXE.AMX_BUSY / core clocks: share of cycles the AMX unit was busy")
                        : -1;
    p->m_amx_ops = find(p, "amx_ops_int8") || find(p, "amx_ops_bf16")
                       ? prof_register(ctx, COLLECTOR, "amx.ops", "ops/s", ADG_SCOPE_PROCESS,
                                       "AMX_OPS_RETIRED int8 + bf16 per second")
                       : -1;
    if (find(p, "fp_512_ps")) {
        p->m_fp512 = prof_register(ctx, COLLECTOR, "simd.fp512", "ops/s", ADG_SCOPE_PROCESS,
                                   "512-bit packed FP operations per second (lanes x instructions; FMA counts 2)");
        p->m_fp256 = prof_register(ctx, COLLECTOR, "simd.fp256", "ops/s", ADG_SCOPE_PROCESS,
                                   "256-bit packed FP operations per second");
        p->m_fpscalar = prof_register(ctx, COLLECTOR, "simd.fp_scalar", "ops/s", ADG_SCOPE_PROCESS,
                                      "scalar FP operations per second");
    } else
        p->m_fp512 = p->m_fp256 = p->m_fpscalar = -1;
    p->m_fp16 = find(p, "fp16_vector") ? prof_register(ctx, COLLECTOR, "simd.fp16", "ops/s", ADG_SCOPE_PROCESS,
                                                       "packed FP16 instructions per second")
                                       : -1;
    p->m_vnni = find(p, "int_vec_vnni") ? prof_register(ctx, COLLECTOR, "simd.vnni256", "ops/s", ADG_SCOPE_PROCESS,
                                                        "256-bit VNNI instructions per second")
                                        : -1;
    p->m_running = prof_register(ctx, COLLECTOR, "pmu.running", "%", ADG_SCOPE_PROCESS,
                                 "share of the time each counter was on the PMU (below 100: multiplexed, scaled)");
    *state = p;
    return NULL;
}

static double rate(pmu *p, const char *id)
{
    counter *c = find(p, id);
    return c ? p->rate[c - p->c] : 0;
}

static void pmu_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    pmu *p = state;
    double dt = (double)(t_ns - p->last_t) * 1e-9;
    p->last_t = t_ns;
    double min_running = 100;
    for (unsigned i = 0; i < p->n; i++) {
        counter *c = &p->c[i];
        uint64_t v[3], en = 0, run = 0;
        double scaled = 0;
        bool any = false;
        for (unsigned k = 0; k <= c->nmore; k++) {
            if (read(k ? c->more[k - 1] : c->fd, v, sizeof v) != (ssize_t)sizeof v)
                continue;
            any = true;
            en += v[1];
            run += v[2];
            scaled += v[2] ? (double)v[0] * (double)v[1] / (double)v[2] : 0;
        }
        if (!any)
            continue;
        v[1] = en;
        v[2] = run;
        c->enabled = v[1];
        c->running = v[2];
        p->rate[i] = dt > 0 ? (scaled - c->last_scaled) / dt : 0;
        c->last_scaled = scaled;
        c->total_scaled = scaled;
        if (v[1]) {
            double run = 100.0 * (double)v[2] / (double)v[1];
            if (run < min_running)
                min_running = run;
        }
    }
    adg_bus_sample(ctx->bus, p->m_running, NULL, t_ns, min_running);
    double cyc = rate(p, "cycles"), clk = rate(p, "core_clocks");
    if (p->m_ipc >= 0 && cyc > 0)
        adg_bus_sample(ctx->bus, p->m_ipc, NULL, t_ns, rate(p, "instructions") / cyc);
    if (p->m_amx_busy >= 0 && clk > 0)
        adg_bus_sample(ctx->bus, p->m_amx_busy, NULL, t_ns, 100.0 * rate(p, "amx_busy") / clk);
    if (p->m_amx_ops >= 0)
        adg_bus_sample(ctx->bus, p->m_amx_ops, NULL, t_ns, rate(p, "amx_ops_int8") + rate(p, "amx_ops_bf16"));
    if (p->m_fp512 >= 0) {
        adg_bus_sample(ctx->bus, p->m_fp512, NULL, t_ns, 16 * rate(p, "fp_512_ps") + 8 * rate(p, "fp_512_pd"));
        adg_bus_sample(ctx->bus, p->m_fp256, NULL, t_ns, 8 * rate(p, "fp_256_ps") + 4 * rate(p, "fp_256_pd"));
        adg_bus_sample(ctx->bus, p->m_fpscalar, NULL, t_ns, rate(p, "fp_scalar"));
    }
    if (p->m_fp16 >= 0)
        adg_bus_sample(ctx->bus, p->m_fp16, NULL, t_ns, rate(p, "fp16_vector"));
    if (p->m_vnni >= 0)
        adg_bus_sample(ctx->bus, p->m_vnni, NULL, t_ns, rate(p, "int_vec_vnni"));
}

static void pmu_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    pmu *p = state;
    pmu_sample(ctx, p, t_ns);
    json_t *events = json_array();
    for (unsigned i = 0; i < p->n; i++) {
        counter *c = &p->c[i];
        json_array_append_new(events, json_pack("{s:s,s:s,s:s,s:I,s:f,s:I,s:I,s:f}", "id", c->ev->id, "event",
                                                c->ev->pfm, "encoding", c->how, "config", (json_int_t)c->config,
                                                "count", c->total_scaled, "time_enabled_ns", (json_int_t)c->enabled,
                                                "time_running_ns", (json_int_t)c->running, "running_pct",
                                                c->enabled ? 100.0 * (double)c->running / (double)c->enabled : 0.0));
    }
    json_t *sec = json_pack("{s:s,s:b,s:s,s:o}", "table", p->table.pmu[0] ? p->table.pmu : "generic", "forced",
                            p->table.forced, "note", p->table.note, "events", events);
    adg_error_free(adg_record_set_section(ctx->record, "pmu", sec));
}

const prof_collector prof_pmu_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_AMX | PROF_SET_SIMD | PROF_SET_CORE,
    .open = pmu_open,
    .sample = pmu_sample,
    .finish = pmu_finish,
    .close = pmu_close,
};

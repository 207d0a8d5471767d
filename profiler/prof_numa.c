/* The NUMA collector: resident memory of the workload per node (/proc/PID/numa_maps),
 * the nodes its threads run on (/proc/PID/task/TID/stat field 39), placement warnings,
 * and the threads that used AVX-512 recently (/proc/PID/task/TID/arch_status, a
 * PMU-free hint the kernel keeps on Intel CPUs). */
#include "profiler/prof_numa.h"

#include <dirent.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "profiler/prof_collector.h"

#define COLLECTOR "numa"

size_t prof_numa_parse_maps(const char *text, uint64_t bytes[PROF_NUMA_MAX_NODES])
{
    size_t n = 0;
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        uint64_t pagesz = 4096, pages[PROF_NUMA_MAX_NODES] = {0};
        bool any = false;
        const char *p = line;
        while (p < line + len) {
            while (p < line + len && *p == ' ')
                p++;
            const char *tok = p;
            while (p < line + len && *p != ' ')
                p++;
            unsigned node;
            unsigned long long v;
            char c;
            if (sscanf(tok, "N%u=%llu%c", &node, &v, &c) >= 2 && node < PROF_NUMA_MAX_NODES) {
                pages[node] += v;
                any = true;
            } else if (sscanf(tok, "kernelpagesize_kB=%llu", &v) == 1)
                pagesz = v * 1024;
        }
        if (any) {
            for (unsigned i = 0; i < PROF_NUMA_MAX_NODES; i++)
                bytes[i] += pages[i] * pagesz;
            n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

bool prof_numa_stat_ticks(const char *stat, uint64_t *ticks)
{
    const char *p = strrchr(stat, ')');
    if (!p)
        return false;
    p++;
    for (int field = 3; field < 14; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return false;
    }
    unsigned long long ut, st;
    if (sscanf(p, " %llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    return true;
}

int prof_numa_stat_cpu(const char *stat)
{
    /* comm (field 2) may hold spaces and parentheses: count from the last ')'. */
    const char *p = strrchr(stat, ')');
    if (!p)
        return -1;
    p++;
    for (int field = 3; field < 39; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -1;
    }
    int cpu;
    return sscanf(p, " %d", &cpu) == 1 ? cpu : -1;
}

long prof_numa_avx512_elapsed(const char *text)
{
    const char *p = strstr(text, "AVX512_elapsed_ms:");
    if (!p)
        return -2;
    return strtol(p + strlen("AVX512_elapsed_ms:"), NULL, 10);
}

/* Per-thread CPU ticks of the previous sample: an open-addressing table keyed by tid,
 * rebuilt every sample from the threads seen, so exited threads drop out by themselves. */
typedef struct tick_ent {
    int tid; /* 0 = empty */
    uint64_t ticks;
} tick_ent;

typedef struct tick_tab {
    tick_ent *e;
    size_t cap; /* power of two */
    size_t n;
} tick_tab;

static size_t tick_slot(const tick_tab *t, int tid)
{
    size_t i = ((size_t)(unsigned)tid * 2654435761u) & (t->cap - 1);
    while (t->e[i].tid && t->e[i].tid != tid)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static bool tick_get(const tick_tab *t, int tid, uint64_t *ticks)
{
    if (!t->cap)
        return false;
    size_t i = tick_slot(t, tid);
    if (!t->e[i].tid)
        return false;
    *ticks = t->e[i].ticks;
    return true;
}

static void tick_put(tick_tab *t, int tid, uint64_t ticks)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        tick_ent *ne = calloc(nc, sizeof *ne);
        if (!ne)
            return; /* that thread's next interval is then not counted */
        tick_tab nt = {ne, nc, 0};
        for (size_t i = 0; i < t->cap; i++)
            if (t->e[i].tid) {
                nt.e[tick_slot(&nt, t->e[i].tid)] = t->e[i];
                nt.n++;
            }
        free(t->e);
        *t = nt;
    }
    size_t i = tick_slot(t, tid);
    if (!t->e[i].tid)
        t->n++;
    t->e[i] = (tick_ent){tid, ticks};
}

typedef struct numa {
    int nnodes;
    unsigned ticks, every;
    uint64_t bytes[PROF_NUMA_MAX_NODES];       /* last numa_maps sum */
    uint64_t peak_bytes[PROF_NUMA_MAX_NODES];
    uint64_t thread_obs[PROF_NUMA_MAX_NODES];  /* thread x interval observations per node */
    uint64_t *cpu_obs;                          /* per CPU */
    int ncpu;
    bool arch_status_seen;
    uint64_t avx512_recent_max;
    int m_res, m_thr, m_avx, m_cpu;
    uint64_t interval_ms;
    tick_tab prev;              /* per-thread ticks at the previous sample */
    bool have_prev;             /* a first sample was taken: new threads count in full */
    uint64_t last_t_ns;
    uint64_t node_ticks[PROF_NUMA_MAX_NODES]; /* workload CPU ticks per node, whole run */
    long hz;
} numa;

static int node_of_cpu(const numa *n, int cpu)
{
    if (n->nnodes <= 1 || cpu < 0)
        return 0;
    int node = numa_node_of_cpu(cpu);
    return node >= 0 && node < PROF_NUMA_MAX_NODES ? node : 0;
}

static adg_error *numa_open(prof_ctx *ctx, void **state)
{
    numa *n = calloc(1, sizeof *n);
    if (!n)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    n->nnodes = numa_available() < 0 ? 1 : numa_num_configured_nodes();
    if (n->nnodes < 1)
        n->nnodes = 1;
    if (n->nnodes > PROF_NUMA_MAX_NODES)
        n->nnodes = PROF_NUMA_MAX_NODES;
    n->ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
    n->cpu_obs = calloc((size_t)(n->ncpu > 0 ? n->ncpu : 1), sizeof *n->cpu_obs);
    if (!n->cpu_obs) {
        free(n);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    n->interval_ms = ctx->interval_ns / 1000000;
    /* numa_maps walks the page tables of the whole process: read it about once a second. */
    n->every = ctx->interval_ns >= 1000000000ull ? 1 : (unsigned)(1000000000ull / ctx->interval_ns);
    n->m_res = prof_register(ctx, COLLECTOR, "numa.resident", "B", ADG_SCOPE_NUMA_NODE,
                             "resident memory of the workload on each node (/proc/PID/numa_maps)");
    n->m_thr = prof_register(ctx, COLLECTOR, "numa.threads", "count", ADG_SCOPE_NUMA_NODE,
                             "threads of the workload that last ran on a CPU of each node");
    n->m_avx = prof_register(ctx, COLLECTOR, "avx512.recent_threads", "count", ADG_SCOPE_PROCESS,
                             "threads that used AVX-512 registers within the last interval (arch_status)");
    n->m_cpu = prof_register(ctx, COLLECTOR, "numa.cpu", "%", ADG_SCOPE_NUMA_NODE,
                             "CPU time of the workload per node (100 = one CPU busy): each thread's utime+stime "
                             "ticks of the interval, on the node of the CPU it last ran on");
    n->hz = sysconf(_SC_CLK_TCK);
    if (n->hz <= 0)
        n->hz = 100;
    *state = n;
    return NULL;
}

static void read_numa_maps(numa *n, const pid_t *pids, size_t np)
{
    uint64_t bytes[PROF_NUMA_MAX_NODES] = {0};
    bool any = false;
    for (size_t i = 0; i < np; i++) {
        char path[64], *data;
        size_t len;
        snprintf(path, sizeof path, "/proc/%d/numa_maps", (int)pids[i]);
        adg_error *e = adg_read_file(path, 0, &data, &len);
        if (e) {
            adg_error_free(e);
            continue;
        }
        prof_numa_parse_maps(data, bytes);
        free(data);
        any = true;
    }
    if (!any)
        return; /* processes gone: keep the last reading */
    memcpy(n->bytes, bytes, sizeof bytes);
    for (int i = 0; i < PROF_NUMA_MAX_NODES; i++)
        if (bytes[i] > n->peak_bytes[i])
            n->peak_bytes[i] = bytes[i];
}

static void numa_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    numa *n = state;
    pid_t *pids;
    size_t np = prof_pidset_copy(&ctx->pids, &pids);
    uint64_t thr[PROF_NUMA_MAX_NODES] = {0}, recent = 0, ticks_now[PROF_NUMA_MAX_NODES] = {0};
    tick_tab cur = {0};
    for (size_t i = 0; i < np; i++) {
        char path[96];
        snprintf(path, sizeof path, "/proc/%d/task", (int)pids[i]);
        DIR *d = opendir(path);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            int tid = atoi(de->d_name);
            if (tid <= 0)
                continue;
            char *data;
            size_t len;
            snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pids[i], tid);
            adg_error *e = adg_read_file(path, 4096, &data, &len);
            if (e) {
                adg_error_free(e);
                continue;
            }
            int cpu = prof_numa_stat_cpu(data);
            uint64_t tk, before = 0;
            if (cpu >= 0 && prof_numa_stat_ticks(data, &tk)) {
                /* Threads seen before: their delta. Threads new since the last sample
                 * started within the interval: all their ticks. At the first sample
                 * everything is the baseline (an attached process's past is not ours). */
                bool known = tick_get(&n->prev, tid, &before);
                if (known && tk >= before)
                    ticks_now[node_of_cpu(n, cpu)] += tk - before;
                else if (!known && n->have_prev)
                    ticks_now[node_of_cpu(n, cpu)] += tk;
                tick_put(&cur, tid, tk);
            }
            free(data);
            if (cpu >= 0) {
                thr[node_of_cpu(n, cpu)]++;
                n->thread_obs[node_of_cpu(n, cpu)]++;
                if (cpu < n->ncpu)
                    n->cpu_obs[cpu]++;
            }
            snprintf(path, sizeof path, "/proc/%d/task/%d/arch_status", (int)pids[i], tid);
            if (!(e = adg_read_file(path, 4096, &data, &len))) {
                long ms = prof_numa_avx512_elapsed(data);
                free(data);
                if (ms >= -1)
                    n->arch_status_seen = true;
                if (ms >= 0 && (uint64_t)ms <= n->interval_ms)
                    recent++;
            } else
                adg_error_free(e);
        }
        closedir(d);
    }
    if (n->ticks++ % n->every == 0)
        read_numa_maps(n, pids, np);
    free(pids);
    free(n->prev.e);
    n->prev = cur;
    double dt_s = (double)(t_ns - n->last_t_ns) * 1e-9;
    bool publish_cpu = n->have_prev && t_ns > n->last_t_ns && dt_s >= 1e-3;
    for (int i = 0; i < n->nnodes; i++) {
        n->node_ticks[i] += ticks_now[i];
        if (publish_cpu) {
            char inst[16];
            snprintf(inst, sizeof inst, "node%d", i);
            adg_bus_sample(ctx->bus, n->m_cpu, inst, t_ns, 100.0 * (double)ticks_now[i] / (double)n->hz / dt_s);
        }
    }
    n->have_prev = true;
    n->last_t_ns = t_ns;
    for (int i = 0; i < n->nnodes; i++) {
        char inst[16];
        snprintf(inst, sizeof inst, "node%d", i);
        adg_bus_sample(ctx->bus, n->m_thr, inst, t_ns, (double)thr[i]);
        adg_bus_sample(ctx->bus, n->m_res, inst, t_ns, (double)n->bytes[i]);
    }
    if (n->arch_status_seen) {
        adg_bus_sample(ctx->bus, n->m_avx, NULL, t_ns, (double)recent);
        if (recent > n->avx512_recent_max)
            n->avx512_recent_max = recent;
    }
}

static void numa_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    numa *n = state;
    numa_sample(ctx, n, t_ns);
    uint64_t mem_total = 0, thr_total = 0;
    json_t *nodes = json_array();
    for (int i = 0; i < n->nnodes; i++) {
        mem_total += n->peak_bytes[i];
        thr_total += n->thread_obs[i];
    }
    for (int i = 0; i < n->nnodes; i++)
        json_array_append_new(nodes, json_pack("{s:i,s:I,s:f,s:f,s:f}", "node", i, "resident_bytes_peak",
                                               (json_int_t)n->peak_bytes[i], "memory_pct",
                                               mem_total ? 100.0 * (double)n->peak_bytes[i] / (double)mem_total : 0.0,
                                               "thread_time_pct",
                                               thr_total ? 100.0 * (double)n->thread_obs[i] / (double)thr_total : 0.0,
                                               "cpu_s", (double)n->node_ticks[i] / (double)n->hz));
    json_t *cpus = json_object();
    for (int c = 0; c < n->ncpu; c++)
        if (n->cpu_obs[c]) {
            char k[16];
            snprintf(k, sizeof k, "%d", c);
            json_object_set_new(cpus, k, json_integer((json_int_t)n->cpu_obs[c]));
        }
    json_t *warn = json_array();
    if (n->nnodes > 1 && mem_total && thr_total) {
        for (int t = 0; t < n->nnodes; t++) {
            double tp = (double)n->thread_obs[t] / (double)thr_total;
            double local = (double)n->peak_bytes[t] / (double)mem_total;
            if (tp >= 0.2 && local < 0.5) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "%.0f%% of thread time ran on node %d, which holds only %.0f%% of the workload's memory: "
                         "remote accesses (bind memory and threads together, e.g. numactl -N %d -m %d)",
                         100 * tp, t, 100 * local, t, t);
                json_array_append_new(warn, json_string(msg));
                adg_bus_event(ctx->bus, t_ns, "warning", "numa.cross_node", json_pack("{s:s}", "message", msg));
            }
        }
    }
    json_t *sec = json_pack("{s:i,s:o,s:o,s:o}", "nodes", n->nnodes, "per_node", nodes, "cpu_observations", cpus,
                            "warnings", warn);
    if (n->nnodes == 1)
        json_object_set_new(sec, "note", json_string("one NUMA node: no cross-node placement is possible"));
    json_object_set_new(sec, "arch_status", n->arch_status_seen ? json_true() : json_false());
    if (n->arch_status_seen)
        json_object_set_new(sec, "avx512_recent_threads_max", json_integer((json_int_t)n->avx512_recent_max));
    adg_error_free(adg_record_set_section(ctx->record, "numa", sec));
}

static void numa_close(void *state)
{
    numa *n = state;
    if (n) {
        free(n->cpu_obs);
        free(n->prev.e);
    }
    free(n);
}

const prof_collector prof_numa_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_NUMA,
    .open = numa_open,
    .sample = numa_sample,
    .finish = numa_finish,
    .close = numa_close,
};

/* The CPU collector: how busy each logical CPU of the machine is (cpu.util, %, instances
 * cpuN), from /proc/stat tick deltas, like top and mpstat.  Machine-wide on purpose: it
 * shows what else runs beside the workload and which cores the workload leaves idle.
 * The workload's own CPU use per node is the NUMA collector's (numa.cpu). */
#include "profiler/prof_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "profiler/prof_collector.h"

#define COLLECTOR "cpu"
/* A CPU is published once its delta spans this many ticks (USER_HZ, 10 ms on Linux):
 * fewer would give 0 or 100 % from one tick more or less. */
#define MIN_TICKS 5

/* $AMXDIAG_PROC_STAT (default /proc/stat): a test's recorded snapshots. */
static const char *stat_path(void)
{
    const char *p = getenv("AMXDIAG_PROC_STAT");
    return p && *p ? p : "/proc/stat";
}

size_t prof_cpu_parse_stat(const char *text, prof_cpu_ticks *out, size_t max)
{
    size_t n = 0;
    for (const char *line = text; line && *line && n < max;) {
        const char *end = strchr(line, '\n');
        unsigned cpu;
        unsigned long long v[8] = {0};
        /* "cpuN user nice system idle iowait irq softirq steal [guest guest_nice]"; the
         * aggregate "cpu " line has no number and is skipped.  guest time is already in
         * user, so it is not added again. */
        int got = strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9' ? 0 : sscanf(line, "cpu%u %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3],
                         &v[4], &v[5], &v[6], &v[7]);
        if (got >= 5) { /* kernels before 2.6 had four fields; later ones more */
            uint64_t total = 0;
            for (int i = 0; i < got - 1; i++)
                total += v[i];
            out[n].cpu = (int)cpu;
            out[n].total = total;
            out[n].idle = v[3] + v[4]; /* idle + iowait: iowait is idle time with I/O pending */
            n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

double prof_cpu_util(const prof_cpu_ticks *a, const prof_cpu_ticks *b)
{
    if (b->total <= a->total)
        return -1;
    uint64_t dt = b->total - a->total;
    uint64_t di = b->idle >= a->idle ? b->idle - a->idle : 0;
    if (di > dt)
        di = dt;
    return 100.0 * (double)(dt - di) / (double)dt;
}

typedef struct cpu_state {
    prof_cpu_ticks *first, *base, *cur; /* at open; at the last publication per CPU; now */
    size_t n, cap;
    int m_util;
    char (*inst)[16];
} cpu_state;

/* Reads the file into cur; false when it cannot be read (the last values then stay). */
static bool read_stat(cpu_state *s, size_t *n)
{
    char *data;
    size_t len;
    adg_error *e = adg_read_file(stat_path(), 0, &data, &len);
    if (e) {
        adg_error_free(e);
        return false;
    }
    *n = prof_cpu_parse_stat(data, s->cur, s->cap);
    free(data);
    return *n > 0;
}

static int find_cpu(const prof_cpu_ticks *t, size_t n, int cpu, size_t hint)
{
    if (hint < n && t[hint].cpu == cpu)
        return (int)hint;
    for (size_t i = 0; i < n; i++)
        if (t[i].cpu == cpu)
            return (int)i;
    return -1;
}

static void cpu_close(void *state)
{
    cpu_state *s = state;
    if (!s)
        return;
    free(s->first);
    free(s->base);
    free(s->cur);
    free(s->inst);
    free(s);
}

static adg_error *cpu_open(prof_ctx *ctx, void **state)
{
    cpu_state *s = calloc(1, sizeof *s);
    if (!s)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    /* CPUs may come online later: room for every configured CPU, and a margin. */
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    s->cap = (size_t)(conf > 0 ? conf : 1) + 64;
    s->first = calloc(s->cap, sizeof *s->first);
    s->base = calloc(s->cap, sizeof *s->base);
    s->cur = calloc(s->cap, sizeof *s->cur);
    s->inst = calloc(s->cap, sizeof *s->inst);
    if (!s->first || !s->base || !s->cur || !s->inst) {
        cpu_close(s);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    if (!read_stat(s, &s->n)) {
        const char *p = stat_path();
        cpu_close(s);
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "cannot read per-CPU times from %s", p),
                              "per-CPU load needs procfs mounted at /proc");
    }
    memcpy(s->first, s->cur, s->n * sizeof *s->cur);
    memcpy(s->base, s->cur, s->n * sizeof *s->cur);
    for (size_t i = 0; i < s->n; i++)
        snprintf(s->inst[i], sizeof s->inst[i], "cpu%d", s->first[i].cpu);
    s->m_util = prof_register(ctx, COLLECTOR, "cpu.util", "%", ADG_SCOPE_CPU,
                              "busy share of each logical CPU, every process on the machine (/proc/stat: "
                              "all but idle and iowait ticks, 10 ms resolution)");
    *state = s;
    return NULL;
}

static void cpu_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    cpu_state *s = state;
    size_t n;
    if (!read_stat(s, &n))
        return;
    /* Instances follow the CPUs known at open (a CPU that goes offline stops publishing;
     * one that comes online later is not added: its series would start mid-run). */
    for (size_t i = 0; i < s->n; i++) {
        int j = find_cpu(s->cur, n, s->base[i].cpu, i);
        if (j < 0)
            continue;
        if (s->cur[j].total < s->base[i].total) { /* counters restarted (CPU re-onlined) */
            s->base[i] = s->cur[j];
            continue;
        }
        if (s->cur[j].total - s->base[i].total < MIN_TICKS)
            continue;
        double u = prof_cpu_util(&s->base[i], &s->cur[j]);
        if (u >= 0)
            adg_bus_sample(ctx->bus, s->m_util, s->inst[i], t_ns, u);
        s->base[i] = s->cur[j];
    }
}

static void cpu_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    cpu_state *s = state;
    cpu_sample(ctx, s, t_ns);
    /* The whole run per CPU (first reading to last), for reports that want one figure. */
    size_t n;
    json_t *per = json_object();
    double sum = 0;
    int cnt = 0;
    if (read_stat(s, &n)) {
        for (size_t i = 0; i < s->n; i++) {
            int j = find_cpu(s->cur, n, s->first[i].cpu, i);
            double u = j >= 0 ? prof_cpu_util(&s->first[i], &s->cur[j]) : -1;
            if (u < 0)
                continue;
            json_object_set_new(per, s->inst[i], json_real(u));
            sum += u;
            cnt++;
        }
    }
    json_t *sec = json_pack("{s:s,s:i,s:o,s:o}", "source", "/proc/stat (all processes)", "cpus", (int)s->n,
                            "mean_util_pct", cnt ? json_real(sum / cnt) : json_null(), "util_pct", per);
    adg_error_free(adg_record_set_section(ctx->record, "cpu", sec));
}

const prof_collector prof_cpu_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_CPU,
    .open = cpu_open,
    .sample = cpu_sample,
    .finish = cpu_finish,
    .close = cpu_close,
};

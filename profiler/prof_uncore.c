/* The uncore memory-controller collector: CAS_COUNT.RD / CAS_COUNT.WR (event 0x05,
 * umask 0xcf / 0xf0, 64 bytes per count) of every uncore_imc_N PMU the kernel exposes,
 * counted system-wide on one CPU per socket (the PMU's cpumask), summed per socket.
 * System-wide counting needs perf_event_paranoid <= 0 or CAP_PERFMON. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_perf.h"

#define COLLECTOR "uncore"
#define SYSFS "/sys/bus/event_source/devices"
#define MAX_CTR 256

typedef struct ctr {
    int fd, socket;
    bool write;
    uint64_t last;
} ctr;

typedef struct uncore {
    ctr c[MAX_CTR];
    int n, nsockets;
    uint64_t last_t;
    double total[2];
    int m_rd, m_wr;
} uncore;

static void uncore_close(void *state)
{
    uncore *u = state;
    if (!u)
        return;
    for (int i = 0; i < u->n; i++)
        close(u->c[i].fd);
    free(u);
}

static adg_error *uncore_open(prof_ctx *ctx, void **state)
{
    DIR *d = opendir(SYSFS);
    if (!d)
        return adg_error_errno(ADG_E_UNSUPPORTED, errno, "cannot list " SYSFS);
    uncore *u = calloc(1, sizeof *u);
    if (!u) {
        closedir(d);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    adg_error *first = NULL;
    int nimc = 0;
    struct dirent *de;
    while ((de = readdir(d)) && u->n + 2 <= MAX_CTR) {
        if (strncmp(de->d_name, "uncore_imc", 10))
            continue;
        nimc++;
        char path[512], *data = NULL, *mask = NULL;
        size_t len;
        snprintf(path, sizeof path, SYSFS "/%s/type", de->d_name);
        adg_error *e = adg_read_file(path, 64, &data, &len);
        if (!e) {
            snprintf(path, sizeof path, SYSFS "/%s/cpumask", de->d_name);
            e = adg_read_file(path, 4096, &mask, &len);
        }
        if (e) {
            free(data);
            if (!first)
                first = e;
            else
                adg_error_free(e);
            continue;
        }
        unsigned type = (unsigned)atoi(data);
        free(data);
        /* cpumask "0,56": one CPU per socket, in socket order */
        int socket = 0;
        for (char *tok = strtok(mask, ",\n"); tok && u->n + 2 <= MAX_CTR; tok = strtok(NULL, ",\n"), socket++) {
            int cpu = atoi(tok);
            for (int w = 0; w < 2; w++) {
                struct perf_event_attr a;
                memset(&a, 0, sizeof a);
                a.size = sizeof a;
                a.type = type;
                a.config = 0x05 | (uint64_t)(w ? 0xf0 : 0xcf) << 8;
                int fd = prof_perf_open(&a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
                if (fd < 0) {
                    char what[300];
                    snprintf(what, sizeof what, "%s CAS_COUNT.%s on cpu %d (system-wide)", de->d_name, w ? "WR" : "RD",
                             cpu);
                    adg_error *oe = prof_perf_error(errno, what);
                    if (!first)
                        first = oe;
                    else
                        adg_error_free(oe);
                    continue;
                }
                u->c[u->n++] = (ctr){fd, socket, w != 0, 0};
            }
            if (socket + 1 > u->nsockets)
                u->nsockets = socket + 1;
        }
        free(mask);
    }
    closedir(d);
    if (!u->n) {
        uncore_close(u);
        if (first)
            return first;
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "no uncore_imc PMU in " SYSFS "%s",
                                            nimc ? " could be opened" : ""),
                              "virtual machines and non-Intel CPUs expose none; DRAM bandwidth then comes from "
                              "resctrl MBM where mounted");
    }
    adg_error_free(first);
    (void)ctx;
    u->m_rd = prof_register(ctx, COLLECTOR, "mem.read_bw", "B/s", ADG_SCOPE_SOCKET,
                            "DRAM read bandwidth, whole socket (uncore IMC CAS_COUNT.RD x 64 B)");
    u->m_wr = prof_register(ctx, COLLECTOR, "mem.write_bw", "B/s", ADG_SCOPE_SOCKET,
                            "DRAM write bandwidth, whole socket (uncore IMC CAS_COUNT.WR x 64 B)");
    for (int i = 0; i < u->n; i++) {
        uint64_t v;
        if (read(u->c[i].fd, &v, sizeof v) == sizeof v)
            u->c[i].last = v;
    }
    u->last_t = adg_bus_elapsed_ns(ctx->bus);
    *state = u;
    return NULL;
}

static void uncore_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    uncore *u = state;
    double dt = (double)(t_ns - u->last_t) * 1e-9;
    u->last_t = t_ns;
    if (dt <= 0)
        return;
    for (int s = 0; s < u->nsockets; s++) {
        double bytes[2] = {0, 0};
        for (int i = 0; i < u->n; i++) {
            if (u->c[i].socket != s)
                continue;
            uint64_t v;
            if (read(u->c[i].fd, &v, sizeof v) != sizeof v)
                continue;
            bytes[u->c[i].write] += (double)(v - u->c[i].last) * 64.0;
            u->c[i].last = v;
        }
        char inst[32];
        snprintf(inst, sizeof inst, "socket%d", s);
        adg_bus_sample(ctx->bus, u->m_rd, inst, t_ns, bytes[0] / dt);
        adg_bus_sample(ctx->bus, u->m_wr, inst, t_ns, bytes[1] / dt);
    }
}

static void uncore_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    uncore_sample(ctx, state, t_ns);
}

const prof_collector prof_uncore_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_MEM,
    .open = uncore_open,
    .sample = uncore_sample,
    .finish = uncore_finish,
    .close = uncore_close,
};

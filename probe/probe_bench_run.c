/* The measurements behind --bench: core clock (dependent adds), AMX int8/bf16 and
 * AVX-512 VNNI throughput (independent accumulators, no memory traffic), memory read
 * and triad bandwidth per NUMA node. */
#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/adg_clock.h"
#include "common/adg_memread.h"
#include "common/adg_util.h"
#include "probe/probe_amx_asm.h"
#include "probe/probe_bench.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

enum kind { K_CLOCK, K_AMX_I8, K_AMX_BF16, K_VNNI, K_READ, K_TRIAD, K_TOUCH };

typedef struct team {
    enum kind kind;
    uint64_t iters;              /* compute loops */
    char *a, *b, *c;             /* memory: buffers split among threads */
    size_t bytes;                /* read: whole buffer; triad: each array */
    size_t pf;                   /* read: software prefetch distance in bytes (0: none) */
    int streams;                 /* read: streams per thread (adg_memread) */
    int n;
    pthread_barrier_t start, end;
    double ghz[1024];
    uint64_t t_start[1024], t_end[1024]; /* per thread: the main thread may be descheduled */
    volatile uint64_t sink;
} team;

typedef struct worker {
    team *t;
    int idx;
} worker;

/* The core clock (adg_clock.h): the core ramps up first (an idle core starts at a low
 * P-state), then the best of 7 chains of 4 Mi multiplies: a vCPU the host takes away for part
 * of one reads slow in that one only.  Returns 0 when the result is implausible, so that no
 * fraction of peak is computed from it. */
static double clock_ghz(void)
{
    for (uint64_t t_end = adg_now_ns() + 20000000; adg_now_ns() < t_end;)
        adg_mul_chain(1u << 12);
    double best = 0;
    for (int rep = 0; rep < 7; rep++) {
        const double g = adg_mul_chain_ghz(1u << 18);
        if (g > best)
            best = g;
    }
    return best > 0.3 && best < 7.0 ? best : 0;
}

static void amx_setup(void)
{
    static probe_tilecfg cfg __attribute__((aligned(64)));
    static int8_t src[1024] __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    for (int i = 0; i < 1024; i++)
        src[i] = (int8_t)((i * 7) % 13 - 6); /* small values: bf16 stays finite */
    long stride = 64;
    __asm__ volatile(PROBE_LDTILECFG_RAX ::"a"(&cfg) : "memory");
    __asm__ volatile(PROBE_TILEZERO(0) PROBE_TILEZERO(1) PROBE_TILEZERO(2) PROBE_TILEZERO(3)
                     PROBE_TILELOADD(4) PROBE_TILELOADD(5) PROBE_TILELOADD(6) PROBE_TILELOADD(7)
                     ::"a"(src), "c"(stride) : "memory");
}

/* 2x2 blocking: two A tiles and two B tiles feed four accumulators, as a real kernel's
 * inner loop does; each TDPBSSD is 16x16x64 multiply-adds. */
static void amx_i8_loop(uint64_t n)
{
    __asm__ volatile("1:\n\t" PROBE_TDPBSSD(0, 4, 6) PROBE_TDPBSSD(1, 4, 7) PROBE_TDPBSSD(2, 5, 6)
                         PROBE_TDPBSSD(3, 5, 7) "dec %0\n\tjnz 1b"
                     : "+r"(n)::"memory");
}

static void amx_bf16_loop(uint64_t n)
{
    __asm__ volatile("1:\n\t" PROBE_TDPBF16PS(0, 4, 6) PROBE_TDPBF16PS(1, 4, 7) PROBE_TDPBF16PS(2, 5, 6)
                         PROBE_TDPBF16PS(3, 5, 7) "dec %0\n\tjnz 1b"
                     : "+r"(n)::"memory");
}

/* 12 independent VPDPBUSD chains cover 2 ports x 5-6 cycles of latency. */
static void vnni_loop(uint64_t n)
{
    __asm__ volatile("vpxord %%zmm12, %%zmm12, %%zmm12\n\tvpternlogd $0xff, %%zmm13, %%zmm13, %%zmm13\n\t"
                     "1:\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm0\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm1\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm2\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm3\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm4\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm5\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm6\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm7\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm8\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm9\n\t"
                     "vpdpbusd %%zmm13, %%zmm12, %%zmm10\n\tvpdpbusd %%zmm13, %%zmm12, %%zmm11\n\t"
                     "dec %0\n\tjnz 1b\n\tvzeroupper"
                     : "+r"(n)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                       "xmm10", "xmm11", "xmm12", "xmm13", "memory");
}

static bool have_avx512;
static double clock_scale = 1;   /* tests only: probe_bench_opts.clock_scale */

static void triad(double *restrict a, const double *restrict b, const double *restrict c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] + 3.0 * c[i];
}

static void *work(void *arg)
{
    worker *w = arg;
    team *t = w->t;
    if (t->kind == K_AMX_I8 || t->kind == K_AMX_BF16)
        amx_setup();
    if (t->kind == K_CLOCK) {
        pthread_barrier_wait(&t->start);
        t->ghz[w->idx] = clock_ghz() * clock_scale;
        pthread_barrier_wait(&t->end);
        return NULL;
    }
    size_t lo = 0, len = 0;
    if (t->kind == K_READ || t->kind == K_TRIAD || t->kind == K_TOUCH) {
        size_t unit = t->kind == K_TRIAD ? 64 : 256, per = t->bytes / unit / (size_t)t->n * unit;
        lo = per * (size_t)w->idx;
        len = per;
    }
    pthread_barrier_wait(&t->start);
    t->t_start[w->idx] = adg_now_ns();
    uint64_t s = 0;
    switch (t->kind) {
    case K_AMX_I8: amx_i8_loop(t->iters); break;
    case K_AMX_BF16: amx_bf16_loop(t->iters); break;
    case K_VNNI: vnni_loop(t->iters); break;
    case K_READ:
        s = adg_memread(t->a + lo, len, t->pf, t->streams, have_avx512);
        break;
    case K_TOUCH: memset(t->a + lo, 1, len); break;
    case K_TRIAD: triad((double *)(t->a + lo), (double *)(t->b + lo), (double *)(t->c + lo), len / 8); break;
    default: break;
    }
    t->t_end[w->idx] = adg_now_ns();
    pthread_barrier_wait(&t->end);
    if (t->kind == K_AMX_I8 || t->kind == K_AMX_BF16)
        __asm__ volatile(PROBE_TILERELEASE ::: "memory");
    __atomic_fetch_add(&t->sink, s, __ATOMIC_RELAXED);
    return NULL;
}

/* Runs t on the given CPUs (one pinned thread each); returns the wall time in seconds
 * from the common start to the last thread's end, or -1. */
static double run_team(team *t, const int *cpus, int n)
{
    t->n = n;
    pthread_t th[1024];
    worker w[1024];
    pthread_barrier_init(&t->start, NULL, (unsigned)n + 1);
    pthread_barrier_init(&t->end, NULL, (unsigned)n + 1);
    int started = 0;
    for (int i = 0; i < n; i++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpus[i], &set);
        pthread_attr_setaffinity_np(&at, sizeof set, &set);
        w[i] = (worker){t, i};
        if (pthread_create(&th[i], &at, work, &w[i]) == 0)
            started++;
        pthread_attr_destroy(&at);
        if (started != i + 1)
            break;
    }
    if (started != n) {
        /* Cannot meet the barrier with fewer threads: give up on this measurement. */
        abort();
    }
    pthread_barrier_wait(&t->start);
    pthread_barrier_wait(&t->end);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    /* From the first thread's start to the last one's end, as the threads saw them. */
    uint64_t t0 = UINT64_MAX, t1 = 0;
    for (int i = 0; i < n; i++) {
        if (t->t_start[i] < t0)
            t0 = t->t_start[i];
        if (t->t_end[i] > t1)
            t1 = t->t_end[i];
    }
    if (t->kind == K_CLOCK)
        t0 = t1 = 0;
    pthread_barrier_destroy(&t->start);
    pthread_barrier_destroy(&t->end);
    return (double)(t1 - t0) * 1e-9;
}

typedef struct shared_out {
    adg_ceilings c;
    char step[48];
    probe_bench_timing t;
    uint64_t step_t0;
} shared_out;

static shared_out *so;

/* Marks the start of a step: the step a crash happened in, and the time each one took. */
static void step(const char *s)
{
    uint64_t now = adg_now_ns();
    if (so->t.n > 0 && so->t.n <= 16)
        so->t.seconds[so->t.n - 1] = (double)(now - so->step_t0) * 1e-9;
    if (so->t.n < 16 && strcmp(s, "done"))
        snprintf(so->t.name[so->t.n++], sizeof so->t.name[0], "%s", s);
    so->step_t0 = now;
    snprintf(so->step, sizeof so->step, "%s", s);
}

/* ops/cycle/core of r at clock ghz (0 when the clock is unknown). */
static void rescale(adg_rate *r, double ghz)
{
    r->per_cycle = ghz > 0 && r->threads > 0 ? r->ops_per_s / r->threads / (ghz * 1e9) : 0;
}

static void rate(adg_rate *r, double ops, double secs, int threads, double ghz, unsigned peak)
{
    r->ops_per_s = secs > 0 ? ops / secs : 0;
    r->threads = threads;
    r->peak_per_cycle = peak;
    rescale(r, ghz);
}

/* A rate above its theoretical peak at the measured clock, as text; "" when none. */
static void over_peak(const adg_rate *r, const char *name, char *buf, size_t len)
{
    if (!buf[0] && r->peak_per_cycle > 0 && r->per_cycle > 1.05 * r->peak_per_cycle)
        snprintf(buf, len, "%s ran at %.0f%% of its theoretical %.0f ops/cycle/core at it", name,
                 100.0 * r->per_cycle / r->peak_per_cycle, r->peak_per_cycle);
}

/* The clock on one core and the mean over nall cores running at once; each figure replaces
 * the stored one when larger (the stored ones start at 0). */
static void measure_clocks(const int *allowed, int nall)
{
    team t;
    memset(&t, 0, sizeof t);
    t.kind = K_CLOCK;
    run_team(&t, allowed, 1);
    if (t.ghz[0] > so->c.clock_ghz)
        so->c.clock_ghz = t.ghz[0];
    run_team(&t, allowed, nall);
    double sum = 0;
    bool all_ok = true;
    for (int i = 0; i < nall; i++)
        sum += t.ghz[i], all_ok &= t.ghz[i] > 0;
    if (all_ok && sum / nall > so->c.clock_all_ghz)
        so->c.clock_all_ghz = sum / nall;
}

/* The clock once more, after the compute and memory passes (the cores are warm now): the
 * higher of the two figures counts, and the rates' ops/cycle follow it.  A clock at which a
 * loop would beat its theoretical peak is wrong (the host took the vCPU away while the
 * multiply chain ran, or throttled it then): it is dropped, with a note, so that no
 * fraction of peak is computed from it. */
static void recheck_clock(const int *allowed, int nall)
{
    measure_clocks(allowed, nall);
    adg_rate *core[3] = {&so->c.amx_int8_core, &so->c.amx_bf16_core, &so->c.vnni_core};
    adg_rate *all[3] = {&so->c.amx_int8_all, &so->c.amx_bf16_all, &so->c.vnni_all};
    static const char *const names[3] = {"AMX int8", "AMX bf16", "AVX-512 VNNI"};
    char bad[120] = "", bad_all[120] = "";
    for (int i = 0; i < 3; i++) {
        rescale(core[i], so->c.clock_ghz);
        rescale(all[i], so->c.clock_all_ghz);
        over_peak(core[i], names[i], bad, sizeof bad);
        over_peak(all[i], names[i], bad_all, sizeof bad_all);
    }
    if (bad[0] || bad_all[0]) {
        snprintf(so->c.clock_note, sizeof so->c.clock_note, "measured %.2f GHz on 1 core, %.2f GHz on all; %.100s",
                 so->c.clock_ghz, so->c.clock_all_ghz, bad[0] ? bad : bad_all);
        so->c.clock_ghz = so->c.clock_all_ghz = 0;
        for (int i = 0; i < 3; i++)
            core[i]->per_cycle = all[i]->per_cycle = 0;
    }
}

/* Measures one compute kernel on one CPU then on all, iterations sized to o->seconds. */
static void compute(const probe_bench_opts *o, enum kind k, double ops_per_iter, const int *cpus, int n, unsigned peak,
                    adg_rate *core, adg_rate *all)
{
    team t;
    memset(&t, 0, sizeof t);
    t.kind = k;
    t.iters = 1000;
    double s = run_team(&t, cpus, 1);
    double per = s / 1000.0;
    t.iters = per > 0 ? (uint64_t)(o->seconds / per) : 100000;
    if (t.iters < 100)
        t.iters = 100;
    double best = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        s = run_team(&t, cpus, 1);
        if (s < best)
            best = s;
    }
    rate(core, ops_per_iter * (double)t.iters, best, 1, so->c.clock_ghz, peak);
    best = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        s = run_team(&t, cpus, n);
        if (s < best)
            best = s;
    }
    rate(all, ops_per_iter * (double)t.iters * n, best, n, so->c.clock_all_ghz, peak);
}

static size_t default_mem_bytes(void)
{
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t b = l3 > 0 ? (size_t)l3 * 4 : (size_t)256 << 20;
    if (b < ((size_t)256 << 20))
        b = (size_t)256 << 20;
    if (b > ((size_t)1 << 30))
        b = (size_t)1 << 30;
    return b;
}

static double mem_pass(team *t, const int *cpus, int n, enum kind k, double bytes_moved)
{
    t->kind = k;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double s = run_team(t, cpus, n);
        if (s > 0 && bytes_moved / s > best)
            best = bytes_moved / s;
    }
    return best / 1e9;
}

static void memory(const probe_bench_opts *o, const int *allowed, int nallowed)
{
    size_t bytes = o->mem_bytes ? o->mem_bytes : default_mem_bytes();
    bool numa = numa_available() >= 0;
    int maxn = numa ? numa_max_node() : 0;
    for (int node = 0; node <= maxn && so->c.nnodes < ADG_CEIL_MAX_NODES; node++) {
        int cpus[1024], n = 0;
        if (numa) {
            struct bitmask *bm = numa_allocate_cpumask();
            if (!bm || numa_node_to_cpus(node, bm) != 0) {
                numa_free_cpumask(bm);
                continue;
            }
            for (int i = 0; i < nallowed; i++)
                if (numa_bitmask_isbitset(bm, (unsigned)allowed[i]) && n < 1024)
                    cpus[n++] = allowed[i];
            numa_free_cpumask(bm);
        } else {
            for (int i = 0; i < nallowed && i < 1024; i++)
                cpus[n++] = allowed[i];
        }
        if (n == 0)
            continue;
        if (o->max_threads > 0 && n > o->max_threads)
            n = o->max_threads;
        char st[48];
        snprintf(st, sizeof st, "memory node %d", node);
        step(st);
        size_t nbytes = bytes;
        long long freeb = 0;
        /* Leave the machine most of its free memory: the block is 1.5x the read size.  The
         * node's own free figure counts only with several nodes: in VMs whose memory is
         * added by virtio-mem, node 0's meminfo undercounts. */
        if (numa && numa_max_node() > 0 && numa_node_size64(node, &freeb) > 0 && freeb > 0 &&
            nbytes > (size_t)freeb / 5)
            nbytes = ((size_t)freeb / 5) & ~(size_t)0xfffff;
        long avail = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (avail > 0 && page > 0 && nbytes > (size_t)avail * (size_t)page / 5)
            nbytes = ((size_t)avail * (size_t)page / 5) & ~(size_t)0xfffff;
        if (nbytes < ((size_t)16 << 20))
            continue;
        size_t bytes = nbytes;
        /* One block serves both: the read pass scans its first `bytes`, the triad's three
         * arrays of bytes/2 fill it.  First touch is most of the cost in VMs whose host
         * backs guest memory lazily, so the block is no larger than it must be. */
        size_t total = 3 * (bytes / 2);
        char *buf = numa ? numa_alloc_onnode(total, node) : mmap(NULL, total, PROT_READ | PROT_WRITE,
                                                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!buf || buf == MAP_FAILED)
            continue;
        madvise(buf, total, MADV_HUGEPAGE);
        team t;
        memset(&t, 0, sizeof t);
        t.a = buf;
        t.bytes = total;
        /* First touch by the threads that will read: pages land on this node. */
        t.kind = K_TOUCH;
        run_team(&t, cpus, n);
        adg_node_bw *nb = &so->c.nodes[so->c.nnodes++];
        nb->node = node;
        nb->threads = n;
        nb->buffer_bytes = (double)bytes;
        t.a = buf;
        t.bytes = bytes;
        /* the plain loop and the prefetching one (o->read_pf bytes ahead; none where 0):
         * the faster of them, for all threads and for one */
        const double all_bytes = (double)(bytes / 256 / (size_t)n * 256 * (size_t)n);
        const double one_bytes = (double)(bytes / 256 * 256);
        t.pf = 0;
        t.streams = 1;
        nb->read_gbs = mem_pass(&t, cpus, n, K_READ, all_bytes);
        nb->read_core_gbs = mem_pass(&t, cpus, 1, K_READ, one_bytes);
        nb->read_plain_gbs = nb->read_gbs;
        if (have_avx512 && o->read_pf > 0) {
            t.pf = o->read_pf;
            const double a = mem_pass(&t, cpus, n, K_READ, all_bytes), c1 = mem_pass(&t, cpus, 1, K_READ, one_bytes);
            nb->read_pf_gbs = a;
            if (a > nb->read_gbs)
                nb->read_gbs = a;
            if (c1 > nb->read_core_gbs)
                nb->read_core_gbs = c1;
        }
        /* several streams per thread, as the GEMV reads its panels (adg_memread.c says why) */
        if (have_avx512) {
            t.streams = ADG_MEMREAD_STREAMS;
            for (int l = 0; l < 2; l++) {
                t.pf = l ? o->read_pf : 0;
                if (l && !t.pf)
                    break;
                const double a = mem_pass(&t, cpus, n, K_READ, all_bytes);
                if (a > nb->read_multi_gbs)
                    nb->read_multi_gbs = a;
            }
            if (nb->read_multi_gbs > nb->read_gbs)
                nb->read_gbs = nb->read_multi_gbs;
            t.streams = 1;
        }
        size_t arr = bytes / 2;
        t.a = buf;
        t.b = buf + arr;
        t.c = buf + 2 * arr;
        t.bytes = arr;
        nb->triad_gbs = mem_pass(&t, cpus, n, K_TRIAD, 3.0 * (double)(arr / 64 / (size_t)n * 64 * (size_t)n));
        if (numa)
            numa_free(buf, total);
        else
            munmap(buf, total);
    }
}

static void child(const probe_bench_opts *o)
{
    uint64_t t0 = adg_now_ns();
    uint32_t a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    have_avx512 = (b >> 16) & 1;
    cpu_set_t set;
    int allowed[1024], n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int i = 0; i < CPU_SETSIZE && n < 1024; i++)
            if (CPU_ISSET(i, &set))
                allowed[n++] = i;
    if (n == 0)
        allowed[n++] = 0;
    int nall = o->max_threads > 0 && o->max_threads < n ? o->max_threads : n;

    step("clock");
    measure_clocks(allowed, nall);

    bool amx = o->amx;
    if (amx) {
        step("ARCH_REQ_XCOMP_PERM");
        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, (unsigned long)XFEATURE_XTILEDATA) != 0) {
            int e = errno;
            snprintf(so->c.amx_int8_core.why, sizeof so->c.amx_int8_core.why,
                     "ARCH_REQ_XCOMP_PERM failed: %s (see amx.permission)", strerror(e));
            amx = false;
        }
    } else {
        snprintf(so->c.amx_int8_core.why, sizeof so->c.amx_int8_core.why, "AMX is not usable here (see the amx section)");
    }
    if (!amx) {
        memcpy(so->c.amx_int8_all.why, so->c.amx_int8_core.why, sizeof so->c.amx_int8_all.why);
        memcpy(so->c.amx_bf16_core.why, so->c.amx_int8_core.why, sizeof so->c.amx_bf16_core.why);
        memcpy(so->c.amx_bf16_all.why, so->c.amx_int8_core.why, sizeof so->c.amx_bf16_all.why);
    } else {
        step("AMX int8 (TDPBSSD)");
        compute(o, K_AMX_I8, 4.0 * 16 * 16 * 64 * 2, allowed, nall, o->amx_int8_peak, &so->c.amx_int8_core,
                &so->c.amx_int8_all);
        step("AMX bf16 (TDPBF16PS)");
        compute(o, K_AMX_BF16, 4.0 * 16 * 16 * 32 * 2, allowed, nall, o->amx_bf16_peak, &so->c.amx_bf16_core,
                &so->c.amx_bf16_all);
    }
    if (o->vnni) {
        step("AVX-512 VNNI (VPDPBUSD)");
        compute(o, K_VNNI, 12.0 * 64 * 2, allowed, nall, o->vnni_peak, &so->c.vnni_core, &so->c.vnni_all);
    } else {
        snprintf(so->c.vnni_core.why, sizeof so->c.vnni_core.why, "the CPU lacks AVX-512 VNNI");
        memcpy(so->c.vnni_all.why, so->c.vnni_core.why, sizeof so->c.vnni_all.why);
    }
    memory(o, allowed, n);
    step("clock (again)");
    recheck_clock(allowed, nall);
    so->c.seconds = (double)(adg_now_ns() - t0) * 1e-9;
    step("done");
}

adg_error *probe_bench_run(const probe_bench_opts *o_in, adg_ceilings *c, probe_bench_timing *t)
{
    probe_bench_opts o = *o_in;
    if (o.seconds <= 0)
        o.seconds = 0.15;
    memset(c, 0, sizeof *c);
    shared_out *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return adg_error_errno(ADG_E_NOMEM, errno, "cannot map the benchmark's report page");
    memset(sh, 0, sizeof *sh);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        munmap(sh, sizeof *sh);
        return adg_error_errno(ADG_E_INTERNAL, e, "cannot fork the benchmark child");
    }
    if (pid == 0) {
        so = sh;
        if (o.clock_scale > 0)
            clock_scale = o.clock_scale;
        int sigs[] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE, SIGALRM, SIGABRT};
        for (size_t i = 0; i < ADG_ARRAY_LEN(sigs); i++)
            signal(sigs[i], SIG_DFL);
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        alarm(120);
        child(&o);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            munmap(sh, sizeof *sh);
            return adg_error_errno(ADG_E_INTERNAL, errno, "cannot wait for the benchmark child");
        }
    *c = sh->c;
    if (t)
        *t = sh->t;
    char at[48];
    snprintf(at, sizeof at, "%s", sh->step);
    munmap(sh, sizeof *sh);
    adg_ceilings_key(c->cpu, sizeof c->cpu, &c->ncpus);
    adg_utc_iso8601(c->created, sizeof c->created);
    if (WIFSIGNALED(st))
        return adg_error_hint(adg_error_new(ADG_E_HARDWARE, "the benchmark child was killed by signal %d (%s) during %s",
                                            WTERMSIG(st), strsignal(WTERMSIG(st)), at),
                              "run 'amxdiag probe --only cpu,amx' to see which layer fails");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return adg_error_new(ADG_E_INTERNAL, "the benchmark child exited with status %d during %s",
                             WIFEXITED(st) ? WEXITSTATUS(st) : -1, at);
    return NULL;
}

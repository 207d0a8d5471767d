/* Persistent workers, generation-counter start, counter barrier.  Workers spin a few
 * thousand pauses before sleeping on a futex: back-to-back operations of a decode step
 * start without a syscall, while an idle pool costs no CPU. */
#include "kernels/kern_pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* PAUSEs a waiting thread spins before it sleeps (about 1 ms at ~140 cycles a PAUSE);
 * AMXDIAG_POOL_SPIN=N (0..10^7) overrides it per pool, for A/B runs (docs/kernels.md). */
#define SPIN_LIMIT 20000

typedef struct worker {
    kern_pool *pool;
    pthread_t thread;
    int ith, cpu, node;
} worker;

struct kern_pool {
    int n;
    worker *w;
    _Atomic uint32_t gen;       /* bumped to start a run; futex word */
    _Atomic int done;           /* workers (excluding 0) finished with this run */
    _Atomic int sleepers;
    _Atomic bool stop;
    kern_pool_fn fn;
    void *arg;
    int nodes;
    int spin_limit;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *worker_main(void *p)
{
    worker *w = p;
    kern_pool *pool = w->pool;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
            if (++spins < pool->spin_limit) {
                cpu_relax();
                continue;
            }
            atomic_fetch_add(&pool->sleepers, 1);
            if (atomic_load_explicit(&pool->gen, memory_order_acquire) == seen)
                futex_wait(&pool->gen, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&pool->stop))
            return NULL;
        pool->fn(pool->arg, w->ith, pool->n);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
}

adg_error *kern_pool_new(int nthreads, bool pin, kern_pool **out)
{
    *out = NULL;
    if (nthreads < 1 || nthreads > 4096)
        return adg_error_new(ADG_E_USAGE, "thread count %d is out of range (1..4096)", nthreads);
    kern_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->w = calloc((size_t)nthreads, sizeof *p->w))) {
        free(p);
        return adg_error_new(ADG_E_NOMEM, "out of memory creating a pool of %d threads", nthreads);
    }
    p->spin_limit = SPIN_LIMIT;
    const char *spin = getenv("AMXDIAG_POOL_SPIN");
    if (spin && *spin) {
        char *end;
        long v = strtol(spin, &end, 10);
        if (*end == '\0' && v >= 0 && v <= 10000000)
            p->spin_limit = (int)v;
    }
    p->n = nthreads;
    int cpus[4096];
    int ncpu = 0;
    cpu_set_t set;
    if (pin && sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && ncpu < 4096; c++)
            if (CPU_ISSET(c, &set))
                cpus[ncpu++] = c;
    bool have_numa = numa_available() >= 0;
    unsigned long node_mask = 0;
    for (int i = 0; i < nthreads; i++) {
        worker *w = &p->w[i];
        w->pool = p;
        w->ith = i;
        w->cpu = pin && ncpu > 0 ? cpus[i % ncpu] : -1;
        w->node = (w->cpu >= 0 && have_numa) ? numa_node_of_cpu(w->cpu) : -1;
        if (w->node >= 0 && w->node < 64)
            node_mask |= 1ul << w->node;
    }
    p->nodes = node_mask ? __builtin_popcountl(node_mask) : (have_numa ? numa_num_configured_nodes() : 1);
    if (p->nodes < 1)
        p->nodes = 1;
    /* Worker 0 is the caller; pin it too when asked, so the partition is node-local. */
    if (p->w[0].cpu >= 0) {
        CPU_ZERO(&set);
        CPU_SET(p->w[0].cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    for (int i = 1; i < nthreads; i++) {
        int rc = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);
        if (rc != 0) {
            p->n = i;           /* join what was started */
            kern_pool_free(p);
            return adg_error_hint(adg_error_errno(ADG_E_NOMEM, rc, "cannot start kernel worker thread %d", i),
                                  "use fewer threads (--threads N)");
        }
    }
    *out = p;
    return NULL;
}

void kern_pool_free(kern_pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->w[i].thread, NULL);
    free(p->w);
    free(p);
}

int kern_pool_size(const kern_pool *p) { return p->n; }
int kern_pool_node(const kern_pool *p, int ith) { return ith >= 0 && ith < p->n ? p->w[ith].node : -1; }
int kern_pool_nodes(const kern_pool *p) { return p->nodes; }

void kern_pool_run(kern_pool *p, kern_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);   /* seq_cst: ordered before the sleepers check */
    if (atomic_load(&p->sleepers) > 0)
        futex_wake_all(&p->gen);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1) {
        if (++spins < p->spin_limit)
            cpu_relax();
        else
            sched_yield();   /* oversubscribed machine: let the workers run */
    }
}

/* A persistent thread pool for the kernels: workers are created once and wait on a
 * generation counter (spin briefly, then sleep on a futex), so an operation costs a wake
 * and a barrier, never a thread creation.  The calling thread is worker 0. */
#ifndef KERN_POOL_H
#define KERN_POOL_H

#include <stdbool.h>

#include "common/adg_error.h"

typedef struct kern_pool kern_pool;
typedef void (*kern_pool_fn)(void *arg, int ith, int nth);

/* nthreads >= 1.  pin: worker i runs on the i-th CPU of the process's affinity mask. */
adg_error *kern_pool_new(int nthreads, bool pin, kern_pool **out);
void kern_pool_free(kern_pool *p);
int kern_pool_size(const kern_pool *p);
/* Runs fn(arg, ith, nth) on every worker and returns when all have returned. */
void kern_pool_run(kern_pool *p, kern_pool_fn fn, void *arg);
/* NUMA node a worker runs on (its pinned CPU's node; -1 when unknown/not pinned). */
int kern_pool_node(const kern_pool *p, int ith);
/* Number of distinct NUMA nodes among the workers (1 without libnuma support). */
int kern_pool_nodes(const kern_pool *p);

/* Splits n units into nth near-equal contiguous ranges; worker ith gets [*lo, *hi). */
static inline void kern_split(long n, int ith, int nth, long *lo, long *hi)
{
    long q = n / nth, r = n % nth;
    *lo = ith * q + (ith < r ? ith : r);
    *hi = *lo + q + (ith < r ? 1 : 0);
}

#endif

/* The sampling collector: software cpu-clock samples of the workload's user code,
 * resolved to functions and classified by ISA (works without a hardware PMU).
 *
 * Rings: a perf event opened on one task with inherit=1 and cpu=-1 cannot be mmap'ed
 * (the kernel refuses, EINVAL, so that all children would not write to one buffer), so
 * for a command we start, the events are per CPU and per task (pid=child, cpu=N,
 * inherit=1), like perf record: every thread and child process the command creates
 * writes to the ring of the CPU it runs on.  For --pid, threads already exist and
 * inheritance does not reach them, so each thread gets its own event (cpu=-1,
 * inherit=0) and new threads are picked up at every interval. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "profiler/prof_collector.h"
#include "profiler/prof_perf.h"
#include "profiler/prof_resolve.h"

#define COLLECTOR "sampler"

typedef struct ring {
    int fd;
    pid_t tid;          /* attach mode: the thread; 0 otherwise */
    void *base;
    size_t len;
    uint8_t *data;
    size_t size;        /* data area, a power of two */
} ring;

typedef enum { REC_SAMPLE, REC_MMAP, REC_COMM, REC_FORK } rec_kind;

typedef struct rec {
    uint64_t time, seq;
    rec_kind kind;
    pid_t pid, tid, ppid;
    uint64_t ip, start, len, pgoff;
    bool exec;
    char *str;          /* mmap file name / comm */
} rec;

typedef struct thread_tally {
    pid_t pid, tid;
    char comm[32];
    uint64_t samples, spin;
    uint64_t by_func[PROF_ISA_NCLASSES], by_block[PROF_ISA_NCLASSES];
} thread_tally;

/* Phases the workload marks on the bus (the built-in path's "prompt" / "generation"
 * begin/end events): samples are also tallied per phase. */
typedef struct window {
    char name[24];
    uint64_t begin, end; /* bus time; end = UINT64_MAX while open */
} window;

typedef struct phase_tally {
    char name[24];
    uint64_t samples, by_func[PROF_ISA_NCLASSES], by_block[PROF_ISA_NCLASSES];
    uint64_t spin, busy_by_func[PROF_ISA_NCLASSES];   /* spin-wait samples; the rest by class */
} phase_tally;

typedef struct sampler {
    ring *rings;
    size_t nrings, caprings;
    struct perf_event_attr attr;
    prof_resolver *res;
    rec *recs;
    size_t nrecs, caprecs;
    uint64_t seq;
    thread_tally *threads;
    size_t nthreads, capthreads;
    uint64_t samples, lost, by_func[PROF_ISA_NCLASSES], by_block[PROF_ISA_NCLASSES];
    uint64_t spin, busy_by_func[PROF_ISA_NCLASSES];
    uint64_t iv_samples, iv_by_func[PROF_ISA_NCLASSES];
    uint64_t last_t_ns;
    uint64_t bus_start_ns;
    unsigned data_pages;
    int m_util, m_share[PROF_ISA_NCLASSES], m_samples;
    size_t events_seen;
    window win[64];
    unsigned nwin;
    phase_tally ph[8];
    unsigned nph;
    uint64_t hot_at_ns;      /* bus time of the last live hot-function snapshot */
    uint64_t hot_samples;    /* s->samples then: no new snapshot while nothing changed */
} sampler;

static void read_phases(prof_ctx *ctx, sampler *s)
{
    json_t *ev = adg_bus_events_since(ctx->bus, s->events_seen, &s->events_seen);
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e)
    {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *state = json_string_value(json_object_get(json_object_get(e, "detail"), "state"));
        uint64_t t = (uint64_t)json_integer_value(json_object_get(e, "t_ns"));
        if (!kind || strcmp(kind, "phase") || !name || !state)
            continue;
        if (!strcmp(state, "begin") && s->nwin < 64) {
            window *w = &s->win[s->nwin++];
            snprintf(w->name, sizeof w->name, "%s", name);
            w->begin = t;
            w->end = UINT64_MAX;
        } else if (!strcmp(state, "end")) {
            for (unsigned k = s->nwin; k-- > 0;)
                if (!strcmp(s->win[k].name, name) && s->win[k].end == UINT64_MAX) {
                    s->win[k].end = t;
                    break;
                }
        }
    }
    json_decref(ev);
}

static phase_tally *phase_at(sampler *s, uint64_t t)
{
    for (unsigned k = s->nwin; k-- > 0;)
        if (t >= s->win[k].begin && t < s->win[k].end) {
            for (unsigned p = 0; p < s->nph; p++)
                if (!strcmp(s->ph[p].name, s->win[k].name))
                    return &s->ph[p];
            if (s->nph == 8)
                return NULL;
            phase_tally *p = &s->ph[s->nph++];
            memset(p, 0, sizeof *p);
            memcpy(p->name, s->win[k].name, sizeof p->name); /* same size, NUL-terminated */
            return p;
        }
    return NULL;
}

static adg_error *add_ring(sampler *s, pid_t pid, int cpu, bool attach_tid)
{
    int fd = prof_perf_open(&s->attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        char what[96];
        snprintf(what, sizeof what, "cpu-clock sampling of pid %d on cpu %d", (int)pid, cpu);
        return prof_perf_error(errno, what);
    }
    long page = sysconf(_SC_PAGESIZE);
    void *base = MAP_FAILED;
    unsigned pages = s->data_pages;
    /* The per-user locked-memory budget for perf rings (perf_event_mlock_kb) can run out
     * with many rings: fall back to smaller rings rather than failing. */
    for (; pages >= 1; pages /= 2) {
        base = mmap(NULL, (size_t)(pages + 1) * (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base != MAP_FAILED || errno != EPERM)
            break;
    }
    if (base == MAP_FAILED) {
        int err = errno;
        close(fd);
        return adg_error_hint(adg_error_errno(ADG_E_PERMISSION, err, "cannot map a perf sampling ring"),
                              "raise /proc/sys/kernel/perf_event_mlock_kb or run as root");
    }
    if (s->nrings == s->caprings) {
        size_t nc = s->caprings ? s->caprings * 2 : 16;
        ring *r = realloc(s->rings, nc * sizeof *r);
        if (!r) {
            munmap(base, (size_t)(pages + 1) * (size_t)page);
            close(fd);
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        }
        s->rings = r;
        s->caprings = nc;
    }
    s->rings[s->nrings++] = (ring){fd, attach_tid ? pid : 0, base, (size_t)(pages + 1) * (size_t)page,
                                   (uint8_t *)base + page, (size_t)pages * (size_t)page};
    return NULL;
}

static bool have_tid(const sampler *s, pid_t tid)
{
    for (size_t i = 0; i < s->nrings; i++)
        if (s->rings[i].tid == tid)
            return true;
    return false;
}

/* Attach mode: one event per thread of pid not yet followed. */
static adg_error *scan_tasks(sampler *s, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return adg_error_errno(ADG_E_IO, errno, "cannot list the threads of pid %d", (int)pid);
    adg_error *first = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        int tid = atoi(de->d_name);
        if (tid <= 0 || have_tid(s, tid))
            continue;
        adg_error *e = add_ring(s, tid, -1, true);
        if (e && !first)
            first = e;
        else
            adg_error_free(e); /* a thread that just exited */
    }
    closedir(d);
    return s->nrings ? (adg_error_free(first), NULL) : first;
}

static void read_comm(pid_t pid, pid_t tid, char *out, size_t len)
{
    char path[96], *data;
    size_t n;
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)pid, (int)tid);
    adg_error *e = adg_read_file(path, 64, &data, &n);
    if (e) {
        adg_error_free(e);
        snprintf(out, len, "?");
        return;
    }
    snprintf(out, len, "%s", adg_rstrip(data));
    free(data);
}

static thread_tally *thread_of(sampler *s, pid_t pid, pid_t tid)
{
    static __thread size_t last;
    if (last < s->nthreads && s->threads[last].tid == tid)
        return &s->threads[last];
    for (size_t i = 0; i < s->nthreads; i++)
        if (s->threads[i].tid == tid)
            return &s->threads[last = i];
    if (s->nthreads == s->capthreads) {
        size_t nc = s->capthreads ? s->capthreads * 2 : 16;
        thread_tally *t = realloc(s->threads, nc * sizeof *t);
        if (!t)
            return NULL;
        s->threads = t;
        s->capthreads = nc;
    }
    thread_tally *t = &s->threads[s->nthreads];
    memset(t, 0, sizeof *t);
    t->pid = pid;
    t->tid = tid;
    read_comm(pid, tid, t->comm, sizeof t->comm);
    last = s->nthreads++;
    return t;
}

static rec *new_rec(sampler *s)
{
    if (s->nrecs == s->caprecs) {
        size_t nc = s->caprecs ? s->caprecs * 2 : 1024;
        rec *r = realloc(s->recs, nc * sizeof *r);
        if (!r)
            return NULL;
        s->recs = r;
        s->caprecs = nc;
    }
    rec *r = &s->recs[s->nrecs++];
    memset(r, 0, sizeof *r);
    r->seq = s->seq++;
    return r;
}

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* One record, copied out of the ring (wrap-around already undone). */
static void parse(sampler *s, const uint8_t *p, size_t size)
{
    struct perf_event_header h;
    memcpy(&h, p, sizeof h);
    const uint8_t *b = p + sizeof h;
    /* sample_id_all trailer: pid/tid, time, cpu (24 bytes) */
    uint64_t trailer_time = size >= 32 ? rd64(p + size - 16) : 0;
    rec *r;
    switch (h.type) {
    case PERF_RECORD_SAMPLE:
        if (size < sizeof h + 32 || !(r = new_rec(s)))
            return;
        r->kind = REC_SAMPLE;
        r->ip = rd64(b);
        r->pid = (pid_t)rd32(b + 8);
        r->tid = (pid_t)rd32(b + 12);
        r->time = rd64(b + 16);
        break;
    case PERF_RECORD_MMAP2:
        if (size < sizeof h + 64 + 24 || !(r = new_rec(s)))
            return;
        r->kind = REC_MMAP;
        r->pid = (pid_t)rd32(b);
        r->tid = (pid_t)rd32(b + 4);
        r->start = rd64(b + 8);
        r->len = rd64(b + 16);
        r->pgoff = rd64(b + 24);
        r->str = strndup((const char *)b + 64, size - sizeof h - 64 - 24);
        r->time = trailer_time;
        break;
    case PERF_RECORD_COMM:
        if (size < sizeof h + 8 + 24 || !(r = new_rec(s)))
            return;
        r->kind = REC_COMM;
        r->pid = (pid_t)rd32(b);
        r->tid = (pid_t)rd32(b + 4);
        r->exec = (h.misc & PERF_RECORD_MISC_COMM_EXEC) != 0;
        r->str = strndup((const char *)b + 8, size - sizeof h - 8 - 24);
        r->time = trailer_time;
        break;
    case PERF_RECORD_FORK:
        if (size < sizeof h + 24 || !(r = new_rec(s)))
            return;
        r->kind = REC_FORK;
        r->pid = (pid_t)rd32(b);
        r->ppid = (pid_t)rd32(b + 4);
        r->tid = (pid_t)rd32(b + 8);
        r->time = rd64(b + 16);
        break;
    case PERF_RECORD_LOST:
        if (size >= sizeof h + 16)
            s->lost += rd64(b + 8);
        break;
    default:
        break;
    }
}

static void drain_ring(sampler *s, ring *rg)
{
    struct perf_event_mmap_page *meta = rg->base;
    uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    uint64_t tail = meta->data_tail;
    uint8_t buf[4096 + 64];
    while (tail + sizeof(struct perf_event_header) <= head) {
        struct perf_event_header h;
        size_t off = (size_t)(tail & (rg->size - 1));
        for (size_t i = 0; i < sizeof h; i++)
            ((uint8_t *)&h)[i] = rg->data[(off + i) & (rg->size - 1)];
        if (h.size < sizeof h || tail + h.size > head)
            break;
        size_t n = h.size < sizeof buf ? h.size : sizeof buf;
        size_t first = rg->size - off < n ? rg->size - off : n;
        memcpy(buf, rg->data + off, first);
        memcpy(buf + first, rg->data, n - first);
        if (n == h.size)
            parse(s, buf, n);
        tail += h.size;
    }
    __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
}

static int rec_cmp(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void process(prof_ctx *ctx, sampler *s)
{
    /* Nothing may have arrived yet (recs still NULL): qsort's pointer must be valid even
     * for zero elements, so the sort is guarded rather than relying on libc's leniency. */
    if (s->nrecs > 1)
        qsort(s->recs, s->nrecs, sizeof *s->recs, rec_cmp);
    prof_resolver_next_batch(s->res);
    for (size_t i = 0; i < s->nrecs; i++) {
        rec *r = &s->recs[i];
        switch (r->kind) {
        case REC_SAMPLE: {
            if (ctx->self && r->tid == ctx->exclude_tid)
                break;
            prof_isa_class block;
            bool spin;
            int fi = prof_resolver_sample_ex(s->res, r->pid, r->ip, &block, &spin);
            prof_isa_class fc = fi >= 0 ? prof_resolver_func(s->res, fi)->cls : PROF_ISA_UNKNOWN;
            s->samples++;
            s->by_func[fc]++;
            s->by_block[block]++;
            if (spin)
                s->spin++;
            else
                s->busy_by_func[fc]++;
            s->iv_samples++;
            s->iv_by_func[fc]++;
            phase_tally *ph = s->nwin ? phase_at(s, r->time - s->bus_start_ns) : NULL;
            if (ph) {
                ph->samples++;
                ph->by_func[fc]++;
                ph->by_block[block]++;
                if (spin)
                    ph->spin++;
                else
                    ph->busy_by_func[fc]++;
            }
            thread_tally *t = thread_of(s, r->pid, r->tid);
            if (t) {
                t->samples++;
                t->spin += spin;
                t->by_func[fc]++;
                t->by_block[block]++;
            }
            prof_pidset_add(&ctx->pids, r->pid);
            break;
        }
        case REC_MMAP:
            prof_resolver_add_map(s->res, r->pid, r->start, r->len, r->pgoff, r->str);
            break;
        case REC_COMM:
            if (r->exec)
                prof_resolver_exec(s->res, r->pid);
            for (size_t k = 0; k < s->nthreads; k++)
                if (s->threads[k].tid == r->tid && r->str)
                    snprintf(s->threads[k].comm, sizeof s->threads[k].comm, "%s", r->str);
            break;
        case REC_FORK:
            if (r->pid != r->ppid) {
                prof_resolver_fork(s->res, r->ppid, r->pid);
                prof_pidset_add(&ctx->pids, r->pid);
            }
            break;
        }
        free(r->str);
    }
    s->nrecs = 0;
}

static void publish(prof_ctx *ctx, sampler *s, uint64_t t_ns)
{
    uint64_t dt = t_ns > s->last_t_ns ? t_ns - s->last_t_ns : 0;
    s->last_t_ns = t_ns;
    if (dt) {
        double cpu_ns = (double)s->iv_samples * (double)s->attr.sample_period;
        adg_bus_sample(ctx->bus, s->m_util, NULL, t_ns, 100.0 * cpu_ns / (double)dt);
    }
    adg_bus_sample(ctx->bus, s->m_samples, NULL, t_ns, (double)s->iv_samples);
    if (s->iv_samples)
        for (int c = 0; c < PROF_ISA_NCLASSES; c++)
            adg_bus_sample(ctx->bus, s->m_share[c], NULL, t_ns, 100.0 * (double)s->iv_by_func[c] / (double)s->iv_samples);
    s->iv_samples = 0;
    memset(s->iv_by_func, 0, sizeof s->iv_by_func);
}

static void sampler_close(void *state)
{
    sampler *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->nrings; i++) {
        munmap(s->rings[i].base, s->rings[i].len);
        close(s->rings[i].fd);
    }
    for (size_t i = 0; i < s->nrecs; i++)
        free(s->recs[i].str);
    free(s->recs);
    free(s->rings);
    free(s->threads);
    prof_resolver_free(s->res);
    free(s);
}

static adg_error *sampler_open(prof_ctx *ctx, void **state)
{
    sampler *s = calloc(1, sizeof *s);
    if (!s || !(s->res = prof_resolver_new())) {
        free(s);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    s->data_pages = 16;
    s->bus_start_ns = adg_bus_start_ns(ctx->bus);
    struct perf_event_attr *a = &s->attr;
    a->size = sizeof *a;
    a->type = PERF_TYPE_SOFTWARE;
    a->config = PERF_COUNT_SW_CPU_CLOCK;
    a->sample_period = 1000000000ull / (ctx->freq_hz ? ctx->freq_hz : 1000);
    a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU;
    /* User code only: kernel samples need perf_event_paranoid <= 1 and say nothing
     * about which vector unit the workload's code uses. */
    a->exclude_kernel = 1;
    a->exclude_hv = 1;
    a->mmap = 1;
    a->mmap2 = 1;
    a->comm = 1;
    a->comm_exec = 1;
    a->task = 1;
    a->sample_id_all = 1;
    a->use_clockid = 1;
    a->clockid = CLOCK_MONOTONIC;
    a->wakeup_events = 1u << 30; /* drained by polling at every interval; no wake-ups */
    adg_error *e = NULL;
    if (ctx->self) {
        /* The built-in path: this process; the engine's threads are created after this
         * and inherit the per-CPU events. */
        a->inherit = 1;
        long ncpu = sysconf(_SC_NPROCESSORS_CONF);
        e = prof_resolver_load_proc(s->res, ctx->root);
        for (int cpu = 0; cpu < ncpu && !e; cpu++) {
            e = add_ring(s, ctx->root, cpu, false);
            if (e && s->nrings && (adg_error_errnum(e) == ENODEV || adg_error_errnum(e) == EINVAL)) {
                adg_error_free(e);
                e = NULL;
            }
        }
    } else if (ctx->attach) {
        a->inherit = 0;
        e = prof_resolver_load_proc(s->res, ctx->root);
        if (!e)
            e = scan_tasks(s, ctx->root);
    } else {
        a->inherit = 1;
        a->disabled = 1;
        a->enable_on_exec = 1;
        long ncpu = sysconf(_SC_NPROCESSORS_CONF);
        for (int cpu = 0; cpu < ncpu && !e; cpu++) {
            e = add_ring(s, ctx->root, cpu, false);
            /* An offline CPU refuses with ENODEV/EINVAL; skip it, but only after one worked. */
            if (e && s->nrings && (adg_error_errnum(e) == ENODEV || adg_error_errnum(e) == EINVAL)) {
                adg_error_free(e);
                e = NULL;
            }
        }
    }
    if (e) {
        sampler_close(s);
        return e;
    }
    s->m_util = prof_register(ctx, COLLECTOR, "workload.cpu", "%", ADG_SCOPE_PROCESS,
                              "CPU time of the workload's user code, all threads (100% = one CPU), from cpu-clock samples");
    s->m_samples = prof_register(ctx, COLLECTOR, "sampler.samples", "count", ADG_SCOPE_PROCESS,
                                 "cpu-clock samples taken in the interval");
    static const char *const meanings[PROF_ISA_NCLASSES] = {
        "share of sampled CPU time in functions using no vector instructions",
        "share of sampled CPU time in functions whose most advanced instructions are SSE",
        "share of sampled CPU time in functions whose most advanced instructions are AVX/AVX2/FMA/AVX-VNNI",
        "share of sampled CPU time in functions using AVX-512 (incl. VNNI, BF16, FP16) but no AMX",
        "share of sampled CPU time in functions using AMX tile instructions",
        "share of sampled CPU time in code without symbols or file (stripped, JIT, vdso)",
    };
    for (int c = 0; c < PROF_ISA_NCLASSES; c++) {
        char name[48];
        snprintf(name, sizeof name, "isa.share.%s", prof_isa_class_name((prof_isa_class)c));
        s->m_share[c] = prof_register(ctx, COLLECTOR, name, "%", ADG_SCOPE_PROCESS, meanings[c]);
    }
    *state = s;
    return NULL;
}

static void publish_hot(prof_ctx *ctx, sampler *s, uint64_t t_ns);

static void sampler_sample(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    sampler *s = state;
    if (ctx->attach)
        adg_error_free(scan_tasks(s, ctx->root));
    read_phases(ctx, s);
    for (size_t i = 0; i < s->nrings; i++)
        drain_ring(s, &s->rings[i]);
    process(ctx, s);
    publish(ctx, s, t_ns);
    publish_hot(ctx, s, t_ns);
}

static json_t *class_shares(const uint64_t *counts, uint64_t total)
{
    json_t *o = json_object();
    for (int c = PROF_ISA_NCLASSES - 1; c >= 0; c--)
        json_object_set_new(o, prof_isa_class_name((prof_isa_class)c),
                            json_real(total ? 100.0 * (double)counts[c] / (double)total : 0.0));
    return o;
}

static int func_cmp(const void *a, const void *b)
{
    const prof_func *x = *(const prof_func *const *)a, *y = *(const prof_func *const *)b;
    return x->samples < y->samples ? 1 : x->samples > y->samples ? -1 : 0;
}

static int thread_cmp(const void *a, const void *b)
{
    const thread_tally *x = a, *y = b;
    return x->samples < y->samples ? 1 : x->samples > y->samples ? -1 : 0;
}

/* The hot functions so far, most sampled first, at most ctx->top_n (new reference). */
static json_t *hot_functions(prof_ctx *ctx, sampler *s)
{
    size_t nf = prof_resolver_nfuncs(s->res);
    const prof_func **order = nf ? malloc(nf * sizeof *order) : NULL;
    json_t *hot = json_array();
    if (order) {
        for (size_t i = 0; i < nf; i++)
            order[i] = prof_resolver_func(s->res, (int)i);
        qsort(order, nf, sizeof *order, func_cmp);
        unsigned top = ctx->top_n ? ctx->top_n : 30;
        for (size_t i = 0; i < nf && i < top && order[i]->samples; i++) {
            const prof_func *f = order[i];
            json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:I,s:f}", "function", f->name, "module", f->module, "class",
                                  prof_isa_class_name(f->cls), "resolved", f->resolved, "samples",
                                  (json_int_t)f->samples, "share",
                                  s->samples ? 100.0 * (double)f->samples / (double)s->samples : 0.0);
            if (f->resolved) {
                json_t *ins = json_object();
                for (int c = PROF_ISA_AMX; c >= 0; c--)
                    json_object_set_new(ins, prof_isa_class_name((prof_isa_class)c), json_integer(f->insns.n[c]));
                json_object_set_new(o, "instructions", ins);
            }
            json_object_set_new(o, "by_block", class_shares(f->block_samples, f->samples));
            json_array_append_new(hot, o);
        }
        free(order);
    }
    return hot;
}

/* Hot functions while the run goes on: a bus snapshot about once a second (the TUI's live
 * panel reads it), only when new samples came.  The resolver's counts are this thread's,
 * so building it here needs no lock. */
static void publish_hot(prof_ctx *ctx, sampler *s, uint64_t t_ns)
{
    /* the first as soon as there are samples, then at most once a second */
    if (s->samples == s->hot_samples || (s->hot_samples && t_ns < s->hot_at_ns + 1000000000ull))
        return;
    s->hot_at_ns = t_ns;
    s->hot_samples = s->samples;
    adg_bus_snapshot_put(ctx->bus, "hot_functions", hot_functions(ctx, s));
}

static void sampler_finish(prof_ctx *ctx, void *state, uint64_t t_ns)
{
    sampler *s = state;
    for (size_t i = 0; i < s->nrings; i++)
        ioctl(s->rings[i].fd, PERF_EVENT_IOC_DISABLE, 0);
    sampler_sample(ctx, s, t_ns);

    json_t *isa = json_pack("{s:s,s:i,s:I,s:I,s:I}", "method",
                            "cpu-clock sampling of user code; functions (ELF .symtab/.dynsym) classified by their "
                            "instructions with Zydis",
                            "freq_hz", (int)(1000000000ull / s->attr.sample_period), "period_ns",
                            (json_int_t)s->attr.sample_period, "samples", (json_int_t)s->samples, "lost",
                            (json_int_t)s->lost);
    json_object_set_new(isa, "by_function", class_shares(s->by_func, s->samples));
    json_object_set_new(isa, "by_block", class_shares(s->by_block, s->samples));
    json_object_set_new(isa, "spin_share", json_real(s->samples ? 100.0 * (double)s->spin / (double)s->samples : 0.0));
    json_object_set_new(isa, "by_function_busy", class_shares(s->busy_by_func, s->samples - s->spin));
    /* A workload that never ran user code (sleep, true) leaves no thread: threads is NULL. */
    if (s->nthreads > 1)
        qsort(s->threads, s->nthreads, sizeof *s->threads, thread_cmp);
    json_t *threads = json_array();
    for (size_t i = 0; i < s->nthreads; i++) {
        const thread_tally *t = &s->threads[i];
        json_t *o = json_pack("{s:i,s:i,s:s,s:I,s:f}", "pid", (int)t->pid, "tid", (int)t->tid, "comm", t->comm,
                              "samples", (json_int_t)t->samples, "cpu_s",
                              (double)t->samples * (double)s->attr.sample_period * 1e-9);
        json_object_set_new(o, "by_function", class_shares(t->by_func, t->samples));
        json_object_set_new(o, "by_block", class_shares(t->by_block, t->samples));
        json_object_set_new(o, "spin_share", json_real(t->samples ? 100.0 * (double)t->spin / (double)t->samples : 0.0));
        json_array_append_new(threads, o);
    }
    json_object_set_new(isa, "threads", threads);
    if (s->nph) {
        json_t *phases = json_object();
        for (unsigned p = 0; p < s->nph; p++) {
            json_t *o = json_pack("{s:I}", "samples", (json_int_t)s->ph[p].samples);
            json_object_set_new(o, "by_function", class_shares(s->ph[p].by_func, s->ph[p].samples));
            json_object_set_new(o, "by_block", class_shares(s->ph[p].by_block, s->ph[p].samples));
            const phase_tally *ph = &s->ph[p];
            json_object_set_new(o, "spin_share",
                                json_real(ph->samples ? 100.0 * (double)ph->spin / (double)ph->samples : 0.0));
            json_object_set_new(o, "by_function_busy", class_shares(ph->busy_by_func, ph->samples - ph->spin));
            json_object_set_new(phases, s->ph[p].name, o);
        }
        json_object_set_new(isa, "phases", phases);
    }
    adg_error_free(adg_record_set_section(ctx->record, "isa_share", isa));

    json_t *hot = hot_functions(ctx, s);
    /* the live view ends on exactly what the record holds */
    adg_bus_snapshot_put(ctx->bus, "hot_functions", json_incref(hot));
    adg_error_free(adg_record_set_section(ctx->record, "hot_functions", hot));

    for (size_t i = 0; i < prof_resolver_nbad(s->res); i++) {
        const char *path, *why;
        if (prof_resolver_bad(s->res, i, &path, &why)) {
            char what[600];
            snprintf(what, sizeof what, "symbols of %s", path);
            adg_bus_unavailable(ctx->bus, COLLECTOR, what, why);
        }
    }
    if (s->lost) {
        char why[160];
        snprintf(why, sizeof why, "%llu samples were lost (ring overflow); shares are from the rest",
                 (unsigned long long)s->lost);
        adg_bus_unavailable(ctx->bus, COLLECTOR, "some samples", why);
    }
}

const prof_collector prof_sampler_collector = {
    .name = COLLECTOR,
    .sets = PROF_SET_SAMPLING,
    .open = sampler_open,
    .sample = sampler_sample,
    .finish = sampler_finish,
    .close = sampler_close,
};

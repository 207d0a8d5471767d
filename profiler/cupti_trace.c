/* The GPU trace model: launch ring, kernel summaries, copies, allocations, errors, buckets. */
#include "profiler/cupti_trace.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_log.h"
#include "common/adg_util.h"
#include "kernels/cuda/cuda_driver.h"
#include "profiler/crash_analyze.h"
#include "profiler/cupti_range.h"

typedef struct ring_entry {
    cupti_launch_rec rec;
    char *name;
    bool completed;
    const char *completed_by;
    uint64_t start_ns, end_ns;
} ring_entry;

typedef struct kstat {
    char *name;        /* as CUPTI gave it (mangled) */
    char *demangled;
    uint64_t count;
    double total_ns, min_ns, max_ns;
    double *dur;       /* up to KSTAT_KEEP durations, for the median */
    size_t n_dur, cap_dur;
    int32_t grid[3], block[3];
    uint32_t regs, static_smem, dynamic_smem;
    uint64_t untimed;  /* records without timestamps (CUPTI could not read them after a fault) */
    /* --gpu-metrics: Range Profiler values of its launches (KMETRIC records). */
    uint64_t m_ranges;
    double m_sum[CUPTI_RM_COUNT];  /* additive roles: duration, bytes */
    double m_wsum[CUPTI_RM_COUNT]; /* percentages, weighted by the range's duration */
    double m_wdur[CUPTI_RM_COUNT];
    uint32_t m_present;
    double m_peak_Bps;
    double m_best_Bps;             /* the launch that moved bytes fastest (shapes differ per launch) */
} kstat;
#define KSTAT_KEEP 65536

typedef struct alloc_entry {
    uint64_t ptr, bytes, t_ns;
    bool freed;
} alloc_entry;

typedef struct api_err {
    cupti_api_error_rec rec;
    char *api;
} api_err;
#define MAX_ERRORS 64

typedef struct bucket {
    double busy_ns[CUPTI_TRACE_MAX_DEVICES];
    double h2d, d2h;
    uint32_t launches;
} bucket;

typedef struct copy_stat {
    uint64_t count, bytes;
    double ns;
} copy_stat;

/* One host-device copy, kept to tell the copies made before the first kernel ran (a
 * program's setup: the weights going up) from those made while it computed. */
typedef struct copy_span {
    uint64_t start_ns, end_ns, bytes;
} copy_span;

struct cupti_trace {
    pthread_mutex_t lock;
    uint64_t interval_ns, base_ns;
    ring_entry *ring;
    size_t ring_cap, ring_head, ring_n; /* head: next slot */
    kstat *ks;
    size_t n_ks, cap_ks;
    size_t *ks_hash;                    /* open addressing: index+1, 0 empty */
    size_t hash_cap;
    alloc_entry *allocs;
    size_t n_allocs, cap_allocs;
    api_err errors[MAX_ERRORS];
    size_t n_errors;
    long fatal;                         /* index into errors, -1 none */
    bucket *buckets;
    size_t n_buckets;
    size_t published;                   /* buckets published so far */
    copy_stat copies[6];
    copy_span *spans;                   /* every host-device copy (kinds 1-2) */
    size_t n_spans, cap_spans;
    uint64_t first_kernel_ns;           /* the earliest kernel start seen, 0 none */
    copy_stat memsets;
    char **notes;
    uint32_t *note_codes;
    size_t n_notes;
    cupti_hello_rec hello;
    cupti_trace_counts counts;
    bool blocking;                      /* the process ran with CUDA_LAUNCH_BLOCKING=1 */
    bool devices_seen[CUPTI_TRACE_MAX_DEVICES];
    /* The last cuMemGetInfo per device (MEMINFO records). */
    bool mem_seen[CUPTI_TRACE_MAX_DEVICES];
    uint64_t mem_used[CUPTI_TRACE_MAX_DEVICES], mem_total[CUPTI_TRACE_MAX_DEVICES];
    int m_busy, m_h2d, m_d2h, m_launch, m_ktime, m_mem_used, m_mem_total, m_errors;
    bool registered;
    /* --gpu-metrics */
    bool mconfig_seen;
    cupti_mconfig_rec mconfig;
    bool mstats_seen;
    cupti_mstats_rec mstats;
    char chip[64];
    uint64_t kmetrics, kmetrics_unnamed;
    double peak_Bps;
};

cupti_trace *cupti_trace_new(unsigned ring, uint64_t interval_ns, uint64_t base_ns)
{
    cupti_trace *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ring_cap = ring ? ring : CUPTI_TRACE_RING_DEFAULT;
    t->ring = calloc(t->ring_cap, sizeof *t->ring);
    if (!t->ring) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->interval_ns = interval_ns ? interval_ns : 100000000ull;
    t->base_ns = base_ns;
    t->fatal = -1;
    t->m_busy = t->m_h2d = t->m_d2h = t->m_launch = t->m_ktime = -1;
    t->m_mem_used = t->m_mem_total = t->m_errors = -1;
    return t;
}

void cupti_trace_free(cupti_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ring_cap; i++)
        free(t->ring[i].name);
    free(t->ring);
    for (size_t i = 0; i < t->n_ks; i++) {
        free(t->ks[i].name);
        free(t->ks[i].demangled);
        free(t->ks[i].dur);
    }
    free(t->ks);
    free(t->spans);
    free(t->ks_hash);
    free(t->allocs);
    for (size_t i = 0; i < t->n_errors; i++)
        free(t->errors[i].api);
    free(t->buckets);
    for (size_t i = 0; i < t->n_notes; i++)
        free(t->notes[i]);
    free(t->notes);
    free(t->note_codes);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- demangling ---- */

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

static demangle_fn demangler;
static void demangler_init(void)
{
    void *sym = dlsym(RTLD_DEFAULT, "__cxa_demangle");
    if (!sym) {
        void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        if (h)
            sym = dlsym(h, "__cxa_demangle"); /* the handle stays open for the process's life */
    }
    memcpy(&demangler, &sym, sizeof sym);
}

char *cupti_demangle(const char *name)
{
    if (!name)
        return strdup("?");
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, demangler_init);
    if (demangler && name[0] == '_' && name[1] == 'Z') {
        int status = -1;
        char *d = demangler(name, NULL, NULL, &status);
        if (d && status == 0)
            return d;
        free(d);
    }
    return strdup(name);
}

/* ---- time buckets ---- */

static uint64_t rel(cupti_trace *t, uint64_t mono)
{
    return mono > t->base_ns ? mono - t->base_ns : 0;
}

static bucket *bucket_at(cupti_trace *t, uint64_t rel_ns)
{
    size_t i = (size_t)(rel_ns / t->interval_ns);
    if (i > 10000000)
        return NULL; /* a bogus timestamp must not allocate gigabytes */
    if (i >= t->n_buckets) {
        size_t n = t->n_buckets ? t->n_buckets : 64;
        while (n <= i)
            n *= 2;
        bucket *nb = realloc(t->buckets, n * sizeof *nb);
        if (!nb)
            return NULL;
        memset(nb + t->n_buckets, 0, (n - t->n_buckets) * sizeof *nb);
        t->buckets = nb;
        t->n_buckets = n;
    }
    return &t->buckets[i];
}

/* Spreads an interval's duration (or bytes, by share of time) over the buckets it covers. */
static void spread(cupti_trace *t, uint64_t start, uint64_t end, int device, double bytes, int copy_kind)
{
    uint64_t s = rel(t, start), e = rel(t, end);
    if (e < s)
        e = s;
    double len = (double)(e - s);
    for (uint64_t b0 = s - s % t->interval_ns; b0 <= e; b0 += t->interval_ns) {
        bucket *b = bucket_at(t, b0);
        if (!b)
            return;
        uint64_t lo = s > b0 ? s : b0, hi = e < b0 + t->interval_ns ? e : b0 + t->interval_ns;
        double part = hi > lo ? (double)(hi - lo) : 0;
        double share = len > 0 ? part / len : 1.0;
        if (device >= 0 && device < CUPTI_TRACE_MAX_DEVICES)
            b->busy_ns[device] += part;
        if (copy_kind == CUPTI_COPY_HTOD)
            b->h2d += bytes * share;
        else if (copy_kind == CUPTI_COPY_DTOH)
            b->d2h += bytes * share;
        if (len == 0)
            break;
    }
}

/* ---- records ---- */

static kstat *kstat_get(cupti_trace *t, const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    if (t->hash_cap) {
        for (size_t i = h % t->hash_cap;; i = (i + 1) % t->hash_cap) {
            size_t v = t->ks_hash[i];
            if (!v)
                break;
            if (!strcmp(t->ks[v - 1].name, name))
                return &t->ks[v - 1];
        }
    }
    if (t->n_ks + 1 > t->hash_cap / 2) {
        size_t nc = t->hash_cap ? t->hash_cap * 2 : 256;
        size_t *nh = calloc(nc, sizeof *nh);
        if (!nh)
            return NULL;
        for (size_t k = 0; k < t->n_ks; k++) {
            uint64_t hk = 1469598103934665603ull;
            for (const char *p = t->ks[k].name; *p; p++)
                hk = (hk ^ (unsigned char)*p) * 1099511628211ull;
            size_t i = hk % nc;
            while (nh[i])
                i = (i + 1) % nc;
            nh[i] = k + 1;
        }
        free(t->ks_hash);
        t->ks_hash = nh;
        t->hash_cap = nc;
    }
    if (t->n_ks == t->cap_ks) {
        size_t nc = t->cap_ks ? t->cap_ks * 2 : 64;
        kstat *nk = realloc(t->ks, nc * sizeof *nk);
        if (!nk)
            return NULL;
        t->ks = nk;
        t->cap_ks = nc;
    }
    kstat *k = &t->ks[t->n_ks];
    memset(k, 0, sizeof *k);
    k->name = strdup(name);
    k->demangled = cupti_demangle(name);
    if (!k->name || !k->demangled) {
        free(k->name);
        free(k->demangled);
        return NULL;
    }
    size_t i = h % t->hash_cap;
    while (t->ks_hash[i])
        i = (i + 1) % t->hash_cap;
    t->ks_hash[i] = ++t->n_ks;
    return k;
}

static ring_entry *ring_at(cupti_trace *t, size_t i) /* i-th oldest */
{
    size_t start = (t->ring_head + t->ring_cap - t->ring_n) % t->ring_cap;
    return &t->ring[(start + i) % t->ring_cap];
}

static void on_kernel(cupti_trace *t, const cupti_frame *f)
{
    const cupti_kernel_rec *r = &f->u.kernel;
    t->counts.kernels++;
    /* After a fault CUPTI still delivers the records it held, timestamps zero: such a
     * record says the kernel was launched, not that it ran. */
    bool timed = r->start_ns && r->end_ns >= r->start_ns;
    double d = timed ? (double)(r->end_ns - r->start_ns) : 0;
    if (timed && (!t->first_kernel_ns || r->start_ns < t->first_kernel_ns)) {
        t->first_kernel_ns = r->start_ns;
        /* Only copies that ended before the first kernel are kept (setup), so the list
         * stays as long as the setup, not the run. */
        size_t n = 0;
        for (size_t i = 0; i < t->n_spans; i++)
            if (t->spans[i].end_ns <= t->first_kernel_ns)
                t->spans[n++] = t->spans[i];
        t->n_spans = n;
    }
    kstat *k = kstat_get(t, f->name_len ? f->name : "?");
    if (k && !timed) {
        k->untimed++;
        t->counts.untimed++;
        return;
    }
    if (k) {
        if (!k->count || d < k->min_ns)
            k->min_ns = d;
        if (d > k->max_ns)
            k->max_ns = d;
        k->count++;
        k->total_ns += d;
        if (k->n_dur < KSTAT_KEEP && adg_grow(&k->dur, &k->cap_dur, k->n_dur, sizeof *k->dur, 16))
            k->dur[k->n_dur++] = d;
        memcpy(k->grid, r->grid, sizeof k->grid);
        memcpy(k->block, r->block, sizeof k->block);
        k->regs = r->regs;
        k->static_smem = r->static_smem;
        k->dynamic_smem = r->dynamic_smem;
    }
    int dev = r->device < CUPTI_TRACE_MAX_DEVICES ? (int)r->device : -1;
    if (dev >= 0)
        t->devices_seen[dev] = true;
    spread(t, r->start_ns, r->end_ns, dev, 0, -1);

    /* Completion evidence for the launch ring: by correlation id, else the oldest launch
     * of the same kernel and shape that is still open (runtime and driver launches carry
     * different correlation ids). */
    ring_entry *match = NULL;
    for (size_t i = 0; i < t->ring_n && !match; i++) {
        ring_entry *e = ring_at(t, i);
        if (e->rec.correlation == r->correlation && r->correlation)
            match = e;
    }
    for (size_t i = 0; i < t->ring_n && !match; i++) {
        ring_entry *e = ring_at(t, i);
        if (!e->completed && e->name && f->name_len && !strcmp(e->name, f->name) &&
            e->rec.grid[0] == (uint32_t)r->grid[0] && e->rec.block[0] == (uint32_t)r->block[0])
            match = e;
    }
    if (match) {
        match->completed = true;
        match->completed_by = "activity";
        match->start_ns = r->start_ns;
        match->end_ns = r->end_ns;
    }
}

/* The DRAM peak of a range: peak bytes per DRAM cycle x DRAM cycles per second. */
static double range_peak_Bps(const cupti_kmetric_rec *r)
{
    uint32_t need = (1u << CUPTI_RM_DRAM_PEAK_BPC) | (1u << CUPTI_RM_DRAM_CPS);
    return (r->present & need) == need ? r->v[CUPTI_RM_DRAM_PEAK_BPC] * r->v[CUPTI_RM_DRAM_CPS] : 0;
}

static void on_kmetric(cupti_trace *t, const cupti_frame *f)
{
    const cupti_kmetric_rec *r = &f->u.kmetric;
    t->kmetrics++;
    t->counts.kmetrics++;
    bool named = f->name_len && strcmp(f->name, "<unnamed>") && strcmp(f->name, "<CUDA graph kernel>");
    if (!named)
        t->kmetrics_unnamed++;
    kstat *k = kstat_get(t, f->name_len ? f->name : "<unnamed>");
    if (!k)
        return;
    k->m_ranges++;
    double dur = (r->present & (1u << CUPTI_RM_DURATION)) ? r->v[CUPTI_RM_DURATION] : 0;
    for (unsigned role = 0; role < CUPTI_RM_COUNT; role++) {
        if (!(r->present & (1u << role)))
            continue;
        k->m_present |= 1u << role;
        switch (role) {
        case CUPTI_RM_DURATION:
        case CUPTI_RM_DRAM_READ:
        case CUPTI_RM_DRAM_WRITE:
            k->m_sum[role] += r->v[role];
            break;
        default:
            /* A zero-length range still counts, with a tiny weight. */
            k->m_wsum[role] += r->v[role] * (dur > 0 ? dur : 1e-3);
            k->m_wdur[role] += dur > 0 ? dur : 1e-3;
            break;
        }
    }
    uint32_t rw = (1u << CUPTI_RM_DRAM_READ) | (1u << CUPTI_RM_DRAM_WRITE);
    if ((r->present & rw) == rw && dur > 0) {
        double bps = (r->v[CUPTI_RM_DRAM_READ] + r->v[CUPTI_RM_DRAM_WRITE]) / (dur * 1e-9);
        if (bps > k->m_best_Bps)
            k->m_best_Bps = bps;
    }
    double peak = range_peak_Bps(r);
    if (peak > k->m_peak_Bps)
        k->m_peak_Bps = peak;
    if (peak > t->peak_Bps)
        t->peak_Bps = peak;
}

static void on_launch(cupti_trace *t, const cupti_frame *f)
{
    t->counts.launches++;
    ring_entry *e = &t->ring[t->ring_head];
    free(e->name);
    memset(e, 0, sizeof *e);
    e->rec = f->u.launch;
    e->name = strdup(f->name_len ? f->name : (f->u.launch.api == CUPTI_LAUNCH_GRAPH ? "<graph launch>" : "?"));
    t->ring_head = (t->ring_head + 1) % t->ring_cap;
    if (t->ring_n < t->ring_cap)
        t->ring_n++;
    bucket *b = bucket_at(t, rel(t, f->u.launch.t_ns));
    if (b)
        b->launches++;
}

static void on_sync(cupti_trace *t, const cupti_frame *f)
{
    t->counts.syncs++;
    for (size_t i = 0; i < t->ring_n; i++) {
        ring_entry *e = ring_at(t, i);
        if (e->completed || e->rec.t_ns >= f->u.sync.t_ns)
            continue;
        if (f->u.sync.all || e->rec.stream == f->u.sync.stream) {
            e->completed = true;
            e->completed_by = "sync";
        }
    }
}

static void on_alloc(cupti_trace *t, const cupti_frame *f)
{
    t->counts.allocs++;
    /* The same pointer reported twice (runtime call and the driver call inside it). */
    for (size_t i = t->n_allocs; i-- > 0;)
        if (t->allocs[i].ptr == f->u.alloc.ptr && !t->allocs[i].freed)
            return;
    if (t->n_allocs == t->cap_allocs) {
        if (t->n_allocs >= 1000000) {
            /* Drop freed entries before growing further. */
            size_t w = 0;
            for (size_t i = 0; i < t->n_allocs; i++)
                if (!t->allocs[i].freed)
                    t->allocs[w++] = t->allocs[i];
            t->n_allocs = w;
        }
        if (t->n_allocs == t->cap_allocs) {
            size_t nc = t->cap_allocs ? t->cap_allocs * 2 : 256;
            alloc_entry *na = realloc(t->allocs, nc * sizeof *na);
            if (!na)
                return;
            t->allocs = na;
            t->cap_allocs = nc;
        }
    }
    t->allocs[t->n_allocs++] = (alloc_entry){f->u.alloc.ptr, f->u.alloc.bytes, f->u.alloc.t_ns, false};
}

static void on_free(cupti_trace *t, const cupti_frame *f)
{
    t->counts.frees++;
    for (size_t i = t->n_allocs; i-- > 0;)
        if (t->allocs[i].ptr == f->u.free.ptr && !t->allocs[i].freed) {
            t->allocs[i].freed = true;
            return;
        }
}

static void on_error(cupti_trace *t, const cupti_frame *f)
{
    t->counts.api_errors++;
    if (t->n_errors < MAX_ERRORS) {
        api_err *e = &t->errors[t->n_errors];
        e->rec = f->u.api_error;
        e->api = strdup(f->name_len ? f->name : "?");
        if (t->fatal < 0 && crash_error_is_fatal(f->u.api_error.result)) {
            t->fatal = (long)t->n_errors;
            t->counts.fatal = true;
        }
        t->n_errors++;
    } else if (t->fatal < 0 && crash_error_is_fatal(f->u.api_error.result)) {
        /* Keep the first fatal error even past the cap: it is the one that matters. */
        api_err *e = &t->errors[MAX_ERRORS - 1];
        free(e->api);
        e->rec = f->u.api_error;
        e->api = strdup(f->name_len ? f->name : "?");
        t->fatal = MAX_ERRORS - 1;
        t->counts.fatal = true;
    }
}

static void on_note(cupti_trace *t, const cupti_frame *f)
{
    if (f->u.note.code == CUPTI_NOTE_METRICS_STEP) {
        /* Not a note for the record: only the last one matters, when no session and no
         * reason follow (the process died inside that call). */
        t->counts.metrics_steps++;
        snprintf(t->counts.metrics_last_step, sizeof t->counts.metrics_last_step, "%.*s",
                 (int)(f->name_len < 63 ? f->name_len : 63), f->name_len ? f->name : "");
        return;
    }
    t->counts.notes++;
    char **nn = realloc(t->notes, (t->n_notes + 1) * sizeof *nn);
    if (!nn)
        return;
    t->notes = nn;
    uint32_t *nc = realloc(t->note_codes, (t->n_notes + 1) * sizeof *nc);
    if (!nc)
        return;
    t->note_codes = nc;
    t->notes[t->n_notes] = strdup(f->name_len ? f->name : "");
    t->note_codes[t->n_notes] = f->u.note.code;
    if (f->u.note.code == CUPTI_NOTE_NO_METRICS)
        t->counts.metrics_notes++;
    if (t->notes[t->n_notes])
        t->n_notes++;
}

void cupti_trace_frame(void *trace, const cupti_frame *f)
{
    cupti_trace *t = trace;
    pthread_mutex_lock(&t->lock);
    switch (f->type) {
    case CUPTI_REC_HELLO:
        t->hello = f->u.hello;
        t->counts.hello = true;
        t->blocking = (f->u.hello.flags & 4) != 0;
        break;
    case CUPTI_REC_KERNEL:
        on_kernel(t, f);
        break;
    case CUPTI_REC_MEMCPY: {
        const cupti_memcpy_rec *m = &f->u.memcpy;
        uint32_t k = m->kind < 6 ? m->kind : 0;
        t->counts.memcpys++;
        t->copies[k].count++;
        t->copies[k].bytes += m->bytes;
        t->copies[k].ns += m->end_ns > m->start_ns ? (double)(m->end_ns - m->start_ns) : 0;
        if ((k == 1 || k == 2) && m->start_ns && m->end_ns >= m->start_ns &&
            (!t->first_kernel_ns || m->end_ns <= t->first_kernel_ns) &&
            adg_grow(&t->spans, &t->cap_spans, t->n_spans, sizeof *t->spans, 256))
            t->spans[t->n_spans++] = (copy_span){m->start_ns, m->end_ns, m->bytes};
        int dev = m->device < CUPTI_TRACE_MAX_DEVICES ? (int)m->device : -1;
        spread(t, m->start_ns, m->end_ns, -1, (double)m->bytes, (int)k);
        (void)dev;
        break;
    }
    case CUPTI_REC_MEMSET:
        t->counts.memsets++;
        t->memsets.count++;
        t->memsets.bytes += f->u.memset.bytes;
        t->memsets.ns += f->u.memset.end_ns > f->u.memset.start_ns
                             ? (double)(f->u.memset.end_ns - f->u.memset.start_ns)
                             : 0;
        break;
    case CUPTI_REC_SYNC:
        on_sync(t, f);
        break;
    case CUPTI_REC_LAUNCH:
        on_launch(t, f);
        break;
    case CUPTI_REC_API_ERROR:
        on_error(t, f);
        break;
    case CUPTI_REC_ALLOC:
        on_alloc(t, f);
        break;
    case CUPTI_REC_FREE:
        on_free(t, f);
        break;
    case CUPTI_REC_NOTE:
        on_note(t, f);
        break;
    case CUPTI_REC_MEMINFO:
        t->counts.meminfos++;
        if (f->u.meminfo.device < CUPTI_TRACE_MAX_DEVICES) {
            uint32_t d = f->u.meminfo.device;
            t->mem_seen[d] = true;
            t->mem_total[d] = f->u.meminfo.total_bytes;
            t->mem_used[d] = f->u.meminfo.total_bytes - f->u.meminfo.free_bytes; /* the parser checked free <= total */
        }
        break;
    case CUPTI_REC_KMETRIC:
        on_kmetric(t, f);
        break;
    case CUPTI_REC_MCONFIG:
        t->mconfig_seen = true;
        t->counts.mconfig = true;
        t->mconfig = f->u.mconfig;
        snprintf(t->chip, sizeof t->chip, "%s", f->name_len ? f->name : "?");
        break;
    case CUPTI_REC_MSTATS:
        t->mstats_seen = true;
        t->mstats = f->u.mstats;
        break;
    case CUPTI_REC_FLUSH:
        t->counts.flushes++;
        t->counts.last_flush_reason = f->u.flush.reason;
        t->counts.dropped = f->u.flush.dropped;
        break;
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- bus ---- */

void cupti_trace_register(cupti_trace *t, adg_bus *bus, const char *collector)
{
    static const adg_metric_def defs[] = {
        {"gpu.busy", "%", ADG_SCOPE_GPU, "share of the interval the GPU ran kernels (summed kernel time, capped at 100)"},
        {"gpu.h2d_bw", "B/s", ADG_SCOPE_PROCESS, "host-to-device copy bandwidth of the profiled process"},
        {"gpu.d2h_bw", "B/s", ADG_SCOPE_PROCESS, "device-to-host copy bandwidth of the profiled process"},
        {"gpu.launches", "ops/s", ADG_SCOPE_PROCESS, "kernel launches per second (callback API)"},
        {"gpu.kernel_time", "s", ADG_SCOPE_KERNEL, "total GPU time of each kernel so far"},
        {"gpu.mem_used", "B", ADG_SCOPE_GPU, "device memory in use on the GPU, all processes (cuMemGetInfo total - free)"},
        {"gpu.mem_total", "B", ADG_SCOPE_GPU, "device memory of the GPU (cuMemGetInfo total)"},
        {"gpu.errors", "count", ADG_SCOPE_PROCESS, "CUDA calls of the profiled process that returned an error so far"},
    };
    int *ids[] = {&t->m_busy, &t->m_h2d, &t->m_d2h, &t->m_launch, &t->m_ktime, &t->m_mem_used, &t->m_mem_total,
                  &t->m_errors};
    for (size_t i = 0; i < ADG_ARRAY_LEN(defs); i++) {
        /* A metric another collector registered first stays its own: NVML's device
         * memory (sampled every interval, the tracer's only when the program calls CUDA). */
        int prev = adg_bus_find(bus, defs[i].name);
        adg_metric_def pd;
        const char *owner = NULL;
        if (prev >= 0 && adg_bus_metric(bus, (size_t)prev, &pd, &owner) && owner && strcmp(owner, collector)) {
            *ids[i] = -1;
            continue;
        }
        adg_error *e = adg_bus_register(bus, collector, &defs[i], ids[i]);
        if (e) {
            adg_warn("cannot register %s: %s", defs[i].name, adg_error_msg(e));
            adg_error_free(e);
            *ids[i] = -1;
        }
    }
    t->registered = true;
}

void cupti_trace_publish(cupti_trace *t, adg_bus *bus, uint64_t now_ns, uint64_t lag_ns, bool final)
{
    if (!t->registered)
        return;
    pthread_mutex_lock(&t->lock);
    size_t upto;
    if (final) {
        upto = (size_t)(now_ns / t->interval_ns) + 1;
        if (upto > t->n_buckets)
            upto = t->n_buckets;
        /* Buckets past the end of the run hold nothing worth a sample. */
    } else {
        upto = now_ns > lag_ns ? (size_t)((now_ns - lag_ns) / t->interval_ns) : 0;
        if (upto > t->n_buckets)
            upto = t->n_buckets;
    }
    double secs = (double)t->interval_ns * 1e-9;
    for (size_t i = t->published; i < upto; i++) {
        bucket *b = &t->buckets[i];
        uint64_t ts = (uint64_t)(i + 1) * t->interval_ns;
        for (int d = 0; d < CUPTI_TRACE_MAX_DEVICES; d++) {
            if (!t->devices_seen[d] || t->m_busy < 0)
                continue;
            char inst[16];
            snprintf(inst, sizeof inst, "gpu%d", d);
            double busy = b->busy_ns[d] / (double)t->interval_ns * 100.0;
            adg_bus_sample(bus, t->m_busy, inst, ts, busy > 100 ? 100 : busy);
        }
        if (t->m_h2d >= 0)
            adg_bus_sample(bus, t->m_h2d, NULL, ts, b->h2d / secs);
        if (t->m_d2h >= 0)
            adg_bus_sample(bus, t->m_d2h, NULL, ts, b->d2h / secs);
        if (t->m_launch >= 0)
            adg_bus_sample(bus, t->m_launch, NULL, ts, b->launches / secs);
    }
    if (upto > t->published)
        t->published = upto;
    /* Memory and errors are states, not per-bucket sums: the latest value at each publish. */
    for (int d = 0; d < CUPTI_TRACE_MAX_DEVICES; d++) {
        if (!t->mem_seen[d])
            continue;
        char inst[16];
        snprintf(inst, sizeof inst, "gpu%d", d);
        if (t->m_mem_used >= 0)
            adg_bus_sample(bus, t->m_mem_used, inst, now_ns, (double)t->mem_used[d]);
        if (t->m_mem_total >= 0)
            adg_bus_sample(bus, t->m_mem_total, inst, now_ns, (double)t->mem_total[d]);
    }
    if (t->m_errors >= 0 && t->counts.api_errors)
        adg_bus_sample(bus, t->m_errors, NULL, now_ns, (double)t->counts.api_errors);
    if (final && t->m_ktime >= 0) {
        uint64_t ts = now_ns;
        for (size_t i = 0; i < t->n_ks; i++)
            adg_bus_sample(bus, t->m_ktime, t->ks[i].demangled, ts, t->ks[i].total_ns * 1e-9);
    }
    pthread_mutex_unlock(&t->lock);
}

cupti_trace_counts cupti_trace_get_counts(cupti_trace *t)
{
    pthread_mutex_lock(&t->lock);
    cupti_trace_counts c = t->counts;
    pthread_mutex_unlock(&t->lock);
    return c;
}

/* ---- sections ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_total_desc(const void *a, const void *b)
{
    const kstat *x = *(const kstat *const *)a, *y = *(const kstat *const *)b;
    return x->total_ns < y->total_ns ? 1 : x->total_ns > y->total_ns ? -1 : 0;
}

/* A kernel's --gpu-metrics summary: sums of its profiled launches, percentages
 * weighted by each launch's profiled duration. */
static json_t *kmetric_json(const kstat *k, double peak_Bps)
{
    json_t *m = json_object();
    double dur = k->m_sum[CUPTI_RM_DURATION];
    json_object_set_new(m, "ranges", json_integer((json_int_t)k->m_ranges));
    if (k->m_present & (1u << CUPTI_RM_DURATION)) {
        json_object_set_new(m, "duration_s", json_real(dur * 1e-9));
        json_object_set_new(m, "mean_us", json_real(dur / (double)k->m_ranges * 1e-3));
    }
    bool rd = k->m_present & (1u << CUPTI_RM_DRAM_READ), wr = k->m_present & (1u << CUPTI_RM_DRAM_WRITE);
    if (rd)
        json_object_set_new(m, "dram_read_bytes", json_real(k->m_sum[CUPTI_RM_DRAM_READ]));
    if (wr)
        json_object_set_new(m, "dram_write_bytes", json_real(k->m_sum[CUPTI_RM_DRAM_WRITE]));
    double bytes = k->m_sum[CUPTI_RM_DRAM_READ] + k->m_sum[CUPTI_RM_DRAM_WRITE];
    if (rd && wr)
        json_object_set_new(m, "dram_bytes_per_launch", json_real(bytes / (double)k->m_ranges));
    if ((rd || wr) && dur > 0) {
        double bps = bytes / (dur * 1e-9);
        json_object_set_new(m, "dram_Bps", json_real(bps));
        double peak = k->m_peak_Bps > 0 ? k->m_peak_Bps : peak_Bps;
        if (peak > 0)
            json_object_set_new(m, "dram_pct_of_peak_bytes", json_real(100.0 * bps / peak));
    }
    if (k->m_best_Bps > 0)
        json_object_set_new(m, "dram_Bps_max", json_real(k->m_best_Bps));
    static const unsigned pct_roles[] = {CUPTI_RM_DRAM_PCT, CUPTI_RM_SM_PCT, CUPTI_RM_TENSOR_HMMA_PCT,
                                         CUPTI_RM_TENSOR_IMMA_PCT, CUPTI_RM_TENSOR_GMMA_PCT};
    for (size_t i = 0; i < ADG_ARRAY_LEN(pct_roles); i++) {
        unsigned r = pct_roles[i];
        if ((k->m_present & (1u << r)) && k->m_wdur[r] > 0)
            json_object_set_new(m, cupti_range_role_key(r), json_real(k->m_wsum[r] / k->m_wdur[r]));
    }
    return m;
}

json_t *cupti_trace_kernels_json(cupti_trace *t)
{
    pthread_mutex_lock(&t->lock);
    json_t *o = json_object();
    double all_ns = 0;
    for (size_t i = 0; i < t->n_ks; i++)
        all_ns += t->ks[i].total_ns;
    kstat **order = calloc(t->n_ks ? t->n_ks : 1, sizeof *order);
    json_t *kernels = json_array();
    if (order) {
        for (size_t i = 0; i < t->n_ks; i++)
            order[i] = &t->ks[i];
        qsort(order, t->n_ks, sizeof *order, cmp_total_desc);
        for (size_t i = 0; i < t->n_ks; i++) {
            kstat *k = order[i];
            double med = 0;
            if (k->n_dur) {
                qsort(k->dur, k->n_dur, sizeof *k->dur, cmp_double);
                med = k->n_dur % 2 ? k->dur[k->n_dur / 2] : (k->dur[k->n_dur / 2 - 1] + k->dur[k->n_dur / 2]) / 2;
            }
            json_t *kj = json_pack(
                "{s:s,s:s,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:[i,i,i],s:[i,i,i],s:i,s:i,s:i}", "name", k->demangled,
                "symbol", k->name, "count", (json_int_t)k->count, "total_s", k->total_ns * 1e-9, "mean_us",
                k->count ? k->total_ns / (double)k->count * 1e-3 : 0.0, "median_us", med * 1e-3, "min_us",
                k->min_ns * 1e-3, "max_us", k->max_ns * 1e-3, "share", all_ns > 0 ? k->total_ns / all_ns : 0.0,
                "grid", k->grid[0], k->grid[1], k->grid[2], "block", k->block[0], k->block[1], k->block[2],
                "registers", (int)k->regs, "static_shared_bytes", (int)k->static_smem, "dynamic_shared_bytes",
                (int)k->dynamic_smem);
            if (k->untimed)
                json_object_set_new(kj, "untimed", json_integer((json_int_t)k->untimed));
            /* Every kernel record, timed or not: under --gpu-metrics (kernel replay) CUPTI's
             * kernel records may come without times, and count alone would read 0. */
            json_object_set_new(kj, "launches", json_integer((json_int_t)(k->count + k->untimed)));
            if (k->m_ranges)
                json_object_set_new(kj, "metrics", kmetric_json(k, t->peak_Bps));
            json_array_append_new(kernels, kj);
        }
        free(order);
    }
    json_object_set_new(o, "kernels", kernels);
    json_object_set_new(o, "kernel_time_s", json_real(all_ns * 1e-9));
    json_object_set_new(o, "kernel_count", json_integer((json_int_t)t->counts.kernels));
    json_object_set_new(o, "untimed_records", json_integer((json_int_t)t->counts.untimed));
    json_object_set_new(o, "launches", json_integer((json_int_t)t->counts.launches));

    json_t *copies = json_array();
    for (int k = 0; k < 6; k++) {
        copy_stat *c = &t->copies[k];
        if (!c->count)
            continue;
        json_array_append_new(copies, json_pack("{s:s,s:I,s:I,s:f,s:f}", "kind", cupti_copy_kind_name((uint32_t)k),
                                                "count", (json_int_t)c->count, "bytes", (json_int_t)c->bytes,
                                                "time_s", c->ns * 1e-9, "bytes_per_s",
                                                c->ns > 0 ? (double)c->bytes / (c->ns * 1e-9) : 0.0));
    }
    json_object_set_new(o, "memcpy", copies);
    /* Host-device copies that ended before the first kernel started: setup (a model's
     * weights going up once), not the traffic of the computation.  Without a timed
     * kernel (none ran, or their records came without times) nothing is called setup. */
    if (t->first_kernel_ns) {
        uint64_t n = 0, bytes = 0;
        double ns = 0;
        for (size_t i = 0; i < t->n_spans; i++)
            if (t->spans[i].end_ns <= t->first_kernel_ns) {
                n++;
                bytes += t->spans[i].bytes;
                ns += (double)(t->spans[i].end_ns - t->spans[i].start_ns);
            }
        json_object_set_new(o, "memcpy_before_kernels", json_pack("{s:I,s:I,s:f}", "count", (json_int_t)n, "bytes",
                                                                  (json_int_t)bytes, "time_s", ns * 1e-9));
    }
    json_object_set_new(o, "memset", json_pack("{s:I,s:I,s:f}", "count", (json_int_t)t->memsets.count, "bytes",
                                               (json_int_t)t->memsets.bytes, "time_s", t->memsets.ns * 1e-9));
    json_object_set_new(o, "synchronisations", json_integer((json_int_t)t->counts.syncs));
    json_t *errs = json_array();
    for (size_t i = 0; i < t->n_errors; i++) {
        api_err *e = &t->errors[i];
        json_array_append_new(errs, json_pack("{s:s,s:i,s:s,s:s,s:I,s:I}", "api", e->api ? e->api : "?", "code",
                                              e->rec.result, "domain", e->rec.domain == 2 ? "runtime" : "driver",
                                              "name", kern_cuda_result_name(e->rec.result), "t_ns",
                                              (json_int_t)rel(t, e->rec.t_ns), "after_launch",
                                              (json_int_t)e->rec.launch_seq));
    }
    json_object_set_new(o, "api_errors", errs);
    json_t *notes = json_array();
    for (size_t i = 0; i < t->n_notes; i++)
        json_array_append_new(notes, json_string(t->notes[i]));
    json_object_set_new(o, "notes", notes);
    json_object_set_new(o, "dropped_records", json_integer((json_int_t)t->counts.dropped));
    if (t->mconfig_seen || t->kmetrics) {
        json_t *mm = json_array();
        for (unsigned r = 0; r < CUPTI_RM_COUNT; r++)
            if (t->mconfig.present & (1u << r))
                json_array_append_new(mm, json_string(cupti_range_role_key(r)));
        json_t *gm = json_pack("{s:s,s:s,s:s,s:i,s:i,s:o,s:I,s:I}", "source", "CUPTI Range Profiler", "ranges_are",
                               "one auto range per kernel launch", "replay", "kernel", "passes",
                               (int)t->mconfig.passes, "window", (int)t->mconfig.max_ranges, "collected", mm,
                               "profiled_launches", (json_int_t)t->kmetrics, "unnamed", (json_int_t)t->kmetrics_unnamed);
        if (t->mconfig_seen) {
            json_object_set_new(gm, "chip", json_string(t->chip));
            json_object_set_new(gm, "device", json_integer((json_int_t)t->mconfig.device));
        }
        if (t->peak_Bps > 0)
            json_object_set_new(gm, "dram_peak_Bps", json_real(t->peak_Bps));
        if (t->mstats_seen) {
            /* Which launches were profiled, and what the replay cost the program. */
            const cupti_mstats_rec *m = &t->mstats;
            json_object_set_new(gm, "launches_seen", json_integer((json_int_t)m->seen));
            json_object_set_new(gm, "launches_profiled", json_integer((json_int_t)m->profiled));
            json_object_set_new(gm, "launches_not_profiled", json_integer((json_int_t)(m->seen - m->profiled)));
            json_object_set_new(gm, "sampling",
                                json_pack("{s:i,s:i,s:i,s:i}", "per_kernel", (int)m->per_kernel, "max_launches",
                                          (int)m->max_launches, "skip", (int)m->skip, "toggles", (int)m->toggles));
            json_object_set_new(gm, "replay_s", json_real((double)m->replay_ns / 1e9));
            json_object_set_new(gm, "overhead_s", json_real((double)m->overhead_ns / 1e9));
        }
        json_object_set_new(o, "metrics", gm);
    }
    if (t->counts.hello)
        json_object_set_new(o, "tracer", json_pack("{s:i,s:i,s:i,s:b,s:b}", "pid", (int)t->hello.pid,
                                                   "cupti_version", (int)t->hello.cupti_version, "cuda_version",
                                                   (int)t->hello.cuda_version, "callbacks",
                                                   (t->hello.flags & 1) != 0, "activity", (t->hello.flags & 2) != 0));
    pthread_mutex_unlock(&t->lock);
    return o;
}

json_t *cupti_trace_crash_json(cupti_trace *t)
{
    pthread_mutex_lock(&t->lock);
    if (t->fatal < 0) {
        pthread_mutex_unlock(&t->lock);
        return NULL;
    }
    api_err *fe = &t->errors[t->fatal];
    crash_error err = {fe->rec.result, fe->api, fe->rec.domain == 2 ? "runtime" : "driver", rel(t, fe->rec.t_ns),
                       fe->rec.launch_seq};
    crash_launch *ls = calloc(t->ring_n ? t->ring_n : 1, sizeof *ls);
    char **names = calloc(t->ring_n ? t->ring_n : 1, sizeof *names);
    crash_alloc *as = calloc(t->n_allocs ? t->n_allocs : 1, sizeof *as);
    json_t *out = NULL;
    if (ls && names && as) {
        static const char *const apis[] = {"?", "cuLaunchKernel", "cuLaunchKernelEx", "cuLaunchCooperativeKernel",
                                           "cuGraphLaunch"};
        for (size_t i = 0; i < t->ring_n; i++) {
            ring_entry *e = ring_at(t, i);
            crash_launch *l = &ls[i];
            names[i] = e->name ? cupti_demangle(e->name) : NULL;
            l->seq = e->rec.seq;
            l->kernel = names[i] ? names[i] : "?";
            memcpy(l->grid, e->rec.grid, sizeof l->grid);
            memcpy(l->block, e->rec.block, sizeof l->block);
            l->smem = e->rec.smem;
            l->stream = e->rec.stream;
            l->n_ptr = e->rec.n_ptr < CRASH_MAX_PTRS ? e->rec.n_ptr : CRASH_MAX_PTRS;
            memcpy(l->ptr, e->rec.ptr, sizeof l->ptr);
            l->t_ns = rel(t, e->rec.t_ns);
            l->completed = e->completed;
            l->completed_by = e->completed_by;
            l->start_ns = e->start_ns;
            l->end_ns = e->end_ns;
            l->api = e->rec.api < ADG_ARRAY_LEN(apis) ? apis[e->rec.api] : "?";
        }
        for (size_t i = 0; i < t->n_allocs; i++)
            as[i] = (crash_alloc){t->allocs[i].ptr, t->allocs[i].bytes, t->allocs[i].freed};
        crash_input in = {&err, ls, t->ring_n, t->counts.launches, as, t->n_allocs, NULL, 0, t->blocking};
        out = crash_build(&in);
        json_t *errs = json_array();
        for (size_t i = 0; i < t->n_errors; i++)
            json_array_append_new(errs, json_pack("{s:s,s:i}", "api", t->errors[i].api ? t->errors[i].api : "?",
                                                  "code", t->errors[i].rec.result));
        json_object_set_new(out, "api_errors", errs);
        json_object_set_new(out, "flushed_by",
                            json_string(t->counts.flushes ? cupti_flush_reason_name(t->counts.last_flush_reason)
                                                          : "stream end"));
        for (size_t i = 0; i < t->ring_n; i++)
            free(names[i]);
    }
    free(ls);
    free(names);
    free(as);
    pthread_mutex_unlock(&t->lock);
    return out;
}

void cupti_trace_notes(cupti_trace *t, void (*fn)(void *ctx, uint32_t code, const char *text), void *ctx)
{
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->n_notes; i++)
        fn(ctx, t->note_codes[i], t->notes[i]);
    pthread_mutex_unlock(&t->lock);
}

#include "profiler/prof_resolve.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/adg_util.h"
#include "profiler/prof_elf.h"

typedef struct module {
    char *path;
    prof_elf *elf;   /* NULL when it could not be opened */
    char *why;       /* the reason then */
    int unknown_func; /* index of its "[unknown]" bucket, -1 until used */
} module;

typedef struct pmap {
    uint64_t start, end, pgoff;
    int mod;
} pmap;

typedef struct proc {
    pid_t pid;
    bool loaded;       /* /proc/PID/maps was read (or the process is known from records) */
    unsigned reload_batch; /* batch of the last re-read after a miss */
    pmap *maps;
    size_t n, cap;
} proc;

/* Open-addressing table from a (module, address) key to an int. */
typedef struct slot {
    uint64_t a, b;
    int val;
    bool used;
} slot;
typedef struct table {
    slot *s;
    size_t cap, n;
} table;

struct prof_resolver {
    module *mods;
    size_t nmods, capmods;
    proc *procs;
    size_t nprocs, capprocs;
    prof_func *funcs;
    size_t nfuncs, capfuncs;
    table func_by_sym;     /* (mod, sym addr) -> func */
    table block_by_ip;     /* (mod, vaddr) -> class */
    int anon_func;         /* "[anon]" bucket */
    unsigned batch;        /* prof_resolver_next_batch */
};

void prof_resolver_next_batch(prof_resolver *r)
{
    r->batch++;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static bool table_get(const table *t, uint64_t a, uint64_t b, int *val)
{
    if (!t->cap)
        return false;
    for (size_t i = mix(a, b) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->s[i].used)
            return false;
        if (t->s[i].a == a && t->s[i].b == b) {
            *val = t->s[i].val;
            return true;
        }
    }
}

static bool table_put(table *t, uint64_t a, uint64_t b, int val)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 1024;
        slot *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return false;
        for (size_t i = 0; i < t->cap; i++)
            if (t->s[i].used) {
                size_t j = mix(t->s[i].a, t->s[i].b) & (nc - 1);
                while (ns[j].used)
                    j = (j + 1) & (nc - 1);
                ns[j] = t->s[i];
            }
        free(t->s);
        t->s = ns;
        t->cap = nc;
    }
    size_t i = mix(a, b) & (t->cap - 1);
    while (t->s[i].used && !(t->s[i].a == a && t->s[i].b == b))
        i = (i + 1) & (t->cap - 1);
    if (!t->s[i].used)
        t->n++;
    t->s[i] = (slot){a, b, val, true};
    return true;
}

prof_resolver *prof_resolver_new(void)
{
    prof_resolver *r = calloc(1, sizeof *r);
    if (r)
        r->anon_func = -1;
    return r;
}

void prof_resolver_free(prof_resolver *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nmods; i++) {
        free(r->mods[i].path);
        free(r->mods[i].why);
        prof_elf_close(r->mods[i].elf);
    }
    for (size_t i = 0; i < r->nprocs; i++)
        free(r->procs[i].maps);
    for (size_t i = 0; i < r->nfuncs; i++) {
        free(r->funcs[i].name);
        free(r->funcs[i].module);
    }
    free(r->mods);
    free(r->procs);
    free(r->funcs);
    free(r->func_by_sym.s);
    free(r->block_by_ip.s);
    free(r);
}

static proc *find_proc(prof_resolver *r, pid_t pid, bool create)
{
    for (size_t i = 0; i < r->nprocs; i++)
        if (r->procs[i].pid == pid)
            return &r->procs[i];
    if (!create)
        return NULL;
    if (r->nprocs == r->capprocs) {
        size_t nc = r->capprocs ? r->capprocs * 2 : 16;
        proc *p = realloc(r->procs, nc * sizeof *p);
        if (!p)
            return NULL;
        r->procs = p;
        r->capprocs = nc;
    }
    proc *p = &r->procs[r->nprocs++];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    return p;
}

static int find_module(prof_resolver *r, const char *path)
{
    for (size_t i = 0; i < r->nmods; i++)
        if (!strcmp(r->mods[i].path, path))
            return (int)i;
    if (r->nmods == r->capmods) {
        size_t nc = r->capmods ? r->capmods * 2 : 16;
        module *m = realloc(r->mods, nc * sizeof *m);
        if (!m)
            return -1;
        r->mods = m;
        r->capmods = nc;
    }
    module *m = &r->mods[r->nmods];
    memset(m, 0, sizeof *m);
    m->unknown_func = -1;
    if (!(m->path = strdup(path)))
        return -1;
    /* Pseudo mappings ([vdso], [vsyscall], anonymous JIT code) have no file to read. */
    if (path[0] != '/') {
        m->why = strdup("not backed by a file");
    } else {
        adg_error *e = prof_elf_open(path, &m->elf);
        if (e) {
            m->why = strdup(adg_error_msg(e));
            adg_error_free(e);
        }
    }
    return (int)r->nmods++;
}

static void add_map(proc *p, uint64_t start, uint64_t end, uint64_t pgoff, int mod)
{
    /* A new mapping replaces whatever overlapped it (munmap is not reported). */
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->maps[i].end <= start || p->maps[i].start >= end)
            p->maps[k++] = p->maps[i];
    p->n = k;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 32;
        pmap *m = realloc(p->maps, nc * sizeof *m);
        if (!m)
            return;
        p->maps = m;
        p->cap = nc;
    }
    p->maps[p->n++] = (pmap){start, end, pgoff, mod};
}

void prof_resolver_add_map(prof_resolver *r, pid_t pid, uint64_t start, uint64_t len, uint64_t pgoff,
                           const char *path)
{
    proc *p = find_proc(r, pid, true);
    int mod = find_module(r, path && *path ? path : "[anon]");
    if (!p || mod < 0)
        return;
    p->loaded = true;
    add_map(p, start, start + len, pgoff, mod);
}

void prof_resolver_fork(prof_resolver *r, pid_t parent, pid_t child)
{
    if (parent == child)
        return;
    proc *pp = find_proc(r, parent, false);
    if (!pp)
        return;
    size_t idx = (size_t)(pp - r->procs);
    proc *c = find_proc(r, child, true); /* may move r->procs */
    if (!c)
        return;
    pp = &r->procs[idx];
    c->n = 0;
    for (size_t i = 0; i < pp->n; i++)
        add_map(c, pp->maps[i].start, pp->maps[i].end, pp->maps[i].pgoff, pp->maps[i].mod);
    c->loaded = true;
}

void prof_resolver_exec(prof_resolver *r, pid_t pid)
{
    proc *p = find_proc(r, pid, true);
    if (p) {
        p->n = 0;
        p->loaded = true;
    }
}

adg_error *prof_resolver_load_proc(prof_resolver *r, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    char *data;
    size_t len;
    adg_error *e = adg_read_file(path, 0, &data, &len);
    if (e)
        return e;
    proc *p = find_proc(r, pid, true);
    if (!p) {
        free(data);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    p->loaded = true;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long start, end, off;
        char perms[8];
        int pos = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %*s %*s%n", &start, &end, perms, &off, &pos) < 4 || !strchr(perms, 'x'))
            continue;
        const char *file = line + pos;
        while (*file == ' ')
            file++;
        int mod = find_module(r, *file ? file : "[anon]");
        if (mod >= 0)
            add_map(p, start, end, off, mod);
    }
    free(data);
    return NULL;
}

/* C++ names (llama.cpp and ggml are C++) read better demangled; libstdc++'s demangler has
 * a C ABI and is loaded only if present, so amxdiag itself stays a C program. */
typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);
static demangle_fn demangler;
static pthread_once_t demangler_once = PTHREAD_ONCE_INIT;

static void load_demangler(void)
{
    void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
    if (h)
        demangler = (demangle_fn)dlsym(h, "__cxa_demangle");
}

char *prof_demangle(const char *name)
{
    if (strncmp(name, "_Z", 2))
        return strdup(name);
    pthread_once(&demangler_once, load_demangler);
    int status = -1;
    char *d = demangler ? demangler(name, NULL, NULL, &status) : NULL;
    if (d && status == 0)
        return d;
    free(d);
    return strdup(name);
}

static int new_func(prof_resolver *r, const char *name, const char *module, bool resolved)
{
    if (r->nfuncs == r->capfuncs) {
        size_t nc = r->capfuncs ? r->capfuncs * 2 : 64;
        prof_func *f = realloc(r->funcs, nc * sizeof *f);
        if (!f)
            return -1;
        r->funcs = f;
        r->capfuncs = nc;
    }
    prof_func *f = &r->funcs[r->nfuncs];
    memset(f, 0, sizeof *f);
    f->name = resolved ? prof_demangle(name) : strdup(name);
    f->module = strdup(module);
    if (!f->name || !f->module) {
        free(f->name);
        free(f->module);
        return -1;
    }
    f->resolved = resolved;
    f->cls = PROF_ISA_UNKNOWN;
    return (int)r->nfuncs++;
}

static int unknown_bucket(prof_resolver *r, int mod)
{
    if (mod < 0) {
        if (r->anon_func < 0)
            r->anon_func = new_func(r, "[unknown]", "[anon]", false);
        return r->anon_func;
    }
    module *m = &r->mods[mod];
    if (m->unknown_func < 0) {
        char name[64];
        snprintf(name, sizeof name, "[unknown]");
        m->unknown_func = new_func(r, name, m->path, false);
    }
    return m->unknown_func;
}

/* Bytes before a sampled ip searched for the start of a spin-wait loop around it. */
#define SPIN_BACK 128
#define SPIN_BIT 0x100

/* The class of the block at vaddr and whether it spins, cached per (module, address). */
static prof_isa_class block_class(prof_resolver *r, int mod, const prof_elf *elf, uint64_t vaddr, bool *spin)
{
    int v;
    if (!table_get(&r->block_by_ip, (uint64_t)mod, vaddr, &v)) {
        size_t avail = 0, back = vaddr >= SPIN_BACK ? SPIN_BACK : 0;
        const uint8_t *code = prof_elf_code(elf, vaddr - back, back + 256, &avail);
        if (!code || avail <= back) {   /* the loop's start would lie outside the section */
            back = 0;
            code = prof_elf_code(elf, vaddr, 256, &avail);
        }
        v = code ? (int)prof_isa_classify_block(code + back, avail - back, vaddr, 32) : PROF_ISA_UNKNOWN;
        if (code && prof_isa_spins(code, avail, back, vaddr))
            v |= SPIN_BIT;
        table_put(&r->block_by_ip, (uint64_t)mod, vaddr, v);
    }
    if (spin)
        *spin = (v & SPIN_BIT) != 0;
    return (prof_isa_class)(v & ~SPIN_BIT);
}

int prof_resolver_sample(prof_resolver *r, pid_t pid, uint64_t ip, prof_isa_class *block)
{
    return prof_resolver_sample_ex(r, pid, ip, block, NULL);
}

int prof_resolver_sample_ex(prof_resolver *r, pid_t pid, uint64_t ip, prof_isa_class *block, bool *spin)
{
    *block = PROF_ISA_UNKNOWN;
    if (spin)
        *spin = false;
    proc *p = find_proc(r, pid, false);
    if (!p || !p->loaded) {
        adg_error *e = prof_resolver_load_proc(r, pid);
        adg_error_free(e); /* a process that is gone resolves to the [unknown] bucket */
        p = find_proc(r, pid, false);
    }
    const pmap *hit = NULL;
    for (int attempt = 0; attempt < 2 && !hit; attempt++) {
        for (size_t i = 0; p && i < p->n; i++)
            if (ip >= p->maps[i].start && ip < p->maps[i].end) {
                hit = &p->maps[i];
                break;
            }
        /* A mapping the records missed (lost records, or a process found by its samples
         * only): read /proc/PID/maps again, at most once per batch of samples. */
        if (!hit && p && p->reload_batch != r->batch + 1) {
            p->reload_batch = r->batch + 1;
            adg_error_free(prof_resolver_load_proc(r, pid));
            p = find_proc(r, pid, false);
            if (p)
                p->reload_batch = r->batch + 1;
        } else
            break;
    }
    int fi;
    if (!hit || !r->mods[hit->mod].elf) {
        fi = unknown_bucket(r, hit ? hit->mod : -1);
    } else {
        int mod = hit->mod;
        const prof_elf *elf = r->mods[mod].elf;
        uint64_t vaddr;
        if (!prof_elf_offset_to_vaddr(elf, ip - hit->start + hit->pgoff, &vaddr)) {
            fi = unknown_bucket(r, mod);
        } else {
            *block = block_class(r, mod, elf, vaddr, spin);
            const prof_elf_sym *s = prof_elf_find_sym(elf, vaddr);
            if (!s) {
                fi = unknown_bucket(r, mod);
            } else if (!table_get(&r->func_by_sym, (uint64_t)mod, s->addr, &fi)) {
                fi = new_func(r, s->name, r->mods[mod].path, true);
                if (fi >= 0) {
                    prof_func *f = &r->funcs[fi];
                    size_t avail = 0;
                    /* Cap the bytes decoded: a bogus symbol size must not stall sampling. */
                    const uint8_t *code = prof_elf_code(elf, s->addr, s->size < (1u << 20) ? s->size : (1u << 20), &avail);
                    f->cls = code ? prof_isa_classify(code, avail, s->addr, &f->insns) : PROF_ISA_UNKNOWN;
                    table_put(&r->func_by_sym, (uint64_t)mod, s->addr, fi);
                }
            }
        }
    }
    if (fi < 0)
        return -1;
    r->funcs[fi].samples++;
    r->funcs[fi].block_samples[*block]++;
    return fi;
}

size_t prof_resolver_nfuncs(const prof_resolver *r) { return r->nfuncs; }
const prof_func *prof_resolver_func(const prof_resolver *r, int i) { return &r->funcs[i]; }

size_t prof_resolver_nbad(const prof_resolver *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nmods; i++)
        n += r->mods[i].elf == NULL && r->mods[i].path[0] == '/';
    return n;
}

bool prof_resolver_bad(const prof_resolver *r, size_t i, const char **path, const char **why)
{
    for (size_t k = 0; k < r->nmods; k++) {
        if (r->mods[k].elf || r->mods[k].path[0] != '/')
            continue;
        if (i-- == 0) {
            *path = r->mods[k].path;
            *why = r->mods[k].why ? r->mods[k].why : "unreadable";
            return true;
        }
    }
    return false;
}

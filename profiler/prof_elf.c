#include "profiler/prof_elf.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct seg {
    uint64_t vaddr, offset, filesz;
} seg;

struct prof_elf {
    char *path;
    uint8_t *map;
    size_t map_len;
    seg *segs;
    size_t nsegs;
    prof_elf_sym *syms;   /* sorted by addr, de-duplicated */
    size_t nsyms;
    char *names;          /* all symbol names, back to back */
    bool has_symtab;
};

static int sym_cmp(const void *a, const void *b)
{
    const prof_elf_sym *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    /* Prefer the larger size, then a name without a version or an underscore prefix. */
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Collects the function symbols of one symbol table section. */
static adg_error *collect(prof_elf *m, Elf *elf, Elf_Scn *scn, GElf_Shdr *sh, prof_elf_sym **syms, size_t *n,
                          size_t *cap, size_t *names_len)
{
    Elf_Data *data = elf_getdata(scn, NULL);
    if (!data || !sh->sh_entsize)
        return NULL;
    size_t count = sh->sh_size / sh->sh_entsize;
    for (size_t i = 0; i < count; i++) {
        GElf_Sym s;
        if (!gelf_getsym(data, (int)i, &s))
            continue;
        int type = GELF_ST_TYPE(s.st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || !s.st_value)
            continue;
        const char *name = elf_strptr(elf, sh->sh_link, s.st_name);
        if (!name || !*name)
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            prof_elf_sym *p = realloc(*syms, nc * sizeof *p);
            if (!p)
                return adg_error_new(ADG_E_NOMEM, "out of memory reading the symbols of %s", m->path);
            *syms = p;
            *cap = nc;
        }
        (*syms)[(*n)++] = (prof_elf_sym){s.st_value, s.st_size, name};
        *names_len += strlen(name) + 1;
    }
    return NULL;
}

static adg_error *load(prof_elf *m)
{
    Elf *elf = elf_memory((char *)m->map, m->map_len);
    if (!elf || elf_kind(elf) != ELF_K_ELF || gelf_getclass(elf) != ELFCLASS64) {
        if (elf)
            elf_end(elf);
        return adg_error_new(ADG_E_FORMAT, "%s is not a 64-bit ELF file", m->path);
    }
    adg_error *e = NULL;
    size_t nph = 0;
    if (elf_getphdrnum(elf, &nph) == 0 && nph) {
        m->segs = calloc(nph, sizeof *m->segs);
        if (!m->segs) {
            elf_end(elf);
            return adg_error_new(ADG_E_NOMEM, "out of memory reading %s", m->path);
        }
        for (size_t i = 0; i < nph; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD)
                m->segs[m->nsegs++] = (seg){ph.p_vaddr, ph.p_offset, ph.p_filesz};
        }
    }
    prof_elf_sym *syms = NULL;
    size_t n = 0, cap = 0, names_len = 0;
    Elf_Scn *scn = NULL;
    while (!e && (scn = elf_nextscn(elf, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        if (sh.sh_type == SHT_SYMTAB)
            m->has_symtab = true;
        e = collect(m, elf, scn, &sh, &syms, &n, &cap, &names_len);
    }
    /* Copy the names out so the symbols outlive libelf's handle. */
    if (!e && n) {
        m->names = malloc(names_len);
        if (!m->names)
            e = adg_error_new(ADG_E_NOMEM, "out of memory reading the symbols of %s", m->path);
        else {
            char *p = m->names;
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen(syms[i].name) + 1;
                memcpy(p, syms[i].name, l);
                syms[i].name = p;
                p += l;
            }
            qsort(syms, n, sizeof *syms, sym_cmp);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (!k || syms[i].addr != syms[k - 1].addr)
                    syms[k++] = syms[i];
            n = k;
            /* Symbols without a size (hand-written assembly) extend to the next one. */
            for (size_t i = 0; i < n; i++)
                if (!syms[i].size && i + 1 < n)
                    syms[i].size = syms[i + 1].addr - syms[i].addr;
        }
    }
    elf_end(elf);
    if (e) {
        free(syms);
        return e;
    }
    m->syms = syms;
    m->nsyms = n;
    return NULL;
}

adg_error *prof_elf_open(const char *path, prof_elf **out)
{
    *out = NULL;
    if (elf_version(EV_CURRENT) == EV_NONE)
        return adg_error_new(ADG_E_INTERNAL, "libelf initialisation failed: %s", elf_errmsg(-1));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return adg_error_errno(errno == EACCES ? ADG_E_PERMISSION : ADG_E_IO, errno, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 64) {
        close(fd);
        return adg_error_new(ADG_E_FORMAT, "%s is not a regular ELF file", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return adg_error_errno(ADG_E_IO, errno, "cannot map %s", path);
    prof_elf *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        munmap(map, (size_t)st.st_size);
        return adg_error_new(ADG_E_NOMEM, "out of memory opening %s", path);
    }
    m->map = map;
    m->map_len = (size_t)st.st_size;
    adg_error *e = load(m);
    if (e) {
        prof_elf_close(m);
        return e;
    }
    *out = m;
    return NULL;
}

void prof_elf_close(prof_elf *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->map_len);
    free(m->path);
    free(m->segs);
    free(m->syms);
    free(m->names);
    free(m);
}

const char *prof_elf_path(const prof_elf *m) { return m->path; }
bool prof_elf_has_symtab(const prof_elf *m) { return m->has_symtab; }
size_t prof_elf_nsyms(const prof_elf *m) { return m->nsyms; }

bool prof_elf_offset_to_vaddr(const prof_elf *m, uint64_t off, uint64_t *vaddr)
{
    for (size_t i = 0; i < m->nsegs; i++)
        if (off >= m->segs[i].offset && off < m->segs[i].offset + m->segs[i].filesz) {
            *vaddr = off - m->segs[i].offset + m->segs[i].vaddr;
            return true;
        }
    return false;
}

const prof_elf_sym *prof_elf_find_sym(const prof_elf *m, uint64_t vaddr)
{
    size_t lo = 0, hi = m->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->syms[mid].addr <= vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo)
        return NULL;
    const prof_elf_sym *s = &m->syms[lo - 1];
    return vaddr < s->addr + (s->size ? s->size : 1) ? s : NULL;
}

const prof_elf_sym *prof_elf_sym_by_name(const prof_elf *m, const char *name)
{
    for (size_t i = 0; i < m->nsyms; i++)
        if (!strcmp(m->syms[i].name, name))
            return &m->syms[i];
    return NULL;
}

const uint8_t *prof_elf_code(const prof_elf *m, uint64_t vaddr, size_t len, size_t *avail)
{
    for (size_t i = 0; i < m->nsegs; i++) {
        const seg *s = &m->segs[i];
        if (vaddr >= s->vaddr && vaddr < s->vaddr + s->filesz) {
            uint64_t off = vaddr - s->vaddr + s->offset;
            if (off >= m->map_len)
                return NULL;
            uint64_t in_seg = s->vaddr + s->filesz - vaddr;
            uint64_t in_file = m->map_len - off;
            uint64_t a = len;
            if (a > in_seg)
                a = in_seg;
            if (a > in_file)
                a = in_file;
            *avail = (size_t)a;
            return m->map + off;
        }
    }
    return NULL;
}

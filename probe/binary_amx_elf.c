/* The ELF side of the AMX scan: executable sections, data for configurations held in
 * .rodata/.data, function names from .symtab/.dynsym (libelf). */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe/binary_amx.h"

typedef struct func_sym {
    uint64_t addr, size;
    const char *name; /* in the ELF's string table (mapped while the scan runs) */
} func_sym;

typedef struct elf_ctx {
    Elf *elf;
    bool relocatable;
    size_t shstrndx;
    func_sym *syms;
    size_t nsyms;
} elf_ctx;

static int sym_cmp(const void *a, const void *b)
{
    const func_sym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void load_syms(elf_ctx *c)
{
    Elf_Scn *scn = NULL;
    size_t cap = 0;
    while ((scn = elf_nextscn(c->elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || !sh.sh_entsize)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        if (!d)
            continue;
        size_t n = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < n; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE)
                continue;
            uint64_t at = sym.st_value;
            if (c->relocatable) {
                /* An object's symbols are offsets in their section; the scan places
                 * sections at their file offsets. */
                GElf_Shdr ts;
                Elf_Scn *t = elf_getscn(c->elf, sym.st_shndx);
                if (!t || !gelf_getshdr(t, &ts))
                    continue;
                at += ts.sh_offset;
            } else if (!at) {
                continue;
            }
            int t = GELF_ST_TYPE(sym.st_info);
            if (t != STT_FUNC && t != STT_GNU_IFUNC)
                continue;
            const char *name = elf_strptr(c->elf, sh.sh_link, sym.st_name);
            if (!name || !*name)
                continue;
            if (c->nsyms == cap) {
                size_t ncap = cap ? cap * 2 : 256;
                func_sym *v = realloc(c->syms, ncap * sizeof *v);
                if (!v)
                    return; /* names are evidence only: go on without the rest */
                c->syms = v;
                cap = ncap;
            }
            c->syms[c->nsyms++] = (func_sym){at, sym.st_size, name};
        }
    }
    if (c->nsyms)
        qsort(c->syms, c->nsyms, sizeof *c->syms, sym_cmp);
}

static const func_sym *find_sym(const elf_ctx *c, uint64_t a)
{
    size_t lo = 0, hi = c->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->syms[mid].addr <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* The last symbol at or below a that covers it (sized), else the nearest unsized one. */
    for (size_t i = lo; i-- > 0 && lo - i <= 8;) {
        const func_sym *s = &c->syms[i];
        if (a < s->addr + s->size || (!s->size && i + 1 == lo))
            return s;
    }
    return NULL;
}

static bool is_entry(void *ctx, uint64_t a)
{
    const elf_ctx *c = ctx;
    size_t lo = 0, hi = c->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->syms[mid].addr < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nsyms && c->syms[lo].addr == a;
}

static amx_data_kind data_at(void *ctx, uint64_t vaddr, uint8_t out[64], char *section, size_t seclen)
{
    elf_ctx *c = ctx;
    memset(out, 0, 64);
    if (c->relocatable) /* addresses are not final before relocation */
        return AMX_DATA_NONE;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(c->elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || !(sh.sh_flags & SHF_ALLOC) || (sh.sh_flags & SHF_EXECINSTR))
            continue;
        if (vaddr < sh.sh_addr || vaddr + 64 > sh.sh_addr + sh.sh_size)
            continue;
        const char *name = elf_strptr(c->elf, c->shstrndx, sh.sh_name);
        snprintf(section, seclen, "%s", name ? name : "?");
        if (sh.sh_type == SHT_NOBITS)
            return AMX_DATA_BSS;
        Elf_Data *d = elf_rawdata(scn, NULL);
        if (!d || !d->d_buf || d->d_size < vaddr - sh.sh_addr + 64)
            return AMX_DATA_NONE;
        memcpy(out, (const uint8_t *)d->d_buf + (vaddr - sh.sh_addr), 64);
        return (sh.sh_flags & SHF_WRITE) ? AMX_DATA_WRITABLE : AMX_DATA_READONLY;
    }
    return AMX_DATA_NONE;
}

static void name_sites(const elf_ctx *c, amx_scan *s)
{
    for (size_t i = 0; i < s->nsites; i++) {
        const func_sym *f = find_sym(c, s->sites[i].addr);
        if (f) {
            snprintf(s->sites[i].func, sizeof s->sites[i].func, "%s", f->name);
            s->sites[i].func_addr = f->addr;
        }
    }
}

static const char *machine_name(unsigned m)
{
    switch (m) {
    case EM_AARCH64: return "AArch64";
    case EM_386: return "i386";
    case 190: return "CUDA (a cubin)";
    case EM_PPC64: return "POWER";
    case EM_RISCV: return "RISC-V";
    default: return NULL;
    }
}

adg_error *binary_amx_scan(const char *path, amx_scan *s, bool *applies, char *machine, size_t machine_len)
{
    *applies = false;
    if (machine_len)
        machine[0] = '\0';
    if (elf_version(EV_CURRENT) == EV_NONE)
        return adg_error_new(ADG_E_INTERNAL, "libelf: %s", elf_errmsg(-1));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return adg_error_errno(ADG_E_IO, errno, "%s", path);
    elf_ctx c = {0};
    c.elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    adg_error *e = NULL;
    GElf_Ehdr eh;
    if (!c.elf || elf_kind(c.elf) != ELF_K_ELF || !gelf_getehdr(c.elf, &eh)) {
        snprintf(machine, machine_len, "not an ELF file");
        goto out;
    }
    if (eh.e_machine != EM_X86_64 || gelf_getclass(c.elf) != ELFCLASS64) {
        const char *m = machine_name(eh.e_machine);
        if (m)
            snprintf(machine, machine_len, "%s", m);
        else
            snprintf(machine, machine_len, "ELF machine %u", (unsigned)eh.e_machine);
        goto out;
    }
    if (elf_getshdrstrndx(c.elf, &c.shstrndx) != 0) {
        e = adg_error_new(ADG_E_FORMAT, "%s: corrupt ELF section headers: %s", path, elf_errmsg(-1));
        goto out;
    }
    *applies = true;
    c.relocatable = eh.e_type == ET_REL;
    load_syms(&c);
    amx_env env = {.data = data_at, .is_entry = is_entry, .ctx = &c};
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(c.elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh)) {
            e = adg_error_new(ADG_E_FORMAT, "%s: corrupt ELF section header: %s", path, elf_errmsg(-1));
            goto out;
        }
        if (sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR) || !sh.sh_size)
            continue;
        Elf_Data *d = elf_rawdata(scn, NULL);
        if (!d || !d->d_buf || d->d_size != sh.sh_size) {
            const char *name = elf_strptr(c.elf, c.shstrndx, sh.sh_name);
            e = adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: code section %s cannot be read (%s)", path,
                                             name ? name : "?", elf_errmsg(-1)),
                               "the file is truncated or corrupt: copy it again from where it was built");
            goto out;
        }
        /* An object's sections all start at 0: their file offsets keep the addresses apart. */
        uint64_t at = c.relocatable ? sh.sh_offset : sh.sh_addr;
        e = amx_scan_code(s, d->d_buf, d->d_size, at, &env);
        if (e)
            goto out;
    }
    name_sites(&c, s);
out:
    free(c.syms);
    if (c.elf)
        elf_end(c.elf);
    close(fd);
    return e;
}

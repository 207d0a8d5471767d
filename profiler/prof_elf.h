/* ELF modules (executables, PIE, shared libraries) as the sampler sees them: their
 * loadable segments, function symbols (.symtab and .dynsym) and code bytes, through
 * libelf.  A module is opened once and stays mapped read-only. */
#ifndef PROF_ELF_H
#define PROF_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/adg_error.h"

typedef struct prof_elf_sym {
    uint64_t addr, size;   /* link-time virtual address */
    const char *name;      /* owned by the module */
} prof_elf_sym;

typedef struct prof_elf prof_elf;

/* Opens path; an error for a missing file or one that is not a 64-bit ELF. */
adg_error *prof_elf_open(const char *path, prof_elf **out);
void prof_elf_close(prof_elf *m);

const char *prof_elf_path(const prof_elf *m);
bool prof_elf_has_symtab(const prof_elf *m); /* false: stripped (.dynsym only or nothing) */
size_t prof_elf_nsyms(const prof_elf *m);

/* Converts a file offset (from /proc/PID/maps or an mmap record: ip - start + pgoff)
 * to the link-time address; false when no PT_LOAD segment covers it. */
bool prof_elf_offset_to_vaddr(const prof_elf *m, uint64_t off, uint64_t *vaddr);
/* The function symbol containing vaddr, or NULL. */
const prof_elf_sym *prof_elf_find_sym(const prof_elf *m, uint64_t vaddr);
/* The function symbol named `name` (first match), or NULL. */
const prof_elf_sym *prof_elf_sym_by_name(const prof_elf *m, const char *name);
/* Pointer to the file bytes backing [vaddr, vaddr+len); *avail is how many of them are
 * in the file (may be less than len at a segment end). NULL when not file-backed. */
const uint8_t *prof_elf_code(const prof_elf *m, uint64_t vaddr, size_t len, size_t *avail);

#endif

/* Finding the device code in a file: ELF host binaries (libelf), .fatbin, .cubin. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/fatbin.h"

#define MAX_RAW_FILE (1024u << 20)

static adg_error *read_cubin_file(const char *path, fatbin_list *out)
{
    char *data = NULL;
    size_t len = 0;
    adg_error *e = adg_read_file(path, MAX_RAW_FILE, &data, &len);
    if (e)
        return e;
    fatbin_entry one;
    memset(&one, 0, sizeof one);
    e = fatbin_read_cubin((const uint8_t *)data, len, &one);
    free(data);
    if (e)
        return adg_error_prefix(e, "%s", path);
    one.kind = FATBIN_KIND_ELF;
    one.arch = one.elf_sm;
    one.variant = one.elf_variant;
    one.stored_size = one.size = len;
    one.decoded = true;
    out->v = malloc(sizeof one);
    if (!out->v)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    out->v[0] = one;
    out->n = out->cap = 1;
    snprintf(out->source, sizeof out->source, "cubin");
    return NULL;
}

/* The .nv_fatbin sections (nvcc executables, shared libraries, objects) of an ELF file. */
static adg_error *read_elf_host(const char *path, int fd, Elf *elf, fatbin_list *out)
{
    (void)fd;
    size_t shstrndx = 0;
    if (elf_getshdrstrndx(elf, &shstrndx) != 0)
        return adg_error_new(ADG_E_FORMAT, "%s: corrupt ELF section headers: %s", path, elf_errmsg(-1));
    size_t nsec = 0;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            return adg_error_new(ADG_E_FORMAT, "%s: corrupt ELF section header: %s", path, elf_errmsg(-1));
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (!name || (strcmp(name, ".nv_fatbin") != 0 && strcmp(name, "__nv_relfatbin") != 0))
            continue;
        if (sh.sh_type == SHT_NOBITS || sh.sh_size == 0)
            continue;
        Elf_Data *d = elf_rawdata(scn, NULL);
        if (!d || !d->d_buf || d->d_size != sh.sh_size)
            return adg_error_new(ADG_E_FORMAT, "%s: section %s cannot be read (%s): truncated file?", path, name,
                                 elf_errmsg(-1));
        adg_error *e = fatbin_parse(d->d_buf, d->d_size, out);
        if (e)
            return adg_error_prefix(e, "%s: section %s", path, name);
        nsec++;
    }
    if (nsec)
        snprintf(out->source, sizeof out->source, "ELF section .nv_fatbin (%zu container%s)", out->ncontainers,
                 out->ncontainers == 1 ? "" : "s");
    else
        snprintf(out->source, sizeof out->source, "ELF file without a .nv_fatbin section");
    return NULL;
}

adg_error *fatbin_read_file(const char *path, fatbin_list *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return adg_error_hint(adg_error_errno(errno == EACCES ? ADG_E_PERMISSION : ADG_E_IO, errno, "cannot open %s", path),
                              "give the path of an executable, shared library, .fatbin or .cubin file");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return adg_error_new(ADG_E_IO, "%s is not a regular file", path);
    }
    unsigned char head[20] = {0};
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got < 0) {
        int err = errno;
        close(fd);
        return adg_error_errno(ADG_E_IO, err, "cannot read %s", path);
    }
    adg_error *e = NULL;
    if (got >= 4 && memcmp(head, "\177ELF", 4) == 0) {
        if (got >= 20 && (head[18] | head[19] << 8) == 190) {
            close(fd);
            return read_cubin_file(path, out);
        }
        if (elf_version(EV_CURRENT) == EV_NONE) {
            close(fd);
            return adg_error_new(ADG_E_INTERNAL, "libelf is out of date: %s", elf_errmsg(-1));
        }
        Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
        if (!elf || elf_kind(elf) != ELF_K_ELF) {
            e = adg_error_new(ADG_E_FORMAT, "%s: not a readable ELF file: %s", path, elf_errmsg(-1));
        } else {
            e = read_elf_host(path, fd, elf, out);
        }
        if (elf)
            elf_end(elf);
        close(fd);
    } else if (got >= 4 && (head[0] | head[1] << 8 | head[2] << 16 | (uint32_t)head[3] << 24) == FATBIN_MAGIC) {
        close(fd);
        char *data = NULL;
        size_t len = 0;
        e = adg_read_file(path, MAX_RAW_FILE, &data, &len);
        if (!e) {
            e = fatbin_parse((const uint8_t *)data, len, out);
            if (e)
                adg_error_prefix(e, "%s", path);
            free(data);
        }
        snprintf(out->source, sizeof out->source, "fatbin file (%zu container%s)", out->ncontainers,
                 out->ncontainers == 1 ? "" : "s");
    } else {
        close(fd);
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s is neither an ELF file nor a CUDA fatbin", path),
                              "give an executable, shared library, object, .fatbin or .cubin file");
    }
    if (e) {
        fatbin_list_free(out);
        return e;
    }
    return NULL;
}

/* Fatbin containers and entries: parsing, payload decoding, cubin headers. */
#include "probe/fatbin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "common/adg_util.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

#define ENTRY_MIN_HEADER 64u
#define EM_CUDA_ 190

void fatbin_list_free(fatbin_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

const char *fatbin_compression_name(fatbin_compression c)
{
    switch (c) {
    case FATBIN_COMP_ZSTD: return "zstd";
    case FATBIN_COMP_LZ: return "nvidia-lz";
    default: return "none";
    }
}

const char *fatbin_entry_name(const fatbin_entry *e, char *buf, size_t len)
{
    const char *pre = e->kind == FATBIN_KIND_PTX ? "compute" : e->kind == FATBIN_KIND_ELF ? "sm" : "unknown";
    if (e->variant)
        snprintf(buf, len, "%s_%u%c", pre, e->arch, e->variant);
    else
        snprintf(buf, len, "%s_%u", pre, e->arch);
    return buf;
}

static fatbin_entry *push(fatbin_list *l)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        fatbin_entry *nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = ncap;
    }
    fatbin_entry *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* ".version 9.0" and ".target sm_120a" from PTX text (not NUL-terminated). */
static void read_ptx_text(const uint8_t *p, size_t n, fatbin_entry *e)
{
    static const char ver[] = ".version", tgt[] = ".target";
    const char *s = (const char *)p;
    const char *v = memmem(s, n, ver, sizeof ver - 1);
    if (v) {
        size_t i = (size_t)(v - s) + sizeof ver - 1;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        unsigned maj = 0, min = 0;
        size_t d = 0;
        while (i < n && isdigit((unsigned char)s[i]) && d++ < 3)
            maj = maj * 10 + (unsigned)(s[i++] - '0');
        if (d && i + 1 < n && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
            min = (unsigned)(s[i + 1] - '0');
            e->ptx_isa = maj * 10 + min;
        }
    }
    const char *t = memmem(s, n, tgt, sizeof tgt - 1);
    if (t) {
        size_t i = (size_t)(t - s) + sizeof tgt - 1, k = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        while (i < n && k + 1 < sizeof e->ptx_target && (isalnum((unsigned char)s[i]) || s[i] == '_'))
            e->ptx_target[k++] = s[i++];
        e->ptx_target[k] = '\0';
    }
}

/* The "-arch sm_120a" that ptxas records in the cubin's .note.nv.tkinfo: CUDA 13 cubins
 * (ELF ABI 8) no longer mark arch-specific or family code in e_flags, so this is the only
 * place a standalone cubin says how it was built.  Scanning the image's bytes for the
 * option keeps this bounded and independent of section parsing. */
static void arch_note(const uint8_t *p, size_t n, char *out, size_t len)
{
    static const char key[] = "-arch sm_";
    const uint8_t *hit = memmem(p, n, key, sizeof key - 1);
    out[0] = '\0';
    if (!hit)
        return;
    size_t i = (size_t)(hit - p) + sizeof key - 1 - 3, k = 0; /* keep "sm_" */
    while (i < n && k + 1 < len && (isalnum((unsigned char)p[i]) || p[i] == '_'))
        out[k++] = (char)p[i++];
    out[k] = '\0';
}

adg_error *fatbin_read_cubin(const uint8_t *p, size_t n, fatbin_entry *e)
{
    if (n < 64 || memcmp(p, "\177ELF", 4) != 0)
        return adg_error_new(ADG_E_FORMAT, "not a cubin: no ELF header (%zu bytes)", n);
    if (p[4] != 2)
        return adg_error_new(ADG_E_FORMAT, "32-bit cubin (ELF class %u): not supported", p[4]);
    if (rd16(p + 18) != EM_CUDA_)
        return adg_error_new(ADG_E_FORMAT, "ELF image with e_machine %u is not a cubin (EM_CUDA is 190)", rd16(p + 18));
    /* A cut cubin keeps a valid header; its section headers (where the code is) would
     * lie past the end.  The driver refuses such an image, so it is not a verdict. */
    uint64_t shoff = rd64(p + 40), shsize = (uint64_t)rd16(p + 58) * rd16(p + 60);
    if (shoff > n || shsize > n - shoff)
        return adg_error_new(ADG_E_FORMAT,
                             "truncated cubin: its section headers [%llu, %llu) extend past its %zu bytes",
                             (unsigned long long)shoff, (unsigned long long)(shoff + shsize), n);
    e->elf_abi = p[8];
    e->e_flags = rd32(p + 48);
    if (e->elf_abi >= 8) {
        /* ABI 8 (CUDA 13): SM in bits 8..15, EF_CUDA_ACCELERATORS at bit 3. */
        e->elf_sm = (e->e_flags >> 8) & 0xff;
        e->elf_variant = (e->e_flags & 0x8) ? 'a' : 0;
        e->elf_virtual_sm = 0;
    } else {
        /* ABI <= 7: SM in the low byte, EF_CUDA_ACCELERATORS_V1 at bit 11, virtual SM in 16..23. */
        e->elf_sm = e->e_flags & 0xff;
        e->elf_variant = (e->e_flags & 0x800) ? 'a' : 0;
        e->elf_virtual_sm = (e->e_flags >> 16) & 0xff;
    }
    arch_note(p, n, e->ptxas_arch, sizeof e->ptxas_arch);
    /* ptxas 13 writes the same e_flags for sm_120, sm_120a and sm_120f; cuobjdump then
     * names an arch-specific cubin from its note ("sm_120a") and a family one plainly
     * ("sm_120").  Do the same, so that listings agree and an `a` cubin gets the
     * exact-CC verdict (seen on an H100 run against cuobjdump 13.0). */
    size_t al = strlen(e->ptxas_arch);
    if (e->elf_abi >= 8 && !e->elf_variant && al > 3 && e->ptxas_arch[al - 1] == 'a')
        e->elf_variant = 'a';
    return NULL;
}

/* Reads (decompressing when needed) one payload and fills the decoded fields. */
static void decode_payload(const uint8_t *stored, size_t stored_len, uint64_t declared, fatbin_entry *e)
{
    uint8_t *buf = NULL;
    const uint8_t *img = stored;
    size_t img_len = stored_len;
    adg_error *err = NULL;
    if (e->compression != FATBIN_COMP_NONE) {
        if (declared == 0 || declared > FATBIN_MAX_PAYLOAD) {
            snprintf(e->decode_error, sizeof e->decode_error,
                     "compressed entry declares an uncompressed size of %llu bytes", (unsigned long long)declared);
            return;
        }
        buf = malloc(declared);
        if (!buf) {
            snprintf(e->decode_error, sizeof e->decode_error, "out of memory");
            return;
        }
        if (e->compression == FATBIN_COMP_ZSTD) {
            size_t r = ZSTD_decompress(buf, declared, stored, stored_len);
            if (ZSTD_isError(r)) {
                snprintf(e->decode_error, sizeof e->decode_error, "zstd: %s", ZSTD_getErrorName(r));
                free(buf);
                return;
            }
            img_len = r;
        } else {
            err = fatbin_lz_decompress(stored, stored_len, buf, declared);
            if (err) {
                snprintf(e->decode_error, sizeof e->decode_error, "%s", adg_error_msg(err));
                adg_error_free(err);
                free(buf);
                return;
            }
            img_len = declared;
        }
        img = buf;
        e->size = img_len;
    }
    if (e->kind == FATBIN_KIND_PTX) {
        read_ptx_text(img, img_len, e);
        e->decoded = true;
    } else if (e->kind == FATBIN_KIND_ELF) {
        err = fatbin_read_cubin(img, img_len, e);
        if (err) {
            snprintf(e->decode_error, sizeof e->decode_error, "%s", adg_error_msg(err));
            adg_error_free(err);
        } else {
            e->decoded = true;
        }
    }
    free(buf);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static adg_error *parse_entries(const uint8_t *base, uint64_t start, uint64_t end, size_t container, fatbin_list *out)
{
    uint64_t q = start;
    while (q < end) {
        if (end - q < ENTRY_MIN_HEADER) {
            if (all_zero(base + q, (size_t)(end - q)))
                break;
            return adg_error_new(ADG_E_FORMAT, "truncated fatbin entry header at offset %llu (%llu bytes left)",
                                 (unsigned long long)q, (unsigned long long)(end - q));
        }
        const uint8_t *h = base + q;
        uint32_t hsize = rd32(h + 4);
        uint64_t psize = rd64(h + 8);
        if (hsize == 0 && psize == 0 && all_zero(h, ENTRY_MIN_HEADER))
            break; /* padding at the end of a container */
        if (hsize < ENTRY_MIN_HEADER || hsize > end - q)
            return adg_error_new(ADG_E_FORMAT, "fatbin entry at offset %llu has header size %u (needs 64 ... %llu)",
                                 (unsigned long long)q, hsize, (unsigned long long)(end - q));
        if (psize > end - q - hsize)
            return adg_error_new(ADG_E_FORMAT,
                                 "fatbin entry at offset %llu declares a %llu-byte payload, only %llu bytes remain",
                                 (unsigned long long)q, (unsigned long long)psize,
                                 (unsigned long long)(end - q - hsize));
        fatbin_entry *e = push(out);
        if (!e)
            return adg_error_new(ADG_E_NOMEM, "out of memory listing fatbin entries");
        e->kind = rd16(h);
        e->code_minor = rd16(h + 24);
        e->code_major = rd16(h + 26);
        e->arch = rd32(h + 28);
        e->flags = rd64(h + 40);
        e->container = container;
        e->offset = q;
        e->stored_size = psize;
        e->size = psize;
        uint32_t csize = rd32(h + 16);
        uint64_t usize = rd64(h + 56);
        if (e->flags & FATBIN_FLAG_ZSTD)
            e->compression = FATBIN_COMP_ZSTD;
        else if (e->flags & (FATBIN_FLAG_LZ | FATBIN_FLAG_LZ_A))
            e->compression = FATBIN_COMP_LZ;
        if (e->compression != FATBIN_COMP_NONE) {
            if (csize && csize <= psize)
                e->stored_size = csize; /* the rest is alignment padding */
            e->size = usize;
        }
        if (e->flags & FATBIN_FLAG_ARCH_SPECIFIC)
            e->variant = 'a';
        else if (e->flags & FATBIN_FLAG_FAMILY)
            e->variant = 'f';
        if (e->kind == FATBIN_KIND_PTX || e->kind == FATBIN_KIND_ELF)
            decode_payload(h + hsize, (size_t)e->stored_size, usize, e);
        else
            snprintf(e->decode_error, sizeof e->decode_error, "unknown entry kind %d", e->kind);
        if (!e->variant && e->kind == FATBIN_KIND_ELF && e->decoded && e->elf_variant && e->elf_sm == e->arch)
            e->variant = e->elf_variant;
        if (!e->variant && e->kind == FATBIN_KIND_PTX && e->ptx_target[0]) {
            size_t tl = strlen(e->ptx_target);
            char last = e->ptx_target[tl - 1];
            if (last == 'a' || last == 'f')
                e->variant = last;
        }
        q += hsize + psize;
    }
    return NULL;
}

adg_error *fatbin_parse(const uint8_t *data, size_t len, fatbin_list *out)
{
    size_t p = 0;
    while (p < len) {
        if (data[p] == 0) { /* padding between containers */
            p++;
            continue;
        }
        if (len - p < 16)
            return adg_error_new(ADG_E_FORMAT, "truncated fatbin container header at offset %zu (%zu bytes left)", p,
                                 len - p);
        uint32_t magic = rd32(data + p);
        if (magic != FATBIN_MAGIC)
            return adg_error_new(ADG_E_FORMAT, "no fatbin container at offset %zu: magic 0x%08x, expected 0x%08x", p,
                                 magic, FATBIN_MAGIC);
        uint16_t hsize = rd16(data + p + 6);
        uint64_t size = rd64(data + p + 8);
        if (hsize < 16 || hsize > len - p)
            return adg_error_new(ADG_E_FORMAT, "fatbin container at offset %zu has header size %u", p, hsize);
        if (size > len - p - hsize)
            return adg_error_new(ADG_E_FORMAT,
                                 "fatbin container at offset %zu declares %llu bytes of entries, only %zu remain "
                                 "(truncated file?)",
                                 p, (unsigned long long)size, len - p - hsize);
        adg_error *e = parse_entries(data, p + hsize, p + hsize + size, out->ncontainers, out);
        if (e)
            return e;
        out->ncontainers++;
        p += hsize + (size_t)size;
    }
    return NULL;
}

json_t *fatbin_entry_json(const fatbin_entry *e)
{
    char nm[32];
    json_t *j = json_object();
    json_object_set_new(j, "kind", json_string(e->kind == FATBIN_KIND_PTX ? "ptx" : e->kind == FATBIN_KIND_ELF ? "sass"
                                                                                                               : "unknown"));
    json_object_set_new(j, "name", json_string(fatbin_entry_name(e, nm, sizeof nm)));
    json_object_set_new(j, "arch", json_integer(e->arch));
    if (e->variant)
        json_object_set_new(j, "variant", json_stringn(&e->variant, 1));
    else
        json_object_set_new(j, "variant", json_null());
    json_object_set_new(j, "container", json_integer((json_int_t)e->container));
    json_object_set_new(j, "offset", json_integer((json_int_t)e->offset));
    json_object_set_new(j, "flags", json_integer((json_int_t)e->flags));
    json_object_set_new(j, "compression", json_string(fatbin_compression_name(e->compression)));
    json_object_set_new(j, "stored_bytes", json_integer((json_int_t)e->stored_size));
    json_object_set_new(j, "bytes", json_integer((json_int_t)e->size));
    json_object_set_new(j, "debug", json_boolean(e->flags & FATBIN_FLAG_DEBUG));
    json_object_set_new(j, "decoded", json_boolean(e->decoded));
    if (!e->decoded)
        json_object_set_new(j, "decode_error", json_string(e->decode_error));
    if (e->kind == FATBIN_KIND_PTX && e->ptx_isa) {
        char v[16];
        snprintf(v, sizeof v, "%u.%u", e->ptx_isa / 10, e->ptx_isa % 10);
        json_object_set_new(j, "ptx_version", json_string(v));
    }
    if (e->kind == FATBIN_KIND_PTX && e->ptx_target[0])
        json_object_set_new(j, "ptx_target", json_string(e->ptx_target));
    if (e->kind == FATBIN_KIND_ELF && e->decoded) {
        json_t *c = json_object();
        json_object_set_new(c, "abi_version", json_integer(e->elf_abi));
        char f[16];
        snprintf(f, sizeof f, "0x%08x", e->e_flags);
        json_object_set_new(c, "e_flags", json_string(f));
        json_object_set_new(c, "sm", json_integer(e->elf_sm));
        if (e->elf_virtual_sm)
            json_object_set_new(c, "virtual_sm", json_integer(e->elf_virtual_sm));
        if (e->ptxas_arch[0])
            json_object_set_new(c, "ptxas_arch", json_string(e->ptxas_arch));
        json_object_set_new(j, "cubin", c);
    }
    return j;
}

json_t *fatbin_list_json(const fatbin_list *l)
{
    json_t *a = json_array();
    for (size_t i = 0; i < l->n; i++)
        json_array_append_new(a, fatbin_entry_json(&l->v[i]));
    return a;
}

/* GGUF reader: every count, length and offset is checked against the bytes that are
 * really there before it is used, so that a hostile file cannot make us allocate or
 * read beyond it. */
#include "kernels/kern_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Cursor over the header part of the file. */
typedef struct rd {
    const uint8_t *p;
    uint64_t pos, size;
    const char *what;
} rd;

static adg_error *trunc_err(const rd *r, const char *field, uint64_t need)
{
    return adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                        "%s: truncated GGUF: %s needs %llu bytes at offset %llu but the file has %llu",
                                        r->what, field, (unsigned long long)need, (unsigned long long)r->pos,
                                        (unsigned long long)r->size),
                          "the file is incomplete (interrupted download or copy?); fetch or create it again");
}

static adg_error *rd_bytes(rd *r, uint64_t n, const char *field, const uint8_t **out)
{
    if (n > r->size - r->pos)
        return trunc_err(r, field, n);
    *out = r->p + r->pos;
    r->pos += n;
    return NULL;
}

static adg_error *rd_u32(rd *r, const char *field, uint32_t *v)
{
    const uint8_t *b = NULL;
    adg_error *e = rd_bytes(r, 4, field, &b);
    if (!e)
        memcpy(v, b, 4);
    return e;
}

static adg_error *rd_u64(rd *r, const char *field, uint64_t *v)
{
    const uint8_t *b = NULL;
    adg_error *e = rd_bytes(r, 8, field, &b);
    if (!e)
        memcpy(v, b, 8);
    return e;
}

static adg_error *rd_str(rd *r, const char *field, kern_gguf_str *s)
{
    uint64_t len;
    adg_error *e = rd_u64(r, field, &len);
    if (e)
        return e;
    const uint8_t *b = NULL;
    if ((e = rd_bytes(r, len, field, &b)))
        return e;
    s->ptr = (const char *)b;
    s->len = len;
    return NULL;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case KERN_GGUF_U8: case KERN_GGUF_I8: case KERN_GGUF_BOOL: return 1;
    case KERN_GGUF_U16: case KERN_GGUF_I16: return 2;
    case KERN_GGUF_U32: case KERN_GGUF_I32: case KERN_GGUF_F32: return 4;
    case KERN_GGUF_U64: case KERN_GGUF_I64: case KERN_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Printable copy of a name from the file for messages and lookups; rejects embedded
 * NULs so that names stay unambiguous C strings. */
static adg_error *copy_name(const rd *r, const char *field, kern_gguf_str s, uint64_t max, char **out)
{
    if (s.len > max)
        return adg_error_new(ADG_E_FORMAT, "%s: %s is %llu bytes long (limit %llu): not a GGUF name", r->what, field,
                             (unsigned long long)s.len, (unsigned long long)max);
    if (memchr(s.ptr, 0, s.len))
        return adg_error_new(ADG_E_FORMAT, "%s: %s contains a NUL byte", r->what, field);
    char *c = malloc(s.len + 1);
    if (!c)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    *out = c;
    return NULL;
}

static void load_scalar(kern_gguf_kv *kv, uint32_t t, const uint8_t *b)
{
    switch (t) {
    case KERN_GGUF_U8: kv->v.u = b[0]; break;
    case KERN_GGUF_BOOL: kv->v.u = b[0] != 0; break;
    case KERN_GGUF_I8: kv->v.i = (int8_t)b[0]; break;
    case KERN_GGUF_U16: { uint16_t x; memcpy(&x, b, 2); kv->v.u = x; break; }
    case KERN_GGUF_I16: { int16_t x; memcpy(&x, b, 2); kv->v.i = x; break; }
    case KERN_GGUF_U32: { uint32_t x; memcpy(&x, b, 4); kv->v.u = x; break; }
    case KERN_GGUF_I32: { int32_t x; memcpy(&x, b, 4); kv->v.i = x; break; }
    case KERN_GGUF_F32: { float x; memcpy(&x, b, 4); kv->v.f = x; break; }
    case KERN_GGUF_U64: { uint64_t x; memcpy(&x, b, 8); kv->v.u = x; break; }
    case KERN_GGUF_I64: { int64_t x; memcpy(&x, b, 8); kv->v.i = x; break; }
    case KERN_GGUF_F64: { double x; memcpy(&x, b, 8); kv->v.f = x; break; }
    default: break;
    }
}

static adg_error *read_kv(rd *r, uint64_t idx, kern_gguf_kv *kv)
{
    char field[64];
    snprintf(field, sizeof field, "metadata key %llu", (unsigned long long)idx);
    kern_gguf_str key;
    adg_error *e = rd_str(r, field, &key);
    if (e)
        return e;
    if (key.len == 0)
        return adg_error_new(ADG_E_FORMAT, "%s: %s has an empty name", r->what, field);
    if ((e = copy_name(r, field, key, 65535, &kv->key)))
        return e;
    uint32_t t;
    if ((e = rd_u32(r, kv->key, &t)))
        return e;
    if (t >= KERN_GGUF_VTYPE_COUNT)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' has value type %u, which GGUF does not define", r->what,
                             kv->key, t);
    kv->type = t;
    if (t == KERN_GGUF_STRING)
        return rd_str(r, kv->key, &kv->str);
    if (t != KERN_GGUF_ARRAY) {
        const uint8_t *b = NULL;
        if ((e = rd_bytes(r, scalar_size(t), kv->key, &b)))
            return e;
        load_scalar(kv, t, b);
        return NULL;
    }
    uint32_t at;
    uint64_t n;
    if ((e = rd_u32(r, kv->key, &at)) || (e = rd_u64(r, kv->key, &n)))
        return e;
    if (at >= KERN_GGUF_VTYPE_COUNT || at == KERN_GGUF_ARRAY)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' is an array of element type %u, which GGUF does not allow",
                             r->what, kv->key, at);
    kv->arr_type = at;
    kv->arr_n = n;
    kv->arr_data = r->p + r->pos;
    uint64_t start = r->pos;
    if (at == KERN_GGUF_STRING) {
        /* Each string needs at least its 8-byte length: bound n before walking. */
        if (n > (r->size - r->pos) / 8)
            return adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                                "%s: truncated or corrupt GGUF: metadata '%s' claims %llu strings, more "
                                                "than the file can hold",
                                                r->what, kv->key, (unsigned long long)n),
                                  "fetch or create the file again");
        for (uint64_t i = 0; i < n; i++) {
            kern_gguf_str s;
            if ((e = rd_str(r, kv->key, &s)))
                return e;
        }
    } else {
        uint64_t es = scalar_size(at);
        if (n > (r->size - r->pos) / es)
            return adg_error_hint(adg_error_new(ADG_E_FORMAT,
                                                "%s: truncated or corrupt GGUF: metadata '%s' claims %llu elements of "
                                                "%s, more than the file can hold",
                                                r->what, kv->key, (unsigned long long)n, kern_gguf_vtype_name(at)),
                                  "fetch or create the file again");
        r->pos += n * es;
    }
    kv->arr_bytes = r->pos - start;
    return NULL;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_offset(const void *a, const void *b)
{
    const kern_gguf_tensor *x = *(const kern_gguf_tensor *const *)a, *y = *(const kern_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static adg_error *check_unique_keys(const kern_gguf *g, const char *what)
{
    if (g->n_kv < 2)
        return NULL;
    char **keys = malloc(g->n_kv * sizeof *keys);
    if (!keys)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++)
        keys[i] = g->kv[i].key;
    qsort(keys, g->n_kv, sizeof *keys, cmp_name);
    adg_error *e = NULL;
    for (uint64_t i = 1; i < g->n_kv && !e; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            e = adg_error_new(ADG_E_FORMAT, "%s: metadata key '%s' appears twice", what, keys[i]);
    free(keys);
    return e;
}

static adg_error *read_tensor_info(rd *r, uint64_t idx, kern_gguf_tensor *t)
{
    char field[64];
    snprintf(field, sizeof field, "tensor info %llu", (unsigned long long)idx);
    kern_gguf_str name;
    adg_error *e = rd_str(r, field, &name);
    if (e)
        return e;
    if (name.len == 0)
        return adg_error_new(ADG_E_FORMAT, "%s: %s has an empty name", r->what, field);
    /* ggml limits names to GGML_MAX_NAME - 1 = 63 bytes. */
    if ((e = copy_name(r, field, name, 63, &t->name)))
        return e;
    if ((e = rd_u32(r, t->name, &t->n_dims)))
        return e;
    if (t->n_dims == 0 || t->n_dims > KERN_GGUF_MAX_DIMS)
        return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' has %u dimensions (1..%d allowed)", r->what, t->name,
                             t->n_dims, KERN_GGUF_MAX_DIMS);
    for (int d = 0; d < KERN_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if ((e = rd_u64(r, t->name, &ne)))
            return e;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' dimension %u is %llu", r->what, t->name, d,
                                 (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((e = rd_u32(r, t->name, &t->type)) || (e = rd_u64(r, t->name, &t->offset)))
        return e;
    const kern_ggml_type_info *ti = kern_ggml_type(t->type);
    if (!ti)
        return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' has type id %u, which ggml does not define", r->what,
                             t->name, t->type);
    if (t->ne[0] % ti->blck)
        return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' row length %lld is not a multiple of %s's block of %u",
                             r->what, t->name, (long long)t->ne[0], ti->name, ti->blck);
    /* nbytes = ne0/blck*bytes * ne1 * ne2 * ne3, refusing anything above 2^62. */
    const uint64_t lim = (uint64_t)1 << 62;
    uint64_t nb = (uint64_t)t->ne[0] / ti->blck * ti->bytes;
    for (int d = 1; d < KERN_GGUF_MAX_DIMS; d++) {
        if ((uint64_t)t->ne[d] > lim / (nb ? nb : 1))
            return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' dimensions overflow its size", r->what, t->name);
        nb *= (uint64_t)t->ne[d];
    }
    if (nb > lim)
        return adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' dimensions overflow its size", r->what, t->name);
    t->nbytes = nb;
    return NULL;
}

static adg_error *parse(kern_gguf *g, const char *what)
{
    rd r = {.p = g->base, .pos = 0, .size = g->size, .what = what};
    uint32_t magic;
    adg_error *e = rd_u32(&r, "magic", &magic);
    if (e)
        return e;
    if (magic != KERN_GGUF_MAGIC)
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: not a GGUF file (magic %02x %02x %02x %02x)", what,
                                            g->base[0], g->base[1], g->base[2], g->base[3]),
                              "amxdiag reads GGUF models (llama.cpp's format); convert other formats with llama.cpp's "
                              "convert_hf_to_gguf.py");
    if ((e = rd_u32(&r, "version", &g->version)))
        return e;
    if (g->version == 1)
        return adg_error_hint(adg_error_new(ADG_E_UNSUPPORTED, "%s: GGUF version 1 is not supported", what),
                              "convert the file to GGUF v3 with a current llama.cpp");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0)
            return adg_error_new(ADG_E_UNSUPPORTED, "%s: big-endian GGUF files are not supported", what);
        return adg_error_new(ADG_E_FORMAT, "%s: GGUF version %u is unknown (2 and 3 are)", what, g->version);
    }
    if ((e = rd_u64(&r, "tensor count", &g->n_tensors)) || (e = rd_u64(&r, "metadata count", &g->n_kv)))
        return e;
    /* A metadata entry is at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes; a tensor
     * info at least 8 + 1 + 4 + 8 + 4 + 8.  Bounds the allocations by the file size. */
    uint64_t left = g->size - r.pos;
    if (g->n_kv > left / 14)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata count %llu is more than the file can hold", what,
                             (unsigned long long)g->n_kv);
    if (g->n_tensors > left / 33)
        return adg_error_new(ADG_E_FORMAT, "%s: tensor count %llu is more than the file can hold", what,
                             (unsigned long long)g->n_tensors);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((e = read_kv(&r, i, &g->kv[i])))
            return e;
    if ((e = check_unique_keys(g, what)))
        return e;
    g->alignment = KERN_GGUF_DEFAULT_ALIGNMENT;
    const kern_gguf_kv *al = kern_gguf_find_kv(g, "general.alignment");
    if (al) {
        if (al->type != KERN_GGUF_U32)
            return adg_error_new(ADG_E_FORMAT, "%s: general.alignment has type %s (u32 expected)", what,
                                 kern_gguf_vtype_name(al->type));
        if (al->v.u == 0 || (al->v.u & (al->v.u - 1)))
            return adg_error_new(ADG_E_FORMAT, "%s: general.alignment is %llu, not a power of two", what,
                                 (unsigned long long)al->v.u);
        g->alignment = al->v.u;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((e = read_tensor_info(&r, i, &g->tensors[i])))
            return e;
    uint64_t data = (r.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && data > g->size)
        return trunc_err(&r, "padding before tensor data", data - r.pos);
    g->data_offset = data;
    uint64_t avail = g->size > data ? g->size - data : 0;

    kern_gguf_tensor **by = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *by);
    if (!by)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        kern_gguf_tensor *t = &g->tensors[i];
        by[i] = t;
        if (t->offset % g->alignment) {
            e = adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' data offset %llu is not a multiple of the alignment %llu",
                              what, t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
            break;
        }
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            e = adg_error_hint(
                adg_error_new(ADG_E_FORMAT,
                              "%s: tensor '%s' data [%llu, %llu) extends past the end of the file (%llu data bytes)",
                              what, t->name, (unsigned long long)t->offset,
                              (unsigned long long)(t->offset + t->nbytes), (unsigned long long)avail),
                "the file is truncated or corrupt; fetch or create it again");
            break;
        }
        t->data = g->base + data + t->offset;
        g->tensor_bytes += t->nbytes;
    }
    if (!e && g->n_tensors > 1) {
        qsort(by, g->n_tensors, sizeof *by, cmp_offset);
        for (uint64_t i = 1; i < g->n_tensors && !e; i++)
            if (by[i - 1]->offset + by[i - 1]->nbytes > by[i]->offset)
                e = adg_error_new(ADG_E_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", what,
                                  by[i - 1]->name, by[i]->name);
        if (!e) {
            char **names = (char **)by; /* reuse the array for the duplicate check */
            for (uint64_t i = 0; i < g->n_tensors; i++)
                names[i] = g->tensors[i].name;
            qsort(names, g->n_tensors, sizeof *names, cmp_name);
            for (uint64_t i = 1; i < g->n_tensors && !e; i++)
                if (!strcmp(names[i - 1], names[i]))
                    e = adg_error_new(ADG_E_FORMAT, "%s: tensor '%s' appears twice", what, names[i]);
        }
    }
    free(by);
    return e;
}

adg_error *kern_gguf_parse(const void *data, uint64_t size, const char *what, kern_gguf **out)
{
    *out = NULL;
    kern_gguf *g = calloc(1, sizeof *g);
    if (!g)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    g->base = data;
    g->size = size;
    g->disk_bytes = size;
    g->path = strdup(what ? what : "buffer");
    adg_error *e = g->path ? parse(g, g->path) : adg_error_new(ADG_E_NOMEM, "out of memory");
    if (e) {
        kern_gguf_close(g);
        return e;
    }
    *out = g;
    return NULL;
}

adg_error *kern_gguf_open(const char *path, kern_gguf **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        return adg_error_hint(adg_error_errno(err == EACCES || err == EPERM ? ADG_E_PERMISSION : ADG_E_IO, err,
                                              "cannot open model %s", path),
                              err == ENOENT ? "check the path, or create a model with 'amxdiag model create'"
                                            : "check the file's permissions");
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        close(fd);
        return adg_error_new(ADG_E_IO, "%s is not a regular file%s%s", path, err ? ": " : "", err ? strerror(err) : "");
    }
    if (st.st_size < 24) {
        close(fd);
        return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: truncated GGUF: %lld bytes, the header alone needs 24",
                                            path, (long long)st.st_size),
                              "the file is incomplete; fetch or create it again");
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (m == MAP_FAILED)
        return adg_error_errno(ADG_E_IO, err, "cannot map %s", path);
    kern_gguf *g;
    adg_error *e = kern_gguf_parse(m, (uint64_t)st.st_size, path, &g);
    if (e) {
        munmap(m, (size_t)st.st_size);
        return e;
    }
    g->mapped = true;
    g->disk_bytes = (uint64_t)st.st_blocks * 512u;
    *out = g;
    return NULL;
}

void kern_gguf_close(kern_gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].key);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free(g->path);
    free(g);
}

void kern_gguf_release(const kern_gguf *g, const kern_gguf_tensor *t)
{
    if (!g->mapped || !t || !t->data)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

const kern_gguf_kv *kern_gguf_find_kv(const kern_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const kern_gguf_tensor *kern_gguf_find_tensor(const kern_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

static adg_error *missing(const kern_gguf *g, const char *key)
{
    return adg_error_hint(adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' is missing", g->path, key),
                          "the file is not a complete model of a supported architecture (qwen3moe, llama)");
}

adg_error *kern_gguf_get_u64(const kern_gguf *g, const char *key, bool required, uint64_t *out)
{
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, key);
    if (!kv)
        return required ? missing(g, key) : NULL;
    switch (kv->type) {
    case KERN_GGUF_U8: case KERN_GGUF_U16: case KERN_GGUF_U32: case KERN_GGUF_U64:
        *out = kv->v.u;
        return NULL;
    case KERN_GGUF_I8: case KERN_GGUF_I16: case KERN_GGUF_I32: case KERN_GGUF_I64:
        if (kv->v.i < 0)
            return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' is negative (%lld)", g->path, key,
                                 (long long)kv->v.i);
        *out = (uint64_t)kv->v.i;
        return NULL;
    default:
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' has type %s, an integer was expected", g->path, key,
                             kern_gguf_vtype_name(kv->type));
    }
}

adg_error *kern_gguf_get_u32(const kern_gguf *g, const char *key, bool required, uint32_t *out)
{
    uint64_t v = *out;
    adg_error *e = kern_gguf_get_u64(g, key, required, &v);
    if (e)
        return e;
    if (v > UINT32_MAX)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' is %llu, too large", g->path, key,
                             (unsigned long long)v);
    *out = (uint32_t)v;
    return NULL;
}

adg_error *kern_gguf_get_f32(const kern_gguf *g, const char *key, bool required, float *out)
{
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, key);
    if (!kv)
        return required ? missing(g, key) : NULL;
    if (kv->type != KERN_GGUF_F32 && kv->type != KERN_GGUF_F64)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' has type %s, a float was expected", g->path, key,
                             kern_gguf_vtype_name(kv->type));
    *out = (float)kv->v.f;
    return NULL;
}

adg_error *kern_gguf_get_str(const kern_gguf *g, const char *key, bool required, char **out)
{
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, key);
    if (!kv)
        return required ? missing(g, key) : NULL;
    if (kv->type != KERN_GGUF_STRING)
        return adg_error_new(ADG_E_FORMAT, "%s: metadata '%s' has type %s, a string was expected", g->path, key,
                             kern_gguf_vtype_name(kv->type));
    char *s = strndup(kv->str.ptr, kv->str.len);
    if (!s)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    *out = s;
    return NULL;
}

bool kern_gguf_arr_str_next(const kern_gguf_kv *kv, uint64_t *pos, const uint8_t **cursor, kern_gguf_str *out)
{
    if (kv->type != KERN_GGUF_ARRAY || kv->arr_type != KERN_GGUF_STRING || *pos >= kv->arr_n)
        return false;
    if (*pos == 0)
        *cursor = kv->arr_data;
    /* Lengths were validated at parse time. */
    uint64_t len;
    memcpy(&len, *cursor, 8);
    out->ptr = (const char *)*cursor + 8;
    out->len = len;
    *cursor += 8 + len;
    (*pos)++;
    return true;
}

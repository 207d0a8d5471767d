/* GGUF v3 writer: metadata is serialised into memory as it is added (it is small next to
 * the tensors), tensor data goes straight to the file with pwrite, so that a model of
 * any size is written without holding it in memory.  The output is a temporary file
 * beside the target, renamed over it on commit (a streaming form of
 * adg_write_file_atomic, which needs the whole content in memory). */
#include "kernels/kern_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[KERN_GGUF_MAX_DIMS];
    uint64_t offset, nbytes;
} wtensor;

struct kern_gguf_writer {
    uint32_t alignment;
    uint8_t *kv;          /* serialised metadata */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    wtensor *t;
    size_t n_t, cap_t;
    uint64_t data_size;   /* aligned end of the last tensor */
    uint64_t data_offset, file_size;
    int fd;
    char *path, *tmp;
    bool committed;
};

adg_error *kern_gguf_writer_new(uint32_t alignment, kern_gguf_writer **out)
{
    *out = NULL;
    if (alignment == 0 || (alignment & (alignment - 1)))
        return adg_error_new(ADG_E_USAGE, "GGUF alignment %u is not a power of two", alignment);
    kern_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->alignment = alignment;
    w->fd = -1;
    *out = w;
    return NULL;
}

void kern_gguf_writer_free(kern_gguf_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp && !w->committed)
        unlink(w->tmp);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w->path);
    free(w->tmp);
    free(w);
}

static bool put(kern_gguf_writer *w, const void *p, size_t n)
{
    if (n == 0)
        return true;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        uint8_t *nb = realloc(w->kv, cap);
        if (!nb)
            return false;
        w->kv = nb;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return true;
}

static bool put_u32(kern_gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static bool put_u64(kern_gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static bool put_str(kern_gguf_writer *w, const char *s)
{
    size_t n = strlen(s);
    return put_u64(w, n) && put(w, s, n);
}

/* Starts a key: checks uniqueness, writes name and type. */
static adg_error *key(kern_gguf_writer *w, const char *k, uint32_t type)
{
    if (w->fd >= 0)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: metadata '%s' added after the header was written", k);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], k))
            return adg_error_new(ADG_E_INTERNAL, "GGUF writer: metadata key '%s' added twice", k);
    char **nk = realloc(w->keys, (w->n_kv + 1) * sizeof *nk);
    if (!nk)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->keys = nk;
    if (!(w->keys[w->n_kv] = strdup(k)))
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->n_kv++;
    if (!put_str(w, k) || !put_u32(w, type))
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    return NULL;
}

#define SCALAR_WRITER(fn, ctype, vt)                                     \
    adg_error *fn(kern_gguf_writer *w, const char *k, ctype v)           \
    {                                                                    \
        adg_error *e = key(w, k, vt);                                    \
        if (e)                                                           \
            return e;                                                    \
        return put(w, &v, sizeof v) ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory"); \
    }

SCALAR_WRITER(kern_gguf_w_u32, uint32_t, KERN_GGUF_U32)
SCALAR_WRITER(kern_gguf_w_i32, int32_t, KERN_GGUF_I32)
SCALAR_WRITER(kern_gguf_w_u64, uint64_t, KERN_GGUF_U64)
SCALAR_WRITER(kern_gguf_w_f32, float, KERN_GGUF_F32)

adg_error *kern_gguf_w_bool(kern_gguf_writer *w, const char *k, bool v)
{
    adg_error *e = key(w, k, KERN_GGUF_BOOL);
    uint8_t b = v;
    return e ? e : put(w, &b, 1) ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
}

adg_error *kern_gguf_w_str(kern_gguf_writer *w, const char *k, const char *v)
{
    adg_error *e = key(w, k, KERN_GGUF_STRING);
    return e ? e : put_str(w, v) ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
}

adg_error *kern_gguf_w_arr_str(kern_gguf_writer *w, const char *k, const char *const *v, size_t n)
{
    adg_error *e = key(w, k, KERN_GGUF_ARRAY);
    if (e)
        return e;
    bool ok = put_u32(w, KERN_GGUF_STRING) && put_u64(w, n);
    for (size_t i = 0; ok && i < n; i++)
        ok = put_str(w, v[i]);
    return ok ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
}

static adg_error *arr_fixed(kern_gguf_writer *w, const char *k, uint32_t et, const void *v, size_t es, size_t n)
{
    adg_error *e = key(w, k, KERN_GGUF_ARRAY);
    if (e)
        return e;
    bool ok = put_u32(w, et) && put_u64(w, n) && put(w, v, es * n);
    return ok ? NULL : adg_error_new(ADG_E_NOMEM, "out of memory");
}

adg_error *kern_gguf_w_arr_i32(kern_gguf_writer *w, const char *k, const int32_t *v, size_t n)
{
    return arr_fixed(w, k, KERN_GGUF_I32, v, 4, n);
}

adg_error *kern_gguf_w_arr_f32(kern_gguf_writer *w, const char *k, const float *v, size_t n)
{
    return arr_fixed(w, k, KERN_GGUF_F32, v, 4, n);
}

adg_error *kern_gguf_writer_add_tensor(kern_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                       const int64_t *ne, size_t *index)
{
    if (w->fd >= 0)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor '%s' added after the header was written", name);
    const kern_ggml_type_info *ti = kern_ggml_type(type);
    if (!ti)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor '%s' has unknown type %u", name, type);
    if (strlen(name) == 0 || strlen(name) > 63)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor name '%s' must be 1..63 bytes", name);
    if (n_dims == 0 || n_dims > KERN_GGUF_MAX_DIMS)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor '%s' has %u dimensions", name, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor '%s' added twice", name);
    wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t nb = 0;
    for (uint32_t d = 0; d < KERN_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0)
            return adg_error_new(ADG_E_INTERNAL, "GGUF writer: tensor '%s' dimension %u is %lld", name, d,
                                 (long long)t.ne[d]);
    }
    if (t.ne[0] % ti->blck)
        return adg_error_new(ADG_E_USAGE, "tensor '%s': row length %lld is not a multiple of %s's block of %u", name,
                             (long long)t.ne[0], ti->name, ti->blck);
    nb = (uint64_t)t.ne[0] / ti->blck * ti->bytes * (uint64_t)t.ne[1] * (uint64_t)t.ne[2] * (uint64_t)t.ne[3];
    t.nbytes = nb;
    t.offset = w->data_size;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt)
            return adg_error_new(ADG_E_NOMEM, "out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name)))
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    w->t[w->n_t] = t;
    if (index)
        *index = w->n_t;
    w->n_t++;
    w->data_size = (t.offset + nb + w->alignment - 1) / w->alignment * w->alignment;
    return NULL;
}

uint64_t kern_gguf_writer_tensor_nbytes(const kern_gguf_writer *w, size_t index)
{
    return index < w->n_t ? w->t[index].nbytes : 0;
}

uint64_t kern_gguf_writer_file_size(const kern_gguf_writer *w)
{
    return w->file_size;
}

static adg_error *write_all(kern_gguf_writer *w, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(w->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            return adg_error_hint(adg_error_errno(ADG_E_IO, err, "cannot write %s", w->path),
                                  err == ENOSPC || err == EFBIG ? "free disk space, write elsewhere, or use --sparse"
                                                                : "check the output location");
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return NULL;
}

adg_error *kern_gguf_writer_begin(kern_gguf_writer *w, const char *path)
{
    if (w->fd >= 0)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: begin called twice");
    char *d = strdup(path), *b = strdup(path);
    if (!d || !b || !(w->path = strdup(path))) {
        free(d);
        free(b);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    int n = asprintf(&w->tmp, "%s/.%s.tmp.%ld", dirname(d), basename(b), (long)getpid());
    free(d);
    free(b);
    if (n < 0) {
        w->tmp = NULL;
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    w->fd = open(w->tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int err = errno;
        free(w->tmp);
        w->tmp = NULL;
        return adg_error_hint(adg_error_errno(err == EACCES || err == EPERM ? ADG_E_PERMISSION : ADG_E_IO, err,
                                              "cannot create %s", path),
                              "check that the directory exists and is writable");
    }
    /* Header: magic, version, counts, metadata, tensor infos, padding. */
    uint8_t *kvs = w->kv;
    size_t kvs_len = w->kv_len;
    w->kv = NULL;
    w->kv_len = w->kv_cap = 0;
    bool ok = put_u32(w, KERN_GGUF_MAGIC) && put_u32(w, 3) && put_u64(w, w->n_t) && put_u64(w, w->n_kv) &&
              put(w, kvs, kvs_len);
    free(kvs);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        ok = put_str(w, t->name) && put_u32(w, t->n_dims);
        for (uint32_t dd = 0; ok && dd < t->n_dims; dd++)
            ok = put_u64(w, (uint64_t)t->ne[dd]);
        ok = ok && put_u32(w, t->type) && put_u64(w, t->offset);
    }
    uint8_t zero[64] = {0};
    while (ok && w->kv_len % w->alignment)
        ok = put(w, zero, 1);
    if (!ok)
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    (void)zero;
    w->data_offset = w->kv_len;
    w->file_size = w->data_offset + w->data_size;
    adg_error *e = write_all(w, w->kv, w->kv_len, 0);
    if (e)
        return e;
    if (ftruncate(w->fd, (off_t)w->file_size) != 0) {
        int err = errno;
        return adg_error_hint(adg_error_errno(ADG_E_IO, err, "cannot size %s to %llu bytes", path,
                                              (unsigned long long)w->file_size),
                              "the file system may not support files this large");
    }
    return NULL;
}

adg_error *kern_gguf_writer_pwrite(kern_gguf_writer *w, size_t index, uint64_t off, const void *buf, size_t len)
{
    if (w->fd < 0 || index >= w->n_t || off > w->t[index].nbytes || len > w->t[index].nbytes - off)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: write outside tensor %zu", index);
    return write_all(w, buf, len, w->data_offset + w->t[index].offset + off);
}

adg_error *kern_gguf_writer_commit(kern_gguf_writer *w)
{
    if (w->fd < 0)
        return adg_error_new(ADG_E_INTERNAL, "GGUF writer: commit before begin");
    if (fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
        return adg_error_errno(ADG_E_IO, errno, "cannot flush %s", w->path);
    if (close(w->fd) != 0) {
        w->fd = -1;
        return adg_error_errno(ADG_E_IO, errno, "cannot close %s", w->path);
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0)
        return adg_error_errno(ADG_E_IO, errno, "cannot rename the temporary file to %s", w->path);
    w->committed = true;
    return NULL;
}

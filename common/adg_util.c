#include "common/adg_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t adg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void adg_utc_iso8601(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

adg_error *adg_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    if (max_bytes == 0)
        max_bytes = 256u << 20;
    *data = NULL;
    if (len)
        *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return adg_error_errno(errno == EACCES || errno == EPERM ? ADG_E_PERMISSION : ADG_E_IO,
                               errno, "cannot open %s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return adg_error_new(ADG_E_NOMEM, "out of memory reading %s", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                close(fd);
                return adg_error_new(ADG_E_FORMAT, "%s is larger than %zu bytes", path, max_bytes);
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return adg_error_new(ADG_E_NOMEM, "out of memory reading %s", path);
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            free(buf);
            close(fd);
            return adg_error_errno(ADG_E_IO, err, "cannot read %s", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    if (len)
        *len = n;
    return NULL;
}

adg_error *adg_write_file_atomic(const char *path, const void *data, size_t len)
{
    char *dcopy = strdup(path), *bcopy = strdup(path);
    if (!dcopy || !bcopy) {
        free(dcopy);
        free(bcopy);
        return adg_error_new(ADG_E_NOMEM, "out of memory");
    }
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dirname(dcopy), basename(bcopy), (long)getpid());
    free(dcopy);
    free(bcopy);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return adg_error_new(ADG_E_USAGE, "output path too long: %s", path);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        return adg_error_hint(adg_error_errno(err == EACCES || err == EPERM ? ADG_E_PERMISSION : ADG_E_IO,
                                              err, "cannot create %s", path),
                              "check that the directory exists and is writable");
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(fd);
            unlink(tmp);
            return adg_error_hint(adg_error_errno(ADG_E_IO, err, "cannot write %s", path),
                                  err == ENOSPC || err == EFBIG ? "free disk space or write elsewhere"
                                                                 : "check the output location");
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return adg_error_errno(ADG_E_IO, err, "cannot flush %s", path);
    }
    if (close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return adg_error_errno(ADG_E_IO, err, "cannot close %s", path);
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return adg_error_errno(ADG_E_IO, err, "cannot replace %s", path);
    }
    return NULL;
}

void adg_sb_init(adg_strbuf *sb)
{
    memset(sb, 0, sizeof *sb);
}

static bool sb_reserve(adg_strbuf *sb, size_t extra)
{
    if (sb->failed)
        return false;
    if (sb->len + extra + 1 <= sb->cap)
        return true;
    size_t ncap = sb->cap ? sb->cap : 256;
    while (ncap < sb->len + extra + 1)
        ncap *= 2;
    char *nb = realloc(sb->buf, ncap);
    if (!nb) {
        sb->failed = true;
        return false;
    }
    sb->buf = nb;
    sb->cap = ncap;
    return true;
}

void adg_sb_append(adg_strbuf *sb, const char *s, size_t n)
{
    if (!sb_reserve(sb, n))
        return;
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void adg_sb_puts(adg_strbuf *sb, const char *s)
{
    adg_sb_append(sb, s, strlen(s));
}

void adg_sb_vprintf(adg_strbuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !sb_reserve(sb, (size_t)n))
        return;
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void adg_sb_printf(adg_strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    adg_sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

char *adg_sb_take(adg_strbuf *sb)
{
    char *s = sb->buf;
    if (!s)
        s = strdup("");
    adg_sb_init(sb);
    return s;
}

void adg_sb_free(adg_strbuf *sb)
{
    free(sb->buf);
    adg_sb_init(sb);
}

bool adg_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool adg_parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool adg_parse_double(const char *s, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool adg_grow(void *items, size_t *cap, size_t n, size_t elem, size_t first)
{
    if (n < *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : (first ? first : 16);
    void **p = items;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return false;
    *p = q;
    *cap = nc;
    return true;
}

char *adg_rstrip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

const char *adg_fmt_bytes(double bytes, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (fabs(bytes) >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f B", bytes);
    else
        snprintf(buf, len, "%.2f %s", bytes, units[u]);
    return buf;
}

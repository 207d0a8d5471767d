/* The injection protocol: encoder (async-signal-safe) and the validating stream parser. */
#include "profiler/cupti_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fixed layouts without hidden padding: what is written is exactly what is read. */
_Static_assert(sizeof(cupti_hello_rec) == 24, "hello layout");
_Static_assert(sizeof(cupti_kernel_rec) == 80, "kernel layout");
_Static_assert(sizeof(cupti_memcpy_rec) == 40, "memcpy layout");
_Static_assert(sizeof(cupti_memset_rec) == 40, "memset layout");
_Static_assert(sizeof(cupti_sync_rec) == 24, "sync layout");
_Static_assert(sizeof(cupti_launch_rec) == 136, "launch layout");
_Static_assert(sizeof(cupti_api_error_rec) == 40, "api_error layout");
_Static_assert(sizeof(cupti_alloc_rec) == 32, "alloc layout");
_Static_assert(sizeof(cupti_free_rec) == 16, "free layout");
_Static_assert(sizeof(cupti_note_rec) == 8, "note layout");
_Static_assert(sizeof(cupti_flush_rec) == 16, "flush layout");
_Static_assert(sizeof(cupti_meminfo_rec) == 32, "meminfo layout");
_Static_assert(sizeof(cupti_kmetric_rec) == 104, "kmetric layout");
_Static_assert(sizeof(cupti_mconfig_rec) == 32, "mconfig layout");
_Static_assert(sizeof(cupti_mstats_rec) == 56, "mstats layout");

/* Per type: fixed size and the offset of its name_len field (-1: no name). */
static const struct {
    const char *name;
    size_t size;
    long name_off;
} types[CUPTI_REC_TYPE_MAX + 1] = {
    [CUPTI_REC_HELLO] = {"hello", sizeof(cupti_hello_rec), -1},
    [CUPTI_REC_KERNEL] = {"kernel", sizeof(cupti_kernel_rec), (long)offsetof(cupti_kernel_rec, name_len)},
    [CUPTI_REC_MEMCPY] = {"memcpy", sizeof(cupti_memcpy_rec), -1},
    [CUPTI_REC_MEMSET] = {"memset", sizeof(cupti_memset_rec), -1},
    [CUPTI_REC_SYNC] = {"sync", sizeof(cupti_sync_rec), (long)offsetof(cupti_sync_rec, name_len)},
    [CUPTI_REC_LAUNCH] = {"launch", sizeof(cupti_launch_rec), (long)offsetof(cupti_launch_rec, name_len)},
    [CUPTI_REC_API_ERROR] = {"api_error", sizeof(cupti_api_error_rec), (long)offsetof(cupti_api_error_rec, name_len)},
    [CUPTI_REC_ALLOC] = {"alloc", sizeof(cupti_alloc_rec), (long)offsetof(cupti_alloc_rec, name_len)},
    [CUPTI_REC_FREE] = {"free", sizeof(cupti_free_rec), -1},
    [CUPTI_REC_NOTE] = {"note", sizeof(cupti_note_rec), (long)offsetof(cupti_note_rec, name_len)},
    [CUPTI_REC_FLUSH] = {"flush", sizeof(cupti_flush_rec), -1},
    [CUPTI_REC_MEMINFO] = {"meminfo", sizeof(cupti_meminfo_rec), -1},
    [CUPTI_REC_KMETRIC] = {"kmetric", sizeof(cupti_kmetric_rec), (long)offsetof(cupti_kmetric_rec, name_len)},
    [CUPTI_REC_MCONFIG] = {"mconfig", sizeof(cupti_mconfig_rec), (long)offsetof(cupti_mconfig_rec, name_len)},
    [CUPTI_REC_MSTATS] = {"mstats", sizeof(cupti_mstats_rec), -1},
};

size_t cupti_proto_fixed_size(uint32_t type)
{
    return type >= 1 && type <= CUPTI_REC_TYPE_MAX ? types[type].size : 0;
}

const char *cupti_rec_type_name(uint32_t type)
{
    return type >= 1 && type <= CUPTI_REC_TYPE_MAX ? types[type].name : "unknown";
}

uint32_t cupti_proto_name_len(uint32_t type, const void *fixed)
{
    if (!cupti_proto_fixed_size(type) || types[type].name_off < 0)
        return 0;
    uint32_t n;
    memcpy(&n, (const unsigned char *)fixed + types[type].name_off, sizeof n);
    return n;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put_u16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

size_t cupti_proto_encode(void *buf, size_t cap, cupti_rec_type type, const void *fixed, const char *name,
                          size_t name_len)
{
    size_t fs = cupti_proto_fixed_size(type);
    if (!fs)
        return 0;
    if (types[type].name_off < 0 || !name)
        name_len = 0;
    if (name_len > CUPTI_PROTO_MAX_NAME)
        name_len = CUPTI_PROTO_MAX_NAME;
    size_t total = CUPTI_PROTO_HEADER + fs + name_len;
    if (total > cap)
        return 0;
    unsigned char *p = buf;
    put_u32(p, CUPTI_PROTO_MAGIC);
    put_u16(p + 4, (uint16_t)CUPTI_PROTO_VERSION);
    put_u16(p + 6, (uint16_t)type);
    put_u32(p + 8, (uint32_t)(fs + name_len));
    memcpy(p + CUPTI_PROTO_HEADER, fixed, fs);
    if (types[type].name_off >= 0) {
        uint32_t nl = (uint32_t)name_len;
        memcpy(p + CUPTI_PROTO_HEADER + types[type].name_off, &nl, sizeof nl);
        if (name_len)
            memcpy(p + CUPTI_PROTO_HEADER + fs, name, name_len);
    }
    return total;
}

void cupti_parser_init(cupti_parser *p, cupti_frame_fn fn, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->fn = fn;
    p->ctx = ctx;
}

void cupti_parser_free(cupti_parser *p)
{
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}

__attribute__((format(printf, 2, 3))) static bool fail(cupti_parser *p, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->error, sizeof p->error, "injection stream corrupt at byte %llu (frame %llu): %s",
             (unsigned long long)p->offset, (unsigned long long)p->frames + 1, msg);
    p->failed = true;
    return false;
}

/* Validates and delivers the frame at buf[0]; returns its size, 0 when more bytes are
 * needed, (size_t)-1 when corrupt. */
static size_t one_frame(cupti_parser *p)
{
    if (p->len < CUPTI_PROTO_HEADER)
        return 0;
    uint32_t magic, plen;
    uint16_t version, type;
    memcpy(&magic, p->buf, 4);
    memcpy(&version, p->buf + 4, 2);
    memcpy(&type, p->buf + 6, 2);
    memcpy(&plen, p->buf + 8, 4);
    if (magic != CUPTI_PROTO_MAGIC)
        return fail(p, "bad magic 0x%08x (expected 0x%08x)", magic, CUPTI_PROTO_MAGIC), (size_t)-1;
    if (version != CUPTI_PROTO_VERSION)
        return fail(p, "protocol version %u, amxdiag speaks %u (injection library from another amxdiag build?)",
                    version, CUPTI_PROTO_VERSION),
               (size_t)-1;
    size_t fs = cupti_proto_fixed_size(type);
    if (!fs)
        return fail(p, "unknown record type %u", type), (size_t)-1;
    if (plen < fs || plen > fs + (types[type].name_off >= 0 ? CUPTI_PROTO_MAX_NAME : 0))
        return fail(p, "%s record of %u bytes (expected %zu to %zu)", cupti_rec_type_name(type), plen, fs,
                    fs + (types[type].name_off >= 0 ? CUPTI_PROTO_MAX_NAME : 0)),
               (size_t)-1;
    if (p->len < CUPTI_PROTO_HEADER + plen)
        return 0;
    const unsigned char *payload = p->buf + CUPTI_PROTO_HEADER;
    uint32_t nl = cupti_proto_name_len(type, payload);
    if ((size_t)nl != plen - fs)
        return fail(p, "%s record says its name has %u bytes, the frame holds %zu", cupti_rec_type_name(type), nl,
                    (size_t)(plen - fs)),
               (size_t)-1;
    cupti_frame f;
    memset(&f, 0, sizeof f);
    f.type = (cupti_rec_type)type;
    memcpy(&f.u, payload, fs);
    /* The name is copied out so that it can be NUL-terminated. */
    char name[CUPTI_PROTO_MAX_NAME + 1];
    memcpy(name, payload + fs, nl);
    name[nl] = 0;
    if (memchr(name, 0, nl))
        return fail(p, "%s record's name holds a NUL byte", cupti_rec_type_name(type)), (size_t)-1;
    f.name = name;
    f.name_len = nl;
    if (type == CUPTI_REC_MEMINFO && (f.u.meminfo.free_bytes > f.u.meminfo.total_bytes || f.u.meminfo.reserved))
        return fail(p, "meminfo record with %llu bytes free of %llu (reserved %u)",
                    (unsigned long long)f.u.meminfo.free_bytes, (unsigned long long)f.u.meminfo.total_bytes,
                    f.u.meminfo.reserved),
               (size_t)-1;
    if (type == CUPTI_REC_KMETRIC) {
        /* A counter value is finite and not negative (a percentage may exceed 100 a
         * little: CUPTI's peak is a sustained rate). */
        for (unsigned i = 0; i < CUPTI_KMETRIC_VALUES; i++) {
            double v = f.u.kmetric.v[i];
            if (v != v || v < 0 || v > 1e300)
                return fail(p, "kmetric record with value %u = %g", i, v), (size_t)-1;
        }
        if (f.u.kmetric.present >> CUPTI_KMETRIC_VALUES)
            return fail(p, "kmetric record with unknown metric bits 0x%x", f.u.kmetric.present), (size_t)-1;
    }
    if (type == CUPTI_REC_MSTATS && f.u.mstats.profiled > f.u.mstats.seen)
        return fail(p, "mstats record with %llu profiled launches of %llu seen",
                    (unsigned long long)f.u.mstats.profiled, (unsigned long long)f.u.mstats.seen),
               (size_t)-1;
    if (type == CUPTI_REC_LAUNCH && f.u.launch.n_ptr > CUPTI_PROTO_MAX_PTRS)
        return fail(p, "launch record with %u pointer arguments (at most %u)", f.u.launch.n_ptr,
                    CUPTI_PROTO_MAX_PTRS),
               (size_t)-1;
    p->fn(p->ctx, &f);
    p->frames++;
    return CUPTI_PROTO_HEADER + plen;
}

bool cupti_parser_feed(cupti_parser *p, const void *data, size_t len)
{
    if (p->failed)
        return false;
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 65536;
        while (cap < p->len + len)
            cap *= 2;
        unsigned char *nb = realloc(p->buf, cap);
        if (!nb)
            return fail(p, "out of memory");
        p->buf = nb;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    size_t pos = 0;
    for (;;) {
        /* Parse in place by sliding a view; compact once at the end. */
        unsigned char *save = p->buf;
        size_t save_len = p->len;
        p->buf = save + pos;
        p->len = save_len - pos;
        size_t n = one_frame(p);
        p->buf = save;
        p->len = save_len;
        if (n == (size_t)-1)
            return false;
        if (n == 0)
            break;
        pos += n;
        p->offset += n;
    }
    if (pos) {
        memmove(p->buf, p->buf + pos, p->len - pos);
        p->len -= pos;
    }
    return true;
}

bool cupti_parser_end(cupti_parser *p)
{
    if (p->failed)
        return false;
    if (p->len)
        return fail(p, "truncated: the stream ended inside a frame (%zu bytes of it), the process probably died "
                       "while writing",
                    p->len);
    return true;
}

const char *cupti_parser_error(const cupti_parser *p)
{
    return p->failed ? p->error : NULL;
}

const char *cupti_copy_kind_name(uint32_t kind)
{
    static const char *const n[] = {"other", "HtoD", "DtoH", "DtoD", "HtoH", "PtoP"};
    return kind < sizeof n / sizeof n[0] ? n[kind] : "other";
}

const char *cupti_flush_reason_name(uint32_t reason)
{
    static const char *const n[] = {"periodic", "context-destroy", "exit", "signal", "cuda-error"};
    return reason < sizeof n / sizeof n[0] ? n[reason] : "unknown";
}

bool cupti_error_is_fatal(int code)
{
    switch (code) {
    case 200: /* INVALID_IMAGE */
    case 209: /* NO_BINARY_FOR_GPU */
    case 218: /* INVALID_PTX */
    case 222: /* UNSUPPORTED_PTX_VERSION */
    case 700: /* ILLEGAL_ADDRESS */
    case 701: /* LAUNCH_OUT_OF_RESOURCES */
    case 702: /* LAUNCH_TIMEOUT */
    case 709: /* CONTEXT_IS_DESTROYED */
    case 710: /* ASSERT */
    case 714: /* HARDWARE_STACK_ERROR */
    case 715: /* ILLEGAL_INSTRUCTION */
    case 716: /* MISALIGNED_ADDRESS */
    case 717: /* INVALID_ADDRESS_SPACE */
    case 718: /* INVALID_PC */
    case 719: /* LAUNCH_FAILED */
    case 720: /* COOPERATIVE_LAUNCH_TOO_LARGE */
    case 999: /* UNKNOWN */
        return true;
    default:
        return false;
    }
}

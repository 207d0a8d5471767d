/* The injection protocol: round trips, frames split anywhere, and every kind of malformed
 * stream rejected cleanly with its offset. */
#include "adg_test.h"

#include <string.h>

#include "profiler/cupti_proto.h"

typedef struct seen {
    int n;
    cupti_frame last;
    char name[CUPTI_PROTO_MAX_NAME + 1];
    int types[64];
} seen;

static void on_frame(void *ctx, const cupti_frame *f)
{
    seen *s = ctx;
    if (s->n < 64)
        s->types[s->n] = f->type;
    s->n++;
    s->last = *f;
    memcpy(s->name, f->name, f->name_len + 1);
    s->last.name = s->name;
}

static size_t build_stream(unsigned char *buf, size_t cap)
{
    size_t n = 0;
    cupti_hello_rec h = {42, 130001, 13000, 3, 1000};
    n += cupti_proto_encode(buf + n, cap - n, CUPTI_REC_HELLO, &h, NULL, 0);
    cupti_launch_rec l;
    memset(&l, 0, sizeof l);
    l.seq = 1;
    l.grid[0] = 128;
    l.block[0] = 256;
    l.n_ptr = 2;
    l.ptr[0] = 0x7f0000000000ull;
    n += cupti_proto_encode(buf + n, cap - n, CUPTI_REC_LAUNCH, &l, "get_rows_f32", 12);
    cupti_kernel_rec k;
    memset(&k, 0, sizeof k);
    k.start_ns = 10;
    k.end_ns = 30;
    k.correlation = 7;
    n += cupti_proto_encode(buf + n, cap - n, CUPTI_REC_KERNEL, &k, "_Z3fooPf", 8);
    cupti_flush_rec f = {40, CUPTI_FLUSH_EXIT, 0};
    n += cupti_proto_encode(buf + n, cap - n, CUPTI_REC_FLUSH, &f, NULL, 0);
    return n;
}

static void test_roundtrip_and_split(void **st)
{
    (void)st;
    unsigned char buf[4096];
    size_t n = build_stream(buf, sizeof buf);
    assert_true(n > 0);
    /* Whole, then one byte at a time: the same four frames. */
    for (int mode = 0; mode < 2; mode++) {
        seen s;
        memset(&s, 0, sizeof s);
        cupti_parser p;
        cupti_parser_init(&p, on_frame, &s);
        if (mode == 0)
            assert_true(cupti_parser_feed(&p, buf, n));
        else
            for (size_t i = 0; i < n; i++)
                assert_true(cupti_parser_feed(&p, buf + i, 1));
        assert_true(cupti_parser_end(&p));
        assert_null(cupti_parser_error(&p));
        assert_int_equal(s.n, 4);
        assert_int_equal(s.types[0], CUPTI_REC_HELLO);
        assert_int_equal(s.types[1], CUPTI_REC_LAUNCH);
        assert_int_equal(s.types[2], CUPTI_REC_KERNEL);
        assert_int_equal(s.types[3], CUPTI_REC_FLUSH);
        cupti_parser_free(&p);
    }
    /* The kernel frame's payload comes back intact. */
    seen s;
    memset(&s, 0, sizeof s);
    cupti_parser p;
    cupti_parser_init(&p, on_frame, &s);
    cupti_kernel_rec k;
    memset(&k, 0, sizeof k);
    k.grid[1] = 5;
    k.regs = 96;
    size_t m = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_KERNEL, &k, "mul_mat_q", 9);
    assert_true(cupti_parser_feed(&p, buf, m));
    assert_int_equal(s.last.u.kernel.grid[1], 5);
    assert_int_equal(s.last.u.kernel.regs, 96);
    assert_string_equal(s.last.name, "mul_mat_q");
    cupti_parser_free(&p);
}

static void expect_corrupt(const unsigned char *buf, size_t n, const char *needle, bool at_end)
{
    seen s;
    memset(&s, 0, sizeof s);
    cupti_parser p;
    cupti_parser_init(&p, on_frame, &s);
    bool ok = cupti_parser_feed(&p, buf, n);
    if (at_end) {
        assert_true(ok);
        ok = cupti_parser_end(&p);
    }
    assert_false(ok);
    const char *err = cupti_parser_error(&p);
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
    /* Once corrupt, nothing more is accepted. */
    assert_false(cupti_parser_feed(&p, buf, n));
    cupti_parser_free(&p);
}

static void test_malformed(void **st)
{
    (void)st;
    unsigned char good[4096], buf[4096];
    size_t n = build_stream(good, sizeof good);
    size_t first = CUPTI_PROTO_HEADER + sizeof(cupti_hello_rec);

    memcpy(buf, good, n);
    buf[first] ^= 0xff; /* magic of the second frame */
    expect_corrupt(buf, n, "bad magic", false);
    expect_corrupt(buf, n, "byte 36", false); /* where: the second frame starts after 12 + 24 bytes */

    memcpy(buf, good, n);
    buf[4] = 9; /* version */
    expect_corrupt(buf, n, "protocol version 9", false);

    memcpy(buf, good, n);
    buf[6] = 77; /* type */
    expect_corrupt(buf, n, "unknown record type 77", false);

    memcpy(buf, good, n);
    uint32_t bad = 3; /* shorter than the hello struct */
    memcpy(buf + 8, &bad, 4);
    expect_corrupt(buf, n, "hello record of 3 bytes", false);

    memcpy(buf, good, n);
    bad = 0x7fffffff; /* huge */
    memcpy(buf + first + 8, &bad, 4);
    expect_corrupt(buf, n, "launch record of", false);

    /* name_len disagreeing with the frame length */
    memcpy(buf, good, n);
    uint32_t nl = 5;
    memcpy(buf + first + CUPTI_PROTO_HEADER + offsetof(cupti_launch_rec, name_len), &nl, 4);
    expect_corrupt(buf, n, "name has 5 bytes, the frame holds 12", false);

    /* a NUL inside a name */
    memcpy(buf, good, n);
    buf[first + CUPTI_PROTO_HEADER + sizeof(cupti_launch_rec) + 3] = 0;
    expect_corrupt(buf, n, "NUL byte", false);

    /* too many pointer arguments */
    memcpy(buf, good, n);
    uint32_t np = 9;
    memcpy(buf + first + CUPTI_PROTO_HEADER + offsetof(cupti_launch_rec, n_ptr), &np, 4);
    expect_corrupt(buf, n, "9 pointer arguments", false);

    /* cut inside the last frame */
    expect_corrupt(good, n - 3, "truncated", true);
    /* cut inside a header */
    expect_corrupt(good, 5, "truncated", true);
}

/* MEMINFO (type 12, device memory): a round trip, and the frames a reader must refuse. */
static void test_meminfo(void **st)
{
    (void)st;
    unsigned char buf[256];
    cupti_meminfo_rec m = {123, 10ull << 30, 80ull << 30, 1, 0};
    size_t n = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_MEMINFO, &m, "ignored", 7);
    assert_int_equal(n, CUPTI_PROTO_HEADER + sizeof m); /* no name: the name is dropped */
    assert_int_equal(cupti_proto_fixed_size(CUPTI_REC_MEMINFO), 32);
    assert_string_equal(cupti_rec_type_name(CUPTI_REC_MEMINFO), "meminfo");
    seen s;
    memset(&s, 0, sizeof s);
    cupti_parser p;
    cupti_parser_init(&p, on_frame, &s);
    for (size_t i = 0; i < n; i++) /* split anywhere */
        assert_true(cupti_parser_feed(&p, buf + i, 1));
    assert_true(cupti_parser_end(&p));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.last.type, CUPTI_REC_MEMINFO);
    assert_int_equal(s.last.u.meminfo.t_ns, 123);
    assert_int_equal(s.last.u.meminfo.free_bytes, 10ull << 30);
    assert_int_equal(s.last.u.meminfo.total_bytes, 80ull << 30);
    assert_int_equal(s.last.u.meminfo.device, 1);
    cupti_parser_free(&p);

    unsigned char bad[256];
    /* more free than total */
    memcpy(bad, buf, n);
    uint64_t big = 81ull << 30;
    memcpy(bad + CUPTI_PROTO_HEADER + offsetof(cupti_meminfo_rec, free_bytes), &big, 8);
    expect_corrupt(bad, n, "meminfo record with", false);
    /* the reserved field set */
    memcpy(bad, buf, n);
    uint32_t one = 1;
    memcpy(bad + CUPTI_PROTO_HEADER + offsetof(cupti_meminfo_rec, reserved), &one, 4);
    expect_corrupt(bad, n, "reserved 1", false);
    /* a meminfo frame with trailing bytes (it has no name) */
    memcpy(bad, buf, n);
    uint32_t len = (uint32_t)sizeof m + 4;
    memcpy(bad + 8, &len, 4);
    memset(bad + n, 'x', 4);
    expect_corrupt(bad, n + 4, "meminfo record of 36 bytes", false);
    /* a short one */
    memcpy(bad, buf, n);
    len = 16;
    memcpy(bad + 8, &len, 4);
    expect_corrupt(bad, CUPTI_PROTO_HEADER + 16, "meminfo record of 16 bytes", false);
    /* the type after it is still unknown */
    memcpy(bad, buf, n);
    uint16_t t16 = 16;
    memcpy(bad + 6, &t16, 2);
    expect_corrupt(bad, n, "unknown record type 16", false);
}

/* --gpu-metrics records: a kernel's values and the session's setup round-trip; a value
 * that is not a finite non-negative number, or an unknown role bit, is corrupt. */
static void test_kmetric(void **st)
{
    (void)st;
    unsigned char buf[512];
    cupti_mconfig_rec c = {5, 3, 0x3ff, 256, 0, 1, 0};
    size_t n = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_MCONFIG, &c, "GH100", 5);
    cupti_kmetric_rec k;
    memset(&k, 0, sizeof k);
    k.seq = 1;
    k.t_ns = 77;
    k.v[0] = 890000.0;  /* ns */
    k.v[1] = 2.42e9;    /* bytes read */
    k.present = 0x7;
    size_t kn = cupti_proto_encode(buf + n, sizeof buf - n, CUPTI_REC_KMETRIC, &k, "_Z4gemvPKfPf", 12);
    assert_int_equal(kn, CUPTI_PROTO_HEADER + sizeof k + 12);
    seen s;
    memset(&s, 0, sizeof s);
    cupti_parser p;
    cupti_parser_init(&p, on_frame, &s);
    assert_true(cupti_parser_feed(&p, buf, n + kn));
    assert_true(cupti_parser_end(&p));
    assert_int_equal(s.n, 2);
    assert_int_equal(s.types[0], CUPTI_REC_MCONFIG);
    assert_int_equal(s.last.type, CUPTI_REC_KMETRIC);
    assert_string_equal(s.last.name, "_Z4gemvPKfPf");
    assert_true(s.last.u.kmetric.v[1] == 2.42e9);
    assert_int_equal(s.last.u.kmetric.present, 7);
    cupti_parser_free(&p);

    unsigned char bad[512];
    double nan = 0.0 / 0.0, neg = -1.0;
    memcpy(bad, buf + n, kn);
    memcpy(bad + CUPTI_PROTO_HEADER + offsetof(cupti_kmetric_rec, v) + 2 * sizeof(double), &nan, sizeof nan);
    expect_corrupt(bad, kn, "kmetric record with value 2", false);
    memcpy(bad, buf + n, kn);
    memcpy(bad + CUPTI_PROTO_HEADER + offsetof(cupti_kmetric_rec, v), &neg, sizeof neg);
    expect_corrupt(bad, kn, "kmetric record with value 0 = -1", false);
    memcpy(bad, buf + n, kn);
    uint32_t bits = 1u << 12;
    memcpy(bad + CUPTI_PROTO_HEADER + offsetof(cupti_kmetric_rec, present), &bits, 4);
    expect_corrupt(bad, kn, "unknown metric bits 0x1000", false);

    /* The sampling's account: round trip, and more profiled launches than seen is corrupt. */
    cupti_mstats_rec ms = {9, 120, 40, 2600000000ull, 900000000ull, 2, 128, 0, 7};
    size_t mn = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_MSTATS, &ms, NULL, 0);
    assert_int_equal(mn, CUPTI_PROTO_HEADER + 56);
    memset(&s, 0, sizeof s);
    cupti_parser_init(&p, on_frame, &s);
    assert_true(cupti_parser_feed(&p, buf, mn));
    assert_int_equal(s.last.type, CUPTI_REC_MSTATS);
    assert_true(s.last.u.mstats.replay_ns == 2600000000ull);
    assert_int_equal(s.last.u.mstats.per_kernel, 2);
    cupti_parser_free(&p);
    ms.profiled = 121;
    mn = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_MSTATS, &ms, NULL, 0);
    expect_corrupt(buf, mn, "mstats record with 121 profiled launches of 120 seen", false);
}

static void test_encoder_limits(void **st)
{
    (void)st;
    unsigned char buf[CUPTI_PROTO_MAX_FRAME];
    char name[CUPTI_PROTO_MAX_NAME + 100];
    memset(name, 'k', sizeof name);
    cupti_launch_rec l;
    memset(&l, 0, sizeof l);
    size_t n = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_LAUNCH, &l, name, sizeof name);
    /* Cut to the maximum, so that the frame fits one atomic pipe write. */
    assert_int_equal(n, CUPTI_PROTO_HEADER + sizeof l + CUPTI_PROTO_MAX_NAME);
    assert_true(n <= 4096);
    assert_int_equal(cupti_proto_encode(buf, 10, CUPTI_REC_LAUNCH, &l, "x", 1), 0);
    assert_int_equal(cupti_proto_encode(buf, sizeof buf, (cupti_rec_type)99, &l, NULL, 0), 0);
    /* a type without a name drops one */
    cupti_free_rec f = {1, 2};
    n = cupti_proto_encode(buf, sizeof buf, CUPTI_REC_FREE, &f, "ignored", 7);
    assert_int_equal(n, CUPTI_PROTO_HEADER + sizeof f);
    assert_true(cupti_error_is_fatal(700));
    assert_true(cupti_error_is_fatal(209));
    assert_false(cupti_error_is_fatal(600));
    assert_false(cupti_error_is_fatal(1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_split),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_encoder_limits),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_kmetric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

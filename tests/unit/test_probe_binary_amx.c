/* probe --binary's AMX checks: the scanner on machine code bytes (llama.cpp's failing
 * sequence as GCC 12 built it, taken from the binary) and on ELF fixtures assembled at
 * build time (tests/fixtures/amxbin, tests/amxbin.cmake). */
#include "adg_test.h"

#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/binary_amx.h"

/* llama.cpp's AMX backend (ggml-cpu, GCC 12 -march=sapphirerapids), the code before its
 * only ldtilecfg: two stores to the frame, a thread-local flag test, then the block
 * zeroed and the palette byte stored; colsb and rows never are. */
static const uint8_t LLAMA_GCC12[] = {
    0x89, 0x94, 0x24, 0x98, 0x00, 0x00, 0x00,                   /* mov %edx,0x98(%rsp) */
    0x89, 0x84, 0x24, 0x9c, 0x00, 0x00, 0x00,                   /* mov %eax,0x9c(%rsp) */
    0x64, 0x80, 0x3c, 0x25, 0xc0, 0xfe, 0xff, 0xff, 0x00,       /* cmpb $0,%fs:-0x140 */
    0x75, 0x27,                                                 /* jne */
    0xc5, 0xf9, 0xef, 0xc0,                                     /* vpxor %xmm0,%xmm0,%xmm0 */
    0x62, 0xf1, 0xfd, 0x48, 0x7f, 0x44, 0x24, 0x03,             /* vmovdqa64 %zmm0,0xc0(%rsp) */
    0xc6, 0x84, 0x24, 0xc0, 0x00, 0x00, 0x00, 0x01,             /* movb $1,0xc0(%rsp) */
    0xc4, 0xe2, 0x78, 0x49, 0x84, 0x24, 0xc0, 0x00, 0x00, 0x00, /* ldtilecfg 0xc0(%rsp) */
    0x64, 0xc6, 0x04, 0x25, 0xc0, 0xfe, 0xff, 0xff, 0x01,       /* movb $1,%fs:-0x140 */
};

/* A working sequence: zero, palette, three colsb and three rows, then the tile code. */
static const uint8_t GOOD_STACK[] = {
    0x48, 0x83, 0xec, 0x48,                   /* sub $0x48,%rsp */
    0xc5, 0xf9, 0xef, 0xc0,                   /* vpxor */
    0x62, 0xf1, 0xfe, 0x48, 0x7f, 0x04, 0x24, /* vmovdqu64 %zmm0,(%rsp) */
    0xc6, 0x04, 0x24, 0x01,                   /* movb $1,(%rsp) */
    0x66, 0xc7, 0x44, 0x24, 0x10, 0x40, 0x00, /* movw $64,0x10(%rsp) */
    0x66, 0xc7, 0x44, 0x24, 0x12, 0x40, 0x00,
    0x66, 0xc7, 0x44, 0x24, 0x14, 0x40, 0x00,
    0xc6, 0x44, 0x24, 0x30, 0x10,             /* movb $16,0x30(%rsp) */
    0xc6, 0x44, 0x24, 0x31, 0x10,
    0xc6, 0x44, 0x24, 0x32, 0x10,
    0xc4, 0xe2, 0x78, 0x49, 0x04, 0x24,       /* ldtilecfg (%rsp) */
    0xc4, 0xe2, 0x7b, 0x4b, 0x04, 0x37,       /* tileloadd (%rdi,%rsi,1),%tmm0 */
    0xc4, 0xe2, 0x7b, 0x4b, 0x0c, 0x32,       /* tileloadd (%rdx,%rsi,1),%tmm1 */
    0xc4, 0xe2, 0x7b, 0x49, 0xd0,             /* tilezero %tmm2 */
    0xc4, 0xe2, 0x73, 0x5e, 0xd0,             /* tdpbssd %tmm1,%tmm0,%tmm2 */
    0xc4, 0xe2, 0x7a, 0x4b, 0x14, 0x31,       /* tilestored %tmm2,(%rcx,%rsi,1) */
    0xc4, 0xe2, 0x78, 0x49, 0xc0,             /* tilerelease */
    0x48, 0x83, 0xc4, 0x48,                   /* add $0x48,%rsp */
    0xc3,                                     /* ret */
};

static void test_llama_bytes(void **state)
{
    (void)state;
    amx_scan s;
    amx_scan_init(&s);
    ADG_ASSERT_OK(amx_scan_code(&s, LLAMA_GCC12, sizeof LLAMA_GCC12, 0x9faf93, NULL));
    assert_int_equal(s.counts.total, 1);
    assert_int_equal(s.counts.ldtilecfg, 1);
    assert_int_equal(s.nsites, 1);
    const amx_cfg_site *c = &s.sites[0];
    assert_int_equal(c->addr, 0x9fafc0);
    assert_int_equal(c->verdict, AMX_CFG_UNWRITTEN);
    assert_true(c->palette_known);
    assert_int_equal(c->palette, 1);
    assert_int_equal(c->state[0], AMX_BYTE_SET);
    for (int b = 1; b < 64; b++)
        assert_int_equal(c->state[b], AMX_BYTE_ZERO);
    /* The zeroing, then the palette store (program order) — the frame stores at 0x98/0x9c
     * are outside the block. */
    assert_int_equal(c->nstores, 2);
    assert_int_equal(c->stores[0].addr, 0x9fafb0);
    assert_true(c->stores[0].zero);
    assert_int_equal(c->stores[0].hi - c->stores[0].lo, 64);
    assert_int_equal(c->stores[1].addr, 0x9fafb8);
    assert_false(c->stores[1].zero);
    assert_non_null(strstr(c->insn, "ldtilecfg"));
    assert_int_equal(s.nperm, 0);
    amx_scan_free(&s);
}

static void test_good_bytes(void **state)
{
    (void)state;
    amx_scan s;
    amx_scan_init(&s);
    ADG_ASSERT_OK(amx_scan_code(&s, GOOD_STACK, sizeof GOOD_STACK, 0x1000, NULL));
    assert_int_equal(s.counts.total, 7);
    assert_int_equal(s.counts.tileloadd, 2);
    assert_int_equal(s.counts.tdp, 1);
    assert_int_equal(s.counts.tilezero, 1);
    assert_int_equal(s.counts.tilestored, 1);
    assert_int_equal(s.counts.tilerelease, 1);
    assert_int_equal(s.nsites, 1);
    const amx_cfg_site *c = &s.sites[0];
    assert_int_equal(c->verdict, AMX_CFG_WRITTEN);
    assert_int_equal(c->palette, 1);
    assert_int_equal(c->state[16], AMX_BYTE_SET);
    assert_int_equal(c->state[21], AMX_BYTE_SET);
    assert_int_equal(c->state[22], AMX_BYTE_ZERO);
    assert_int_equal(c->state[48], AMX_BYTE_SET);
    assert_int_equal(c->state[50], AMX_BYTE_SET);
    assert_int_equal(c->state[51], AMX_BYTE_ZERO);
    amx_scan_free(&s);
}

/* The same block with the rows/colsb stores cut out: the bug, with no help from data. */
static void test_good_bytes_without_stores(void **state)
{
    (void)state;
    uint8_t code[sizeof GOOD_STACK];
    size_t n = 0;
    memcpy(code, GOOD_STACK, 19); /* sub, vpxor, vmovdqu64, movb palette */
    n = 19;
    memcpy(code + n, GOOD_STACK + 19 + 21 + 15, sizeof GOOD_STACK - 19 - 21 - 15);
    n += sizeof GOOD_STACK - 19 - 21 - 15;
    amx_scan s;
    amx_scan_init(&s);
    ADG_ASSERT_OK(amx_scan_code(&s, code, n, 0x1000, NULL));
    assert_int_equal(s.nsites, 1);
    assert_int_equal(s.sites[0].verdict, AMX_CFG_UNWRITTEN);
    amx_scan_free(&s);
}

/* Garbage must neither crash nor invent sites out of nothing it cannot analyse. */
static void test_random_bytes(void **state)
{
    (void)state;
    size_t len = 1 << 16;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    /* Sprinkle ldtilecfg encodings so sites exist amid the noise. */
    static const uint8_t ld[] = {0xc4, 0xe2, 0x78, 0x49, 0x04, 0x24};
    for (size_t at = 1000; at + sizeof ld < len; at += 4099)
        memcpy(buf + at, ld, sizeof ld);
    amx_scan s;
    amx_scan_init(&s);
    ADG_ASSERT_OK(amx_scan_code(&s, buf, len, 0x400000, NULL));
    assert_true(s.insns > 0);
    for (size_t i = 0; i < s.nsites; i++)
        assert_true(s.sites[i].verdict <= AMX_CFG_UNKNOWN);
    amx_scan_free(&s);
    free(buf);
}

static char *fixture(const char *name)
{
    const char *b = getenv("BUILD_DIR");
    char *p = NULL;
    if (!b || asprintf(&p, "%s/tests/amxbin/%s", b, name) < 0)
        return NULL;
    if (access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

#define NEED_FIXTURE(var, name)                                                         \
    char *var = fixture(name);                                                          \
    if (!var) {                                                                         \
        ADG_SKIP("fixture %s not built (BUILD_DIR unset or the C compiler failed)", name); \
        return;                                                                         \
    }

static void scan_file(const char *path, amx_scan *s)
{
    bool applies = false;
    char machine[64];
    amx_scan_init(s);
    ADG_ASSERT_OK(binary_amx_scan(path, s, &applies, machine, sizeof machine));
    assert_true(applies);
}

static void test_fixture_good(void **state)
{
    (void)state;
    NEED_FIXTURE(path, "good");
    amx_scan s;
    scan_file(path, &s);
    assert_int_equal(s.counts.ldtilecfg, 8);
    assert_int_equal(s.counts.tileloadd, 2);
    assert_int_equal(s.counts.tdp, 1);
    assert_int_equal(s.counts.tilestored, 1);
    assert_int_equal(s.nperm, 1);
    assert_int_equal(s.nsites, 8);
    static const char *funcs[] = {"good_stack", "good_rodata", "good_lea", "good_copy",
                                  "good_memcpy", "good_repmovs", "good_data", "good_alias"};
    for (size_t i = 0; i < s.nsites; i++) {
        assert_string_equal(s.sites[i].func, funcs[i]);
        if (s.sites[i].verdict != AMX_CFG_WRITTEN)
            fail_msg("site %zu (%s): %s", i, funcs[i], s.sites[i].reason);
    }
    assert_true(s.sites[1].absolute);
    assert_string_equal(s.sites[1].data_section, ".rodata");
    assert_true(s.sites[2].absolute); /* lea cfg(%rip),%rax; ldtilecfg (%rax) */
    assert_string_equal(s.sites[6].data_section, ".data");
    amx_scan_free(&s);
    free(path);
}

static void check_bad(const char *name)
{
    char *path = fixture(name);
    if (!path) {
        ADG_SKIP("fixture %s not built", name);
        return;
    }
    amx_scan s;
    scan_file(path, &s);
    assert_int_equal(s.nsites, 3);
    assert_int_equal(s.nperm, 0);
    static const char *funcs[] = {"bad_avx512", "bad_sse", "bad_gpr"};
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(s.sites[i].func, funcs[i]);
        if (s.sites[i].verdict != AMX_CFG_UNWRITTEN)
            fail_msg("%s site %zu (%s): %s", name, i, funcs[i], s.sites[i].reason);
        assert_int_equal(s.sites[i].palette, 1);
    }
    amx_scan_free(&s);
    free(path);
}

static void test_fixture_bad(void **state)
{
    (void)state;
    check_bad("bad");
}

static void test_fixture_bad_object(void **state)
{
    (void)state;
    check_bad("bad.o");
}

static void test_fixture_bad_rodata(void **state)
{
    (void)state;
    NEED_FIXTURE(path, "bad_rodata");
    amx_scan s;
    scan_file(path, &s);
    assert_int_equal(s.nsites, 1);
    assert_int_equal(s.sites[0].verdict, AMX_CFG_UNWRITTEN);
    assert_string_equal(s.sites[0].data_section, ".rodata");
    assert_int_equal(s.nperm, 1);
    amx_scan_free(&s);
    free(path);
}

static void test_fixture_undecided(void **state)
{
    (void)state;
    NEED_FIXTURE(path, "undecided");
    amx_scan s;
    scan_file(path, &s);
    assert_int_equal(s.nsites, 8);
    for (size_t i = 0; i < s.nsites; i++)
        if (s.sites[i].verdict != AMX_CFG_UNKNOWN)
            fail_msg("site %zu (%s) is %s: %s", i, s.sites[i].func, amx_cfg_verdict_name(s.sites[i].verdict),
                     s.sites[i].reason);
    assert_non_null(strstr(s.sites[1].reason, ".bss"));
    assert_non_null(strstr(s.sites[2].reason, ".data"));
    assert_non_null(strstr(s.sites[3].reason, "base register"));
    assert_true(s.sites[5].palette_known);
    assert_int_equal(s.sites[5].palette, 0);
    assert_non_null(strstr(s.sites[5].reason, "init state"));
    assert_true(s.sites[6].palette_known); /* through mov $2,%eax; mov %al,(%rsp) */
    assert_int_equal(s.sites[6].palette, 2);
    assert_non_null(strstr(s.sites[7].reason, "rep stos"));
    amx_scan_free(&s);
    free(path);
}

static void test_fixture_noamx(void **state)
{
    (void)state;
    NEED_FIXTURE(path, "noamx");
    amx_scan s;
    scan_file(path, &s);
    assert_int_equal(s.counts.total, 0);
    assert_int_equal(s.nsites, 0);
    assert_true(s.insns >= 4);
    amx_scan_free(&s);
    free(path);
}

static void test_checks_report(void **state)
{
    (void)state;
    NEED_FIXTURE(path, "bad");
    probe_report rep;
    probe_report_init(&rep);
    ADG_ASSERT_OK(binary_amx_checks(&rep, 0, path, "bad"));
    const probe_check *c = probe_report_find(&rep, "binary.0.amx.cfg.0");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_FAIL);
    assert_non_null(c->remedy);
    assert_non_null(strstr(c->remedy, "GCC 12"));
    assert_non_null(strstr(c->evidence, "bad_avx512"));
    assert_string_equal(json_string_value(json_object_get(c->data, "verdict")), "unwritten");
    assert_int_equal(json_integer_value(json_object_get(c->data, "palette")), 1);
    c = probe_report_find(&rep, "binary.0.amx.permission");
    assert_non_null(c);
    assert_int_equal(c->status, PROBE_INFO);
    size_t counts[5];
    assert_true(probe_report_counts(&rep, counts));
    assert_int_equal(counts[PROBE_FAIL], 3);
    probe_report_free(&rep);
    free(path);
}

static void test_not_x86(void **state)
{
    (void)state;
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/text", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    amx_scan s;
    amx_scan_init(&s);
    bool applies = true;
    char machine[64];
    ADG_ASSERT_OK(binary_amx_scan(path, &s, &applies, machine, sizeof machine));
    assert_false(applies);
    assert_string_equal(machine, "not an ELF file");
    probe_report rep;
    probe_report_init(&rep);
    ADG_ASSERT_OK(binary_amx_checks(&rep, 0, path, "text"));
    assert_int_equal(rep.n, 0);
    probe_report_free(&rep);
    snprintf(path, sizeof path, "%s/missing", dir);
    adg_error *e = binary_amx_scan(path, &s, &applies, machine, sizeof machine);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
    amx_scan_free(&s);
    adg_test_rmtree(dir);
}

/* A file cut short: an error that names the file, or a scan of what is there; never a crash. */
static void test_truncated(void **state)
{
    (void)state;
    NEED_FIXTURE(src, "good");
    char *data = NULL;
    size_t len = 0;
    ADG_ASSERT_OK(adg_read_file(src, 1 << 24, &data, &len));
    char *dir = adg_test_tmpdir();
    assert_non_null(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/cut", dir);
    for (size_t cut = 64; cut < len; cut += len / 7) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fwrite(data, 1, cut, f);
        fclose(f);
        amx_scan s;
        amx_scan_init(&s);
        bool applies;
        char machine[64];
        adg_error *e = binary_amx_scan(path, &s, &applies, machine, sizeof machine);
        if (e) {
            assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
            adg_error_free(e);
        }
        amx_scan_free(&s);
    }
    free(data);
    adg_test_rmtree(dir);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_bytes),       cmocka_unit_test(test_good_bytes),
        cmocka_unit_test(test_good_bytes_without_stores), cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_fixture_good),      cmocka_unit_test(test_fixture_bad),
        cmocka_unit_test(test_fixture_bad_object), cmocka_unit_test(test_fixture_bad_rodata),
        cmocka_unit_test(test_fixture_undecided), cmocka_unit_test(test_fixture_noamx),
        cmocka_unit_test(test_checks_report),     cmocka_unit_test(test_not_x86),
        cmocka_unit_test(test_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

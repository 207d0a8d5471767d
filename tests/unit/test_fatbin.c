/* The fatbin parser against the committed nvcc-built fixtures (tests/fixtures/fatbin),
 * the fixtures the build makes with nvcc when it is present (<build>/tests/fatbin), the
 * LZ decoder on hand-made streams, and mutated/truncated input (run under ASan in CI). */
#include "adg_test.h"

#include <string.h>
#include <unistd.h>

#include "common/adg_util.h"
#include "probe/fatbin.h"

static char *fixture(const char *name)
{
    const char *dir = getenv("FIXTURES");
    char *p = NULL;
    if (asprintf(&p, "%s/fatbin/%s", dir && *dir ? dir : "tests/fixtures", name) < 0)
        return NULL;
    return p;
}

static void load(const char *name, fatbin_list *l)
{
    char *p = fixture(name);
    assert_non_null(p);
    ADG_ASSERT_OK(fatbin_read_file(p, l));
    free(p);
}

static void test_sm120a_only(void **state)
{
    (void)state;
    fatbin_list l;
    load("sm_120a.fatbin", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.ncontainers, 1);
    fatbin_entry *e = &l.v[0];
    assert_int_equal(e->kind, FATBIN_KIND_ELF);
    assert_int_equal(e->arch, 120);
    assert_int_equal(e->variant, 'a');
    assert_true(e->decoded);
    assert_int_equal(e->elf_abi, 8);
    assert_int_equal(e->elf_sm, 120);
    char nm[32];
    assert_string_equal(fatbin_entry_name(e, nm, sizeof nm), "sm_120a");
    fatbin_list_free(&l);
}

static void test_ptx_only_zstd(void **state)
{
    (void)state;
    fatbin_list l;
    load("compute_120.fatbin", &l);
    assert_int_equal(l.n, 1);
    fatbin_entry *e = &l.v[0];
    assert_int_equal(e->kind, FATBIN_KIND_PTX);
    assert_int_equal(e->arch, 120);
    assert_int_equal(e->variant, 0);
    assert_int_equal(e->compression, FATBIN_COMP_ZSTD);
    assert_true(e->decoded);
    assert_int_equal(e->ptx_isa, 90);
    assert_string_equal(e->ptx_target, "sm_120");
    assert_true(e->size > e->stored_size);
    fatbin_list_free(&l);
}

static void test_sass_plus_ptx(void **state)
{
    (void)state;
    fatbin_list l;
    load("sm_90_compute_90.fatbin", &l);
    assert_int_equal(l.n, 2);
    int sass = -1, ptx = -1;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].kind == FATBIN_KIND_ELF)
            sass = (int)i;
        if (l.v[i].kind == FATBIN_KIND_PTX)
            ptx = (int)i;
    }
    assert_true(sass >= 0 && ptx >= 0);
    assert_int_equal(l.v[sass].arch, 90);
    assert_int_equal(l.v[sass].elf_sm, 90);
    assert_int_equal(l.v[sass].variant, 0);
    assert_int_equal(l.v[ptx].ptx_isa, 90);
    assert_string_equal(l.v[ptx].ptx_target, "sm_90");
    fatbin_list_free(&l);
}

static void test_compress_size(void **state)
{
    (void)state;
    fatbin_list l;
    load("compress_size.fatbin", &l);
    assert_int_equal(l.n, 2);
    for (size_t i = 0; i < l.n; i++) {
        assert_int_equal(l.v[i].compression, FATBIN_COMP_ZSTD);
        assert_true(l.v[i].decoded);
        if (l.v[i].kind == FATBIN_KIND_ELF)
            assert_int_equal(l.v[i].elf_sm, 90);
        else
            assert_int_equal(l.v[i].ptx_isa, 90);
    }
    fatbin_list_free(&l);
}

static void test_compress_speed_lz(void **state)
{
    (void)state;
    fatbin_list l;
    load("compress_speed.fatbin", &l);
    assert_int_equal(l.n, 2);
    bool saw_lz = false;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].compression == FATBIN_COMP_LZ) {
            saw_lz = true;
            if (!l.v[i].decoded)
                fail_msg("LZ entry not decoded: %s", l.v[i].decode_error);
            assert_int_equal(l.v[i].ptx_isa, 90);
            assert_string_equal(l.v[i].ptx_target, "sm_90");
        }
    }
    assert_true(saw_lz);
    fatbin_list_free(&l);
}

static void test_cubin_family_note(void **state)
{
    (void)state;
    fatbin_list l;
    load("sm_120f.cubin", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].kind, FATBIN_KIND_ELF);
    assert_int_equal(l.v[0].arch, 120);
    /* CUDA 13 cubins keep the variant out of e_flags (cuobjdump lists this one as sm_120);
     * only ptxas's note says how it was built. */
    assert_int_equal(l.v[0].variant, 0);
    assert_string_equal(l.v[0].ptxas_arch, "sm_120f");
    assert_string_equal(l.source, "cubin");
    fatbin_list_free(&l);
}

static void test_two_containers(void **state)
{
    (void)state;
    char *a = fixture("sm_120a.fatbin"), *b = fixture("sm_90_compute_90.fatbin");
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    ADG_ASSERT_OK(adg_read_file(a, 0, &da, &la));
    ADG_ASSERT_OK(adg_read_file(b, 0, &db, &lb));
    /* Zero padding between containers, as in .nv_fatbin sections. */
    size_t pad = 16, n = la + pad + lb;
    uint8_t *buf = calloc(1, n);
    memcpy(buf, da, la);
    memcpy(buf + la + pad, db, lb);
    fatbin_list l = {0};
    ADG_ASSERT_OK(fatbin_parse(buf, n, &l));
    assert_int_equal(l.ncontainers, 2);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].container, 0);
    assert_int_equal(l.v[1].container, 1);
    assert_int_equal(l.v[2].container, 1);
    fatbin_list_free(&l);
    free(buf);
    free(da);
    free(db);
    free(a);
    free(b);
}

static void test_lz_streams(void **state)
{
    (void)state;
    uint8_t out[64];
    /* "abc" literals, then a 9-byte match at offset 3 (overlapping), then "!" literal. */
    const uint8_t ok[] = {0x35, 'a', 'b', 'c', 3, 0, 0x10, '!'};
    ADG_ASSERT_OK(fatbin_lz_decompress(ok, sizeof ok, out, 13));
    assert_memory_equal(out, "abcabcabcabc!", 13);
    /* Extended literal length: 15 + 5 = 20 literals. */
    uint8_t ext[1 + 1 + 20];
    ext[0] = 0xf0;
    ext[1] = 5;
    memset(ext + 2, 'x', 20);
    ADG_ASSERT_OK(fatbin_lz_decompress(ext, sizeof ext, out, 20));
    adg_error *e;
    const uint8_t bad_off[] = {0x10, 'a', 9, 0};
    e = fatbin_lz_decompress(bad_off, sizeof bad_off, out, 10);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    adg_error_free(e);
    const uint8_t zero_off[] = {0x10, 'a', 0, 0};
    e = fatbin_lz_decompress(zero_off, sizeof zero_off, out, 10);
    assert_non_null(e);
    adg_error_free(e);
    const uint8_t overrun[] = {0xf0, 200, 'a'};
    e = fatbin_lz_decompress(overrun, sizeof overrun, out, sizeof out);
    assert_non_null(e);
    adg_error_free(e);
    const uint8_t too_long[] = {0x1f, 'a', 1, 0, 255, 255, 255, 0};
    e = fatbin_lz_decompress(too_long, sizeof too_long, out, sizeof out);
    assert_non_null(e);
    adg_error_free(e);
    const uint8_t short_out[] = {0x30, 'a', 'b', 'c'};
    e = fatbin_lz_decompress(short_out, sizeof short_out, out, 5);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "declares 5"));
    adg_error_free(e);
    const uint8_t unterminated_ext[] = {0xf0, 255, 255};
    e = fatbin_lz_decompress(unterminated_ext, sizeof unterminated_ext, out, sizeof out);
    assert_non_null(e);
    adg_error_free(e);
}

static void test_bad_files(void **state)
{
    (void)state;
    fatbin_list l;
    adg_error *e = fatbin_read_file("/nonexistent/amxdiag/x.fatbin", &l);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
    char *src = fixture("fixture.cu");
    e = fatbin_read_file(src, &l);
    free(src);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    assert_non_null(strstr(adg_error_msg(e), "neither an ELF file nor a CUDA fatbin"));
    adg_error_free(e);
    /* An ELF file without device code (this test program) is fine: no entries. */
    ADG_ASSERT_OK(fatbin_read_file("/proc/self/exe", &l));
    assert_int_equal(l.n, 0);
    assert_non_null(strstr(l.source, "without a .nv_fatbin"));
    fatbin_list_free(&l);
}

/* Truncations at every length and deterministic byte mutations of every fixture: the
 * parser returns an error or a list, never reads out of bounds (ASan) or crashes. */
static void test_hostile_input(void **state)
{
    (void)state;
    static const char *names[] = {"sm_120a.fatbin", "compute_120.fatbin", "sm_90_compute_90.fatbin",
                                  "compress_size.fatbin", "compress_speed.fatbin"};
    uint32_t rng = 12345;
    size_t errors = 0, parsed = 0;
    for (size_t f = 0; f < ADG_ARRAY_LEN(names); f++) {
        char *p = fixture(names[f]);
        char *data = NULL;
        size_t len = 0;
        ADG_ASSERT_OK(adg_read_file(p, 0, &data, &len));
        free(p);
        for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 37)) {
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, data, cut);
            fatbin_list l = {0};
            adg_error *e = fatbin_parse(copy, cut, &l);
            if (e) {
                errors++;
                assert_non_null(adg_error_msg(e));
                adg_error_free(e);
            } else {
                parsed++;
            }
            fatbin_list_free(&l);
            free(copy);
        }
        uint8_t *copy = malloc(len);
        for (int iter = 0; iter < 3000; iter++) {
            memcpy(copy, data, len);
            int flips = 1 + (int)(rng % 4);
            for (int k = 0; k < flips; k++) {
                rng = rng * 1103515245u + 12345u;
                /* Mostly the headers, where the sizes live; sometimes the payload. */
                size_t at = (rng >> 8) % (iter % 3 ? (len < 256 ? len : 256) : len);
                rng = rng * 1103515245u + 12345u;
                copy[at] = (uint8_t)(rng >> 16);
            }
            fatbin_list l = {0};
            adg_error *e = fatbin_parse(copy, len, &l);
            if (e) {
                errors++;
                adg_error_free(e);
            } else {
                parsed++;
            }
            fatbin_list_free(&l);
        }
        free(copy);
        free(data);
    }
    assert_true(errors > 0);
    assert_true(parsed > 0);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Truncated and mutated ELF host binaries through libelf: an error or a list, never a
 * crash.  Uses the nvcc-built executable when there is one (it has a .nv_fatbin), else
 * this test program. */
static void test_hostile_elf(void **state)
{
    (void)state;
    const char *b = getenv("BUILD_DIR");
    char *src = NULL;
    if (b && *b && asprintf(&src, "%s/tests/fatbin/fatbin_host_exe", b) > 0 && access(src, R_OK) != 0) {
        free(src);
        src = NULL;
    }
    char *data = NULL;
    size_t len = 0;
    ADG_ASSERT_OK(adg_read_file(src ? src : "/proc/self/exe", 0, &data, &len));
    free(src);
    assert_true(len > 4096);
    char *dir = adg_test_tmpdir();
    char *path = NULL;
    assert_true(asprintf(&path, "%s/mutant", dir) > 0);
    uint64_t shoff = 0;
    memcpy(&shoff, data + 0x28, 8);
    uint32_t rng = 777;
    size_t errors = 0, ok = 0;
    for (int iter = 0; iter < 120; iter++) {
        size_t n = len;
        char *copy = malloc(len);
        memcpy(copy, data, len);
        if (iter < 20) {
            n = (size_t)((double)len * iter / 20.0); /* truncations */
        } else {
            for (int k = 0; k < 8; k++) {
                rng = rng * 1103515245u + 12345u;
                size_t at;
                if (k % 2 == 0 && shoff && shoff < len)
                    at = (size_t)shoff + (rng >> 8) % (len - (size_t)shoff); /* section headers */
                else
                    at = (rng >> 8) % 64;                                    /* ELF header */
                rng = rng * 1103515245u + 12345u;
                copy[at] = (char)(rng >> 16);
            }
        }
        write_file(path, copy, n);
        fatbin_list l;
        adg_error *e = fatbin_read_file(path, &l);
        if (e) {
            errors++;
            adg_error_free(e);
        } else {
            ok++;
            fatbin_list_free(&l);
        }
        free(copy);
    }
    assert_true(errors > 0);
    free(path);
    free(data);
    adg_test_rmtree(dir);
}

/* Fixtures made by nvcc at build time (tests/fatbin.cmake): run where they exist. */
static void test_build_fixtures(void **state)
{
    (void)state;
    const char *b = getenv("BUILD_DIR");
    if (!b || !*b)
        ADG_SKIP("BUILD_DIR not set");
    char *many = NULL, *exe = NULL;
    assert_true(asprintf(&many, "%s/tests/fatbin/many_arch.fatbin", b) > 0);
    assert_true(asprintf(&exe, "%s/tests/fatbin/fatbin_host_exe", b) > 0);
    if (access(many, R_OK) != 0) {
        free(many);
        free(exe);
        ADG_SKIP("no nvcc-built fixtures in %s/tests/fatbin (nvcc missing at build time)", b);
    }
    fatbin_list l;
    ADG_ASSERT_OK(fatbin_read_file(many, &l));
    /* SASS for every arch nvcc 13.0 knows from sm_75, plus PTX compute_121. */
    static const unsigned want[] = {75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121};
    for (size_t w = 0; w < ADG_ARRAY_LEN(want); w++) {
        bool found = false;
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].kind == FATBIN_KIND_ELF && l.v[i].arch == want[w]) {
                found = true;
                if (!l.v[i].decoded)
                    fail_msg("sm_%u not decoded: %s", want[w], l.v[i].decode_error);
                assert_int_equal(l.v[i].elf_sm, want[w]);
            }
        if (!found)
            fail_msg("sm_%u missing from many_arch.fatbin", want[w]);
    }
    fatbin_list_free(&l);
    ADG_ASSERT_OK(fatbin_read_file(exe, &l));
    assert_true(l.n >= 2);
    assert_non_null(strstr(l.source, ".nv_fatbin"));
    fatbin_list_free(&l);
    free(many);
    free(exe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sm120a_only),     cmocka_unit_test(test_ptx_only_zstd),
        cmocka_unit_test(test_sass_plus_ptx),   cmocka_unit_test(test_compress_size),
        cmocka_unit_test(test_compress_speed_lz), cmocka_unit_test(test_cubin_family_note),
        cmocka_unit_test(test_lz_streams),      cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_two_containers),
        cmocka_unit_test(test_hostile_input),   cmocka_unit_test(test_build_fixtures),
        cmocka_unit_test(test_hostile_elf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* GGUF reader/writer: round trip, and hostile files (truncations at every offset, huge
 * counts, overlapping tensors, bad alignment, unknown types) give errors, not crashes. */
#include "adg_test.h"

#include <string.h>
#include <sys/stat.h>

#include "common/adg_util.h"
#include "kernels/kern_gguf.h"
#include "kernels/kern_quant.h"

/* Writes a small file: a few metadata types, an f32 [8 x 2] and a q4_0 [64 x 3] tensor. */
static void write_sample(const char *path, uint32_t alignment)
{
    kern_gguf_writer *w;
    ADG_ASSERT_OK(kern_gguf_writer_new(alignment, &w));
    const char *strs[] = {"alpha", "", "gamma"};
    int32_t ints[] = {1, -2, 3};
    float fl[] = {0.5f, 1.5f};
    ADG_ASSERT_OK(kern_gguf_w_str(w, "general.architecture", "llama"));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "general.alignment", alignment));
    ADG_ASSERT_OK(kern_gguf_w_u32(w, "t.u32", 4000000000u));
    ADG_ASSERT_OK(kern_gguf_w_i32(w, "t.i32", -7));
    ADG_ASSERT_OK(kern_gguf_w_u64(w, "t.u64", 1ull << 40));
    ADG_ASSERT_OK(kern_gguf_w_f32(w, "t.f32", 0.25f));
    ADG_ASSERT_OK(kern_gguf_w_bool(w, "t.bool", true));
    ADG_ASSERT_OK(kern_gguf_w_arr_str(w, "t.strs", strs, 3));
    ADG_ASSERT_OK(kern_gguf_w_arr_i32(w, "t.ints", ints, 3));
    ADG_ASSERT_OK(kern_gguf_w_arr_f32(w, "t.floats", fl, 2));
    adg_error *dup = kern_gguf_w_u32(w, "t.u32", 1); /* duplicate key refused */
    assert_non_null(dup);
    adg_error_free(dup);
    int64_t ne_a[2] = {8, 2}, ne_b[2] = {64, 3};
    size_t ia, ib;
    ADG_ASSERT_OK(kern_gguf_writer_add_tensor(w, "a.weight", KERN_TYPE_F32, 2, ne_a, &ia));
    ADG_ASSERT_OK(kern_gguf_writer_add_tensor(w, "b.weight", KERN_TYPE_Q4_0, 2, ne_b, &ib));
    adg_error *e = kern_gguf_writer_add_tensor(w, "c", KERN_TYPE_Q4_0, 2, (int64_t[]){33, 1}, NULL);
    assert_non_null(e); /* 33 is not a multiple of the block */
    adg_error_free(e);
    ADG_ASSERT_OK(kern_gguf_writer_begin(w, path));
    float a[16];
    for (int i = 0; i < 16; i++)
        a[i] = (float)i;
    ADG_ASSERT_OK(kern_gguf_writer_pwrite(w, ia, 0, a, sizeof a));
    uint8_t b[3 * 36];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)(i * 7);
    ADG_ASSERT_OK(kern_gguf_writer_pwrite(w, ib, 0, b, sizeof b));
    e = kern_gguf_writer_pwrite(w, ib, 100, b, 20); /* past the tensor */
    assert_non_null(e);
    adg_error_free(e);
    ADG_ASSERT_OK(kern_gguf_writer_commit(w));
    kern_gguf_writer_free(w);
}

static char *tmpdir;
static char path[512];

static int setup(void **state)
{
    (void)state;
    tmpdir = adg_test_tmpdir();
    snprintf(path, sizeof path, "%s/s.gguf", tmpdir);
    return tmpdir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    adg_test_rmtree(tmpdir);
    return 0;
}

static void test_roundtrip(void **state)
{
    (void)state;
    write_sample(path, 32);
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_open(path, &g));
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_tensors, 2);
    assert_int_equal(g->n_kv, 10);
    assert_int_equal(g->alignment, 32);
    assert_int_equal(g->data_offset % 32, 0);
    uint32_t u;
    uint64_t u64;
    float f;
    char *s;
    ADG_ASSERT_OK(kern_gguf_get_u32(g, "t.u32", true, &u));
    assert_int_equal(u, 4000000000u);
    ADG_ASSERT_OK(kern_gguf_get_u64(g, "t.u64", true, &u64));
    assert_int_equal(u64, 1ull << 40);
    ADG_ASSERT_OK(kern_gguf_get_f32(g, "t.f32", true, &f));
    assert_true(f == 0.25f);
    ADG_ASSERT_OK(kern_gguf_get_str(g, "general.architecture", true, &s));
    assert_string_equal(s, "llama");
    free(s);
    adg_error *e = kern_gguf_get_u32(g, "t.i32", true, &u); /* negative */
    assert_non_null(e);
    adg_error_free(e);
    e = kern_gguf_get_u32(g, "nope", true, &u);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "'nope' is missing"));
    adg_error_free(e);
    u = 9;
    ADG_ASSERT_OK(kern_gguf_get_u32(g, "nope", false, &u));
    assert_int_equal(u, 9);
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, "t.strs");
    assert_non_null(kv);
    uint64_t pos = 0;
    const uint8_t *cur = NULL;
    kern_gguf_str str;
    const char *want[] = {"alpha", "", "gamma"};
    int n = 0;
    while (kern_gguf_arr_str_next(kv, &pos, &cur, &str)) {
        assert_int_equal(str.len, strlen(want[n]));
        assert_memory_equal(str.ptr, want[n], str.len);
        n++;
    }
    assert_int_equal(n, 3);
    const kern_gguf_tensor *a = kern_gguf_find_tensor(g, "a.weight"), *b = kern_gguf_find_tensor(g, "b.weight");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->nbytes, 64);
    assert_int_equal(b->nbytes, 3 * 36);
    assert_int_equal(b->offset % 32, 0);
    float a3;
    memcpy(&a3, a->data + 12, 4);
    assert_true(a3 == 3.0f);
    assert_int_equal(b->data[5], 35);
    kern_gguf_close(g);
}

/* Reads the sample back into memory for patching. */
static uint8_t *load(size_t *len)
{
    char *data;
    ADG_ASSERT_OK(adg_read_file(path, 0, &data, len));
    return (uint8_t *)data;
}

static void expect_format_error(const uint8_t *buf, size_t len, const char *needle)
{
    kern_gguf *g = NULL;
    adg_error *e = kern_gguf_parse(buf, len, "x.gguf", &g);
    if (!e) {
        kern_gguf_close(g);
        fail_msg("a corrupt file was accepted (expected '%s')", needle);
    }
    if (needle && !strstr(adg_error_msg(e), needle))
        fail_msg("error '%s' does not mention '%s'", adg_error_msg(e), needle);
    assert_true(adg_error_kind(e) == ADG_E_FORMAT || adg_error_kind(e) == ADG_E_UNSUPPORTED);
    adg_error_free(e);
}

static void test_truncations(void **state)
{
    (void)state;
    write_sample(path, 32);
    size_t len;
    uint8_t *full = load(&len);
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_parse(full, len, "x", &g));
    /* The padding after the last tensor may go; nothing before it. */
    size_t needed = g->data_offset + g->tensors[1].offset + g->tensors[1].nbytes;
    kern_gguf_close(g);
    assert_true(needed < len);
    /* Every shorter prefix is refused with an error; each copy is exact-size on the heap
     * so that ASan catches a read past it. */
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        if (cut < needed) {
            expect_format_error(b, cut, NULL);
        } else {
            ADG_ASSERT_OK(kern_gguf_parse(b, cut, "x", &g));
            kern_gguf_close(g);
        }
        free(b);
    }
    expect_format_error(full, 200, "truncated");
    free(full);
}

static size_t find(const uint8_t *buf, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(buf + i, s, n))
            return i;
    fail_msg("'%s' not found", s);
    return 0;
}

static void patch_u64(uint8_t *b, size_t at, uint64_t v) { memcpy(b + at, &v, 8); }
static void patch_u32(uint8_t *b, size_t at, uint32_t v) { memcpy(b + at, &v, 4); }

static void test_hostile(void **state)
{
    (void)state;
    write_sample(path, 32);
    size_t len;
    uint8_t *full = load(&len), *b = malloc(len);
#define FRESH() memcpy(b, full, len)
    FRESH(); patch_u32(b, 0, 0x12345678); expect_format_error(b, len, "not a GGUF file");
    FRESH(); patch_u32(b, 4, 1); expect_format_error(b, len, "version 1");
    FRESH(); patch_u32(b, 4, 0x03000000); expect_format_error(b, len, "big-endian");
    FRESH(); patch_u64(b, 8, 1ull << 60); expect_format_error(b, len, "tensor count");
    FRESH(); patch_u64(b, 16, 1ull << 60); expect_format_error(b, len, "metadata count");
    FRESH(); patch_u64(b, 16, 11); expect_format_error(b, len, NULL); /* one entry too many */
    /* String length of the first key, huge. */
    FRESH(); patch_u64(b, 24, 1ull << 62); expect_format_error(b, len, "truncated");
    /* Array of strings with a huge count. */
    size_t at = find(full, len, "t.strs") + 6 + 4; /* after key: element type, count */
    FRESH(); patch_u64(b, at + 4, 1ull << 61); expect_format_error(b, len, "more than the file can hold");
    FRESH(); patch_u32(b, at, 9); expect_format_error(b, len, "element type 9");
    at = find(full, len, "t.ints") + 6 + 4;
    FRESH(); patch_u64(b, at + 4, 1ull << 61); expect_format_error(b, len, "more than the file can hold");
    /* Value type out of range. */
    at = find(full, len, "t.bool") + 6;
    FRESH(); patch_u32(b, at, 77); expect_format_error(b, len, "value type 77");
    /* Duplicate key: rename t.i32 to t.u32. */
    at = find(full, len, "t.i32");
    FRESH(); memcpy(b + at, "t.u32", 5); expect_format_error(b, len, "appears twice");
    /* Alignment not a power of two. */
    at = find(full, len, "general.alignment") + 17 + 4;
    FRESH(); patch_u32(b, at, 24); expect_format_error(b, len, "power of two");
    FRESH(); patch_u32(b, at - 4, KERN_GGUF_F32); expect_format_error(b, len, "general.alignment has type f32");
    /* Tensor infos: b.weight's dims / type / offset. */
    size_t tb = find(full, len, "b.weight") + 8; /* n_dims, ne0, ne1, type, offset */
    FRESH(); patch_u32(b, tb, 5); expect_format_error(b, len, "5 dimensions");
    FRESH(); patch_u64(b, tb + 4, 0); expect_format_error(b, len, "dimension 0 is 0");
    FRESH(); patch_u64(b, tb + 4, 33); expect_format_error(b, len, "not a multiple of q4_0's block");
    FRESH(); patch_u64(b, tb + 12, 1ull << 62); expect_format_error(b, len, "overflow");
    FRESH(); patch_u32(b, tb + 20, 99); expect_format_error(b, len, "type id 99");
    FRESH(); patch_u32(b, tb + 20, 4); expect_format_error(b, len, "type id 4");
    FRESH(); patch_u64(b, tb + 24, 0); expect_format_error(b, len, "overlap");
    FRESH(); patch_u64(b, tb + 24, 48); expect_format_error(b, len, "not a multiple of the alignment");
    FRESH(); patch_u64(b, tb + 24, 1ull << 40); expect_format_error(b, len, "past the end of the file");
    FRESH(); patch_u64(b, tb + 24, UINT64_MAX - 31); expect_format_error(b, len, "past the end of the file");
    size_t ta = find(full, len, "a.weight");
    FRESH(); memcpy(b + ta, "b", 1); expect_format_error(b, len, "appears twice");
    /* A NUL inside a tensor name. */
    FRESH(); b[ta + 1] = 0; expect_format_error(b, len, "NUL");
    /* A type amxdiag cannot compute still parses, and is named. */
    FRESH();
    patch_u32(b, tb + 20, 12); /* q4_K: block of 256 -> ne0 = 64 is not a multiple */
    expect_format_error(b, len, "q4_K's block of 256");
    FRESH();
    patch_u32(b, tb + 20, 20); /* iq4_nl: same block size as q4_0 */
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_parse(b, len, "x", &g));
    assert_string_equal(kern_ggml_type_name(g->tensors[1].type), "iq4_nl");
    assert_false(kern_ggml_type_supported(g->tensors[1].type));
    assert_int_equal(g->tensors[1].nbytes, 108);
    kern_gguf_close(g);
#undef FRESH
    free(b);
    free(full);
}

static void test_types_and_files(void **state)
{
    (void)state;
    assert_string_equal(kern_ggml_type_name(14), "q6_K");
    assert_string_equal(kern_ggml_type_name(23), "iq4_xs");
    assert_string_equal(kern_ggml_type_name(30), "bf16");
    assert_string_equal(kern_ggml_type_name(500), "type 500");
    assert_null(kern_ggml_type(4));
    assert_int_equal(kern_ggml_type(KERN_TYPE_Q8_0)->bytes, 34);
    assert_true(kern_ggml_type_supported(KERN_TYPE_BF16));
    /* Sizes agree with the quantizer's. */
    const kern_type mine[] = {KERN_TYPE_F32, KERN_TYPE_F16, KERN_TYPE_Q4_0, KERN_TYPE_Q8_0, KERN_TYPE_BF16};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(kern_ggml_type(mine[i])->bytes * (256 / kern_ggml_type(mine[i])->blck),
                         kern_row_size(mine[i], 256));

    char p[600];
    kern_gguf *g;
    snprintf(p, sizeof p, "%s/missing.gguf", tmpdir);
    adg_error *e = kern_gguf_open(p, &g);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
    snprintf(p, sizeof p, "%s/short.gguf", tmpdir);
    ADG_ASSERT_OK(adg_write_file_atomic(p, "GGUF", 4));
    e = kern_gguf_open(p, &g);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "truncated"));
    adg_error_free(e);
    e = kern_gguf_open(tmpdir, &g);
    assert_non_null(e);
    adg_error_free(e);

    /* Alignment 64 is honoured; an unused writer leaves no file behind. */
    write_sample(path, 64);
    ADG_ASSERT_OK(kern_gguf_open(path, &g));
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(g->tensors[1].offset % 64, 0);
    kern_gguf_close(g);
    kern_gguf_writer *w;
    ADG_ASSERT_OK(kern_gguf_writer_new(32, &w));
    snprintf(p, sizeof p, "%s/aborted.gguf", tmpdir);
    ADG_ASSERT_OK(kern_gguf_writer_add_tensor(w, "x", KERN_TYPE_F32, 1, (int64_t[]){4}, NULL));
    ADG_ASSERT_OK(kern_gguf_writer_begin(w, p));
    kern_gguf_writer_free(w);
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);
    e = kern_gguf_writer_new(3, &w);
    assert_non_null(e);
    adg_error_free(e);
}

/* Random byte mutations of the sample's header and metadata: every parse either fails
 * with an error or yields a file whose every string and tensor byte lies inside the
 * buffer (the copy is exact-size on the heap, so ASan sees any read past it). */
static void test_mutations(void **state)
{
    (void)state;
    write_sample(path, 32);
    size_t len;
    uint8_t *full = load(&len);
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_parse(full, len, "x", &g));
    size_t header = (size_t)g->data_offset;
    kern_gguf_close(g);
    uint64_t rng = 0x1234567;
    int accepted = 0;
    for (int iter = 0; iter < 4000; iter++) {
        uint8_t *b = malloc(len);
        memcpy(b, full, len);
        int flips = 1 + (int)(rng % 4);
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % header;
            uint8_t v = (uint8_t)(rng >> 13);
            b[at] = (rng >> 7) & 1 ? v : (uint8_t)(b[at] ^ (1u << (v & 7)));
        }
        adg_error *e = kern_gguf_parse(b, len, "m", &g);
        if (e) {
            assert_non_null(adg_error_msg(e));
            adg_error_free(e);
        } else {
            accepted++;
            volatile uint8_t sink = 0;
            for (uint64_t i = 0; i < g->n_kv; i++) {
                const kern_gguf_kv *kv = &g->kv[i];
                uint64_t pos = 0;
                const uint8_t *cur = NULL;
                kern_gguf_str str;
                while (kern_gguf_arr_str_next(kv, &pos, &cur, &str))
                    if (str.len)
                        sink ^= (uint8_t)str.ptr[str.len - 1];
            }
            for (uint64_t i = 0; i < g->n_tensors; i++)
                if (g->tensors[i].nbytes)
                    sink ^= g->tensors[i].data[0] ^ g->tensors[i].data[g->tensors[i].nbytes - 1];
            (void)sink;
            kern_gguf_close(g);
        }
        free(b);
    }
    printf("mutations: %d of 4000 still parse\n", accepted);
    free(full);
}

/* A file written by llama.cpp's own Python writer (gguf-py 0.19), committed as a fixture:
 * the reader agrees with an independent implementation, the other way round too. */
static void test_ggufpy_fixture(void **state)
{
    (void)state;
    const char *fx = getenv("FIXTURES");
    char p[1024];
    snprintf(p, sizeof p, "%s/gguf/ggufpy-mixed.gguf", fx && *fx ? fx : "tests/fixtures");
    kern_gguf *g;
    ADG_ASSERT_OK(kern_gguf_open(p, &g));
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_tensors, 4);
    uint32_t u;
    uint64_t u64;
    float f;
    char *s;
    ADG_ASSERT_OK(kern_gguf_get_u32(g, "t.u32", true, &u));
    assert_int_equal(u, 4000000000u);
    ADG_ASSERT_OK(kern_gguf_get_u64(g, "t.u64", true, &u64));
    assert_int_equal(u64, 1ull << 40);
    ADG_ASSERT_OK(kern_gguf_get_f32(g, "t.f64", true, &f));
    assert_true(f == 1.5f);
    ADG_ASSERT_OK(kern_gguf_get_str(g, "t.str", true, &s));
    assert_string_equal(s, "h\xc3\xa9llo");
    free(s);
    const kern_gguf_kv *kv = kern_gguf_find_kv(g, "t.ints");
    assert_non_null(kv);
    assert_int_equal(kv->arr_n, 3);
    const kern_gguf_tensor *b = kern_gguf_find_tensor(g, "b.weight"), *c = kern_gguf_find_tensor(g, "c.weight");
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(b->type, KERN_TYPE_Q8_0);
    assert_int_equal(b->ne[0], 64);
    assert_int_equal(b->ne[1], 2);
    float row[64];
    ADG_ASSERT_OK(kern_dequantize_row(KERN_TYPE_Q8_0, b->data + 68, row, 64));
    assert_true(row[0] == 0.0078125f && row[1] == 0.0234375f && row[2] == 0.0390625f);
    assert_string_equal(kern_ggml_type_name(c->type), "q4_K");
    assert_int_equal(c->nbytes, 144);
    const kern_gguf_tensor *a = kern_gguf_find_tensor(g, "a.weight");
    float a7;
    memcpy(&a7, a->data + 28, 4);
    assert_true(a7 == 7.0f);
    kern_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_types_and_files),
        cmocka_unit_test(test_ggufpy_fixture),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

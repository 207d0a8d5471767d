/* CUDA host-side logic that needs no GPU: the embedded images, the fatbin reader and
 * the driver's choice, launch geometry past 65,535 rows, the driver table (against the
 * toolkit's stub libcuda) and CUDA error mapping. */
#include "adg_test.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cuda/cuda_driver.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/kern_cuda_image.h"

static void test_embedded_fatbin(void **state)
{
    (void)state;
    if (!kern_cuda_built_with_kernels())
        ADG_SKIP("built without nvcc: no embedded CUDA kernels");
    const void *fb;
    size_t len, n = 0;
    kern_cuda_embedded_fatbin(&fb, &len);
    assert_non_null(fb);
    assert_true(len > 1000);
    assert_int_equal((uintptr_t)fb % 8, 0); /* the driver wants 8-byte aligned images */
    uint32_t magic;
    memcpy(&magic, fb, 4);
    assert_int_equal(magic, KERN_FATBIN_MAGIC);
    kern_fatbin_entry e[64];
    ADG_ASSERT_OK(kern_fatbin_parse(fb, len, e, 64, &n));
    assert_true(n >= 2 && n <= 64);
    /* every arch of the build list has SASS, and the newest has PTX */
    char archs[128];
    snprintf(archs, sizeof archs, "%s", kern_cuda_built_archs());
    int n_archs = 0;
    for (char *save = NULL, *a = strtok_r(archs, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        int want = atoi(a), found = 0;
        n_archs++;
        for (size_t i = 0; i < n; i++)
            found |= e[i].kind == 2 && e[i].arch == want;
        if (!found)
            fail_msg("no SASS for sm_%d in the embedded fatbin", want);
    }
    assert_true(n_archs >= 5);
    int ptx = 0;
    for (size_t i = 0; i < n; i++)
        if (e[i].kind == 1) {
            ptx = e[i].arch;
            assert_true(e[i].ptx_major >= 8);
        }
    assert_int_equal(ptx, kern_cuda_built_ptx_arch());
    assert_true(strstr(kern_cuda_built_archs(), "75") != NULL);
    assert_true(strstr(kern_cuda_built_archs(), "90") != NULL);
    assert_true(strstr(kern_cuda_built_archs(), "120") != NULL);
}

static void test_embedded_ptx(void **state)
{
    (void)state;
    if (!kern_cuda_built_with_kernels())
        ADG_SKIP("built without nvcc: no embedded CUDA kernels");
    const char *ptx;
    size_t len;
    kern_cuda_embedded_ptx(&ptx, &len);
    assert_non_null(ptx);
    assert_int_equal(ptx[len], '\0'); /* cuModuleLoadDataEx needs a NUL-terminated string */
    assert_int_equal(strlen(ptx), len);
    char target[32];
    snprintf(target, sizeof target, ".target sm_%d", kern_cuda_built_jit_ptx_arch());
    assert_non_null(strstr(ptx, target));
    assert_non_null(strstr(ptx, ".entry kern_get_rows_f32"));
    assert_non_null(strstr(ptx, ".entry kern_gemv_q4_0"));
}

/* The section that cuobjdump reads must hold exactly the bytes the loader uses. */
static void test_nv_fatbin_section(void **state)
{
    (void)state;
    if (!kern_cuda_built_with_kernels())
        ADG_SKIP("built without nvcc: no embedded CUDA kernels");
    assert_int_not_equal(elf_version(EV_CURRENT), EV_NONE);
    int fd = open("/proc/self/exe", O_RDONLY);
    assert_true(fd >= 0);
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    assert_non_null(elf);
    size_t shstrndx;
    assert_int_equal(elf_getshdrstrndx(elf, &shstrndx), 0);
    Elf_Scn *scn = NULL;
    int found = 0;
    const void *fb;
    size_t len;
    kern_cuda_embedded_fatbin(&fb, &len);
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        gelf_getshdr(scn, &sh);
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (name && strcmp(name, ".nv_fatbin") == 0) {
            Elf_Data *d = elf_getdata(scn, NULL);
            assert_non_null(d);
            assert_true(d->d_size >= len);
            assert_memory_equal(d->d_buf, fb, len);
            found = 1;
        }
    }
    elf_end(elf);
    close(fd);
    assert_true(found);
}

static void test_fatbin_parse_errors(void **state)
{
    (void)state;
    unsigned char buf[128] = {0};
    size_t n;
    adg_error *e = kern_fatbin_parse(buf, 8, NULL, 0, &n);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    adg_error_free(e);
    e = kern_fatbin_parse(buf, sizeof buf, NULL, 0, &n); /* zeros: bad magic */
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "magic"));
    adg_error_free(e);
    /* a container claiming more bytes than there are */
    uint32_t magic = KERN_FATBIN_MAGIC;
    uint16_t ver = 1, hs = 16;
    uint64_t sz = 4096;
    memcpy(buf, &magic, 4), memcpy(buf + 4, &ver, 2), memcpy(buf + 6, &hs, 2), memcpy(buf + 8, &sz, 8);
    e = kern_fatbin_parse(buf, sizeof buf, NULL, 0, &n);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "past the end"));
    adg_error_free(e);
    /* an entry running past its container */
    sz = 64;
    memcpy(buf + 8, &sz, 8);
    uint16_t kind = 2;
    uint32_t ehs = 64;
    uint64_t psz = 1000;
    memcpy(buf + 16, &kind, 2), memcpy(buf + 20, &ehs, 4), memcpy(buf + 24, &psz, 8);
    e = kern_fatbin_parse(buf, sizeof buf, NULL, 0, &n);
    assert_non_null(e);
    assert_non_null(strstr(adg_error_msg(e), "runs past"));
    adg_error_free(e);
}

static void test_fatbin_pick(void **state)
{
    (void)state;
    kern_fatbin_entry all[13] = {0};
    const int archs[] = {75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121};
    for (int i = 0; i < 12; i++)
        all[i] = (kern_fatbin_entry){.kind = 2, .arch = archs[i]};
    all[12] = (kern_fatbin_entry){.kind = 1, .arch = 121};
    int s, p;
    kern_fatbin_pick(all, 13, 9, 0, &s, &p);
    assert_int_equal(s, 90);
    assert_int_equal(p, 0); /* compute_121 PTX cannot JIT for 9.0 */
    kern_fatbin_pick(all, 13, 12, 0, &s, &p);
    assert_int_equal(s, 120);
    kern_fatbin_pick(all, 13, 12, 1, &s, &p);
    assert_int_equal(s, 121);
    assert_int_equal(p, 121);
    kern_fatbin_pick(all, 13, 8, 9, &s, &p);
    assert_int_equal(s, 89);
    kern_fatbin_pick(all, 13, 10, 3, &s, &p);
    assert_int_equal(s, 103);
    kern_fatbin_pick(all, 13, 7, 0, &s, &p); /* Volta: nothing */
    assert_int_equal(s, 0);
    assert_int_equal(p, 0);
    /* a binary built without sm_120 (the phase-2 report's case): SASS of another major
     * never runs; only PTX of an older arch saves it */
    kern_fatbin_entry old[3] = {{.kind = 2, .arch = 86}, {.kind = 2, .arch = 90}, {.kind = 1, .arch = 90}};
    kern_fatbin_pick(old, 3, 12, 0, &s, &p);
    assert_int_equal(s, 0);
    assert_int_equal(p, 90);
    kern_fatbin_pick(old, 2, 12, 0, &s, &p);
    assert_int_equal(s, 0);
    assert_int_equal(p, 0);
    /* a newer minor runs the older minor's SASS */
    kern_fatbin_pick(old, 3, 8, 9, &s, &p);
    assert_int_equal(s, 86);
}

static void test_geometry(void **state)
{
    (void)state;
    /* rows beyond 65,535 run on grid.x: never on grid.y */
    kern_cuda_geom g = kern_cuda_geom_rows(131072, 1, 256, 0x7fffffff);
    assert_int_equal(g.grid[0], 131072);
    assert_int_equal(g.grid[1], 1);
    assert_int_equal(g.grid[2], 1);
    assert_int_equal(g.block[0], 256);
    /* a device with a small grid.x limit: clamped, the kernels stride over the rest */
    g = kern_cuda_geom_rows(200000, 1, 128, 65535);
    assert_int_equal(g.grid[0], 65535);
    assert_int_equal(g.grid[1], 1);
    g = kern_cuda_geom_rows(4097, 4, 128, 0x7fffffff);
    assert_int_equal(g.grid[0], 1025);
    g = kern_cuda_geom_rows(0, 4, 128, 0x7fffffff);
    assert_int_equal(g.grid[0], 1);
    g = kern_cuda_geom_rows(5, 0, 0, 0);
    assert_int_equal(g.grid[0], 5);
    assert_int_equal(g.block[0], 1);
}

static void test_error_mapping(void **state)
{
    (void)state;
    assert_string_equal(kern_cuda_result_name(700), "CUDA_ERROR_ILLEGAL_ADDRESS");
    assert_string_equal(kern_cuda_result_name(209), "CUDA_ERROR_NO_BINARY_FOR_GPU");
    assert_string_equal(kern_cuda_result_name(0), "CUDA_SUCCESS");
    assert_string_equal(kern_cuda_result_name(12345), "CUDA_ERROR_12345");
    assert_non_null(strstr(kern_cuda_result_string(700), "illegal memory access"));
    adg_error *e = kern_cuda_errf(700, "get_rows: launch of %s", "kern_get_rows_f32");
    assert_int_equal(adg_error_kind(e), ADG_E_CUDA);
    assert_non_null(strstr(adg_error_msg(e), "get_rows: launch of kern_get_rows_f32: CUDA_ERROR_ILLEGAL_ADDRESS (700)"));
    assert_non_null(adg_error_remedy(e));
    assert_non_null(strstr(adg_error_remedy(e), "compute-sanitizer"));
    adg_error_free(e);
    e = kern_cuda_errf(222, "loading");
    assert_non_null(strstr(adg_error_remedy(e), "driver"));
    adg_error_free(e);
    e = kern_cuda_errf(12345, "x");
    assert_null(adg_error_remedy(e));
    assert_non_null(strstr(adg_error_msg(e), "CUDA_ERROR_12345 (12345)"));
    adg_error_free(e);
    char v[16];
    assert_string_equal(kern_cuda_version_str(13000, v, sizeof v), "13.0");
    assert_string_equal(kern_cuda_version_str(12080, v, sizeof v), "12.8");
    assert_string_equal(kern_cuda_version_str(0, v, sizeof v), "unknown");
}

static void test_driver_missing(void **state)
{
    (void)state;
    kern_cuda_driver d;
    adg_error *e = kern_cuda_driver_open("/nonexistent/libcuda.so.1", 1, &d);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_HARDWARE);
    assert_non_null(strstr(adg_error_msg(e), "no NVIDIA driver"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
    /* a library that is not libcuda: the first missing entry point is named */
    e = kern_cuda_driver_open("libm.so.6", 0, &d);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_UNSUPPORTED);
    assert_non_null(strstr(adg_error_msg(e), "lacks cuInit"));
    adg_error_free(e);
}

static void test_driver_stub(void **state)
{
    (void)state;
    const char *stub = ADG_TEST_CUDA_STUB;
    if (!stub[0] || access(stub, R_OK) != 0)
        ADG_SKIP("no CUDA toolkit stub libcuda.so to load");
    kern_cuda_driver d;
    /* every entry point of the table resolves in a CUDA 13 libcuda */
    ADG_ASSERT_OK(kern_cuda_driver_open(stub, 0, &d));
    assert_non_null(d.cuLaunchKernel);
    assert_non_null(d.cuMemAlloc);
    assert_non_null(d.cuEventElapsedTime);
    assert_non_null(d.cuModuleLoadDataEx);
    assert_non_null(strstr(d.path, "libcuda"));
    kern_cuda_driver_close(&d);
    /* and cuInit says what it is */
    adg_error *e = kern_cuda_driver_open(stub, 1, &d);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_CUDA);
    assert_non_null(strstr(adg_error_msg(e), "CUDA_ERROR_STUB_LIBRARY"));
    assert_non_null(strstr(adg_error_remedy(e), "stub"));
    adg_error_free(e);
}

static void test_fault_names(void **state)
{
    (void)state;
    const char *names[] = {"get_rows-oob", "matvec-oob", "async-before-get_rows"};
    for (size_t i = 0; i < 3; i++) {
        kern_cuda_fault f;
        assert_true(kern_cuda_fault_parse(names[i], &f));
        assert_int_not_equal(f, KERN_CUDA_FAULT_NONE);
        assert_string_equal(kern_cuda_fault_name(f), names[i]);
        assert_non_null(strstr(kern_cuda_fault_names(), names[i]));
    }
    kern_cuda_fault f;
    assert_false(kern_cuda_fault_parse("none", &f));
    assert_false(kern_cuda_fault_parse("get_rows", &f));
    assert_false(kern_cuda_fault_parse(NULL, &f));
}

static void test_open_without_gpu(void **state)
{
    (void)state;
    const kern_cuda_driver *d;
    adg_error *e = kern_cuda_driver_get(&d);
    if (!e)
        ADG_SKIP("a CUDA driver is present: the no-driver path is not testable here");
    adg_error_free(e);
    kern_cuda_ctx *c = NULL;
    e = kern_cuda_open(0, KERN_CUDA_LOAD_AUTO, &c);
    assert_non_null(e);
    assert_null(c);
    assert_true(adg_error_kind(e) == ADG_E_HARDWARE || adg_error_kind(e) == ADG_E_UNSUPPORTED ||
                adg_error_kind(e) == ADG_E_CUDA);
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_fatbin),  cmocka_unit_test(test_embedded_ptx),
        cmocka_unit_test(test_nv_fatbin_section), cmocka_unit_test(test_fatbin_parse_errors),
        cmocka_unit_test(test_fatbin_pick),      cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_error_mapping),    cmocka_unit_test(test_driver_missing),
        cmocka_unit_test(test_driver_stub),      cmocka_unit_test(test_fault_names),
        cmocka_unit_test(test_open_without_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

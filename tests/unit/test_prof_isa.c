/* The ISA classifier (Zydis), ELF symbols (libelf) and IP resolution, on functions
 * compiled with known instructions (tests/fixtures/isa/isa_funcs.c). Classification is
 * static: the AMX function is disassembled, never executed. */
#include "adg_test.h"

#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

#include "common/adg_error.h"
#include "profiler/prof_elf.h"
#include "profiler/prof_isa.h"
#include "profiler/prof_resolve.h"

/* Build-time paths, overridable for a copy of the build on another machine. */
static const char *fixture(void)
{
    const char *p = getenv("PROF_ISA_FIXTURE");
    return p && *p ? p : PROF_ISA_FIXTURE;
}

static const char *fixture_stripped(void)
{
    const char *p = getenv("PROF_ISA_FIXTURE_STRIPPED");
    return p && *p ? p : PROF_ISA_FIXTURE_STRIPPED;
}

static prof_isa_class classify_bytes(const uint8_t *b, size_t n)
{
    return prof_isa_classify(b, n, 0x1000, NULL);
}

static void test_raw_encodings(void **st)
{
    (void)st;
    static const uint8_t tdpbssd[] = {0xc4, 0xe2, 0x6b, 0x5e, 0xc1};
    static const uint8_t tilezero[] = {0xc4, 0xe2, 0x7b, 0x49, 0xc0};
    static const uint8_t vaddps_zmm[] = {0x62, 0xf1, 0x7c, 0x48, 0x58, 0xc1};
    static const uint8_t vpdpbusd_zmm[] = {0x62, 0xf2, 0x75, 0x48, 0x50, 0xc2};
    static const uint8_t vpdpbusd_vex[] = {0xc4, 0xe2, 0x75, 0x50, 0xc2};
    static const uint8_t kmovw[] = {0xc5, 0xf8, 0x92, 0xc8};
    static const uint8_t vaddps_ymm[] = {0xc5, 0xfc, 0x58, 0xc1};
    static const uint8_t addps[] = {0x0f, 0x58, 0xc1};
    static const uint8_t add_rax_rcx[] = {0x48, 0x01, 0xc8};
    static const uint8_t andn[] = {0xc4, 0xe2, 0x78, 0xf2, 0xc1};
    assert_int_equal(classify_bytes(tdpbssd, sizeof tdpbssd), PROF_ISA_AMX);
    assert_int_equal(classify_bytes(tilezero, sizeof tilezero), PROF_ISA_AMX);
    assert_int_equal(classify_bytes(vaddps_zmm, sizeof vaddps_zmm), PROF_ISA_AVX512);
    assert_int_equal(classify_bytes(vpdpbusd_zmm, sizeof vpdpbusd_zmm), PROF_ISA_AVX512);
    assert_int_equal(classify_bytes(vpdpbusd_vex, sizeof vpdpbusd_vex), PROF_ISA_AVX2);
    assert_int_equal(classify_bytes(kmovw, sizeof kmovw), PROF_ISA_AVX512);
    assert_int_equal(classify_bytes(vaddps_ymm, sizeof vaddps_ymm), PROF_ISA_AVX2);
    assert_int_equal(classify_bytes(addps, sizeof addps), PROF_ISA_SSE);
    assert_int_equal(classify_bytes(add_rax_rcx, sizeof add_rax_rcx), PROF_ISA_SCALAR);
    assert_int_equal(classify_bytes(andn, sizeof andn), PROF_ISA_SCALAR);
    assert_int_equal(classify_bytes(NULL, 0), PROF_ISA_SCALAR);
    /* nothing decodes */
    static const uint8_t junk[] = {0x0f, 0xff};
    assert_int_equal(classify_bytes(junk, 1), PROF_ISA_UNKNOWN);

    /* Mixed: the most advanced wins, and every class is counted. */
    uint8_t mix[64];
    size_t n = 0;
    memcpy(mix + n, add_rax_rcx, sizeof add_rax_rcx), n += sizeof add_rax_rcx;
    memcpy(mix + n, vaddps_ymm, sizeof vaddps_ymm), n += sizeof vaddps_ymm;
    memcpy(mix + n, tdpbssd, sizeof tdpbssd), n += sizeof tdpbssd;
    memcpy(mix + n, vaddps_zmm, sizeof vaddps_zmm), n += sizeof vaddps_zmm;
    prof_isa_counts c;
    memset(&c, 0, sizeof c);
    assert_int_equal(prof_isa_classify(mix, n, 0, &c), PROF_ISA_AMX);
    assert_int_equal(c.total, 4);
    assert_int_equal(c.n[PROF_ISA_AMX], 1);
    assert_int_equal(c.n[PROF_ISA_AVX512], 1);
    assert_int_equal(c.n[PROF_ISA_AVX2], 1);
    assert_int_equal(c.n[PROF_ISA_SCALAR], 1);

    /* Block: stops at the first ret. */
    uint8_t blk[32];
    n = 0;
    memcpy(blk + n, add_rax_rcx, sizeof add_rax_rcx), n += sizeof add_rax_rcx;
    blk[n++] = 0xc3; /* ret */
    memcpy(blk + n, vaddps_zmm, sizeof vaddps_zmm), n += sizeof vaddps_zmm;
    assert_int_equal(prof_isa_classify_block(blk, n, 0, 32), PROF_ISA_SCALAR);
    assert_int_equal(prof_isa_classify_block(blk + 4, n - 4, 0, 32), PROF_ISA_AVX512);

    /* Spin-wait loops: pause; mov eax,[rdi]; test eax,eax; je back; ret.  Every
     * instruction of the loop spins; the same loop with two NOPs for the PAUSE does not;
     * a loop whose start lies before the bytes given cannot be seen. */
    const uint8_t spin_loop[] = {0xf3, 0x90, 0x8b, 0x07, 0x85, 0xc0, 0x74, 0xf8, 0xc3};
    const uint8_t busy_loop[] = {0x90, 0x90, 0x8b, 0x07, 0x85, 0xc0, 0x74, 0xf8, 0xc3};
    for (size_t ip = 0; ip < 8; ip += 2) {
        assert_true(prof_isa_spins(spin_loop, sizeof spin_loop, ip, 0x1000 + ip));
        assert_false(prof_isa_spins(busy_loop, sizeof busy_loop, ip, 0x1000 + ip));
    }
    assert_false(prof_isa_spins(spin_loop + 4, sizeof spin_loop - 4, 0, 0x1004));
    assert_false(prof_isa_spins(spin_loop, sizeof spin_loop, 8, 0x1008));   /* the ret after it */
    const uint8_t jmp_fwd[] = {0xf3, 0x90, 0xeb, 0x00, 0x90, 0xc3};         /* pause; jmp +0 */
    assert_false(prof_isa_spins(jmp_fwd, sizeof jmp_fwd, 2, 0x1002));

    assert_string_equal(prof_isa_class_name(PROF_ISA_AMX), "amx");
    assert_int_equal(prof_isa_class_parse("avx512"), PROF_ISA_AVX512);
    assert_int_equal(prof_isa_class_parse("nope"), -1);
}

static prof_isa_class classify_sym(prof_elf *m, const char *name, prof_isa_counts *c)
{
    const prof_elf_sym *s = prof_elf_sym_by_name(m, name);
    if (!s) {
        print_error("symbol %s not found\n", name);
        fail();
    }
    size_t avail = 0;
    const uint8_t *code = prof_elf_code(m, s->addr, s->size, &avail);
    assert_non_null(code);
    assert_int_equal(avail, s->size);
    return prof_isa_classify(code, avail, s->addr, c);
}

static void test_fixture_functions(void **st)
{
    (void)st;
    prof_elf *m;
    ADG_ASSERT_OK(prof_elf_open(fixture(), &m));
    assert_true(prof_elf_has_symtab(m));
    prof_isa_counts c;
    memset(&c, 0, sizeof c);
    assert_int_equal(classify_sym(m, "isa_amx_func", &c), PROF_ISA_AMX);
    assert_true(c.n[PROF_ISA_AMX] >= 5); /* 2 loads, zero, dpbssd, store */
    assert_int_equal(classify_sym(m, "isa_avx512_func", NULL), PROF_ISA_AVX512);
    assert_int_equal(classify_sym(m, "isa_vnni512_func", NULL), PROF_ISA_AVX512);
    assert_int_equal(classify_sym(m, "isa_avxvnni_func", NULL), PROF_ISA_AVX2);
    assert_int_equal(classify_sym(m, "isa_avx2_func", NULL), PROF_ISA_AVX2);
    assert_int_equal(classify_sym(m, "isa_scalar_func", NULL), PROF_ISA_SCALAR);
    /* -mavx2 makes even _mm_add_ps VEX-encoded: the 128-bit "SSE" function is AVX code. */
    assert_int_equal(classify_sym(m, "isa_sse_func", NULL), PROF_ISA_AVX2);
    assert_non_null(prof_elf_sym_by_name(m, "isa_hidden_func")); /* .symtab keeps it */
    /* An address inside a function resolves to it. */
    const prof_elf_sym *s = prof_elf_sym_by_name(m, "isa_avx512_func");
    assert_ptr_equal(prof_elf_find_sym(m, s->addr + 1), s);
    prof_elf_close(m);

    ADG_ASSERT_OK(prof_elf_open(fixture_stripped(), &m));
    assert_false(prof_elf_has_symtab(m));
    assert_non_null(prof_elf_sym_by_name(m, "isa_amx_func")); /* exported: .dynsym */
    assert_null(prof_elf_sym_by_name(m, "isa_hidden_func"));
    prof_elf_close(m);
}

static void test_bad_files(void **st)
{
    (void)st;
    prof_elf *m = NULL;
    adg_error *e = prof_elf_open("/nonexistent/libnothing.so", &m);
    assert_non_null(e);
    assert_null(m);
    assert_int_equal(adg_error_kind(e), ADG_E_IO);
    adg_error_free(e);
    char *dir = adg_test_tmpdir();
    if (!dir) {
        fail_msg("no temporary directory");
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/notelf.so", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not an ELF file, but it is long enough to be looked at by libelf at all.\n", f);
    fclose(f);
    e = prof_elf_open(path, &m);
    assert_non_null(e);
    assert_int_equal(adg_error_kind(e), ADG_E_FORMAT);
    adg_error_free(e);
    adg_test_rmtree(dir);
}

/* Resolution through this process's own maps: a shared library loaded at a random base. */
static void test_resolve_live(void **st)
{
    (void)st;
    void *h = dlopen(fixture(), RTLD_NOW);
    void *hs = dlopen(fixture_stripped(), RTLD_NOW);
    assert_non_null(h);
    assert_non_null(hs);
    prof_resolver *r = prof_resolver_new();
    ADG_ASSERT_OK(prof_resolver_load_proc(r, getpid()));

    prof_isa_class block;
    int fi = prof_resolver_sample(r, getpid(), (uint64_t)(uintptr_t)dlsym(h, "isa_amx_func") + 4, &block);
    assert_true(fi >= 0);
    const prof_func *f = prof_resolver_func(r, fi);
    assert_string_equal(f->name, "isa_amx_func");
    assert_int_equal(f->cls, PROF_ISA_AMX);
    assert_true(f->resolved);
    assert_int_equal(f->samples, 1);

    fi = prof_resolver_sample(r, getpid(), (uint64_t)(uintptr_t)dlsym(h, "isa_avx512_func"), &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "isa_avx512_func");
    assert_int_equal(prof_resolver_func(r, fi)->cls, PROF_ISA_AVX512);
    /* Same function again: same entry, classified once. */
    int fi2 = prof_resolver_sample(r, getpid(), (uint64_t)(uintptr_t)dlsym(h, "isa_avx512_func") + 2, &block);
    assert_int_equal(fi, fi2);
    assert_int_equal(prof_resolver_func(r, fi)->samples, 2);

    /* Stripped: the hidden function has no symbol left -> the module's [unknown] bucket,
     * but its block is still classified from the file's bytes. */
    void *(*hidden_addr)(void) = (void *(*)(void))dlsym(hs, "isa_hidden_addr");
    assert_non_null(hidden_addr);
    fi = prof_resolver_sample(r, getpid(), (uint64_t)(uintptr_t)hidden_addr(), &block);
    f = prof_resolver_func(r, fi);
    assert_string_equal(f->name, "[unknown]");
    assert_false(f->resolved);
    assert_non_null(strstr(f->module, "prof_isa_fixture_stripped"));
    assert_int_not_equal(block, PROF_ISA_UNKNOWN);

    /* Maps forgotten (as after lost records): a miss re-reads /proc/PID/maps once per batch. */
    prof_resolver_exec(r, getpid());
    prof_resolver_next_batch(r);
    fi = prof_resolver_sample(r, getpid(), (uint64_t)(uintptr_t)dlsym(h, "isa_avx2_func"), &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "isa_avx2_func");

    /* An address in no mapping at all. */
    fi = prof_resolver_sample(r, getpid(), 0x10, &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "[unknown]");
    assert_int_equal(block, PROF_ISA_UNKNOWN);
    prof_resolver_free(r);
    dlclose(h);
    dlclose(hs);
}

/* Maps from records (a process that has exited): mmap, fork copies, exec forgets. */
static void test_resolve_records(void **st)
{
    (void)st;
    prof_elf *m;
    ADG_ASSERT_OK(prof_elf_open(fixture(), &m));
    const prof_elf_sym *s = prof_elf_sym_by_name(m, "isa_avx2_func");
    uint64_t sym = s->addr;
    prof_elf_close(m);
    prof_resolver *r = prof_resolver_new();
    const pid_t p = 999990, c = 999991;
    /* Map the whole file at 0x7f0000000000 (vaddr == offset for the fixture's text). */
    prof_resolver_add_map(r, p, 0x7f0000000000ull, 1u << 20, 0, fixture());
    prof_isa_class block;
    int fi = prof_resolver_sample(r, p, 0x7f0000000000ull + sym, &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "isa_avx2_func");
    assert_int_equal(block, PROF_ISA_AVX2);
    prof_resolver_fork(r, p, c);
    fi = prof_resolver_sample(r, c, 0x7f0000000000ull + sym, &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "isa_avx2_func");
    prof_resolver_exec(r, c);
    fi = prof_resolver_sample(r, c, 0x7f0000000000ull + sym, &block);
    assert_string_equal(prof_resolver_func(r, fi)->name, "[unknown]");
    /* A module that cannot be read is listed with why. */
    prof_resolver_add_map(r, p, 0x10000, 4096, 0, "/nonexistent/libgone.so");
    fi = prof_resolver_sample(r, p, 0x10010, &block);
    assert_string_equal(prof_resolver_func(r, fi)->module, "/nonexistent/libgone.so");
    assert_int_equal(prof_resolver_nbad(r), 1);
    const char *path, *why;
    assert_true(prof_resolver_bad(r, 0, &path, &why));
    assert_string_equal(path, "/nonexistent/libgone.so");
    assert_non_null(strstr(why, "No such file"));
    prof_resolver_free(r);
}

static void test_demangle(void **st)
{
    (void)st;
    char *d = prof_demangle("_ZN4ggml3cpu3amx15tinygemm_kernelEii");
    /* demangled when libstdc++ is installed, the raw name otherwise */
    void *cxx = dlopen("libstdc++.so.6", RTLD_LAZY); /* what prof_demangle looks for */
    if (cxx)
        assert_string_equal(d, "ggml::cpu::amx::tinygemm_kernel(int, int)");
    else
        assert_string_equal(d, "_ZN4ggml3cpu3amx15tinygemm_kernelEii");
    if (cxx)
        dlclose(cxx);
    free(d);
    d = prof_demangle("plain_c_function");
    assert_string_equal(d, "plain_c_function");
    free(d);
    d = prof_demangle("_Znot-valid");
    assert_string_equal(d, "_Znot-valid");
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_encodings),   cmocka_unit_test(test_fixture_functions),
        cmocka_unit_test(test_bad_files),       cmocka_unit_test(test_resolve_live),
        cmocka_unit_test(test_resolve_records), cmocka_unit_test(test_demangle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

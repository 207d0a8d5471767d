/* Activity-record decoding with records built from the CUDA 13 CUPTI header structs, the
 * version checks, demangling, and the collector's "unavailable" reason on this machine. */
#include "adg_test.h"

#include <string.h>

#include "profiler/cupti_activity.h"
#include "profiler/cupti_collector.h"
#include "profiler/cupti_load.h"
#include "profiler/cupti_trace.h"

typedef struct got {
    int n;
    cupti_rec_type type[8];
    cupti_kernel_rec kernel;
    cupti_memcpy_rec memcpy_;
    cupti_memset_rec memset_;
    char name[256];
} got;

__attribute__((unused)) static void emit(void *ctx, cupti_rec_type type, const void *fixed, const char *name, size_t name_len)
{
    got *g = ctx;
    if (g->n < 8)
        g->type[g->n] = type;
    g->n++;
    if (type == CUPTI_REC_KERNEL)
        memcpy(&g->kernel, fixed, sizeof g->kernel);
    else if (type == CUPTI_REC_MEMCPY)
        memcpy(&g->memcpy_, fixed, sizeof g->memcpy_);
    else if (type == CUPTI_REC_MEMSET)
        memcpy(&g->memset_, fixed, sizeof g->memset_);
    if (name)
        snprintf(g->name, sizeof g->name, "%.*s", (int)name_len, name);
}

#ifdef ADG_HAVE_CUPTI
/* A stand-in for cuptiActivityGetNextRecord over an array of record pointers. */
static CUpti_Activity *walk_recs[4];
static size_t walk_pos;
static CUptiResult fake_next(uint8_t *buffer, size_t valid, CUpti_Activity **record)
{
    (void)buffer;
    (void)valid;
    if (walk_pos >= 4 || !walk_recs[walk_pos])
        return CUPTI_ERROR_MAX_LIMIT_REACHED;
    *record = walk_recs[walk_pos++];
    return CUPTI_SUCCESS;
}
#endif

static void test_decode_records(void **st)
{
    (void)st;
#ifndef ADG_HAVE_CUPTI
    assert_false(cupti_activity_supported());
    ADG_SKIP("built without the CUPTI headers: activity layouts cannot be checked here");
#else
    assert_true(cupti_activity_supported());
    CUpti_ActivityKernel10 k;
    memset(&k, 0, sizeof k);
    k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    k.start = 1000;
    k.end = 4500;
    k.correlationId = 77;
    k.streamId = 13;
    k.deviceId = 0;
    k.gridX = 512, k.gridY = 2, k.gridZ = 1;
    k.blockX = 256, k.blockY = 1, k.blockZ = 1;
    k.registersPerThread = 40;
    k.staticSharedMemory = 1024;
    k.dynamicSharedMemory = 8192;
    k.name = "_Z8get_rowsPKfPKiPfi";
    got g;
    memset(&g, 0, sizeof g);
    assert_true(cupti_activity_decode((CUpti_Activity *)&k, 100, emit, &g));
    assert_int_equal(g.n, 1);
    assert_int_equal(g.type[0], CUPTI_REC_KERNEL);
    assert_int_equal(g.kernel.start_ns, 1100); /* offset applied */
    assert_int_equal(g.kernel.end_ns, 4600);
    assert_int_equal(g.kernel.correlation, 77);
    assert_int_equal(g.kernel.grid[0], 512);
    assert_int_equal(g.kernel.grid[1], 2);
    assert_int_equal(g.kernel.block[0], 256);
    assert_int_equal(g.kernel.regs, 40);
    assert_int_equal(g.kernel.static_smem, 1024);
    assert_int_equal(g.kernel.dynamic_smem, 8192);
    assert_string_equal(g.name, "_Z8get_rowsPKfPKiPfi");

    CUpti_ActivityMemcpy6 m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
    m.copyKind = CUPTI_ACTIVITY_MEMCPY_KIND_DTOH;
    m.bytes = 1 << 20;
    m.start = 10;
    m.end = 20;
    memset(&g, 0, sizeof g);
    assert_true(cupti_activity_decode((CUpti_Activity *)&m, 0, emit, &g));
    assert_int_equal(g.type[0], CUPTI_REC_MEMCPY);
    assert_int_equal(g.memcpy_.kind, CUPTI_COPY_DTOH);
    assert_int_equal(g.memcpy_.bytes, 1 << 20);

    CUpti_ActivityMemset4 s;
    memset(&s, 0, sizeof s);
    s.kind = CUPTI_ACTIVITY_KIND_MEMSET;
    s.bytes = 4096;
    s.value = 0xab;
    memset(&g, 0, sizeof g);
    assert_true(cupti_activity_decode((CUpti_Activity *)&s, 0, emit, &g));
    assert_int_equal(g.memset_.bytes, 4096);
    assert_int_equal(g.memset_.value, 0xab);

    /* a kind amxdiag does not use */
    CUpti_ActivityAPI api;
    memset(&api, 0, sizeof api);
    api.kind = CUPTI_ACTIVITY_KIND_DRIVER;
    memset(&g, 0, sizeof g);
    assert_false(cupti_activity_decode((CUpti_Activity *)&api, 0, emit, &g));
    assert_int_equal(g.n, 0);

    /* the walker: every record, unused kinds skipped */
    walk_recs[0] = (CUpti_Activity *)&k;
    walk_recs[1] = (CUpti_Activity *)&api;
    walk_recs[2] = (CUpti_Activity *)&m;
    walk_recs[3] = NULL;
    walk_pos = 0;
    memset(&g, 0, sizeof g);
    uint8_t dummy[8];
    assert_int_equal(cupti_activity_walk(dummy, sizeof dummy, fake_next, 0, emit, &g), 2);
    assert_int_equal(g.n, 2);

    assert_int_equal(cupti_activity_copy_kind(CUPTI_ACTIVITY_MEMCPY_KIND_HTOD), CUPTI_COPY_HTOD);
    assert_int_equal(cupti_activity_copy_kind(CUPTI_ACTIVITY_MEMCPY_KIND_PTOP), CUPTI_COPY_PTOP);
    assert_int_equal(cupti_activity_copy_kind(0), CUPTI_COPY_OTHER);
#endif
}

static void test_versions(void **st)
{
    (void)st;
    char why[256];
    assert_true(cupti_version_compatible(130001, 130001, why, sizeof why));
    assert_true(cupti_version_compatible(130000, 130001, why, sizeof why)); /* same 13.0 layouts */
    assert_true(cupti_version_compatible(130100, 130001, why, sizeof why)); /* newer minor */
    assert_false(cupti_version_compatible(28, 130001, why, sizeof why));     /* CUDA 12.9 */
    assert_non_null(strstr(why, "major releases"));
    assert_false(cupti_version_compatible(140000, 130001, why, sizeof why));
    assert_false(cupti_version_compatible(130001, 130100, why, sizeof why)); /* older than the headers */
    assert_non_null(strstr(why, "older than"));
    assert_false(cupti_version_compatible(130001, 0, why, sizeof why));
    assert_non_null(strstr(why, "without the CUPTI headers"));
}

static void test_demangle(void **st)
{
    (void)st;
    char *d = cupti_demangle("_Z8get_rowsPKfPKiPfi");
    assert_string_equal(d, "get_rows(float const*, int const*, float*, int)");
    free(d);
    d = cupti_demangle("plain_c_kernel");
    assert_string_equal(d, "plain_c_kernel");
    free(d);
    d = cupti_demangle("_Znot a symbol");
    assert_string_equal(d, "_Znot a symbol");
    free(d);
}

static void test_unavailable_reason(void **st)
{
    (void)st;
    adg_error *e = prof_cupti_check_machine();
    if (!e)
        ADG_SKIP("this machine has an NVIDIA driver and CUPTI: the collector can run");
    /* The reason names what is missing and says what to do. */
    const char *m = adg_error_msg(e);
    assert_true(strstr(m, "CUPTI headers") || strstr(m, "libcuda") || strstr(m, "libamxdiag-inject"));
    assert_non_null(adg_error_remedy(e));
    adg_error_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_records),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_demangle),
        cmocka_unit_test(test_unavailable_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

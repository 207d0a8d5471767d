/* The confirmation re-run's merge: the H100's matvec-oob facts (the ring's first guess is
 * the wrong kernel; the blocking re-run names the right one), agreement, a re-run that
 * does not reproduce, and when a re-run is called for at all. */
#include "adg_test.h"

#include <string.h>

#include "profiler/crash_analyze.h"
#include "profiler/crash_confirm.h"
#include "profiler/cupti_proto.h"
#include "profiler/cupti_trace.h"

#define BASE 1000000000ull

static void feed(cupti_trace *t, cupti_rec_type type, const void *fixed, const char *name)
{
    unsigned char buf[CUPTI_PROTO_MAX_FRAME];
    size_t n = cupti_proto_encode(buf, sizeof buf, type, fixed, name, name ? strlen(name) : 0);
    assert_true(n > 0);
    cupti_parser p;
    cupti_parser_init(&p, cupti_trace_frame, t);
    assert_true(cupti_parser_feed(&p, buf, n));
    assert_true(cupti_parser_end(&p));
    cupti_parser_free(&p);
}

static void launch(cupti_trace *t, uint64_t seq, const char *name)
{
    cupti_launch_rec l;
    memset(&l, 0, sizeof l);
    l.seq = seq;
    l.t_ns = BASE + seq * 1000;
    l.stream = 0x5000;
    l.correlation = (uint32_t)(100 + seq);
    l.api = CUPTI_LAUNCH_KERNEL;
    l.grid[0] = 64, l.grid[1] = l.grid[2] = 1;
    l.block[0] = 256, l.block[1] = l.block[2] = 1;
    feed(t, CUPTI_REC_LAUNCH, &l, name);
}

static void kernel(cupti_trace *t, uint64_t seq, const char *name, uint64_t start, uint64_t end)
{
    cupti_kernel_rec k;
    memset(&k, 0, sizeof k);
    k.start_ns = start;
    k.end_ns = end;
    k.correlation = (uint32_t)(100 + seq);
    k.grid[0] = 64, k.grid[1] = k.grid[2] = 1;
    k.block[0] = 256, k.block[1] = k.block[2] = 1;
    feed(t, CUPTI_REC_KERNEL, &k, name);
}

static void hello(cupti_trace *t, bool blocking)
{
    cupti_hello_rec h = {1, 130001, 13000, blocking ? 7u : 3u, BASE};
    feed(t, CUPTI_REC_HELLO, &h, NULL);
}

static const char *const K[] = {"kern_rms_norm", "kern_quantize_q8", "kern_gemv_q4_0_mr", "kern_add"};

/* What the H100 gave for matvec-oob: four launches on one stream, 700 at the check after
 * the fourth, and after the fault every record but the first without timestamps. */
static json_t *matvec_first_run(void)
{
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    hello(t, false);
    for (uint64_t i = 1; i <= 4; i++)
        launch(t, i, K[i - 1]);
    cupti_api_error_rec e = {BASE + 9000, 4, 200, 700, 2, 131, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cudaStreamSynchronize");
    kernel(t, 1, K[0], BASE + 1100, BASE + 1600);
    for (uint64_t i = 2; i <= 4; i++)
        kernel(t, i, K[i - 1], 0, 0);
    json_t *c = cupti_trace_crash_json(t);
    cupti_trace_free(t);
    return c;
}

/* The same program with CUDA_LAUNCH_BLOCKING=1: the GEMV launch returns 700 itself. */
static json_t *matvec_blocking_run(void)
{
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    hello(t, true);
    for (uint64_t i = 1; i <= 2; i++) {
        launch(t, i, K[i - 1]);
        kernel(t, i, K[i - 1], BASE + i * 1000 + 100, BASE + i * 1000 + 600);
    }
    launch(t, 3, K[2]);
    cupti_api_error_rec e = {BASE + 3600, 3, 103, 700, 1, 307, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cuLaunchKernel");
    json_t *c = cupti_trace_crash_json(t);
    cupti_trace_free(t);
    return c;
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_matvec_wrong_guess_corrected(void **st)
{
    (void)st;
    json_t *c = matvec_first_run();
    assert_non_null(c);
    json_t *fk = json_object_get(c, "faulting_kernel");
    /* The ring alone picks the oldest unfinished launch: the wrong one, as on the H100. */
    assert_string_equal(str(fk, "kernel"), "kern_quantize_q8");
    assert_string_equal(str(fk, "confidence"), "likely");
    assert_true(crash_needs_confirmation(c));

    json_t *c2 = matvec_blocking_run();
    json_t *fk2 = json_object_get(c2, "faulting_kernel");
    assert_string_equal(str(fk2, "kernel"), "kern_gemv_q4_0_mr");
    assert_string_equal(str(fk2, "confidence"), "certain");
    assert_false(crash_needs_confirmation(c2));

    crash_merge_confirmation(c, c2, 134);
    json_t *cf = json_object_get(c, "confirmation");
    assert_true(json_is_true(json_object_get(cf, "ran")));
    assert_true(json_is_true(json_object_get(cf, "reproduced")));
    assert_int_equal(json_integer_value(json_object_get(cf, "rc")), 134);
    assert_string_equal(str(cf, "kernel"), "kern_gemv_q4_0_mr");
    assert_true(json_is_false(json_object_get(cf, "agrees")));
    assert_string_equal(str(json_object_get(cf, "first_guess"), "kernel"), "kern_quantize_q8");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(cf, "error"), "code")), 700);
    assert_string_equal(str(json_object_get(cf, "error"), "api"), "cuLaunchKernel");

    fk = json_object_get(c, "faulting_kernel");
    assert_string_equal(str(fk, "kernel"), "kern_gemv_q4_0_mr");
    assert_int_equal(json_integer_value(json_object_get(fk, "seq")), 3); /* matched to the first run's ring */
    assert_string_equal(str(fk, "confidence"), "certain");
    assert_string_equal(str(fk, "source"), "blocking re-run");
    assert_true(json_is_false(json_object_get(fk, "launch_ring_agrees")));
    assert_true(json_is_false(json_object_get(c, "reporting_op_faulted"))); /* #3 faulted, #4 reported */
    assert_false(crash_needs_confirmation(c));
    const char *concl = str(c, "conclusion");
    assert_non_null(strstr(concl, "The faulting kernel is 'kern_gemv_q4_0_mr' (launch #3)"));
    assert_non_null(strstr(concl, "confirmed by a blocking re-run"));
    assert_non_null(strstr(concl, "disagrees with the first guess"));
    assert_non_null(strstr(concl, "'kern_quantize_q8' (launch #2, likely)"));
    assert_non_null(strstr(concl, "not 'kern_add'"));
    json_decref(c2);
    json_decref(c);
}

static void test_confirmation_agrees(void **st)
{
    (void)st;
    /* First run: #2 never completed, the check after #3 reports 700; #2 is the guess. */
    cupti_trace *t = cupti_trace_new(16, 100000000ull, BASE);
    hello(t, false);
    for (uint64_t i = 1; i <= 3; i++)
        launch(t, i, i == 2 ? "_Z16oob_write_kernelPfi" : "k_other");
    kernel(t, 1, "k_other", BASE + 1100, BASE + 1600);
    cupti_api_error_rec e = {BASE + 9000, 3, 200, 700, 2, 131, 1, 0};
    feed(t, CUPTI_REC_API_ERROR, &e, "cudaStreamSynchronize");
    json_t *c = cupti_trace_crash_json(t);
    cupti_trace_free(t);
    assert_string_equal(str(json_object_get(c, "faulting_kernel"), "confidence"), "likely");
    /* Re-run: the demangled and the mangled name are the same kernel. */
    json_t *c2 = json_pack("{s:{s:i,s:s},s:{s:s,s:i,s:s}}", "error", "code", 700, "api", "cuLaunchKernel",
                           "faulting_kernel", "kernel", "oob_write_kernel(float*, int)", "seq", 2, "confidence",
                           "certain");
    crash_merge_confirmation(c, c2, 134);
    json_t *cf = json_object_get(c, "confirmation");
    assert_true(json_is_true(json_object_get(cf, "agrees")));
    json_t *fk = json_object_get(c, "faulting_kernel");
    assert_int_equal(json_integer_value(json_object_get(fk, "seq")), 2);
    assert_string_equal(str(fk, "source"), "blocking re-run");
    assert_non_null(strstr(str(c, "conclusion"), "confirmed the launch ring's first guess"));
    assert_null(strstr(str(c, "conclusion"), "disagrees"));
    json_decref(c2);
    json_decref(c);
}

static void test_confirmation_not_reproduced(void **st)
{
    (void)st;
    json_t *c = matvec_first_run();
    char *before = strdup(str(c, "conclusion"));
    crash_merge_confirmation(c, NULL, 0);
    json_t *cf = json_object_get(c, "confirmation");
    assert_true(json_is_true(json_object_get(cf, "ran")));
    assert_true(json_is_false(json_object_get(cf, "reproduced")));
    assert_true(json_is_null(json_object_get(cf, "kernel")));
    assert_true(json_is_null(json_object_get(cf, "agrees")));
    /* The first analysis stands, and says what was tried. */
    assert_string_equal(str(json_object_get(c, "faulting_kernel"), "kernel"), "kern_quantize_q8");
    assert_string_equal(str(json_object_get(c, "faulting_kernel"), "confidence"), "likely");
    assert_true(strncmp(str(c, "conclusion"), before, strlen(before)) == 0);
    assert_non_null(strstr(str(c, "conclusion"), "did not reproduce the error (exit status 0)"));
    free(before);
    /* A re-run that failed but named nothing for certain leaves the guess too. */
    json_decref(c);
    c = matvec_first_run();
    json_t *c2 = json_pack("{s:{s:i,s:s},s:n}", "error", "code", 700, "api", "cudaStreamSynchronize",
                           "faulting_kernel");
    crash_merge_confirmation(c, c2, 134);
    assert_string_equal(str(json_object_get(c, "faulting_kernel"), "kernel"), "kern_quantize_q8");
    assert_true(json_is_true(json_object_get(json_object_get(c, "confirmation"), "reproduced")));
    assert_non_null(strstr(str(c, "conclusion"), "could not name the kernel for certain"));
    json_decref(c2);
    json_decref(c);
}

static void test_needs_confirmation(void **st)
{
    (void)st;
    assert_false(crash_needs_confirmation(NULL));
    json_t *c = json_pack("{s:n}", "error"); /* no error seen */
    assert_false(crash_needs_confirmation(c));
    json_decref(c);
    c = json_pack("{s:{s:i},s:n}", "error", "code", 700, "faulting_kernel"); /* could not tell */
    assert_true(crash_needs_confirmation(c));
    json_decref(c);
    c = json_pack("{s:{s:i},s:{s:s,s:s}}", "error", "code", 209, "faulting_kernel", "kernel", "k", "confidence",
                  "certain");
    assert_false(crash_needs_confirmation(c));
    json_decref(c);
    char buf[64];
    prof_confirm_record_path("run.json", buf, sizeof buf);
    assert_string_equal(buf, "run.confirm.json");
    prof_confirm_record_path("out/rec", buf, sizeof buf);
    assert_string_equal(buf, "out/rec.confirm.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matvec_wrong_guess_corrected),
        cmocka_unit_test(test_confirmation_agrees),
        cmocka_unit_test(test_confirmation_not_reproduced),
        cmocka_unit_test(test_needs_confirmation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
